//! Tests of the rendering (against kube-proxy's own expected rules for the same services) and of
//! the datapath's batching over the recording fake.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use ipnetwork::Ipv4Network;

use super::{render::*, *};
use crate::service::{DesiredService, FrontendSpec, ServiceView, Syncer};
use crate::{
    datapath::{Affinity, BackendAddr, Frontend, Protocol, ServiceDatapath, ServiceOptions},
    rules::{
        FrontendModel, Model, PortName,
        fixtures::{ep, vip},
        port_names,
    },
    service::{PodName, ProxyDatapath, ServiceName},
};

fn cidr(s: &str) -> Option<Ipv4Network> {
    Some(s.parse().unwrap())
}

/// A model of one service port `ns1/svc1:p80` at 172.30.0.41:80 (kube-proxy's test service).
fn svc1(backends: &[BackendAddr], node_port: Option<(u16, Vec<BackendAddr>, bool)>) -> Model {
    let mut model = Model {
        cluster_cidr: cidr("10.0.0.0/8"),
        ..Model::default()
    };
    model.frontends.insert(
        vip("172.30.0.41", 80),
        FrontendModel {
            backends: backends.to_vec(),
            affinity: Affinity::None,
            external_local: false,
        },
    );
    model
        .ports
        .insert(vip("172.30.0.41", 80), "ns1/svc1:p80".into());
    if let Some((np, backends, external_local)) = node_port {
        let f = Frontend::node_port(np, Protocol::Tcp);
        model.frontends.insert(
            f,
            FrontendModel {
                backends,
                affinity: Affinity::None,
                external_local,
            },
        );
        model.ports.insert(f, "ns1/svc1:p80".into());
    }
    model
}

fn rendered(model: &Model) -> String {
    let before = Before::Read {
        chains: &Chains::default(),
        missing_jumps: &[],
    };
    restore_input(&render(model), &before)
}

/// The `-A` lines of `table` that append to `chain`, in order.
fn rules<'a>(text: &'a str, table: &str, chain: &str) -> Vec<&'a str> {
    let section = text
        .split(&format!("*{table}\n"))
        .nth(1)
        .and_then(|rest| rest.split("COMMIT").next())
        .unwrap_or_else(|| panic!("no *{table} section in\n{text}"));
    let prefix = format!("-A {chain} ");
    section.lines().filter(|l| l.starts_with(&prefix)).collect()
}

fn declared(text: &str, table: &str) -> BTreeSet<String> {
    let section = text
        .split(&format!("*{table}\n"))
        .nth(1)
        .and_then(|rest| rest.split("COMMIT").next())
        .unwrap();
    section
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn chain_names_are_kube_proxys_hashes() {
    // Names as they appear on real clusters and in kube-proxy's tests.
    assert_eq!(
        service_chain("kube-system/kube-dns:dns", "udp"),
        "KUBE-SVC-TCOU7JCQXEZGVUNU"
    );
    assert_eq!(
        service_chain("default/kubernetes:https", "tcp"),
        "KUBE-SVC-NPX46M4PTMTKRN6Y"
    );
    assert_eq!(
        service_chain("ns1/svc1:p80", "tcp"),
        "KUBE-SVC-XPGD46QRK7WJZT7O"
    );
    assert_eq!(
        local_chain("ns1/svc1:p80", "tcp"),
        "KUBE-SVL-XPGD46QRK7WJZT7O"
    );
    assert_eq!(
        external_chain("ns2/svc2:p80", "tcp"),
        "KUBE-EXT-GNZBNJ2PO5MGZ6GT"
    );
    assert_eq!(
        endpoint_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80"),
        "KUBE-SEP-SXIVWICOYRO3J4NJ"
    );
    assert_eq!(
        endpoint_chain("ns1/svc1:p80", "tcp", "10.180.2.1:80"),
        "KUBE-SEP-ZX7GRIZKSNUQ3LAJ"
    );
    // Chain names fit iptables' 28 characters.
    assert!(service_chain("a-very-long-namespace/and-a-long-name:port", "udp").len() <= 28);
}

#[test]
fn probabilities_are_one_over_the_remaining_endpoints_with_ten_decimals() {
    assert_eq!(probability(2), "0.5000000000");
    assert_eq!(probability(3), "0.3333333333");
    assert_eq!(probability(6), "0.1666666667");
    assert_eq!(probability(1000), "0.0010000000");

    let backends: Vec<_> = (1..=4).map(|i| ep(&format!("10.180.0.{i}"), 80)).collect();
    let text = rendered(&svc1(&backends, None));
    let svc = rules(&text, "nat", "KUBE-SVC-XPGD46QRK7WJZT7O");
    let picks: Vec<&str> = svc
        .iter()
        .skip(1) // the masquerade rule
        .map(|l| {
            l.split("--probability ")
                .nth(1)
                .map_or("last", |p| &p[..12])
        })
        .collect();
    assert_eq!(
        picks,
        ["0.2500000000", "0.3333333333", "0.5000000000", "last"]
    );
}

#[test]
fn cluster_ip_and_node_port_render_like_kube_proxy() {
    let eps = [ep("10.180.0.1", 80), ep("10.180.2.1", 80)];
    let text = rendered(&svc1(&eps, Some((3001, eps.to_vec(), false))));
    assert_eq!(
        rules(&text, "nat", "KUBE-SERVICES"),
        [
            "-A KUBE-SERVICES -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O",
            "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",
        ]
    );
    assert_eq!(
        rules(&text, "nat", "KUBE-NODEPORTS"),
        [
            "-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-XPGD46QRK7WJZT7O"
        ]
    );
    assert_eq!(
        rules(&text, "nat", "KUBE-EXT-XPGD46QRK7WJZT7O"),
        [
            "-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment \"masquerade traffic for ns1/svc1:p80 external destinations\" -j KUBE-MARK-MASQ",
            "-A KUBE-EXT-XPGD46QRK7WJZT7O -j KUBE-SVC-XPGD46QRK7WJZT7O",
        ]
    );
    assert_eq!(
        rules(&text, "nat", "KUBE-SVC-XPGD46QRK7WJZT7O"),
        [
            "-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ",
            "-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment \"ns1/svc1:p80 -> 10.180.0.1:80\" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-SXIVWICOYRO3J4NJ",
            "-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment \"ns1/svc1:p80 -> 10.180.2.1:80\" -j KUBE-SEP-ZX7GRIZKSNUQ3LAJ",
        ]
    );
    assert_eq!(
        rules(&text, "nat", "KUBE-SEP-SXIVWICOYRO3J4NJ"),
        [
            "-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ",
            "-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80",
        ]
    );
    assert_eq!(
        rules(&text, "nat", "KUBE-POSTROUTING"),
        [
            "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
            "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
            "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully",
        ]
    );
    assert_eq!(
        rules(&text, "nat", "KUBE-MARK-MASQ"),
        ["-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000"]
    );
    assert_eq!(
        rules(&text, "filter", "KUBE-FORWARD"),
        [
            "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
            "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT",
            "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        ]
    );
    assert!(rules(&text, "filter", "KUBE-SERVICES").is_empty());
    assert!(rules(&text, "filter", "KUBE-EXTERNAL-SERVICES").is_empty());
    assert_eq!(
        declared(&text, "nat"),
        [
            "KUBE-SERVICES",
            "KUBE-NODEPORTS",
            "KUBE-HOSTPORTS",
            "KUBE-POSTROUTING",
            "KUBE-MARK-MASQ",
            "KUBE-EXT-XPGD46QRK7WJZT7O",
            "KUBE-SVC-XPGD46QRK7WJZT7O",
            "KUBE-SEP-SXIVWICOYRO3J4NJ",
            "KUBE-SEP-ZX7GRIZKSNUQ3LAJ",
        ]
        .map(String::from)
        .into()
    );
    // Every chain jumped to is declared.
    let nat = declared(&text, "nat");
    for line in text.lines().filter(|l| l.contains(" -j KUBE-")) {
        let target = line
            .split(" -j ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        assert!(
            nat.contains(target) || declared(&text, "filter").contains(target),
            "{line}"
        );
    }
}

#[test]
fn external_traffic_policy_local_uses_the_local_chain_and_keeps_the_source() {
    let eps = [ep("10.180.0.1", 80), ep("10.180.2.1", 80)];
    let text = rendered(&svc1(&eps, Some((3001, vec![ep("10.180.2.1", 80)], true))));
    assert_eq!(
        rules(&text, "nat", "KUBE-EXT-XPGD46QRK7WJZT7O"),
        [
            "-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment \"pod traffic for ns1/svc1:p80 external destinations\" -s 10.0.0.0/8 -j KUBE-SVC-XPGD46QRK7WJZT7O",
            "-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment \"masquerade LOCAL traffic for ns1/svc1:p80 external destinations\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
            "-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment \"route LOCAL traffic for ns1/svc1:p80 external destinations\" -m addrtype --src-type LOCAL -j KUBE-SVC-XPGD46QRK7WJZT7O",
            "-A KUBE-EXT-XPGD46QRK7WJZT7O -j KUBE-SVL-XPGD46QRK7WJZT7O",
        ]
    );
    assert_eq!(
        rules(&text, "nat", "KUBE-SVL-XPGD46QRK7WJZT7O"),
        [
            "-A KUBE-SVL-XPGD46QRK7WJZT7O -m comment --comment \"ns1/svc1:p80 -> 10.180.2.1:80\" -j KUBE-SEP-ZX7GRIZKSNUQ3LAJ"
        ]
    );
    // The endpoint chain is shared, declared once.
    assert_eq!(text.matches(":KUBE-SEP-ZX7GRIZKSNUQ3LAJ ").count(), 1);

    // No local endpoint: external traffic is dropped (not rejected), cluster traffic still works.
    let text = rendered(&svc1(&eps, Some((3001, vec![], true))));
    assert_eq!(
        rules(&text, "filter", "KUBE-EXTERNAL-SERVICES"),
        [
            "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"ns1/svc1:p80 has no local endpoints\" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j DROP"
        ]
    );
    let ext = rules(&text, "nat", "KUBE-EXT-XPGD46QRK7WJZT7O");
    assert_eq!(ext.len(), 3, "no fall-through to a local chain: {ext:?}");
    assert!(!text.contains("KUBE-SVL-"));
    assert_eq!(rules(&text, "nat", "KUBE-SVC-XPGD46QRK7WJZT7O").len(), 3);
}

#[test]
fn client_ip_affinity_checks_recent_lists_before_the_random_pick() {
    let eps = [ep("10.180.0.1", 80), ep("10.180.2.1", 80)];
    let mut model = svc1(&eps, None);
    model
        .frontends
        .get_mut(&vip("172.30.0.41", 80))
        .unwrap()
        .affinity = Affinity::ClientIp { timeout_secs: 600 };
    let text = rendered(&model);
    assert_eq!(
        rules(&text, "nat", "KUBE-SVC-XPGD46QRK7WJZT7O")[1..],
        [
            "-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment \"ns1/svc1:p80 -> 10.180.0.1:80\" -m recent --name KUBE-SEP-SXIVWICOYRO3J4NJ --rcheck --seconds 600 --reap -j KUBE-SEP-SXIVWICOYRO3J4NJ",
            "-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment \"ns1/svc1:p80 -> 10.180.2.1:80\" -m recent --name KUBE-SEP-ZX7GRIZKSNUQ3LAJ --rcheck --seconds 600 --reap -j KUBE-SEP-ZX7GRIZKSNUQ3LAJ",
            "-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment \"ns1/svc1:p80 -> 10.180.0.1:80\" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-SXIVWICOYRO3J4NJ",
            "-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment \"ns1/svc1:p80 -> 10.180.2.1:80\" -j KUBE-SEP-ZX7GRIZKSNUQ3LAJ",
        ]
    );
    assert_eq!(
        rules(&text, "nat", "KUBE-SEP-SXIVWICOYRO3J4NJ")[1],
        "-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m recent --name KUBE-SEP-SXIVWICOYRO3J4NJ --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80"
    );
}

#[test]
fn services_without_endpoints_are_rejected_in_the_filter_table() {
    let text = rendered(&svc1(&[], Some((3001, vec![], false))));
    assert_eq!(
        rules(&text, "filter", "KUBE-SERVICES"),
        [
            "-A KUBE-SERVICES -m comment --comment \"ns1/svc1:p80 has no endpoints\" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j REJECT"
        ]
    );
    assert_eq!(
        rules(&text, "filter", "KUBE-EXTERNAL-SERVICES"),
        [
            "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"ns1/svc1:p80 has no endpoints\" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j REJECT"
        ]
    );
    // Nothing in nat for it: no service, external or endpoint chain.
    assert!(!text.contains("KUBE-SVC-") && !text.contains("KUBE-EXT-"));
    assert!(rules(&text, "nat", "KUBE-NODEPORTS").is_empty());
}

#[test]
fn node_ports_answer_on_the_node_addresses_when_known() {
    let eps = [ep("10.180.0.1", 80)];
    let mut model = svc1(&eps, Some((3001, eps.to_vec(), false)));
    model.node_addrs = [
        "192.168.64.10".parse().unwrap(),
        "10.0.5.1".parse().unwrap(),
    ]
    .into();
    let text = rendered(&model);
    let services = rules(&text, "nat", "KUBE-SERVICES");
    assert_eq!(
        services[1..],
        [
            "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -d 10.0.5.1 -j KUBE-NODEPORTS",
            "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -d 192.168.64.10 -j KUBE-NODEPORTS",
        ]
    );
}

#[test]
fn frontends_without_a_service_port_name_after_their_address() {
    let mut model = Model::default();
    let f = Frontend::cluster_ip("10.96.0.10".parse().unwrap(), 53, Protocol::Udp);
    model.frontends.insert(
        f,
        FrontendModel {
            backends: vec![ep("10.244.0.5", 53)],
            affinity: Affinity::None,
            external_local: false,
        },
    );
    let text = rendered(&model);
    let chain = service_chain("10.96.0.10:53/udp", "udp");
    assert_eq!(
        rules(&text, "nat", "KUBE-SERVICES")[0],
        format!(
            "-A KUBE-SERVICES -m comment --comment \"10.96.0.10:53/udp cluster IP\" -m udp -p udp -d 10.96.0.10 --dport 53 -j {chain}"
        )
    );
    // No cluster CIDR: no masquerade rule for off-cluster clients.
    assert_eq!(rules(&text, "nat", &chain).len(), 1);
}

/// The proxy's view of the Service `value`.
fn service(value: serde_json::Value) -> ServiceView {
    ServiceView::of(&serde_json::from_value(value).unwrap()).unwrap()
}

#[test]
fn port_names_follow_kube_proxys_service_port_names() {
    let svc = service(json!({
        "metadata": { "name": "web", "namespace": "shop" },
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.96.0.20",
            "externalTrafficPolicy": "Local",
            "ports": [
                { "name": "http", "port": 80, "nodePort": 30080 },
                { "name": "dns", "protocol": "UDP", "port": 53 },
                { "port": 8080, "protocol": "SCTP" },
            ],
        },
    }));
    let names: BTreeMap<Frontend, PortName> = port_names(&svc).into_iter().collect();
    assert_eq!(
        names,
        BTreeMap::from([
            (vip("10.96.0.20", 80), "shop/web:http".to_string()),
            (
                Frontend::node_port(30080, Protocol::Tcp),
                "shop/web:http".to_string()
            ),
            (
                Frontend::cluster_ip("10.96.0.20".parse().unwrap(), 53, Protocol::Udp),
                "shop/web:dns".to_string()
            ),
        ])
    );
    let unnamed = service(json!({
        "metadata": { "name": "db", "namespace": "default" },
        "spec": { "clusterIP": "10.96.0.21", "ports": [{ "port": 5432 }] },
    }));
    assert_eq!(port_names(&unnamed)[0].1, "default/db");
}

fn recorder_dp(saved_nat: &str) -> (IptablesDatapath<Recorder>, Recorder) {
    let rec = Recorder::default();
    rec.lock()
        .tables
        .push(("nat".into(), saved_nat.to_string()));
    (
        IptablesDatapath::new(rec.clone(), cidr("10.244.0.0/16")),
        rec,
    )
}

fn spec(backends: &[BackendAddr]) -> FrontendSpec {
    FrontendSpec {
        backends: backends.to_vec(),
        ..FrontendSpec::default()
    }
}

#[test]
fn first_commit_reads_the_tables_installs_jumps_and_clears_leftovers() {
    // An earlier run left a service chain and its jump; the nat jumps exist except POSTROUTING.
    let saved = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-OLDOLDOLDOLDOLDO - [0:0]\n\
                 -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
                 -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
                 -A KUBE-SERVICES -d 10.96.0.9/32 -j KUBE-SVC-OLDOLDOLDOLDOLDO\nCOMMIT\n";
    let (mut dp, rec) = recorder_dp(saved);
    dp.commit().unwrap();
    {
        let r = rec.lock();
        assert_eq!(r.saves, ["filter", "nat"]);
        assert_eq!(r.restores.len(), 1);
        let text = &r.restores[0];
        let inserts: Vec<&str> = text.lines().filter(|l| l.starts_with("-I ")).collect();
        assert_eq!(
            inserts.len(),
            12,
            "9 filter jumps, POSTROUTING and the two hostport jumps: {inserts:?}"
        );
        assert!(inserts.contains(
            &"-I PREROUTING -m comment --comment \"kube hostport portals\" -m addrtype --dst-type LOCAL -j KUBE-HOSTPORTS"
        ));
        assert!(inserts.contains(
            &"-I POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING"
        ));
        assert!(text.contains(":KUBE-SVC-OLDOLDOLDOLDOLDO - [0:0]\n"));
        assert!(text.contains("-X KUBE-SVC-OLDOLDOLDOLDOLDO\n"));
        // Deleted after everything that jumped to it was rewritten.
        assert!(text.find("-X KUBE-SVC-OLD").unwrap() > text.find("-A KUBE-SERVICES").unwrap());
    }
    // Nothing changed: no restore.
    dp.commit().unwrap();
    assert_eq!(rec.lock().restores.len(), 1);
    assert_eq!(dp.map_writes(), 1);
}

#[test]
fn syncer_batches_one_restore_per_sync_and_deletes_stale_chains() {
    let (dp, rec) = recorder_dp("");
    let mut s = Syncer::new(dp);
    let svc = service(json!({
        "metadata": { "name": "svc1", "namespace": "ns1" },
        "spec": { "clusterIP": "172.30.0.41", "ports": [{ "name": "p80", "port": 80 }] },
    }));
    let key = ServiceName::new("ns1", "svc1");
    let eps = [ep("10.180.0.1", 80), ep("10.180.2.1", 80)];
    // A full sync of 200 services is one restore.
    let mut all: Vec<(ServiceName, _)> = (0..200u16)
        .map(|i| {
            let f = Frontend::cluster_ip(
                std::net::Ipv4Addr::new(10, 96, (i / 250) as u8, (i % 250) as u8 + 1),
                80,
                Protocol::Tcp,
            );
            (
                ServiceName::new("bulk", format!("s{i}")),
                Ok(DesiredService::from([(f, spec(&eps))])),
            )
        })
        .collect();
    s.describe(&key, Some(&svc));
    all.push((
        key.clone(),
        Ok(DesiredService::from([(vip("172.30.0.41", 80), spec(&eps))])),
    ));
    let (outcomes, _) = s.full_sync_of(all);
    assert!(outcomes.is_empty(), "{outcomes:?}");
    assert_eq!(rec.lock().restores.len(), 1);
    let text = rec.lock().restores[0].clone();
    assert!(text.contains(":KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]"));
    // O(N) text: a fixed number of lines per two-endpoint service.
    let nat_rules = text.lines().filter(|l| l.starts_with("-A KUBE-S")).count();
    assert_eq!(nat_rules, 201 * (1 + 1 + 2 + 2 * 2) + 1);

    // One endpoint removed: one restore, its endpoint chain deleted.
    let out = s.sync_service(
        &key,
        Ok(DesiredService::from([(
            vip("172.30.0.41", 80),
            spec(&eps[..1]),
        )])),
    );
    assert_eq!(out, Default::default());
    let r = rec.lock();
    assert_eq!(r.restores.len(), 2);
    assert!(r.restores[1].contains("-X KUBE-SEP-ZX7GRIZKSNUQ3LAJ\n"));
    assert!(!r.restores[1].contains("-X KUBE-SEP-SXIVWICOYRO3J4NJ"));
    // kube-proxy's partial restore: the fixed chains in full, of the per-service chains only
    // the changed service chain and the deleted endpoint chain.
    let nat = declared(&r.restores[1], "nat");
    let service_chains: Vec<&String> = nat.iter().filter(|c| is_service_chain(c)).collect();
    assert_eq!(
        service_chains,
        ["KUBE-SEP-ZX7GRIZKSNUQ3LAJ", "KUBE-SVC-XPGD46QRK7WJZT7O"],
        "{nat:?}"
    );
    assert_eq!(rules(&r.restores[1], "nat", KUBE_SERVICES).len(), 201 + 1);
    assert_eq!(
        r.saves.len(),
        2,
        "tables read only before the first restore"
    );
}

#[test]
fn a_failed_restore_is_reported_and_retried_after_reading_the_tables_again() {
    let (dp, rec) = recorder_dp("");
    let mut s = Syncer::new(dp);
    s.commit().unwrap();
    rec.lock().fail_next = Some("iptables-restore: line 7 failed".into());
    let key = ServiceName::new("ns1", "svc1");
    let out = s.sync_service(
        &key,
        Ok(DesiredService::from([(
            vip("172.30.0.41", 80),
            spec(&[ep("10.180.0.1", 80)]),
        )])),
    );
    let problem = out.problem.expect("the failure is reported");
    assert!(problem.contains("line 7 failed"), "{problem}");
    assert_eq!(s.totals().failures, 1);
    // The next commit re-reads the tables and writes the service.
    s.commit().unwrap();
    let r = rec.lock();
    assert_eq!(r.saves.len(), 4);
    assert_eq!(r.restores.len(), 3);
    assert!(r.restores[2].contains("--dport 80 -j KUBE-SVC-"));
}

#[test]
fn dump_reads_back_the_model() {
    let (mut dp, _rec) = recorder_dp("");
    dp.upsert_service(
        vip("172.30.0.41", 80),
        &[ep("10.180.2.1", 80), ep("10.180.0.1", 80)],
        Affinity::None,
    )
    .unwrap();
    dp.set_node_addrs(&["192.168.64.10".parse().unwrap()])
        .unwrap();
    let state = dp.dump().unwrap();
    assert_eq!(
        state.services[&vip("172.30.0.41", 80)].backends,
        [ep("10.180.0.1", 80), ep("10.180.2.1", 80)]
    );
    assert_eq!(state.node_addrs.len(), 1);
    dp.delete_service(vip("172.30.0.41", 80)).unwrap();
    assert!(dp.dump().unwrap().services.is_empty());
}

/// The pod `default/web` (10.244.1.5) with hostPort 8080 → 80 on every address and UDP 5353 →
/// 53 on 192.168.64.10 only, through the datapath as the syncer programs them.
fn host_port_dp() -> (IptablesDatapath<Recorder>, Recorder, Frontend, Frontend) {
    let (mut dp, rec) = recorder_dp("");
    let any = Frontend::host_port(None, 8080, Protocol::Tcp);
    let bound = Frontend::host_port(Some("192.168.64.10".parse().unwrap()), 5353, Protocol::Udp);
    dp.describe_pod(&PodName::new("default", "web"), &[any, bound]);
    let options = ServiceOptions {
        host_port: true,
        ..ServiceOptions::default()
    };
    dp.upsert_service_with(any, &[ep("10.244.1.5", 80)], options)
        .unwrap();
    dp.upsert_service_with(bound, &[ep("10.244.1.5", 53)], options)
        .unwrap();
    (dp, rec, any, bound)
}

#[test]
fn host_ports_render_like_the_kubelets_hostport_rules() {
    let (mut dp, rec, any, bound) = host_port_dp();
    dp.commit().unwrap();
    let text = rec.lock().restores[0].clone();
    let tcp_chain = hostports::host_port_chain(&any, "default/web");
    let udp_chain = hostports::host_port_chain(&bound, "default/web");
    assert!(
        tcp_chain.starts_with("KUBE-HP-") && tcp_chain.len() == 24,
        "{tcp_chain}"
    );
    assert_ne!(tcp_chain, udp_chain);
    let mut expected = vec![
        format!(
            "-A KUBE-HOSTPORTS -m comment --comment \"default/web hostport 5353\" -m udp -p udp -d 192.168.64.10/32 --dport 5353 -j {udp_chain}"
        ),
        format!(
            "-A KUBE-HOSTPORTS -m comment --comment \"default/web hostport 8080\" -m tcp -p tcp --dport 8080 -j {tcp_chain}"
        ),
    ];
    // Frontends are rendered in their order; the bound one's address sorts first.
    assert_eq!(rules(&text, "nat", "KUBE-HOSTPORTS"), expected);
    assert_eq!(
        rules(&text, "nat", &tcp_chain),
        [
            format!(
                "-A {tcp_chain} -m comment --comment \"default/web hostport 8080\" -s 10.244.1.5/32 -j KUBE-MARK-MASQ"
            ),
            format!(
                "-A {tcp_chain} -m comment --comment \"default/web hostport 8080\" -m tcp -p tcp -j DNAT --to-destination 10.244.1.5:80"
            ),
        ]
    );
    let nat = declared(&text, "nat");
    assert!(nat.contains("KUBE-HOSTPORTS") && nat.contains(&tcp_chain) && nat.contains(&udp_chain));
    // No Service rules come from hostPorts.
    assert!(!text.contains("KUBE-SVC-") && !text.contains("KUBE-NODEPORTS -m"));
    let state = dp.dump().unwrap();
    assert!(state.services[&any].host_port);
    assert_eq!(state.services[&bound].backends, [ep("10.244.1.5", 53)]);

    // The TCP mapping goes: one restore, its chain deleted, the other one kept.
    dp.delete_service(any).unwrap();
    dp.commit().unwrap();
    let text = rec.lock().restores[1].clone();
    expected.truncate(1);
    assert_eq!(rules(&text, "nat", "KUBE-HOSTPORTS"), expected);
    assert!(text.contains(&format!("-X {tcp_chain}\n")));
    assert!(!text.contains(&format!("-X {udp_chain}")));
}

#[test]
fn the_syncer_programs_and_removes_a_pods_host_ports() {
    let (dp, rec) = recorder_dp("");
    let mut s = Syncer::new(dp);
    let pod = PodName::new("default", "web");
    let any = Frontend::host_port(None, 8080, Protocol::Tcp);
    let ports = crate::service::PodHostPorts {
        frontends: DesiredService::from([(
            any,
            FrontendSpec {
                backends: vec![ep("10.244.1.5", 80)],
                host_port: true,
                ..FrontendSpec::default()
            },
        )]),
        skipped: Vec::new(),
    };
    assert_eq!(s.stage_pod(&pod, ports.clone()), Default::default());
    // Another pod of the node asking for the same hostPort is refused, the first one kept.
    let other = s.stage_pod(&PodName::new("default", "web2"), ports.clone());
    let problem = other.problem.expect("a conflict is a problem");
    assert!(problem.contains("pod default/web"), "{problem}");
    // A full sync of the Services prunes nothing that belongs to a pod.
    let (_, pruned) = s.full_sync_of(Vec::new());
    assert_eq!(pruned, 0);
    let text = rec.lock().restores.last().unwrap().clone();
    assert!(
        text.contains("--comment \"default/web hostport 8080\""),
        "{text}"
    );
    // The pod is gone from the node's list: its rules go with the next commit.
    assert!(s.stage_all_pods(Vec::new()).is_empty());
    s.commit().unwrap();
    let text = rec.lock().restores.last().unwrap().clone();
    assert!(rules(&text, "nat", "KUBE-HOSTPORTS").is_empty(), "{text}");
    assert!(s.datapath().dump().unwrap().services.is_empty());
}
