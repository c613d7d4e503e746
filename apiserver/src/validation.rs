//! Validation, worded as Kubernetes words it, so `kubectl` users see familiar messages.
//!
//! Runs on the JSON form after defaulting. Each check appends a [`Cause`] naming the field; a
//! non-empty list becomes a 422 `Invalid` status.

use serde_json::Value;

use crate::errors::Cause;
use crate::strategy::Kind;
use pod::{container, pod_spec};

mod dns;
pub(crate) mod ephemeral;
pub(crate) mod hpa;
pub(crate) mod ingress;
pub(crate) mod job;
mod json;
pub(crate) mod limit_range;
mod names;
mod node_selector;
pub(crate) mod pdb;
pub(crate) mod pod;
pub(crate) mod replication_controller;
mod resources;
pub(crate) mod storage;
mod volumes;

pub(crate) const DNS1123_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

use ekube_api::names::is_qualified_name_part;
pub use ekube_api::names::{is_dns1123_label, is_dns1123_subdomain};
pub use ephemeral::update as ephemeral_containers_update;
pub use ingress::CLASS_ANNOTATION as INGRESS_CLASS_ANNOTATION;

fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// A name that must be a DNS-1123 label unlike every one in `seen` (a container's, a
/// port's); a valid new one joins `seen`.
pub(crate) fn unique_label<'a>(
    name: &'a str,
    field: &str,
    seen: &mut Vec<&'a str>,
    causes: &mut Vec<Cause>,
) {
    if !is_dns1123_label(name) {
        causes.push(Cause::invalid(field, format!("\"{name}\""), DNS1123_LABEL));
    } else if seen.contains(&name) {
        causes.push(Cause::duplicate(field, format!("\"{name}\"")));
    } else {
        seen.push(name);
    }
}

pub(crate) fn is_iana_svc_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// Validates the name and metadata every object has.
pub fn metadata(kind: &str, obj: &Value, causes: &mut Vec<Cause>) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name.is_empty() {
        causes.push(Cause::required("metadata.name"));
    } else {
        let (ok, msg) = match kind {
            "Namespace" => (is_dns1123_label(name), DNS1123_LABEL),
            "Service" => (is_dns1035_label(name), DNS1035_LABEL),
            // `<version>.<group>`, and the core group's `v1.` (see [`api_service`]).
            "APIService" => (
                is_dns1123_subdomain(name.strip_suffix('.').unwrap_or(name)),
                DNS1123_SUBDOMAIN,
            ),
            // Role-like and Event names allow a wider alphabet; a path segment is enough.
            "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" | "Event" => (
                !name.contains('/') && !name.contains('%') && name != "." && name != "..",
                "may not contain '/' or '%'",
            ),
            _ => (is_dns1123_subdomain(name), DNS1123_SUBDOMAIN),
        };
        if !ok {
            causes.push(Cause::invalid("metadata.name", format!("\"{name}\""), msg));
        }
    }
    labels(obj.pointer("/metadata/labels"), "metadata.labels", causes);
    annotations(obj.pointer("/metadata/annotations"), causes);
}

fn labels(labels: Option<&Value>, field: &str, causes: &mut Vec<Cause>) {
    let Some(Value::Object(map)) = labels else {
        return;
    };
    for (k, v) in map {
        for msg in qualified_name(k) {
            causes.push(Cause::invalid(field, format!("\"{k}\""), &msg));
        }
        let value = v.as_str().unwrap_or_default();
        for msg in label_value(value) {
            causes.push(Cause::invalid(field, format!("\"{value}\""), msg));
        }
    }
}

/// What is wrong with a label value, worded as upstream's `IsValidLabelValue`.
fn label_value(value: &str) -> Vec<&'static str> {
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push("must be no more than 63 characters");
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errors.push("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')");
    }
    errors
}

/// Upstream's limit on an object's annotations: keys and values together.
pub const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

fn annotations(annotations: Option<&Value>, causes: &mut Vec<Cause>) {
    let Some(Value::Object(map)) = annotations else {
        return;
    };
    let mut total = 0;
    for (k, v) in map {
        for msg in qualified_name(&k.to_lowercase()) {
            causes.push(Cause::invalid(
                "metadata.annotations",
                format!("\"{k}\""),
                &msg,
            ));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE {
        causes.push(Cause::too_long(
            "metadata.annotations",
            TOTAL_ANNOTATION_SIZE,
        ));
    }
}

/// What is wrong with a label or annotation key (`[prefix/]name`), worded as upstream's
/// `IsQualifiedName`.
fn qualified_name(key: &str) -> Vec<String> {
    const NAME: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    let parts: Vec<&str> = key.split('/').collect();
    let (prefix, name) = match parts.as_slice() {
        [name] => (None, *name),
        [prefix, name] => (Some(*prefix), *name),
        _ => return vec![format!("a qualified name {NAME}")],
    };
    let mut errors = Vec::new();
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            errors.push("prefix part must be non-empty".to_string());
        } else if !is_dns1123_subdomain(prefix) {
            errors.push(format!("prefix part {DNS1123_SUBDOMAIN}"));
        }
    }
    if name.is_empty() {
        errors.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errors.push("name part must be no more than 63 characters".to_string());
    }
    if !name.is_empty() && !is_qualified_name_part(name) {
        errors.push(NAME.to_string());
    }
    errors
}

/// Validates a whole object of `kind` (after defaulting): the metadata every object has, then
/// the kind's own rules ([`crate::strategy::Strategy::validate`]). `old` is the stored version
/// on update.
pub(crate) fn validate(
    kind: &str,
    strategy: Option<&dyn Kind>,
    obj: &Value,
    old: Option<&Value>,
    node_ports: (u16, u16),
) -> Vec<Cause> {
    let mut causes = Vec::new();
    metadata(kind, obj, &mut causes);
    if let Some(strategy) = strategy {
        let ctx = crate::strategy::Context { old, node_ports };
        strategy.validate(obj, &ctx, &mut causes);
    }
    causes
}

/// [`validate`] with the strategy of `group`/`kind` in its storage version, for tests.
#[cfg(test)]
pub(crate) fn validate_kind(
    group: &str,
    kind: &str,
    obj: &Value,
    old: Option<&Value>,
    node_ports: (u16, u16),
) -> Vec<Cause> {
    validate(
        kind,
        crate::strategy::of_kind(group, kind),
        obj,
        old,
        node_ports,
    )
}

/// [`immutable`] with the strategy of `group`/`kind` in its storage version, for tests.
#[cfg(test)]
pub(crate) fn immutable_kind(group: &str, kind: &str, old: &Value, new: &Value) -> Vec<Cause> {
    immutable(crate::strategy::of_kind(group, kind), old, new)
}

/// An APIService is named after what it serves, `<version>.<group>`, with priorities in
/// upstream's ranges.
pub(crate) fn api_service(obj: &Value, causes: &mut Vec<Cause>) {
    let text = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let (group, version, name) = (
        text("/spec/group"),
        text("/spec/version"),
        text("/metadata/name"),
    );
    if version.is_empty() {
        causes.push(Cause::required("spec.version"));
    }
    let expected = format!("{version}.{group}");
    if !name.is_empty() && name != expected {
        causes.push(Cause::invalid(
            "metadata.name",
            format!("\"{name}\""),
            &format!("must be {expected}"),
        ));
    }
    for (field, limit) in [("groupPriorityMinimum", 20000), ("versionPriority", 1000)] {
        let value = obj
            .pointer(&format!("/spec/{field}"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if value <= 0 || value >= limit {
            causes.push(Cause::invalid(
                format!("spec.{field}"),
                value,
                &format!("must be positive and less than {limit}"),
            ));
        }
    }
}

/// ConfigMap and Secret keys become file names in volumes: upstream's `IsConfigMapKey`.
pub(crate) fn config_keys(obj: &Value, causes: &mut Vec<Cause>) {
    for field in ["data", "binaryData", "stringData"] {
        let Some(Value::Object(map)) = obj.get(field) else {
            continue;
        };
        for k in map.keys() {
            let at = format!("{field}[{k}]");
            let shown = format!("\"{k}\"");
            if k.is_empty()
                || k.len() > 253
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                causes.push(Cause::invalid(&at, &shown, "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
            }
            if k == "." {
                causes.push(Cause::invalid(&at, &shown, "must not be '.'"));
            } else if k == ".." {
                causes.push(Cause::invalid(&at, &shown, "must not be '..'"));
            } else if k.starts_with("..") {
                causes.push(Cause::invalid(&at, &shown, "must not start with '..'"));
            }
        }
    }
}

/// A resource quantity in requests or limits: well-formed, not negative, and small enough to
/// compare (upstream's `ValidateResourceQuantityValue`).
fn resource_quantity(field: String, value: &Value, causes: &mut Vec<Cause>) {
    use ekube_api::quantity::{InvalidQuantity, parse_milli};
    let s = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let shown = format!("\"{s}\"");
    match parse_milli(&s) {
        Ok(v) if v < 0 => causes.push(Cause::invalid(field, shown, "must be greater than or equal to 0")),
        Ok(_) => {}
        Err(InvalidQuantity::TooLarge(_)) => causes.push(Cause::invalid(field, shown, "must be less than or equal to 9223372036854775807m (a signed 64-bit count of milli-units)")),
        Err(InvalidQuantity::Syntax(_)) => causes.push(Cause::invalid(field, shown, "must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")),
    }
}

/// Every quantity in the map at `field` (a dotted path).
pub(crate) fn quantity_map(obj: &Value, field: &str, causes: &mut Vec<Cause>) {
    let pointer = format!("/{}", field.replace('.', "/"));
    if let Some(Value::Object(map)) = obj.pointer(&pointer) {
        for (k, v) in map {
            resource_quantity(format!("{field}[{k}]"), v, causes);
        }
    }
}

/// Upstream's `ValidateControllerRevision`: `data` present, `revision` set (an `int64` without
/// `omitempty` upstream) and not negative.
pub(crate) fn controller_revision(obj: &Value, causes: &mut Vec<Cause>) {
    if obj.get("data").is_none_or(Value::is_null) {
        causes.push(Cause::required_with("data", "data is mandatory"));
    }
    let revision = obj.get("revision").and_then(Value::as_i64);
    if revision.is_none() {
        causes.push(Cause::required("revision"));
    }
    if let Some(r) = revision
        && r < 0
    {
        causes.push(Cause::invalid(
            "revision",
            r,
            "must be greater than or equal to 0",
        ));
    }
}

pub(crate) fn workload(obj: &Value, causes: &mut Vec<Cause>) {
    if let Some(r) = obj.pointer("/spec/replicas").and_then(Value::as_i64)
        && r < 0
    {
        causes.push(Cause::invalid(
            "spec.replicas",
            r,
            "must be greater than or equal to 0",
        ));
    }
    let selector = obj.pointer("/spec/selector");
    let template_labels = obj.pointer("/spec/template/metadata/labels");
    match selector {
        None | Some(Value::Null) => causes.push(Cause::required("spec.selector")),
        Some(sel) => {
            let parsed: Result<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector, _> =
                serde_json::from_value(sel.clone());
            if let Ok(sel) = parsed {
                let selector = ekube_api::selector::LabelSelector::from_label_selector(&sel);
                if selector.is_empty() {
                    causes.push(Cause::invalid(
                        "spec.selector",
                        "{}",
                        "empty selector is invalid for deployment",
                    ));
                }
                let labels = template_labels
                    .and_then(|l| serde_json::from_value(l.clone()).ok())
                    .unwrap_or_default();
                if !selector.matches(&labels) {
                    let shown = template_labels
                        .map(|l| format!("map[{}]", render_map(l)))
                        .unwrap_or_else(|| "map[]".into());
                    causes.push(Cause::invalid(
                        "spec.template.metadata.labels",
                        shown,
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
    }
    if obj.pointer("/spec/template").is_none() {
        causes.push(Cause::required("spec.template"));
        return;
    }
    labels(template_labels, "spec.template.metadata.labels", causes);
    // A StatefulSet's containers mount its claim templates by name: they are the pods'
    // volumes too (the controller adds them), so they count as volumes here.
    let mut template = obj.pointer("/spec/template/spec").cloned();
    if let (Some(Value::Object(spec)), Some(Value::Array(claims))) =
        (template.as_mut(), obj.pointer("/spec/volumeClaimTemplates"))
    {
        let volumes = spec
            .entry("volumes")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(volumes) = volumes {
            for claim in claims {
                let name = claim.pointer("/metadata/name").cloned().unwrap_or_default();
                if !volumes.iter().any(|v| v["name"] == name) {
                    volumes.push(serde_json::json!({"name": name,
                        "persistentVolumeClaim": {"claimName": name}}));
                }
            }
        }
    }
    pod_spec(template.as_ref(), "spec.template.spec", causes);
}

fn render_map(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}:{}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

pub(crate) fn protocol(p: &Value, field: &str, causes: &mut Vec<Cause>) {
    if let Some(proto) = p.get("protocol").and_then(Value::as_str)
        && !matches!(proto, "TCP" | "UDP" | "SCTP")
    {
        causes.push(Cause::not_supported(field, proto, &["SCTP", "TCP", "UDP"]));
    }
}

/// Checks an update against the fields Kubernetes makes immutable, by the kind's rules
/// ([`crate::strategy::Strategy::validate_update`]).
pub(crate) fn immutable(strategy: Option<&dyn Kind>, old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if let Some(strategy) = strategy {
        strategy.validate_update(old, new, &mut causes);
    }
    causes
}

#[cfg(test)]
mod limits_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_api_service_is_named_after_its_group_and_version() {
        let svc = |name: &str, group: &str| {
            json!({"metadata": {"name": name}, "spec": {"group": group, "version": "v1",
                "groupPriorityMinimum": 100, "versionPriority": 15}})
        };
        let fields = |obj: Value| {
            validate_kind(
                "apiregistration.k8s.io",
                "APIService",
                &obj,
                None,
                (30000, 32767),
            )
            .into_iter()
            .map(|c| c.field)
            .collect::<Vec<_>>()
        };
        assert!(fields(svc("v1.", "")).is_empty());
        assert!(fields(svc("v1.custom.example", "custom.example")).is_empty());
        assert_eq!(fields(svc("v1.other", "custom.example")), ["metadata.name"]);
        let mut zero = svc("v1.custom.example", "custom.example");
        zero["spec"]["versionPriority"] = json!(0);
        assert_eq!(fields(zero), ["spec.versionPriority"]);
    }

    #[test]
    fn a_statefulset_mounts_its_claim_templates() {
        let set = |mount: &str| {
            json!({"metadata": {"name": "web"}, "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                    {"name": "c", "image": "i", "volumeMounts": [{"name": mount, "mountPath": "/d"}]}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "www"}}],
            }})
        };
        assert!(validate_kind("apps", "StatefulSet", &set("www"), None, (30000, 32767)).is_empty());
        let causes = validate_kind("apps", "StatefulSet", &set("other"), None, (30000, 32767));
        assert_eq!(
            causes.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(),
            ["spec.template.spec.containers[0].volumeMounts[0].name"]
        );
    }

    #[test]
    fn controller_revisions_keep_their_data() {
        let cr = |data: Value, revision: i64| json!({"metadata": {"name": "web-7c9d"}, "data": data, "revision": revision});
        let good = cr(json!({"spec": {"template": {"$patch": "replace"}}}), 1);
        let ports = (30000, 32767);
        assert!(validate_kind("apps", "ControllerRevision", &good, None, ports).is_empty());
        let fields = |causes: Vec<Cause>| causes.into_iter().map(|c| c.field).collect::<Vec<_>>();
        assert_eq!(
            fields(validate_kind(
                "apps",
                "ControllerRevision",
                &cr(Value::Null, -1),
                None,
                ports
            )),
            ["data", "revision"]
        );
        let bumped = cr(good["data"].clone(), 3);
        assert!(immutable_kind("apps", "ControllerRevision", &good, &bumped).is_empty());
        let unnumbered = json!({"metadata": {"name": "web-7c9d"}, "data": {}});
        assert_eq!(
            fields(validate_kind(
                "apps",
                "ControllerRevision",
                &unnumbered,
                None,
                ports
            )),
            ["revision"]
        );
        let rewritten = cr(json!({"spec": {}}), 1);
        assert_eq!(
            fields(immutable_kind(
                "apps",
                "ControllerRevision",
                &good,
                &rewritten
            )),
            ["data"]
        );
    }

    #[test]
    fn terminated_containers_stay_terminated_unless_the_pod_restarts_them() {
        let pod = |policy: &str, states: [(&str, Value); 2]| {
            let statuses: Vec<Value> = states
                .iter()
                .map(|(name, state)| json!({"name": name, "state": state}))
                .collect();
            json!({"metadata": {"name": "p"},
                "spec": {"restartPolicy": policy, "containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}],
                    "initContainers": [{"name": "side", "image": "i", "restartPolicy": "Always"}]},
                "status": {"containerStatuses": statuses,
                    "initContainerStatuses": [{"name": "side", "state": states[0].1}]}})
        };
        let done = |code: i64| json!({"terminated": {"exitCode": code}});
        let run = || json!({"running": {}});
        let update = |policy: &str, was: [Value; 2], now: [Value; 2]| {
            let [a, b] = was;
            let [c, d] = now;
            let (old, new) = (
                pod(policy, [("a", a), ("b", b)]),
                pod(policy, [("a", c), ("b", d)]),
            );
            immutable_kind("", "Pod", &old, &new)
                .into_iter()
                .map(|c| c.field)
                .collect::<Vec<_>>()
        };
        let second = ["status.containerStatuses[1].state"];
        // Never: neither a success nor a failure runs again; the sidecar may.
        assert_eq!(update("Never", [run(), done(0)], [run(), run()]), second);
        assert_eq!(update("Never", [run(), done(1)], [run(), run()]), second);
        assert_eq!(
            update("Never", [done(0), run()], [run(), run()]),
            ["status.containerStatuses[0].state"]
        );
        // OnFailure: a failed container restarts, a succeeded one does not.
        assert!(update("OnFailure", [run(), done(1)], [run(), run()]).is_empty());
        assert_eq!(
            update("OnFailure", [run(), done(0)], [run(), run()]),
            second
        );
        // Always: anything goes; and staying terminated is always fine.
        assert!(update("Always", [done(0), done(1)], [run(), run()]).is_empty());
        assert!(update("Never", [done(0), done(1)], [done(0), done(1)]).is_empty());
    }

    #[test]
    fn missing_image_is_required() {
        let pod = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "web"}]}});
        let causes = validate_kind("", "Pod", &pod, None, (30000, 32767));
        assert_eq!(causes, [Cause::required("spec.containers[0].image")]);
    }

    #[test]
    fn dns_settings_stay_within_what_a_resolv_conf_can_hold() {
        let pod = |policy: &str, config: Value| {
            let pod = json!({"metadata": {"name": "p"}, "spec": {
                "dnsPolicy": policy, "dnsConfig": config,
                "containers": [{"name": "c", "image": "i"}]}});
            validate_kind("", "Pod", &pod, None, (30000, 32767))
                .into_iter()
                .map(|c| (c.field, c.message))
                .collect::<Vec<_>>()
        };
        assert!(pod("ClusterFirst", Value::Null).is_empty());
        let fine = json!({"nameservers": ["10.0.0.53"], "searches": ["a.example.", "b"],
            "options": [{"name": "ndots", "value": "2"}]});
        assert!(pod("None", fine).is_empty());
        assert_eq!(pod("Nowhere", Value::Null)[0].0, "spec.dnsPolicy");
        assert_eq!(pod("None", Value::Null)[0].0, "spec.dnsConfig");
        assert_eq!(pod("None", json!({}))[0].0, "spec.dnsConfig.nameservers");
        let four = json!({"nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"]});
        let causes = pod("Default", four);
        assert_eq!(causes.len(), 1);
        assert!(
            causes[0].1.contains("more than 3 nameservers"),
            "{causes:?}"
        );
        let searches: Vec<String> = (0..33).map(|i| format!("s{i}.example")).collect();
        let causes = pod("ClusterFirst", json!({"searches": searches}));
        assert!(
            causes[0].1.contains("more than 32 search paths"),
            "{causes:?}"
        );
        let long: Vec<String> = (0..30)
            .map(|i| format!("{i}{}.example", "a".repeat(60)))
            .collect();
        let causes = pod("ClusterFirst", json!({"searches": long}));
        assert!(causes[0].1.contains("2048 characters"), "{causes:?}");
        let causes = pod(
            "ClusterFirst",
            json!({"nameservers": ["not-an-ip"], "searches": ["Bad_Name"], "options": [{}]}),
        );
        let fields: Vec<&str> = causes.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.dnsConfig.nameservers[0]",
                "spec.dnsConfig.searches[0]",
                "spec.dnsConfig.options[0]"
            ]
        );
    }

    #[test]
    fn names_follow_their_rules() {
        assert!(is_dns1123_subdomain("web.example-1"));
        assert!(!is_dns1123_subdomain("Web"));
        let svc = json!({"metadata": {"name": "1svc"}, "spec": {"ports": [{"port": 80}]}});
        assert_eq!(
            validate_kind("", "Service", &svc, None, (30000, 32767))[0].field,
            "metadata.name"
        );
    }

    #[test]
    fn cron_schedules_are_what_the_controller_can_run() {
        let cronjob = |schedule: &str, zone: Option<&str>| {
            let cj = json!({"metadata": {"name": "c"}, "spec": {
                "schedule": schedule, "timeZone": zone,
                "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "i"}]}}}}}});
            validate_kind("batch", "CronJob", &cj, None, (30000, 32767))
                .into_iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect::<Vec<_>>()
        };
        assert!(cronjob("*/5 * * * *", None).is_empty());
        assert!(cronjob("@hourly", Some("Europe/Berlin")).is_empty());
        // Shapes the old character check let through, which the controller then rejected.
        for bad in ["99 * * * *", "* * 0 * *", "1-x * * * *", "*/0 * * * *"] {
            let causes = cronjob(bad, None);
            assert!(
                causes.len() == 1 && causes[0].starts_with("spec.schedule: Invalid value"),
                "{bad}: {causes:?}"
            );
        }
        assert_eq!(
            cronjob("CRON_TZ=UTC * * * * *", None),
            [
                "spec.schedule: Invalid value: \"CRON_TZ=UTC * * * * *\": cannot use TZ or \
                 CRON_TZ in schedule, use timeZone field instead"
            ]
        );
        assert_eq!(
            cronjob("* * * * *", Some("Mars/Olympus")),
            ["spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus"]
        );
    }

    #[test]
    fn service_ports() {
        let svc = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [
            {"port": 70000}, {"port": 80, "nodePort": 80}]}});
        let fields: Vec<String> = validate_kind("", "Service", &svc, None, (30000, 32767))
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.ports[0].name",
                "spec.ports[0].port",
                "spec.ports[1].name",
                "spec.ports[1].nodePort"
            ]
        );
    }

    #[test]
    fn deployment_selector_must_match() {
        let d = json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let causes = validate_kind("apps", "Deployment", &d, None, (30000, 32767));
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.template.metadata.labels");
    }
}
