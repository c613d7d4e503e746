//! The resource metrics API, `metrics.k8s.io/v1beta1`, served by the apiserver itself rather
//! than by an aggregated metrics-server: NodeMetrics (`nodes`) and PodMetrics (`pods`,
//! namespaced and across all namespaces), get and list with label and field selectors, what
//! `kubectl top` and the HorizontalPodAutoscaler read. Requests are authorized like any
//! resource (group `metrics.k8s.io`); the `system:aggregated-metrics-reader` ClusterRole gives
//! view, edit and admin read access, as metrics-server's manifest does.
//!
//! The figures come from [`scrape`]: CPU is the rate between a node's or container's last two
//! kubelet readings, in nanocores, memory the latest working set, and `timestamp`/`window` are
//! the later reading's time and the time between the two, as metrics-server reports them. An
//! object listed without figures yet is left out of lists; a get of it is 404 NotFound with
//! metrics-server's message (`podmetrics.metrics.k8s.io "default/web" not found`).

pub mod scrape;

use std::sync::Arc;

use ekube_api::ResourceInfo;
use serde_json::{Map, Value, json};

pub use scrape::Store;
use scrape::Usage;

use crate::ApiServer;
use crate::errors::{ApiError, Result};
use crate::handler::Query;
use crate::registry::ListOptions;

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";

/// What a path under `/apis/metrics.k8s.io/v1beta1/` addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `pods` (PodMetrics) rather than `nodes` (NodeMetrics).
    pub pods: bool,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// The target of the path segments after the version, if it is one.
pub fn route(rest: &[&str]) -> Option<Target> {
    let t = |pods: bool, namespace: Option<&str>, name: Option<&str>| {
        Some(Target {
            pods,
            namespace: namespace.map(str::to_owned),
            name: name.map(str::to_owned),
        })
    };
    match rest {
        ["nodes"] => t(false, None, None),
        ["nodes", name] => t(false, None, Some(name)),
        ["pods"] => t(true, None, None),
        ["namespaces", ns, "pods"] => t(true, Some(ns), None),
        ["namespaces", ns, "pods", name] => t(true, Some(ns), Some(name)),
        _ => None,
    }
}

/// The discovery entries of the group's version.
pub fn resources() -> Vec<Value> {
    [
        ("nodes", "NodeMetrics", false),
        ("pods", "PodMetrics", true),
    ]
    .iter()
    .map(|(plural, kind, namespaced)| {
        json!({
            "name": plural,
            "singularName": kind.to_ascii_lowercase(),
            "namespaced": namespaced,
            "kind": kind,
            "verbs": ["get", "list"],
        })
    })
    .collect()
}

/// A CPU rate in nanocores as a canonical decimal quantity (`123456789n`, `12m`, `2`).
pub fn cpu_quantity(nanocores: u64) -> String {
    decimal_quantity(u128::from(nanocores), -9)
}

/// A byte count as a canonical binary quantity (`2748180Ki`, `12Mi`; under 1Ki, or not a
/// whole multiple of 1Ki, in decimal form), as Go's `BinarySI` quantities print.
pub fn memory_quantity(bytes: u64) -> String {
    if bytes < 1024 || !bytes.is_multiple_of(1024) {
        return decimal_quantity(u128::from(bytes), 0);
    }
    let (mut value, mut power) = (bytes, 0);
    while value.is_multiple_of(1024) && power < 6 {
        value /= 1024;
        power += 1;
    }
    let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power];
    format!("{value}{suffix}")
}

/// `value × 10^exponent` with trailing zeros folded into an SI suffix whose exponent is a
/// multiple of three (apimachinery's canonical form).
fn decimal_quantity(value: u128, exponent: i32) -> String {
    if value == 0 {
        return "0".into();
    }
    let (mut value, mut exponent) = (value, exponent);
    while value.is_multiple_of(10) {
        value /= 10;
        exponent += 1;
    }
    let r = exponent.rem_euclid(3);
    value *= 10u128.pow(r as u32);
    exponent -= r;
    let suffix = match exponent {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        18 => "E",
        e => return format!("{value}e{e}"),
    };
    format!("{value}{suffix}")
}

/// A duration in milliseconds as Go's `time.Duration` prints it (`15.012s`, `1m0.5s`, `800ms`).
pub fn go_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut seconds = s.to_string();
    if frac > 0 {
        let digits = format!("{frac:03}");
        seconds = format!("{s}.{}", digits.trim_end_matches('0'));
    }
    match (h, m) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m{seconds}s"),
        (h, m) => format!("{h}h{m}m{seconds}s"),
    }
}

fn rfc3339_ms(ms: i64) -> String {
    ekube_api::time::Timestamp::from_millisecond(ms)
        .map(ekube_api::time::rfc3339)
        .unwrap_or_default()
}

fn usage_json(u: &Usage) -> Value {
    json!({"cpu": cpu_quantity(u.nanocores), "memory": memory_quantity(u.memory)})
}

/// The metadata of a metrics object: the object's name, namespace and labels, created now.
fn metadata(obj: &Value) -> Value {
    let mut m = Map::new();
    for key in ["name", "namespace", "labels"] {
        if let Some(v) = obj["metadata"].get(key).filter(|v| !v.is_null()) {
            m.insert(key.into(), v.clone());
        }
    }
    m.insert("creationTimestamp".into(), json!(crate::registry::now()));
    Value::Object(m)
}

fn node_metrics(node: &Value, u: &Usage) -> Value {
    json!({
        "kind": "NodeMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": metadata(node),
        "timestamp": rfc3339_ms(u.at_ms),
        "window": go_duration(u.window_ms),
        "usage": usage_json(u),
    })
}

/// A PodMetrics; its timestamp and window are those of its earliest container reading, as
/// metrics-server reports them.
fn pod_metrics(pod: &Value, containers: &[(String, Usage)]) -> Value {
    let earliest = containers
        .iter()
        .map(|(_, u)| u)
        .min_by_key(|u| u.at_ms)
        .copied()
        .unwrap_or(Usage {
            nanocores: 0,
            memory: 0,
            at_ms: 0,
            window_ms: 0,
        });
    let containers: Vec<Value> = containers
        .iter()
        .map(|(name, u)| json!({"name": name, "usage": usage_json(u)}))
        .collect();
    json!({
        "kind": "PodMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": metadata(pod),
        "timestamp": rfc3339_ms(earliest.at_ms),
        "window": go_duration(earliest.window_ms),
        "containers": containers,
    })
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({
        "kind": format!("{kind}List"),
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {},
        "items": items,
    })
}

fn core(plural: &str) -> Result<&'static ResourceInfo> {
    ekube_api::resources::find("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not in the resource table")))
}

/// The usage of `pod` from the store, by the node it is bound to.
fn pod_usage(store: &Store, pod: &Value) -> Option<Vec<(String, Usage)>> {
    let node = pod.pointer("/spec/nodeName").and_then(Value::as_str)?;
    let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str)?;
    let name = pod.pointer("/metadata/name").and_then(Value::as_str)?;
    store.pod(node, ns, name)
}

/// Answers a GET of `target`.
pub async fn serve(api: &Arc<ApiServer>, target: &Target, query: &Query) -> Result<Value> {
    if query.flag("watch") {
        return Err(ApiError::method_not_allowed("watch"));
    }
    let store = &api.resource_metrics;
    let info = core(if target.pods { "pods" } else { "nodes" })?;
    let ns = target.namespace.as_deref();
    if let Some(name) = &target.name {
        // A missing object is its own NotFound (`pods "web" not found`), as metrics-server's
        // lister answers.
        let obj = api.registry.get(info, ns, name).await?;
        return if target.pods {
            let not_found = || {
                let ns = ns.unwrap_or_default();
                ApiError::not_found(GROUP, "podmetrics", &format!("{ns}/{name}"))
            };
            let usage = pod_usage(store, &obj).ok_or_else(not_found)?;
            Ok(pod_metrics(&obj, &usage))
        } else {
            let usage = store
                .node(name)
                .ok_or_else(|| ApiError::not_found(GROUP, "nodemetrics", name))?;
            Ok(node_metrics(&obj, &usage))
        };
    }
    let (labels, fields) = query.selectors(info)?;
    let everything = ListOptions::selecting(labels, fields);
    let (objects, _, _) = api.registry.list(info, ns, &everything).await?;
    Ok(if target.pods {
        let items = objects
            .iter()
            .filter_map(|p| Some(pod_metrics(p, &pod_usage(store, p)?)))
            .collect();
        list("PodMetrics", items)
    } else {
        let items = objects
            .iter()
            .filter_map(|n| {
                let name = n.pointer("/metadata/name").and_then(Value::as_str)?;
                Some(node_metrics(n, &store.node(name)?))
            })
            .collect();
        list("NodeMetrics", items)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_print_as_apimachinery_prints_them() {
        assert_eq!(cpu_quantity(0), "0");
        assert_eq!(cpu_quantity(123_456_789), "123456789n");
        assert_eq!(cpu_quantity(12_000_000), "12m");
        assert_eq!(cpu_quantity(1_500_000_000), "1500m");
        assert_eq!(cpu_quantity(1_000_000_000), "1");
        assert_eq!(cpu_quantity(20_000_000_000), "20");
        assert_eq!(cpu_quantity(329_087_452), "329087452n");
        assert_eq!(cpu_quantity(5_000), "5u");
        assert_eq!(cpu_quantity(50_000), "50u");
        assert_eq!(memory_quantity(2_748_180 * 1024), "2748180Ki");
        assert_eq!(memory_quantity(12 << 20), "12Mi");
        assert_eq!(memory_quantity(3 << 30), "3Gi");
        assert_eq!(memory_quantity(12_533_761), "12533761");
        assert_eq!(memory_quantity(500), "500");
        assert_eq!(memory_quantity(0), "0");
    }

    #[test]
    fn windows_print_as_go_durations() {
        assert_eq!(go_duration(15_000), "15s");
        assert_eq!(go_duration(20_064), "20.064s");
        assert_eq!(go_duration(60_500), "1m0.5s");
        assert_eq!(go_duration(3_600_000), "1h0m0s");
        assert_eq!(go_duration(800), "800ms");
        assert_eq!(go_duration(0), "0s");
    }

    #[test]
    fn paths() {
        assert_eq!(
            route(&["namespaces", "dev", "pods", "web"]),
            Some(Target {
                pods: true,
                namespace: Some("dev".into()),
                name: Some("web".into())
            })
        );
        assert_eq!(
            route(&["pods"]).map(|t| (t.pods, t.namespace)),
            Some((true, None))
        );
        assert_eq!(
            route(&["nodes", "n1"]).and_then(|t| t.name),
            Some("n1".into())
        );
        assert_eq!(route(&["namespaces", "dev", "nodes"]), None);
        assert_eq!(route(&["pods", "web"]), None);
    }

    #[test]
    fn objects_carry_metadata_usage_timestamp_and_window() {
        let pod = json!({"metadata": {"name": "web", "namespace": "dev", "labels": {"app": "web"}, "uid": "u"}});
        let u = |nanocores, at_ms| Usage {
            nanocores,
            memory: 4 << 20,
            at_ms,
            window_ms: 15_012,
        };
        let m = pod_metrics(
            &pod,
            &[
                ("main".into(), u(1_000_000_000, 1_700_000_016_000)),
                ("side".into(), u(2_000_000, 1_700_000_015_000)),
            ],
        );
        assert_eq!(m["kind"], "PodMetrics");
        assert_eq!(m["apiVersion"], "metrics.k8s.io/v1beta1");
        assert_eq!(m["metadata"]["labels"]["app"], "web");
        assert!(m["metadata"].get("uid").is_none());
        assert_eq!(m["timestamp"], "2023-11-14T22:13:35Z");
        assert_eq!(m["window"], "15.012s");
        assert_eq!(
            m["containers"],
            json!([
                {"name": "main", "usage": {"cpu": "1", "memory": "4Mi"}},
                {"name": "side", "usage": {"cpu": "2m", "memory": "4Mi"}},
            ])
        );
    }
}
