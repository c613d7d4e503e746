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

pub use bpf::{BpfMaps, IngressProbe, remove_pins};
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
    #[error("running a packet through {program}: {source}")]
    TestRun {
        program: &'static str,
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
    /// Entries of the backend and affinity maps; the service map (a frontend plus a slot per
    /// backend) gets twice as many (Cilium's `--bpf-lb-map-max`).
    pub lb_map_max: u32,
}

/// [`DatapathConfig::lb_map_max`] unless set: the sizes the object declares.
pub const DEFAULT_LB_MAP_MAX: u32 = ekube_ebpf_common::BACKENDS_MAX_ENTRIES;
/// The fewest entries [`DatapathConfig::lb_map_max`] may ask for.
pub const MIN_LB_MAP_MAX: u32 = 1 << 10;
/// The most: twice this is still a `u32`, and the kernel allocates hash maps lazily but
/// charges the whole map's size to the proxy's memory up front.
pub const MAX_LB_MAP_MAX: u32 = 1 << 24;

const _: () = assert!(
    ekube_ebpf_common::SERVICES_MAX_ENTRIES == 2 * DEFAULT_LB_MAP_MAX
        && ekube_ebpf_common::AFFINITY_MAX_ENTRIES == DEFAULT_LB_MAP_MAX
);

impl DatapathConfig {
    /// The DESIGN.md §3 defaults for `node_name`.
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            cgroup: PathBuf::from("/sys/fs/cgroup/unified"),
            bpffs: PathBuf::from("/sys/fs/bpf"),
            node_name: node_name.into(),
            lb_map_max: DEFAULT_LB_MAP_MAX,
        }
    }

    /// The maps sized by [`Self::lb_map_max`] rather than by the object: name and entries.
    pub fn lb_map_sizes(&self) -> [(&'static str, u32); 3] {
        let max = self.lb_map_max;
        [
            (ekube_ebpf_common::SERVICES, max.saturating_mul(2)),
            (ekube_ebpf_common::BACKENDS, max),
            (ekube_ebpf_common::AFFINITY, max),
        ]
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
    /// Lifetime of a TCP flow whose client has not completed the handshake, counted from its
    /// SYN (`--conntrack-tcp-timeout-syn`; kube-proxy has none, netfilter's `SYN_RECV` is 60 s).
    pub tcp_syn_timeout: Duration,
    /// Unestablished TCP flows the conntrack holds at most; further SYNs are dropped, so a SYN
    /// flood never evicts established flows.
    pub tcp_unestablished_max: u32,
    /// Source ports used when SNATing to a remote backend (inclusive); see
    /// [`snat_ports_for_host`].
    pub snat_ports: (u16, u16),
    /// How long a closed SNATed TCP flow without shifted timestamps keeps its SNAT port: the
    /// backend may still hold the tuple in TIME_WAIT, where another flow's SYN can fail its PAWS
    /// check.
    pub snat_time_wait: Duration,
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
            tcp_syn_timeout: Duration::from_nanos(
                ekube_ebpf_common::NodePortConfig::DEFAULT.tcp_syn_ns,
            ),
            tcp_unestablished_max: ekube_ebpf_common::NodePortConfig::DEFAULT.tcp_unestablished_max,
            snat_ports: (
                ekube_ebpf_common::NodePortConfig::DEFAULT.snat_port_min,
                ekube_ebpf_common::NodePortConfig::DEFAULT.snat_port_max,
            ),
            snat_time_wait: Duration::from_nanos(ekube_ebpf_common::SNAT_TIME_WAIT_NS),
            overlay_interfaces: vec!["flannel.1".to_string()],
        }
    }
}

/// Kubernetes' default `--service-node-port-range`.
pub const NODE_PORT_RANGE: (u16, u16) = (30_000, 32_767);

/// The SNAT port range for this network namespace: the largest span of 1024–65535 outside both
/// the kernel's ephemeral ports (`net.ipv4.ip_local_port_range`, which the node's own
/// connections use) and the NodePort range. A closed SNATed flow whose client's timestamps are
/// not shifted holds its port for TIME_WAIT (60 s), so the span bounds such new flows per second
/// to one backend at about its size / 60; shifted ones give it up a second after closing.
pub fn snat_ports_for_host() -> (u16, u16) {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut it = text.split_whitespace().map(str::parse::<u16>);
            Some((it.next()?.ok()?, it.next()?.ok()?))
        })
        .unwrap_or((32_768, 60_999));
    largest_free_span(&[ephemeral, NODE_PORT_RANGE])
}

/// The largest inclusive span of 1024–65535 that overlaps none of `taken` (1024–1024 if every
/// port is taken, so the datapath still has one).
fn largest_free_span(taken: &[(u16, u16)]) -> (u16, u16) {
    let mut taken: Vec<(u32, u32)> = taken
        .iter()
        .map(|&(a, b)| (u32::from(a.min(b)), u32::from(a.max(b))))
        .collect();
    taken.sort();
    let (mut best, mut start) = ((1024, 1024), 1024u32);
    let consider = |from: u32, to: u32, best: &mut (u32, u32)| {
        if from <= to && (to - from) > (best.1 - best.0) {
            *best = (from, to);
        }
    };
    for (lo, hi) in taken {
        if lo > start {
            consider(start, lo - 1, &mut best);
        }
        start = start.max(hi + 1);
    }
    consider(start, 65_535, &mut best);
    (best.0 as u16, best.1 as u16)
}

/// What the reconciler needs from the datapath; implemented by [`Datapath`] over real or
/// in-memory maps, and by the rule modes' [`crate::rules::RuleDatapath`].
pub trait ServiceDatapath {
    /// Makes `frontend` balance over `backends` (duplicates ignored; empty means "refuse with
    /// ECONNREFUSED"), with every per-frontend option: `options.external_local` marks a
    /// NodePort frontend of an `externalTrafficPolicy: Local` Service (its `backends` are then
    /// this node's endpoints only, and the client address must be kept). Writes only what
    /// changed: adding or removing one backend costs O(1) writes. Backends and slots are
    /// written before the slot-0 record that points to them.
    fn upsert_service_with(
        &mut self,
        frontend: Frontend,
        backends: &[BackendAddr],
        options: ServiceOptions,
    ) -> Result<()>;

    /// [`Self::upsert_service_with`] with only an affinity.
    fn upsert_service(
        &mut self,
        frontend: Frontend,
        backends: &[BackendAddr],
        affinity: Affinity,
    ) -> Result<()> {
        let options = ServiceOptions {
            affinity,
            ..ServiceOptions::default()
        };
        self.upsert_service_with(frontend, backends, options)
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

    /// Every frontend held, with whether it is a pod's hostPort: what a prune walks. Read
    /// from [`Self::dump`] unless the datapath knows it without reading its maps back.
    fn frontends(&self) -> Result<Vec<(Frontend, bool)>> {
        let state = self.dump()?;
        Ok(state
            .services
            .into_iter()
            .map(|(frontend, entry)| (frontend, entry.host_port))
            .collect())
    }

    /// Map updates and deletes issued since open, for tests of the write budget.
    fn map_writes(&self) -> u64;

    /// Makes the changes issued since the last call take effect. Datapaths that apply in
    /// batches (iptables-restore) write here; the eBPF maps apply every write at once.
    fn commit(&mut self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod snat_range_tests {
    use super::largest_free_span;

    #[test]
    fn picks_the_largest_gap_around_ephemeral_and_nodeport_ranges() {
        let nodeport = super::NODE_PORT_RANGE;
        assert_eq!(
            largest_free_span(&[(32_768, 60_999), nodeport]),
            (1024, 29_999)
        );
        assert_eq!(
            largest_free_span(&[(10_000, 65_000), nodeport]),
            (1024, 9_999)
        );
        assert_eq!(
            largest_free_span(&[(1_024, 40_000), nodeport]),
            (40_001, 65_535)
        );
        assert_eq!(largest_free_span(&[(1_024, 65_535)]), (1024, 1024));
        assert_eq!(largest_free_span(&[]), (1024, 65_535));
    }
}
