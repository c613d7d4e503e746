//! The stored form of an object and the form clients see: [`encode`] writes the storage
//! version as compact JSON without `resourceVersion`; [`decode`] and [`decode_json`] give it
//! back in the resource's version with `apiVersion`, `kind` and the store's revision.

use ekube_api::ResourceInfo;
use ekube_api::selector::{FieldSelector, LabelSelector};
use serde_json::{Map, Value, json};

use super::members;
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

/// [`decode`]'s answer as JSON text.
pub fn decode_json(r: &ResourceInfo, kv: &KeyValue) -> String {
    let mut out = String::with_capacity(kv.value.len() + 64);
    write_json(r, kv, &mut out);
    out
}

/// Appends [`decode`]'s answer as JSON text to `out`. An object that needs no conversion is
/// not built: the stored JSON (compact, keys in order, as [`encode`] wrote it) is scanned once
/// and copied, with `apiVersion`, `kind` and `metadata.resourceVersion` set in their places,
/// which gives the same bytes at a fraction of the cost (what makes long lists fast).
pub fn write_json(r: &ResourceInfo, kv: &KeyValue, out: &mut String) {
    if crate::convert::stored_as_presented(r) && splice_json(r, kv, out) {
        return;
    }
    out.push_str(&decode(r, kv).to_string());
}

/// [`write_json`] by copying the stored text; `false` (and nothing written) when it is not a
/// JSON object with its keys in order, or one with a key this cannot compare (an escape).
fn splice_json(r: &ResourceInfo, kv: &KeyValue, out: &mut String) -> bool {
    let Ok(text) = std::str::from_utf8(&kv.value) else {
        return false;
    };
    let Some(top) = members::members(text) else {
        return false;
    };
    // `decode` gives an object for a `metadata` that is none (absent, null, a number…).
    let meta = match top.iter().find(|(k, _)| *k == "metadata") {
        Some((_, m)) if m.starts_with('{') => match members::members(m) {
            Some(m) => m,
            None => return false,
        },
        _ => Vec::new(),
    };
    let rv = kv.mod_revision;
    let mut api_version = |out: &mut String| out.push_str(&json!(r.api_version()).to_string());
    let mut kind = |out: &mut String| out.push_str(&json!(r.kind).to_string());
    let mut metadata = |out: &mut String| {
        let mut version = |out: &mut String| out.push_str(&format!("\"{rv}\""));
        members::write_object(out, &meta, &mut [("resourceVersion", &mut version)]);
    };
    members::write_object(
        out,
        &top,
        &mut [
            ("apiVersion", &mut api_version),
            ("kind", &mut kind),
            ("metadata", &mut metadata),
        ],
    );
    true
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
/// otherwise empty object; `None` when the stored value is not a JSON object or one on the way
/// cannot be read as text ([`members`]), and the object must be built whole.
fn selected_values(kv: &KeyValue, labels: &LabelSelector, fields: &FieldSelector) -> Option<Value> {
    let stored = members::members(std::str::from_utf8(&kv.value).ok()?)?;
    let mut head = Map::new();
    if !labels.is_empty() {
        pick(&stored, "metadata.labels".split('.'), &mut head)?;
    }
    for field in &fields.requirements {
        pick(&stored, field.key.split('.'), &mut head)?;
    }
    Some(Value::Object(head))
}

/// Copies the value at the dotted `path` among `members` into `into` at the same path, when
/// there is one. A path through something that is not an object leads nowhere, as a field
/// selector's does on the whole object. `None` when an object on the path cannot be read as
/// text.
fn pick(
    members: &[(&str, &str)],
    mut path: std::str::Split<'_, char>,
    into: &mut Map<String, Value>,
) -> Option<()> {
    let Some(first) = path.next() else {
        return Some(());
    };
    let Some(&(_, child)) = members.iter().find(|(k, _)| *k == first) else {
        return Some(());
    };
    if path.clone().next().is_none() {
        into.insert(first.to_owned(), serde_json::from_str(child).ok()?);
    } else if child.starts_with('{') {
        let inner_members = members::members(child)?;
        if let Value::Object(inner) = into
            .entry(first.to_owned())
            .or_insert_with(|| Value::Object(Map::new()))
        {
            pick(&inner_members, path, inner)?;
        }
    }
    Some(())
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
            // Keys out of order, twice, or escaped: the general path.
            br#"{"spec":{},"metadata":{"name":"p"}}"#.to_vec(),
            br#"{"metadata":{"name":"p","labels":{}},"spec":{}}"#.to_vec(),
            br#"{"metadata":{"name":"p"},"metadata":{"name":"q"}}"#.to_vec(),
            br#"{"metadata":{"n\u0061me":"p"},"spec":{}}"#.to_vec(),
            br#"{"k\u0069nd":"X","metadata":{}}"#.to_vec(),
            // What splicing fills in or replaces.
            br#"{}"#.to_vec(),
            br#"{"metadata":7,"spec":{"a":[1,{"b":null}]}}"#.to_vec(),
            br#"{"a":1,"metadata":{"name":"p","resourceVersion":"3","uid":"u"},"z":{}}"#.to_vec(),
            b"{\"metadata\":{\"name\":\"\xff\"}}".to_vec(),
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
        // Text that serde_json would write otherwise (an escape it does not need, spaces, a
        // number's form) is copied as stored: the same value, not the same bytes.
        let uncommon: Vec<&[u8]> = vec![
            br#"{"apiVersion":"v9","kind":"Other","metadata":{"a":"\"\u00e9"}}"#,
            br#" { "metadata" : { "name" : "p" } , "spec" : [ 1 , 2 ] } "#,
            br#"{"metadata":{},"spec":{"n":1.5e3,"m":-0,"s":"\ttab"}}"#,
        ];
        for value in uncommon {
            let kv = kv(value);
            let text = decode_json(pods, &kv);
            assert_eq!(
                serde_json::from_str::<Value>(&text).unwrap(),
                decode(pods, &kv),
                "{text}"
            );
        }
        assert!(
            splice_json(pods, &kv(&encode(pods, &stored)), &mut String::new()),
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
            // Read whole: an escaped key, members out of order.
            br#"{"metadata":{"l\u0061bels":{"app":"web"}},"spec":{"nodeName":"n1"}}"#.to_vec(),
            br#"{"spec":{"nodeName":"n1"},"metadata":{"labels":{"app":"web"},"name":"p"}}"#
                .to_vec(),
            br#"{"metadata":{"labels":{"app":"web"}},"spec":{"node\u004eame":"n1"}}"#.to_vec(),
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
