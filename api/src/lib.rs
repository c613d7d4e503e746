//! The object model every ekube component shares.
//!
//! Objects are the `k8s-openapi` types; this crate adds what the Kubernetes libraries leave to the
//! server: the table of resources ekube serves ([`resources`]), label and field selectors
//! ([`selector`]), quantities ([`quantity`]) and int-or-percent values ([`intstr`]), what a disruption
//! budget's status says ([`disruption`]), which resource names are extended ([`resource_name`]) and what objects cost against a quota ([`quota`]), the one way components build a kube-rs client
//! ([`client`]) and record Events ([`events`]), the flags every component parses alike ([`flags`]), and the hardened accept loop both HTTPS servers
//! run ([`serve`]) and who their clients are ([`user`]),
//! how certificate requests read ([`csr`]), what joining by token rests on ([`bootstrap`]), and
//! which PersistentVolume may serve which claim ([`storage`]).

pub mod balancer;
pub mod bootstrap;
pub mod client;
pub mod client_cert;
pub mod cron;
pub mod csr;
pub mod display;
pub mod disruption;
pub mod events;
pub mod files;
pub mod flags;
pub mod intstr;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod nodematch;
pub mod quantity;
pub mod quota;
pub mod resource_name;
pub mod resources;
pub mod review;
pub mod secure_port;
pub mod selector;
pub mod serve;
pub mod storage;
pub mod time;
pub mod tls;
pub mod user;

pub use k8s_openapi;
pub use resources::{RESOURCES, ResourceInfo};

/// The Kubernetes version ekube speaks (the API's `major.minor.patch`).
pub const KUBE_VERSION: &str = "v1.37.0";

/// The version every component reports: the apiserver's `/version` `gitVersion` and the
/// kubelet's `nodeInfo.kubeletVersion` (`kubectl version`, `kubectl get nodes`).
pub const GIT_VERSION: &str = "v1.37.0+ekube";

#[cfg(test)]
mod tests {
    #[test]
    fn git_version_is_the_kube_version() {
        assert!(super::GIT_VERSION.starts_with(&format!("{}+", super::KUBE_VERSION)));
    }
}
