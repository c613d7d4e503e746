//! OpenAPI documents generated from the typed model: `/openapi/v2` and `/openapi/v3` (a root
//! index plus one document per group-version).
//!
//! Schemas come from the `k8s-openapi` types (with their upstream descriptions), named as
//! Kubernetes names them (`io.k8s.api.core.v1.Pod`) and tagged with
//! `x-kubernetes-group-version-kind`, which is what `kubectl explain` walks. Each kind's item
//! path lists a PATCH operation that accepts `fieldValidation`, which is how kubectl decides the
//! server validates fields itself instead of downloading the v2 document.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use ekube_api::resources::{RESOURCES, ResourceInfo};
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::strategy::{KindVisitor, with_kind};

mod metrics;
pub mod v2proto;

/// The kinds the documents describe: every stored resource, the create-only reviews
/// (`kubectl explain subjectaccessreviews` reads them too) and the read-only resource metrics.
fn described() -> &'static [ResourceInfo] {
    static ALL: OnceLock<Vec<ResourceInfo>> = OnceLock::new();
    ALL.get_or_init(|| {
        let reviews = crate::authz::review::VIRTUAL.iter().map(|v| ResourceInfo {
            group: v.group,
            version: v.version,
            kind: v.kind,
            plural: v.plural,
            singular: Box::leak(v.kind.to_lowercase().into_boxed_str()),
            namespaced: v.namespaced,
            short_names: &[],
            categories: &[],
            status: false,
            scale: false,
            review: true,
        });
        let metrics = [
            ("NodeMetrics", "nodes", false),
            ("PodMetrics", "pods", true),
        ]
        .map(|(kind, plural, namespaced)| ResourceInfo {
            group: crate::resource_metrics::GROUP,
            version: crate::resource_metrics::VERSION,
            kind,
            plural,
            singular: Box::leak(kind.to_lowercase().into_boxed_str()),
            namespaced,
            short_names: &[],
            categories: &[],
            status: false,
            scale: false,
            review: false,
        });
        RESOURCES
            .iter()
            .copied()
            .chain(reviews)
            .chain(metrics)
            .collect()
    })
}

/// [`with_kind`] for every described kind: the reviews have types but no storage.
fn with_described_kind<V: KindVisitor>(r: &ResourceInfo, visitor: V) -> Option<V::Output> {
    use k8s_openapi::api::authentication::v1 as authn;
    use k8s_openapi::api::authorization::v1 as authz;
    Some(match (r.group, r.kind) {
        ("authorization.k8s.io", "SubjectAccessReview") => {
            visitor.visit::<authz::SubjectAccessReview>()
        }
        ("authorization.k8s.io", "SelfSubjectAccessReview") => {
            visitor.visit::<authz::SelfSubjectAccessReview>()
        }
        ("authorization.k8s.io", "LocalSubjectAccessReview") => {
            visitor.visit::<authz::LocalSubjectAccessReview>()
        }
        ("authorization.k8s.io", "SelfSubjectRulesReview") => {
            visitor.visit::<authz::SelfSubjectRulesReview>()
        }
        ("authentication.k8s.io", "SelfSubjectReview") => {
            visitor.visit::<authn::SelfSubjectReview>()
        }
        ("metrics.k8s.io", "NodeMetrics") => visitor.visit::<metrics::NodeMetrics>(),
        ("metrics.k8s.io", "PodMetrics") => visitor.visit::<metrics::PodMetrics>(),
        _ => return with_kind(r.group, r.version, r.kind, visitor),
    })
}

/// The groups and versions of the described kinds, in order of first appearance.
fn described_groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in described() {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

struct AddSchema<'a>(&'a mut SchemaGenerator);

impl KindVisitor for AddSchema<'_> {
    type Output = String;
    fn visit<T: DeserializeOwned + Serialize + schemars::JsonSchema>(self) -> String {
        self.0.subschema_for::<T>();
        T::schema_name().into_owned()
    }
}

fn gvk(r: &ResourceInfo) -> Value {
    json!({"group": r.group, "version": r.version, "kind": r.kind})
}

/// Rewrites `{"$ref": x, "description": d}` into `{"allOf": [{"$ref": x}], "description": d}`,
/// the form Kubernetes publishes (siblings of `$ref` are ignored by OpenAPI readers).
fn wrap_refs(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.contains_key("$ref") && map.len() > 1 {
                let r = map.remove("$ref").expect("checked");
                map.insert("allOf".into(), json!([{"$ref": r}]));
            }
            map.values_mut().for_each(wrap_refs);
        }
        Value::Array(items) => items.iter_mut().for_each(wrap_refs),
        _ => {}
    }
}

/// Definitions for `resources`, with refs under `prefix` (`#/definitions/` or `#/components/schemas/`).
fn definitions<'a>(
    resources: impl Iterator<Item = &'a ResourceInfo>,
    v3: bool,
) -> Map<String, Value> {
    let settings = if v3 {
        SchemaSettings::openapi3()
    } else {
        SchemaSettings::draft07()
    };
    let mut generator = settings.into_generator();
    let mut kinds = Vec::new();
    for r in resources {
        if let Some(name) = with_described_kind(r, AddSchema(&mut generator)) {
            kinds.push((name, r));
        }
    }
    let mut defs = generator.take_definitions(true);
    // Int-or-string types carry no `type`; Kubernetes publishes them as strings, which is what
    // `kubectl explain` needs to render the fields that use them.
    for schema in defs.values_mut().filter_map(Value::as_object_mut) {
        if schema.contains_key("x-kubernetes-int-or-string") && !schema.contains_key("type") {
            schema.insert("type".into(), json!("string"));
            schema.insert("format".into(), json!("int-or-string"));
        }
    }
    for (name, r) in kinds {
        if let Some(Value::Object(schema)) = defs.get_mut(&name) {
            schema.insert("x-kubernetes-group-version-kind".into(), json!([gvk(r)]));
            // `k8s-openapi` marks the (non-optional) `metadata` required; upstream's schemas
            // never do, and kubectl validates against them: a review sent without metadata,
            // as clients send one, must pass.
            let required = schema.get_mut("required").and_then(Value::as_array_mut);
            if let Some(required) = required {
                required.retain(|f| f != "metadata");
                if required.is_empty() {
                    schema.remove("required");
                }
            }
        }
    }
    let mut value = Value::Object(defs);
    wrap_refs(&mut value);
    match value {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn base_path(r: &ResourceInfo) -> String {
    if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    }
}

fn operations(r: &ResourceInfo, schema_ref: &str) -> Map<String, Value> {
    let mut paths = Map::new();
    let ns = if r.namespaced {
        "/namespaces/{namespace}"
    } else {
        ""
    };
    let collection = format!("{}{ns}/{}", base_path(r), r.plural);
    if r.review {
        // Create-only: nothing to list, read or change.
        let create = json!({
            "operationId": format!("create{}", r.kind),
            "x-kubernetes-group-version-kind": gvk(r),
            "parameters": [],
            "requestBody": {"content": {"application/json": {"schema": {"$ref": schema_ref}}}},
            "responses": {"201": {"description": "Created", "content": {"application/json": {"schema": {"$ref": schema_ref}}}}},
        });
        paths.insert(collection, json!({"post": create}));
        return paths;
    }
    let item = format!("{collection}/{{name}}");
    let param = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string"}, "uniqueItems": true});
    let body = json!({"content": {"application/json": {"schema": {"$ref": schema_ref}}}});
    let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": schema_ref}}}}});
    let op = |id: &str, params: Vec<Value>, with_body: bool| {
        let mut o = json!({
            "operationId": id,
            "x-kubernetes-group-version-kind": gvk(r),
            "parameters": params,
            "responses": ok,
        });
        if with_body {
            o["requestBody"] = body.clone();
        }
        o
    };
    let write = || {
        vec![
            param("dryRun"),
            param("fieldManager"),
            param("fieldValidation"),
        ]
    };
    if r.group == crate::resource_metrics::GROUP {
        // Read-only: computed from the kubelets' figures.
        paths.insert(
            collection,
            json!({"get": op(&format!("list{}", r.kind), vec![param("labelSelector")], false)}),
        );
        paths.insert(
            item,
            json!({"get": op(&format!("read{}", r.kind), vec![], false)}),
        );
        return paths;
    }
    paths.insert(
        collection,
        json!({
            "get": op(&format!("list{}", r.kind), vec![param("labelSelector"), param("fieldSelector"), param("watch")], false),
            "post": op(&format!("create{}", r.kind), write(), true),
        }),
    );
    let mut patch_params = write();
    patch_params.push(param("force"));
    paths.insert(
        item,
        json!({
            "get": op(&format!("read{}", r.kind), vec![], false),
            "put": op(&format!("replace{}", r.kind), write(), true),
            "patch": op(&format!("patch{}", r.kind), patch_params, true),
            "delete": op(&format!("delete{}", r.kind), vec![param("dryRun"), param("gracePeriodSeconds"), param("propagationPolicy")], false),
        }),
    );
    paths
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

struct Documents {
    v2: String,
    v3_root: String,
    /// `api/v1` → (hash, document).
    v3: BTreeMap<String, (String, String)>,
}

fn build() -> Documents {
    let mut v3 = BTreeMap::new();
    for (group, versions) in described_groups() {
        for version in versions {
            let in_gv = || {
                described()
                    .iter()
                    .filter(move |r| r.group == group && r.version == version)
            };
            let schemas = definitions(in_gv(), true);
            let mut paths = Map::new();
            for r in in_gv() {
                let name = with_described_kind(r, NameOnly).unwrap_or_default();
                paths.extend(operations(r, &format!("#/components/schemas/{name}")));
            }
            let doc = json!({
                "openapi": "3.0.0",
                "info": {"title": "Kubernetes", "version": crate::KUBE_VERSION},
                "paths": paths,
                "components": {"schemas": schemas},
            })
            .to_string();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            doc.hash(&mut h);
            v3.insert(
                gv_path(group, version),
                (format!("{:016X}", h.finish()), doc),
            );
        }
    }
    let root_paths: Map<String, Value> = v3
        .iter()
        .map(|(path, (hash, _))| {
            (
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
            )
        })
        .collect();
    let mut v2_paths = Map::new();
    for r in described() {
        let name = with_described_kind(r, NameOnly).unwrap_or_default();
        v2_paths.extend(operations(r, &format!("#/definitions/{name}")));
    }
    let v2 = json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": crate::KUBE_VERSION},
        "paths": v2_paths,
        "definitions": definitions(described().iter(), false),
    })
    .to_string();
    Documents {
        v2,
        v3_root: json!({"paths": root_paths}).to_string(),
        v3,
    }
}

struct NameOnly;

impl KindVisitor for NameOnly {
    type Output = String;
    fn visit<T: DeserializeOwned + Serialize + schemars::JsonSchema>(self) -> String {
        T::schema_name().into_owned()
    }
}

fn docs() -> &'static Documents {
    static DOCS: OnceLock<Documents> = OnceLock::new();
    DOCS.get_or_init(build)
}

pub fn v2() -> &'static str {
    &docs().v2
}

/// The v2 document as protocol buffers ([`v2proto`]), built on first use.
pub fn v2_protobuf() -> &'static [u8] {
    static PROTO: OnceLock<Vec<u8>> = OnceLock::new();
    PROTO.get_or_init(|| {
        let doc: Value = serde_json::from_str(v2()).unwrap_or_default();
        v2proto::encode(&doc)
    })
}

pub fn v3_root() -> &'static str {
    &docs().v3_root
}

/// The document for `api/v1` or `apis/<group>/<version>`.
pub fn v3(path: &str) -> Option<&'static str> {
    docs()
        .v3
        .get(path.trim_matches('/'))
        .map(|(_, doc)| doc.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_core_has_pod_with_gvk_and_field_validation() {
        let doc: Value = serde_json::from_str(v3("api/v1").unwrap()).unwrap();
        let pod = &doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
        assert_eq!(pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod");
        assert!(
            doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
                .is_object()
        );
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        let root: Value = serde_json::from_str(v3_root()).unwrap();
        assert!(
            root["paths"]["apis/apps/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/apis/apps/v1?hash=")
        );
        let v2: Value = serde_json::from_str(v2()).unwrap();
        assert!(v2["definitions"]["io.k8s.api.apps.v1.Deployment"].is_object());
    }

    /// Every kind a client may send, stored or not, has a schema `kubectl explain` finds.
    #[test]
    fn every_served_kind_is_described() {
        for r in described() {
            let doc: Value =
                serde_json::from_str(v3(&gv_path(r.group, r.version)).unwrap()).unwrap();
            let described = doc["components"]["schemas"]
                .as_object()
                .unwrap()
                .values()
                .any(|s| {
                    s["x-kubernetes-group-version-kind"]
                        .as_array()
                        .is_some_and(|g| g.iter().any(|g| g["kind"] == r.kind))
                });
            assert!(described, "{} {} has no schema", r.api_version(), r.kind);
        }
        let doc: Value = serde_json::from_str(v3("apis/authorization.k8s.io/v1").unwrap()).unwrap();
        let review = &doc["paths"]["/apis/authorization.k8s.io/v1/subjectaccessreviews"];
        assert!(
            review["post"].is_object() && review["get"].is_null(),
            "{review}"
        );
        // Clients send reviews without metadata: the schema must not require it.
        let v2: Value = serde_json::from_str(v2()).unwrap();
        let token_review = &v2["definitions"]["io.k8s.api.authentication.v1.TokenReview"];
        assert_eq!(token_review["required"], json!(["spec"]));
        assert!(v2["definitions"]["io.k8s.api.core.v1.Pod"]["required"].is_null());
    }
}
