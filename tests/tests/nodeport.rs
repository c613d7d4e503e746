//! End-to-end test of the per-packet NodePort datapath (tc programs, DESIGN.md §7); needs root
//! and Debian's `iproute2`.
//!
//! The hosts are a two-node lab (`ekube_tests::server_lab`: n1 `192.168.64.10`, n2 `.20`,
//! the external client `.100` on the lab's underlay) running `ekube server` on n1 and nothing
//! else. The test adds what agents would: on each node a `cni0` bridge with "pods"
//! (namespaces with an `ekube-probe serve` TCP/UDP server answering `<name> <peer IP>`,
//! hairpin on their bridge ports as ekube-cni sets it) and a `flannel.1` VXLAN device wired
//! like `ekube flannel` does (route + permanent neighbour + FDB). The real `ekube proxy` runs
//! on n1 through the lab, attaching its socket hooks to n1's cgroup and its tc programs to n1's
//! `eth0` and `flannel.1`. The test thread enters n1's namespace to talk to the server; it
//! writes the Services (UDP node ports are the TCP ones + 1000) and EndpointSlices. Clients
//! (`ekube-probe client`, and its `syn-flood`) run in the external namespace via `nsenter`, so
//! nothing is sent from the root namespace. Servers, clients and objects are the shared
//! fixtures of `ekube_tests::datapath`.

use std::{
    collections::BTreeMap,
    fs::File,
    io::Write,
    net::Ipv4Addr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ekube_ebpf_common::{
    CT_DIR_FORWARD, CT_DIR_REPLY, CT_FLAG_CLOSING, CT_FLAG_RESET, CtKey, CtValue, SNAT_TS_REUSE_NS,
};
use ekube_lab::{EXT_IP, Lab, node_ip};
use ekube_proxy::datapath::{
    BpfMaps, Counter, DatapathConfig, NodePortSettings, conntrack, dump_store,
};
use ekube_tests::datapath::{
    Reply, TCP_PORT, UDP_PORT, cgroup_procs, client, endpoint_slice, endpoints,
    in_cgroup as in_cgroup_of, lab_client, node_datapath, output, proxy_argv, serve, tally,
};
use ekube_tests::{netns, probe_bin, wait_for};
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;

/// The lab's name; the pods' namespaces are `<PREFIX><pid>-<pod>`.
const LAB: &str = "eknp";
const PREFIX: &str = "eknp";
const N1_IP: Ipv4Addr = node_ip(1);
const CLIENT_IP: Ipv4Addr = EXT_IP;
/// How long an unestablished flow lives in this test (`--conntrack-tcp-timeout-syn`; 60 s by
/// default), short so the SYN flood's flows are gone within the test.
const SYN_TIMEOUT: Duration = Duration::from_secs(5);
/// SYNs of the flood: far more than the SNAT port span holds.
const FLOOD_SYNS: u32 = 50_000;
/// The SNAT port span of the test: small, so the flood surely takes every port.
const SNAT_PORTS: (u16, u16) = (20_000, 24_095);
/// The span while connections are opened and closed one after another: 8 ports.
const REUSE_PORTS: (u16, u16) = (20_000, 20_007);
/// The NodePort whose backend (`ekube-rr serve` on p2a, on the other node) closes first.
const CRR_NODE_PORT: u16 = 30086;
const CRR_PORT: u16 = 8081;
const CRR_SECONDS: f64 = 6.0;

/// Pods: (suffix, node 1 or 2, address).
const PODS: [(&str, u8, Ipv4Addr); 3] = [
    ("p1a", 1, Ipv4Addr::new(10, 244, 1, 11)),
    ("p1b", 1, Ipv4Addr::new(10, 244, 1, 12)),
    ("p2a", 2, Ipv4Addr::new(10, 244, 2, 21)),
];

/// The lab and what the test added to it; dropping it removes the pods, then the lab.
struct Topology {
    /// The pods' servers.
    children: Vec<Child>,
    /// The pods' namespaces.
    pods: Vec<String>,
    /// n1's datapath: the proxy's pins and cgroup.
    dp: DatapathConfig,
    cgroup_procs: File,
    lab: Lab,
}

impl Topology {
    /// The namespace of a lab host (`n1`, `ext`) or of a pod (`p1a`).
    fn ns(&self, name: &str) -> String {
        match self.lab.host(name) {
            Ok(host) => host.netns.clone(),
            Err(_) => format!("{PREFIX}{}-{name}", std::process::id()),
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.pods {
            netns::delete(ns);
        }
    }
}

fn ip(ns: &str, args: &str) {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args.split_whitespace())
        .output()
        .expect("running ip");
    assert!(
        out.status.success(),
        "ip -n {ns} {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Adds to each lab node its bridge, overlay device and pods (servers started and ready).
fn build(topo: &mut Topology) {
    for (n, other) in [(1u8, 2u8), (2, 1)] {
        let ns = topo.ns(&format!("n{n}"));
        let (own_ip, other_ip) = (node_ip(n.into()), node_ip(other.into()));
        ip(&ns, "link add cni0 type bridge");
        ip(&ns, &format!("addr add 10.244.{n}.1/24 dev cni0"));
        ip(&ns, "link set cni0 up");
        ip(
            &ns,
            &format!(
                "link add flannel.1 address 02:00:00:00:0{n}:00 type vxlan id 1 local {own_ip} dstport 8472 nolearning dev eth0"
            ),
        );
        ip(&ns, &format!("addr add 10.244.{n}.0/32 dev flannel.1"));
        ip(&ns, "link set flannel.1 up");
        ip(
            &ns,
            &format!("route add 10.244.{other}.0/24 via 10.244.{other}.0 dev flannel.1 onlink"),
        );
        ip(
            &ns,
            &format!(
                "neigh add 10.244.{other}.0 lladdr 02:00:00:00:0{other}:00 dev flannel.1 nud permanent"
            ),
        );
        let out = netns::nsenter(&ns)
            .args([
                "bridge",
                "fdb",
                "append",
                &format!("02:00:00:00:0{other}:00"),
            ])
            .args(["dev", "flannel.1", "dst", &other_ip.to_string()])
            .output()
            .expect("bridge fdb");
        assert!(out.status.success(), "bridge fdb: {out:?}");
    }
    for (pod, node, addr) in PODS {
        let ns = topo.ns(pod);
        let node_ns = topo.ns(&format!("n{node}"));
        netns::ip(&["netns", "add", &ns]);
        topo.pods.push(ns.clone());
        ip(&ns, "link set lo up");
        ip(
            &node_ns,
            &format!("link add v{pod} type veth peer name eth0 netns {ns}"),
        );
        ip(&node_ns, &format!("link set v{pod} master cni0 up"));
        ip(
            &node_ns,
            &format!("link set v{pod} type bridge_slave hairpin on"),
        );
        ip(&ns, &format!("addr add {addr}/24 dev eth0"));
        ip(&ns, "link set eth0 up");
        ip(&ns, &format!("route add default via 10.244.{node}.1"));
        topo.children.push(serve(&ns, &[format!("{pod}=0.0.0.0")]));
    }
}

fn run_client(topo: &Topology, ns: &str, in_cgroup: bool, args: &[String]) -> String {
    let mut args = args.to_vec();
    args.extend(["--timeout-ms".into(), "2000".into()]);
    let mut cmd = client(&topo.ns(ns), &args);
    if in_cgroup {
        in_cgroup_of(&mut cmd, &topo.cgroup_procs);
    }
    output(cmd.spawn().expect("starting a client"), &args.join(" "))
}

fn requests(topo: &Topology, kind: &str, ip: Ipv4Addr, port: u16, count: u32) -> Vec<Reply> {
    let args = [kind, &ip.to_string(), &port.to_string(), &count.to_string()].map(String::from);
    Reply::parse_all(&run_client(topo, "ext", false, &args))
}

fn health(topo: &Topology, port: u16) -> (u16, serde_json::Value) {
    let args = ["http", &N1_IP.to_string(), &port.to_string()].map(String::from);
    let out = run_client(topo, "ext", false, &args);
    let (code, body) = out.trim().split_once(' ').unwrap_or((out.trim(), ""));
    (
        code.parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or_default(),
    )
}

/// The endpoints of `pods`, each on its node.
fn pod_endpoints(pods: &[&str]) -> serde_json::Value {
    let nodes: Vec<(Ipv4Addr, String)> = PODS
        .iter()
        .filter(|(p, _, _)| pods.contains(p))
        .map(|(_, node, addr)| (*addr, format!("{LAB}-n{node}")))
        .collect();
    let list: Vec<_> = nodes
        .iter()
        .map(|(addr, node)| (*addr, true, Some(node.as_str())))
        .collect();
    endpoints(&list)
}

#[test]
fn nodeport_from_outside() {
    netns::clear_stale(PREFIX);
    let lab = ekube_tests::server_lab(LAB, 2);
    let n1 = lab.host("n1").unwrap().clone();
    let mut topo = Topology {
        children: Vec::new(),
        pods: Vec::new(),
        dp: node_datapath(&n1),
        cgroup_procs: cgroup_procs(&n1),
        lab,
    };
    build(&mut topo);

    let proxy = proxy_argv(
        &topo.lab,
        &n1,
        &[
            "--node-ip",
            &N1_IP.to_string(),
            "--sync-period",
            "2s",
            "--conntrack-tcp-timeout-syn",
            &format!("{}s", SYN_TIMEOUT.as_secs()),
        ],
    );
    topo.lab
        .spawn("n1", "proxy", &proxy)
        .expect("starting ekube proxy");
    let log_path = topo.lab.log_path("n1", "proxy").unwrap();
    let proxy_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_for(Duration::from_secs(30), "the tc links to be pinned", || {
        Ok(topo.dp.pin_dir().join("link_tc_eth0_in").exists()
            && topo.dp.pin_dir().join("link_tc_flannel_1_in").exists())
    })
    .unwrap_or_else(|e| panic!("{e:#}\nproxy log:\n{}", proxy_log()));
    // Short timeouts, so closed flows leave the conntrack within the test (this replaces the
    // settings the flags wrote, so the SYN timeout is repeated).
    conntrack::set_settings(&topo.dp, &short_timeouts()).expect("setting the conntrack timeouts");

    // From here to the end of the test this thread talks to the server from inside n1.
    let _in_n1 = netns::Entered::enter(&n1.netns).expect("entering n1");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = lab_client(&rt, &topo.lab);
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let ports = json!([
        { "name": "http", "protocol": "TCP", "port": TCP_PORT },
        { "name": "dns", "protocol": "UDP", "port": UDP_PORT },
    ]);
    let create = |name: &str, node_port: u16, extra: serde_json::Value, pods: &[&str]| {
        let mut spec = json!({
            "type": "NodePort",
            "ports": [
                { "name": "http", "protocol": "TCP", "port": 80, "targetPort": TCP_PORT, "nodePort": node_port },
                { "name": "dns", "protocol": "UDP", "port": 53, "targetPort": UDP_PORT, "nodePort": node_port + 1000 },
            ],
        });
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let svc: Service =
            serde_json::from_value(json!({ "metadata": { "name": name }, "spec": spec })).unwrap();
        rt.block_on(services.create(&PostParams::default(), &svc))
            .unwrap_or_else(|e| panic!("creating service {name}: {e}"));
        let slice = endpoint_slice(name, ports.clone(), pod_endpoints(pods));
        rt.block_on(slices.create(&PostParams::default(), &slice))
            .unwrap_or_else(|e| panic!("creating endpointslice {name}: {e}"));
    };
    create("web", 30080, json!({}), &["p1a", "p1b", "p2a"]);
    create(
        "loc",
        30081,
        json!({ "type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 30181 }),
        &["p1a", "p2a"],
    );
    create(
        "rem",
        30082,
        json!({ "type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 30182 }),
        &["p2a"],
    );
    create(
        "aff",
        30083,
        json!({ "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": { "clientIP": { "timeoutSeconds": 60 } } }),
        &["p1a", "p1b", "p2a"],
    );
    create("hp", 30084, json!({}), &["p1a"]);
    create("syn", 30085, json!({}), &["p2a"]);
    let node_port_backends = |port: u16| {
        let maps = BpfMaps::open_pinned(&topo.dp).ok()?;
        let state = dump_store(&maps).ok()?;
        state
            .services
            .iter()
            .find(|(f, _)| f.is_node_port() && f.port == port)
            .map(|(_, e)| e.backends.len())
    };
    wait_for(
        Duration::from_secs(20),
        "the NodePorts to be programmed",
        || {
            Ok(node_port_backends(30080) == Some(3)
                && node_port_backends(30081) == Some(1)
                && node_port_backends(30082) == Some(0)
                && node_port_backends(30083) == Some(3)
                && node_port_backends(30084) == Some(1)
                && node_port_backends(30085) == Some(1))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\nproxy log:\n{}", proxy_log()));

    // 300 TCP connections from outside, spread over local and remote backends.
    let replies = requests(&topo, "tcp", N1_IP, 30080, 300);
    let counts = tally(&replies);
    assert_eq!(counts.values().sum::<usize>(), 300);
    for pod in ["p1a", "p1b", "p2a"] {
        assert!(
            counts.get(pod).copied().unwrap_or(0) >= 30,
            "backend {pod} got too few of 300 connections: {counts:?}\n{}",
            proxy_log()
        );
    }

    // UDP: the reply comes from the NodePort.
    let replies = requests(&topo, "udp", N1_IP, 31080, 10);
    tally(&replies);
    for reply in &replies {
        let Reply::Ok { peer, .. } = reply else {
            unreachable!()
        };
        assert_eq!(peer, &format!("{N1_IP}:31080"), "UDP reply source");
    }

    // externalTrafficPolicy: Local keeps the client address and only local backends (the API
    // gives a healthCheckNodePort to LoadBalancer Services only, as Kubernetes does).
    let replies = requests(&topo, "tcp", N1_IP, 30081, 30);
    assert_eq!(tally(&replies), BTreeMap::from([("p1a".to_string(), 30)]));
    for reply in &replies {
        let Reply::Ok { seen, .. } = reply else {
            unreachable!()
        };
        assert_eq!(*seen, CLIENT_IP, "eTP=Local must keep the client address");
    }
    let (code, body) = health(&topo, 30181);
    assert_eq!(code, 200, "health check of loc: {body}\n{}", proxy_log());
    assert_eq!(body["localEndpoints"], 1);
    assert_eq!(body["service"]["name"], "loc");
    // No local endpoint: no answer, and 503.
    let replies = requests(&topo, "tcp", N1_IP, 30082, 3);
    assert!(
        replies.iter().all(|r| matches!(r, Reply::Err(_))),
        "rem answered: {replies:?}"
    );
    let (code, body) = health(&topo, 30182);
    assert_eq!(code, 503, "health check of rem: {body}");
    assert_eq!(body["localEndpoints"], 0);

    // Session affinity: one client, one backend.
    let counts = tally(&requests(&topo, "tcp", N1_IP, 30083, 30));
    assert_eq!(counts.len(), 1, "affinity did not stick: {counts:?}");

    // Hairpin: a pod reaching its own Service's ClusterIP lands on itself.
    let svc = rt.block_on(services.get("hp")).unwrap();
    let cluster_ip: Ipv4Addr = svc.spec.unwrap().cluster_ip.unwrap().parse().unwrap();
    let args = ["tcp", &cluster_ip.to_string(), "80", "5"].map(String::from);
    let hairpin = Reply::parse_all(&run_client(&topo, "p1a", true, &args));
    assert_eq!(tally(&hairpin), BTreeMap::from([("p1a".to_string(), 5)]));

    // A removed backend gets no new flows once the proxy synced, and established flows to the
    // other backends keep working.
    let mut held = netns::nsenter(&topo.ns("ext"))
        .arg(probe_bin())
        .args(["client", "hold", &N1_IP.to_string(), "30080", "12"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the held connections");
    let mut held_out = std::io::BufReader::new(held.stdout.take().unwrap());
    let mut held_names = String::new();
    std::io::BufRead::read_line(&mut held_out, &mut held_names).unwrap();
    let held_names: Vec<String> = held_names.split_whitespace().map(String::from).collect();
    assert_eq!(held_names.len(), 12, "held connections: {held_names:?}");
    let patch = json!({ "endpoints": pod_endpoints(&["p1a", "p2a"]) });
    rt.block_on(slices.patch("web-1", &PatchParams::default(), &Patch::Merge(&patch)))
        .unwrap();
    wait_for(
        Duration::from_secs(20),
        "p1b to leave the web NodePort",
        || Ok(node_port_backends(30080) == Some(2)),
    )
    .unwrap();
    let counts = tally(&requests(&topo, "tcp", N1_IP, 30080, 100));
    assert!(
        !counts.contains_key("p1b"),
        "p1b still got flows: {counts:?}"
    );
    held.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut pinged = String::new();
    std::io::Read::read_to_string(&mut held_out, &mut pinged).unwrap();
    assert!(held.wait().unwrap().success());
    let survivors: Vec<&str> = pinged.lines().filter(|l| !l.ends_with(" p1b")).collect();
    assert!(
        !survivors.is_empty() && survivors.iter().all(|l| l.starts_with("ok ")),
        "established flows to p1a/p2a broke when p1b left (held on {held_names:?}): {pinged}"
    );

    // A UDP flow stays on its backend, and when that backend leaves the Service the flow's next
    // datagram is balanced again: the proxy deletes the flow's conntrack entries, as kube-proxy
    // deletes the kernel's. Without that, a client that keeps sending from one socket would
    // follow its entry to the removed backend (whose server still answers here) for as long as
    // it is never idle for the UDP timeout; the polling below never lets it idle that long.
    let udp_flow = |count: u32| {
        let args = [
            "udp",
            &N1_IP.to_string(),
            "31080",
            &count.to_string(),
            "--source-port",
            "40053",
        ];
        Reply::parse_all(&run_client(&topo, "ext", false, &args.map(String::from)))
    };
    let first = tally(&udp_flow(3));
    assert_eq!(first.len(), 1, "one UDP flow, one backend: {first:?}");
    let gone = first.into_keys().next().unwrap();
    let kept: Vec<&str> = ["p1a", "p1b", "p2a"]
        .into_iter()
        .filter(|p| **p != gone)
        .collect();
    let patch = json!({ "endpoints": pod_endpoints(&kept) });
    rt.block_on(slices.patch("web-1", &PatchParams::default(), &Patch::Merge(&patch)))
        .unwrap();
    wait_for(
        Duration::from_secs(10),
        &format!("the UDP flow to move off {gone}"),
        // A datagram lost while the Service changes is a retry, not a failure.
        || Ok(matches!(udp_flow(1).as_slice(), [Reply::Ok { name, .. }] if *name != gone)),
    )
    .unwrap_or_else(|e| {
        let entries = conntrack::entries(&topo.dp).unwrap_or_default();
        panic!("{e:#}\nconntrack: {entries:?}\nproxy log:\n{}", proxy_log())
    });

    direct_after_node_port(&topo);

    // Every flow above is closed: their conntrack entries go after the short timeouts.
    let result = wait_for(
        Duration::from_secs(20),
        "closed flows to leave the conntrack",
        || Ok(conntrack::entries(&topo.dp)?.is_empty()),
    );
    if let Err(e) = result {
        let left = conntrack::entries(&topo.dp).unwrap_or_default();
        panic!(
            "{e:#}: {} entries left, e.g. {:?}",
            left.len(),
            left.first()
        );
    }

    syn_flood_leaves_room(&topo);
    closed_ports_go_to_new_flows(&topo, &rt, &services, &slices);
}

/// The conntrack settings of most of the test: short timeouts, so closed flows leave the
/// conntrack within it.
fn short_timeouts() -> NodePortSettings {
    NodePortSettings {
        tcp_close_timeout: Duration::from_secs(1),
        udp_timeout: Duration::from_secs(2),
        snat_time_wait: Duration::from_secs(2),
        tcp_syn_timeout: SYN_TIMEOUT,
        snat_ports: SNAT_PORTS,
        ..NodePortSettings::default()
    }
}

/// The programs' count of `which` on n1.
fn counter(topo: &Topology, which: Counter) -> u64 {
    let maps = BpfMaps::open_pinned(&topo.dp).expect("opening the pinned maps");
    let counters = maps.counters().expect("reading the counters");
    counters
        .iter()
        .find(|(c, _)| *c == which)
        .map_or(0, |(_, n)| *n)
}

/// A client that reached p1a through a NodePort (`loc`, never SNATed) connects from the same
/// port straight to p1a's pod IP while the finished flow's entries are still in the
/// conntrack: the direct connection's replies must reach it from the pod, not be rewritten on
/// n1's egress as the NodePort flow's (which made its connect time out). Once for a flow both
/// sides closed with FINs, once for one the client reset (after which the backend sends
/// nothing, so only the client's entry shows it).
fn direct_after_node_port(topo: &Topology) {
    let (_, _, p1a) = PODS[0];
    // Finished flows keep their entries for the whole check.
    conntrack::set_settings(
        &topo.dp,
        &NodePortSettings {
            tcp_close_timeout: Duration::from_secs(60),
            ..short_timeouts()
        },
    )
    .expect("lengthening the closing timeout");
    let route = format!("{p1a}/32 via {N1_IP}");
    ip(&topo.ns("ext"), &format!("route add {route}"));
    for (port, reset) in [(41_000u16, false), (41_001, true)] {
        let connect = |ip: Ipv4Addr, to: u16| {
            let (ip, to, port) = (ip.to_string(), to.to_string(), port.to_string());
            let mut args = ["tcp", &ip, &to, "1", "--source-port", &port]
                .map(String::from)
                .to_vec();
            if reset {
                args.push("--reset".into());
            }
            Reply::parse_all(&run_client(topo, "ext", false, &args))
        };
        let how = if reset { "reset" } else { "closed" };
        let via_node_port = connect(N1_IP, 30081);
        assert!(
            matches!(via_node_port.as_slice(), [Reply::Ok { name, .. }] if name == "p1a"),
            "through the NodePort ({how}): {via_node_port:?}"
        );
        // The flow's entries: the client's (from its port) and the reply's (to it).
        let finished = |entries: &[(CtKey, CtValue)]| {
            let flow: Vec<u8> = entries
                .iter()
                .filter(|(k, _)| {
                    (k.dir == CT_DIR_FORWARD && k.sport == port.to_be())
                        || (k.dir == CT_DIR_REPLY
                            && k.saddr == u32::from(p1a).to_be()
                            && k.dport == port.to_be())
                })
                .map(|(_, v)| v.flags)
                .collect();
            flow.len() == 2
                && if reset {
                    flow.iter().any(|f| f & CT_FLAG_RESET != 0)
                } else {
                    flow.iter().all(|f| f & CT_FLAG_CLOSING != 0)
                }
        };
        wait_for(
            Duration::from_secs(10),
            &format!("the NodePort flow's entries to show it {how}"),
            || Ok(finished(&conntrack::entries(&topo.dp)?)),
        )
        .unwrap();
        let before = counter(topo, Counter::StaleReplyForgotten);
        let direct = connect(p1a, TCP_PORT);
        let peer = format!("{p1a}:{TCP_PORT}");
        assert!(
            matches!(direct.as_slice(), [Reply::Ok { name, seen, peer: p }]
                if name == "p1a" && *seen == CLIENT_IP && *p == peer),
            "straight to the pod from the port a {how} NodePort flow used: {direct:?}"
        );
        assert_eq!(
            counter(topo, Counter::StaleReplyForgotten) - before,
            1,
            "finished flows forgotten ({how})"
        );
    }
    ip(&topo.ns("ext"), &format!("route del {route}"));
    conntrack::set_settings(&topo.dp, &short_timeouts()).expect("restoring the timeouts");
}

/// 50,000 SYNs with spoofed sources to a NodePort whose only backend is on the other node, so
/// every flow needs a SNAT port and the flood takes every port of the span: a real client
/// still connects within 2 s (on a port whose tuple the backend does not hold half-open from
/// the flood), and after the SYN timeout every SNAT port is free again.
fn syn_flood_leaves_room(topo: &Topology) {
    let flood = netns::nsenter(&topo.ns("ext"))
        .arg(probe_bin())
        .args(["syn-flood", &N1_IP.to_string(), "30085"])
        .arg(FLOOD_SYNS.to_string())
        .output()
        .expect("running the SYN flood");
    assert!(flood.status.success(), "SYN flood: {flood:?}");
    let ports = conntrack::snat_ports(&topo.dp).unwrap();
    assert!(
        ports.unestablished > usize::from(SNAT_PORTS.1 - SNAT_PORTS.0) * 9 / 10,
        "the flood did not take SNAT ports: {ports:?}"
    );

    let started = Instant::now();
    let replies = requests(topo, "tcp", N1_IP, 30085, 1);
    let took = started.elapsed();
    assert!(
        matches!(&replies[..], [Reply::Ok { name, .. }] if name == "p2a"),
        "a client could not connect after the SYN flood ({ports:?} held): {replies:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "a client needed {took:?} to connect after the SYN flood"
    );
    // The backend keeps the first flood SYNs half-open (as many as its listen backlog takes)
    // and retransmits their SYN-ACKs: the datapath must have noticed, or a new flow could be
    // handed one of those tuples and stall.
    let ports = conntrack::snat_ports(&topo.dp).unwrap();
    assert!(
        ports.half_open > 0,
        "no SNAT port is marked held half-open by the backend after the flood: {ports:?}"
    );

    let result = wait_for(
        SYN_TIMEOUT + Duration::from_secs(25),
        "the SYN flood's SNAT ports to come back",
        || {
            Ok(conntrack::snat_ports(&topo.dp)?.held == 0
                && conntrack::unestablished(&topo.dp)? == 0)
        },
    );
    if let Err(e) = result {
        panic!(
            "{e:#}: {:?} held, {:?} counted unestablished",
            conntrack::snat_ports(&topo.dp),
            conntrack::unestablished(&topo.dp)
        );
    }
}

/// One client opens, uses and closes connections one after another for [`CRR_SECONDS`] through
/// a NodePort whose only backend is on the other node and closes first, so the backend holds
/// each SNAT tuple in TIME_WAIT. With a span of 8 ports, held for TIME_WAIT (60 s) a closed
/// flow's port would let 8 connections through; with the client's timestamps shifted, a port
/// goes to a new flow a second after its flow closed, and the backend's TIME_WAIT takes the
/// new SYN: many times 8 connections, none failing, and the backend never answers a SYN as an
/// old connection.
fn closed_ports_go_to_new_flows(
    topo: &Topology,
    rt: &tokio::runtime::Runtime,
    services: &Api<Service>,
    slices: &Api<EndpointSlice>,
) {
    let backend = PODS.iter().find(|(pod, ..)| *pod == "p2a").unwrap().2;
    let _server =
        ekube_tests::bench::rr_serve(&topo.ns("p2a"), (backend, CRR_PORT).into(), "p2a-crr")
            .expect("starting ekube-rr serve on p2a");
    let svc: Service = serde_json::from_value(json!({
        "metadata": { "name": "crr" },
        "spec": {
            "type": "NodePort",
            "ports": [{ "name": "crr", "protocol": "TCP", "port": 80,
                        "targetPort": CRR_PORT, "nodePort": CRR_NODE_PORT }],
        },
    }))
    .unwrap();
    rt.block_on(services.create(&PostParams::default(), &svc))
        .expect("creating service crr");
    let slice = endpoint_slice(
        "crr",
        json!([{ "name": "crr", "protocol": "TCP", "port": CRR_PORT }]),
        pod_endpoints(&["p2a"]),
    );
    rt.block_on(slices.create(&PostParams::default(), &slice))
        .expect("creating endpointslice crr");
    let target = format!("{N1_IP}:{CRR_NODE_PORT}");
    wait_for(
        Duration::from_secs(20),
        "the crr NodePort to answer",
        || {
            Ok(ekube_tests::bench::rr_client(
                &topo.ns("ext"),
                &["--target", &target, "--duration", "0.05"].map(String::from),
            )
            .is_ok_and(|r| r.requests > 0))
        },
    )
    .unwrap();
    // From here closed flows hold their ports for TIME_WAIT unless their timestamps are shifted.
    conntrack::set_settings(
        &topo.dp,
        &NodePortSettings {
            tcp_syn_timeout: SYN_TIMEOUT,
            snat_ports: REUSE_PORTS,
            ..NodePortSettings::default()
        },
    )
    .expect("narrowing the SNAT span");
    // The probes above may have taken ports of the span: start once a closed flow with shifted
    // timestamps may hand its port on (plus room for the probes' last packets).
    std::thread::sleep(Duration::from_nanos(SNAT_TS_REUSE_NS) + Duration::from_millis(500));
    let (reused, held) = (
        counter(topo, Counter::SnatPortReused),
        counter(topo, Counter::PeerHeldTuple),
    );
    let args = [
        "--target",
        &target,
        "--duration",
        &CRR_SECONDS.to_string(),
        "--timeout",
        "10",
    ];
    let report = ekube_tests::bench::rr_client(&topo.ns("ext"), &args.map(String::from))
        .expect("running ekube-rr client");
    let span = u64::from(REUSE_PORTS.1 - REUSE_PORTS.0 + 1);
    let (reused, held) = (
        counter(topo, Counter::SnatPortReused) - reused,
        counter(topo, Counter::PeerHeldTuple) - held,
    );
    eprintln!(
        "{} connections in {CRR_SECONDS} s over {span} SNAT ports ({reused} ports handed on), {} errors",
        report.requests, report.errors
    );
    assert_eq!(report.errors, 0, "failed connections: {report:?}");
    assert!(
        report.requests >= 3 * span && reused >= 2 * span,
        "closed flows did not hand their SNAT ports on: {} connections, {reused} ports reused",
        report.requests
    );
    assert_eq!(
        held, 0,
        "the backend answered {held} SYNs on reused ports as old connections"
    );
}
