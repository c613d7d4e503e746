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

use super::{DNS1035_LABEL, DNS1123_LABEL, DNS1123_SUBDOMAIN, is_dns1035_label, is_dns1123_label};
use crate::errors::Cause;

/// The annotation that named an Ingress's class before `spec.ingressClassName`.
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

const PATH_TYPES: &[&str] = &["Exact", "ImplementationSpecific", "Prefix"];
const INVALID_PATH_SEQUENCES: &[&str] = &["//", "/./", "/../", "%2f", "%2F"];
const INVALID_PATH_SUFFIXES: &[&str] = &["/..", "/."];
const PARAMETER_SCOPES: &[&str] = &["Cluster", "Namespace"];
const MAX_CONTROLLER_LEN: usize = 250;
const WILDCARD_DNS1123_SUBDOMAIN: &str = "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
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
pub(super) fn ingress(obj: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
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
pub(super) fn ingress_class(obj: &Value, causes: &mut Vec<Cause>) {
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
pub(super) fn ingress_class_immutable(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
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

/// `IsDNS1123Subdomain`'s messages: the length and the pattern are reported apart.
fn subdomain_errors(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > 253 {
        errors.push("must be no more than 253 characters".to_string());
    }
    if !s.split('.').all(label_pattern) {
        errors.push(DNS1123_SUBDOMAIN.to_string());
    }
    errors
}

/// `IsWildcardDNS1123Subdomain`'s messages: `*.` then a subdomain.
fn wildcard_errors(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > 253 {
        errors.push("must be no more than 253 characters".to_string());
    }
    let ok = s
        .strip_prefix("*.")
        .is_some_and(|rest| rest.split('.').all(label_pattern));
    if !ok {
        errors.push(WILDCARD_DNS1123_SUBDOMAIN.to_string());
    }
    errors
}

/// A label's messages (`IsDNS1123Label`, or `IsDNS1035Label` when `dns1035`): at most 63
/// characters, and the pattern (DNS-1035 labels start with a letter).
fn label_errors(s: &str, dns1035: bool) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > 63 {
        errors.push("must be no more than 63 characters".to_string());
    }
    let starts_with_letter = s.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    if dns1035 && !(label_pattern(s) && starts_with_letter) {
        errors.push(DNS1035_LABEL.to_string());
    } else if !dns1035 && !label_pattern(s) {
        errors.push(DNS1123_LABEL.to_string());
    }
    errors
}

/// One DNS label's pattern, `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, without its length limit.
fn label_pattern(label: &str) -> bool {
    !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// `IsValidPortName`'s messages (an IANA service name).
fn port_name_errors(name: &str) -> Vec<&'static str> {
    let mut errors = Vec::new();
    if name.len() > 15 {
        errors.push("must be no more than 15 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errors.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        errors.push("must contain at least one letter (a-z)");
    }
    if name.contains("--") {
        errors.push("must not contain consecutive hyphens");
    }
    if name.starts_with('-') || name.ends_with('-') {
        errors.push("must not begin or end with a hyphen");
    }
    errors
}

/// `IsPathSegmentName`'s messages: what cannot be one segment of a URL path.
pub(super) fn path_segment_errors(s: &str) -> Vec<String> {
    if s == "." || s == ".." {
        return vec![format!("may not be '{s}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|c| s.contains(*c))
        .map(|c| format!("may not contain '{c}'"))
        .collect()
}

/// Whether upstream's `ParseIPSloppy` takes `s` for an IP address: IPv6, or dotted IPv4
/// whose octets may carry leading zeros.
fn is_ip_sloppy(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let octets: Vec<&str> = s.split('.').collect();
    octets.len() == 4
        && octets.iter().all(|o| {
            !o.is_empty()
                && o.bytes().all(|b| b.is_ascii_digit())
                && o.trim_start_matches('0').len() <= 3
                && o.trim_start_matches('0').parse::<u16>().unwrap_or(0) <= 255
        })
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

fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn present<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|v| !v.is_null())
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A string value as upstream prints it in a cause (Go's `%q`).
fn quoted(s: &str) -> String {
    format!("{s:?}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::admission::tests::registry;
    use crate::registry::WriteOptions;

    fn render(causes: Vec<Cause>) -> Vec<String> {
        causes
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    /// The causes of creating an Ingress with `spec`.
    fn create(spec: Value) -> Vec<String> {
        let mut causes = Vec::new();
        ingress(&json!({"spec": spec}), None, &mut causes);
        render(causes)
    }

    /// A spec with one rule holding one path.
    fn one_path(path: Value) -> Value {
        json!({"rules": [{"host": "foo.example.com", "http": {"paths": [path]}}]})
    }

    fn svc() -> Value {
        json!({"service": {"name": "web", "port": {"number": 80}}})
    }

    #[test]
    fn valid_ingresses() {
        let cases = [
            json!({"defaultBackend": svc()}),
            json!({"defaultBackend": {"service": {"name": "web", "port": {"name": "http"}}}}),
            json!({"defaultBackend": {"resource": {"apiGroup": "k8s.example.com", "kind": "StorageBucket", "name": "static"}}}),
            json!({"rules": [{"host": "*.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": svc()}]}}]}),
            json!({"rules": [{"host": "only.example.com"}], "ingressClassName": "ekube"}),
            one_path(json!({"path": "/foo/bar/", "pathType": "Prefix", "backend": svc()})),
            one_path(json!({"path": "/", "pathType": "Exact", "backend": svc()})),
            one_path(json!({"path": "/foo%20bar;v=1", "pathType": "Exact", "backend": svc()})),
            one_path(json!({"pathType": "ImplementationSpecific", "backend": svc()})),
            // ImplementationSpecific paths are the controller's to interpret.
            one_path(
                json!({"path": "/foo/../bar//", "pathType": "ImplementationSpecific", "backend": svc()}),
            ),
            json!({"defaultBackend": svc(), "tls": [{"hosts": ["*.example.com", "a.example.com"], "secretName": "tls-cert"}]}),
            json!({"defaultBackend": svc(), "tls": [{}]}),
        ];
        for spec in cases {
            assert_eq!(create(spec.clone()), Vec::<String>::new(), "{spec}");
        }
    }

    #[test]
    fn invalid_ingresses() {
        let subdomain = DNS1123_SUBDOMAIN;
        let wildcard = WILDCARD_DNS1123_SUBDOMAIN;
        let at = "spec.rules[0].http.paths[0]";
        let cases: Vec<(Value, Vec<String>)> = vec![
            (
                json!({}),
                vec!["spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified".into()],
            ),
            (
                json!({"rules": []}),
                vec!["spec: Invalid value: []networking.IngressRule{}: either `defaultBackend` or `rules` must be specified".into()],
            ),
            (
                json!({"defaultBackend": {"service": {"name": "web", "port": {"number": 80}},
                    "resource": {"kind": "Bucket", "name": "b"}}}),
                vec!["spec.defaultBackend: Invalid value: \"\": cannot set both resource and service backends".into()],
            ),
            (
                json!({"defaultBackend": {}}),
                vec!["spec.defaultBackend: Invalid value: \"\": resource or service backend is required".into()],
            ),
            (
                json!({"defaultBackend": {"service": {"name": "web", "port": {"number": 80, "name": "http"}}}}),
                vec!["spec.defaultBackend: Invalid value: \"\": cannot set both port name & port number".into()],
            ),
            (
                json!({"defaultBackend": {"service": {"name": "web", "port": {}}}}),
                vec!["spec.defaultBackend: Required value: port name or number is required".into()],
            ),
            (
                json!({"defaultBackend": {"service": {"name": "web", "port": {"number": 65536}}}}),
                vec!["spec.defaultBackend.service.port.number: Invalid value: 65536: must be between 1 and 65535, inclusive".into()],
            ),
            (
                json!({"defaultBackend": {"service": {"name": "web", "port": {"name": "8080"}}}}),
                vec!["spec.defaultBackend.service.port.name: Invalid value: \"8080\": must contain at least one letter (a-z)".into()],
            ),
            (
                json!({"defaultBackend": {"service": {"name": "web", "port": {"name": "http--alt"}}}}),
                vec!["spec.defaultBackend.service.port.name: Invalid value: \"http--alt\": must not contain consecutive hyphens".into()],
            ),
            (
                json!({"defaultBackend": {"service": {"port": {"number": 80}}}}),
                vec!["spec.defaultBackend.service.name: Required value".into()],
            ),
            (
                json!({"defaultBackend": {"service": {"name": "1web", "port": {"number": 80}}}}),
                vec![format!("spec.defaultBackend.service.name: Invalid value: \"1web\": {DNS1035_LABEL}")],
            ),
            (
                json!({"defaultBackend": {"resource": {"apiGroup": "Example", "kind": "a/b"}}}),
                vec![
                    format!("spec.defaultBackend.resource.apiGroup: Invalid value: \"Example\": {subdomain}"),
                    "spec.defaultBackend.resource.kind: Invalid value: \"a/b\": may not contain '/'".into(),
                    "spec.defaultBackend.resource.name: Required value".into(),
                ],
            ),
            (
                json!({"rules": [{"host": "1.2.3.4"}]}),
                vec!["spec.rules[0].host: Invalid value: \"1.2.3.4\": must be a DNS name, not an IP address".into()],
            ),
            (
                json!({"rules": [{"host": "010.2.3.4"}]}),
                vec!["spec.rules[0].host: Invalid value: \"010.2.3.4\": must be a DNS name, not an IP address".into()],
            ),
            (
                json!({"rules": [{"host": "Foo.example.com"}]}),
                vec![format!("spec.rules[0].host: Invalid value: \"Foo.example.com\": {subdomain}")],
            ),
            (
                json!({"rules": [{"host": "*.*.example.com"}]}),
                vec![format!("spec.rules[0].host: Invalid value: \"*.*.example.com\": {wildcard}")],
            ),
            (
                json!({"rules": [{"host": "foo.*.example.com"}]}),
                vec![format!("spec.rules[0].host: Invalid value: \"foo.*.example.com\": {wildcard}")],
            ),
            (
                json!({"rules": [{"host": "*"}]}),
                vec![format!("spec.rules[0].host: Invalid value: \"*\": {wildcard}")],
            ),
            (
                json!({"rules": [{"host": "a.example.com", "http": {"paths": []}}]}),
                vec!["spec.rules[0].http.paths: Required value".into()],
            ),
            (
                one_path(json!({"path": "/", "backend": {}})),
                vec![format!("{at}.pathType: Required value: pathType must be specified")],
            ),
            (
                one_path(json!({"path": "/", "pathType": "Regex", "backend": svc()})),
                vec![format!("{at}.pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"")],
            ),
            (
                one_path(json!({"path": "/", "pathType": "Prefix"})),
                vec![format!("{at}.backend: Invalid value: \"\": resource or service backend is required")],
            ),
            (
                one_path(json!({"pathType": "Exact", "backend": svc()})),
                vec![format!("{at}.path: Invalid value: \"\": must be an absolute path")],
            ),
            (
                one_path(json!({"path": "foo", "pathType": "Prefix", "backend": svc()})),
                vec![format!("{at}.path: Invalid value: \"foo\": must be an absolute path")],
            ),
            (
                one_path(json!({"path": "foo", "pathType": "ImplementationSpecific", "backend": svc()})),
                vec![format!("{at}.path: Invalid value: \"foo\": must be an absolute path")],
            ),
            (
                json!({"defaultBackend": svc(), "tls": [{"hosts": ["*.*.example.com", "Bad"], "secretName": "Bad_Secret"}]}),
                vec![
                    format!("spec.tls[0].hosts[0]: Invalid value: \"*.*.example.com\": {wildcard}"),
                    format!("spec.tls[0].hosts[1]: Invalid value: \"Bad\": {subdomain}"),
                    format!("spec.tls[0].secretName: Invalid value: \"Bad_Secret\": {subdomain}"),
                ],
            ),
            (
                json!({"defaultBackend": svc(), "ingressClassName": "Ekube"}),
                vec![format!("spec.ingressClassName: Invalid value: \"Ekube\": {subdomain}")],
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(create(spec.clone()), want, "{spec}");
        }
    }

    #[test]
    fn exact_and_prefix_paths_are_normalised_already() {
        let cases = [
            ("//foo", "must not contain '//'"),
            ("/foo/./bar", "must not contain '/./'"),
            ("/foo/../bar", "must not contain '/../'"),
            ("/foo%2fbar", "must not contain '%2f'"),
            ("/foo%2Fbar", "must not contain '%2F'"),
            ("/foo/..", "cannot end with '/..'"),
            ("/foo/.", "cannot end with '/.'"),
        ];
        for path_type in ["Exact", "Prefix"] {
            for (path, msg) in cases {
                let spec = one_path(json!({"path": path, "pathType": path_type, "backend": svc()}));
                assert_eq!(
                    create(spec),
                    [format!(
                        "spec.rules[0].http.paths[0].path: Invalid value: \"{path}\": {msg}"
                    )],
                    "{path_type} {path}"
                );
            }
        }
    }

    #[test]
    fn the_class_annotation_must_agree_on_create() {
        let ing = |annotation: &str, class: &str| {
            json!({"metadata": {"annotations": {CLASS_ANNOTATION: annotation}},
                "spec": {"ingressClassName": class, "defaultBackend": svc()}})
        };
        let mut causes = Vec::new();
        ingress(&ing("ekube", "ekube"), None, &mut causes);
        assert_eq!(causes, []);
        ingress(&ing("nginx", "ekube"), None, &mut causes);
        assert_eq!(
            render(causes),
            [
                "annotations.kubernetes.io/ingress.class: Invalid value: \"nginx\": must match `ingressClassName` when both are specified"
            ]
        );
        // Upstream checks this on create only.
        let mut causes = Vec::new();
        let old = ing("nginx", "nginx");
        ingress(&ing("nginx", "ekube"), Some(&old), &mut causes);
        assert_eq!(causes, []);
    }

    #[test]
    fn updates_keep_what_was_stored() {
        let update = |old: Value, new: Value| {
            let mut causes = Vec::new();
            ingress(&new, Some(&old), &mut causes);
            render(causes)
        };
        let bad_secret =
            json!({"spec": {"defaultBackend": svc(), "tls": [{"secretName": "Bad_Secret"}]}});
        // Unchanged (a status write, a finalizer removed): not judged again.
        assert_eq!(
            update(bad_secret.clone(), bad_secret.clone()),
            Vec::<String>::new()
        );
        // Changed: the stored invalid secret name is allowed, the rest is judged.
        let mut changed = bad_secret.clone();
        changed["spec"]["tls"][0]["hosts"] = json!(["a.example.com"]);
        assert_eq!(update(bad_secret.clone(), changed), Vec::<String>::new());
        let mut worse = bad_secret.clone();
        worse["spec"]["ingressClassName"] = json!("Bad");
        assert_eq!(update(bad_secret, worse).len(), 1);
        // A DNS-1123 label that is not a DNS-1035 one stays allowed once stored.
        let named = |name: &str| json!({"spec": {"defaultBackend": {"service": {"name": name, "port": {"number": 80}}}}});
        assert_eq!(update(named("1web"), named("2web")), Vec::<String>::new());
        assert_eq!(update(named("web"), named("2web")).len(), 1);
        // Invalid rules under a wildcard host stay allowed once stored.
        let wild = |path: &str| {
            json!({"spec": {"rules": [{"host": "*.example.com", "http": {"paths": [
                {"path": path, "pathType": "Prefix", "backend": svc()}]}}]}})
        };
        assert_eq!(update(wild("foo"), wild("bar")), Vec::<String>::new());
        assert_eq!(update(wild("/foo"), wild("bar")).len(), 1);
    }

    #[test]
    fn load_balancer_status() {
        let with_status = |points: Value| json!({"spec": {"defaultBackend": svc()}, "status": {"loadBalancer": {"ingress": points}}});
        let write = |old: &Value, points: Value| {
            let mut causes = Vec::new();
            ingress(&with_status(points), Some(old), &mut causes);
            render(causes)
        };
        let old = with_status(json!([]));
        assert_eq!(
            write(
                &old,
                json!([{"ip": "192.0.2.10"}, {"ip": "2001:db8::1"}, {"hostname": "lb.example.com"}])
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            write(&old, json!([{"ip": "192.0.2"}, {"hostname": "192.0.2.10"}, {"hostname": "LB"}])),
            [
                "status.loadBalancer.ingress[0].ip: Invalid value: \"192.0.2\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".to_string(),
                "status.loadBalancer.ingress[1].hostname: Invalid value: \"192.0.2.10\": must be a DNS name, not an IP address".into(),
                format!("status.loadBalancer.ingress[2].hostname: Invalid value: \"LB\": {DNS1123_SUBDOMAIN}"),
            ]
        );
        // An address the stored status already had is kept.
        let legacy = with_status(json!([{"ip": "010.0.0.1"}]));
        assert_eq!(
            write(
                &legacy,
                json!([{"ip": "010.0.0.1"}, {"hostname": "lb.example.com"}])
            ),
            Vec::<String>::new()
        );
    }

    fn class(spec: Value) -> Vec<String> {
        let mut causes = Vec::new();
        ingress_class(&json!({"spec": spec}), &mut causes);
        render(causes)
    }

    #[test]
    fn ingress_classes() {
        for spec in [
            json!({"controller": "ekube.io/ingress"}),
            json!({"controller": "example.com/a/b-c_d~e:f", "parameters": {
                "apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "lb", "scope": "Cluster"}}),
            json!({"controller": "example.com/x", "parameters": {
                "kind": "ConfigMap", "name": "lb", "scope": "Namespace", "namespace": "ingress"}}),
        ] {
            assert_eq!(class(spec.clone()), Vec::<String>::new(), "{spec}");
        }
        let cases: Vec<(Value, Vec<String>)> = vec![
            (json!({}), vec!["spec.controller: Required value".into()]),
            (
                json!({"controller": "ekube"}),
                vec!["spec.controller: Invalid value: \"ekube\": must be a domain-prefixed path (such as \"acme.io/foo\")".into()],
            ),
            (
                json!({"controller": "/ingress"}),
                vec!["spec.controller: Invalid value: \"/ingress\": must be a domain-prefixed path (such as \"acme.io/foo\")".into()],
            ),
            (
                json!({"controller": "Ekube.io/ingress"}),
                vec![format!("spec.controller: Invalid value: \"Ekube.io\": {DNS1123_SUBDOMAIN}")],
            ),
            (
                json!({"controller": "ekube.io/in gress"}),
                vec!["spec.controller: Invalid value: \"in gress\": Invalid path (regex used for validation is '[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')".into()],
            ),
            (
                json!({"controller": format!("ekube.io/{}", "a".repeat(250))}),
                vec!["spec.controller: Too long: must have at most 250 bytes".into()],
            ),
            (
                json!({"controller": "ekube.io/x", "parameters": {"kind": "..", "scope": "Cluster"}}),
                vec![
                    "spec.parameters.kind: Invalid value: \"..\": may not be '..'".into(),
                    "spec.parameters.name: Required value".into(),
                ],
            ),
            (
                json!({"controller": "ekube.io/x", "parameters": {"kind": "K", "name": "n"}}),
                vec!["spec.parameters.scope: Required value".into()],
            ),
            (
                json!({"controller": "ekube.io/x", "parameters": {"kind": "K", "name": "n", "scope": "Global"}}),
                vec!["spec.parameters.scope: Unsupported value: \"Global\": supported values: \"Cluster\", \"Namespace\"".into()],
            ),
            (
                json!({"controller": "ekube.io/x", "parameters": {"kind": "K", "name": "n", "scope": "Namespace"}}),
                vec!["spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'".into()],
            ),
            (
                json!({"controller": "ekube.io/x", "parameters": {"kind": "K", "name": "n", "scope": "Namespace", "namespace": "Team"}}),
                vec![format!("spec.parameters.namespace: Invalid value: \"Team\": {DNS1123_LABEL}")],
            ),
            (
                json!({"controller": "ekube.io/x", "parameters": {"kind": "K", "name": "n", "scope": "Cluster", "namespace": "team"}}),
                vec!["spec.parameters.namespace: Forbidden: `parameters.scope` is set to 'Cluster'".into()],
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(class(spec.clone()), want, "{spec}");
        }
        let mut causes = Vec::new();
        let old = json!({"spec": {"controller": "ekube.io/ingress"}});
        ingress_class_immutable(&old, &old, &mut causes);
        assert_eq!(causes, []);
        let new = json!({"spec": {"controller": "ekube.io/other"}});
        ingress_class_immutable(&old, &new, &mut causes);
        assert_eq!(
            render(causes),
            ["spec.controller: Invalid value: \"ekube.io/other\": field is immutable"]
        );
    }

    /// Through the registry, as a client's create and update arrive: admission, defaulting,
    /// validation, storage.
    #[tokio::test]
    async fn the_registry_refuses_bad_ingresses_and_defaults_the_class() {
        let reg = registry().await;
        let opts = WriteOptions::default();
        let ingresses = ekube_api::resources::find("networking.k8s.io", "v1", "ingresses").unwrap();
        let classes =
            ekube_api::resources::find("networking.k8s.io", "v1", "ingressclasses").unwrap();

        let bad = json!({"metadata": {"name": "web"}, "spec": {"rules": [{"host": "1.2.3.4",
            "http": {"paths": [{"path": "/a//b", "pathType": "Prefix", "backend": svc()}]}}]}});
        let err = reg
            .create(ingresses, Some("team"), bad, &opts)
            .await
            .unwrap_err();
        assert_eq!((err.code, err.reason), (422, "Invalid"));
        assert_eq!(
            err.message,
            "Ingress \"web\" is invalid: [spec.rules[0].host: Invalid value: \"1.2.3.4\": must be a DNS name, not an IP address, spec.rules[0].http.paths[0].path: Invalid value: \"/a//b\": must not contain '//']"
        );
        let details = err.details.unwrap();
        let fields: Vec<&str> = details["causes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["field"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            ["spec.rules[0].host", "spec.rules[0].http.paths[0].path"]
        );
        assert_eq!(details["kind"], "Ingress");
        assert_eq!(details["group"], "networking.k8s.io");

        // An IngressClass: its parameters' scope defaults to Cluster; its controller is fixed.
        let class = json!({"metadata": {"name": "ekube",
            "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
            "spec": {"controller": "ekube.io/ingress",
                "parameters": {"kind": "ConfigMap", "name": "ingress"}}});
        let (stored, _) = reg.create(classes, None, class, &opts).await.unwrap();
        assert_eq!(stored["spec"]["parameters"]["scope"], "Cluster");
        let err = reg
            .guaranteed_update(classes, None, "ekube", None, &opts, |mut c| {
                c["spec"]["controller"] = json!("example.com/other");
                Ok(c)
            })
            .await
            .unwrap_err();
        assert_eq!(
            err.message,
            "IngressClass \"ekube\" is invalid: spec.controller: Invalid value: \"example.com/other\": field is immutable"
        );
        let err = reg
            .create(
                classes,
                None,
                json!({"metadata": {"name": "bare"}, "spec": {}}),
                &opts,
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.message,
            "IngressClass \"bare\" is invalid: spec.controller: Required value"
        );

        // A good Ingress without a class gets the default one.
        let good = json!({"metadata": {"name": "web"}, "spec": {"rules": [{"host": "*.example.com",
            "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": svc()}]}}]}});
        let (stored, _) = reg
            .create(ingresses, Some("team"), good, &opts)
            .await
            .unwrap();
        assert_eq!(stored["spec"]["ingressClassName"], "ekube");

        // The status writer may report addresses, not anything.
        let err = reg
            .guaranteed_update(
                ingresses,
                Some("team"),
                "web",
                Some("status"),
                &opts,
                |mut i| {
                    i["status"] = json!({"loadBalancer": {"ingress": [{"ip": "not-an-ip"}]}});
                    Ok(i)
                },
            )
            .await
            .unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(
            err.details.unwrap()["causes"][0]["field"],
            "status.loadBalancer.ingress[0].ip"
        );
        let (stored, _) = reg
            .guaranteed_update(
                ingresses,
                Some("team"),
                "web",
                Some("status"),
                &opts,
                |mut i| {
                    i["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}});
                    Ok(i)
                },
            )
            .await
            .unwrap();
        assert_eq!(
            stored["status"]["loadBalancer"]["ingress"][0]["ip"],
            "192.0.2.10"
        );
    }
}
