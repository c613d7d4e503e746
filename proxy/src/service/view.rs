//! What the proxy keeps of Services and EndpointSlices: the fields its frontends, endpoints,
//! rule names, health checks and Events are made from. Each object is reduced as it arrives
//! from the watch and the rest is dropped, so a Service costs the proxy a few hundred bytes
//! instead of its whole object and that of its slice (~3.5 KiB together as `k8s-openapi`
//! structs, most of it fields the proxy never reads).

use std::{borrow::Cow, net::IpAddr};

use k8s_openapi::{
    api::{
        core::v1::{ObjectReference, Service},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::util::intstr::IntOrString,
};

use super::desired::{SERVICE_PROXY_NAME_LABEL, ServiceName};
use crate::datapath::Protocol;

/// `spec.type` of a Service; an unknown one is served as `ClusterIP`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServiceType {
    #[default]
    ClusterIp,
    NodePort,
    LoadBalancer,
    ExternalName,
}

impl ServiceType {
    fn of(type_: Option<&str>) -> Self {
        match type_ {
            Some("NodePort") => Self::NodePort,
            Some("LoadBalancer") => Self::LoadBalancer,
            Some("ExternalName") => Self::ExternalName,
            _ => Self::ClusterIp,
        }
    }

    /// NodePort and LoadBalancer Services have node ports.
    pub fn has_node_ports(self) -> bool {
        matches!(self, Self::NodePort | Self::LoadBalancer)
    }
}

/// A protocol as written in a port: `TCP` when unset; the common ones without an allocation.
fn protocol(protocol: Option<&str>) -> Cow<'static, str> {
    match protocol.unwrap_or("TCP") {
        "TCP" => Cow::Borrowed("TCP"),
        "UDP" => Cow::Borrowed("UDP"),
        "SCTP" => Cow::Borrowed("SCTP"),
        other => Cow::Owned(other.to_owned()),
    }
}

/// One entry of `spec.ports`.
#[derive(Clone, Debug, PartialEq)]
pub struct ServicePortView {
    /// `""` when unnamed.
    pub name: String,
    pub protocol: Cow<'static, str>,
    pub port: i32,
    pub target_port: Option<IntOrString>,
    pub node_port: Option<i32>,
}

impl ServicePortView {
    /// The protocol as the datapath knows it; `None` for one it cannot serve (SCTP).
    pub fn proto(&self) -> Option<Protocol> {
        match &*self.protocol {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            _ => None,
        }
    }
}

/// A Service as the proxy sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceView {
    pub name: ServiceName,
    /// For the Events the proxy writes about it.
    pub uid: Option<String>,
    /// Labelled `service.kubernetes.io/service-proxy-name`: another proxy serves it.
    pub other_proxy: bool,
    pub type_: ServiceType,
    /// `spec.clusterIP` as written (unset, `""` or `"None"` for a Service without one).
    pub cluster_ip: Option<String>,
    pub ports: Vec<ServicePortView>,
    /// `sessionAffinity: ClientIP`, with `sessionAffinityConfig.clientIP.timeoutSeconds`
    /// (`Some(None)`: the default timeout).
    pub client_ip_affinity: Option<Option<i32>>,
    /// `externalTrafficPolicy: Local`, whatever the type.
    pub external_policy_local: bool,
    pub health_check_node_port: Option<i32>,
}

impl ServiceView {
    /// The view of `svc`, if it has a name.
    pub fn of(svc: &Service) -> Option<Self> {
        let name = ServiceName::of_service(svc)?;
        let spec = svc.spec.as_ref();
        // Collected from slices, not flattened options: a collect that knows its length
        // allocates exactly, where a flattened one reserves four entries for the first.
        let ports = spec
            .and_then(|s| s.ports.as_deref())
            .unwrap_or_default()
            .iter()
            .map(|p| ServicePortView {
                name: p.name.clone().unwrap_or_default(),
                protocol: protocol(p.protocol.as_deref()),
                port: p.port,
                target_port: p.target_port.clone(),
                node_port: p.node_port,
            })
            .collect();
        let client_ip_affinity = spec
            .filter(|s| s.session_affinity.as_deref() == Some("ClientIP"))
            .map(|s| {
                s.session_affinity_config
                    .as_ref()
                    .and_then(|c| c.client_ip.as_ref())
                    .and_then(|c| c.timeout_seconds)
            });
        Some(Self {
            name,
            uid: svc.metadata.uid.clone(),
            other_proxy: svc
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(SERVICE_PROXY_NAME_LABEL)),
            type_: ServiceType::of(spec.and_then(|s| s.type_.as_deref())),
            cluster_ip: spec.and_then(|s| s.cluster_ip.clone()),
            ports,
            client_ip_affinity,
            external_policy_local: spec
                .is_some_and(|s| s.external_traffic_policy.as_deref() == Some("Local")),
            health_check_node_port: spec.and_then(|s| s.health_check_node_port),
        })
    }

    /// Whether it asks for `externalTrafficPolicy: Local` on node ports it has.
    pub fn external_traffic_local(&self) -> bool {
        self.type_.has_node_ports() && self.external_policy_local
    }

    /// The Service, as the object an Event is about.
    pub fn reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            name: Some(self.name.name.to_string()),
            namespace: Some(self.name.namespace.to_string()),
            uid: self.uid.clone(),
            ..ObjectReference::default()
        }
    }
}

/// One entry of an EndpointSlice's `ports`.
#[derive(Clone, Debug, PartialEq)]
pub struct SlicePortView {
    /// `""` when unnamed.
    pub name: String,
    pub protocol: Cow<'static, str>,
    pub port: Option<i32>,
}

/// One endpoint of an EndpointSlice.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointView {
    /// Its first address, which stands for the endpoint (as in kube-proxy); `None` when it
    /// has none or it is not an address.
    pub address: Option<IpAddr>,
    /// `conditions.ready`; unset means ready, as the API documents and kube-proxy reads it.
    pub ready: bool,
    pub node_name: Option<String>,
}

/// An EndpointSlice as the proxy sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct SliceView {
    pub name: String,
    /// `addressType: IPv4`.
    pub ipv4: bool,
    pub ports: Vec<SlicePortView>,
    pub endpoints: Vec<EndpointView>,
}

impl SliceView {
    /// The Service `slice` belongs to (its `kubernetes.io/service-name` label) and its view;
    /// `None` for a slice without a name or that label.
    pub fn of(slice: &EndpointSlice) -> Option<(ServiceName, Self)> {
        let owner = ServiceName::of_slice(slice)?;
        let ports = slice
            .ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|p| SlicePortView {
                name: p.name.clone().unwrap_or_default(),
                protocol: protocol(p.protocol.as_deref()),
                port: p.port,
            })
            .collect();
        let endpoints = slice
            .endpoints
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|e| EndpointView {
                address: e.addresses.first().and_then(|a| a.parse().ok()),
                ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
                node_name: e.node_name.clone(),
            })
            .collect();
        let view = Self {
            name: slice.metadata.name.clone()?,
            ipv4: slice.address_type == "IPv4",
            ports,
            endpoints,
        };
        Some((owner, view))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::{
        core::v1::{ClientIPConfig, ServicePort, ServiceSpec, SessionAffinityConfig},
        discovery::v1::{Endpoint, EndpointConditions, EndpointPort},
    };
    use kube::api::ObjectMeta;

    use super::*;
    use crate::service::desired::SERVICE_NAME_LABEL;

    #[test]
    fn a_service_keeps_what_the_proxy_reads() {
        let svc = Service {
            metadata: ObjectMeta {
                name: Some("dns".into()),
                namespace: Some("kube-system".into()),
                uid: Some("u-1".into()),
                labels: Some(BTreeMap::from([(
                    SERVICE_PROXY_NAME_LABEL.to_string(),
                    "other".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".into()),
                cluster_ip: Some("10.96.0.10".into()),
                external_traffic_policy: Some("Local".into()),
                health_check_node_port: Some(31000),
                session_affinity: Some("ClientIP".into()),
                session_affinity_config: Some(SessionAffinityConfig {
                    client_ip: Some(ClientIPConfig {
                        timeout_seconds: Some(60),
                    }),
                }),
                ports: Some(vec![ServicePort {
                    protocol: Some("UDP".into()),
                    port: 53,
                    node_port: Some(30053),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        let view = ServiceView::of(&svc).unwrap();
        assert_eq!(view.name, ServiceName::new("kube-system", "dns"));
        assert!(view.other_proxy);
        assert_eq!(view.type_, ServiceType::LoadBalancer);
        assert_eq!(view.cluster_ip.as_deref(), Some("10.96.0.10"));
        assert_eq!(view.client_ip_affinity, Some(Some(60)));
        assert!(view.external_traffic_local());
        assert_eq!(view.health_check_node_port, Some(31000));
        assert_eq!(
            view.ports,
            [ServicePortView {
                name: String::new(),
                protocol: "UDP".into(),
                port: 53,
                target_port: None,
                node_port: Some(30053),
            }]
        );
        let reference = view.reference();
        assert_eq!(reference.uid.as_deref(), Some("u-1"));
        assert_eq!(reference.kind.as_deref(), Some("Service"));

        // Local traffic policy means nothing without node ports; unknown types are ClusterIP.
        let mut plain = svc.clone();
        plain.spec.as_mut().unwrap().type_ = Some("Weird".into());
        let plain = ServiceView::of(&plain).unwrap();
        assert_eq!(plain.type_, ServiceType::ClusterIp);
        assert!(!plain.external_traffic_local());
    }

    #[test]
    fn a_slice_keeps_its_owner_ports_and_endpoints() {
        let slice = EndpointSlice {
            metadata: ObjectMeta {
                name: Some("web-abc".into()),
                namespace: Some("default".into()),
                labels: Some(BTreeMap::from([(
                    SERVICE_NAME_LABEL.to_string(),
                    "web".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints: Some(vec![
                Endpoint {
                    addresses: vec!["10.244.0.5".into(), "10.244.0.6".into()],
                    node_name: Some("n1".into()),
                    ..Endpoint::default()
                },
                Endpoint {
                    addresses: vec!["not an address".into()],
                    conditions: Some(EndpointConditions {
                        ready: Some(false),
                        ..EndpointConditions::default()
                    }),
                    ..Endpoint::default()
                },
            ]),
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: Some(8080),
                ..EndpointPort::default()
            }]),
        };
        let (owner, view) = SliceView::of(&slice).unwrap();
        assert_eq!(owner, ServiceName::new("default", "web"));
        assert_eq!(view.name, "web-abc");
        assert!(view.ipv4);
        assert_eq!(
            view.ports,
            [SlicePortView {
                name: "http".into(),
                protocol: "TCP".into(),
                port: Some(8080),
            }]
        );
        assert_eq!(
            view.endpoints,
            [
                EndpointView {
                    address: Some("10.244.0.5".parse().unwrap()),
                    ready: true,
                    node_name: Some("n1".into()),
                },
                EndpointView {
                    address: None,
                    ready: false,
                    node_name: None,
                },
            ]
        );

        let mut unlabelled = slice;
        unlabelled.metadata.labels = None;
        assert_eq!(SliceView::of(&unlabelled), None);
    }
}
