//! Tests of the syncer over the in-memory datapath: write budgets, pruning, restart, and
//! Services the maps cannot hold.

use std::{collections::BTreeMap, net::Ipv4Addr};

use ekube_ebpf_common::{Backend, NodeAddrKey, ServiceKey, ServiceValue};

use super::*;
use crate::service::hostport::{PodHostPorts, PodName};
use crate::{
    Datapath,
    datapath::{
        BackendAddr, Protocol, Result as DpResult,
        maps::{MapStore, MemMaps},
    },
    service::desired::FrontendSpec,
};

fn name(n: &str) -> ServiceName {
    ServiceName::new("default", n)
}

fn vip(last: u8, port: u16) -> Frontend {
    Frontend::cluster_ip(Ipv4Addr::new(10, 96, 0, last), port, Protocol::Tcp)
}

fn backends(ips: &[u8]) -> Vec<BackendAddr> {
    ips.iter()
        .map(|i| BackendAddr {
            ip: Ipv4Addr::new(10, 244, 0, *i),
            port: 8080,
        })
        .collect()
}

fn one(frontend: Frontend, ips: &[u8]) -> DesiredService {
    BTreeMap::from([(
        frontend,
        FrontendSpec {
            backends: backends(ips),
            ..FrontendSpec::default()
        },
    )])
}

fn mem_syncer() -> Syncer<Datapath<MemMaps>> {
    Syncer::new(Datapath::from_store(MemMaps::default()).unwrap())
}

fn writes<D: ProxyDatapath>(s: &Syncer<D>) -> u64 {
    s.datapath().map_writes()
}

#[test]
fn one_endpoint_change_costs_o1_writes_among_many_services() {
    let mut s = mem_syncer();
    for i in 0..200u8 {
        let key = name(&format!("svc-{i}"));
        let out = s.sync_service(&key, Ok(one(vip(i, 80), &[1, 2, 3])));
        assert_eq!(out, Outcome::default());
    }
    let before = writes(&s);
    // Replace one endpoint of one service.
    s.sync_service(&name("svc-7"), Ok(one(vip(7, 80), &[1, 2, 4])));
    let delta = writes(&s) - before;
    // New backend, its slot; the old backend stays (other services use it).
    assert!(delta <= 3, "one endpoint change cost {delta} writes");
    // Re-syncing the same state writes nothing.
    let before = writes(&s);
    s.sync_service(&name("svc-7"), Ok(one(vip(7, 80), &[1, 2, 4])));
    assert_eq!(writes(&s), before);
    let state = s.datapath().dump().unwrap();
    assert_eq!(state.services.len(), 200);
    let mut got = state.services[&vip(7, 80)].backends.clone();
    got.sort();
    assert_eq!(got, backends(&[1, 2, 4]));
}

#[test]
fn full_sync_with_nothing_changed_writes_nothing_and_prunes_orphans() {
    let mut s = mem_syncer();
    let all: Vec<_> = (0..50u8)
        .map(|i| (name(&format!("svc-{i}")), Ok(one(vip(i, 80), &[i, i + 1]))))
        .collect();
    let (problems, pruned) = s.full_sync_of(all.clone());
    assert!(problems.is_empty());
    assert_eq!(pruned, 0);
    let before = writes(&s);
    let (_, pruned) = s.full_sync_of(all.clone());
    assert_eq!((writes(&s), pruned), (before, 0));

    // A service deleted "while the proxy was down" is gone from the list: removed.
    let (_, pruned) = s.full_sync_of(all[1..].to_vec());
    assert_eq!(pruned, 0);
    assert!(
        !s.datapath()
            .dump()
            .unwrap()
            .services
            .contains_key(&vip(0, 80))
    );
    assert_eq!(s.recount().services, 49);
}

#[test]
fn restart_from_existing_maps_rewrites_nothing_and_prunes_what_nobody_owns() {
    let mut s = mem_syncer();
    let all: Vec<_> = (0..20u8)
        .map(|i| (name(&format!("svc-{i}")), Ok(one(vip(i, 80), &[1, 2]))))
        .collect();
    s.full_sync_of(all.clone());
    let before = s.datapath().dump().unwrap();
    // "Restart": a new datapath over the same maps, a new syncer with no memory.
    let maps = s.datapath().store().clone();
    let mut restarted = Syncer::new(Datapath::from_store(maps).unwrap());
    // svc-3 was deleted and svc-4 changed while the proxy was down.
    let mut now: Vec<_> = all
        .into_iter()
        .filter(|(k, _)| *k != name("svc-3"))
        .collect();
    now.retain(|(k, _)| *k != name("svc-4"));
    now.push((name("svc-4"), Ok(one(vip(4, 80), &[1, 9]))));
    let (problems, pruned) = restarted.full_sync_of(now);
    assert!(problems.is_empty());
    assert_eq!(pruned, 1, "svc-3's frontend is pruned");
    let after = restarted.datapath().dump().unwrap();
    assert_eq!(after.services.len(), before.services.len() - 1);
    let mut svc4 = after.services[&vip(4, 80)].backends.clone();
    svc4.sort();
    assert_eq!(svc4, backends(&[1, 9]));
    // Only the changes were written: svc-3 (slot 0 + 2 slots), svc-4 (backend 9 + its slot).
    assert!(
        restarted.datapath().map_writes() <= 6,
        "restart wrote {} entries",
        restarted.datapath().map_writes()
    );
}

#[test]
fn unsupported_service_is_removed_and_reported_once() {
    let mut s = mem_syncer();
    s.sync_service(&name("web"), Ok(one(vip(1, 80), &[1])));
    let bad = || Err(Unsupported::ClusterIp("fd00::1".into()));
    let first = s.sync_service(&name("web"), bad());
    assert!(first.new_problem, "{first:?}");
    assert!(first.problem.unwrap().contains("fd00::1"));
    assert!(s.datapath().dump().unwrap().services.is_empty());
    let second = s.sync_service(&name("web"), bad());
    assert!(!second.new_problem, "an unchanged problem is reported once");
    let fixed = s.sync_service(&name("web"), Ok(one(vip(1, 80), &[1])));
    assert_eq!(fixed, Outcome::default());
}

#[test]
fn two_services_never_share_a_frontend() {
    let mut s = mem_syncer();
    s.sync_service(&name("a"), Ok(one(vip(1, 80), &[1])));
    let out = s.sync_service(&name("b"), Ok(one(vip(1, 80), &[2])));
    assert!(out.problem.unwrap().contains("default/a"));
    let state = s.datapath().dump().unwrap();
    assert_eq!(state.services[&vip(1, 80)].backends, backends(&[1]));
}

/// A store whose backend map holds at most `capacity` entries, failing like a full BPF hash.
#[derive(Default, Clone)]
struct SmallMaps {
    inner: MemMaps,
    capacity: usize,
}

impl MapStore for SmallMaps {
    fn put_service(&mut self, key: ServiceKey, value: ServiceValue) -> DpResult<()> {
        self.inner.put_service(key, value)
    }
    fn delete_service(&mut self, key: ServiceKey) -> DpResult<()> {
        self.inner.delete_service(key)
    }
    fn put_backend(&mut self, id: u32, value: Backend) -> DpResult<()> {
        if self.inner.backends.len() >= self.capacity && !self.inner.backends.contains_key(&id) {
            return Err(DatapathError::Map {
                map: "EKUBE_BACKENDS",
                source: Box::new(aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                    call: "bpf_map_update_elem",
                    io_error: std::io::Error::from_raw_os_error(libc::E2BIG),
                })),
            });
        }
        self.inner.put_backend(id, value)
    }
    fn delete_backend(&mut self, id: u32) -> DpResult<()> {
        self.inner.delete_backend(id)
    }
    fn put_node_addr(&mut self, key: NodeAddrKey) -> DpResult<()> {
        self.inner.put_node_addr(key)
    }
    fn delete_node_addr(&mut self, key: NodeAddrKey) -> DpResult<()> {
        self.inner.delete_node_addr(key)
    }
    fn services(&self) -> DpResult<Vec<(ServiceKey, ServiceValue)>> {
        self.inner.services()
    }
    fn backends(&self) -> DpResult<Vec<(u32, Backend)>> {
        self.inner.backends()
    }
    fn node_addrs(&self) -> DpResult<Vec<NodeAddrKey>> {
        self.inner.node_addrs()
    }
    fn service(&self, key: ServiceKey) -> DpResult<Option<ServiceValue>> {
        self.inner.service(key)
    }
    fn backend(&self, id: u32) -> DpResult<Option<Backend>> {
        self.inner.backend(id)
    }
}

impl ProxyDatapath for Datapath<SmallMaps> {}

#[test]
fn full_map_skips_the_service_without_breaking_others() {
    let store = SmallMaps {
        capacity: 3,
        ..Default::default()
    };
    let mut s = Syncer::new(Datapath::from_store(store).unwrap());
    assert_eq!(
        s.sync_service(&name("a"), Ok(one(vip(1, 80), &[1, 2]))),
        Outcome::default()
    );
    let out = s.sync_service(&name("b"), Ok(one(vip(2, 80), &[3, 4, 5])));
    assert!(out.new_problem);
    assert_eq!(s.totals().map_full_errors, 1);
    let state = s.datapath().dump().unwrap();
    assert_eq!(
        state.services.len(),
        1,
        "b is not half-programmed: {state:?}"
    );
    assert_eq!(state.services[&vip(1, 80)].backends, backends(&[1, 2]));
    // Room again (a loses a backend): the next full sync programs b... once it fits.
    let (problems, _) = s.full_sync_of(vec![
        (name("a"), Ok(one(vip(1, 80), &[1]))),
        (name("b"), Ok(one(vip(2, 80), &[3, 4]))),
    ]);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(s.datapath().dump().unwrap().services.len(), 2);
}

fn pod_ports(frontend: Frontend, pod_ip: u8) -> PodHostPorts {
    PodHostPorts {
        frontends: BTreeMap::from([(
            frontend,
            FrontendSpec {
                backends: backends(&[pod_ip]),
                host_port: true,
                ..FrontendSpec::default()
            },
        )]),
        skipped: Vec::new(),
    }
}

#[test]
fn host_ports_are_flagged_entries_kept_by_the_prune_until_the_pods_are_listed() {
    let mut s = mem_syncer();
    let any = Frontend::host_port(None, 8080, Protocol::Tcp);
    let bound = Frontend::host_port(Some(Ipv4Addr::new(192, 168, 64, 10)), 8081, Protocol::Tcp);
    let web = PodName::new("default", "web");
    s.stage_pod(&web, pod_ports(any, 5));
    s.stage_pod(&PodName::new("default", "db"), pod_ports(bound, 6));
    s.sync_service(
        &name("a"),
        Ok(one(Frontend::node_port(8080, Protocol::Tcp), &[1])),
    );
    // The kernel's view: the any-address hostPort is keyed 255.255.255.255, the bound one by
    // its address, both flagged; the NodePort of the same number is a separate entry.
    let raw = &s.datapath().store().services;
    let record = |vip: [u8; 4], port: u16| {
        raw[&ServiceKey {
            vip: u32::from_ne_bytes(vip),
            port: port.to_be(),
            slot: 0,
            proto: ekube_ebpf_common::IPPROTO_TCP,
            _pad: [0; 3],
        }]
    };
    let hostport = ekube_ebpf_common::SVC_FLAG_HOSTPORT;
    assert_eq!(record([255; 4], 8080).flags & hostport, hostport);
    assert_eq!(record([192, 168, 64, 10], 8081).flags & hostport, hostport);
    assert_eq!(record([0; 4], 8080).flags & hostport, 0);
    assert_eq!(s.recount().services, 1, "hostPorts are not Services");

    // Restarted: the Services' full sync comes before the pods are listed and keeps them.
    let maps = s.datapath().store().clone();
    let mut restarted = Syncer::new(Datapath::from_store(maps).unwrap());
    let (_, pruned) = restarted.full_sync_of(vec![(
        name("a"),
        Ok(one(Frontend::node_port(8080, Protocol::Tcp), &[1])),
    )]);
    assert_eq!(pruned, 0);
    let state = restarted.datapath().dump().unwrap();
    assert!(state.services[&any].host_port && state.services[&bound].host_port);
    // The pods are listed (db is gone): web's is owned again, db's is pruned.
    assert!(
        restarted
            .stage_all_pods(vec![(web, pod_ports(any, 5))])
            .is_empty()
    );
    let (_, pruned) = restarted.full_sync_of(vec![(
        name("a"),
        Ok(one(Frontend::node_port(8080, Protocol::Tcp), &[1])),
    )]);
    assert_eq!(pruned, 1);
    let state = restarted.datapath().dump().unwrap();
    assert_eq!(state.services[&any].backends, backends(&[5]));
    assert!(!state.services.contains_key(&bound));
}
