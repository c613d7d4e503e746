//! Desired state: what one Service and its EndpointSlices ask the datapath to hold.
//!
//! [`desired_state`] is a pure function from the proxy's views of the API objects
//! ([`super::view`]) to frontends (ClusterIP:port/proto and,
//! for NodePort and LoadBalancer services, the node port) with the ready endpoints each one
//! balances over. Target ports are taken per EndpointSlice from the slice's port of the same
//! name and protocol (that is where the EndpointSlice controller resolves named `targetPort`s
//! for the pods of that slice), so endpoints of one service may listen on different ports.
//! Services the proxy does not serve (headless, ExternalName, another proxy's) map to nothing;
//! services it cannot express are an [`Unsupported`] error for the caller to report.
//! [`desired_state_on_node`] also applies `externalTrafficPolicy: Local`: the NodePort frontends
//! of such a Service balance over the endpoints whose `nodeName` is this node only, and are
//! flagged so the datapath keeps the client address.

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
};

use k8s_openapi::{
    api::{core::v1::Service, discovery::v1::EndpointSlice},
    apimachinery::pkg::util::intstr::IntOrString,
};

use super::view::{ServicePortView, ServiceType, ServiceView, SliceView};
use crate::datapath::{Affinity, BackendAddr, Frontend, ServiceOptions};

/// Label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Services carrying this label are served by another proxy (as kube-proxy honours it).
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// `sessionAffinityConfig.clientIP.timeoutSeconds` when unset (Kubernetes' default, 3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;
/// Largest `sessionAffinityConfig.clientIP.timeoutSeconds` Kubernetes accepts (one day).
const MAX_AFFINITY_TIMEOUT: i32 = 86_400;

/// Namespace and name of a Service: the unit of reconciliation. The proxy keys several maps by
/// it (its views, each Service's slices, what the syncer programmed and who owns each
/// frontend), so clones share the two strings instead of copying them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl ServiceName {
    pub fn new(namespace: impl Into<Arc<str>>, name: impl Into<Arc<str>>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The Service `svc` is, if it has a name.
    pub fn of_service(svc: &Service) -> Option<Self> {
        Some(Self::new(
            svc.metadata.namespace.as_deref().unwrap_or_default(),
            svc.metadata.name.as_deref()?,
        ))
    }

    /// The Service an EndpointSlice belongs to (its `kubernetes.io/service-name` label).
    pub fn of_slice(slice: &EndpointSlice) -> Option<Self> {
        let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
        Some(Self::new(
            slice.metadata.namespace.as_deref().unwrap_or_default(),
            service.as_str(),
        ))
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What one frontend balances over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrontendSpec {
    /// Ready endpoints, sorted and without duplicates; empty means "refuse connections".
    pub backends: Vec<BackendAddr>,
    pub affinity: Affinity,
    /// A NodePort frontend of an `externalTrafficPolicy: Local` Service: `backends` are this
    /// node's endpoints only, and the client address is kept (no SNAT).
    pub external_local: bool,
    /// A pod's `hostPort` (see [`super::hostport`]), not a Service's frontend.
    pub host_port: bool,
}

impl FrontendSpec {
    /// The per-frontend options for [`crate::ServiceDatapath::upsert_service_with`].
    pub fn options(&self) -> ServiceOptions {
        ServiceOptions {
            affinity: self.affinity,
            external_local: self.external_local,
            host_port: self.host_port,
        }
    }
}

/// Every frontend one Service wants programmed.
pub type DesiredService = BTreeMap<Frontend, FrontendSpec>;

/// Why a Service cannot be programmed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    #[error("spec.clusterIP {0:?} is not an IPv4 address")]
    ClusterIp(String),
    #[error("spec.ports[{index}]: protocol {protocol:?} is not supported (only TCP and UDP)")]
    Protocol { index: usize, protocol: String },
    #[error("spec.ports[{index}].{field}: {value} is not a valid port number")]
    Port {
        index: usize,
        field: &'static str,
        value: i32,
    },
    #[error(
        "spec.sessionAffinityConfig.clientIP.timeoutSeconds: {0} is outside 1..={MAX_AFFINITY_TIMEOUT}"
    )]
    AffinityTimeout(i32),
    #[error("endpointslice {slice}: port {value} is not a valid port number")]
    EndpointPort { slice: String, value: i32 },
}

/// The frontends `svc` wants, with the ready endpoints of `slices` (the EndpointSlices labelled
/// with its name; others are the caller's bug and are ignored only by protocol/port mismatch).
/// Knows no node, so `externalTrafficPolicy` is not applied; the proxy uses
/// [`desired_state_on_node`].
pub fn desired_state(
    svc: &ServiceView,
    slices: &[SliceView],
) -> Result<DesiredService, Unsupported> {
    desired_for(svc, slices, None)
}

/// [`desired_state`] as seen by node `node`: NodePort frontends of an
/// `externalTrafficPolicy: Local` Service keep only the endpoints on `node` and are flagged
/// [`FrontendSpec::external_local`]. ClusterIP frontends always balance over every endpoint.
pub fn desired_state_on_node(
    svc: &ServiceView,
    slices: &[SliceView],
    node: &str,
) -> Result<DesiredService, Unsupported> {
    desired_for(svc, slices, Some(node))
}

fn desired_for(
    svc: &ServiceView,
    slices: &[SliceView],
    node: Option<&str>,
) -> Result<DesiredService, Unsupported> {
    let mut desired = DesiredService::new();
    if svc.other_proxy || svc.type_ == ServiceType::ExternalName {
        return Ok(desired);
    }
    let cluster_ip = match svc.cluster_ip.as_deref() {
        None | Some("") | Some("None") => return Ok(desired),
        Some(ip) => ip
            .parse::<Ipv4Addr>()
            .map_err(|_| Unsupported::ClusterIp(ip.to_string()))?,
    };
    let affinity = affinity_of(svc)?;
    let local_node = node.filter(|_| svc.external_traffic_local());
    for (index, port) in svc.ports.iter().enumerate() {
        let proto = port.proto().ok_or_else(|| Unsupported::Protocol {
            index,
            protocol: port.protocol.to_string(),
        })?;
        let service_port = valid_port(port.port).ok_or(Unsupported::Port {
            index,
            field: "port",
            value: port.port,
        })?;
        let spec = FrontendSpec {
            backends: backends_for(port, slices, None)?,
            affinity,
            ..FrontendSpec::default()
        };
        if svc.type_.has_node_ports()
            && let Some(node_port) = port.node_port
        {
            let node_port = valid_port(node_port).ok_or(Unsupported::Port {
                index,
                field: "nodePort",
                value: node_port,
            })?;
            let external = match local_node {
                Some(node) => FrontendSpec {
                    backends: backends_for(port, slices, Some(node))?,
                    affinity,
                    external_local: true,
                    host_port: false,
                },
                None => spec.clone(),
            };
            desired.insert(Frontend::node_port(node_port, proto), external);
        }
        desired.insert(Frontend::cluster_ip(cluster_ip, service_port, proto), spec);
    }
    Ok(desired)
}

fn affinity_of(svc: &ServiceView) -> Result<Affinity, Unsupported> {
    match svc.client_ip_affinity {
        None => Ok(Affinity::None),
        Some(None) => Ok(Affinity::ClientIp {
            timeout_secs: DEFAULT_AFFINITY_TIMEOUT,
        }),
        Some(Some(t)) if (1..=MAX_AFFINITY_TIMEOUT).contains(&t) => Ok(Affinity::ClientIp {
            timeout_secs: t as u32,
        }),
        Some(Some(t)) => Err(Unsupported::AffinityTimeout(t)),
    }
}

/// `port` as a port number, `None` when 0 or outside 1–65535.
pub(super) fn valid_port(port: i32) -> Option<u16> {
    u16::try_from(port).ok().filter(|p| *p != 0)
}

/// The ready endpoints of `slices` for service port `port`, each with the target port its own
/// slice resolved; with `node`, only the endpoints whose `nodeName` is `node`.
fn backends_for(
    port: &ServicePortView,
    slices: &[SliceView],
    node: Option<&str>,
) -> Result<Vec<BackendAddr>, Unsupported> {
    // Used only when a slice does not list this port: a numeric targetPort needs no resolving.
    let fallback = match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(p)) => Some(*p),
        Some(IntOrString::String(_)) => None,
    };
    let mut backends = Vec::new();
    for slice in slices.iter().filter(|s| s.ipv4) {
        let listed = slice
            .ports
            .iter()
            .find(|p| p.name == port.name && p.protocol == port.protocol);
        let target = match listed {
            Some(p) => p.port,
            None => fallback,
        };
        let Some(target) = target else {
            continue;
        };
        let target = valid_port(target).ok_or_else(|| Unsupported::EndpointPort {
            slice: slice.name.clone(),
            value: target,
        })?;
        for endpoint in &slice.endpoints {
            if !endpoint.ready || node.is_some_and(|n| endpoint.node_name.as_deref() != Some(n)) {
                continue;
            }
            let Some(IpAddr::V4(ip)) = endpoint.address else {
                continue;
            };
            backends.push(BackendAddr { ip, port: target });
        }
    }
    backends.sort();
    backends.dedup();
    Ok(backends)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ServicePort;
    use k8s_openapi::api::{
        core::v1::{ClientIPConfig, ServiceSpec, SessionAffinityConfig},
        discovery::v1::{Endpoint, EndpointConditions, EndpointPort},
    };
    use kube::api::ObjectMeta;

    use super::*;
    use crate::datapath::Protocol;

    fn port(name: &str, proto: &str, port: i32, target: IntOrString) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            protocol: Some(proto.into()),
            port,
            target_port: Some(target),
            ..Default::default()
        }
    }

    fn service(ip: &str, ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(ports),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn slice(
        name: &str,
        ports: &[(&str, &str, i32)],
        endpoints: &[(&str, Option<bool>)],
    ) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                labels: Some([(SERVICE_NAME_LABEL.to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p, port)| EndpointPort {
                        name: Some(n.to_string()),
                        protocol: Some(p.to_string()),
                        port: Some(*port),
                        ..Default::default()
                    })
                    .collect(),
            ),
            endpoints: Some(
                endpoints
                    .iter()
                    .map(|(ip, ready)| Endpoint {
                        addresses: vec![ip.to_string()],
                        conditions: Some(EndpointConditions {
                            ready: *ready,
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
        }
    }

    /// [`desired_state`] of the objects' views.
    fn desired_of(svc: &Service, slices: &[&EndpointSlice]) -> Result<DesiredService, Unsupported> {
        desired_state(&ServiceView::of(svc).unwrap(), &views(slices))
    }

    /// [`desired_state_on_node`] of the objects' views.
    fn desired_on_node(
        svc: &Service,
        slices: &[&EndpointSlice],
        node: &str,
    ) -> Result<DesiredService, Unsupported> {
        desired_state_on_node(&ServiceView::of(svc).unwrap(), &views(slices), node)
    }

    fn views(slices: &[&EndpointSlice]) -> Vec<SliceView> {
        slices.iter().map(|s| SliceView::of(s).unwrap().1).collect()
    }

    fn b(ip: &str, port: u16) -> BackendAddr {
        BackendAddr {
            ip: ip.parse().unwrap(),
            port,
        }
    }

    fn vip(port: u16, proto: Protocol) -> Frontend {
        Frontend::cluster_ip(Ipv4Addr::new(10, 96, 0, 20), port, proto)
    }

    #[test]
    fn ready_endpoints_with_named_target_ports_resolved_per_slice() {
        let svc = service(
            "10.96.0.20",
            vec![
                port("http", "TCP", 80, IntOrString::String("web".into())),
                port("dns", "UDP", 53, IntOrString::Int(5353)),
            ],
        );
        // Two slices whose pods name the same container port differently numbered.
        let a = slice(
            "web-a",
            &[("http", "TCP", 8080), ("dns", "UDP", 5353)],
            &[
                ("10.244.1.2", Some(true)),
                ("10.244.1.3", Some(false)),
                ("10.244.1.4", None),
            ],
        );
        let c = slice(
            "web-b",
            &[("http", "TCP", 9090)],
            &[("10.244.2.2", Some(true))],
        );
        let desired = desired_of(&svc, &[&a, &c]).unwrap();
        assert_eq!(desired.len(), 2);
        assert_eq!(
            desired[&vip(80, Protocol::Tcp)].backends,
            [
                b("10.244.1.2", 8080),
                b("10.244.1.4", 8080),
                b("10.244.2.2", 9090)
            ]
        );
        // Slice web-b does not list "dns": its numeric targetPort applies.
        assert_eq!(
            desired[&vip(53, Protocol::Udp)].backends,
            [
                b("10.244.1.2", 5353),
                b("10.244.1.4", 5353),
                b("10.244.2.2", 5353)
            ]
        );
        assert_eq!(desired[&vip(80, Protocol::Tcp)].affinity, Affinity::None);
    }

    #[test]
    fn node_ports_and_client_ip_affinity() {
        let mut svc = service(
            "10.96.0.20",
            vec![port("", "TCP", 80, IntOrString::Int(8080))],
        );
        let spec = svc.spec.as_mut().unwrap();
        spec.type_ = Some("NodePort".into());
        spec.ports.as_mut().unwrap()[0].node_port = Some(30080);
        spec.session_affinity = Some("ClientIP".into());
        let eps = slice("web-a", &[("", "TCP", 8080)], &[("10.244.1.2", Some(true))]);
        let desired = desired_of(&svc, &[&eps]).unwrap();
        let expected = FrontendSpec {
            backends: vec![b("10.244.1.2", 8080)],
            affinity: Affinity::ClientIp {
                timeout_secs: DEFAULT_AFFINITY_TIMEOUT,
            },
            ..FrontendSpec::default()
        };
        assert_eq!(desired[&vip(80, Protocol::Tcp)], expected);
        assert_eq!(
            desired[&Frontend::node_port(30080, Protocol::Tcp)],
            expected
        );

        svc.spec.as_mut().unwrap().session_affinity_config = Some(SessionAffinityConfig {
            client_ip: Some(ClientIPConfig {
                timeout_seconds: Some(0),
            }),
        });
        assert_eq!(
            desired_of(&svc, &[&eps]),
            Err(Unsupported::AffinityTimeout(0))
        );
    }

    #[test]
    fn external_traffic_policy_local_keeps_this_nodes_endpoints_on_node_ports() {
        let mut svc = service(
            "10.96.0.20",
            vec![port("", "TCP", 80, IntOrString::Int(8080))],
        );
        let spec = svc.spec.as_mut().unwrap();
        spec.type_ = Some("NodePort".into());
        spec.external_traffic_policy = Some("Local".into());
        spec.ports.as_mut().unwrap()[0].node_port = Some(30080);
        let mut eps = slice(
            "web-a",
            &[("", "TCP", 8080)],
            &[("10.244.1.2", Some(true)), ("10.244.2.2", Some(true))],
        );
        let endpoints = eps.endpoints.as_mut().unwrap();
        endpoints[0].node_name = Some("n1".into());
        endpoints[1].node_name = Some("n2".into());
        let node_port = Frontend::node_port(30080, Protocol::Tcp);

        let on_n1 = desired_on_node(&svc, &[&eps], "n1").unwrap();
        assert_eq!(on_n1[&node_port].backends, [b("10.244.1.2", 8080)]);
        assert!(on_n1[&node_port].external_local);
        assert!(on_n1[&node_port].options().external_local);
        // The ClusterIP keeps every endpoint and no flag.
        assert_eq!(on_n1[&vip(80, Protocol::Tcp)].backends.len(), 2);
        assert!(!on_n1[&vip(80, Protocol::Tcp)].external_local);

        let on_n3 = desired_on_node(&svc, &[&eps], "n3").unwrap();
        assert!(on_n3[&node_port].backends.is_empty());

        // Cluster policy: every endpoint, on any node.
        svc.spec.as_mut().unwrap().external_traffic_policy = Some("Cluster".into());
        let cluster = desired_on_node(&svc, &[&eps], "n3").unwrap();
        assert_eq!(cluster[&node_port].backends.len(), 2);
        assert!(!cluster[&node_port].external_local);
    }

    #[test]
    fn services_the_proxy_does_not_serve_map_to_nothing() {
        let eps = slice("web-a", &[("", "TCP", 80)], &[("10.244.1.2", Some(true))]);
        let headless = service("None", vec![port("", "TCP", 80, IntOrString::Int(80))]);
        assert_eq!(desired_of(&headless, &[&eps]), Ok(DesiredService::new()));
        let mut other = service(
            "10.96.0.20",
            vec![port("", "TCP", 80, IntOrString::Int(80))],
        );
        other.metadata.labels =
            Some([(SERVICE_PROXY_NAME_LABEL.to_string(), "x".to_string())].into());
        assert_eq!(desired_of(&other, &[&eps]), Ok(DesiredService::new()));
    }

    #[test]
    fn inexpressible_services_are_errors() {
        let v6 = service("fd00::1", vec![port("", "TCP", 80, IntOrString::Int(80))]);
        assert!(matches!(
            desired_of(&v6, &[]),
            Err(Unsupported::ClusterIp(_))
        ));
        let sctp = service(
            "10.96.0.20",
            vec![port("", "SCTP", 80, IntOrString::Int(80))],
        );
        assert!(matches!(
            desired_of(&sctp, &[]),
            Err(Unsupported::Protocol { .. })
        ));
        let bad = service(
            "10.96.0.20",
            vec![port("", "TCP", 70_000, IntOrString::Int(80))],
        );
        assert!(matches!(
            desired_of(&bad, &[]),
            Err(Unsupported::Port { .. })
        ));
        let svc = service(
            "10.96.0.20",
            vec![port("", "TCP", 80, IntOrString::Int(80))],
        );
        let eps = slice("web-a", &[("", "TCP", 0)], &[("10.244.1.2", Some(true))]);
        assert!(matches!(
            desired_of(&svc, &[&eps]),
            Err(Unsupported::EndpointPort { .. })
        ));
    }
}
