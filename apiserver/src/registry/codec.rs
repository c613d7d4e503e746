//! The stored form of an object and the form clients see: [`encode`] writes the storage
//! version as compact JSON without `resourceVersion`; [`decode`] and [`decode_json`] give it
//! back in the resource's version with `apiVersion`, `kind` and the store's revision.

use std::collections::BTreeMap;

use ekube_api::ResourceInfo;
use serde_json::{Value, json};

use crate::storage::KeyValue;

/// Decodes a stored value into the object clients see.
pub fn decode(r: &ResourceInfo, kv: &KeyValue) -> Value {
    let mut obj: Value = serde_json::from_slice(&kv.value).unwrap_or_else(|_| json!({}));
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
    if !crate::convert::converts(r)
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
}
