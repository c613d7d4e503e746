//! What an object costs against a `ResourceQuota`, as upstream's quota evaluators measure it.
//!
//! The apiserver's ResourceQuota admission charges a new object's cost to the quotas of its
//! namespace, and the quota controller recomputes `status.used` by summing the cost of every
//! object; both measure with [`usage`], so the two never disagree. Amounts are milli-units (the
//! [`crate::quantity`] parse), which keeps CPU exact and counts and bytes integral.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::quantity::parse_milli;
use crate::resources::{self, ResourceInfo};

/// Quota resource names with amounts in milli-units, sorted by name as upstream prints them.
pub type Usage = BTreeMap<String, i128>;

/// One object (or one unit of a count) in milli-units.
const ONE: i128 = 1000;

/// Core kinds whose count upstream tracks under the bare plural (`pods: "10"`).
const LEGACY_COUNTS: &[&str] = &[
    "pods",
    "services",
    "configmaps",
    "secrets",
    "persistentvolumeclaims",
    "resourcequotas",
    "replicationcontrollers",
];

/// The pod resources that need every container to say how much it wants: a quota on them
/// refuses a pod with a container that leaves them unset.
const COMPUTE: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// The `count/<resource>.<group>` name of a resource (`count/pods`, `count/deployments.apps`).
pub fn count_name(r: &ResourceInfo) -> String {
    if r.group.is_empty() {
        format!("count/{}", r.plural)
    } else {
        format!("count/{}.{}", r.plural, r.group)
    }
}

/// The resource whose objects a quota resource name counts, or `None` for a name nothing
/// served is measured by.
pub fn resource_of(name: &str) -> Option<&'static ResourceInfo> {
    let core = |plural| resources::find("", "v1", plural);
    match name {
        "pods" | "cpu" | "memory" => core("pods"),
        n if n.starts_with("requests.") && n != "requests.storage" => core("pods"),
        n if n.starts_with("limits.") => core("pods"),
        "requests.storage" => core("persistentvolumeclaims"),
        "services.nodeports" | "services.loadbalancers" => core("services"),
        n if LEGACY_COUNTS.contains(&n) => core(n),
        n => {
            let counted = n.strip_prefix("count/")?;
            let (plural, group) = counted.split_once('.').unwrap_or((counted, ""));
            resources::RESOURCES
                .iter()
                .find(|r| r.plural == plural && r.group == group)
        }
    }
}

/// What `obj`, an object of `r`, costs. A pod that finished (`Succeeded`/`Failed`) costs
/// nothing, as upstream releases its quota.
pub fn usage(r: &ResourceInfo, obj: &Value) -> Usage {
    let mut out = Usage::new();
    if r.group.is_empty() && r.kind == "Pod" && is_terminal(obj) {
        return out;
    }
    out.insert(count_name(r), ONE);
    if r.group.is_empty() && LEGACY_COUNTS.contains(&r.plural) {
        out.insert(r.plural.to_string(), ONE);
    }
    match (r.group, r.kind) {
        ("", "Pod") => pod_compute(obj, &mut out),
        ("", "PersistentVolumeClaim") => {
            if let Some(storage) = quantity_at(obj, "/spec/resources/requests/storage") {
                out.insert("requests.storage".into(), storage);
            }
        }
        ("", "Service") => {
            let kind = obj.pointer("/spec/type").and_then(Value::as_str);
            if kind == Some("LoadBalancer") {
                out.insert("services.loadbalancers".into(), ONE);
            }
            if matches!(kind, Some("NodePort" | "LoadBalancer")) {
                let ports = obj
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                out.insert("services.nodeports".into(), ONE * ports as i128);
            }
        }
        _ => {}
    }
    out
}

fn is_terminal(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

fn quantity_at(obj: &Value, pointer: &str) -> Option<i128> {
    parse_milli(obj.pointer(pointer)?.as_str()?).ok()
}

/// The compute resources one container asks for, under their quota names.
fn container_compute(c: &Value) -> Usage {
    let mut out = Usage::new();
    for res in ["cpu", "memory"] {
        if let Some(v) = quantity_at(c, &format!("/resources/requests/{res}")) {
            out.insert(res.to_string(), v);
            out.insert(format!("requests.{res}"), v);
        }
        if let Some(v) = quantity_at(c, &format!("/resources/limits/{res}")) {
            out.insert(format!("limits.{res}"), v);
        }
    }
    out
}

fn containers<'a>(pod: &'a Value, list: &str) -> impl Iterator<Item = &'a Value> {
    pod.pointer(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// A pod's compute cost: the sum over its containers, raised to any init container that wants
/// more (init containers run one at a time, before the others).
fn pod_compute(pod: &Value, out: &mut Usage) {
    let mut total = Usage::new();
    for c in containers(pod, "containers") {
        add(&mut total, &container_compute(c));
    }
    for c in containers(pod, "initContainers") {
        for (k, v) in container_compute(c) {
            let slot = total.entry(k).or_insert(0);
            *slot = (*slot).max(v);
        }
    }
    out.extend(total);
}

/// Whether quota `q` covers `obj`, an object of `r`: its `spec.scopes` and the expressions of
/// its `spec.scopeSelector` must all hold. Scopes describe pods, so a scoped quota covers
/// nothing else.
pub fn in_scope(q: &Value, r: &ResourceInfo, obj: &Value) -> bool {
    let scopes = q
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| (s.as_str().unwrap_or_default(), "Exists", &[][..]));
    let expressions = q
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            let values = e["values"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            let (name, op) = (e["scopeName"].as_str(), e["operator"].as_str());
            (name.unwrap_or_default(), op.unwrap_or_default(), values)
        });
    let mut selectors = scopes.chain(expressions).peekable();
    if selectors.peek().is_none() {
        return true;
    }
    r.group.is_empty()
        && r.kind == "Pod"
        && selectors.all(|(name, op, values)| pod_in_scope(obj, name, op, values))
}

fn pod_in_scope(pod: &Value, scope: &str, op: &str, values: &[Value]) -> bool {
    let best_effort = pod.pointer("/status/qosClass").and_then(Value::as_str) == Some("BestEffort");
    let terminating = pod
        .pointer("/spec/activeDeadlineSeconds")
        .is_some_and(|d| !d.is_null());
    match scope {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        "PriorityClass" => {
            let class = pod
                .pointer("/spec/priorityClassName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let listed = values.iter().any(|v| v.as_str() == Some(class));
            match op {
                "In" => listed,
                "NotIn" => !listed,
                "Exists" => !class.is_empty(),
                "DoesNotExist" => class.is_empty(),
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
            let affinity = &pod["spec"]["affinity"][kind];
            [
                "requiredDuringSchedulingIgnoredDuringExecution",
                "preferredDuringSchedulingIgnoredDuringExecution",
            ]
            .iter()
            .filter_map(|when| affinity[when].as_array())
            .flatten()
            .map(|t| t.get("podAffinityTerm").unwrap_or(t))
            .any(|t| {
                t["namespaceSelector"].is_object()
                    || t["namespaces"].as_array().is_some_and(|n| !n.is_empty())
            })
        }),
        _ => false,
    }
}

/// Adds `b` into `a`.
pub fn add(a: &mut Usage, b: &Usage) {
    for (k, v) in b {
        *a.entry(k.clone()).or_insert(0) += v;
    }
}

/// The compute resources `hard` tracks that some container of `pod` leaves unset: upstream's
/// `must specify` refusal.
pub fn missing_compute(pod: &Value, hard: &BTreeSet<&str>) -> BTreeSet<String> {
    let required: Vec<&str> = COMPUTE
        .iter()
        .copied()
        .filter(|n| hard.contains(n))
        .collect();
    let mut missing = BTreeSet::new();
    for c in containers(pod, "containers").chain(containers(pod, "initContainers")) {
        let has = container_compute(c);
        missing.extend(
            required
                .iter()
                .filter(|n| !has.contains_key(**n))
                .map(|n| n.to_string()),
        );
    }
    missing
}

/// Parses a quota's resource list (`spec.hard`, `status.used`); unparsable entries are left out
/// (validation refuses them on write).
pub fn parse_list(list: Option<&Value>) -> Usage {
    list.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), parse_milli(v.as_str()?).ok()?)))
        .collect()
}

/// Renders an amount as a quantity: whole units plainly, fractions in milli-units, and whole
/// multiples of a binary unit for memory and storage (`128Mi`).
pub fn format(name: &str, milli: i128) -> String {
    if milli % ONE != 0 {
        return format!("{milli}m");
    }
    let units = milli / ONE;
    if units != 0 && (name.ends_with("memory") || name.ends_with("storage")) {
        for (suffix, size) in [("Gi", 1i128 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
            if units % size == 0 {
                return format!("{}{suffix}", units / size);
            }
        }
    }
    units.to_string()
}

/// Renders a usage as upstream prints resource lists in quota messages: `pods=1,services=2`.
pub fn pretty(usage: &Usage) -> String {
    usage
        .iter()
        .map(|(k, v)| format!("{k}={}", format(k, *v)))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pods() -> &'static ResourceInfo {
        resources::find("", "v1", "pods").unwrap()
    }

    #[test]
    fn a_pod_costs_its_count_and_compute() {
        let pod = json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1"}}},
                {"name": "b", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
            ],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
        }});
        let u = usage(pods(), &pod);
        assert_eq!(
            pretty(&u),
            "count/pods=1,cpu=2,limits.cpu=1,memory=128Mi,pods=1,requests.cpu=2,requests.memory=128Mi"
        );
        let done = json!({"spec": {}, "status": {"phase": "Succeeded"}});
        assert!(usage(pods(), &done).is_empty());
    }

    #[test]
    fn names_map_to_the_resources_they_count() {
        assert_eq!(resource_of("requests.cpu").unwrap().plural, "pods");
        assert_eq!(
            resource_of("count/deployments.apps").unwrap().kind,
            "Deployment"
        );
        assert_eq!(resource_of("count/configmaps").unwrap().kind, "ConfigMap");
        assert_eq!(
            resource_of("requests.storage").unwrap().plural,
            "persistentvolumeclaims"
        );
        assert!(resource_of("count/widgets.example.com").is_none());
        let deploy = resources::find("apps", "v1", "deployments").unwrap();
        assert_eq!(count_name(deploy), "count/deployments.apps");
    }

    #[test]
    fn missing_compute_names_what_a_container_leaves_unset() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "1"}}},
            {"name": "b"},
        ]}});
        let hard = BTreeSet::from(["pods", "requests.cpu", "limits.memory"]);
        let missing: Vec<String> = missing_compute(&pod, &hard).into_iter().collect();
        assert_eq!(missing, ["limits.memory", "requests.cpu"]);
    }

    #[test]
    fn scoped_quotas_cover_the_pods_their_scopes_describe() {
        let scoped = |scopes: Value| json!({"spec": {"hard": {"pods": "1"}, "scopes": scopes}});
        let best_effort = json!({"spec": {}, "status": {"qosClass": "BestEffort"}});
        let burstable =
            json!({"spec": {"activeDeadlineSeconds": 30}, "status": {"qosClass": "Burstable"}});
        assert!(in_scope(&json!({"spec": {}}), pods(), &burstable));
        assert!(in_scope(
            &scoped(json!(["BestEffort"])),
            pods(),
            &best_effort
        ));
        assert!(!in_scope(
            &scoped(json!(["BestEffort"])),
            pods(),
            &burstable
        ));
        assert!(in_scope(
            &scoped(json!(["NotBestEffort", "Terminating"])),
            pods(),
            &burstable
        ));
        let cm = resources::find("", "v1", "configmaps").unwrap();
        assert!(!in_scope(
            &scoped(json!(["NotTerminating"])),
            cm,
            &json!({})
        ));
        let by_class = json!({"spec": {"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}});
        let high = json!({"spec": {"priorityClassName": "high"}});
        assert!(in_scope(&by_class, pods(), &high));
        assert!(!in_scope(&by_class, pods(), &best_effort));
    }

    #[test]
    fn amounts_render_as_quantities() {
        assert_eq!(format("requests.cpu", 500), "500m");
        assert_eq!(format("requests.cpu", 2000), "2");
        assert_eq!(format("limits.memory", 1000 * (256 << 20)), "256Mi");
        assert_eq!(format("requests.memory", 1000 * 1500), "1500");
        assert_eq!(format("pods", 0), "0");
    }
}
