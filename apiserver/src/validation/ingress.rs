//! `networking.k8s.io/v1` Ingress and IngressClass validation, as upstream's
//! `pkg/apis/networking/validation` words it.
//!
//! An Ingress needs a `defaultBackend` or `rules`; each backend is exactly one of a Service
//! (a DNS-1035 name and a port given by number or by name) and a typed resource; hosts are DNS
//! names (a single leading `*.` label allowed), never IP addresses; every HTTP path has a
//! `pathType`, and `Exact` and `Prefix` paths are absolute and free of the sequences a proxy
//! could normalise into another path. An IngressClass names its controller by a
//! domain-prefixed path that never changes, and its parameters reference a kind, a name and a
//! scope.
//!
//! On update, a spec left as stored is not judged again (a status writer or a finalizer
//! removal must not fail on an Ingress stored before these rules held), and a changed one gets
//! upstream's ratchets: an invalid TLS `secretName`, invalid rules under a wildcard host and
//! DNS-1123 (not DNS-1035) Service names stay allowed if the stored object already had them.
//! The load-balancer status is judged when it changes.

use std::collections::HashSet;

use serde_json::Value;

use super::json::{items, present, quoted, str_of};
use super::names::{
    is_ip_sloppy, label_errors, path_segment_errors, port_name_errors, subdomain_errors,
    wildcard_errors,
};
use super::{is_dns1035_label, is_dns1123_label};
use crate::errors::Cause;

/// The annotation that named an Ingress's class before `spec.ingressClassName`.
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

const PATH_TYPES: &[&str] = &["Exact", "ImplementationSpecific", "Prefix"];
const INVALID_PATH_SEQUENCES: &[&str] = &["//", "/./", "/../", "%2f", "%2F"];
const INVALID_PATH_SUFFIXES: &[&str] = &["/..", "/."];
const PARAMETER_SCOPES: &[&str] = &["Cluster", "Namespace"];
const MAX_CONTROLLER_LEN: usize = 250;
/// The characters of an HTTP path (RFC 3986), as upstream's `IsDomainPrefixedPath` allows them.
const HTTP_PATH_REGEX: &str = "[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+";

/// Upstream's `IngressValidationOptions`: what an update may keep of the stored object.
#[derive(Debug, Default, Clone, Copy)]
struct Options {
    allow_invalid_secret_name: bool,
    allow_invalid_wildcard_host_rule: bool,
    /// Service names checked as DNS-1123 labels rather than DNS-1035 labels.
    relaxed_service_name: bool,
}

impl Options {
    /// Upstream's `ValidateIngressUpdate` options, from the stored Ingress.
    fn ratcheted(old: &Value) -> Self {
        let spec = old.get("spec").unwrap_or(&Value::Null);
        let allow_invalid_secret_name = items(spec, "tls").iter().any(|tls| {
            let name = str_of(tls, "secretName");
            !name.is_empty() && !subdomain_errors(name).is_empty()
        });
        let allow_invalid_wildcard_host_rule = items(spec, "rules").iter().any(|rule| {
            let mut causes = Vec::new();
            rule_value(rule, "", Options::default(), &mut causes);
            str_of(rule, "host").contains('*') && !causes.is_empty()
        });
        let relaxed_service_name = backends(spec).into_iter().any(|b| {
            let name = b
                .pointer("/service/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            is_dns1123_label(name) && !is_dns1035_label(name)
        });
        Self {
            allow_invalid_secret_name,
            allow_invalid_wildcard_host_rule,
            relaxed_service_name,
        }
    }
}

/// An Ingress; `old` is the stored version on update.
pub(crate) fn ingress(obj: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    match old {
        None => {
            ingress_spec(spec, Options::default(), causes);
            class_annotation(obj, causes);
        }
        Some(old) if old.get("spec") != obj.get("spec") => {
            ingress_spec(spec, Options::ratcheted(old), causes)
        }
        Some(_) => {}
    }
    if old.is_none_or(|old| old.get("status") != obj.get("status")) {
        load_balancer_status(obj, old, causes);
    }
}

/// Upstream's `ValidateIngressCreate`: the legacy annotation and `ingressClassName` may both
/// be set only to the same class.
fn class_annotation(obj: &Value, causes: &mut Vec<Cause>) {
    let annotation = obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(CLASS_ANNOTATION))
        .and_then(Value::as_str);
    let field = obj
        .pointer("/spec/ingressClassName")
        .and_then(Value::as_str);
    if let (Some(annotation), Some(field)) = (annotation, field)
        && annotation != field
    {
        causes.push(Cause::invalid(
            format!("annotations.{CLASS_ANNOTATION}"),
            quoted(annotation),
            "must match `ingressClassName` when both are specified",
        ));
    }
}

/// Upstream's `ValidateIngressSpec`.
fn ingress_spec(spec: &Value, opts: Options, causes: &mut Vec<Cause>) {
    let rules = items(spec, "rules");
    let default_backend = present(spec, "defaultBackend");
    if rules.is_empty() && default_backend.is_none() {
        // Upstream shows the Go value of the empty rules slice.
        let shown = if spec.get("rules").is_some_and(Value::is_array) {
            "[]networking.IngressRule{}"
        } else {
            "[]networking.IngressRule(nil)"
        };
        causes.push(Cause::invalid(
            "spec",
            shown,
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = default_backend {
        backend(b, "spec.defaultBackend", opts, causes);
    }
    for (i, rule) in rules.iter().enumerate() {
        let at = format!("spec.rules[{i}]");
        let host = str_of(rule, "host");
        let mut wildcard = false;
        if !host.is_empty() {
            if is_ip_sloppy(host) {
                causes.push(Cause::invalid(
                    format!("{at}.host"),
                    quoted(host),
                    "must be a DNS name, not an IP address",
                ));
            }
            let errors = if host.contains('*') {
                wildcard = true;
                wildcard_errors(host)
            } else {
                subdomain_errors(host)
            };
            for msg in errors {
                causes.push(Cause::invalid(format!("{at}.host"), quoted(host), &msg));
            }
        }
        if !wildcard || !opts.allow_invalid_wildcard_host_rule {
            rule_value(rule, &at, opts, causes);
        }
    }
    for (i, tls) in items(spec, "tls").iter().enumerate() {
        let at = format!("spec.tls[{i}]");
        for (j, host) in items(tls, "hosts").iter().enumerate() {
            let host = host.as_str().unwrap_or_default();
            let errors = if host.contains('*') {
                wildcard_errors(host)
            } else {
                subdomain_errors(host)
            };
            for msg in errors {
                causes.push(Cause::invalid(
                    format!("{at}.hosts[{j}]"),
                    quoted(host),
                    &msg,
                ));
            }
        }
        let secret = str_of(tls, "secretName");
        if !secret.is_empty() && !opts.allow_invalid_secret_name {
            for msg in subdomain_errors(secret) {
                causes.push(Cause::invalid(
                    format!("{at}.secretName"),
                    quoted(secret),
                    &msg,
                ));
            }
        }
    }
    if let Some(class) = spec.get("ingressClassName").and_then(Value::as_str) {
        for msg in subdomain_errors(class) {
            causes.push(Cause::invalid("spec.ingressClassName", quoted(class), &msg));
        }
    }
}

/// A rule's `http` value: paths required, each with a known `pathType` and a valid backend.
fn rule_value(rule: &Value, at: &str, opts: Options, causes: &mut Vec<Cause>) {
    let Some(http) = present(rule, "http") else {
        return;
    };
    let at = format!("{at}.http");
    let paths = items(http, "paths");
    if paths.is_empty() {
        causes.push(Cause::required(format!("{at}.paths")));
    }
    for (i, p) in paths.iter().enumerate() {
        http_path(p, &format!("{at}.paths[{i}]"), opts, causes);
    }
}

/// Upstream's `validateHTTPIngressPath`.
fn http_path(p: &Value, at: &str, opts: Options, causes: &mut Vec<Cause>) {
    let Some(path_type) = p.get("pathType").and_then(Value::as_str) else {
        causes.push(Cause::required_with(
            format!("{at}.pathType"),
            "pathType must be specified",
        ));
        return;
    };
    let path = str_of(p, "path");
    let field = format!("{at}.path");
    match path_type {
        "Exact" | "Prefix" => {
            if !path.starts_with('/') {
                causes.push(Cause::invalid(
                    &field,
                    quoted(path),
                    "must be an absolute path",
                ));
            }
            for seq in INVALID_PATH_SEQUENCES.iter().filter(|s| path.contains(*s)) {
                causes.push(Cause::invalid(
                    &field,
                    quoted(path),
                    &format!("must not contain '{seq}'"),
                ));
            }
            for suffix in INVALID_PATH_SUFFIXES.iter().filter(|s| path.ends_with(*s)) {
                causes.push(Cause::invalid(
                    &field,
                    quoted(path),
                    &format!("cannot end with '{suffix}'"),
                ));
            }
        }
        "ImplementationSpecific" => {
            if !path.is_empty() && !path.starts_with('/') {
                causes.push(Cause::invalid(
                    &field,
                    quoted(path),
                    "must be an absolute path",
                ));
            }
        }
        other => causes.push(Cause::not_supported(
            format!("{at}.pathType"),
            other,
            PATH_TYPES,
        )),
    }
    let b = p.get("backend").unwrap_or(&Value::Null);
    backend(b, &format!("{at}.backend"), opts, causes);
}

/// Upstream's `validateIngressBackend`: a Service or a resource, never both.
fn backend(b: &Value, at: &str, opts: Options, causes: &mut Vec<Cause>) {
    match (present(b, "resource"), present(b, "service")) {
        (Some(_), Some(_)) => causes.push(Cause::invalid(
            at,
            "\"\"",
            "cannot set both resource and service backends",
        )),
        (Some(resource), None) => {
            typed_reference(resource, &format!("{at}.resource"), causes);
        }
        (None, Some(service)) => service_backend(service, at, opts, causes),
        (None, None) => causes.push(Cause::invalid(
            at,
            "\"\"",
            "resource or service backend is required",
        )),
    }
}

fn service_backend(service: &Value, at: &str, opts: Options, causes: &mut Vec<Cause>) {
    let name = str_of(service, "name");
    let name_field = format!("{at}.service.name");
    if name.is_empty() {
        causes.push(Cause::required(name_field));
    } else if opts.relaxed_service_name {
        for msg in label_errors(name, false) {
            causes.push(Cause::invalid(&name_field, quoted(name), &msg));
        }
    } else {
        for msg in label_errors(name, true) {
            causes.push(Cause::invalid(&name_field, quoted(name), &msg));
        }
    }
    let port = service.get("port").unwrap_or(&Value::Null);
    let port_name = str_of(port, "name");
    let number = port.get("number").and_then(Value::as_i64).unwrap_or(0);
    match (!port_name.is_empty(), number != 0) {
        (true, true) => causes.push(Cause::invalid(
            at,
            "\"\"",
            "cannot set both port name & port number",
        )),
        (true, false) => {
            for msg in port_name_errors(port_name) {
                causes.push(Cause::invalid(
                    format!("{at}.service.port.name"),
                    quoted(port_name),
                    msg,
                ));
            }
        }
        (false, true) => {
            if !(1..=65535).contains(&number) {
                causes.push(Cause::invalid(
                    format!("{at}.service.port.number"),
                    number,
                    "must be between 1 and 65535, inclusive",
                ));
            }
        }
        (false, false) => causes.push(Cause::required_with(at, "port name or number is required")),
    }
}

/// Upstream's `validateIngressTypedLocalObjectReference` (a resource backend).
fn typed_reference(r: &Value, at: &str, causes: &mut Vec<Cause>) {
    if let Some(group) = r.get("apiGroup").and_then(Value::as_str) {
        for msg in subdomain_errors(group) {
            causes.push(Cause::invalid(
                format!("{at}.apiGroup"),
                quoted(group),
                &msg,
            ));
        }
    }
    for field in ["kind", "name"] {
        let value = str_of(r, field);
        if value.is_empty() {
            causes.push(Cause::required(format!("{at}.{field}")));
        }
        for msg in path_segment_errors(value) {
            causes.push(Cause::invalid(format!("{at}.{field}"), quoted(value), &msg));
        }
    }
}

/// Upstream's `ValidateIngressLoadBalancerStatus`: IPs that parse (or that the stored status
/// already had), hostnames that are DNS names.
fn load_balancer_status(obj: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    let existing: HashSet<&str> = old
        .and_then(|o| o.pointer("/status/loadBalancer/ingress"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|i| str_of(i, "ip"))
        .filter(|ip| !ip.is_empty())
        .collect();
    let ingress = obj
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, point) in ingress.iter().enumerate() {
        let at = format!("status.loadBalancer.ingress[{i}]");
        let ip = str_of(point, "ip");
        if !ip.is_empty() && !existing.contains(ip) && ip.parse::<std::net::IpAddr>().is_err() {
            causes.push(Cause::invalid(
                format!("{at}.ip"),
                quoted(ip),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
        let hostname = str_of(point, "hostname");
        if !hostname.is_empty() {
            for msg in subdomain_errors(hostname) {
                causes.push(Cause::invalid(
                    format!("{at}.hostname"),
                    quoted(hostname),
                    &msg,
                ));
            }
            if is_ip_sloppy(hostname) {
                causes.push(Cause::invalid(
                    format!("{at}.hostname"),
                    quoted(hostname),
                    "must be a DNS name, not an IP address",
                ));
            }
        }
    }
}

/// An IngressClass (upstream's `ValidateIngressClass`).
pub(crate) fn ingress_class(obj: &Value, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let controller = str_of(spec, "controller");
    if controller.is_empty() {
        causes.push(Cause::required("spec.controller"));
    } else {
        if controller.len() > MAX_CONTROLLER_LEN {
            causes.push(Cause::too_long("spec.controller", MAX_CONTROLLER_LEN));
        }
        domain_prefixed_path("spec.controller", controller, causes);
    }
    if let Some(params) = present(spec, "parameters") {
        parameters(params, "spec.parameters", causes);
    }
}

/// An IngressClass's controller never changes.
pub(crate) fn ingress_class_immutable(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    let controller = |v: &Value| {
        v.pointer("/spec/controller")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let new_controller = controller(new);
    if controller(old) != new_controller {
        causes.push(Cause::invalid(
            "spec.controller",
            quoted(&new_controller),
            "field is immutable",
        ));
    }
}

/// Upstream's `IsDomainPrefixedPath`: `<DNS subdomain>/<HTTP path characters>`.
fn domain_prefixed_path(at: &str, value: &str, causes: &mut Vec<Cause>) {
    let (host, path) = match value.split_once('/') {
        Some((host, path)) if !host.is_empty() && !path.is_empty() => (host, path),
        _ => {
            causes.push(Cause::invalid(
                at,
                quoted(value),
                "must be a domain-prefixed path (such as \"acme.io/foo\")",
            ));
            return;
        }
    };
    for msg in subdomain_errors(host) {
        causes.push(Cause::invalid(at, quoted(host), &msg));
    }
    let http_path = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-._~%!$&'()*+,;=:".contains(&b));
    if !http_path {
        causes.push(Cause::invalid(
            at,
            quoted(path),
            &format!("Invalid path (regex used for validation is '{HTTP_PATH_REGEX}')"),
        ));
    }
}

/// Upstream's `validateIngressClassParametersReference`.
fn parameters(p: &Value, at: &str, causes: &mut Vec<Cause>) {
    typed_reference(p, at, causes);
    let Some(scope) = p.get("scope").and_then(Value::as_str) else {
        causes.push(Cause::required(format!("{at}.scope")));
        return;
    };
    let namespace = p.get("namespace").and_then(Value::as_str);
    match scope {
        "Namespace" => match namespace {
            None => causes.push(Cause::required_with(
                format!("{at}.namespace"),
                "`parameters.scope` is set to 'Namespace'",
            )),
            Some(ns) => {
                for msg in label_errors(ns, false) {
                    causes.push(Cause::invalid(format!("{at}.namespace"), quoted(ns), &msg));
                }
            }
        },
        "Cluster" => {
            if namespace.is_some() {
                causes.push(Cause::forbidden(
                    format!("{at}.namespace"),
                    "`parameters.scope` is set to 'Cluster'",
                ));
            }
        }
        other => causes.push(Cause::not_supported(
            format!("{at}.scope"),
            other,
            PARAMETER_SCOPES,
        )),
    }
}

/// Every backend of a spec: the default one and each path's.
fn backends(spec: &Value) -> Vec<&Value> {
    let mut out: Vec<&Value> = present(spec, "defaultBackend").into_iter().collect();
    for rule in items(spec, "rules") {
        if let Some(http) = present(rule, "http") {
            out.extend(items(http, "paths").iter().filter_map(|p| p.get("backend")));
        }
    }
    out
}

#[cfg(test)]
mod tests;
