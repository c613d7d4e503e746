//! Address-translation maps: socket-level reverse NAT, and the conntrack, settings and
//! interface maps of the per-packet (tc) NodePort programs.

use core::mem::size_of;

use crate::user_pod;

/// Pinned name of the socket reverse-NAT map (`BPF_MAP_TYPE_LRU_HASH`, [`RevNatKey`] →
/// [`RevNatValue`]). `connect4`/`sendmsg4` record, per socket and backend, the address the
/// application asked for; `recvmsg4`/`getpeername4` put it back. LRU, because sockets close
/// without telling us.
pub const REV_NAT: &str = "EKUBE_REV_NAT";
/// Entries in [`REV_NAT`]: roughly the number of concurrently translated sockets.
pub const REV_NAT_MAX_ENTRIES: u32 = 131_072;

/// Key of [`REV_NAT`]: one socket talking to one backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RevNatKey {
    /// Socket cookie (`bpf_get_socket_cookie`), host byte order.
    pub cookie: u64,
    /// Backend IPv4 address the socket was sent to, **network byte order**.
    pub ip: u32,
    /// Backend port, **network byte order**.
    pub port: u16,
    /// Explicit padding, always zero (part of the hashed key).
    pub _pad: u16,
}

/// Value of [`REV_NAT`]: the original destination the application used.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RevNatValue {
    /// Original destination IPv4 (ClusterIP, 127.0.0.1 or a node IP), **network byte order**.
    pub ip: u32,
    /// Original destination port, **network byte order**.
    pub port: u16,
    /// Explicit padding, always zero.
    pub _pad: u16,
}

/// Pinned name of the per-packet NodePort conntrack map (`BPF_MAP_TYPE_LRU_HASH`, [`CtKey`] →
/// [`CtValue`]). Each translated flow has two entries: the client's direction (keyed as it
/// arrives from the client) and the backend's reply (keyed as it arrives from the backend).
/// LRU, and swept by the proxy, so dead flows never fill it.
pub const CONNTRACK: &str = "EKUBE_CONNTRACK";
/// Entries in [`CONNTRACK`] (two per flow).
pub const CONNTRACK_MAX_ENTRIES: u32 = 262_144;

/// [`CtKey::dir`]: packet from the client towards the service.
pub const CT_DIR_FORWARD: u8 = 0;
/// [`CtKey::dir`]: reply from the backend towards the client.
pub const CT_DIR_REPLY: u8 = 1;

/// [`CtValue::flags`]: the flow's source was translated to a node address (remote backend);
/// packets of both directions are redirected by the program instead of routed by the stack.
pub const CT_FLAG_SNAT: u8 = 1 << 0;
/// [`CtValue::flags`]: a FIN or RST was seen in this direction; the short timeout applies.
pub const CT_FLAG_CLOSING: u8 = 1 << 1;
/// [`CtValue::flags`]: the flow's frontend has `externalTrafficPolicy: Local`.
pub const CT_FLAG_EXTERNAL_LOCAL: u8 = 1 << 2;
/// [`CtValue::flags`]: a TCP flow whose handshake the client has not completed (no ACK seen
/// after its SYN). Such an entry is never refreshed, so it lives at most
/// [`NodePortConfig::tcp_syn_ns`], and it counts against
/// [`NodePortConfig::tcp_unestablished_max`].
pub const CT_FLAG_UNESTABLISHED: u8 = 1 << 3;
/// [`CtValue::flags`] of an unestablished flow's reply entry: the backend answered with
/// another handshake's numbers, or retransmitted its SYN-ACK, so it holds a half-open
/// connection on this tuple (until its SYN-ACK retries run out, about a minute on Linux). A
/// SYN of any other flow on the tuple would meet that connection and stall, so the flow's SNAT
/// port is not handed to a new flow before the entry expires.
pub const CT_FLAG_PEER_HALF_OPEN: u8 = 1 << 4;

/// [`CtValue::flags`] of both entries of a SNATed TCP flow whose client sends timestamps:
/// they reach the backend shifted by [`CtValue::ts_shift`] (and its echoes are shifted back),
/// so that every such flow on one SNAT tuple shows the backend a timestamp clock that only
/// moves forward, and its port can go to a new flow [`SNAT_TS_REUSE_NS`] after it closed.
pub const CT_FLAG_TS_SHIFT: u8 = 1 << 5;
/// [`CtValue::flags`]: an RST was seen in this direction (with [`CT_FLAG_CLOSING`]): the flow
/// is over for both sides, where a FIN ends only its sender's half.
pub const CT_FLAG_RESET: u8 = 1 << 6;

/// How long after both sides of a flow with [`CT_FLAG_TS_SHIFT`] closed its SNAT port may go
/// to a new such flow: the new flow's timestamps start at the node's clock, which by then is
/// past every timestamp the old flow showed the backend (which compares them only to the
/// millisecond), so a backend holding the tuple in TIME_WAIT accepts the new SYN.
pub const SNAT_TS_REUSE_NS: u64 = 1_000_000_000;

/// Key of [`CONNTRACK`]: one direction of one flow, as seen on the wire.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CtKey {
    /// Source IPv4, **network byte order**.
    pub saddr: u32,
    /// Destination IPv4, **network byte order**.
    pub daddr: u32,
    /// Source port, **network byte order**.
    pub sport: u16,
    /// Destination port, **network byte order**.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// [`CT_DIR_FORWARD`] or [`CT_DIR_REPLY`].
    pub dir: u8,
    /// Explicit padding, always zero (part of the hashed key).
    pub _pad: [u8; 2],
}

/// Value of [`CONNTRACK`]: the tuple a matching packet is rewritten to. Fields equal to the
/// packet's own are left alone, so one shape serves DNAT, DNAT+SNAT and their reverses.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtValue {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) of the last packet, refreshed at most once a
    /// second; host byte order.
    pub last_seen_ns: u64,
    /// New source IPv4, **network byte order**.
    pub saddr: u32,
    /// New destination IPv4, **network byte order**.
    pub daddr: u32,
    /// New source port, **network byte order**.
    pub sport: u16,
    /// New destination port, **network byte order**.
    pub dport: u16,
    /// Backend id in [`crate::BACKENDS`] the flow was sent to, host byte order.
    pub backend_id: u32,
    /// `CT_FLAG_*` bits.
    pub flags: u8,
    /// Explicit padding, always zero.
    pub _pad: [u8; 3],
    /// The client's initial sequence number of a TCP flow, **network byte order**: the
    /// number the backend's SYN-ACK must acknowledge (see [`CT_FLAG_PEER_HALF_OPEN`]).
    pub isn: u32,
    /// With [`CT_FLAG_TS_SHIFT`]: what is added (wrapping) to the client's TSval on the way
    /// to the backend and taken off the backend's TSecr on the way back, host byte order.
    pub ts_shift: u32,
    /// Explicit padding, always zero.
    pub _pad2: u32,
}

/// Pinned name of the NodePort settings array (`BPF_MAP_TYPE_ARRAY`, index 0 → [`NodePortConfig`]).
pub const NODEPORT_CONFIG: &str = "EKUBE_NP_CONFIG";
/// Entries in [`NODEPORT_CONFIG`].
pub const NODEPORT_CONFIG_MAX_ENTRIES: u32 = 1;

/// Settings of the per-packet NodePort path, written by the proxy. An all-zero record (the
/// proxy has not written it yet) makes the programs use [`NodePortConfig::DEFAULT`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodePortConfig {
    /// Idle timeout of an open TCP flow, nanoseconds, host byte order.
    pub tcp_established_ns: u64,
    /// Timeout of a TCP flow after a FIN or RST, nanoseconds, host byte order.
    pub tcp_closing_ns: u64,
    /// Idle timeout of a UDP flow, nanoseconds, host byte order.
    pub udp_ns: u64,
    /// Lowest source port used for SNAT, host byte order.
    pub snat_port_min: u16,
    /// Highest source port used for SNAT, host byte order.
    pub snat_port_max: u16,
    /// Seconds a closed SNATed TCP flow keeps its SNAT port (at least `tcp_closing_ns`); 0 means
    /// [`SNAT_TIME_WAIT_NS`].
    pub snat_time_wait_s: u32,
    /// Lifetime of an unestablished TCP flow (SYN seen, client's ACK not yet), counted from its
    /// SYN, nanoseconds, host byte order.
    pub tcp_syn_ns: u64,
    /// Unestablished TCP flows the conntrack holds at most; a SYN beyond it is dropped, so a
    /// SYN flood fills this share and never evicts established flows. Host byte order.
    pub tcp_unestablished_max: u32,
    /// Explicit padding, always zero.
    pub _pad: u32,
}

/// How long a closed SNATed TCP flow without shifted timestamps ([`CT_FLAG_TS_SHIFT`]) keeps
/// its SNAT port by default: Linux's TIME_WAIT (`TCP_TIMEWAIT_LEN`, 60 s). A backend that
/// closed first still holds the tuple in TIME_WAIT, and Linux offsets TCP timestamps per
/// connection, so a new flow on that tuple could fail the backend's PAWS check and stall until
/// the client retransmits its SYN.
pub const SNAT_TIME_WAIT_NS: u64 = 60 * 1_000_000_000;

impl NodePortConfig {
    /// 6 h established (as Cilium), 10 s after FIN/RST, 60 s UDP, 60 s unestablished (as
    /// netfilter's `SYN_RECV`); SNAT ports below the NodePort range and the kernel's default
    /// ephemeral range, so they never meet a local socket's or a NodePort. Unestablished flows
    /// may take half of the conntrack's entries (two per flow).
    pub const DEFAULT: NodePortConfig = NodePortConfig {
        tcp_established_ns: 6 * 3600 * 1_000_000_000,
        tcp_closing_ns: 10 * 1_000_000_000,
        udp_ns: 60 * 1_000_000_000,
        snat_port_min: 1_024,
        snat_port_max: 29_999,
        snat_time_wait_s: 0,
        tcp_syn_ns: 60 * 1_000_000_000,
        tcp_unestablished_max: CONNTRACK_MAX_ENTRIES / 4,
        _pad: 0,
    };

    /// The timeout of an entry with `flags` of protocol `proto`.
    pub const fn timeout_ns(&self, proto: u8, flags: u8) -> u64 {
        if proto == crate::IPPROTO_UDP {
            self.udp_ns
        } else if flags & CT_FLAG_CLOSING != 0 {
            let time_wait = if self.snat_time_wait_s == 0 {
                SNAT_TIME_WAIT_NS
            } else {
                self.snat_time_wait_s as u64 * 1_000_000_000
            };
            if flags & CT_FLAG_SNAT != 0 && self.tcp_closing_ns < time_wait {
                time_wait
            } else {
                self.tcp_closing_ns
            }
        } else if flags & CT_FLAG_UNESTABLISHED != 0 {
            self.tcp_syn_ns
        } else {
            self.tcp_established_ns
        }
    }
}

impl Default for NodePortConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Pinned name of the NodePort interface map (`BPF_MAP_TYPE_HASH`, `u32` ifindex →
/// `u32` flags): the interfaces the NodePort programs are attached to. A backend routed out
/// through one of them is on another node, so its flow is SNATed (the reply then comes back to
/// one of them, where the ingress program reverses it).
pub const NODEPORT_IFACES: &str = "EKUBE_NP_IFACES";
/// Entries in [`NODEPORT_IFACES`].
pub const NODEPORT_IFACES_MAX_ENTRIES: u32 = 64;

/// [`NODEPORT_IFACES`] value bit: the interface holds a node address (ingress and egress hooks).
pub const IFACE_FLAG_EXTERNAL: u32 = 1 << 0;
/// [`NODEPORT_IFACES`] value bit: the overlay device (ingress hook for SNATed replies).
pub const IFACE_FLAG_OVERLAY: u32 = 1 << 1;

/// Pinned name of the SNAT address map (`BPF_MAP_TYPE_HASH`, `NodeAddrKey` → `NodeAddrValue`):
/// the addresses NodePort flows were SNATed to that are not node addresses (the overlay
/// device's). Written by the ingress program when it first SNATs to one; together with the
/// node addresses it is the first filter of ingress, so traffic to pods and other hosts never
/// touches the conntrack map.
pub const SNAT_ADDRS: &str = "EKUBE_SNAT_IPS";
/// Entries in [`SNAT_ADDRS`].
pub const SNAT_ADDRS_MAX_ENTRIES: u32 = 64;

/// Pinned name of the unestablished-flow count (`BPF_MAP_TYPE_ARRAY`, `u32` index → `u64`,
/// host byte order): the programs add one per new TCP flow at [`CT_UNEST_OPENED`] and take one
/// off when the client completes the handshake or a SYN takes the SNAT port of a stale one; the
/// proxy's sweeper, which sees flows expire and the LRU evict them, writes at
/// [`CT_UNEST_GONE`] how many of the opened ones are gone. Their difference is the number of
/// unestablished flows: between sweeps it misses only flows that expired or were evicted (so
/// errs high), and it is off by the handshakes opened or completed while a sweep runs, which
/// the next sweep corrects.
pub const CT_UNESTABLISHED: &str = "EKUBE_CT_UNEST";
/// Entries in [`CT_UNESTABLISHED`].
pub const CT_UNESTABLISHED_MAX_ENTRIES: u32 = 2;
/// [`CT_UNESTABLISHED`] index: flows opened minus flows established or taken over (wrapping).
pub const CT_UNEST_OPENED: u32 = 0;
/// [`CT_UNESTABLISHED`] index: opened flows the sweeper found gone (wrapping).
pub const CT_UNEST_GONE: u32 = 1;

const _: () = assert!(size_of::<RevNatKey>() == 16);
const _: () = assert!(size_of::<RevNatValue>() == 8);
const _: () = assert!(size_of::<CtKey>() == 16);
const _: () = assert!(size_of::<CtValue>() == 40);
const _: () = assert!(size_of::<NodePortConfig>() == 48);

user_pod!(RevNatKey, RevNatValue, CtKey, CtValue, NodePortConfig);
