#![no_std]
//! Map definitions shared by the kernel programs (`ebpf/programs`) and the proxy.
//!
//! Every map the datapath uses is described here exactly once: its pinned name, its maximum number
//! of entries and the `#[repr(C)]` key and value types with explicit padding. The kernel programs
//! declare their maps from these constants; the proxy opens the pinned maps by the same names and,
//! with the `user` feature, reads and writes these types through `aya::Pod`.
//!
//! Byte order: addresses and ports are kept in **network byte order** (as the kernel hands them to
//! a `cgroup/connect4` program in `bpf_sock_addr.user_ip4` / `user_port`), so the fast path never
//! swaps bytes. Everything else (ids, counts, flags, timeouts) is in host byte order. The proxy's
//! `maps` module is the one place that converts between the two.
//!
//! Layout (DESIGN.md §7): a service is a run of [`SERVICES`] entries keyed by
//! `{vip, port, proto, slot}`; slot 0 holds the backend count, flags and affinity timeout, slots
//! `1..=count` hold backend ids resolved through [`BACKENDS`]. Socket-level translations record the
//! original destination in [`REV_NAT`] so `getpeername()` and UDP `recvmsg()` show it again.
//! The tc NodePort programs share the service maps and keep per-packet flows in [`CONNTRACK`].

mod lb;
mod nat;

pub use lb::*;
pub use nat::*;

/// IP protocol number of TCP, as stored in [`ServiceKey::proto`] and [`Backend::proto`].
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP, as stored in [`ServiceKey::proto`] and [`Backend::proto`].
pub const IPPROTO_UDP: u8 = 17;

/// Pinned name of the per-CPU counter array (`BPF_MAP_TYPE_PERCPU_ARRAY`, `u32` index → `u64`).
pub const COUNTERS: &str = "EKUBE_COUNTERS";
/// Number of counter slots; indices are the [`Counter`] discriminants.
pub const COUNTERS_MAX_ENTRIES: u32 = 32;

/// What the per-CPU [`COUNTERS`] array counts; the discriminant is the array index.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// `connect()` to a service address rewritten to a backend.
    Connect4Translated = 0,
    /// `sendmsg()` to a service address rewritten to a backend.
    Sendmsg4Translated = 1,
    /// `recvmsg()` source address restored to the service address.
    Recvmsg4Restored = 2,
    /// `getpeername()` result restored to the service address.
    Getpeername4Restored = 3,
    /// A service with zero backends refused a `connect()`/`sendmsg()` with `ECONNREFUSED`.
    NoBackend = 4,
    /// The backend came from a live session-affinity entry.
    AffinityHit = 5,
    /// A slot or backend record the service entry pointed to was missing (a race with the proxy
    /// or a bug); the socket call was left untranslated.
    LookupMiss = 6,
    /// Writing a reverse-NAT, affinity or conntrack entry failed.
    MapUpdateFailed = 7,
    /// tc: a new flow from outside to a NodePort was sent to a backend on this node.
    NodePortLocal = 8,
    /// tc: a new flow from outside to a NodePort was SNATed to a backend on another node.
    NodePortRemote = 9,
    /// tc: a packet to a NodePort without a (local, for `externalTrafficPolicy: Local`)
    /// backend was dropped.
    NodePortDrop = 10,
    /// tc: a packet of a tracked flow was translated (either direction).
    CtTranslated = 11,
    /// tc: no free SNAT port for a new flow; the packet was dropped.
    SnatPortsExhausted = 12,
    /// tc: a translated packet could not be redirected (no route) and was dropped.
    RedirectFailed = 13,
    /// tc: a SYN found the unestablished flows' share of the conntrack full and was dropped.
    UnestablishedRefused = 14,
    /// tc: a new flow with shifted timestamps took the SNAT port of such a flow that had closed
    /// (a second or more before) instead of waiting out TIME_WAIT.
    SnatPortReused = 15,
    /// tc: a backend answered a new flow's SYN as another connection on the same tuple (one it
    /// holds half-open or in TIME_WAIT), so the client has to retry.
    PeerHeldTuple = 16,
    /// tc: a SYN the programs do not translate (to a pod address, or a hostNetwork backend's)
    /// met the entries of a finished NodePort flow on its reply tuple, left by a client that
    /// reused its port; they were deleted so that the new connection's replies are not
    /// rewritten as the old flow's.
    StaleReplyForgotten = 17,
}

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; 18] = [
        Counter::Connect4Translated,
        Counter::Sendmsg4Translated,
        Counter::Recvmsg4Restored,
        Counter::Getpeername4Restored,
        Counter::NoBackend,
        Counter::AffinityHit,
        Counter::LookupMiss,
        Counter::MapUpdateFailed,
        Counter::NodePortLocal,
        Counter::NodePortRemote,
        Counter::NodePortDrop,
        Counter::CtTranslated,
        Counter::SnatPortsExhausted,
        Counter::RedirectFailed,
        Counter::UnestablishedRefused,
        Counter::SnatPortReused,
        Counter::PeerHeldTuple,
        Counter::StaleReplyForgotten,
    ];

    /// Stable snake_case name, used for metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Connect4Translated => "connect4_translated",
            Counter::Sendmsg4Translated => "sendmsg4_translated",
            Counter::Recvmsg4Restored => "recvmsg4_restored",
            Counter::Getpeername4Restored => "getpeername4_restored",
            Counter::NoBackend => "no_backend",
            Counter::AffinityHit => "affinity_hit",
            Counter::LookupMiss => "lookup_miss",
            Counter::MapUpdateFailed => "map_update_failed",
            Counter::NodePortLocal => "nodeport_local",
            Counter::NodePortRemote => "nodeport_remote",
            Counter::NodePortDrop => "nodeport_drop",
            Counter::CtTranslated => "ct_translated",
            Counter::SnatPortsExhausted => "snat_ports_exhausted",
            Counter::RedirectFailed => "redirect_failed",
            Counter::UnestablishedRefused => "unestablished_refused",
            Counter::SnatPortReused => "snat_port_reused",
            Counter::PeerHeldTuple => "peer_held_tuple",
            Counter::StaleReplyForgotten => "stale_reply_forgotten",
        }
    }
}

const _: () = assert!(Counter::ALL.len() as u32 <= COUNTERS_MAX_ENTRIES);

/// Implements `aya::Pod` for plain map types when building the user-space side.
macro_rules! user_pod {
    ($($t:ty),* $(,)?) => {
        $(
            #[cfg(feature = "user")]
            // SAFETY: `#[repr(C)]`, only integer fields, explicit padding, no implicit holes (the
            // size assertions next to each type pin the layout).
            unsafe impl aya::Pod for $t {}
        )*
    };
}
pub(crate) use user_pod;

/// `const` string equality, so the kernel crate can assert at compile time that each `#[map]`
/// static carries the name declared here (map names are at most 15 bytes).
pub const fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() || a.len() > 15 {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}
