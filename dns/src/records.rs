//! What the cluster's DNS zone holds, kept from the watched Services and EndpointSlices.
//!
//! [`Records`] reduces each object to the few fields DNS needs as it arrives (a Service to its
//! kind and ports, an EndpointSlice to its service, addresses, hostnames and readiness) and
//! keeps the reverse (PTR) names up to date per Service, so that a query is a couple of map
//! lookups and never a scan.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label naming an EndpointSlice's Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Service's namespace and name.
pub type ServiceKey = (String, String);

/// What a Service answers with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Its cluster IPs.
    ClusterIp(Vec<IpAddr>),
    /// Its ready endpoints' addresses.
    Headless,
    /// A CNAME to this name.
    ExternalName(String),
}

/// A named port, as SRV records publish it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Port {
    pub name: String,
    /// Lower case, as SRV names spell it (`tcp`, `udp`, `sctp`).
    pub protocol: String,
    pub port: u16,
}

/// A Service as DNS sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceView {
    pub kind: Kind,
    pub ports: Vec<Port>,
    /// Not-ready endpoints are published too.
    pub publish_not_ready: bool,
}

/// One endpoint of an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub addresses: Vec<IpAddr>,
    pub hostname: Option<String>,
    pub ready: bool,
}

impl Endpoint {
    /// The label naming this endpoint under its service: its hostname, else its first address
    /// with dashes (`10-244-1-5`), as CoreDNS names endpoints without a hostname.
    pub fn label(&self) -> Option<String> {
        if let Some(h) = &self.hostname {
            return Some(h.to_ascii_lowercase());
        }
        self.addresses.first().map(dashed)
    }
}

/// An EndpointSlice as DNS sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceView {
    pub service: String,
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<Port>,
}

/// An address with `-` for its separators: `10-244-1-5`, `fd00--1`.
pub fn dashed(ip: &IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// Objects by namespace, then name, so that a query looks them up with the labels it has
/// (no key is built); a namespace goes with its last object.
#[derive(Debug)]
struct ByNamespace<V>(HashMap<String, HashMap<String, V>>);

impl<V> Default for ByNamespace<V> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

impl<V> ByNamespace<V> {
    fn get(&self, namespace: &str, name: &str) -> Option<&V> {
        self.0.get(namespace)?.get(name)
    }

    fn insert(&mut self, namespace: &str, name: &str, value: V) -> Option<V> {
        self.0
            .entry(namespace.to_owned())
            .or_default()
            .insert(name.to_owned(), value)
    }

    fn or_default(&mut self, namespace: &str, name: &str) -> &mut V
    where
        V: Default,
    {
        self.0
            .entry(namespace.to_owned())
            .or_default()
            .entry(name.to_owned())
            .or_default()
    }

    fn remove(&mut self, namespace: &str, name: &str) -> Option<V> {
        let names = self.0.get_mut(namespace)?;
        let value = names.remove(name);
        if names.is_empty() {
            self.0.remove(namespace);
        }
        value
    }

    fn has_namespace(&self, namespace: &str) -> bool {
        self.0.contains_key(namespace)
    }

    /// Every (namespace, name) not in `keep`.
    fn others(&self, keep: &BTreeSet<ServiceKey>) -> Vec<ServiceKey> {
        self.0
            .iter()
            .flat_map(|(ns, names)| names.keys().map(move |n| (ns.clone(), n.clone())))
            .filter(|k| !keep.contains(k))
            .collect()
    }
}

/// Every Service and EndpointSlice of the cluster, reduced, with the reverse names.
#[derive(Default, Debug)]
pub struct Records {
    services: ByNamespace<ServiceView>,
    slices: ByNamespace<SliceView>,
    /// A Service's slices, by name.
    slices_of: ByNamespace<BTreeSet<String>>,
    /// The reverse names each Service published, to take back when it changes.
    published: HashMap<ServiceKey, Vec<(IpAddr, String)>>,
    /// Address → the names (relative to the zone, without it) whose PTR it has.
    reverse: HashMap<IpAddr, BTreeSet<String>>,
    /// Counts changes: the SOA's serial.
    serial: u32,
}

impl Records {
    /// Adds or replaces a Service.
    pub fn apply_service(&mut self, svc: &Service) {
        let Some(key) = key_of(&svc.metadata) else {
            return;
        };
        self.services.insert(&key.0, &key.1, view_service(svc));
        self.republish(&key);
    }

    /// Removes a Service.
    pub fn delete_service(&mut self, namespace: &str, name: &str) {
        self.services.remove(namespace, name);
        self.republish(&(namespace.to_owned(), name.to_owned()));
    }

    /// Adds or replaces an EndpointSlice.
    pub fn apply_slice(&mut self, slice: &EndpointSlice) {
        let Some((namespace, name)) = key_of(&slice.metadata) else {
            return;
        };
        let Some(view) = view_slice(slice) else {
            // A slice without its service label belongs to no Service we answer for.
            self.delete_slice(&namespace, &name);
            return;
        };
        let service = (namespace.clone(), view.service.clone());
        let old = self.slices.insert(&namespace, &name, view);
        if let Some(old) = old.filter(|o| o.service != service.1) {
            self.unlink(&(namespace.clone(), old.service), &name);
        }
        self.slices_of
            .or_default(&service.0, &service.1)
            .insert(name);
        self.republish(&service);
    }

    /// Removes an EndpointSlice.
    pub fn delete_slice(&mut self, namespace: &str, name: &str) {
        if let Some(old) = self.slices.remove(namespace, name) {
            self.unlink(&(namespace.to_owned(), old.service), name);
        }
    }

    /// Replaces every Service with `services` (a watch's fresh list).
    pub fn replace_services(&mut self, services: &[Service]) {
        let keep: BTreeSet<ServiceKey> = services
            .iter()
            .filter_map(|s| key_of(&s.metadata))
            .collect();
        for (ns, name) in self.services.others(&keep) {
            self.delete_service(&ns, &name);
        }
        for svc in services {
            self.apply_service(svc);
        }
    }

    /// Replaces every EndpointSlice with `slices` (a watch's fresh list).
    pub fn replace_slices(&mut self, slices: &[EndpointSlice]) {
        let keep: BTreeSet<(String, String)> =
            slices.iter().filter_map(|s| key_of(&s.metadata)).collect();
        for (ns, name) in self.slices.others(&keep) {
            self.delete_slice(&ns, &name);
        }
        for slice in slices {
            self.apply_slice(slice);
        }
    }

    /// The SOA serial: it changes whenever the zone does.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    fn unlink(&mut self, service: &ServiceKey, slice: &str) {
        let (ns, name) = service;
        if let Some(names) = self.slices_of.0.get_mut(ns).and_then(|n| n.get_mut(name)) {
            names.remove(slice);
            if names.is_empty() {
                self.slices_of.remove(ns, name);
            }
        }
        self.republish(service);
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&ServiceView> {
        self.services.get(namespace, name)
    }

    /// Whether the namespace has a Service (so `<ns>.svc.<zone>` is a name that exists).
    pub fn has_namespace(&self, namespace: &str) -> bool {
        self.services.has_namespace(namespace)
    }

    /// The endpoints a Service publishes: ready ones, or all when it publishes not-ready
    /// addresses; each with the ports of its slice.
    pub fn endpoints<'a>(
        &'a self,
        namespace: &str,
        name: &str,
    ) -> impl Iterator<Item = (&'a Endpoint, &'a [Port])> + 'a {
        let all = self
            .service(namespace, name)
            .is_some_and(|s| s.publish_not_ready);
        let slices = self.slices.0.get(namespace);
        self.slices_of
            .get(namespace, name)
            .into_iter()
            .flatten()
            .filter_map(move |s| slices?.get(s))
            .flat_map(move |s| {
                s.endpoints
                    .iter()
                    .filter(move |e| all || e.ready)
                    .map(move |e| (e, s.ports.as_slice()))
            })
    }

    /// The names, relative to the zone, an address reverses to.
    pub fn reverse(&self, ip: &IpAddr) -> impl Iterator<Item = &str> {
        self.reverse
            .get(ip)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// Recomputes the reverse names one Service publishes.
    fn republish(&mut self, key: &ServiceKey) {
        self.serial = self.serial.wrapping_add(1);
        for (ip, name) in self.published.remove(key).unwrap_or_default() {
            if let Some(names) = self.reverse.get_mut(&ip) {
                names.remove(&name);
                if names.is_empty() {
                    self.reverse.remove(&ip);
                }
            }
        }
        let Some(svc) = self.services.get(&key.0, &key.1) else {
            return;
        };
        let (ns, name) = key;
        let base = format!("{name}.{ns}.svc");
        let mut published = Vec::new();
        match &svc.kind {
            Kind::ClusterIp(ips) => published.extend(ips.iter().map(|ip| (*ip, base.clone()))),
            Kind::Headless => {
                for (ep, _) in self.endpoints(ns, name) {
                    if let Some(label) = ep.label() {
                        for ip in &ep.addresses {
                            published.push((*ip, format!("{label}.{base}")));
                        }
                    }
                }
            }
            Kind::ExternalName(_) => {}
        }
        for (ip, name) in &published {
            self.reverse.entry(*ip).or_default().insert(name.clone());
        }
        self.published.insert(key.clone(), published);
    }
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<ServiceKey> {
    Some((meta.namespace.clone()?, meta.name.clone()?))
}

fn view_service(svc: &Service) -> ServiceView {
    let spec = svc.spec.clone().unwrap_or_default();
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        Kind::ExternalName(spec.external_name.clone().unwrap_or_default())
    } else {
        let ips: Vec<IpAddr> = spec
            .cluster_ips
            .clone()
            .or_else(|| spec.cluster_ip.clone().map(|ip| vec![ip]))
            .unwrap_or_default()
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        if ips.is_empty() {
            Kind::Headless
        } else {
            Kind::ClusterIp(ips)
        }
    };
    let ports = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            Some(Port {
                name: p.name.filter(|n| !n.is_empty())?,
                protocol: p.protocol.unwrap_or_else(|| "TCP".into()).to_lowercase(),
                port: u16::try_from(p.port).ok()?,
            })
        })
        .collect();
    ServiceView {
        kind,
        ports,
        publish_not_ready: spec.publish_not_ready_addresses == Some(true),
    }
}

fn view_slice(slice: &EndpointSlice) -> Option<SliceView> {
    let service = slice
        .metadata
        .labels
        .as_ref()?
        .get(SERVICE_NAME_LABEL)?
        .clone();
    let endpoints = slice
        .endpoints
        .iter()
        .flatten()
        .map(|e| Endpoint {
            addresses: e.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
            hostname: e.hostname.clone().filter(|h| !h.is_empty()),
            // An unset condition means ready (discovery/v1).
            ready: e.conditions.as_ref().and_then(|c| c.ready) != Some(false),
        })
        .collect();
    // Ports are published once per name, whatever order the slice lists them in.
    let ports: BTreeMap<String, Port> = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let port = Port {
                name: p.name.clone().filter(|n| !n.is_empty())?,
                protocol: p
                    .protocol
                    .clone()
                    .unwrap_or_else(|| "TCP".into())
                    .to_lowercase(),
                port: u16::try_from(p.port?).ok()?,
            };
            Some((port.name.clone(), port))
        })
        .collect();
    Some(SliceView {
        service,
        endpoints,
        ports: ports.into_values().collect(),
    })
}

#[cfg(test)]
pub(crate) mod tests;
