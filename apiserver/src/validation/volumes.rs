//! Validation of the paths and modes of a pod's volumes and volume mounts, as upstream's
//! `validateVolumeSource`/`validateVolumeMounts` word it.
//!
//! Every path the kubelet writes into a volume (`items[].path` of configMap, secret,
//! downwardAPI and projected volumes) or mounts out of one (`subPath`, `subPathExpr`) must stay
//! inside the volume: relative and without `..` elements. The kubelet checks again when it
//! writes or mounts (pods stored before this check existed), but a bad path is refused here
//! first, with the field it came from.

use serde_json::Value;

use crate::errors::Cause;

/// The `hostPath.type` values upstream knows.
const HOST_PATH_TYPES: [&str; 8] = [
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];

/// Checks every volume of the pod spec `spec` (found at field path `at`) and every volume
/// mount of its containers.
pub fn validate(spec: &Value, at: &str, causes: &mut Vec<Cause>) {
    for (i, v) in items(spec.get("volumes")).enumerate() {
        volume(v, &format!("{at}.volumes[{i}]"), causes);
    }
    for list in ["initContainers", "containers"] {
        for (i, c) in items(spec.get(list)).enumerate() {
            for (j, m) in items(c.get("volumeMounts")).enumerate() {
                mount(m, &format!("{at}.{list}[{i}].volumeMounts[{j}]"), causes);
            }
        }
    }
}

/// The elements of an optional JSON array.
fn items(v: Option<&Value>) -> impl Iterator<Item = &Value> {
    v.and_then(Value::as_array).into_iter().flatten()
}

fn string<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn volume(v: &Value, at: &str, causes: &mut Vec<Cause>) {
    file_sources(v, at, causes);
    if let Some(src) = v.get("projected").filter(|s| s.is_object()) {
        let at = format!("{at}.projected");
        mode(src.get("defaultMode"), &format!("{at}.defaultMode"), causes);
        for (k, s) in items(src.get("sources")).enumerate() {
            file_sources(s, &format!("{at}.sources[{k}]"), causes);
        }
    }
    if let Some(h) = v.get("hostPath").filter(|s| s.is_object()) {
        host_path(h, &format!("{at}.hostPath"), causes);
    }
}

/// The sources of files the kubelet writes, in a volume or in one source of a projected
/// volume (only a projection has `serviceAccountToken`).
fn file_sources(v: &Value, at: &str, causes: &mut Vec<Cause>) {
    let source = |key: &str| v.get(key).filter(|s| s.is_object());
    for key in ["configMap", "secret"] {
        if let Some(src) = source(key) {
            key_to_paths(src, &format!("{at}.{key}"), causes);
        }
    }
    if let Some(src) = source("downwardAPI") {
        downward_files(src, &format!("{at}.downwardAPI"), causes);
    }
    if let Some(src) = source("serviceAccountToken") {
        item_path(
            string(src, "path"),
            &format!("{at}.serviceAccountToken.path"),
            causes,
        );
    }
}

/// `items` and `defaultMode` of a configMap or secret source.
fn key_to_paths(src: &Value, at: &str, causes: &mut Vec<Cause>) {
    mode(src.get("defaultMode"), &format!("{at}.defaultMode"), causes);
    for (j, item) in items(src.get("items")).enumerate() {
        let at = format!("{at}.items[{j}]");
        if string(item, "key").is_none_or(str::is_empty) {
            causes.push(Cause::required(format!("{at}.key")));
        }
        item_path(string(item, "path"), &format!("{at}.path"), causes);
        mode(item.get("mode"), &format!("{at}.mode"), causes);
    }
}

/// `items` and `defaultMode` of a downwardAPI source.
fn downward_files(src: &Value, at: &str, causes: &mut Vec<Cause>) {
    mode(src.get("defaultMode"), &format!("{at}.defaultMode"), causes);
    for (j, item) in items(src.get("items")).enumerate() {
        let at = format!("{at}.items[{j}]");
        item_path(string(item, "path"), &format!("{at}.path"), causes);
        mode(item.get("mode"), &format!("{at}.mode"), causes);
    }
}

pub(super) fn host_path(h: &Value, at: &str, causes: &mut Vec<Cause>) {
    match string(h, "path") {
        None | Some("") => causes.push(Cause::required(format!("{at}.path"))),
        Some(path) => no_backsteps(path, &format!("{at}.path"), causes),
    }
    if let Some(ty) = string(h, "type")
        && !HOST_PATH_TYPES.contains(&ty)
    {
        causes.push(Cause::not_supported(
            format!("{at}.type"),
            ty,
            &HOST_PATH_TYPES,
        ));
    }
}

fn mount(m: &Value, at: &str, causes: &mut Vec<Cause>) {
    let sub_path = string(m, "subPath").filter(|s| !s.is_empty());
    let sub_path_expr = string(m, "subPathExpr").filter(|s| !s.is_empty());
    if let Some(p) = sub_path {
        descending(p, &format!("{at}.subPath"), causes);
    }
    if let Some(p) = sub_path_expr {
        if sub_path.is_some() {
            causes.push(Cause::invalid(
                format!("{at}.subPathExpr"),
                format!("\"{p}\""),
                "subPathExpr and subPath are mutually exclusive",
            ));
        }
        descending(p, &format!("{at}.subPathExpr"), causes);
    }
}

/// A file mode: 0 to 0777.
fn mode(v: Option<&Value>, at: &str, causes: &mut Vec<Cause>) {
    if let Some(m) = v.and_then(Value::as_i64)
        && !(0..=0o777).contains(&m)
    {
        causes.push(Cause::invalid(
            at,
            m,
            "must be a number between 0 and 0777 (octal), both inclusive",
        ));
    }
}

/// The path of a file the kubelet writes into a volume: required, inside the volume, and not
/// one of the writer's own `..`-prefixed names (`..data`, `..<timestamp>`).
fn item_path(path: Option<&str>, at: &str, causes: &mut Vec<Cause>) {
    let Some(path) = path.filter(|p| !p.is_empty()) else {
        causes.push(Cause::required(at));
        return;
    };
    descending(path, at, causes);
    if path.len() >= 2 && path.starts_with("..") {
        causes.push(Cause::invalid(
            at,
            format!("\"{path}\""),
            "must not start with '..'",
        ));
    }
}

/// A path below a volume's root: relative, without `..` elements.
fn descending(path: &str, at: &str, causes: &mut Vec<Cause>) {
    if path.starts_with('/') {
        causes.push(Cause::invalid(
            at,
            format!("\"{path}\""),
            "must be a relative path",
        ));
    }
    no_backsteps(path, at, causes);
}

pub(super) fn no_backsteps(path: &str, at: &str, causes: &mut Vec<Cause>) {
    if path.split('/').any(|part| part == "..") {
        causes.push(Cause::invalid(
            at,
            format!("\"{path}\""),
            "must not contain '..'",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(spec: Value) -> Vec<(String, String)> {
        let mut causes = Vec::new();
        validate(&spec, "spec", &mut causes);
        causes.into_iter().map(|c| (c.field, c.message)).collect()
    }

    #[test]
    fn sub_paths_stay_inside_the_volume() {
        let spec = json!({"containers": [{"name": "c", "volumeMounts": [
            {"name": "v", "mountPath": "/a", "subPath": "../.."},
            {"name": "v", "mountPath": "/b", "subPathExpr": "/$(POD)"},
            {"name": "v", "mountPath": "/c", "subPath": "a..b/c"},
            {"name": "v", "mountPath": "/d", "subPath": "x", "subPathExpr": "y"},
        ]}]});
        assert_eq!(
            fields(spec),
            [
                (
                    "spec.containers[0].volumeMounts[0].subPath".into(),
                    "Invalid value: \"../..\": must not contain '..'".into()
                ),
                (
                    "spec.containers[0].volumeMounts[1].subPathExpr".into(),
                    "Invalid value: \"/$(POD)\": must be a relative path".into()
                ),
                (
                    "spec.containers[0].volumeMounts[3].subPathExpr".into(),
                    "Invalid value: \"y\": subPathExpr and subPath are mutually exclusive".into()
                ),
            ]
        );
    }

    #[test]
    fn item_paths_stay_inside_the_volume() {
        let spec = json!({"containers": [], "volumes": [
            {"name": "cm", "configMap": {"name": "x", "items": [
                {"key": "a", "path": "../x"}, {"key": "b", "path": "ok/b"}, {"path": "/abs"}]}},
            {"name": "s", "secret": {"secretName": "x", "defaultMode": 0o1000,
                "items": [{"key": "a", "path": "..data", "mode": -1}]}},
            {"name": "d", "downwardAPI": {"items": [{"path": "a/../../b"}]}},
            {"name": "p", "projected": {"sources": [
                {"configMap": {"name": "x", "items": [{"key": "a", "path": ".."}]}},
                {"serviceAccountToken": {"path": "/token"}}]}},
        ]});
        let got: Vec<String> = fields(spec).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            got,
            [
                "spec.volumes[0].configMap.items[0].path",
                "spec.volumes[0].configMap.items[0].path",
                "spec.volumes[0].configMap.items[2].key",
                "spec.volumes[0].configMap.items[2].path",
                "spec.volumes[1].secret.defaultMode",
                "spec.volumes[1].secret.items[0].path",
                "spec.volumes[1].secret.items[0].mode",
                "spec.volumes[2].downwardAPI.items[0].path",
                "spec.volumes[3].projected.sources[0].configMap.items[0].path",
                "spec.volumes[3].projected.sources[0].configMap.items[0].path",
                "spec.volumes[3].projected.sources[1].serviceAccountToken.path",
            ]
        );
    }

    #[test]
    fn host_path_types_are_upstreams() {
        let spec = json!({"containers": [], "volumes": [
            {"name": "a", "hostPath": {"path": "/opt/../etc", "type": "Dir"}},
            {"name": "b", "hostPath": {"path": "/opt/mysql/data", "type": ""}},
        ]});
        let got = fields(spec);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, "spec.volumes[0].hostPath.path");
        assert_eq!(got[1].0, "spec.volumes[0].hostPath.type");
        assert!(
            got[1]
                .1
                .starts_with("Unsupported value: \"Dir\": supported values: \"\", \"BlockDevice\"")
        );
    }
}
