//! End-to-end tests of `ekube proxy` in its rule modes, kube-proxy's rules: `--mode iptables`
//! once per iptables variant (legacy, nft), and `--mode nftables`. Needs root (network
//! namespaces, iptables and nft in them).
//!
//! Each run brings up a one-node lab (`ekube_tests::server_lab`: the node n1 at
//! 192.168.64.10 running `ekube server`, the external host `ext` at 192.168.64.100 on the
//! lab's underlay) and adds what the test needs behind the node, in namespaces named
//! `ekipt-<pid>-<mode>-*`: a pods namespace `…-pods` holding the three backends 10.244.0.11-13
//! (`ekube-probe serve`: TCP/UDP servers answering with their name and the source address they
//! saw) and a client pod `…-cli` (10.244.1.2), both joined to the node by veth pairs created
//! between the namespaces, so nothing appears in the root namespace. The node routes the
//! service range to `lo`, so an untranslated connect is refused. The proxy runs on the node
//! through the lab; the test thread enters the node's namespace to talk to the server. The
//! proxy's rules live in the node's namespace only and go away with it. Servers, clients and
//! objects are the shared fixtures of `ekube_tests::datapath`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    net::Ipv4Addr,
    path::PathBuf,
    process::{Child, Stdio},
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use ekube_lab::{EXT_IP, Lab, node_ip};
use ekube_proxy::{iptables::render as ipt, nftables::render as nft};
use ekube_tests::datapath::{
    Reply, TCP_PORT, UDP_PORT, client, cluster_ip_service, endpoint_slice, endpoints, lab_client,
    names, output, proxy_argv, serve, tally_from, tcp_ports,
};
use ekube_tests::{netns, wait_for};
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

const PREFIX: &str = "ekipt-";
const BACKENDS: [(&str, Ipv4Addr); 3] = [
    ("b1", Ipv4Addr::new(10, 244, 0, 11)),
    ("b2", Ipv4Addr::new(10, 244, 0, 12)),
    ("b3", Ipv4Addr::new(10, 244, 0, 13)),
];
/// The lab's name (one lab at a time: the runs take turns).
const LAB: &str = "ekipt";
const NODE_IP: Ipv4Addr = node_ip(1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
/// The node's address towards the pods: the source of masqueraded traffic.
const NODE_POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
const ECONNREFUSED: i32 = 111;
/// healthCheckNodePorts of the two externalTrafficPolicy: Local Services.
const LOCAL_HEALTH_PORT: u16 = 30191;
const REMOTE_HEALTH_PORT: u16 = 30192;

/// The modes' runs share two CPUs with everything else: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// How the proxy under test writes its rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RuleMode {
    IptablesLegacy,
    IptablesNft,
    Nftables,
}

impl RuleMode {
    fn name(self) -> &'static str {
        match self {
            RuleMode::IptablesLegacy => "legacy",
            RuleMode::IptablesNft => "nft",
            RuleMode::Nftables => "nftables",
        }
    }

    fn proxy_args(self) -> &'static [&'static str] {
        match self {
            RuleMode::IptablesLegacy => &["--mode", "iptables", "--iptables-variant", "legacy"],
            RuleMode::IptablesNft => &["--mode", "iptables", "--iptables-variant", "nft"],
            RuleMode::Nftables => &["--mode", "nftables"],
        }
    }

    /// The name of service port `name`'s service chain, and of its NodePort entry chain.
    fn chains(self, name: &str) -> (String, String) {
        match self {
            RuleMode::Nftables => (
                nft::service_chain(name, "tcp"),
                nft::external_chain(name, "tcp"),
            ),
            _ => (
                ipt::service_chain(name, "tcp"),
                ipt::external_chain(name, "tcp"),
            ),
        }
    }
}

/// A lab node with the proxy in a rule mode; dropping it removes everything.
struct Fixture {
    mode: RuleMode,
    rt: tokio::runtime::Runtime,
    client: Client,
    /// The backends and the conntrack watcher.
    children: Vec<Child>,
    /// The proxy's PID, while it runs.
    proxy: Option<u32>,
    /// This thread inside the node's namespace, where the server is.
    _in_node: netns::Entered,
    lab: Lab,
}

impl Fixture {
    fn new(mode: RuleMode) -> Self {
        netns::clear_stale(PREFIX);
        let lab = ekube_tests::server_lab(LAB, 1);
        let in_node = netns::Entered::enter(&lab.host("n1").unwrap().netns)
            .expect("entering the node's namespace");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let client = lab_client(&rt, &lab);
        let mut fx = Self {
            mode,
            rt,
            client,
            children: Vec::new(),
            proxy: None,
            _in_node: in_node,
            lab,
        };
        fx.build_network();
        fx.watch_conntrack();
        fx.start_backends();
        fx.start_proxy();
        fx
    }

    /// The namespace of `host`: `node` and `ext` are the lab's, `pods` and `cli` this run's.
    fn ns(&self, host: &str) -> String {
        match host {
            "node" => self.lab.host("n1").unwrap().netns.clone(),
            "ext" => self.lab.host("ext").unwrap().netns.clone(),
            _ => format!("{PREFIX}{}-{}-{host}", std::process::id(), self.mode.name()),
        }
    }

    fn build_network(&self) {
        let node = self.ns("node");
        // (node interface, node address, peer namespace, peer addresses)
        let links: [(&str, &str, &str, &[&str]); 2] = [
            (
                "vpods",
                "10.244.0.1/24",
                "pods",
                &["10.244.0.11/24", "10.244.0.12/24", "10.244.0.13/24"],
            ),
            ("vcli", "10.244.1.1/24", "cli", &["10.244.1.2/24"]),
        ];
        for (iface, addr, peer, peer_addrs) in links {
            let peer_ns = self.ns(peer);
            netns::ip(&["netns", "add", &peer_ns]);
            netns::ip(&["-n", &peer_ns, "link", "set", "lo", "up"]);
            netns::ip(&[
                "-n", &node, "link", "add", iface, "type", "veth", "peer", "name", "eth0", "netns",
                &peer_ns,
            ]);
            netns::ip(&["-n", &node, "addr", "add", addr, "dev", iface]);
            netns::ip(&["-n", &node, "link", "set", iface, "up"]);
            for a in peer_addrs {
                netns::ip(&["-n", &peer_ns, "addr", "add", a, "dev", "eth0"]);
            }
            netns::ip(&["-n", &peer_ns, "link", "set", "eth0", "up"]);
            let gw = addr.split('/').next().unwrap();
            netns::ip(&["-n", &peer_ns, "route", "add", "default", "via", gw]);
        }
        // An untranslated connect to the service range reaches the node itself and is refused.
        netns::ip(&[
            "-n",
            &node,
            "route",
            "add",
            "local",
            "10.96.0.0/12",
            "dev",
            "lo",
        ]);
    }

    fn start_backends(&mut self) {
        let args: Vec<String> = BACKENDS.iter().map(|(n, ip)| format!("{n}={ip}")).collect();
        self.children.push(serve(&self.ns("pods"), &args));
    }

    fn log_path(&self) -> PathBuf {
        self.lab.log_path("n1", "proxy").unwrap()
    }

    fn start_proxy(&mut self) {
        let n1 = self.lab.host("n1").unwrap();
        let mut argv = proxy_argv(&self.lab, n1, self.mode.proxy_args());
        argv.extend(
            [
                "--node-ip",
                &NODE_IP.to_string(),
                "--cluster-cidr",
                "10.244.0.0/16",
                "--iptables-min-sync-period",
                "200ms",
            ]
            .map(String::from),
        );
        // The rule writes with their times, for a failure message.
        let log = "info,ekube_proxy::iptables=debug,ekube_proxy::nftables=debug";
        let pid = self
            .lab
            .spawn_with_env("n1", "proxy", &argv, &[("RUST_LOG", log)])
            .expect("starting ekube proxy");
        self.proxy = Some(pid);
        // Healthy means the initial full sync is in the tables: the services chain exists and
        // is jumped to from prerouting, and so is the masquerading.
        let result = wait_for(
            Duration::from_secs(30),
            "the proxy's initial sync of its rules",
            || {
                if self.lab.pids("n1", "proxy").is_empty() {
                    anyhow::bail!("ekube proxy exited");
                }
                let nat = self.save("nat");
                Ok(match self.mode {
                    RuleMode::Nftables => {
                        nat.contains("jump services") && nat.contains("jump masquerading")
                    }
                    _ => nat.contains("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES")
                        && nat.contains("-A KUBE-POSTROUTING"),
                })
            },
        );
        if let Err(e) = result {
            panic!("{e:#}\nproxy log:\n{}", self.proxy_log());
        }
    }

    /// `kill -9`.
    fn kill_proxy(&mut self) {
        if let Some(pid) = self.proxy.take() {
            self.lab.kill(pid).expect("killing the proxy");
        }
    }

    fn proxy_log(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let mut start = log.len().saturating_sub(4000);
        while !log.is_char_boundary(start) {
            start += 1;
        }
        log[start..].to_string()
    }

    fn conntrack_log(&self) -> PathBuf {
        self.lab
            .host("n1")
            .unwrap()
            .log_dir()
            .join("conntrack-events.log")
    }

    /// Records the node's UDP conntrack events, with times, for a failure message.
    fn watch_conntrack(&mut self) {
        let log = fs::File::create(self.conntrack_log()).unwrap();
        let child = netns::nsenter(&self.ns("node"))
            .args(["conntrack", "-E", "-p", "udp", "-o", "timestamp"])
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("starting conntrack -E");
        self.children.push(child);
    }

    /// The node's UDP conntrack entries and events (for a failure message).
    fn conntrack(&self) -> String {
        let out = netns::nsenter(&self.ns("node"))
            .args(["conntrack", "-L", "-p", "udp"])
            .output()
            .expect("running conntrack");
        let events = fs::read_to_string(self.conntrack_log()).unwrap_or_default();
        format!(
            "{}\nevents:\n{events}",
            String::from_utf8_lossy(&out.stdout)
        )
    }

    /// The node's rules: `iptables-save -t <table>` with this run's variant, or in nftables
    /// mode the whole `ip kube-proxy` table whatever `table` says.
    fn save(&self, table: &str) -> String {
        let argv = match self.mode {
            RuleMode::Nftables => vec![
                "nft".into(),
                "list".into(),
                "table".into(),
                "ip".into(),
                nft::TABLE.into(),
            ],
            mode => vec![
                format!("iptables-{}-save", mode.name()),
                "-t".into(),
                table.into(),
            ],
        };
        let out = netns::nsenter(&self.ns("node"))
            .args(&argv)
            .output()
            .expect("reading the rules");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `ekube-probe client` with `args` in namespace `host` (`node` for the node itself):
    /// `tcp|udp <ip> <port> <count> [--source <ip>]` prints `ok <name> <source seen by the
    /// backend> <peer ip:port>` or `err <errno>` per attempt, `http <ip> <port>` prints
    /// `<status> <body>` (status 0 when there is no answer).
    fn run_client(&self, host: &str, args: &[String]) -> String {
        let child = client(&self.ns(host), args)
            .spawn()
            .expect("starting the client");
        output(child, &format!("{} in {host}", args.join(" ")))
    }

    fn client(&self, host: &str, kind: &str, ip: Ipv4Addr, port: u16, count: u32) -> Vec<Reply> {
        let args = [kind, &ip.to_string(), &port.to_string(), &count.to_string()];
        let out = self.run_client(host, &args.map(String::from));
        Reply::parse_all(&out)
    }

    /// `GET /` on `ip:port` from `host`: status (0 without an answer) and JSON body.
    fn http(&self, host: &str, ip: Ipv4Addr, port: u16) -> (u16, serde_json::Value) {
        let out = self.run_client(
            host,
            &["http", &ip.to_string(), &port.to_string()].map(String::from),
        );
        let (code, body) = out.trim().split_once(' ').unwrap_or((out.trim(), ""));
        (
            code.parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or_default(),
        )
    }

    fn tcp(&self, host: &str, ip: Ipv4Addr, port: u16, count: u32) -> Vec<Reply> {
        self.client(host, "tcp", ip, port, count)
    }

    /// Polls `count` TCP connects until `done`, within `timeout`.
    fn poll_tcp(
        &self,
        host: &str,
        (ip, port): (Ipv4Addr, u16),
        count: u32,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[Reply]) -> bool,
    ) -> Vec<Reply> {
        let args = [
            "tcp",
            &ip.to_string(),
            &port.to_string(),
            &count.to_string(),
        ];
        self.poll(host, &args.map(String::from), timeout, what, done)
    }

    /// Runs the client with `args` until its replies are `done`, within `timeout`.
    fn poll(
        &self,
        host: &str,
        args: &[String],
        timeout: Duration,
        what: &str,
        done: impl Fn(&[Reply]) -> bool,
    ) -> Vec<Reply> {
        let deadline = Instant::now() + timeout;
        loop {
            let replies = Reply::parse_all(&self.run_client(host, args));
            if done(&replies) {
                return replies;
            }
            assert!(
                Instant::now() < deadline,
                "{what} not seen within {timeout:?}; last replies: {replies:?}\nproxy log:\n{}\nnat:\n{}",
                self.proxy_log(),
                self.save("nat")
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn slices(&self) -> Api<EndpointSlice> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn create_service(&self, spec: serde_json::Value) -> Service {
        let svc: Service = serde_json::from_value(spec).unwrap();
        self.rt
            .block_on(self.services().create(&PostParams::default(), &svc))
            .expect("creating a service")
    }

    fn create_slice(&self, service: &str, ports: serde_json::Value, endpoints: serde_json::Value) {
        let slice = endpoint_slice(service, ports, endpoints);
        self.rt
            .block_on(self.slices().create(&PostParams::default(), &slice))
            .expect("creating an endpointslice");
    }

    fn set_endpoints(&self, service: &str, endpoints: serde_json::Value) {
        let patch = json!({ "endpoints": endpoints });
        self.rt
            .block_on(self.slices().patch(
                &format!("{service}-1"),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            ))
            .expect("patching an endpointslice");
    }

    fn delete_service(&self, name: &str) {
        self.rt
            .block_on(self.services().delete(name, &DeleteParams::default()))
            .expect("deleting a service");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for host in ["pods", "cli"] {
            netns::delete(&self.ns(host));
        }
    }
}

fn all_ready() -> serde_json::Value {
    endpoints(&BACKENDS.map(|(_, ip)| (ip, true, None)))
}

fn proxy_in_rule_mode(mode: RuleMode) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut fx = Fixture::new(mode);
    let node_name = fx.ns("node");
    let web = Ipv4Addr::new(10, 96, 200, 10);
    let sticky = Ipv4Addr::new(10, 96, 200, 11);
    let shrink = Ipv4Addr::new(10, 96, 200, 12);
    let empty = Ipv4Addr::new(10, 96, 200, 13);
    let np_ip = Ipv4Addr::new(10, 96, 200, 14);
    let local_ip = Ipv4Addr::new(10, 96, 200, 15);
    let remote_ip = Ipv4Addr::new(10, 96, 200, 16);
    let npu_ip = Ipv4Addr::new(10, 96, 200, 17);
    let hairpin_ip = Ipv4Addr::new(10, 96, 200, 18);

    fx.create_service(json!({
        "metadata": { "name": "web" },
        "spec": {
            "clusterIP": web.to_string(),
            "ports": [
                { "name": "http", "protocol": "TCP", "port": 80, "targetPort": "web-http" },
                { "name": "dns", "protocol": "UDP", "port": 53, "targetPort": UDP_PORT },
            ],
        },
    }));
    fx.create_slice(
        "web",
        json!([
            { "name": "http", "protocol": "TCP", "port": TCP_PORT },
            { "name": "dns", "protocol": "UDP", "port": UDP_PORT },
        ]),
        all_ready(),
    );
    let mut sticky_svc = cluster_ip_service("sticky", sticky);
    sticky_svc["spec"]["sessionAffinity"] = json!("ClientIP");
    sticky_svc["spec"]["sessionAffinityConfig"] = json!({ "clientIP": { "timeoutSeconds": 600 } });
    fx.create_service(sticky_svc);
    fx.create_slice("sticky", tcp_ports(), all_ready());
    fx.create_service(cluster_ip_service("shrink", shrink));
    fx.create_slice("shrink", tcp_ports(), all_ready());
    fx.create_service(cluster_ip_service("empty", empty));
    fx.create_slice(
        "empty",
        tcp_ports(),
        endpoints(&[(BACKENDS[0].1, false, None)]),
    );
    let mut np = cluster_ip_service("np", np_ip);
    np["spec"]["type"] = json!("NodePort");
    let node_port = fx.create_service(np).spec.unwrap().ports.unwrap()[0]
        .node_port
        .expect("nodePort allocated") as u16;
    fx.create_slice("np", tcp_ports(), all_ready());
    let mut local = cluster_ip_service("local", local_ip);
    local["spec"]["type"] = json!("LoadBalancer");
    local["spec"]["externalTrafficPolicy"] = json!("Local");
    local["spec"]["healthCheckNodePort"] = json!(LOCAL_HEALTH_PORT);
    let local_port = fx.create_service(local).spec.unwrap().ports.unwrap()[0]
        .node_port
        .expect("nodePort allocated") as u16;
    fx.create_slice(
        "local",
        tcp_ports(),
        endpoints(&[
            (BACKENDS[0].1, true, Some(&node_name)),
            (BACKENDS[1].1, true, Some("another-node")),
        ]),
    );

    // eTP=Local with every endpoint on another node.
    let mut remote = cluster_ip_service("remote", remote_ip);
    remote["spec"]["type"] = json!("LoadBalancer");
    remote["spec"]["externalTrafficPolicy"] = json!("Local");
    remote["spec"]["healthCheckNodePort"] = json!(REMOTE_HEALTH_PORT);
    let remote_port = fx.create_service(remote).spec.unwrap().ports.unwrap()[0]
        .node_port
        .expect("nodePort allocated") as u16;
    fx.create_slice(
        "remote",
        tcp_ports(),
        endpoints(&[(BACKENDS[1].1, true, Some("another-node"))]),
    );
    // A UDP NodePort, and a Service whose only endpoint is b1 (for hairpin).
    let udp_port = fx
        .create_service(json!({
            "metadata": { "name": "udp-np" },
            "spec": {
                "type": "NodePort",
                "clusterIP": npu_ip.to_string(),
                "ports": [{ "name": "dns", "protocol": "UDP", "port": 53, "targetPort": UDP_PORT }],
            },
        }))
        .spec
        .unwrap()
        .ports
        .unwrap()[0]
        .node_port
        .expect("nodePort allocated") as u16;
    fx.create_slice(
        "udp-np",
        json!([{ "name": "dns", "protocol": "UDP", "port": UDP_PORT }]),
        all_ready(),
    );
    fx.create_service(cluster_ip_service("hp", hairpin_ip));
    fx.create_slice("hp", tcp_ports(), endpoints(&[(BACKENDS[0].1, true, None)]));

    // ClusterIP from a pod on the node: 300 connections spread over the three backends; the
    // client sees the ClusterIP, the backend the pod's own address (no masquerade).
    fx.poll_tcp(
        "cli",
        (web, 80),
        1,
        Duration::from_secs(15),
        "service web",
        |r| matches!(r, [Reply::Ok { .. }]),
    );
    let counts = tally_from(
        &fx.tcp("cli", web, 80, 300),
        "10.96.200.10:80",
        Some(CLIENT_IP),
    );
    assert_eq!(counts.len(), 3, "every backend used: {counts:?}");
    for (name, n) in &counts {
        assert!(
            (60..=141).contains(n),
            "{name} got {n}/300, outside 20-47%: {counts:?}"
        );
    }
    // The rules are kube-proxy's: chain named after default/web:http, comment included.
    let nat = fx.save("nat");
    let (chain, _) = mode.chains("default/web:http");
    let expected = match mode {
        RuleMode::Nftables => vec![
            format!("10.96.200.10 . tcp . 80 : goto {chain}"),
            "numgen random mod 3 vmap".to_string(),
        ],
        // (iptables-save prints the probability with 11 decimals: 0.33333333349.)
        _ => vec![
            "--comment \"default/web:http cluster IP\"".to_string(),
            format!("-j {chain}"),
            "--probability 0.33333333".to_string(),
        ],
    };
    for rule in expected {
        assert!(nat.contains(&rule), "{rule} missing:\n{nat}");
    }

    // From the node itself (nat OUTPUT): masqueraded to the node's address on the pod side.
    let counts = tally_from(
        &fx.tcp("node", web, 80, 10),
        "10.96.200.10:80",
        Some(NODE_POD_IP),
    );
    assert_eq!(counts.values().sum::<usize>(), 10);

    // UDP: replies come from ClusterIP:53.
    let udp = fx.client("cli", "udp", web, 53, 30);
    let counts = tally_from(&udp, "10.96.200.10:53", Some(CLIENT_IP));
    assert_eq!(counts.values().sum::<usize>(), 30, "{counts:?}");

    // ClientIP affinity: one client, one backend.
    let counts = tally_from(
        &fx.tcp("cli", sticky, 80, 50),
        "10.96.200.11:80",
        Some(CLIENT_IP),
    );
    assert_eq!(counts.len(), 1, "50 connections on one backend: {counts:?}");

    // NodePort from outside: spread, masqueraded to the node's pod-side address.
    let peer = format!("{NODE_IP}:{node_port}");
    let counts = tally_from(
        &fx.tcp("ext", NODE_IP, node_port, 60),
        &peer,
        Some(NODE_POD_IP),
    );
    assert!(
        counts.len() >= 2,
        "NodePort spread over backends: {counts:?}"
    );
    let (_, external) = mode.chains("default/np:http");
    assert!(nat.contains(&external), "{external} missing:\n{nat}");

    // externalTrafficPolicy: Local: only this node's endpoint, and it sees the client's address.
    let peer = format!("{NODE_IP}:{local_port}");
    let counts = tally_from(&fx.tcp("ext", NODE_IP, local_port, 20), &peer, Some(EXT_IP));
    assert_eq!(counts, BTreeMap::from([("b1".to_string(), 20)]));
    // ...while the ClusterIP of the same Service balances over both.
    let counts = tally_from(
        &fx.tcp("cli", local_ip, 80, 60),
        "10.96.200.15:80",
        Some(CLIENT_IP),
    );
    assert_eq!(counts.len(), 2, "{counts:?}");

    // Its health check port says 200 with one local endpoint; a Local Service without one
    // answers 503 there, and its NodePort does not answer from this node.
    let (code, body) = fx.http("ext", NODE_IP, LOCAL_HEALTH_PORT);
    assert_eq!(
        code,
        200,
        "health check of local: {body}\n{}",
        fx.proxy_log()
    );
    assert_eq!(body["localEndpoints"], 1, "{body}");
    assert_eq!(body["service"]["name"], "local", "{body}");
    let (code, body) = fx.http("ext", NODE_IP, REMOTE_HEALTH_PORT);
    assert_eq!(
        code,
        503,
        "health check of remote: {body}\n{}\nfilter:\n{}",
        fx.proxy_log(),
        fx.save("filter")
    );
    assert_eq!(body["localEndpoints"], 0, "{body}");
    let replies = fx.tcp("ext", NODE_IP, remote_port, 1);
    assert!(
        matches!(replies.as_slice(), [Reply::Err(_)]),
        "remote answered on this node: {replies:?}"
    );

    // UDP NodePort from outside: replies come from <node IP>:<nodePort>.
    let udp = fx.client("ext", "udp", NODE_IP, udp_port, 30);
    assert!(
        udp.iter().all(|r| matches!(r, Reply::Ok { .. })),
        "UDP NodePort {udp_port}: {udp:?}\nrules:\n{}\n{}\nconntrack:\n{}\nproxy log:\n{}",
        fx.save("nat"),
        fx.save("filter"),
        fx.conntrack(),
        fx.proxy_log()
    );
    let counts = tally_from(&udp, &format!("{NODE_IP}:{udp_port}"), Some(NODE_POD_IP));
    assert_eq!(counts.values().sum::<usize>(), 30, "{counts:?}");

    // A UDP flow stays on its endpoint, and when that endpoint goes its next datagram is
    // balanced again: the proxy removes the flow's conntrack entry, as kube-proxy does. Without
    // that, every datagram of a client that keeps sending from one socket would follow the old
    // entry to the removed endpoint (whose server still answers here) until the flow went idle.
    let flows = [
        ("cli", npu_ip, 53, format!("{npu_ip}:53")),
        ("ext", NODE_IP, udp_port, format!("{NODE_IP}:{udp_port}")),
    ];
    let args = |(_, ip, port, _): &(&str, Ipv4Addr, u16, String), count: u32| {
        [
            "udp".to_string(),
            ip.to_string(),
            port.to_string(),
            count.to_string(),
            "--source-port".into(),
            "40053".into(),
        ]
    };
    let mut first = BTreeSet::new();
    for flow in &flows {
        let replies = Reply::parse_all(&fx.run_client(flow.0, &args(flow, 3)));
        let counts = tally_from(&replies, &flow.3, None);
        let answers: Vec<usize> = counts.values().copied().collect();
        assert_eq!(answers, [3], "one UDP flow, one endpoint: {counts:?}");
        first.extend(counts.into_keys());
    }
    let kept: Vec<_> = BACKENDS
        .iter()
        .filter(|(name, _)| !first.contains(*name))
        .map(|(_, ip)| (*ip, true, None))
        .collect();
    fx.set_endpoints("udp-np", endpoints(&kept));
    for flow in &flows {
        fx.poll(
            flow.0,
            &args(flow, 1),
            Duration::from_secs(10),
            &format!("the UDP flow to {} moved off {first:?}", flow.3),
            |r| matches!(r, [Reply::Ok { name, .. }] if !first.contains(name)),
        );
    }

    // Hairpin: b1 reaching its own Service lands on itself (masqueraded, as kube-proxy does).
    let args = [
        "tcp",
        &hairpin_ip.to_string(),
        "80",
        "5",
        "--source",
        &BACKENDS[0].1.to_string(),
    ];
    let out = fx.run_client("pods", &args.map(String::from));
    let hairpin: Vec<Reply> = Reply::parse_all(&out);
    let counts = tally_from(&hairpin, "10.96.200.18:80", Some(NODE_POD_IP));
    assert_eq!(counts, BTreeMap::from([("b1".to_string(), 5)]));

    // An endpoint removed: no new connections to it once synced.
    fx.set_endpoints(
        "shrink",
        endpoints(&[(BACKENDS[0].1, true, None), (BACKENDS[1].1, true, None)]),
    );
    fx.poll_tcp(
        "cli",
        (shrink, 80),
        20,
        Duration::from_secs(5),
        "endpoint b3 of shrink removed",
        |r| {
            r.len() == 20
                && r.iter().all(|x| matches!(x, Reply::Ok { .. }))
                && !names(r).contains("b3")
        },
    );
    let counts = tally_from(
        &fx.tcp("cli", shrink, 80, 60),
        "10.96.200.12:80",
        Some(CLIENT_IP),
    );
    assert!(
        !counts.contains_key("b3"),
        "b3 still chosen after the sync: {counts:?}"
    );

    // No ready endpoint: refused (REJECT in the filter table). A DROP would end in the client's
    // 3 s timeout instead of ECONNREFUSED, so the error alone tells them apart; the time it
    // took is not asserted (it includes starting the client, slow on a loaded machine).
    assert_eq!(fx.tcp("cli", empty, 80, 1), [Reply::Err(ECONNREFUSED)]);

    // A deleted Service: its rules go, the connect reaches the node itself and is refused.
    fx.delete_service("shrink");
    fx.poll_tcp(
        "cli",
        (shrink, 80),
        1,
        Duration::from_secs(5),
        "service shrink removed",
        |r| r == [Reply::Err(ECONNREFUSED)],
    );

    // kill -9: the rules stay and keep serving; a change made meanwhile applies on restart,
    // and the chains of the Service deleted meanwhile are cleared.
    fx.kill_proxy();
    let counts = tally_from(
        &fx.tcp("cli", web, 80, 10),
        "10.96.200.10:80",
        Some(CLIENT_IP),
    );
    assert_eq!(counts.values().sum::<usize>(), 10);
    fx.delete_service("np");
    fx.start_proxy();
    fx.poll_tcp(
        "ext",
        (NODE_IP, node_port),
        1,
        Duration::from_secs(10),
        "NodePort of deleted np refused",
        |r| r == [Reply::Err(ECONNREFUSED)],
    );
    let nat = fx.save("nat");
    assert!(
        !nat.contains("default/np"),
        "rules of the deleted service np remain:\n{nat}"
    );
    assert!(!nat.contains(&mode.chains("default/np:http").0), "{nat}");
    // Jumps were not installed twice (nftables: once from prerouting, once from output).
    let (jump, count) = match mode {
        RuleMode::Nftables => ("jump services", 2),
        _ => (
            "-A PREROUTING -m comment --comment \"kubernetes service portals\"",
            1,
        ),
    };
    assert_eq!(nat.matches(jump).count(), count, "{nat}");
    let counts = tally_from(
        &fx.tcp("cli", web, 80, 30),
        "10.96.200.10:80",
        Some(CLIENT_IP),
    );
    assert_eq!(counts.len(), 3, "{counts:?}");
}

#[test]
fn iptables_legacy() {
    proxy_in_rule_mode(RuleMode::IptablesLegacy);
}

#[test]
fn iptables_nft() {
    proxy_in_rule_mode(RuleMode::IptablesNft);
}

#[test]
fn nftables() {
    proxy_in_rule_mode(RuleMode::Nftables);
}
