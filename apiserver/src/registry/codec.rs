//! The stored form of an object and the form clients see: [`encode`] writes the storage
//! version as compact JSON without `resourceVersion`; [`decode`] and [`decode_json`] give it
//! back in the resource's version with `apiVersion`, `kind` and the store's revision.

use std::collections::{BTreeMap, HashMap};

use ekube_api::ResourceInfo;
use ekube_api::selector::{FieldSelector, LabelSelector};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::storage::KeyValue;

/// Decodes a stored value into the object clients see. A value that is not a JSON object (a
/// store written by something else) reads as an empty object rather than failing the request.
pub fn decode(r: &ResourceInfo, kv: &KeyValue) -> Value {
    let mut obj = match serde_json::from_slice(&kv.value) {
        Ok(obj @ Value::Object(_)) => obj,
        _ => json!({}),
    };
    obj = crate::convert::from_storage(r, obj);
    obj["apiVersion"] = json!(r.api_version());
    obj["kind"] = json!(r.kind);
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
    obj
}

/// [`decode`]'s answer as JSON text. An object that needs no conversion is not built: the
/// stored JSON (compact, keys in order, as [`encode`] wrote it) gets `apiVersion`, `kind` and
/// `metadata.resourceVersion` set around its untouched members, which gives the same bytes
/// at a fraction of the cost (what makes long lists fast).
pub fn decode_json(r: &ResourceInfo, kv: &KeyValue) -> String {
    if crate::convert::stored_as_presented(r)
        && let Some(text) = splice_json(r, kv)
    {
        return text;
    }
    decode(r, kv).to_string()
}

/// The stored object with its top-level members kept as raw JSON; `None` when it is not a
/// JSON object with an object (or no) `metadata`.
fn splice_json(r: &ResourceInfo, kv: &KeyValue) -> Option<String> {
    use serde_json::value::{RawValue, to_raw_value};
    let mut top: BTreeMap<String, &RawValue> = serde_json::from_slice(&kv.value).ok()?;
    let mut meta: BTreeMap<String, &RawValue> = match top.get("metadata") {
        Some(m) => serde_json::from_str(m.get()).ok()?,
        None => BTreeMap::new(),
    };
    let rv = to_raw_value(&kv.mod_revision.to_string()).ok()?;
    meta.insert("resourceVersion".into(), &rv);
    let meta = to_raw_value(&meta).ok()?;
    let api_version = to_raw_value(&r.api_version()).ok()?;
    let kind = to_raw_value(r.kind).ok()?;
    top.insert("apiVersion".into(), &api_version);
    top.insert("kind".into(), &kind);
    top.insert("metadata".into(), &meta);
    serde_json::to_string(&top).ok()
}

/// Whether the stored object `kv` passes `labels` and `fields`. Only the values they read are
/// built (`metadata.labels`, and each field's path), so a selective list over many objects
/// builds none of them whole; a kind stored in another form than `r`'s (an events.k8s.io
/// Event, an autoscaling/v1 HorizontalPodAutoscaler) is decoded whole, as its fields sit
/// elsewhere in the stored form.
pub fn selected(
    r: &ResourceInfo,
    kv: &KeyValue,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> bool {
    let head = crate::convert::stored_as_presented(r)
        .then(|| selected_values(kv, labels, fields))
        .flatten()
        .unwrap_or_else(|| decode(r, kv));
    labels.matches_object(&head) && fields.matches_object(&head)
}

/// The values of the stored object that `labels` and `fields` read, at their paths in an
/// otherwise empty object; `None` when the stored value is not a JSON object.
fn selected_values(kv: &KeyValue, labels: &LabelSelector, fields: &FieldSelector) -> Option<Value> {
    let stored: Members = serde_json::from_slice(&kv.value).ok()?;
    let mut head = Map::new();
    if !labels.is_empty() {
        pick(&stored, "metadata.labels".split('.'), &mut head);
    }
    for field in &fields.requirements {
        pick(&stored, field.key.split('.'), &mut head);
    }
    Some(Value::Object(head))
}

/// An object's members, each left as the JSON text it is.
type Members<'a> = HashMap<String, &'a RawValue>;

/// Copies the value at the dotted `path` among `members` into `into` at the same path, when there is
/// one. A path through something that is not an object leads nowhere, as a field selector's
/// does on the whole object.
fn pick<'p>(members: &Members, mut path: std::str::Split<'p, char>, into: &mut Map<String, Value>) {
    let Some(first) = path.next() else {
        return;
    };
    let Some(child) = members.get(first) else {
        return;
    };
    if path.clone().next().is_none() {
        if let Ok(value) = serde_json::from_str(child.get()) {
            into.insert(first.to_owned(), value);
        }
    } else if let Ok(inner_members) = serde_json::from_str::<Members>(child.get())
        && let Value::Object(inner) = into
            .entry(first.to_owned())
            .or_insert_with(|| Value::Object(Map::new()))
    {
        pick(&inner_members, path, inner);
    }
}

/// The largest object stored, encoded: etcd's default request limit, which upstream objects
/// live within, so what ekube stores also fits an etcd-backed cluster.
pub const MAX_OBJECT_BYTES: usize = 3 * 512 * 1024;

pub(crate) fn encode(r: &ResourceInfo, obj: &Value) -> Vec<u8> {
    let mut stored = crate::convert::to_storage(r, obj);
    if let Some(meta) = stored.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("selfLink");
    }
    stored.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(value: &[u8]) -> KeyValue {
        KeyValue {
            key: "/registry/pods/default/p".into(),
            value: value.to_vec(),
            create_revision: 3,
            mod_revision: 7,
        }
    }

    #[test]
    fn decode_json_writes_what_serialising_decode_writes() {
        let pods = ekube_api::resources::find("", "v1", "pods").unwrap();
        let stored = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "labels": {"a/b": "c\"d\u{e9}"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "args": ["a\\b", "\n"]}],
                     "priority": -5, "overhead": {"cpu": 0.25}},
            "status": {},
        });
        let cases: Vec<Vec<u8>> = vec![
            encode(pods, &stored),
            encode(pods, &json!({"spec": {}})),
            br#"{"metadata":null,"spec":{}}"#.to_vec(),
            br#"{"apiVersion":"v0","kind":"Old","metadata":{"resourceVersion":"1"}}"#.to_vec(),
            br#"["an array"]"#.to_vec(),
            b"not json".to_vec(),
        ];
        for value in cases {
            let kv = kv(&value);
            assert_eq!(
                decode_json(pods, &kv),
                decode(pods, &kv).to_string(),
                "{}",
                String::from_utf8_lossy(&value)
            );
        }
        assert!(
            splice_json(pods, &kv(&encode(pods, &stored))).is_some(),
            "an object as encode writes it is spliced, not built"
        );
    }

    #[test]
    fn selecting_on_the_members_read_agrees_with_the_whole_object() {
        let pods = ekube_api::resources::find("", "v1", "pods").unwrap();
        let pod = json!({
            "metadata": {"name": "p", "namespace": "default", "labels": {"app": "web", "tier": "1"}},
            "spec": {"nodeName": "n1", "hostNetwork": true, "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running"},
        });
        let stored: Vec<Vec<u8>> = vec![
            encode(pods, &pod),
            encode(pods, &json!({"metadata": {"name": "q"}, "spec": {}})),
            br#"{"metadata":null,"spec":{}}"#.to_vec(),
            br#"{"metadata":{"labels":null,"name":"p"},"spec":"text","status":[1]}"#.to_vec(),
            br#"{"metadata":{"labels":{"app":7}},"spec":{"nodeName":null}}"#.to_vec(),
            br#"[1,2]"#.to_vec(),
            b"not json".to_vec(),
        ];
        let selectors = [
            ("app=web", ""),
            ("app!=web", ""),
            ("tier in (1,2),!missing", ""),
            ("", "spec.nodeName=n1"),
            ("", "spec.nodeName="),
            ("", "spec.hostNetwork=true,status.phase!=Failed"),
            ("app", "metadata.name=p,metadata.namespace=default"),
            ("", "metadata.name=q"),
        ];
        for value in &stored {
            let kv = kv(value);
            let whole = decode(pods, &kv);
            for (l, f) in selectors {
                let labels = LabelSelector::parse(l).unwrap();
                let fields = FieldSelector::parse(f).unwrap();
                assert_eq!(
                    selected(pods, &kv, &labels, &fields),
                    labels.matches_object(&whole) && fields.matches_object(&whole),
                    "{l:?} {f:?} on {}",
                    String::from_utf8_lossy(value)
                );
            }
        }
        let web = LabelSelector::parse("app=web").unwrap();
        assert!(selected(
            pods,
            &kv(&stored[0]),
            &web,
            &FieldSelector::default()
        ));
        assert!(!selected(
            pods,
            &kv(&stored[1]),
            &web,
            &FieldSelector::default()
        ));
    }

    /// events.k8s.io Events are stored as core Events: what a list sends and what a selector
    /// reads is the renamed form, never the stored one.
    #[test]
    fn an_events_api_event_is_presented_renamed() {
        let core = ekube_api::resources::find("", "v1", "events").unwrap();
        let events = ekube_api::resources::find("events.k8s.io", "v1", "events").unwrap();
        let stored = encode(
            core,
            &json!({
                "metadata": {"name": "e", "namespace": "default"},
                "involvedObject": {"kind": "Pod", "name": "p"},
                "reportingComponent": "kubelet",
                "message": "started",
            }),
        );
        let kv = kv(&stored);
        let text: Value = serde_json::from_str(&decode_json(events, &kv)).unwrap();
        assert_eq!(text, decode(events, &kv));
        assert_eq!(text["regarding"]["name"], "p", "{text}");
        assert_eq!(text["note"], "started", "{text}");
        let none = LabelSelector::default();
        let fields = |f: &str| FieldSelector::parse(f).unwrap();
        assert!(selected(events, &kv, &none, &fields("regarding.name=p")));
        assert!(!selected(events, &kv, &none, &fields("regarding.name=q")));
        assert!(selected(
            events,
            &kv,
            &none,
            &fields("reportingController=kubelet")
        ));
        assert!(selected(core, &kv, &none, &fields("involvedObject.name=p")));
    }
}
