//! `ekube-cni`: the CNI plugin of an ekube node (DESIGN.md §6).
//!
//! It attaches pods to a per-node bridge (`cni0`) through veth pairs, hands out
//! addresses from the node's pod subnet (host-local style, or through a delegated
//! IPAM plugin), gives pods a default route via the bridge's `.1`, and masquerades
//! traffic leaving the cluster CIDR. The `ekube-cni` binary is a thin wrapper around
//! [`plugin::run`]; [`config::render_conflist`] writes the node's network config.

pub mod config;
pub mod env;
pub mod error;
pub mod ipam;
pub mod iptables;
pub mod masq;
pub mod netlink;
pub mod plugin;
pub mod types;

pub use config::{NodeConflist, render_conflist, write_conflist};
pub use error::{Error, ErrorJson, Result};
pub use plugin::{Datapath, Kernel, run};

/// FNV-1a 64-bit: a stable short hash for deriving link and chain names.
pub fn short_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
