//! Two API versions of one stored resource: `events.k8s.io/v1` Events are stored as core/v1
//! Events, so `kubectl describe` (which reads core events) shows what controllers record
//! through either API, as in Kubernetes; and `autoscaling/v1` HorizontalPodAutoscalers are
//! stored as `autoscaling/v2` ones (see [`hpa`]).

use ekube_api::ResourceInfo;
use serde_json::{Map, Value};

pub mod hpa;

/// Field renames between events.k8s.io/v1 (left) and core/v1 (right).
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("note", "message"),
    ("regarding", "involvedObject"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn is_events_api(r: &ResourceInfo) -> bool {
    r.group == "events.k8s.io" && r.kind == "Event"
}

fn rename(obj: &Value, forward: bool) -> Value {
    let Some(map) = obj.as_object() else {
        return obj.clone();
    };
    let mut out = Map::new();
    for (k, v) in map {
        let renamed = EVENT_FIELDS.iter().find_map(|(events, core)| {
            let (from, to) = if forward {
                (events, core)
            } else {
                (core, events)
            };
            (k == from).then_some(*to)
        });
        out.insert(renamed.unwrap_or(k).to_string(), v.clone());
    }
    Value::Object(out)
}

fn is_hpa_v1(r: &ResourceInfo) -> bool {
    r.group == "autoscaling" && r.version == "v1" && r.kind == "HorizontalPodAutoscaler"
}

/// Whether `r` is converted to another version's schema before it is defaulted, validated and
/// stored (its storage version is [`storage_resource`]). Events are not: both versions are
/// checked as they are written and only renamed in storage.
pub fn converts(r: &ResourceInfo) -> bool {
    is_hpa_v1(r)
}

/// Whether objects of `r` are presented as they are stored ([`from_storage`] changes nothing),
/// so that the stored JSON can be sent, or read by a selector, without building it.
pub fn stored_as_presented(r: &ResourceInfo) -> bool {
    !is_events_api(r) && !is_hpa_v1(r)
}

/// The resource whose schema objects of `r` are stored in.
pub fn storage_resource(r: &ResourceInfo) -> ResourceInfo {
    match ekube_api::resources::find(r.group, hpa::STORAGE_VERSION, r.plural) {
        Some(storage) if converts(r) => *storage,
        _ => *r,
    }
}

/// The stored form of an object of resource `r`.
pub fn to_storage(r: &ResourceInfo, obj: &Value) -> Value {
    if is_events_api(r) {
        rename(obj, true)
    } else if is_hpa_v1(r) {
        hpa::v1_to_v2(obj)
    } else {
        obj.clone()
    }
}

/// The form of a stored object as resource `r` presents it.
pub fn from_storage(r: &ResourceInfo, obj: Value) -> Value {
    if is_events_api(r) {
        rename(&obj, false)
    } else if is_hpa_v1(r) {
        hpa::v2_to_v1(&obj)
    } else {
        obj
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_round_trip() {
        let r = ekube_api::resources::find("events.k8s.io", "v1", "events").unwrap();
        let ev = json!({"metadata": {"name": "e"}, "note": "hi", "regarding": {"kind": "Pod", "name": "p"}, "reason": "Started"});
        let stored = to_storage(r, &ev);
        assert_eq!(stored["message"], "hi");
        assert_eq!(stored["involvedObject"]["name"], "p");
        assert_eq!(from_storage(r, stored), ev);
    }
}
