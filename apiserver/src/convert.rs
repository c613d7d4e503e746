//! Two API versions of one stored resource: `events.k8s.io/v1` Events are stored as core/v1
//! Events, so `kubectl describe` (which reads core events) shows what controllers record
//! through either API, as in Kubernetes.

use ekube_api::ResourceInfo;
use serde_json::{Map, Value};

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

/// The stored form of an object of resource `r`.
pub fn to_storage(r: &ResourceInfo, obj: &Value) -> Value {
    if is_events_api(r) {
        rename(obj, true)
    } else {
        obj.clone()
    }
}

/// The form of a stored object as resource `r` presents it.
pub fn from_storage(r: &ResourceInfo, obj: Value) -> Value {
    if is_events_api(r) {
        rename(&obj, false)
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
