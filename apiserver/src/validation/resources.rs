//! A container's `resources`, as upstream's `ValidateResourceRequirements` checks them: every
//! name a standard container resource or a valid extended one, every quantity well formed and,
//! for extended resources, whole; requests of resources that cannot be overcommitted (extended
//! resources and huge pages) equal to their limits, and other requests at most their limits.
//!
//! Runs after defaulting, so a limit without a request has already been copied into the request.

use ekube_api::quantity::{canonical, parse_milli, parse_nano};
use ekube_api::resource_name::{
    is_extended, is_hugepages, is_native, is_overcommit_allowed, is_standard_container_resource,
};
use serde_json::{Map, Value};

use super::{qualified_name, resource_quantity};
use crate::errors::Cause;

/// Upstream's `isNotIntegerErrorMsg`.
const NOT_INTEGER: &str = "must be an integer";

/// Names a quota or a node may use without a domain (`IsStandardResourceName`).
const STANDARD: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "requests.storage",
    "services.nodeports",
    "services.loadbalancers",
];

/// Validates `c.resources`; `at` is the container's path (`spec.containers[0]`).
pub(super) fn requirements(c: &Value, at: &str, causes: &mut Vec<Cause>) {
    let at = format!("{at}.resources");
    let (lim_path, req_path) = (format!("{at}.limits"), format!("{at}.requests"));
    let empty = Map::new();
    let map = |kind: &str| {
        c.pointer(&format!("/resources/{kind}"))
            .and_then(Value::as_object)
            .unwrap_or(&empty)
    };
    let (limits, requests) = (map("limits"), map("requests"));
    let (mut cpu_or_memory, mut hugepages) = (false, false);
    for (name, q) in limits {
        let field = format!("{lim_path}[{name}]");
        container_resource_name(name, &field, causes);
        quantity(name, q, field, causes);
        hugepages |= is_hugepages(name);
        cpu_or_memory |= matches!(name.as_str(), "cpu" | "memory");
    }
    for (name, q) in requests {
        let field = format!("{req_path}[{name}]");
        container_resource_name(name, &field, causes);
        quantity(name, q, field, causes);
        hugepages |= is_hugepages(name);
        cpu_or_memory |= matches!(name.as_str(), "cpu" | "memory");
        match limits.get(name) {
            Some(limit) => {
                let (Some(request), Some(limit)) = (text(q), text(limit)) else {
                    continue;
                };
                // Malformed quantities were reported above; nothing to compare then.
                let (Ok(r), Ok(l)) = (parse_nano(&request), parse_nano(&limit)) else {
                    continue;
                };
                let shown = |s: &str| canonical(s).unwrap_or_else(|_| s.to_string());
                let (request, limit) = (shown(&request), shown(&limit));
                if r != l && !is_overcommit_allowed(name) {
                    causes.push(Cause::invalid(
                        &req_path,
                        format!("\"{request}\""),
                        &format!("must be equal to {name} limit of {limit}"),
                    ));
                } else if r > l {
                    causes.push(Cause::invalid(
                        &req_path,
                        format!("\"{request}\""),
                        &format!("must be less than or equal to {name} limit of {limit}"),
                    ));
                }
            }
            None if !is_overcommit_allowed(name) => causes.push(Cause::required_with(
                &lim_path,
                "Limit must be set for non overcommitable resources",
            )),
            None => {}
        }
    }
    if hugepages && !cpu_or_memory {
        causes.push(Cause::forbidden(at, "HugePages require cpu or memory"));
    }
}

/// A quantity as written: JSON strings as they are, numbers (`dev: 1` in YAML) as printed.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `ValidateResourceQuantityValue`: well formed, not negative, and whole for extended resources.
fn quantity(name: &str, q: &Value, field: String, causes: &mut Vec<Cause>) {
    let before = causes.len();
    resource_quantity(field.clone(), q, causes);
    if causes.len() > before || !is_extended(name) {
        return;
    }
    let Some(s) = text(q) else { return };
    if parse_milli(&s).is_ok_and(|m| m % 1000 != 0) {
        let shown = canonical(&s).unwrap_or(s);
        causes.push(Cause::invalid(field, format!("\"{shown}\""), NOT_INTEGER));
    }
}

/// `validateContainerResourceName`: a qualified name; without a domain, one of the standard
/// container resources; with one, native or a valid extended resource name.
pub(super) fn container_resource_name(name: &str, field: &str, causes: &mut Vec<Cause>) {
    let shown = format!("\"{name}\"");
    let errors = qualified_name(name);
    if !errors.is_empty() {
        for e in errors {
            causes.push(Cause::invalid(field, &shown, &e));
        }
        return;
    }
    if !name.contains('/') {
        let standard = STANDARD.contains(&name)
            || is_hugepages(name)
            || name.starts_with("requests.hugepages-");
        if !standard {
            causes.push(Cause::invalid(
                field,
                &shown,
                "must be a standard resource type or fully qualified",
            ));
        }
        if !is_standard_container_resource(name) {
            causes.push(Cause::invalid(
                field,
                &shown,
                "must be a standard resource for containers",
            ));
        }
    } else if !is_native(name) && !is_extended(name) {
        causes.push(Cause::invalid(
            field,
            &shown,
            "doesn't follow extended resource name standard",
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::errors::ApiError;

    const DEV: &str = "vendor.example/dev";

    /// The causes for a pod whose one container has `resources`, defaulted first as the
    /// registry does, as `(field, message)`.
    fn causes(resources: Value) -> Vec<(String, String)> {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "image": "i", "resources": resources}]}});
        crate::defaults::apply_kind("", "Pod", &mut pod);
        super::super::validate_kind("", "Pod", &pod, None, (30000, 32767))
            .into_iter()
            .map(|c| (c.field, c.message))
            .collect()
    }

    fn cause(field: &str, message: &str) -> (String, String) {
        (field.to_string(), message.to_string())
    }

    #[test]
    fn whole_extended_resources_with_equal_requests_and_limits_are_accepted() {
        assert_eq!(causes(json!({"limits": {DEV: "2"}})), []);
        assert_eq!(
            causes(json!({"limits": {DEV: 1}, "requests": {DEV: "1"}})),
            []
        );
        assert_eq!(
            causes(json!({"limits": {DEV: "1"}, "requests": {DEV: "1000m"}})),
            []
        );
        // cpu and memory may still be overcommitted beside them.
        assert_eq!(
            causes(json!({"limits": {DEV: "1", "cpu": "1"}, "requests": {"cpu": "100m"}})),
            []
        );
    }

    #[test]
    fn the_limit_becomes_the_request_when_only_a_limit_is_given() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "image": "i", "resources": {"limits": {DEV: "3"}}}]}});
        crate::defaults::apply_kind("", "Pod", &mut pod);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"][DEV],
            "3"
        );
    }

    #[test]
    fn a_fraction_of_an_extended_resource_is_refused() {
        assert_eq!(
            causes(json!({"limits": {DEV: "0.5"}})),
            [
                cause(
                    "spec.containers[0].resources.limits[vendor.example/dev]",
                    "Invalid value: \"500m\": must be an integer"
                ),
                cause(
                    "spec.containers[0].resources.requests[vendor.example/dev]",
                    "Invalid value: \"500m\": must be an integer"
                ),
            ]
        );
        // cpu has no such rule.
        assert_eq!(causes(json!({"limits": {"cpu": "0.5"}})), []);
    }

    #[test]
    fn an_extended_request_needs_an_equal_limit() {
        assert_eq!(
            causes(json!({"requests": {DEV: "1"}})),
            [cause(
                "spec.containers[0].resources.limits",
                "Required value: Limit must be set for non overcommitable resources"
            )]
        );
        assert_eq!(
            causes(json!({"requests": {DEV: "1"}, "limits": {DEV: "2"}})),
            [cause(
                "spec.containers[0].resources.requests",
                "Invalid value: \"1\": must be equal to vendor.example/dev limit of 2"
            )]
        );
        // Huge pages are not overcommitted either.
        assert_eq!(
            causes(
                json!({"requests": {"hugepages-2Mi": "2Mi", "memory": "1Gi"},
                "limits": {"hugepages-2Mi": "4Mi", "memory": "1Gi"}})
            ),
            [cause(
                "spec.containers[0].resources.requests",
                "Invalid value: \"2Mi\": must be equal to hugepages-2Mi limit of 4Mi"
            )]
        );
    }

    #[test]
    fn other_requests_may_not_exceed_their_limits() {
        assert_eq!(
            causes(json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}})),
            [cause(
                "spec.containers[0].resources.requests",
                "Invalid value: \"2\": must be less than or equal to cpu limit of 1500m"
            )]
        );
        assert_eq!(
            causes(json!({"requests": {"memory": "1Ki"}, "limits": {"memory": "1024"}})),
            []
        );
    }

    #[test]
    fn names_must_be_container_resources_or_valid_extended_ones() {
        assert_eq!(
            causes(json!({"limits": {"pods": "1"}})),
            [
                cause(
                    "spec.containers[0].resources.limits[pods]",
                    "Invalid value: \"pods\": must be a standard resource for containers"
                ),
                cause(
                    "spec.containers[0].resources.requests[pods]",
                    "Invalid value: \"pods\": must be a standard resource for containers"
                ),
            ]
        );
        let got = causes(json!({"requests": {"gpu": "1"}}));
        assert_eq!(
            got,
            [
                cause(
                    "spec.containers[0].resources.requests[gpu]",
                    "Invalid value: \"gpu\": must be a standard resource type or fully qualified"
                ),
                cause(
                    "spec.containers[0].resources.requests[gpu]",
                    "Invalid value: \"gpu\": must be a standard resource for containers"
                ),
            ]
        );
        let got = causes(json!({"limits": {"requests.vendor.example/dev": "1"}}));
        assert_eq!(
            got[0],
            cause(
                "spec.containers[0].resources.limits[requests.vendor.example/dev]",
                "Invalid value: \"requests.vendor.example/dev\": doesn't follow extended resource name standard"
            )
        );
        let got = causes(json!({"limits": {"a/b/c": "1"}}));
        assert!(got[0].1.contains("a qualified name"), "{got:?}");
        assert_eq!(
            causes(json!({"limits": {"example.kubernetes.io/x": "1"}})),
            []
        );
    }

    #[test]
    fn hugepages_alone_are_forbidden() {
        assert_eq!(
            causes(json!({"limits": {"hugepages-2Mi": "2Mi"}})),
            [cause(
                "spec.containers[0].resources",
                "Forbidden: HugePages require cpu or memory"
            )]
        );
    }

    #[test]
    fn init_containers_are_checked_alike_and_the_status_reads_as_upstream() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {
            "initContainers": [{"name": "i", "image": "i", "resources": {"requests": {DEV: "1"}}}],
            "containers": [{"name": "c", "image": "i"}]}});
        crate::defaults::apply_kind("", "Pod", &mut pod);
        let causes = super::super::validate_kind("", "Pod", &pod, None, (30000, 32767));
        let e = ApiError::invalid("", "Pod", "p", causes);
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "Pod \"p\" is invalid: spec.initContainers[0].resources.limits: Required value: Limit must be set for non overcommitable resources"
        );
    }
}
