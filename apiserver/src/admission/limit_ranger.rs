//! LimitRanger: the namespace's `LimitRange`s give new pods' containers the requests and limits
//! they leave unset (`defaultRequest`, `default`) and bound what containers, whole pods and
//! claims may ask for (`min`, `max`, `maxLimitRequestRatio`), in upstream's words.
//!
//! Pods are only checked on create: their containers' resources cannot change afterwards.

use std::collections::BTreeMap;

use ekube_api::quantity::parse_milli;
use serde_json::{Map, Value, json};

use super::{Attributes, Operation, list_in};
use crate::errors::Result;
use crate::registry::Registry;

/// Where the plugin records what it defaulted, as upstream does.
const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// A resource list with each entry's text and milli-units.
type Amounts = BTreeMap<String, (String, i128)>;

fn applies(attrs: &Attributes<'_>) -> bool {
    attrs.subresource.is_none()
        && attrs.namespace.is_some()
        && match attrs.operation {
            Operation::Create => attrs.is("", "Pod") || attrs.is("", "PersistentVolumeClaim"),
            Operation::Update => attrs.is("", "PersistentVolumeClaim"),
            _ => false,
        }
}

async fn limit_ranges(registry: &Registry, attrs: &Attributes<'_>) -> Result<Vec<Value>> {
    match attrs.namespace {
        Some(ns) if applies(attrs) => Ok(list_in(registry, "limitranges", ns)
            .await?
            .into_iter()
            .map(|(lr, _)| lr)
            .collect()),
        _ => Ok(Vec::new()),
    }
}

fn items<'a>(ranges: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    ranges
        .iter()
        .filter_map(|lr| lr.pointer("/spec/limits").and_then(Value::as_array))
        .flatten()
        .filter(move |item| item["type"] == kind)
}

pub(super) async fn admit(
    registry: &Registry,
    attrs: &Attributes<'_>,
    obj: &mut Value,
) -> Result<()> {
    if !attrs.is("", "Pod") {
        return Ok(());
    }
    let ranges = limit_ranges(registry, attrs).await?;
    let (mut limits, mut requests) = (Map::new(), Map::new());
    for item in items(&ranges, "Container") {
        for (list, into) in [("default", &mut limits), ("defaultRequest", &mut requests)] {
            if let Some(m) = item.get(list).and_then(Value::as_object) {
                into.extend(m.clone());
            }
        }
    }
    if !(limits.is_empty() && requests.is_empty()) {
        apply_defaults(obj, &limits, &requests);
    }
    Ok(())
}

/// Fills each container's unset limits and requests and records what was set.
fn apply_defaults(pod: &mut Value, limits: &Map<String, Value>, requests: &Map<String, Value>) {
    let mut notes = Vec::new();
    for (list, label) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let Some(cs) = pod
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in cs {
            let name = c["name"].as_str().unwrap_or_default().to_string();
            let resources = crate::defaults::ensure(c, "resources");
            // A limit the client set is also its request (the API's defaulting, which upstream
            // applies before admission), so a default request does not replace it.
            let own_limits: Vec<String> = resources
                .get("limits")
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            let set_requests = fill(resources, "requests", requests, &own_limits);
            let set_limits = fill(resources, "limits", limits, &[]);
            if !set_requests.is_empty() {
                notes.push(format!(
                    "{} request for {label} {name}",
                    set_requests.join(", ")
                ));
            }
            if !set_limits.is_empty() {
                notes.push(format!(
                    "{} limit for {label} {name}",
                    set_limits.join(", ")
                ));
            }
        }
    }
    if !notes.is_empty() {
        let annotations =
            crate::defaults::ensure(crate::defaults::ensure(pod, "metadata"), "annotations");
        if !annotations.is_object() {
            *annotations = json!({});
        }
        annotations[ANNOTATION] = json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
    }
}

/// Sets `resources.<list>[k]` for each default `k` that is unset and not in `skip`; returns the
/// names set, sorted.
fn fill(
    resources: &mut Value,
    list: &str,
    defaults: &Map<String, Value>,
    skip: &[String],
) -> Vec<String> {
    let current = crate::defaults::ensure(resources, list);
    if !current.is_object() {
        *current = json!({});
    }
    let mut set = Vec::new();
    for (k, v) in defaults {
        if current.get(k).is_none() && !skip.contains(k) {
            current[k.as_str()] = v.clone();
            set.push(k.clone());
        }
    }
    if current.as_object().is_some_and(Map::is_empty) {
        resources.as_object_mut().map(|m| m.remove(list));
    }
    set
}

pub(super) async fn validate(
    registry: &Registry,
    attrs: &Attributes<'_>,
    obj: &Value,
) -> Result<()> {
    let ranges = limit_ranges(registry, attrs).await?;
    if ranges.is_empty() {
        return Ok(());
    }
    let mut errs = Vec::new();
    if attrs.is("", "Pod") {
        check_pod(&ranges, obj, &mut errs);
    } else {
        let requests = amounts(obj.pointer("/spec/resources/requests"));
        let none = Amounts::new();
        for item in items(&ranges, "PersistentVolumeClaim") {
            let t = item_type(item);
            for (list, which) in [("min", Bound::Min), ("max", Bound::Max)] {
                for (res, enforced) in &amounts(item.get(list)) {
                    let first = ("request", &requests);
                    errs.extend(bound(t, res, enforced, which, first, ("limit", &none)));
                }
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    errs.retain(|e| seen.insert(e.clone()));
    match errs.len() {
        0 => Ok(()),
        1 => Err(attrs.forbidden(&errs[0])),
        _ => Err(attrs.forbidden(&format!("[{}]", errs.join(", ")))),
    }
}

fn item_type(item: &Value) -> &str {
    item["type"].as_str().unwrap_or_default()
}

/// A resource list's parsable entries.
fn amounts(list: Option<&Value>) -> Amounts {
    list.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let text = v.as_str()?;
            Some((k.clone(), (text.to_string(), parse_milli(text).ok()?)))
        })
        .collect()
}

fn check_pod(ranges: &[Value], pod: &Value, errs: &mut Vec<String>) {
    let containers: Vec<(Amounts, Amounts)> = ["containers", "initContainers"]
        .iter()
        .filter_map(|l| pod.pointer(&format!("/spec/{l}")).and_then(Value::as_array))
        .flatten()
        .map(|c| {
            (
                amounts(c.pointer("/resources/requests")),
                amounts(c.pointer("/resources/limits")),
            )
        })
        .collect();
    for item in items(ranges, "Container") {
        for (requests, limits) in &containers {
            bounds(item, requests, limits, errs);
        }
    }
    let totals = pod_totals(pod);
    let (requests, limits) = (as_amounts(&totals.0), as_amounts(&totals.1));
    for item in items(ranges, "Pod") {
        bounds(item, &requests, &limits, errs);
    }
}

fn bounds(item: &Value, requests: &Amounts, limits: &Amounts, errs: &mut Vec<String>) {
    let t = item_type(item);
    for (res, enforced) in &amounts(item.get("min")) {
        errs.extend(bound(
            t,
            res,
            enforced,
            Bound::Min,
            ("request", requests),
            ("limit", limits),
        ));
    }
    for (res, enforced) in &amounts(item.get("max")) {
        errs.extend(bound(
            t,
            res,
            enforced,
            Bound::Max,
            ("limit", limits),
            ("request", requests),
        ));
    }
    for (res, enforced) in &amounts(item.get("maxLimitRequestRatio")) {
        errs.extend(ratio(t, res, enforced, requests, limits));
    }
}

/// A pod's requests and limits: the sum over its containers, raised to any init container's.
fn pod_totals(pod: &Value) -> (BTreeMap<String, i128>, BTreeMap<String, i128>) {
    let mut totals = (BTreeMap::new(), BTreeMap::new());
    for (l, sum) in [("containers", true), ("initContainers", false)] {
        let list = pod.pointer(&format!("/spec/{l}")).and_then(Value::as_array);
        for c in list.into_iter().flatten() {
            for (which, into) in [("requests", &mut totals.0), ("limits", &mut totals.1)] {
                for (k, (_, v)) in amounts(c.pointer(&format!("/resources/{which}"))) {
                    let slot = into.entry(k).or_insert(0);
                    *slot = if sum { *slot + v } else { (*slot).max(v) };
                }
            }
        }
    }
    totals
}

/// Totals rendered back as quantities, for the messages.
fn as_amounts(totals: &BTreeMap<String, i128>) -> Amounts {
    totals
        .iter()
        .map(|(k, v)| (k.clone(), (ekube_api::quota::format(k, *v), *v)))
        .collect()
}

type Enforced<'a> = &'a (String, i128);

/// Which side of a bound a value may not cross.
#[derive(Clone, Copy)]
enum Bound {
    Min,
    Max,
}

/// Upstream's min and max constraints on `res`: the `first` list must name it, and neither
/// list may cross `enforced`. A min checks requests first, a max limits first; a claim's max,
/// whose limits mean nothing, checks its requests only.
fn bound(
    t: &str,
    res: &str,
    (e, ev): Enforced,
    which: Bound,
    first: (&str, &Amounts),
    second: (&str, &Amounts),
) -> Option<String> {
    let (word, crosses): (&str, fn(i128, i128) -> bool) = match which {
        Bound::Min => ("minimum", |v, e| v < e),
        Bound::Max => ("maximum", |v, e| v > e),
    };
    if !first.1.contains_key(res) {
        return Some(format!(
            "{word} {res} usage per {t} is {e}.  No {} is specified",
            first.0
        ));
    }
    [first, second].into_iter().find_map(|(label, list)| {
        let (text, v) = list.get(res)?;
        crosses(*v, *ev)
            .then(|| format!("{word} {res} usage per {t} is {e}, but {label} is {text}"))
    })
}

fn ratio(
    t: &str,
    res: &str,
    (e, ev): Enforced,
    requests: &Amounts,
    limits: &Amounts,
) -> Option<String> {
    let ev = *ev;
    let rv = requests.get(res).map_or(0, |(_, v)| *v);
    let lv = limits.get(res).map_or(0, |(_, v)| *v);
    if rv == 0 {
        return Some(format!(
            "{res} max limit to request ratio per {t} is {e}, but no request is specified or request is 0"
        ));
    }
    if lv == 0 {
        return Some(format!(
            "{res} max limit to request ratio per {t} is {e}, but no limit is specified or limit is 0"
        ));
    }
    // Compared exactly: lv / rv > ev / 1000.
    (lv * 1000 > ev * rv).then(|| {
        format!(
            "{res} max limit to request ratio per {t} is {e}, but provided ratio is {:.6}",
            lv as f64 / rv as f64
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::tests::{attrs, registry};

    fn pods() -> &'static ekube_api::ResourceInfo {
        ekube_api::resources::find("", "v1", "pods").unwrap()
    }

    async fn with_limit_range(limits: Value) -> crate::admission::tests::TestRegistry {
        let reg = registry().await;
        let r = ekube_api::resources::find("", "v1", "limitranges").unwrap();
        let lr = json!({"metadata": {"name": "limits"}, "spec": {"limits": limits}});
        reg.create(r, Some("team"), lr, &Default::default())
            .await
            .unwrap();
        reg
    }

    #[tokio::test]
    async fn defaults_fill_what_containers_leave_unset() {
        let reg = with_limit_range(json!([{"type": "Container",
            "default": {"cpu": "500m", "memory": "256Mi"}, "defaultRequest": {"cpu": "100m"}}]))
        .await;
        let mut pod = json!({"metadata": {"name": "web"}, "spec": {
            "containers": [
                {"name": "app", "image": "x"},
                {"name": "own", "image": "x", "resources": {"limits": {"cpu": "2"}}},
            ],
            "initContainers": [{"name": "init", "image": "x"}],
        }});
        let a = attrs(pods(), Operation::Create);
        admit(&reg, &a, &mut pod).await.unwrap();
        let app = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(app["limits"], json!({"cpu": "500m", "memory": "256Mi"}));
        // The stored LimitRange was defaulted: memory's default request is its default limit.
        assert_eq!(app["requests"], json!({"cpu": "100m", "memory": "256Mi"}));
        let own = &pod["spec"]["containers"][1]["resources"];
        assert_eq!(own["limits"], json!({"cpu": "2", "memory": "256Mi"}));
        // Its own cpu limit is its cpu request (the API's default), not the LimitRange's.
        assert_eq!(own["requests"], json!({"memory": "256Mi"}));
        assert_eq!(
            pod["spec"]["initContainers"][0]["resources"]["limits"]["cpu"],
            "500m"
        );
        assert_eq!(
            pod["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app; \
             memory request for container own; memory limit for container own; \
             cpu, memory request for init container init; cpu, memory limit for init container init"
        );
    }

    #[tokio::test]
    async fn bounds_are_enforced_in_upstream_words() {
        let reg = with_limit_range(json!([
            {"type": "Container", "max": {"cpu": "500m"}, "min": {"memory": "64Mi"}, "maxLimitRequestRatio": {"memory": "2"}},
            {"type": "Pod", "max": {"memory": "1Gi"}},
        ]))
        .await;
        let a = attrs(pods(), Operation::Create);
        let pod = |resources: Value| {
            json!({"metadata": {"name": "web"}, "spec": {"containers": [
            {"name": "app", "image": "x", "resources": resources}]}})
        };
        let err = validate(
            &reg,
            &a,
            &pod(
                json!({"limits": {"cpu": "1", "memory": "128Mi"}, "requests": {"memory": "64Mi"}}),
            ),
        )
        .await
        .unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (
                403,
                "pods \"web\" is forbidden: maximum cpu usage per Container is 500m, but limit is 1"
            )
        );
        let err = validate(&reg, &a, &pod(json!({"limits": {"cpu": "500m", "memory": "4Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}})))
            .await
            .unwrap_err();
        assert_eq!(
            err.message,
            "pods \"web\" is forbidden: [memory max limit to request ratio per Container is 2, but provided ratio is 4.000000, maximum memory usage per Pod is 1Gi, but limit is 4Gi]"
        );
        let err = validate(&reg, &a, &pod(json!({"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"memory": "32Mi"}})))
            .await
            .unwrap_err();
        assert!(
            err.message
                .ends_with("minimum memory usage per Container is 64Mi, but request is 32Mi"),
            "{}",
            err.message
        );
        validate(&reg, &a, &pod(json!({"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"memory": "64Mi"}})))
            .await
            .unwrap();
    }
}
