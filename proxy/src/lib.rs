//! `ekube proxy`: turns Services and EndpointSlices (and the hostPorts of this node's pods)
//! into eBPF map entries (DESIGN.md §7).
//!
//! [`datapath`] loads the embedded kernel object, attaches the socket-level load balancer to a
//! cgroup, pins everything under `<bpffs>/ekube/<node>/` and programs services through the
//! [`ServiceDatapath`] trait. [`service`] is `ekube proxy` itself: it watches the API server and
//! drives that trait (and is tested against [`datapath::maps::MemMaps`], the in-memory fake).
//! [`iptables`] and [`nftables`] implement the same trait as kube-proxy's iptables and nftables
//! rules (`--mode iptables`, `--mode nftables`), over the model they share in [`rules`].

pub mod datapath;
pub mod iptables;
pub mod nftables;
pub mod rules;
pub mod service;

pub use datapath::{
    Affinity, BackendAddr, Datapath, DatapathConfig, DatapathState, Error, Frontend, Protocol,
    Result, ServiceDatapath, ServiceEntry,
};
