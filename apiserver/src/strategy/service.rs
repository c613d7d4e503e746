//! The Service strategy: its defaults, validation, initial status and printer. The cluster IP and
//! node ports it holds are allocated by the registry ([`crate::alloc`]), which asks
//! [`Strategy::ALLOCATES`].

use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};

use super::{Context, Strategy};
use crate::defaults::{ensure, set};
use crate::errors::Cause;
use crate::table::ColumnsOf;
use crate::validation::{is_iana_svc_name, protocol, unique_label};

impl Strategy for Service {
    const ALLOCATES: bool = true;
    const RETURNS_DELETED_OBJECT: bool = true;
    const FIELD_LABELS: &'static [&'static str] = &["spec.clusterIP", "spec.type"];
    const MERGE_KEYS: &'static [(&'static [&'static str], &'static [&'static str])] =
        &[(&["spec", "ports"], &["port", "protocol"])];

    fn set_defaults(obj: &mut Value) {
        defaults(obj)
    }

    fn initial_status() -> Option<Value> {
        Some(json!({"loadBalancer": {}}))
    }

    fn validate(obj: &Value, ctx: &Context<'_>, causes: &mut Vec<Cause>) {
        spec(obj, ctx.node_ports, causes);
        health_check_node_port(obj, ctx.node_ports, causes);
    }

    /// A cluster IP, once set, stays.
    fn validate_update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        let ip = |obj: &Value| {
            obj.pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (old_ip, new_ip) = (ip(old), ip(new));
        if !old_ip.is_empty() && !new_ip.is_empty() && old_ip != new_ip {
            causes.push(Cause::invalid(
                "spec.clusterIPs[0]",
                format!("[]string{{\"{new_ip}\"}}"),
                "may not change once set",
            ));
        }
    }

    fn columns() -> Option<ColumnsOf> {
        Some(crate::table::columns::networking::service_columns)
    }
}

/// Upstream's `SetDefaults_Service`.
fn defaults(obj: &mut Value) {
    let spec = ensure(obj, "spec");
    set(spec, "type", json!("ClusterIP"));
    let ty = spec["type"].as_str().unwrap_or_default().to_string();
    if ty == "ExternalName" {
        return;
    }
    set(spec, "sessionAffinity", json!("None"));
    if spec["sessionAffinity"] == "ClientIP" {
        let cfg = ensure(ensure(spec, "sessionAffinityConfig"), "clientIP");
        set(cfg, "timeoutSeconds", json!(10800));
    }
    set(spec, "internalTrafficPolicy", json!("Cluster"));
    set(spec, "ipFamilies", json!(["IPv4"]));
    set(spec, "ipFamilyPolicy", json!("SingleStack"));
    if ty == "NodePort" || ty == "LoadBalancer" {
        set(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for p in ports {
            set(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                set(p, "targetPort", port);
            }
        }
    }
}

/// Upstream's `ValidateService`: the type, its ports, the cluster IP and the policies.
fn spec(obj: &Value, (lo, hi): (u16, u16), causes: &mut Vec<Cause>) {
    let ty = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !matches!(
        ty,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        causes.push(Cause::not_supported(
            "spec.type",
            ty,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    if ty == "ExternalName" {
        if obj
            .pointer("/spec/externalName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            causes.push(Cause::required("spec.externalName"));
        }
        return;
    }
    let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
    let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
    if ports.is_none_or(|p| p.is_empty()) && !headless {
        causes.push(Cause::required("spec.ports"));
    }
    let ports = ports.map(Vec::as_slice).unwrap_or_default();
    let mut names = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
        if ports.len() > 1 && name.is_empty() {
            causes.push(Cause::required(format!("{at}.name")));
        } else if !name.is_empty() {
            unique_label(name, &format!("{at}.name"), &mut names, causes);
        }
        match p.get("port").and_then(Value::as_i64) {
            None => causes.push(Cause::required(format!("{at}.port"))),
            Some(n) if !(1..=65535).contains(&n) => causes.push(Cause::invalid(
                format!("{at}.port"),
                n,
                "must be between 1 and 65535, inclusive",
            )),
            _ => {}
        }
        match p.get("targetPort") {
            Some(Value::Number(n)) if !(1..=65535).contains(&n.as_i64().unwrap_or(0)) => {
                causes.push(Cause::invalid(format!("{at}.targetPort"), n, "must be between 1 and 65535, inclusive"))
            }
            Some(Value::String(s)) if !is_iana_svc_name(s) && s.parse::<u16>().is_err() => causes.push(Cause::invalid(
                format!("{at}.targetPort"),
                format!("\"{s}\""),
                "must contain at least one letter (a-z) and consist of at most 15 lower case alphanumeric characters or '-'",
            )),
            _ => {}
        }
        if let Some(np) = p
            .get("nodePort")
            .and_then(Value::as_i64)
            .filter(|n| *n != 0)
        {
            if ty == "ClusterIP" {
                causes.push(Cause::forbidden(
                    format!("{at}.nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            } else if np < lo as i64 || np > hi as i64 {
                causes.push(Cause::invalid(
                    format!("{at}.nodePort"),
                    np,
                    &format!("provided port is not in the valid range. The range of valid ports is {lo}-{hi}"),
                ));
            }
        }
        protocol(p, &format!("{at}.protocol"), causes);
    }
    if let Some(ip) = obj.pointer("/spec/clusterIP").and_then(Value::as_str)
        && !ip.is_empty()
        && ip != "None"
        && ip.parse::<std::net::Ipv4Addr>().is_err()
    {
        causes.push(Cause::invalid(
            "spec.clusterIP",
            format!("\"{ip}\""),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
    if let Some(aff) = obj.pointer("/spec/sessionAffinity").and_then(Value::as_str)
        && !matches!(aff, "None" | "ClientIP")
    {
        causes.push(Cause::not_supported(
            "spec.sessionAffinity",
            aff,
            &["ClientIP", "None"],
        ));
    }
    if let Some(p) = obj
        .pointer("/spec/externalTrafficPolicy")
        .and_then(Value::as_str)
        && !matches!(p, "Cluster" | "Local")
    {
        causes.push(Cause::not_supported(
            "spec.externalTrafficPolicy",
            p,
            &["Cluster", "Local"],
        ));
    }
}

/// A requested `healthCheckNodePort` is a node port like any other: in the range (the
/// allocator keeps it unique). Only `LoadBalancer` Services with `externalTrafficPolicy:
/// Local` use one; elsewhere the allocator drops it.
fn health_check_node_port(obj: &Value, (lo, hi): (u16, u16), causes: &mut Vec<Cause>) {
    let uses_one = obj.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer")
        && obj
            .pointer("/spec/externalTrafficPolicy")
            .and_then(Value::as_str)
            == Some("Local");
    let Some(requested) = obj.pointer("/spec/healthCheckNodePort") else {
        return;
    };
    if !uses_one {
        return;
    }
    match requested.as_i64() {
        Some(0) => {}
        Some(port) if port >= i64::from(lo) && port <= i64::from(hi) => {}
        _ => causes.push(Cause::invalid(
            "spec.healthCheckNodePort",
            requested,
            &format!(
                "provided port is not in the valid range. The range of valid ports is {lo}-{hi}"
            ),
        )),
    }
}
