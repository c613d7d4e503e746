//! `/openapi/v2` as protocol buffers (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`),
//! the only form of the v2 document that kubectl reads: it validates objects the server cannot
//! validate for it (the items of a `kind: List`) against this document's definitions.
//!
//! The messages are gnostic's `openapi.v2.Document`; only what the JSON document holds is
//! encoded (swagger, info, definitions), each schema field by its field number, extensions and
//! defaults as YAML in `Any.yaml` as gnostic writes them.

use serde_json::{Map, Value};

/// The content type of the answer. Clients ask with `…spec.v2@v1.0+protobuf`, but Go's
/// media-type parser refuses the `@` in a response, so upstream answers with this spelling.
pub const CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// Whether an `Accept` header asks for the protobuf form (either spelling).
pub fn accepted(accept: &str) -> bool {
    accept.split(',').any(|t| {
        let t = t.split(';').next().unwrap_or_default().trim();
        t == CONTENT_TYPE || t == "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
    })
}

/// Encodes the JSON v2 document `doc`.
pub fn encode(doc: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, 1, doc["swagger"].as_str().unwrap_or("2.0"));
    if let Some(info) = doc.get("info").and_then(Value::as_object) {
        let mut m = Vec::new();
        for (field, key) in [(1, "title"), (2, "version"), (3, "description")] {
            if let Some(s) = info.get(key).and_then(Value::as_str) {
                string(&mut m, field, s);
            }
        }
        message(&mut out, 2, &m);
    }
    if let Some(defs) = doc.get("definitions").and_then(Value::as_object) {
        message(&mut out, 9, &named_schemas(defs));
    }
    out
}

/// `Definitions` and `Properties` alike: `repeated NamedSchema additional_properties = 1`.
fn named_schemas(map: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, schema) in map {
        let mut named = Vec::new();
        string(&mut named, 1, name);
        message(&mut named, 2, &schema_message(schema));
        message(&mut out, 1, &named);
    }
    out
}

/// One `Schema`.
fn schema_message(schema: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(map) = schema.as_object() else {
        return out;
    };
    for (key, value) in map {
        match (key.as_str(), value) {
            ("$ref", Value::String(s)) => string(&mut out, 1, s),
            ("format", Value::String(s)) => string(&mut out, 2, s),
            ("title", Value::String(s)) => string(&mut out, 3, s),
            ("description", Value::String(s)) => string(&mut out, 4, s),
            ("default", v) => message(&mut out, 5, &any(v)),
            ("multipleOf", v) => double(&mut out, 6, v),
            ("maximum", v) => double(&mut out, 7, v),
            ("exclusiveMaximum", Value::Bool(b)) => varint(&mut out, 8, u64::from(*b)),
            ("minimum", v) => double(&mut out, 9, v),
            ("exclusiveMinimum", Value::Bool(b)) => varint(&mut out, 10, u64::from(*b)),
            ("maxLength", v) => int(&mut out, 11, v),
            ("minLength", v) => int(&mut out, 12, v),
            ("pattern", Value::String(s)) => string(&mut out, 13, s),
            ("maxItems", v) => int(&mut out, 14, v),
            ("minItems", v) => int(&mut out, 15, v),
            ("uniqueItems", Value::Bool(b)) => varint(&mut out, 16, u64::from(*b)),
            ("maxProperties", v) => int(&mut out, 17, v),
            ("minProperties", v) => int(&mut out, 18, v),
            ("required", Value::Array(names)) => {
                for n in names.iter().filter_map(Value::as_str) {
                    string(&mut out, 19, n);
                }
            }
            ("enum", Value::Array(values)) => {
                for v in values {
                    message(&mut out, 20, &any(v));
                }
            }
            ("additionalProperties", v) => {
                let mut item = Vec::new();
                match v {
                    Value::Bool(b) => varint(&mut item, 2, u64::from(*b)),
                    other => message(&mut item, 1, &schema_message(other)),
                }
                message(&mut out, 21, &item);
            }
            ("type", v) => {
                let mut item = Vec::new();
                for t in one_or_many(v).filter_map(Value::as_str) {
                    string(&mut item, 1, t);
                }
                message(&mut out, 22, &item);
            }
            ("items", v) => {
                let mut item = Vec::new();
                for s in one_or_many(v) {
                    message(&mut item, 1, &schema_message(s));
                }
                message(&mut out, 23, &item);
            }
            ("allOf", Value::Array(all)) => {
                for s in all {
                    message(&mut out, 24, &schema_message(s));
                }
            }
            ("properties", Value::Object(props)) => message(&mut out, 25, &named_schemas(props)),
            ("readOnly", Value::Bool(b)) => varint(&mut out, 27, u64::from(*b)),
            (ext, v) if ext.starts_with("x-") => {
                let mut named = Vec::new();
                string(&mut named, 1, ext);
                message(&mut named, 2, &any(v));
                message(&mut out, 31, &named);
            }
            // Anything else has no place in a v2 schema (JSON Schema keywords the generator
            // may leave, e.g. `nullable`); readers would drop it too.
            _ => {}
        }
    }
    out
}

fn one_or_many(v: &Value) -> Box<dyn Iterator<Item = &Value> + '_> {
    match v {
        Value::Array(items) => Box::new(items.iter()),
        other => Box::new(std::iter::once(other)),
    }
}

/// `Any { yaml = 2 }`: the value written as YAML.
fn any(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let yaml = serde_yaml::to_string(v).unwrap_or_default();
    string(&mut out, 2, &yaml);
    out
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, 0);
    put_varint(out, v);
}

fn int(out: &mut Vec<u8>, field: u32, v: &Value) {
    if let Some(n) = v.as_i64() {
        varint(out, field, n as u64);
    }
}

fn double(out: &mut Vec<u8>, field: u32, v: &Value) {
    if let Some(n) = v.as_f64() {
        key(out, field, 1);
        out.extend_from_slice(&n.to_le_bytes());
    }
}

fn bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    key(out, field, 2);
    put_varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn string(out: &mut Vec<u8>, field: u32, s: &str) {
    bytes(out, field, s.as_bytes());
}

fn message(out: &mut Vec<u8>, field: u32, m: &[u8]) {
    bytes(out, field, m);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn encodes_fields_by_number() {
        let doc = json!({"swagger": "2.0", "info": {"title": "T", "version": "v"},
            "definitions": {"a.B": {"type": "object", "required": ["x"],
                "properties": {"x": {"type": "string"}},
                "x-kubernetes-group-version-kind": [{"group": "", "kind": "B", "version": "v1"}]}}});
        let out = encode(&doc);
        // swagger = 1 ("2.0"), then info = 2 {title = 1, version = 2}.
        assert_eq!(&out[..5], b"\x0a\x032.0");
        assert_eq!(&out[5..13], b"\x12\x06\x0a\x01T\x12\x01v");
        // definitions = 9 holds NamedSchema {name = 1 "a.B", value = 2 Schema}.
        assert_eq!(out[13], 9 << 3 | 2);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("a.B"));
        assert!(text.contains("x-kubernetes-group-version-kind"));
        assert!(text.contains("kind: B"), "the extension's value is YAML");
    }

    #[test]
    fn accept_header_forms() {
        assert!(accepted(CONTENT_TYPE));
        assert!(accepted(
            "application/json;q=0.9, application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
        ));
        assert!(!accepted("application/json"));
    }
}
