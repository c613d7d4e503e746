//! The eBPF service datapath: socket-level load balancing and per-packet NodePort, programmed
//! through pinned maps.
//!
//! [`Datapath::open`] loads the kernel object embedded at build time (`cargo xtask build-ebpf`),
//! attaches `connect4`, `sendmsg4`, `recvmsg4` and `getpeername4` to a cgroup v2 directory and
//! pins maps and links under `<bpffs>/ekube/<node>/`. The tc NodePort programs are attached
//! (tcx links, pinned alongside) to the interfaces holding the node addresses and to the
//! overlay device whenever [`ServiceDatapath::set_node_addrs`] runs; [`conntrack`] sweeps their
//! flows. Opening again (a proxy restart) re-uses
//! the pinned maps and links, so flows and translations survive while the proxy is down.
//! Everything above the kernel talks to the [`ServiceDatapath`] trait; [`maps::MemMaps`] backs a
//! fake [`Datapath`] for tests.

mod bpf;
pub mod conntrack;
pub mod maps;
mod state;
mod sys;
mod tc;
mod types;

use std::{io, net::Ipv4Addr, path::PathBuf, time::Duration};

pub use bpf::{BpfMaps, remove_pins};
pub use ekube_ebpf_common::Counter;
pub use state::{Datapath, dump_store, lookup_service};
pub use types::{
    Affinity, BackendAddr, DatapathState, Frontend, Protocol, ServiceEntry, ServiceOptions,
};

/// Errors of the datapath.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "this build has no eBPF object embedded; run `cargo xtask build-ebpf` and rebuild ekube"
    )]
    ObjectMissing,
    #[error("loading the eBPF object (maps pinned in {pin_dir}): {source}")]
    Load {
        pin_dir: PathBuf,
        source: Box<aya::EbpfError>,
    },
    #[error("eBPF object has no program {program}")]
    ProgramMissing { program: &'static str },
    #[error("loading program {program}: {source}")]
    Program {
        program: &'static str,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("eBPF object has no map {map}")]
    MapMissing { map: &'static str },
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        source: Box<aya::maps::MapError>,
    },
    #[error("attaching {program} to cgroup {cgroup}: {source}")]
    Attach {
        program: &'static str,
        cgroup: PathBuf,
        source: io::Error,
    },
    #[error("{action} {path}: {source}")]
    Fs {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("attaching {program} to interface {iface}: {source}")]
    AttachTc {
        program: &'static str,
        iface: String,
        source: io::Error,
    },
    #[error("listing the network interfaces: {source}")]
    Interfaces { source: io::Error },
    #[error("service {frontend} has {count} backends, more than a service can hold")]
    TooManyBackends { frontend: Frontend, count: usize },
    #[error("no {what} ids left")]
    IdsExhausted { what: &'static str },
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the datapath attaches and pins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatapathConfig {
    /// cgroup v2 directory whose sockets are load-balanced (and all its descendants).
    pub cgroup: PathBuf,
    /// bpffs mount point; mounted here if nothing is.
    pub bpffs: PathBuf,
    /// Node name: pins go to `<bpffs>/ekube/<node>/`, so several nodes can share one kernel.
    pub node_name: String,
}

impl DatapathConfig {
    /// The DESIGN.md §3 defaults for `node_name`.
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            cgroup: PathBuf::from("/sys/fs/cgroup/unified"),
            bpffs: PathBuf::from("/sys/fs/bpf"),
            node_name: node_name.into(),
        }
    }

    /// `<bpffs>/ekube/<node>`: every map and link of this node.
    pub fn pin_dir(&self) -> PathBuf {
        self.bpffs.join("ekube").join(&self.node_name)
    }
}

/// Settings of the per-packet NodePort path (the kube-proxy flag each mirrors in brackets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePortSettings {
    /// Attach the tc programs at all; without, NodePorts answer only through the socket hooks
    /// (clients on this node).
    pub enabled: bool,
    /// Idle timeout of an open TCP flow (`--conntrack-tcp-timeout-established`).
    pub tcp_established_timeout: Duration,
    /// Timeout of a TCP flow after FIN or RST (`--conntrack-tcp-timeout-close-wait`).
    pub tcp_close_timeout: Duration,
    /// Idle timeout of a UDP flow (`--conntrack-udp-timeout`).
    pub udp_timeout: Duration,
    /// Source ports used when SNATing to a remote backend (inclusive).
    pub snat_ports: (u16, u16),
    /// Overlay devices whose ingress sees replies of SNATed flows.
    pub overlay_interfaces: Vec<String>,
}

impl Default for NodePortSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            tcp_established_timeout: Duration::from_secs(6 * 3600),
            tcp_close_timeout: Duration::from_secs(10),
            udp_timeout: Duration::from_secs(60),
            snat_ports: (61_000, 65_535),
            overlay_interfaces: vec!["flannel.1".to_string()],
        }
    }
}

/// What the reconciler needs from the datapath; implemented by [`Datapath`] over real or
/// in-memory maps.
pub trait ServiceDatapath {
    /// Makes `frontend` balance over `backends` (duplicates ignored; empty means "refuse with
    /// ECONNREFUSED"). Writes only what changed: adding or removing one backend costs O(1)
    /// writes. Backends and slots are written before the slot-0 record that points to them.
    fn upsert_service(
        &mut self,
        frontend: Frontend,
        backends: &[BackendAddr],
        affinity: Affinity,
    ) -> Result<()>;

    /// [`Self::upsert_service`] with every per-frontend option; `options.external_local` marks a
    /// NodePort frontend of an `externalTrafficPolicy: Local` Service (its `backends` are then
    /// this node's endpoints only, and the client address must be kept). Datapaths without
    /// a use for the extra options may keep this default.
    fn upsert_service_with(
        &mut self,
        frontend: Frontend,
        backends: &[BackendAddr],
        options: ServiceOptions,
    ) -> Result<()> {
        self.upsert_service(frontend, backends, options.affinity)
    }

    /// Removes `frontend` (slot 0 first, then its slots, then backends nothing else uses).
    /// Removing an unknown frontend is not an error.
    fn delete_service(&mut self, frontend: Frontend) -> Result<()>;

    /// The node's own addresses, on which NodePort frontends answer (127.0.0.1 always does).
    /// The eBPF datapath also (re-)attaches its NodePort programs to the interfaces holding
    /// them and to the overlay device here, so calling it again with the same addresses picks
    /// up interfaces that appeared since.
    fn set_node_addrs(&mut self, addrs: &[Ipv4Addr]) -> Result<()>;

    /// Reads back what the maps hold: the "actual" state to diff desired state against.
    fn dump(&self) -> Result<DatapathState>;

    /// Map updates and deletes issued since open, for tests of the write budget.
    fn map_writes(&self) -> u64;

    /// Makes the changes issued since the last call take effect. Datapaths that apply in
    /// batches (iptables-restore) write here; the eBPF maps apply every write at once.
    fn commit(&mut self) -> Result<()> {
        Ok(())
    }
}
