//! The maps, declared from the names and sizes in `ekube-ebpf-common`.
//!
//! Every map is pinned by name (the proxy loads the object with a per-node pin directory), so a
//! proxy restart re-uses them and established flows keep their translations.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use ekube_ebpf_common as common;
use ekube_ebpf_common::{
    AffinityKey, AffinityValue, Backend, CtKey, CtValue, NodeAddrKey, NodeAddrValue,
    NodePortConfig, RevNatKey, RevNatValue, ServiceKey, ServiceValue, same_name,
};

#[map]
pub static EKUBE_SERVICES: HashMap<ServiceKey, ServiceValue> =
    HashMap::pinned(common::SERVICES_MAX_ENTRIES, 0);

#[map]
pub static EKUBE_BACKENDS: HashMap<u32, Backend> = HashMap::pinned(common::BACKENDS_MAX_ENTRIES, 0);

#[map]
pub static EKUBE_REV_NAT: LruHashMap<RevNatKey, RevNatValue> =
    LruHashMap::pinned(common::REV_NAT_MAX_ENTRIES, 0);

#[map]
pub static EKUBE_AFFINITY: LruHashMap<AffinityKey, AffinityValue> =
    LruHashMap::pinned(common::AFFINITY_MAX_ENTRIES, 0);

#[map]
pub static EKUBE_NODE_IPS: HashMap<NodeAddrKey, NodeAddrValue> =
    HashMap::pinned(common::NODE_ADDRS_MAX_ENTRIES, 0);

#[map]
pub static EKUBE_SNAT_IPS: HashMap<NodeAddrKey, NodeAddrValue> =
    HashMap::pinned(common::SNAT_ADDRS_MAX_ENTRIES, 0);

#[map]
pub static EKUBE_COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(common::COUNTERS_MAX_ENTRIES, 0);

#[map]
pub static EKUBE_CONNTRACK: LruHashMap<CtKey, CtValue> =
    LruHashMap::pinned(common::CONNTRACK_MAX_ENTRIES, 0);

#[map]
pub static EKUBE_CT_UNEST: Array<u64> = Array::pinned(common::CT_UNESTABLISHED_MAX_ENTRIES, 0);

#[map]
pub static EKUBE_NP_CONFIG: Array<NodePortConfig> =
    Array::pinned(common::NODEPORT_CONFIG_MAX_ENTRIES, 0);

#[map]
pub static EKUBE_NP_IFACES: HashMap<u32, u32> =
    HashMap::pinned(common::NODEPORT_IFACES_MAX_ENTRIES, 0);

// The static names above are the map names; keep them equal to the shared constants.
const _: () = assert!(same_name("EKUBE_SERVICES", common::SERVICES));
const _: () = assert!(same_name("EKUBE_BACKENDS", common::BACKENDS));
const _: () = assert!(same_name("EKUBE_REV_NAT", common::REV_NAT));
const _: () = assert!(same_name("EKUBE_AFFINITY", common::AFFINITY));
const _: () = assert!(same_name("EKUBE_NODE_IPS", common::NODE_ADDRS));
const _: () = assert!(same_name("EKUBE_SNAT_IPS", common::SNAT_ADDRS));
const _: () = assert!(same_name("EKUBE_COUNTERS", common::COUNTERS));
const _: () = assert!(same_name("EKUBE_CONNTRACK", common::CONNTRACK));
const _: () = assert!(same_name("EKUBE_CT_UNEST", common::CT_UNESTABLISHED));
const _: () = assert!(same_name("EKUBE_NP_CONFIG", common::NODEPORT_CONFIG));
const _: () = assert!(same_name("EKUBE_NP_IFACES", common::NODEPORT_IFACES));
