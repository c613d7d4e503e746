//! Tests of the rendering (names and rules against kube-proxy's nftables proxier for the same
//! services) and of the transactions the writer sends over the recording fake.

use ipnetwork::Ipv4Network;

use super::{render::*, *};
use crate::datapath::{Affinity, BackendAddr, Frontend, Protocol, ServiceDatapath};
use crate::rules::fixtures::{ep, vip};

fn cidr() -> Option<Ipv4Network> {
    Some("10.0.0.0/8".parse().unwrap())
}

fn datapath() -> (NftablesDatapath<Recorder>, Recorder) {
    let rec = Recorder::default();
    (NftablesDatapath::new(rec.clone(), cidr()), rec)
}

/// Programs kube-proxy's test service `ns1/svc1:p80` at 172.30.0.41:80.
fn upsert_svc1(dp: &mut NftablesDatapath<Recorder>, backends: &[BackendAddr]) {
    upsert(dp, "ns1/svc1:p80", vip("172.30.0.41", 80), backends);
}

fn upsert(
    dp: &mut NftablesDatapath<Recorder>,
    name: &str,
    frontend: Frontend,
    backends: &[BackendAddr],
) {
    let mut model_name = std::collections::BTreeMap::new();
    model_name.insert(frontend, name.to_string());
    dp.name_frontends(model_name);
    dp.upsert_service(frontend, backends, Affinity::None)
        .unwrap();
}

fn last_script(rec: &Recorder) -> String {
    rec.lock().scripts.last().cloned().unwrap_or_default()
}

#[test]
fn chain_names_are_kube_proxys() {
    // The names kube-proxy's own tests expect for ns1/svc1:p80 and its endpoint 10.180.0.1:80.
    assert_eq!(
        service_chain("ns1/svc1:p80", "tcp"),
        "service-ULMVA6XW-ns1/svc1/tcp/p80"
    );
    assert_eq!(
        endpoint_chain("ns1/svc1:p80", "tcp", &ep("10.180.0.1", 80)),
        "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    );
    assert_eq!(port_base("default/db", "tcp"), "default/db/tcp/");
    // A frontend without a Service port name still makes a valid nft identifier.
    let odd = service_chain("10.96.0.10:53/udp", "udp");
    assert!(odd.starts_with("service-") && !odd.contains(':'), "{odd}");
}

#[test]
fn first_commit_recreates_the_table_with_kube_proxys_layout() {
    let (mut dp, rec) = datapath();
    upsert_svc1(&mut dp, &[ep("10.180.0.1", 80), ep("10.180.0.2", 80)]);
    dp.commit().unwrap();
    let script = last_script(&rec);
    let svc = "service-ULMVA6XW-ns1/svc1/tcp/p80";
    let ep1 = "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80";
    for line in [
        "add table ip kube-proxy { comment \"rules for kube-proxy\" ; }\ndelete table ip kube-proxy\n",
        "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; policy accept ; }",
        "add chain ip kube-proxy filter-forward { type filter hook forward priority 0 ; policy accept ; }",
        "add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ;",
        "add rule ip kube-proxy nat-prerouting jump services",
        "add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips",
        // No node address known yet: NodePorts on every local address but 127.0.0.1.
        "add rule ip kube-proxy services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports",
        "add rule ip kube-proxy masquerading masquerade fully-random",
        &format!("add element ip kube-proxy service-ips {{ 172.30.0.41 . tcp . 80 : goto {svc} }}"),
        "add element ip kube-proxy cluster-ips { 172.30.0.41 }",
        &format!(
            "add rule ip kube-proxy {svc} ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 jump mark-for-masquerade"
        ),
        &format!(
            "add rule ip kube-proxy {svc} numgen random mod 2 vmap {{ 0 : goto {ep1}, 1 : goto "
        ),
        &format!(
            "add rule ip kube-proxy {ep1} ip saddr 10.180.0.1 jump mark-for-masquerade\nadd rule ip kube-proxy {ep1} meta l4proto tcp dnat to 10.180.0.1:80\n"
        ),
    ] {
        assert!(script.contains(line), "missing {line:?} in\n{script}");
    }
    assert!(script.starts_with("add table ip kube-proxy"), "{script}");
    assert_eq!(dp.map_writes(), 1);
    // Nothing changed: no transaction at all.
    dp.upsert_service(
        vip("172.30.0.41", 80),
        &[ep("10.180.0.2", 80), ep("10.180.0.1", 80)],
        Affinity::None,
    )
    .unwrap();
    dp.commit().unwrap();
    assert_eq!(rec.lock().scripts.len(), 1);
}

#[test]
fn a_changed_service_rewrites_only_its_own_chains_and_elements() {
    let (mut dp, rec) = datapath();
    upsert_svc1(&mut dp, &[ep("10.180.0.1", 80), ep("10.180.0.2", 80)]);
    upsert(
        &mut dp,
        "ns2/svc2:p80",
        vip("172.30.0.42", 80),
        &[ep("10.180.0.3", 80)],
    );
    dp.commit().unwrap();

    // One endpoint of svc1 goes.
    upsert_svc1(&mut dp, &[ep("10.180.0.1", 80)]);
    dp.commit().unwrap();
    let script = last_script(&rec);
    let svc = "service-ULMVA6XW-ns1/svc1/tcp/p80";
    let gone = endpoint_chain("ns1/svc1:p80", "tcp", &ep("10.180.0.2", 80));
    let expected = format!(
        "flush chain ip kube-proxy {svc}\n\
         flush chain ip kube-proxy {gone}\n\
         add rule ip kube-proxy {svc} ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 jump mark-for-masquerade\n\
         add rule ip kube-proxy {svc} numgen random mod 1 vmap {{ 0 : goto {} }}\n\
         delete chain ip kube-proxy {gone}\n",
        endpoint_chain("ns1/svc1:p80", "tcp", &ep("10.180.0.1", 80)),
    );
    assert_eq!(script, expected);
    assert!(!script.contains("svc2"), "{script}");

    // svc1 loses its last endpoint: its map element moves to no-endpoint-services (reject),
    // and its chains are deleted after the element that pointed at them.
    upsert_svc1(&mut dp, &[]);
    dp.commit().unwrap();
    let script = last_script(&rec);
    let lines: Vec<&str> = script.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} missing in\n{script}"))
    };
    let removed = at("delete element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 }");
    let rejected = at(
        "add element ip kube-proxy no-endpoint-services { 172.30.0.41 . tcp . 80 comment \"ns1/svc1:p80\" : goto reject-chain }",
    );
    let deleted = at(&format!("delete chain ip kube-proxy {svc}"));
    assert!(removed < deleted && rejected < deleted, "{script}");
    assert!(!script.contains("svc2"), "{script}");

    // The Service deleted: its elements go, cluster-ips too.
    dp.delete_service(vip("172.30.0.41", 80)).unwrap();
    dp.commit().unwrap();
    let script = last_script(&rec);
    assert_eq!(
        script,
        "delete element ip kube-proxy cluster-ips { 172.30.0.41 }\n\
         delete element ip kube-proxy no-endpoint-services { 172.30.0.41 . tcp . 80 }\n"
    );
}

#[test]
fn a_failed_transaction_is_followed_by_a_whole_table() {
    let (mut dp, rec) = datapath();
    upsert_svc1(&mut dp, &[ep("10.180.0.1", 80)]);
    dp.commit().unwrap();
    rec.lock().fail_next = Some("Error: Could not process rule".into());
    upsert_svc1(&mut dp, &[ep("10.180.0.2", 80)]);
    let err = dp.commit().unwrap_err();
    assert!(err.to_string().contains("Could not process rule"), "{err}");
    assert_eq!(dp.map_writes(), 1);
    // The retry does not trust the kernel to hold the failed change or the one before.
    dp.commit().unwrap();
    assert!(last_script(&rec).starts_with("add table ip kube-proxy"));
    assert_eq!(dp.map_writes(), 2);
}

#[test]
fn node_ports_follow_traffic_policy_and_node_addresses() {
    let (mut dp, rec) = datapath();
    dp.set_node_addrs(&["192.168.0.2".parse().unwrap()])
        .unwrap();
    let np = Frontend::node_port(30080, Protocol::Tcp);
    let local_np = Frontend::node_port(30081, Protocol::Tcp);
    let names = [
        (vip("172.30.0.41", 80), "ns1/svc1:p80"),
        (np, "ns1/svc1:p80"),
        (vip("172.30.0.43", 80), "ns1/local:p80"),
        (local_np, "ns1/local:p80"),
    ];
    dp.name_frontends(names.map(|(f, n)| (f, n.to_string())).into());
    let eps = [ep("10.180.0.1", 80), ep("10.180.0.2", 80)];
    dp.upsert_service(names[0].0, &eps, Affinity::None).unwrap();
    dp.upsert_service(np, &eps, Affinity::None).unwrap();
    dp.upsert_service(names[2].0, &eps, Affinity::None).unwrap();
    // externalTrafficPolicy: Local with no endpoint on this node.
    let options = crate::datapath::ServiceOptions {
        external_local: true,
        ..Default::default()
    };
    dp.upsert_service_with(local_np, &[], options).unwrap();
    dp.commit().unwrap();
    let script = last_script(&rec);
    let ext = external_chain("ns1/svc1:p80", "tcp");
    let local_ext = external_chain("ns1/local:p80", "tcp");
    for line in [
        "add element ip kube-proxy nodeport-ips { 192.168.0.2 }".to_string(),
        "add rule ip kube-proxy services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports".into(),
        format!("add element ip kube-proxy service-nodeports {{ tcp . 30080 : goto {ext} }}"),
        format!("add rule ip kube-proxy {ext} jump mark-for-masquerade\nadd rule ip kube-proxy {ext} goto {}", service_chain("ns1/svc1:p80", "tcp")),
        // The Local one: pods and the node itself still reach the cluster's endpoints; other
        // clients are dropped (there are endpoints, just none here).
        format!("add element ip kube-proxy service-nodeports {{ tcp . 30081 : goto {local_ext} }}"),
        format!("add rule ip kube-proxy {local_ext} ip saddr 10.0.0.0/8 goto {}", service_chain("ns1/local:p80", "tcp")),
        "add element ip kube-proxy no-endpoint-nodeports { tcp . 30081 comment \"ns1/local:p80\" : drop }".into(),
    ] {
        assert!(script.contains(&line), "missing {line:?} in\n{script}");
    }
    assert!(
        !script.contains(&local_chain("ns1/local:p80", "tcp")),
        "{script}"
    );
}

#[test]
fn client_ip_affinity_remembers_clients_per_endpoint() {
    let (mut dp, rec) = datapath();
    let frontend = vip("172.30.0.41", 80);
    dp.name_frontends([(frontend, "ns1/svc1:p80".to_string())].into());
    let eps = [ep("10.180.0.1", 80)];
    let sticky = |secs| Affinity::ClientIp { timeout_secs: secs };
    dp.upsert_service(frontend, &eps, sticky(10800)).unwrap();
    dp.commit().unwrap();
    let script = last_script(&rec);
    let set = affinity_set("ns1/svc1:p80", "tcp", &eps[0]);
    let chain = endpoint_chain("ns1/svc1:p80", "tcp", &eps[0]);
    let svc = service_chain("ns1/svc1:p80", "tcp");
    for line in [
        format!(
            "add set ip kube-proxy {set} {{ type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }}"
        ),
        format!("add rule ip kube-proxy {svc} ip saddr @{set} goto {chain}"),
        format!("add rule ip kube-proxy {chain} update @{set} {{ ip saddr }}"),
    ] {
        assert!(script.contains(&line), "missing {line:?} in\n{script}");
    }
    // A set cannot change its timeout: the table is re-created.
    dp.upsert_service(frontend, &eps, sticky(60)).unwrap();
    dp.commit().unwrap();
    let script = last_script(&rec);
    assert!(script.starts_with("add table"), "{script}");
    assert!(script.contains("timeout 60s"), "{script}");
    // Affinity off: the set is deleted with the rules that used it.
    dp.upsert_service(frontend, &eps, Affinity::None).unwrap();
    dp.commit().unwrap();
    let script = last_script(&rec);
    assert!(
        script.ends_with(&format!("delete set ip kube-proxy {set}\n")),
        "{script}"
    );
}

#[test]
fn host_ports_dnat_local_destinations_to_the_pod() {
    let (mut dp, rec) = datapath();
    let any = Frontend::host_port(None, 8081, Protocol::Tcp);
    let one = Frontend::host_port(Some("192.168.0.2".parse().unwrap()), 8082, Protocol::Udp);
    dp.name_frontends([(any, "ns1/pod1".into()), (one, "ns1/pod1".into())].into());
    let options = crate::datapath::ServiceOptions {
        host_port: true,
        ..Default::default()
    };
    dp.upsert_service_with(any, &[ep("10.244.0.5", 80)], options)
        .unwrap();
    dp.upsert_service_with(one, &[ep("10.244.0.5", 53)], options)
        .unwrap();
    dp.commit().unwrap();
    let script = last_script(&rec);
    let any_chain = host_port_chain(&any, "ns1/pod1");
    let one_chain = host_port_chain(&one, "ns1/pod1");
    for line in [
        "add rule ip kube-proxy nat-output fib daddr type local jump hostports".to_string(),
        format!(
            "add rule ip kube-proxy hostports meta l4proto tcp th dport 8081 goto {any_chain} comment \"ns1/pod1 hostport 8081\""
        ),
        format!(
            "add rule ip kube-proxy hostports ip daddr 192.168.0.2 meta l4proto udp th dport 8082 goto {one_chain}"
        ),
        format!(
            "add rule ip kube-proxy {any_chain} ip saddr 10.244.0.5 jump mark-for-masquerade\nadd rule ip kube-proxy {any_chain} meta l4proto tcp dnat to 10.244.0.5:80"
        ),
        format!("add rule ip kube-proxy {one_chain} meta l4proto udp dnat to 10.244.0.5:53"),
    ] {
        assert!(script.contains(&line), "missing {line:?} in\n{script}");
    }
}
