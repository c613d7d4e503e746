//! Load-balancing maps: services, backends, session affinity and the node's own addresses.

use core::mem::size_of;

use crate::user_pod;

/// Pinned name of the service map (`BPF_MAP_TYPE_HASH`, [`ServiceKey`] → [`ServiceValue`]).
pub const SERVICES: &str = "EKUBE_SERVICES";
/// Entries in [`SERVICES`]: one per service frontend plus one per backend slot.
pub const SERVICES_MAX_ENTRIES: u32 = 131_072;

/// Pinned name of the backend map (`BPF_MAP_TYPE_HASH`, `u32` backend id → [`Backend`]).
pub const BACKENDS: &str = "EKUBE_BACKENDS";
/// Entries in [`BACKENDS`]; backend ids are `1..=BACKENDS_MAX_ENTRIES` (0 means "none").
pub const BACKENDS_MAX_ENTRIES: u32 = 65_536;

/// Pinned name of the affinity map (`BPF_MAP_TYPE_LRU_HASH`, [`AffinityKey`] → [`AffinityValue`]).
pub const AFFINITY: &str = "EKUBE_AFFINITY";
/// Entries in [`AFFINITY`]; the least recently used client is forgotten first.
pub const AFFINITY_MAX_ENTRIES: u32 = 65_536;

/// Pinned name of the node-address map (`BPF_MAP_TYPE_HASH`, [`NodeAddrKey`] → [`NodeAddrValue`]).
pub const NODE_ADDRS: &str = "EKUBE_NODE_IPS";
/// Entries in [`NODE_ADDRS`]: the node's own IPv4 addresses that NodePorts answer on.
pub const NODE_ADDRS_MAX_ENTRIES: u32 = 64;

/// [`ServiceKey::vip`] of NodePort frontends: `0.0.0.0`, matched when the destination is
/// `127.0.0.1` or one of [`NODE_ADDRS`].
pub const NODEPORT_VIP: u32 = 0;
/// [`ServiceKey::vip`] of a pod's `hostPort` without `hostIP`: `255.255.255.255` (no ClusterIP
/// can be it), matched like [`NODEPORT_VIP`] but only when no NodePort holds the port. A
/// `hostPort` with a `hostIP` is keyed by that address and flagged [`SVC_FLAG_HOSTPORT`].
pub const HOSTPORT_VIP: u32 = u32::MAX;

/// [`ServiceValue::flags`]: `sessionAffinity: ClientIP`; [`ServiceValue::affinity_timeout`] is set.
pub const SVC_FLAG_AFFINITY: u8 = 1 << 0;
/// [`ServiceValue::flags`]: the frontend is a NodePort (its `vip` is [`NODEPORT_VIP`]).
pub const SVC_FLAG_NODEPORT: u8 = 1 << 1;
/// [`ServiceValue::flags`]: `externalTrafficPolicy: Local`: the NodePort's slots hold only
/// this node's endpoints and the tc path never SNATs, so the client address is preserved.
pub const SVC_FLAG_EXTERNAL_LOCAL: u8 = 1 << 2;
/// [`ServiceValue::flags`]: a pod's `hostPort` (one backend, the pod). It answers only on
/// `127.0.0.1` and [`NODE_ADDRS`], after any NodePort of the same port; the tc path never
/// SNATs it (the pod is on this node) and so keeps the client address, as the CNI `portmap`
/// plugin does.
pub const SVC_FLAG_HOSTPORT: u8 = 1 << 3;

/// Key of [`SERVICES`]: one service frontend and one of its slots.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Frontend IPv4 address (ClusterIP or a hostPort's `hostIP`), **network byte order**;
    /// [`NODEPORT_VIP`] for NodePorts, [`HOSTPORT_VIP`] for hostPorts on every node address.
    pub vip: u32,
    /// Frontend port, **network byte order**.
    pub port: u16,
    /// Slot, host byte order: 0 is the service record, `1..=count` the backend slots.
    pub slot: u16,
    /// IP protocol ([`crate::IPPROTO_TCP`] or [`crate::IPPROTO_UDP`]).
    pub proto: u8,
    /// Explicit padding, always zero (part of the hashed key).
    pub _pad: [u8; 3],
}

/// Value of [`SERVICES`]. Slot 0 fills `count`, `flags`, `service_id` and `affinity_timeout`;
/// slots `1..=count` fill `backend_id` and `service_id`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceValue {
    /// Backend id in [`BACKENDS`] (slots ≥ 1), host byte order; 0 in slot 0.
    pub backend_id: u32,
    /// Number of backend slots (slot 0), host byte order; 0 means "refuse with ECONNREFUSED".
    pub count: u16,
    /// `SVC_FLAG_*` bits (slot 0).
    pub flags: u8,
    /// Explicit padding, always zero.
    pub _pad: u8,
    /// Proxy-assigned service id (keys [`AFFINITY`]), host byte order; same in every slot.
    pub service_id: u32,
    /// Session-affinity timeout in seconds (slot 0, with [`SVC_FLAG_AFFINITY`]), host byte order.
    pub affinity_timeout: u32,
}

/// Value of [`BACKENDS`] (the key is a `u32` backend id, host byte order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Backend {
    /// Backend IPv4 address (pod IP), **network byte order**.
    pub ip: u32,
    /// Backend port (targetPort), **network byte order**.
    pub port: u16,
    /// IP protocol ([`crate::IPPROTO_TCP`] or [`crate::IPPROTO_UDP`]).
    pub proto: u8,
    /// Reserved flags (e.g. "local to this node" for the tc path), zero for now.
    pub flags: u8,
}

/// [`AffinityKey::kind`]: `client` is the client's network-namespace cookie (socket-level LB).
pub const AFFINITY_CLIENT_NETNS: u8 = 0;
/// [`AffinityKey::kind`]: `client` holds the client IPv4 address (network byte order) in its low
/// 32 bits (per-packet NodePort path).
pub const AFFINITY_CLIENT_IP: u8 = 1;

/// Key of [`AFFINITY`]: one client of one service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AffinityKey {
    /// Client identity, see `kind`: a netns cookie (host byte order) or an IPv4 address.
    pub client: u64,
    /// [`ServiceValue::service_id`] of the service, host byte order.
    pub service_id: u32,
    /// [`AFFINITY_CLIENT_NETNS`] or [`AFFINITY_CLIENT_IP`].
    pub kind: u8,
    /// Explicit padding, always zero (part of the hashed key).
    pub _pad: [u8; 3],
}

/// Value of [`AFFINITY`]: the backend a client sticks to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AffinityValue {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) of the last use, host byte order.
    pub last_used_ns: u64,
    /// Backend id in [`BACKENDS`], host byte order.
    pub backend_id: u32,
    /// The service slot `backend_id` was chosen from, host byte order. The entry only counts
    /// while that slot still holds `backend_id`: a backend removed from the service (but still
    /// alive for another one) must not keep attracting its clients.
    pub slot: u16,
    /// Explicit padding, always zero.
    pub _pad: u16,
}

/// Key of [`NODE_ADDRS`]: an address of this node.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NodeAddrKey {
    /// IPv4 address, **network byte order**.
    pub ip: u32,
}

/// Value of [`NODE_ADDRS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NodeAddrValue {
    /// Reserved flags (e.g. "external interface address"), zero for now; presence is what counts.
    pub flags: u32,
}

const _: () = assert!(size_of::<ServiceKey>() == 12);
const _: () = assert!(size_of::<ServiceValue>() == 16);
const _: () = assert!(size_of::<Backend>() == 8);
const _: () = assert!(size_of::<AffinityKey>() == 16);
const _: () = assert!(size_of::<AffinityValue>() == 16);
const _: () = assert!(size_of::<NodeAddrKey>() == 4);
const _: () = assert!(size_of::<NodeAddrValue>() == 4);

user_pod!(
    ServiceKey,
    ServiceValue,
    Backend,
    AffinityKey,
    AffinityValue,
    NodeAddrKey,
    NodeAddrValue
);
