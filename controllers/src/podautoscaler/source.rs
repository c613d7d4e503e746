//! The metrics source the controller runs with: pods and their `metrics.k8s.io/v1beta1`
//! PodMetrics, listed through the API with the target's selector.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};

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
        let mut out = PodMetrics::new();
        for m in &list.items {
            let containers = m.data["containers"].as_array().cloned().unwrap_or_default();
            let mut sum = 0;
            let mut missing = containers.is_empty();
            let mut matched = false;
            for c in &containers {
                if container.is_some_and(|want| c["name"].as_str() != Some(want)) {
                    continue;
                }
                matched = true;
                match c["usage"][resource].as_str().and_then(milli) {
                    Some(v) => sum += v,
                    None => {
                        missing = true;
                        break;
                    }
                }
            }
            if container.is_some() && !matched {
                missing = true;
            }
            if missing {
                continue;
            }
            let timestamp = m.data["timestamp"]
                .as_str()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .unwrap_or_else(Timestamp::now);
            let window = m.data["window"]
                .as_str()
                .and_then(|w| ekube_api::flags::parse_duration(w).ok())
                .unwrap_or_default();
            out.insert(
                m.name_any(),
                PodMetric {
                    value: sum,
                    timestamp,
                    window,
                },
            );
        }
        Ok(out)
    }
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
