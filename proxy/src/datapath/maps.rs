//! The boundary between domain types and raw map entries, and the [`MapStore`] trait the
//! datapath writes through.
//!
//! This is the only place that converts byte order: addresses and ports go to network byte
//! order here (as the kernel programs read them straight from `bpf_sock_addr`), and come back
//! here. [`MemMaps`] is the in-memory store used by unit tests and by the reconciler's tests.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use ekube_ebpf_common::{
    Backend, IPPROTO_TCP, IPPROTO_UDP, NodeAddrKey, NodePortConfig, SVC_FLAG_AFFINITY,
    SVC_FLAG_EXTERNAL_LOCAL, SVC_FLAG_HOSTPORT, SVC_FLAG_NODEPORT, ServiceKey, ServiceValue,
};

use super::{Affinity, BackendAddr, Frontend, NodePortSettings, Protocol, Result, ServiceOptions};

/// Raw access to the three maps the proxy programs. The real store is the set of pinned BPF
/// maps; [`MemMaps`] is a fake with the same semantics.
pub trait MapStore {
    fn put_service(&mut self, key: ServiceKey, value: ServiceValue) -> Result<()>;
    fn delete_service(&mut self, key: ServiceKey) -> Result<()>;
    fn put_backend(&mut self, id: u32, value: Backend) -> Result<()>;
    fn delete_backend(&mut self, id: u32) -> Result<()>;
    fn put_node_addr(&mut self, key: NodeAddrKey) -> Result<()>;
    fn delete_node_addr(&mut self, key: NodeAddrKey) -> Result<()>;
    fn services(&self) -> Result<Vec<(ServiceKey, ServiceValue)>>;
    fn backends(&self) -> Result<Vec<(u32, Backend)>>;
    fn node_addrs(&self) -> Result<Vec<NodeAddrKey>>;
    /// One entry of the services map, without walking it.
    fn service(&self, key: ServiceKey) -> Result<Option<ServiceValue>>;
    /// One entry of the backends map, without walking it.
    fn backend(&self, id: u32) -> Result<Option<Backend>>;

    /// The node addresses are now `addrs`: the real store (re-)attaches its NodePort programs
    /// to the interfaces holding them. Called on every `set_node_addrs`, also when unchanged.
    fn attach_node_interfaces(&mut self, _addrs: &BTreeSet<Ipv4Addr>) -> Result<()> {
        Ok(())
    }

    /// Each of `left` is a frontend and the id of a backend it no longer balances to: the real
    /// store deletes the UDP NodePort flows still sent there ([`super::conntrack::forget`]).
    /// Returns how many conntrack entries went.
    fn forget_flows(&mut self, _left: &[(Frontend, u32)]) -> Result<usize> {
        Ok(0)
    }
}

pub(crate) fn proto_number(proto: Protocol) -> u8 {
    match proto {
        Protocol::Tcp => IPPROTO_TCP,
        Protocol::Udp => IPPROTO_UDP,
    }
}

fn proto_from_number(number: u8) -> Option<Protocol> {
    match number {
        IPPROTO_TCP => Some(Protocol::Tcp),
        IPPROTO_UDP => Some(Protocol::Udp),
        _ => None,
    }
}

/// An IPv4 address as the kernel programs see it (network byte order in memory).
fn ip_raw(ip: Ipv4Addr) -> u32 {
    u32::from(ip).to_be()
}

fn ip_from_raw(raw: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from_be(raw))
}

/// The key of `slot` of `frontend`.
pub(crate) fn service_key(frontend: &Frontend, slot: u16) -> ServiceKey {
    ServiceKey {
        vip: ip_raw(frontend.ip),
        port: frontend.port.to_be(),
        slot,
        proto: proto_number(frontend.proto),
        _pad: [0; 3],
    }
}

/// The frontend a raw key belongs to, or `None` for a protocol this proxy never writes.
pub(crate) fn frontend_of(key: &ServiceKey) -> Option<Frontend> {
    Some(Frontend {
        ip: ip_from_raw(key.vip),
        port: u16::from_be(key.port),
        proto: proto_from_number(key.proto)?,
    })
}

/// The slot-0 record of a service.
pub(crate) fn service_record(
    frontend: &Frontend,
    service_id: u32,
    count: u16,
    options: ServiceOptions,
) -> ServiceValue {
    let mut flags = 0;
    let mut affinity_timeout = 0;
    if options.external_local && frontend.is_node_port() {
        flags |= SVC_FLAG_EXTERNAL_LOCAL;
    }
    if let Affinity::ClientIp { timeout_secs } = options.affinity {
        flags |= SVC_FLAG_AFFINITY;
        affinity_timeout = timeout_secs;
    }
    if frontend.is_node_port() {
        flags |= SVC_FLAG_NODEPORT;
    }
    if options.host_port {
        flags |= SVC_FLAG_HOSTPORT;
    }
    ServiceValue {
        backend_id: 0,
        count,
        flags,
        _pad: 0,
        service_id,
        affinity_timeout,
    }
}

/// The value of a backend slot.
pub(crate) fn slot_record(service_id: u32, backend_id: u32) -> ServiceValue {
    ServiceValue {
        backend_id,
        service_id,
        ..ServiceValue::default()
    }
}

/// The affinity a slot-0 record describes.
pub(crate) fn affinity_of(record: &ServiceValue) -> Affinity {
    if record.flags & SVC_FLAG_AFFINITY != 0 {
        Affinity::ClientIp {
            timeout_secs: record.affinity_timeout,
        }
    } else {
        Affinity::None
    }
}

/// The options a slot-0 record describes.
pub(crate) fn options_of(record: &ServiceValue) -> ServiceOptions {
    ServiceOptions {
        affinity: affinity_of(record),
        external_local: record.flags & SVC_FLAG_EXTERNAL_LOCAL != 0,
        host_port: record.flags & SVC_FLAG_HOSTPORT != 0,
    }
}

/// The kernel's NodePort settings record.
pub(crate) fn nodeport_config(settings: &NodePortSettings) -> NodePortConfig {
    let ns = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
    NodePortConfig {
        tcp_established_ns: ns(settings.tcp_established_timeout),
        tcp_closing_ns: ns(settings.tcp_close_timeout),
        udp_ns: ns(settings.udp_timeout),
        snat_port_min: settings.snat_ports.0.min(settings.snat_ports.1),
        snat_port_max: settings.snat_ports.0.max(settings.snat_ports.1),
        snat_time_wait_s: u32::try_from(settings.snat_time_wait.as_secs())
            .unwrap_or(u32::MAX)
            .max(1),
        tcp_syn_ns: ns(settings.tcp_syn_timeout),
        tcp_unestablished_max: settings.tcp_unestablished_max,
        _pad: 0,
    }
}

pub(crate) fn backend_value(addr: BackendAddr, proto: Protocol) -> Backend {
    Backend {
        ip: ip_raw(addr.ip),
        port: addr.port.to_be(),
        proto: proto_number(proto),
        flags: 0,
    }
}

/// The address and protocol of a raw backend, `None` for a protocol this proxy never writes.
pub(crate) fn backend_of(value: &Backend) -> Option<(BackendAddr, Protocol)> {
    let addr = BackendAddr {
        ip: ip_from_raw(value.ip),
        port: u16::from_be(value.port),
    };
    Some((addr, proto_from_number(value.proto)?))
}

pub(crate) fn node_addr_key(ip: Ipv4Addr) -> NodeAddrKey {
    NodeAddrKey { ip: ip_raw(ip) }
}

pub(crate) fn node_addr_of(key: &NodeAddrKey) -> Ipv4Addr {
    ip_from_raw(key.ip)
}

/// One write to a [`MemMaps`], recorded so tests can assert the order of writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemOp {
    PutService(ServiceKey),
    DeleteService(ServiceKey),
    PutBackend(u32),
    DeleteBackend(u32),
    PutNodeAddr(Ipv4Addr),
    DeleteNodeAddr(Ipv4Addr),
}

/// In-memory [`MapStore`]: the fake for tests of everything above the kernel.
#[derive(Clone, Debug, Default)]
pub struct MemMaps {
    pub services: BTreeMap<ServiceKey, ServiceValue>,
    pub backends: BTreeMap<u32, Backend>,
    pub node_addrs: BTreeSet<u32>,
    /// Every write, in order.
    pub log: Vec<MemOp>,
    /// What [`MapStore::forget_flows`] was given, call by call.
    pub forgotten: Vec<Vec<(Frontend, u32)>>,
}

impl MapStore for MemMaps {
    fn put_service(&mut self, key: ServiceKey, value: ServiceValue) -> Result<()> {
        self.log.push(MemOp::PutService(key));
        self.services.insert(key, value);
        Ok(())
    }

    fn delete_service(&mut self, key: ServiceKey) -> Result<()> {
        self.log.push(MemOp::DeleteService(key));
        self.services.remove(&key);
        Ok(())
    }

    fn put_backend(&mut self, id: u32, value: Backend) -> Result<()> {
        self.log.push(MemOp::PutBackend(id));
        self.backends.insert(id, value);
        Ok(())
    }

    fn delete_backend(&mut self, id: u32) -> Result<()> {
        self.log.push(MemOp::DeleteBackend(id));
        self.backends.remove(&id);
        Ok(())
    }

    fn put_node_addr(&mut self, key: NodeAddrKey) -> Result<()> {
        self.log.push(MemOp::PutNodeAddr(node_addr_of(&key)));
        self.node_addrs.insert(key.ip);
        Ok(())
    }

    fn delete_node_addr(&mut self, key: NodeAddrKey) -> Result<()> {
        self.log.push(MemOp::DeleteNodeAddr(node_addr_of(&key)));
        self.node_addrs.remove(&key.ip);
        Ok(())
    }

    fn services(&self) -> Result<Vec<(ServiceKey, ServiceValue)>> {
        Ok(self.services.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn backends(&self) -> Result<Vec<(u32, Backend)>> {
        Ok(self.backends.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn node_addrs(&self) -> Result<Vec<NodeAddrKey>> {
        Ok(self
            .node_addrs
            .iter()
            .map(|&ip| NodeAddrKey { ip })
            .collect())
    }

    fn service(&self, key: ServiceKey) -> Result<Option<ServiceValue>> {
        Ok(self.services.get(&key).copied())
    }

    fn backend(&self, id: u32) -> Result<Option<Backend>> {
        Ok(self.backends.get(&id).copied())
    }

    fn forget_flows(&mut self, left: &[(Frontend, u32)]) -> Result<usize> {
        self.forgotten.push(left.to_vec());
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_ports_are_network_order_in_memory() {
        let f = Frontend::cluster_ip(Ipv4Addr::new(10, 96, 0, 1), 443, Protocol::Tcp);
        let key = service_key(&f, 0);
        assert_eq!(key.vip.to_ne_bytes(), [10, 96, 0, 1]);
        assert_eq!(key.port.to_ne_bytes(), [1, 187]);
        assert_eq!(frontend_of(&key), Some(f));
        let b = BackendAddr {
            ip: Ipv4Addr::new(10, 244, 1, 7),
            port: 8080,
        };
        let raw = backend_value(b, Protocol::Udp);
        assert_eq!(raw.ip.to_ne_bytes(), [10, 244, 1, 7]);
        assert_eq!(backend_of(&raw), Some((b, Protocol::Udp)));
    }

    #[test]
    fn closed_snat_flows_keep_their_port_for_time_wait() {
        use ekube_ebpf_common::{CT_FLAG_CLOSING, CT_FLAG_SNAT};
        let secs = |s: u64| s * 1_000_000_000;
        let cfg = nodeport_config(&NodePortSettings::default());
        assert_eq!(cfg.timeout_ns(IPPROTO_TCP, CT_FLAG_CLOSING), secs(10));
        assert_eq!(
            cfg.timeout_ns(IPPROTO_TCP, CT_FLAG_CLOSING | CT_FLAG_SNAT),
            secs(60)
        );
        assert_eq!(cfg.timeout_ns(IPPROTO_TCP, CT_FLAG_SNAT), secs(6 * 3600));
        assert_eq!(cfg.timeout_ns(IPPROTO_UDP, CT_FLAG_SNAT), secs(60));
        let short = nodeport_config(&NodePortSettings {
            tcp_close_timeout: std::time::Duration::from_secs(1),
            snat_time_wait: std::time::Duration::from_secs(2),
            ..NodePortSettings::default()
        });
        assert_eq!(
            short.timeout_ns(IPPROTO_TCP, CT_FLAG_CLOSING | CT_FLAG_SNAT),
            secs(2)
        );
        // An all-zero record (never written) falls back to the default hold.
        let unset = NodePortConfig {
            snat_time_wait_s: 0,
            ..short
        };
        assert_eq!(
            unset.timeout_ns(IPPROTO_TCP, CT_FLAG_CLOSING | CT_FLAG_SNAT),
            secs(60)
        );
    }

    #[test]
    fn unestablished_flows_live_the_syn_timeout_until_closed() {
        use ekube_ebpf_common::{CT_FLAG_CLOSING, CT_FLAG_SNAT, CT_FLAG_UNESTABLISHED};
        let secs = |s: u64| s * 1_000_000_000;
        let cfg = nodeport_config(&NodePortSettings {
            tcp_syn_timeout: std::time::Duration::from_secs(5),
            tcp_unestablished_max: 7,
            ..NodePortSettings::default()
        });
        assert_eq!(cfg.tcp_unestablished_max, 7);
        let unestablished = CT_FLAG_UNESTABLISHED | CT_FLAG_SNAT;
        assert_eq!(cfg.timeout_ns(IPPROTO_TCP, unestablished), secs(5));
        // A RST during the handshake: the closing timeout, not the SYN one.
        assert_eq!(
            cfg.timeout_ns(IPPROTO_TCP, unestablished | CT_FLAG_CLOSING),
            secs(60)
        );
        assert_eq!(cfg.timeout_ns(IPPROTO_UDP, unestablished), secs(60));
    }
}
