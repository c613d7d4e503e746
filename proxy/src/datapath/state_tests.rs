//! Write ordering and write budget of [`Datapath`] over the in-memory store.

use std::net::Ipv4Addr;

use super::*;
use crate::datapath::{
    Affinity,
    maps::{MemMaps, MemOp},
};

fn vip(last: u8) -> Frontend {
    Frontend::cluster_ip(Ipv4Addr::new(10, 96, 0, last), 80, Protocol::Tcp)
}

fn be(last: u8) -> BackendAddr {
    BackendAddr {
        ip: Ipv4Addr::new(10, 244, 0, last),
        port: 8080,
    }
}

fn fresh() -> Datapath<MemMaps> {
    Datapath::from_store(MemMaps::default()).unwrap()
}

/// Writes issued by `change`, and the store's log of them.
fn writes_of(
    dp: &mut Datapath<MemMaps>,
    change: impl FnOnce(&mut Datapath<MemMaps>),
) -> (u64, Vec<MemOp>) {
    let (before, log_len) = (dp.map_writes(), dp.store().log.len());
    change(dp);
    (dp.map_writes() - before, dp.store().log[log_len..].to_vec())
}

#[test]
fn new_service_writes_backends_then_slots_then_record() {
    let mut dp = fresh();
    let (writes, log) = writes_of(&mut dp, |dp| {
        dp.upsert_service(vip(1), &[be(1), be(2), be(3)], Affinity::None)
            .unwrap()
    });
    assert_eq!(writes, 7);
    assert!(matches!(
        log[..3],
        [
            MemOp::PutBackend(_),
            MemOp::PutBackend(_),
            MemOp::PutBackend(_)
        ]
    ));
    let slots: Vec<u16> = log[3..]
        .iter()
        .map(|op| match op {
            MemOp::PutService(k) => k.slot,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(slots, [1, 2, 3, 0], "slot 0 must be written last");
    let state = dp.dump().unwrap();
    assert_eq!(state.services[&vip(1)].backends, [be(1), be(2), be(3)]);
}

#[test]
fn one_endpoint_change_costs_constant_writes() {
    let mut dp = fresh();
    let many: Vec<BackendAddr> = (1..=50).map(be).collect();
    dp.upsert_service(vip(1), &many, Affinity::None).unwrap();

    let mut plus_one = many.clone();
    plus_one.push(be(51));
    let (writes, log) = writes_of(&mut dp, |dp| {
        dp.upsert_service(vip(1), &plus_one, Affinity::None)
            .unwrap()
    });
    assert_eq!(writes, 3, "backend, new slot, slot 0: {log:?}");
    assert!(matches!(log[0], MemOp::PutBackend(_)));
    assert!(matches!(log[2], MemOp::PutService(k) if k.slot == 0));

    let mut minus_one = plus_one.clone();
    minus_one.remove(10);
    let (writes, log) = writes_of(&mut dp, |dp| {
        dp.upsert_service(vip(1), &minus_one, Affinity::None)
            .unwrap()
    });
    assert_eq!(
        writes, 4,
        "move last slot into the hole, slot 0, drop tail slot, drop backend: {log:?}"
    );
    assert!(
        matches!(log[1], MemOp::PutService(k) if k.slot == 0),
        "count shrinks before the tail goes"
    );
    assert!(
        matches!(log[3], MemOp::DeleteBackend(_)),
        "backend goes last"
    );

    let mut state = dp.dump().unwrap().services[&vip(1)].backends.clone();
    state.sort();
    let mut expected = minus_one.clone();
    expected.sort();
    assert_eq!(state, expected);

    let (writes, _) = writes_of(&mut dp, |dp| {
        dp.upsert_service(vip(1), &minus_one, Affinity::None)
            .unwrap()
    });
    assert_eq!(writes, 0, "an unchanged service costs nothing");
}

#[test]
fn affinity_change_rewrites_only_slot_zero() {
    let mut dp = fresh();
    dp.upsert_service(vip(1), &[be(1), be(2)], Affinity::None)
        .unwrap();
    let affinity = Affinity::ClientIp {
        timeout_secs: 10_800,
    };
    let (writes, log) = writes_of(&mut dp, |dp| {
        dp.upsert_service(vip(1), &[be(1), be(2)], affinity)
            .unwrap()
    });
    assert_eq!(writes, 1);
    assert!(matches!(log[0], MemOp::PutService(k) if k.slot == 0));
    assert_eq!(dp.dump().unwrap().services[&vip(1)].affinity, affinity);
}

#[test]
fn delete_goes_record_first_and_keeps_shared_backends() {
    let mut dp = fresh();
    dp.upsert_service(vip(1), &[be(1), be(2)], Affinity::None)
        .unwrap();
    dp.upsert_service(vip(2), &[be(2)], Affinity::None).unwrap();
    assert_eq!(dp.store().backends.len(), 2, "be(2) is stored once");
    let (_, log) = writes_of(&mut dp, |dp| dp.delete_service(vip(1)).unwrap());
    assert!(matches!(log[0], MemOp::DeleteService(k) if k.slot == 0));
    assert_eq!(
        log.iter()
            .filter(|op| matches!(op, MemOp::DeleteBackend(_)))
            .count(),
        1
    );
    assert_eq!(dp.store().backends.len(), 1);
    assert_eq!(dp.dump().unwrap().services[&vip(2)].backends, [be(2)]);
    dp.delete_service(vip(1)).unwrap();
    dp.delete_service(vip(2)).unwrap();
    assert!(dp.store().services.is_empty() && dp.store().backends.is_empty());
}

#[test]
fn zero_backends_keeps_a_record_with_count_zero() {
    let mut dp = fresh();
    dp.upsert_service(vip(1), &[], Affinity::None).unwrap();
    let record = dp.store().services[&maps::service_key(&vip(1), 0)];
    assert_eq!(record.count, 0);
    assert_eq!(dp.dump().unwrap().services[&vip(1)].backends, []);
}

#[test]
fn reopen_rebuilds_state_without_duplicates() {
    let mut dp = fresh();
    dp.upsert_service(
        vip(1),
        &[be(1), be(2)],
        Affinity::ClientIp { timeout_secs: 30 },
    )
    .unwrap();
    dp.upsert_service(
        Frontend::node_port(30080, Protocol::Udp),
        &[be(2)],
        Affinity::None,
    )
    .unwrap();
    dp.set_node_addrs(&[Ipv4Addr::new(192, 168, 64, 10)])
        .unwrap();
    let before = dp.dump().unwrap();
    let max_id = dp
        .store()
        .services
        .values()
        .map(|v| v.service_id)
        .max()
        .unwrap();

    let mut again = Datapath::from_store(dp.store().clone()).unwrap();
    assert_eq!(again.dump().unwrap(), before);
    let (writes, _) = writes_of(&mut again, |dp| {
        dp.upsert_service(
            vip(1),
            &[be(1), be(2)],
            Affinity::ClientIp { timeout_secs: 30 },
        )
        .unwrap();
        dp.set_node_addrs(&[Ipv4Addr::new(192, 168, 64, 10)])
            .unwrap();
    });
    assert_eq!(writes, 0);
    again
        .upsert_service(vip(3), &[be(1)], Affinity::None)
        .unwrap();
    assert!(again.store().services[&maps::service_key(&vip(3), 0)].service_id > max_id);
    // be(1)/tcp, be(2)/tcp, be(2)/udp: be(1) was re-used, not duplicated.
    assert_eq!(again.store().backends.len(), 3);
}

#[test]
fn open_prunes_entries_nothing_refers_to() {
    let mut dp = fresh();
    dp.upsert_service(vip(1), &[be(1)], Affinity::None).unwrap();
    let mut store = dp.store().clone();
    // A crash between writes: a slot past the count, a slot without a record, a lone backend.
    store
        .services
        .insert(maps::service_key(&vip(1), 2), maps::slot_record(1, 1));
    store
        .services
        .insert(maps::service_key(&vip(9), 1), maps::slot_record(7, 1));
    store
        .backends
        .insert(99, maps::backend_value(be(99), Protocol::Tcp));
    let dp = Datapath::from_store(store).unwrap();
    assert_eq!(dp.store().services.len(), 2);
    assert_eq!(dp.store().backends.len(), 1);
}

#[test]
fn slot_layout_keeps_positions_and_stays_dense() {
    assert_eq!(layout_slots(&[1, 2, 3], &[1, 2, 3]), [1, 2, 3]);
    assert_eq!(layout_slots(&[1, 2, 3], &[1, 3]), [1, 3]);
    assert_eq!(layout_slots(&[1, 2, 3], &[2, 3]), [3, 2]);
    assert_eq!(layout_slots(&[1, 2, 3], &[1, 3, 4]), [1, 4, 3]);
    assert_eq!(layout_slots(&[1, 2, 3, 4], &[4]), [4]);
    assert_eq!(layout_slots(&[], &[5, 6]), [5, 6]);
    assert_eq!(layout_slots(&[1, 2], &[]), Vec::<u32>::new());
}

#[test]
fn point_lookup_agrees_with_the_full_walk() {
    let mut dp = fresh();
    dp.upsert_service(vip(1), &[be(1), be(2), be(3)], Affinity::None)
        .unwrap();
    let sticky = Affinity::ClientIp { timeout_secs: 60 };
    dp.upsert_service(vip(2), &[be(3)], sticky).unwrap();
    dp.upsert_service(vip(3), &[], Affinity::None).unwrap();
    dp.upsert_service(vip(1), &[be(1), be(3), be(4)], Affinity::None)
        .unwrap();
    let state = dp.dump().unwrap();
    for frontend in [vip(1), vip(2), vip(3)] {
        let entry = lookup_service(dp.store(), &frontend).unwrap();
        assert_eq!(entry.as_ref(), state.services.get(&frontend), "{frontend}");
    }
    assert_eq!(lookup_service(dp.store(), &vip(4)).unwrap(), None);
}

#[test]
fn udp_flows_to_backends_that_left_are_forgotten_at_the_commit() {
    let mut dp = fresh();
    let udp = Frontend::node_port(30053, Protocol::Udp);
    let tcp = Frontend::node_port(30080, Protocol::Tcp);
    let cluster = Frontend::cluster_ip(Ipv4Addr::new(10, 96, 0, 10), 53, Protocol::Udp);
    for frontend in [udp, tcp, cluster] {
        dp.upsert_service(frontend, &[be(1), be(2)], Affinity::None)
            .unwrap();
    }
    dp.commit().unwrap();
    assert!(dp.store().forgotten.is_empty(), "nothing left yet");
    let id = |dp: &Datapath<MemMaps>, b: u8| dp.backend_ids[&(be(b), Protocol::Udp)];
    let (one, two) = (id(&dp, 1), id(&dp, 2));

    // A TCP frontend losing a backend leaves its flows alone, as does a ClusterIP one (the
    // socket hooks keep no flows); a UDP NodePort has them forgotten, once, at the commit.
    dp.upsert_service(tcp, &[be(2)], Affinity::None).unwrap();
    dp.upsert_service(cluster, &[be(2)], Affinity::None)
        .unwrap();
    dp.upsert_service(udp, &[be(2)], Affinity::None).unwrap();
    assert!(dp.store().forgotten.is_empty(), "not before the commit");
    dp.commit().unwrap();
    dp.commit().unwrap();
    assert_eq!(dp.store().forgotten, [vec![(udp, one)]]);

    // A UDP frontend deleted: every backend it had left it.
    dp.upsert_service(udp, &[be(2), be(3)], Affinity::None)
        .unwrap();
    let three = id(&dp, 3);
    dp.delete_service(udp).unwrap();
    dp.commit().unwrap();
    let mut last = dp.store().forgotten[1].clone();
    last.sort();
    assert_eq!(last, [(udp, two), (udp, three)]);
}
