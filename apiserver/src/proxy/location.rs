//! Where a `proxy` request goes: upstream's `ResourceLocation` of services (a ready address of
//! the Service's Endpoints that is its Pod's IP), pods (the pod IP) and nodes (the kubelet, or
//! another port of the node's address), and the name forms they accept.

use std::net::IpAddr;

use serde_json::Value;

use crate::ApiServer;
use crate::errors::{ApiError, Result};

/// How a backend connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Plain HTTP.
    None,
    /// TLS, the server's certificate not verified, no client certificate.
    Insecure,
    /// TLS with the apiserver's kubelet client certificate ([`ApiServer::kubelet_tls`]).
    Kubelet,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub tls: Tls,
    pub host: String,
    pub port: u16,
    /// The `host[:port]` of the backend URL, as upstream writes it (the port left out when the
    /// scheme's default was implied).
    pub authority: String,
}

impl Location {
    pub(super) fn new(tls: Tls, host: &str, port: Option<u16>) -> Self {
        let default = if tls == Tls::None { 80 } else { 443 };
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        Self {
            tls,
            host: host.to_string(),
            port: port.unwrap_or(default),
            authority: match port {
                Some(p) => format!("{bracketed}:{p}"),
                None => bracketed,
            },
        }
    }
}

/// Upstream's `SplitSchemeNamePort`: `name`, `name:port` or `scheme:name:port`, the scheme
/// `http`, `https` or empty, the name not empty. `None` for any other form.
pub fn split_scheme_name_port(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    (!name.is_empty() && matches!(scheme, "" | "http" | "https")).then_some((scheme, name, port))
}

pub(super) fn unavailable(message: String) -> ApiError {
    ApiError {
        code: 503,
        reason: "ServiceUnavailable",
        message,
        details: None,
    }
}

/// Go's `net.IP.IsGlobalUnicast`.
pub(super) fn global_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

fn port_number(port: &str, what: &str) -> Result<u16> {
    port.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid port {port:?} in {what}")))
}

fn scheme_tls(scheme: &str) -> Tls {
    if scheme == "https" {
        Tls::Insecure
    } else {
        Tls::None
    }
}

/// Upstream's service `ResourceLocation`.
pub(super) async fn service_location(api: &ApiServer, ns: &str, id: &str) -> Result<Location> {
    let (scheme, name, port) = split_scheme_name_port(id)
        .ok_or_else(|| ApiError::bad_request(format!("invalid service request {id:?}")))?;
    let mut port_name = port.to_string();
    if let Ok(number) = port.parse::<i64>() {
        let services = resource("services")?;
        let svc = api.registry.get(services, Some(ns), name).await?;
        let found = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p["port"].as_i64() == Some(number));
        match found {
            Some(p) => port_name = p["name"].as_str().unwrap_or_default().to_string(),
            None => {
                return Err(unavailable(format!(
                    "no service port {number} found for service {name:?}"
                )));
            }
        }
    }
    let endpoints = api
        .registry
        .get(resource("endpoints")?, Some(ns), name)
        .await?;
    let none = || unavailable(format!("no endpoints available for service {name:?}"));
    let subsets = endpoints["subsets"].as_array().cloned().unwrap_or_default();
    if subsets.is_empty() {
        return Err(none());
    }
    let pods = resource("pods")?;
    let start = rand::random_range(0..subsets.len());
    for i in 0..subsets.len() {
        let subset = &subsets[(start + i) % subsets.len()];
        let addresses = subset["addresses"].as_array().cloned().unwrap_or_default();
        if addresses.is_empty() {
            continue;
        }
        let ports = subset["ports"].as_array().cloned().unwrap_or_default();
        for p in ports
            .iter()
            .filter(|p| p["name"].as_str().unwrap_or_default() == port_name)
        {
            let Some(number) = p["port"].as_u64().and_then(|n| u16::try_from(n).ok()) else {
                continue;
            };
            let first = rand::random_range(0..addresses.len());
            for j in 0..addresses.len() {
                let address = &addresses[(first + j) % addresses.len()];
                let ip = address["ip"].as_str().unwrap_or_default();
                if let Err(why) = valid_address(api, pods, ns, address).await {
                    tracing::debug!(service = %name, %ip, %why, "skipping an endpoint address");
                    continue;
                }
                return Ok(Location::new(scheme_tls(scheme), ip, Some(number)));
            }
        }
    }
    Err(none())
}

/// Upstream's `isValidAddress`: the address names a Pod of the namespace that has its IP.
async fn valid_address(
    api: &ApiServer,
    pods: &'static ekube_api::ResourceInfo,
    ns: &str,
    address: &Value,
) -> std::result::Result<(), String> {
    let target = &address["targetRef"];
    if !target.is_object() {
        return Err("the address has no target ref".into());
    }
    if target["namespace"].as_str() != Some(ns) {
        return Err("the address's namespace is not the service's".into());
    }
    let name = target["name"].as_str().unwrap_or_default();
    let pod = api
        .registry
        .get(pods, Some(ns), name)
        .await
        .map_err(|e| e.message)?;
    let ip = address["ip"].as_str().unwrap_or_default();
    let has = pod
        .pointer("/status/podIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|p| p["ip"].as_str() == Some(ip))
        || pod.pointer("/status/podIP").and_then(Value::as_str) == Some(ip);
    if has {
        Ok(())
    } else {
        Err(format!("pod {ns}/{name} does not have IP {ip}"))
    }
}

/// Upstream's pod `ResourceLocation`.
pub(super) async fn pod_location(api: &ApiServer, ns: &str, id: &str) -> Result<Location> {
    let (scheme, name, port) = split_scheme_name_port(id)
        .ok_or_else(|| ApiError::bad_request(format!("invalid pod request {id:?}")))?;
    let pod = api.registry.get(resource("pods")?, Some(ns), name).await?;
    let mut port = port.to_string();
    if port.is_empty()
        && let Some(first) = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find_map(|c| c.pointer("/ports/0/containerPort").and_then(Value::as_u64))
    {
        port = first.to_string();
    }
    let ip = pod
        .pointer("/status/podIPs/0/ip")
        .or_else(|| pod.pointer("/status/podIP"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    match ip.parse::<IpAddr>() {
        Ok(addr) if global_unicast(addr) => {}
        _ => return Err(ApiError::bad_request("address not allowed")),
    }
    let port = if port.is_empty() {
        None
    } else {
        Some(port_number(&port, &format!("pod request {id:?}"))?)
    };
    Ok(Location::new(scheme_tls(scheme), ip, port))
}

/// Upstream's node `ResourceLocation`: the kubelet (its port, or none asked), else the node's
/// address on the port asked with the scheme asked.
pub(super) async fn node_location(api: &ApiServer, id: &str) -> Result<Location> {
    let (scheme, name, port) = split_scheme_name_port(id)
        .ok_or_else(|| ApiError::bad_request(format!("invalid node request {id:?}")))?;
    let node = api.registry.get(resource("nodes")?, None, name).await?;
    let (host, kubelet_port) = crate::kubelet_proxy::kubelet_address(&node)
        .ok_or_else(|| unavailable(format!("node {name} has no address for its kubelet")))?;
    let ips: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host.as_str(), 0))
            .await
            .map_err(|e| ApiError::bad_request(e.to_string()))?
            .map(|a| a.ip())
            .collect(),
    };
    if ips.is_empty() {
        return Err(ApiError::bad_request("no addresses for hostname"));
    }
    if !ips.into_iter().all(global_unicast) {
        return Err(ApiError::bad_request("address not allowed"));
    }
    if port.is_empty() || port == kubelet_port.to_string() {
        return Ok(Location::new(Tls::Kubelet, &host, Some(kubelet_port)));
    }
    let port = port_number(port, &format!("node request {id:?}"))?;
    Ok(Location::new(scheme_tls(scheme), &host, Some(port)))
}

fn resource(plural: &str) -> Result<&'static ekube_api::ResourceInfo> {
    ekube_api::resources::find("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not in the resource table")))
}
