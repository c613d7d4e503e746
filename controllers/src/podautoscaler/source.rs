//! The metrics source the controller runs with: pods and their `metrics.k8s.io/v1beta1`
//! PodMetrics, listed through the API with the target's selector.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use serde_json::Value;

use super::calculator::{MetricsSource, PodInfo, PodMetric, PodMetrics};

/// PodMetrics through the API, and the pods they belong to with their requests of `resource`.
pub(super) struct ApiMetrics<'a> {
    pub(super) client: &'a kube::Client,
    pub(super) resource: String,
}

fn pod_metrics_resource() -> ApiResource {
    ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    }
}

/// An API error as client-go words it: the status message, with the request for the
/// generic "not found" (`the server could not find the requested resource (get pods.metrics.k8s.io)`).
fn api_message(e: kube::Error, request: &str) -> String {
    match e {
        kube::Error::Api(s) if s.message == "the server could not find the requested resource" => {
            format!("{} ({request})", s.message)
        }
        kube::Error::Api(s) => s.message,
        other => other.to_string(),
    }
}

pub(super) fn milli(q: &str) -> Option<i64> {
    ekube_api::quantity::parse_milli(q)
        .ok()
        .and_then(|m| i64::try_from(m).ok())
}

impl MetricsSource for ApiMetrics<'_> {
    async fn pods(&self, namespace: &str, selector: &str) -> Result<Vec<PodInfo>, String> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let pods = api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| {
                format!(
                    "unable to get pods while calculating replica count: {}",
                    api_message(e, "get pods")
                )
            })?;
        Ok(pods
            .items
            .iter()
            .map(|p| {
                let mut info = pod_info(p);
                info.requests = p
                    .spec
                    .iter()
                    .flat_map(|s| &s.containers)
                    .map(|c| {
                        let request = c
                            .resources
                            .as_ref()
                            .and_then(|r| r.requests.as_ref())
                            .and_then(|r| r.get(&self.resource))
                            .and_then(|q| milli(&q.0));
                        (c.name.clone(), request)
                    })
                    .collect();
                info
            })
            .collect())
    }

    async fn resource_metrics(
        &self,
        namespace: &str,
        selector: &str,
        resource: &str,
        container: Option<&str>,
    ) -> Result<PodMetrics, String> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &pod_metrics_resource());
        let list = api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| {
                format!(
                    "unable to fetch metrics from resource metrics API: {}",
                    api_message(e, "get pods.metrics.k8s.io")
                )
            })?;
        if list.items.is_empty() {
            return Err("no metrics returned from resource metrics API".into());
        }
        Ok(list
            .items
            .iter()
            .filter_map(|m| Some((m.name_any(), pod_usage(&m.data, resource, container)?)))
            .collect())
    }
}

/// A PodMetrics' usage of `resource`, summed over its containers (or only `container`'s), in
/// milli-units; `None` when a container does not report it (upstream's `getPodMetrics` then
/// leaves the pod out, as missing).
fn pod_usage(m: &Value, resource: &str, container: Option<&str>) -> Option<PodMetric> {
    let containers = m["containers"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let mut sum = 0;
    let mut matched = false;
    for c in containers {
        if container.is_some_and(|want| c["name"].as_str() != Some(want)) {
            continue;
        }
        matched = true;
        sum += c["usage"][resource].as_str().and_then(milli)?;
    }
    if !matched {
        return None;
    }
    let timestamp = m["timestamp"]
        .as_str()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .unwrap_or_else(Timestamp::now);
    let window = m["window"]
        .as_str()
        .and_then(|w| ekube_api::flags::parse_duration(w).ok())
        .unwrap_or_default();
    Some(PodMetric {
        value: sum,
        timestamp,
        window,
    })
}

/// What the calculator needs of a pod, requests aside.
fn pod_info(p: &Pod) -> PodInfo {
    let status = p.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| {
            (
                c.status == "True",
                c.last_transition_time
                    .as_ref()
                    .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
            )
        });
    PodInfo {
        name: p.name_any(),
        phase: status.phase.unwrap_or_default(),
        deleting: p.metadata.deletion_timestamp.is_some(),
        start_time: status.start_time.map(|t| t.0),
        ready,
        requests: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pod_metrics_as_the_metrics_api_serves_them() {
        let m = json!({"metadata": {"name": "web-1"}, "timestamp": "2026-01-01T12:00:00.250Z",
        "window": "15.012s", "containers": [
            {"name": "app", "usage": {"cpu": "250000000n", "memory": "64Mi"}},
            {"name": "sidecar", "usage": {"cpu": "5m", "memory": "16Mi"}},
        ]});
        let all = pod_usage(&m, "cpu", None).unwrap();
        assert_eq!(all.value, 255);
        assert_eq!(all.window, std::time::Duration::from_millis(15_012));
        assert_eq!(
            all.timestamp,
            "2026-01-01T12:00:00.250Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(pod_usage(&m, "cpu", Some("sidecar")).unwrap().value, 5);
        assert_eq!(
            pod_usage(&m, "memory", Some("app")).unwrap().value,
            64 * 1024 * 1024 * 1000
        );
        // A container without the resource, an unknown container, no containers: missing.
        assert!(pod_usage(&m, "ephemeral-storage", None).is_none());
        assert!(pod_usage(&m, "cpu", Some("other")).is_none());
        assert!(pod_usage(&json!({"containers": []}), "cpu", None).is_none());
    }
}
