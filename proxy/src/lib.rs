//! `ekube proxy`: turns Services and EndpointSlices into eBPF map entries (DESIGN.md §7).
//!
//! This crate currently holds the datapath half: [`datapath`] loads the embedded kernel object,
//! attaches the socket-level load balancer to a cgroup, pins everything under
//! `<bpffs>/ekube/<node>/` and programs services through the [`ServiceDatapath`] trait. The
//! reconciler that watches the API server will drive that trait (and is tested against
//! [`datapath::MemMaps`], the in-memory fake).

pub mod datapath;
pub mod service;

pub use datapath::{
    Affinity, BackendAddr, Datapath, DatapathConfig, DatapathState, Error, Frontend, Protocol,
    Result, ServiceDatapath, ServiceEntry,
};
