//! The lab: several hosts on one machine (DESIGN.md §8).
//!
//! A lab is a fabric network namespace holding a bridge, one namespace per node (`<lab>-n1`, …)
//! and an external client namespace (`<lab>-ext`), all on the underlay `192.168.64.0/24`. Each
//! node gets its own directories, bpffs pin directory and cgroup subtree; processes started
//! through [`Lab::spawn`] run inside a node's network namespace and cgroup and are recorded by
//! PID so that [`Lab::teardown`] can end them even after a crash. The fabric namespace runs a
//! local image registry at `192.168.64.1:5000` that holds the test images built by [`images`].
//!
//! Nothing here adds an address, a route or a sysctl to the machine's root network namespace,
//! and nothing sends traffic from it: every probe runs inside a lab namespace.

mod cgroup;
mod config;
pub mod debian;
pub mod etcd;
mod http;
pub mod hub;
pub mod images;
mod lab;
mod net;
mod pki;
mod process;
mod registry;
mod resolver;

pub use config::{
    AGENT_CMD, AUTH_PASSWORD, AUTH_REGISTRY, AUTH_USER, BPFFS, CERT_REGISTRY,
    CONTROL_PLANE_JOIN_CMD, CONTROL_PLANE_JOIN_CONFIG, CmdTemplate, DEAD_MIRROR, DEFAULT_NAME,
    DEFAULT_ROOT, EXT_IP, FABRIC_IP, HA_AGENT_FLAG, HA_CLUSTER_CONFIG, HA_INIT_CMD, Host, INIT_CMD,
    JOIN_CMD, KUBEADM_CONFIG, LabConfig, MAX_NODES, REGISTRY, REGISTRY_PORT, Role, SERVER_CMD,
    UNDERLAY_PREFIX, fill, node_ip,
};
pub use http::{Response, request as http_request};
pub use lab::Lab;
pub use process::ExecOutput;
pub use registry::mirror_config;
pub use resolver::{OUTSIDE_IP, OUTSIDE_ZONE};

use std::path::PathBuf;

/// Errors of the lab.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid lab config: {0}")]
    Config(String),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("no host {0:?} in this lab")]
    NoHost(String),
    #[error("entering network namespace {netns}: {source}")]
    Netns {
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("http {method} {url}: {reason}")]
    Http {
        method: String,
        url: String,
        reason: String,
    },
    #[error("timed out after {secs}s waiting for {what}")]
    Timeout { what: String, secs: u64 },
    #[error("image {image}: {reason}")]
    Image { image: String, reason: String },
    #[error("teardown of lab {lab} left: {left}")]
    Teardown { lab: String, left: String },
}

/// Result with the lab's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches the path and the action to an I/O error.
pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}
