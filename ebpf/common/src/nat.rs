//! Address-translation maps: socket-level reverse NAT now, per-packet conntrack for the tc
//! NodePort programs later.

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

/// Pinned name of the conntrack map the tc NodePort programs will use (`BPF_MAP_TYPE_LRU_HASH`,
/// [`CtKey`] → [`CtValue`]). Not created by the socket-level programs.
pub const CONNTRACK: &str = "EKUBE_CONNTRACK";
/// Entries in [`CONNTRACK`].
pub const CONNTRACK_MAX_ENTRIES: u32 = 262_144;

/// [`CtKey::dir`]: packet from the client towards the service.
pub const CT_DIR_FORWARD: u8 = 0;
/// [`CtKey::dir`]: reply from the backend towards the client.
pub const CT_DIR_REPLY: u8 = 1;

/// Key of [`CONNTRACK`]: one direction of one flow, as seen on the wire.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
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

/// Value of [`CONNTRACK`]: how to translate the other direction.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtValue {
    /// `bpf_ktime_get_ns()` of the last packet, host byte order.
    pub last_seen_ns: u64,
    /// Address to rewrite to (backend on forward, frontend on reply), **network byte order**.
    pub nat_ip: u32,
    /// Port to rewrite to, **network byte order**.
    pub nat_port: u16,
    /// Reserved flags (SNATed, closing…), zero for now.
    pub flags: u8,
    /// Explicit padding, always zero.
    pub _pad: u8,
    /// Backend id in [`crate::BACKENDS`], host byte order.
    pub backend_id: u32,
    /// Explicit padding, always zero.
    pub _pad2: u32,
}

const _: () = assert!(size_of::<RevNatKey>() == 16);
const _: () = assert!(size_of::<RevNatValue>() == 8);
const _: () = assert!(size_of::<CtKey>() == 16);
const _: () = assert!(size_of::<CtValue>() == 24);

user_pod!(RevNatKey, RevNatValue, CtKey, CtValue);
