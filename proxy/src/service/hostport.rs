//! Desired state of a pod's `hostPort`s: `<node address>:<hostPort>` → `<pod IP>:<containerPort>`
//! on the pod's node only, what the CNI `portmap` plugin does for a kubelet upstream.
//!
//! [`desired_host_ports`] is a pure function from one Pod (of this node; the proxy watches
//! `spec.nodeName=<node>`) to frontends in the same shape as a Service's, so the [`Syncer`]
//! and both datapaths program them like NodePorts with one backend: [`Frontend::host_port`]
//! flagged [`FrontendSpec::host_port`]. Only a Running pod with an IPv4 pod IP on the pod
//! network maps anything (a `hostNetwork` pod listens on the node's ports itself). A port the
//! datapath cannot express (a port number out of range, SCTP, an IPv6 or malformed `hostIP`) is
//! skipped and named in the returned problems, and the pod's other ports are still mapped.
//!
//! [`Syncer`]: super::Syncer

use std::{fmt, net::Ipv4Addr};

use k8s_openapi::api::core::v1::Pod;

use super::desired::{DesiredService, FrontendSpec, valid_port};
use crate::datapath::{BackendAddr, Frontend, Protocol};

/// Namespace and name of a Pod: the unit of hostPort reconciliation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodName {
    pub namespace: String,
    pub name: String,
}

impl PodName {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The Pod `pod` is, if it has a name.
    pub fn of_pod(pod: &Pod) -> Option<Self> {
        Some(Self::new(
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone()?,
        ))
    }
}

impl fmt::Display for PodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What a pod's hostPorts ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodHostPorts {
    /// One frontend per usable hostPort, each with the pod as its only backend.
    pub frontends: DesiredService,
    /// Why requested hostPorts were left out (empty when every one is mapped).
    pub skipped: Vec<String>,
}

/// The hostPort frontends of `pod`.
pub fn desired_host_ports(pod: &Pod) -> PodHostPorts {
    let mut out = PodHostPorts::default();
    let Some(spec) = &pod.spec else {
        return out;
    };
    let requested = spec.containers.iter().enumerate().flat_map(|(i, c)| {
        c.ports
            .iter()
            .flatten()
            .enumerate()
            .filter(|(_, p)| p.host_port.is_some_and(|hp| hp != 0))
            .map(move |(j, p)| (format!("spec.containers[{i}].ports[{j}]"), p))
    });
    let mut requested = requested.peekable();
    // hostPort 0 means "none" in the API; a hostNetwork pod binds the node's ports itself.
    if requested.peek().is_none() || spec.host_network == Some(true) {
        return out;
    }
    let status = pod.status.as_ref();
    if status.and_then(|s| s.phase.as_deref()) != Some("Running") {
        return out;
    }
    let Some(pod_ip) = pod_ipv4(pod) else {
        out.skipped
            .push("the pod is Running but has no IPv4 pod IP".to_string());
        return out;
    };
    for (path, port) in requested {
        let host_port = port.host_port.unwrap_or_default();
        let mapped = (|| {
            let host_port = valid_port(host_port).ok_or_else(|| {
                format!("{path}.hostPort: {host_port} is not a valid port number")
            })?;
            let container_port = valid_port(port.container_port).ok_or_else(|| {
                format!(
                    "{path}.containerPort: {} is not a valid port number",
                    port.container_port
                )
            })?;
            let proto = match port.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => Protocol::Tcp,
                "UDP" => Protocol::Udp,
                other => {
                    return Err(format!(
                        "{path}.protocol: {other:?} is not supported for hostPorts (only TCP and UDP)"
                    ));
                }
            };
            let host_ip = match port.host_ip.as_deref() {
                None | Some("") | Some("0.0.0.0") => None,
                Some(text) => Some(
                    text.parse::<Ipv4Addr>()
                        .map_err(|_| format!("{path}.hostIP: {text:?} is not an IPv4 address"))?,
                ),
            };
            Ok((
                Frontend::host_port(host_ip, host_port, proto),
                container_port,
            ))
        })();
        let (frontend, container_port) = match mapped {
            Ok(mapped) => mapped,
            Err(problem) => {
                out.skipped.push(problem);
                continue;
            }
        };
        if out.frontends.contains_key(&frontend) {
            out.skipped
                .push(format!("{path}: hostPort {frontend} is mapped twice"));
            continue;
        }
        let spec = FrontendSpec {
            backends: vec![BackendAddr {
                ip: pod_ip,
                port: container_port,
            }],
            host_port: true,
            ..FrontendSpec::default()
        };
        out.frontends.insert(frontend, spec);
    }
    out
}

/// The pod's IPv4 address: the first of `status.podIPs` that is one, else `status.podIP`.
fn pod_ipv4(pod: &Pod) -> Option<Ipv4Addr> {
    let status = pod.status.as_ref()?;
    status
        .pod_ips
        .iter()
        .flatten()
        .map(|ip| ip.ip.as_str())
        .chain(status.pod_ip.as_deref())
        .find_map(|ip| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(spec: serde_json::Value, status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": spec,
            "status": status,
        }))
        .unwrap()
    }

    fn running() -> serde_json::Value {
        json!({"phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}]})
    }

    fn backend(port: u16) -> Vec<BackendAddr> {
        vec![BackendAddr {
            ip: Ipv4Addr::new(10, 244, 1, 5),
            port,
        }]
    }

    #[test]
    fn host_ports_map_the_node_port_to_the_pod() {
        let p = pod(
            json!({"containers": [
                {"name": "a", "ports": [
                    {"containerPort": 80, "hostPort": 8080},
                    {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "192.168.64.10"},
                    {"containerPort": 9090}
                ]},
                {"name": "b", "ports": [{"containerPort": 81, "hostPort": 8081, "hostIP": "0.0.0.0"}]}
            ]}),
            running(),
        );
        let got = desired_host_ports(&p);
        assert_eq!(got.skipped, Vec::<String>::new());
        let any_8080 = Frontend::host_port(None, 8080, Protocol::Tcp);
        let bound_5353 =
            Frontend::host_port(Some(Ipv4Addr::new(192, 168, 64, 10)), 5353, Protocol::Udp);
        let any_8081 = Frontend::host_port(None, 8081, Protocol::Tcp);
        assert_eq!(
            got.frontends.keys().copied().collect::<Vec<_>>(),
            [bound_5353, any_8080, any_8081]
        );
        assert_eq!(got.frontends[&any_8080].backends, backend(80));
        assert!(got.frontends[&any_8080].host_port);
        assert!(got.frontends[&any_8080].options().host_port);
        assert_eq!(got.frontends[&bound_5353].backends, backend(53));
        assert_eq!(got.frontends[&any_8081].backends, backend(81));
        assert_eq!(any_8080.to_string(), "*:8080/tcp");
        assert_eq!(any_8080.host_ip(), None);
        assert_eq!(bound_5353.to_string(), "192.168.64.10:5353/udp");
    }

    #[test]
    fn nothing_before_running_with_an_ip_nor_for_host_network_pods() {
        let spec = json!({"containers": [{"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}]}]});
        let pending = pod(spec.clone(), json!({"phase": "Pending"}));
        assert_eq!(desired_host_ports(&pending), PodHostPorts::default());
        let succeeded = pod(
            spec.clone(),
            json!({"phase": "Succeeded", "podIP": "10.244.1.5"}),
        );
        assert_eq!(desired_host_ports(&succeeded), PodHostPorts::default());

        let mut host_network = spec.clone();
        host_network["hostNetwork"] = json!(true);
        assert_eq!(
            desired_host_ports(&pod(host_network, running())),
            PodHostPorts::default()
        );

        // Running without an IPv4 address: nothing mapped, and said so.
        let no_ip = desired_host_ports(&pod(spec.clone(), json!({"phase": "Running"})));
        assert!(no_ip.frontends.is_empty());
        assert_eq!(no_ip.skipped.len(), 1, "{:?}", no_ip.skipped);
        let v6 = desired_host_ports(&pod(
            spec,
            json!({"phase": "Running", "podIP": "fd00::5", "podIPs": [{"ip": "fd00::5"}]}),
        ));
        assert!(v6.frontends.is_empty());

        // No hostPort at all (or 0, the API's "none"): nothing to say either.
        let plain = pod(
            json!({"containers": [{"name": "a", "ports": [{"containerPort": 80, "hostPort": 0}]}]}),
            json!({"phase": "Running"}),
        );
        assert_eq!(desired_host_ports(&plain), PodHostPorts::default());
    }

    #[test]
    fn bad_ports_are_skipped_with_a_reason_and_the_rest_is_mapped() {
        let p = pod(
            json!({"containers": [{"name": "a", "ports": [
                {"containerPort": 80, "hostPort": 70000},
                {"containerPort": 80, "hostPort": -1},
                {"containerPort": 0, "hostPort": 8082},
                {"containerPort": 80, "hostPort": 8083, "protocol": "SCTP"},
                {"containerPort": 80, "hostPort": 8084, "hostIP": "::"},
                {"containerPort": 80, "hostPort": 8085, "hostIP": "not-an-ip"},
                {"containerPort": 80, "hostPort": 8086},
                {"containerPort": 81, "hostPort": 8086}
            ]}]}),
            running(),
        );
        let got = desired_host_ports(&p);
        assert_eq!(
            got.frontends.keys().copied().collect::<Vec<_>>(),
            [Frontend::host_port(None, 8086, Protocol::Tcp)]
        );
        assert_eq!(
            got.frontends[&Frontend::host_port(None, 8086, Protocol::Tcp)].backends,
            backend(80)
        );
        let expected = [
            "spec.containers[0].ports[0].hostPort: 70000 is not a valid port number",
            "spec.containers[0].ports[1].hostPort: -1 is not a valid port number",
            "spec.containers[0].ports[2].containerPort: 0 is not a valid port number",
            "spec.containers[0].ports[3].protocol: \"SCTP\" is not supported for hostPorts (only TCP and UDP)",
            "spec.containers[0].ports[4].hostIP: \"::\" is not an IPv4 address",
            "spec.containers[0].ports[5].hostIP: \"not-an-ip\" is not an IPv4 address",
            "spec.containers[0].ports[7]: hostPort *:8086/tcp is mapped twice",
        ];
        assert_eq!(got.skipped, expected);
    }
}
