//! PersistentVolumes, PersistentVolumeClaims and StorageClasses, as upstream's
//! `ValidatePersistentVolume`, `ValidatePersistentVolumeClaim` (and their `…Update`) and
//! `ValidateStorageClass` word them.
//!
//! A volume names exactly one source; ekube's kubelet mounts `hostPath` and `local` ones, the
//! others are stored for whoever serves them. A `local` volume lives on one node, so it must
//! say which (`nodeAffinity`). A claim's spec is fixed once created, except that the binder
//! fills `volumeName` (and a class, retroactively, when it had none) and a bound claim may ask
//! for more storage (which admission allows only for classes that support expansion); it
//! never asks for less than its volume already has. A class's provisioner, parameters,
//! reclaim policy and binding mode never change.

use ekube_api::quantity::parse_nano;
use ekube_api::storage::BETA_CLASS;
use serde_json::{Map, Value, json};

use super::json::{items, present, quoted, str_of};
use super::{DNS1123_SUBDOMAIN, is_dns1123_subdomain, qualified_name};
use crate::errors::Cause;

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];
const VOLUME_RECLAIM_POLICIES: &[&str] = &["Delete", "Recycle", "Retain"];
const CLASS_RECLAIM_POLICIES: &[&str] = &["Delete", "Retain"];
const BINDING_MODES: &[&str] = &["Immediate", "WaitForFirstConsumer"];
/// Upstream's limits on a class's parameters: how many, and their total size in bytes.
const MAX_PARAMETERS: usize = 512;
const MAX_PARAMETERS_BYTES: usize = 256 * 1024;

/// The volume sources of a `PersistentVolumeSpec`, in upstream's order of checking.
const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "glusterfs",
    "flocker",
    "nfs",
    "rbd",
    "quobyte",
    "cinder",
    "iscsi",
    "cephfs",
    "fc",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

/// A PersistentVolume (upstream's `ValidatePersistentVolumeSpec`).
pub(crate) fn volume(obj: &Value, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    if items(spec, "accessModes").is_empty() {
        causes.push(Cause::required("spec.accessModes"));
    }
    access_modes(spec, causes);
    capacity(spec, causes);
    class_name(spec, causes);
    volume_mode(spec, causes);
    let policy = str_of(spec, "persistentVolumeReclaimPolicy");
    if !policy.is_empty() && !VOLUME_RECLAIM_POLICIES.contains(&policy) {
        causes.push(Cause::not_supported(
            "spec.persistentVolumeReclaimPolicy",
            policy,
            VOLUME_RECLAIM_POLICIES,
        ));
    }
    let affinity = present(spec, "nodeAffinity");
    if let Some(affinity) = affinity {
        match present(affinity, "required") {
            Some(required) => {
                super::node_selector::node_selector(required, "spec.nodeAffinity.required", causes);
            }
            None => causes.push(Cause::required_with(
                "spec.nodeAffinity.required",
                "must specify required node constraints",
            )),
        }
    }
    let mut sources = 0;
    for &source in VOLUME_SOURCES {
        let Some(src) = present(spec, source) else {
            continue;
        };
        let at = format!("spec.{source}");
        if sources > 0 {
            causes.push(Cause::forbidden(
                at,
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        sources += 1;
        match source {
            "hostPath" => super::volumes::host_path(src, &at, causes),
            "local" => {
                local(src, &at, causes);
                if affinity.is_none() {
                    causes.push(Cause::required_with(
                        "spec.nodeAffinity",
                        "Local volume requires node affinity",
                    ));
                }
            }
            _ => {}
        }
    }
    if sources == 0 {
        causes.push(Cause::required_with("spec", "must specify a volume type"));
    }
    let host_root = present(spec, "hostPath")
        .map(|h| str_of(h, "path"))
        .is_some_and(|p| !p.is_empty() && p.split('/').all(|part| part.is_empty() || part == "."));
    if host_root && policy == "Recycle" {
        causes.push(Cause::forbidden(
            "spec.persistentVolumeReclaimPolicy",
            "may not be 'recycle' for a hostPath mount of '/'",
        ));
    }
}

/// Upstream's `validateLocalVolumeSource`.
fn local(src: &Value, at: &str, causes: &mut Vec<Cause>) {
    let path = str_of(src, "path");
    if path.is_empty() {
        causes.push(Cause::required(format!("{at}.path")));
        return;
    }
    if !path.starts_with('/') {
        causes.push(Cause::invalid(at, quoted(path), "must be an absolute path"));
    }
    super::volumes::no_backsteps(path, &format!("{at}.path"), causes);
}

/// A volume's capacity: storage and nothing else, more than zero.
fn capacity(spec: &Value, causes: &mut Vec<Cause>) {
    let empty = Map::new();
    let capacity = spec
        .get("capacity")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    if capacity.is_empty() {
        causes.push(Cause::required("spec.capacity"));
    }
    if !capacity.contains_key("storage") || capacity.len() > 1 {
        let shown = if capacity.is_empty() {
            "null".to_string()
        } else {
            Value::Object(capacity.clone()).to_string()
        };
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: "spec.capacity".into(),
            message: format!("Unsupported value: {shown}: supported values: \"storage\""),
        });
    }
    for (name, q) in capacity {
        positive_quantity(&format!("spec.capacity[{name}]"), q, causes);
    }
}

/// A quantity that must be well-formed and more than zero (upstream's
/// `ValidatePositiveQuantityValue`).
fn positive_quantity(at: &str, q: &Value, causes: &mut Vec<Cause>) {
    let before = causes.len();
    super::resource_quantity(at.to_string(), q, causes);
    if causes.len() == before && quantity(Some(q)).is_some_and(|n| n <= 0) {
        causes.push(Cause::invalid(
            at,
            quoted(&quantity_text(q)),
            "must be greater than zero",
        ));
    }
}

/// The access modes of a volume or claim: known ones, and `ReadWriteOncePod` alone.
fn access_modes(spec: &Value, causes: &mut Vec<Cause>) {
    let mut once_pod = false;
    let mut others = false;
    for mode in items(spec, "accessModes") {
        let mode = mode.as_str().unwrap_or_default();
        if !ACCESS_MODES.contains(&mode) {
            causes.push(Cause::not_supported("spec.accessModes", mode, ACCESS_MODES));
        }
        if mode == "ReadWriteOncePod" {
            once_pod = true;
        } else {
            others = true;
        }
    }
    if once_pod && others {
        causes.push(Cause::forbidden(
            "spec.accessModes",
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

fn class_name(spec: &Value, causes: &mut Vec<Cause>) {
    let class = str_of(spec, "storageClassName");
    if !class.is_empty() && !is_dns1123_subdomain(class) {
        causes.push(Cause::invalid(
            "spec.storageClassName",
            quoted(class),
            DNS1123_SUBDOMAIN,
        ));
    }
}

fn volume_mode(spec: &Value, causes: &mut Vec<Cause>) {
    if let Some(mode) = spec.get("volumeMode").and_then(Value::as_str)
        && !VOLUME_MODES.contains(&mode)
    {
        causes.push(Cause::not_supported("spec.volumeMode", mode, VOLUME_MODES));
    }
}

/// A PersistentVolume update (upstream's `ValidatePersistentVolumeUpdate`): its source and
/// volume mode never change; its node affinity may be set once.
pub(crate) fn volume_update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    let source = |v: &Value| {
        let spec = v.get("spec").unwrap_or(&Value::Null);
        VOLUME_SOURCES
            .iter()
            .filter_map(|s| present(spec, s).map(|src| (*s, without_nulls(src))))
            .collect::<Vec<_>>()
    };
    if source(old) != source(new) {
        causes.push(Cause::forbidden(
            "spec.persistentvolumesource",
            "spec.persistentvolumesource is immutable after creation",
        ));
    }
    immutable_volume_mode(old, new, causes);
    let affinity = |v: &Value| {
        v.pointer("/spec/nodeAffinity")
            .filter(|a| !a.is_null())
            .map(without_nulls)
    };
    if let Some(was) = affinity(old) {
        let now = affinity(new);
        if now.as_ref() != Some(&was) {
            let shown = now.map_or_else(|| "null".to_string(), |a| a.to_string());
            causes.push(Cause::invalid("nodeAffinity", shown, "field is immutable"));
        }
    }
}

/// `volumeMode` never changes (a volume or claim stored without one is `Filesystem`).
fn immutable_volume_mode(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    let mode = |v: &Value| {
        v.pointer("/spec/volumeMode")
            .and_then(Value::as_str)
            .unwrap_or("Filesystem")
            .to_string()
    };
    let now = mode(new);
    if mode(old) != now {
        causes.push(Cause::invalid(
            "volumeMode",
            quoted(&now),
            "field is immutable",
        ));
    }
}

/// A PersistentVolumeClaim (upstream's `ValidatePersistentVolumeClaimSpec`).
pub(crate) fn claim(obj: &Value, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    if items(spec, "accessModes").is_empty() {
        causes.push(Cause::required_with(
            "spec.accessModes",
            "at least 1 access mode is required",
        ));
    }
    if let Some(sel) = present(spec, "selector") {
        super::pdb::label_selector(sel, "spec.selector", causes);
    }
    access_modes(spec, causes);
    match spec
        .pointer("/resources/requests/storage")
        .filter(|q| !q.is_null())
    {
        None => causes.push(Cause::required("spec.resources[storage]")),
        Some(q) => positive_quantity("spec.resources[storage]", q, causes),
    }
    class_name(spec, causes);
    volume_mode(spec, causes);
}

/// A PersistentVolumeClaim update (upstream's `ValidatePersistentVolumeClaimUpdate`).
pub(crate) fn claim_update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    let mut was = comparable_claim_spec(old);
    let mut now = comparable_claim_spec(new);
    // The binder writes the volume's name once.
    if str_of(&was, "volumeName").is_empty() {
        set_or_remove(&mut was, "volumeName", now.get("volumeName").cloned());
    }
    let old_annotation = annotation(old, BETA_CLASS);
    let new_annotation = annotation(new, BETA_CLASS);
    let old_class = old
        .pointer("/spec/storageClassName")
        .and_then(Value::as_str);
    let new_class = new
        .pointer("/spec/storageClassName")
        .and_then(Value::as_str);
    // The class annotation may turn into `storageClassName`, once, naming the same class.
    let from_annotation = old_annotation.is_some()
        && (new_annotation.is_none() || new_annotation == old_annotation)
        && old_class.is_none()
        && new_class.is_some()
        && new_class == old_annotation;
    if from_annotation {
        set_or_remove(&mut now, "storageClassName", None);
    } else {
        if old_annotation != new_annotation {
            causes.push(Cause::invalid(
                format!("metadata.annotations.{BETA_CLASS}"),
                quoted(new_annotation.unwrap_or_default()),
                "field is immutable",
            ));
        }
        // A claim without a class may be given one (the default, retroactively).
        if old_annotation.is_none()
            && old_class.is_none_or(str::is_empty)
            && new_class.is_some_and(|c| !c.is_empty())
        {
            set_or_remove(&mut now, "storageClassName", None);
        }
    }
    // A bound claim may change the storage it requests and its volume attributes class; the
    // rest of the spec is fixed.
    let bound = new.pointer("/status/phase").and_then(Value::as_str) == Some("Bound");
    if bound
        && let Some(requests) = now
            .pointer_mut("/resources/requests")
            .and_then(Value::as_object_mut)
    {
        match was.pointer("/resources/requests/storage") {
            Some(q) => requests.insert("storage".into(), q.clone()),
            None => requests.remove("storage"),
        };
    }
    if bound && now.get("volumeAttributesClassName").is_some() {
        let class = was.get("volumeAttributesClassName").cloned();
        set_or_remove(&mut now, "volumeAttributesClassName", class);
    }
    if was != now {
        causes.push(Cause::forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        ));
    }
    let size = |v: &Value, ptr: &str| quantity(v.pointer(ptr)).unwrap_or(0);
    let old_size = size(old, "/spec/resources/requests/storage");
    let new_size = size(new, "/spec/resources/requests/storage");
    let status_size = size(old, "/status/capacity/storage");
    // Less than asked before is allowed down to what the volume has (recovery from an
    // expansion that failed), never below it.
    if new_size < old_size && new_size <= status_size {
        causes.push(Cause::forbidden(
            "spec.resources.requests.storage",
            "field can not be less than status.capacity",
        ));
    }
    immutable_volume_mode(old, new, causes);
}

/// A claim's spec as compared between versions: defaults applied (claims stored before
/// defaulting lack them), quantities by value, no nulls.
fn comparable_claim_spec(obj: &Value) -> Value {
    let mut spec = without_nulls(obj.get("spec").unwrap_or(&json!({})));
    if !spec.is_object() {
        spec = json!({});
    }
    crate::defaults::set(&mut spec, "volumeMode", json!("Filesystem"));
    for list in ["requests", "limits"] {
        if let Some(map) = spec
            .pointer_mut(&format!("/resources/{list}"))
            .and_then(Value::as_object_mut)
        {
            for q in map.values_mut() {
                if let Some(n) = quantity(Some(q)) {
                    *q = json!(n.to_string());
                }
            }
        }
    }
    spec
}

/// A StorageClass (upstream's `ValidateStorageClass`).
pub(crate) fn class(obj: &Value, causes: &mut Vec<Cause>) {
    let provisioner = str_of(obj, "provisioner");
    if provisioner.is_empty() {
        causes.push(Cause::required("provisioner"));
    } else {
        let lower = provisioner.to_lowercase();
        for msg in qualified_name(&lower) {
            causes.push(Cause::invalid("provisioner", quoted(&lower), &msg));
        }
    }
    if let Some(params) = obj.get("parameters").and_then(Value::as_object) {
        if params.len() > MAX_PARAMETERS {
            causes.push(Cause::too_long("parameters", MAX_PARAMETERS));
        } else {
            let mut total = 0;
            for (k, v) in params {
                if k.is_empty() {
                    causes.push(Cause::invalid(
                        "parameters",
                        quoted(k),
                        "field can not be empty.",
                    ));
                }
                total += k.len() + v.as_str().map_or(0, str::len);
            }
            if total > MAX_PARAMETERS_BYTES {
                causes.push(Cause::too_long("parameters", MAX_PARAMETERS_BYTES));
            }
        }
    }
    let policy = str_of(obj, "reclaimPolicy");
    if !policy.is_empty() && !CLASS_RECLAIM_POLICIES.contains(&policy) {
        causes.push(Cause::not_supported(
            "reclaimPolicy",
            policy,
            CLASS_RECLAIM_POLICIES,
        ));
    }
    match obj.get("volumeBindingMode").and_then(Value::as_str) {
        None => causes.push(Cause::required("volumeBindingMode")),
        Some(mode) if !BINDING_MODES.contains(&mode) => causes.push(Cause::not_supported(
            "volumeBindingMode",
            mode,
            BINDING_MODES,
        )),
        Some(_) => {}
    }
    for (i, term) in items(obj, "allowedTopologies").iter().enumerate() {
        topology_term(term, &format!("allowedTopologies[{i}]"), causes);
    }
}

/// Upstream's `ValidateTopologySelectorTerm`: each requirement names a label key once and
/// at least one distinct value.
fn topology_term(term: &Value, at: &str, causes: &mut Vec<Cause>) {
    let mut keys: Vec<&str> = Vec::new();
    for (i, req) in items(term, "matchLabelExpressions").iter().enumerate() {
        let at = format!("{at}.matchLabelExpressions[{i}]");
        let values = items(req, "values");
        if values.is_empty() {
            causes.push(Cause::required_with(
                format!("{at}.values"),
                "must specify as least one value",
            ));
        }
        let mut seen: Vec<&str> = Vec::new();
        for (j, v) in values.iter().enumerate() {
            let v = v.as_str().unwrap_or_default();
            if seen.contains(&v) {
                causes.push(Cause::duplicate(format!("{at}.values[{j}]"), quoted(v)));
            }
            seen.push(v);
        }
        let key = str_of(req, "key");
        for msg in qualified_name(key) {
            causes.push(Cause::invalid(format!("{at}.key"), quoted(key), &msg));
        }
        if keys.contains(&key) {
            causes.push(Cause::duplicate(format!("{at}.key"), quoted(key)));
        }
        keys.push(key);
    }
}

/// A StorageClass update (upstream's `ValidateStorageClassUpdate`).
pub(crate) fn class_update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    let params = |v: &Value| {
        v.get("parameters")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    if params(old) != params(new) {
        causes.push(Cause::forbidden(
            "parameters",
            "updates to parameters are forbidden.",
        ));
    }
    if str_of(old, "provisioner") != str_of(new, "provisioner") {
        causes.push(Cause::forbidden(
            "provisioner",
            "updates to provisioner are forbidden.",
        ));
    }
    let policy = |v: &Value| {
        v.get("reclaimPolicy")
            .and_then(Value::as_str)
            .unwrap_or("Delete")
            .to_string()
    };
    if policy(old) != policy(new) {
        causes.push(Cause::forbidden(
            "reclaimPolicy",
            "updates to reclaimPolicy are forbidden.",
        ));
    }
    let mode = |v: &Value| {
        v.get("volumeBindingMode")
            .and_then(Value::as_str)
            .unwrap_or("Immediate")
            .to_string()
    };
    let now = mode(new);
    if mode(old) != now {
        causes.push(Cause::invalid(
            "volumeBindingMode",
            quoted(&now),
            "field is immutable",
        ));
    }
}

/// A quantity's value in nano-units, `None` when absent or malformed.
fn quantity(q: Option<&Value>) -> Option<i128> {
    parse_nano(&quantity_text(q?)).ok()
}

/// A quantity as written, a JSON number included.
fn quantity_text(q: &Value) -> String {
    match q {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

fn set_or_remove(obj: &mut Value, key: &str, value: Option<Value>) {
    if let Some(map) = obj.as_object_mut() {
        match value {
            Some(v) => {
                map.insert(key.to_string(), v);
            }
            None => {
                map.remove(key);
            }
        }
    }
}

/// `v` without its null members, at any depth: JSON clients send `null` for what typed ones
/// leave out.
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests;
