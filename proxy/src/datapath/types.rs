//! Domain types of the datapath API: what a service looks like to the reconciler, in host
//! terms (`Ipv4Addr`, `u16` ports). Raw map layouts live in `ekube-ebpf-common`; the conversion
//! is in [`super::maps`].

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::{Ipv4Addr, SocketAddrV4},
};

/// Transport protocol of a service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// A service frontend: what clients connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frontend {
    /// ClusterIP, or `0.0.0.0` for a NodePort (matched on 127.0.0.1 and the node's addresses),
    /// or for a pod's `hostPort` its `hostIP`, `255.255.255.255` without one (matched on those
    /// addresses too, after the NodePorts).
    pub ip: Ipv4Addr,
    pub port: u16,
    pub proto: Protocol,
}

impl Frontend {
    /// A ClusterIP frontend.
    pub fn cluster_ip(ip: Ipv4Addr, port: u16, proto: Protocol) -> Self {
        Self { ip, port, proto }
    }

    /// A NodePort frontend, answering on 127.0.0.1 and every address set with
    /// [`ServiceDatapath::set_node_addrs`].
    pub fn node_port(port: u16, proto: Protocol) -> Self {
        Self {
            ip: Ipv4Addr::UNSPECIFIED,
            port,
            proto,
        }
    }

    pub fn is_node_port(&self) -> bool {
        self.ip.is_unspecified()
    }

    /// A pod's `hostPort`: on `host_ip` only, or (`None`) on 127.0.0.1 and every address set
    /// with [`super::ServiceDatapath::set_node_addrs`]. Programmed with [`ServiceOptions::host_port`].
    pub fn host_port(host_ip: Option<Ipv4Addr>, port: u16, proto: Protocol) -> Self {
        Self {
            ip: host_ip.unwrap_or(Ipv4Addr::BROADCAST),
            port,
            proto,
        }
    }

    /// The address a hostPort frontend is bound to, `None` when it answers on every node
    /// address.
    pub fn host_ip(&self) -> Option<Ipv4Addr> {
        Some(self.ip).filter(|ip| !ip.is_broadcast())
    }
}

impl fmt::Display for Frontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.proto {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        match self.host_ip() {
            Some(ip) => write!(f, "{ip}:{}/{proto}", self.port),
            None => write!(f, "*:{}/{proto}", self.port),
        }
    }
}

/// One ready endpoint of a service (pod IP and target port); the protocol is the frontend's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendAddr {
    pub ip: Ipv4Addr,
    pub port: u16,
}

impl From<SocketAddrV4> for BackendAddr {
    fn from(addr: SocketAddrV4) -> Self {
        Self {
            ip: *addr.ip(),
            port: addr.port(),
        }
    }
}

/// `sessionAffinity` of a service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Affinity {
    #[default]
    None,
    /// `ClientIP`: a client (one network namespace) sticks to its backend while it keeps using
    /// it within `timeout_secs` (`sessionAffinityConfig.clientIP.timeoutSeconds`).
    ClientIp { timeout_secs: u32 },
}

/// How a frontend balances, beyond its list of backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceOptions {
    pub affinity: Affinity,
    /// `externalTrafficPolicy: Local` on a NodePort frontend: the backends are this node's
    /// endpoints only and the per-packet path keeps the client address (no SNAT).
    pub external_local: bool,
    /// A pod's `hostPort` ([`Frontend::host_port`]): one backend on this node, answering only
    /// on node addresses and after any NodePort of the same number; never SNATed.
    pub host_port: bool,
}

/// A programmed service as read back from the maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    /// Backends in slot order (slot 1 first).
    pub backends: Vec<BackendAddr>,
    pub affinity: Affinity,
    /// Programmed as a pod's `hostPort` ([`ServiceOptions::host_port`]).
    pub host_port: bool,
}

/// Everything the datapath currently holds: the "actual" side of desired-vs-actual.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatapathState {
    pub services: BTreeMap<Frontend, ServiceEntry>,
    pub node_addrs: BTreeSet<Ipv4Addr>,
}
