//! `ekube kubelet` and `ekube runtime`: the node agent and the CRI runtime it drives
//! (DESIGN.md §5).
//!
//! [`runtime`] is the CRI v1 server over runc; [`run`] is the kubelet, a CRI client that
//! registers the node, keeps its lease, and runs one worker per pod bound to it.

pub mod bootstrap;
mod cgroups;
pub mod cri;
mod kubelet;
pub mod metrics;
mod respond;
pub mod rotation;
pub mod runtime;
pub mod server;

pub use kubelet::{Config, Error, reset, run};
