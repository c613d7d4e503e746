//! End-to-end tests of `ekube proxy` (needs root: cgroups, bpffs, network namespaces).
//!
//! Each test brings up a one-node lab (`ekube_tests::server_lab`: `ekube server` on n1
//! and nothing else) and runs the real `ekube proxy` binary on n1 through the lab, so it
//! attaches to n1's cgroup v2 subtree and pins under `/sys/fs/bpf/ekube/<lab>-n1/`. Backends
//! are `ekube-probe serve` TCP/UDP servers bound to 127.0.0.11-13 in n1's namespace that answer
//! with their own name; the namespace also routes the service range to `lo`, so a connect
//! nothing translates is refused rather than unroutable. The test thread enters n1's namespace
//! to talk to the server and the proxy's metrics, and writes the Services and EndpointSlices.
//! Clients are `ekube-probe client` runs started in the namespace with `nsenter` (which,
//! unlike `ip netns exec`, keeps the real `/sys`) and, unless a case wants an outside client,
//! inside n1's cgroup. The tests serialize on a mutex (they share the two CPUs with everything
//! else); the lab's guard ends the proxy and removes its pins and cgroup at the end, and
//! bringing a lab up removes what a crashed run left. The servers, clients and objects are the
//! fixtures of `ekube_tests::datapath`, shared with `proxy_iptables` and `nodeport`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::{self, File},
    io::{Read, Write},
    net::{Ipv4Addr, TcpStream},
    path::PathBuf,
    process::Child,
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use ekube_lab::Lab;
use ekube_proxy::{
    Frontend, Protocol,
    datapath::{BpfMaps, DatapathConfig, dump_store, maps::MapStore},
    service::{DesiredService, ServiceView, SliceView, desired_state},
};
use ekube_tests::datapath::{
    Reply, TCP_PORT, UDP_PORT, cgroup_procs, client, cluster_ip_service, collect, endpoint_slice,
    endpoints, in_cgroup as in_cgroup_of, lab_client, names, node_datapath, proxy_argv, serve,
    tally_from, tcp_ports,
};
use ekube_tests::{netns, wait_for};
use futures::StreamExt;
use k8s_openapi::api::{
    core::v1::{Event, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

/// The lab's name (one lab at a time: the tests take turns).
const LAB: &str = "ekpx";
/// Where the proxy serves its metrics and health, on n1's loopback.
const METRICS_PORT: u16 = 10249;
const HEALTHZ_PORT: u16 = 10256;
const BACKENDS: [(&str, Ipv4Addr); 3] = [
    ("b1", Ipv4Addr::new(127, 0, 0, 11)),
    ("b2", Ipv4Addr::new(127, 0, 0, 12)),
    ("b3", Ipv4Addr::new(127, 0, 0, 13)),
];
/// Routed to `lo` in the test namespace; every test Service's ClusterIP is in it.
const SERVICE_RANGE: &str = "10.96.0.0/12";
/// A NodePort address of the "node" (TEST-NET-1, never routed anywhere).
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// The ClusterIP of service `web`, where an untranslated server also listens ("direct").
const WEB_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 100, 10);
const ECONNREFUSED: i32 = 111;

/// The tests share two CPUs with everything else: run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Everything one test needs; dropping it ends the backends, then the lab (the proxy, its
/// pins and its cgroup with it).
struct Fixture {
    dp: DatapathConfig,
    /// The backends' process; it exits when its stdin closes, and is killed on drop.
    backends: Child,
    cgroup_procs: File,
    rt: tokio::runtime::Runtime,
    client: Client,
    /// The proxy's PID, while it runs.
    proxy: Option<u32>,
    /// This thread inside n1's namespace, where the server and the proxy's ports are.
    _in_n1: netns::Entered,
    lab: Lab,
}

impl Fixture {
    fn new() -> Self {
        let lab = ekube_tests::server_lab(LAB, 1);
        let n1 = lab.host("n1").unwrap();
        let in_n1 = netns::Entered::enter(&n1.netns).expect("entering n1");
        let backends = start_backends(&n1.netns);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let client = lab_client(&rt, &lab);
        let mut fx = Self {
            dp: node_datapath(n1),
            backends,
            cgroup_procs: cgroup_procs(n1),
            rt,
            client,
            proxy: None,
            _in_n1: in_n1,
            lab,
        };
        fx.start_proxy();
        fx
    }

    fn log_path(&self) -> PathBuf {
        self.lab.log_path("n1", "proxy").unwrap()
    }

    /// Starts `ekube proxy` and waits until it reports healthy (initial sync done).
    fn start_proxy(&mut self) {
        let n1 = self.lab.host("n1").unwrap();
        let argv = proxy_argv(
            &self.lab,
            n1,
            &[
                "--node-ip",
                &NODE_IP.to_string(),
                "--metrics-bind-address",
                &format!("127.0.0.1:{METRICS_PORT}"),
                "--healthz-bind-address",
                &format!("127.0.0.1:{HEALTHZ_PORT}"),
            ],
        );
        let pid = self
            .lab
            .spawn("n1", "proxy", &argv)
            .expect("starting ekube proxy");
        self.proxy = Some(pid);
        // Generous: verifying the tc programs takes under a second on an idle machine but tens of
        // seconds on one whose cores are busy with builds.
        let result = wait_for(
            Duration::from_secs(90),
            "ekube proxy to report healthy",
            || {
                if self.lab.pids("n1", "proxy").is_empty() {
                    bail!("ekube proxy exited");
                }
                Ok(http_get(HEALTHZ_PORT, "/healthz").is_ok_and(|(code, _)| code == 200))
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

    fn metric(&self, name: &str) -> f64 {
        let (code, body) = http_get(METRICS_PORT, "/metrics").expect("GET /metrics");
        assert_eq!(code, 200, "/metrics: {body}");
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing:\n{body}"))
    }

    /// Starts a client process in the namespace (and the cgroup if `in_cgroup`).
    fn spawn_client(&self, in_cgroup: bool, args: &[String]) -> Child {
        let mut cmd = client(&self.dp.node_name, args);
        if in_cgroup {
            in_cgroup_of(&mut cmd, &self.cgroup_procs);
        }
        cmd.spawn().expect("starting the client")
    }

    /// Runs `kind ip port count` to completion and parses its lines.
    fn client(
        &self,
        in_cgroup: bool,
        kind: &str,
        ip: Ipv4Addr,
        port: u16,
        count: u32,
    ) -> Vec<Reply> {
        let args = [
            kind.to_string(),
            ip.to_string(),
            port.to_string(),
            count.to_string(),
        ];
        collect(self.spawn_client(in_cgroup, &args), &args.join(" "))
    }

    fn tcp(&self, ip: Ipv4Addr, port: u16, count: u32) -> Vec<Reply> {
        self.client(true, "tcp", ip, port, count)
    }

    /// The pinned maps as they are, read without the proxy's help and without pruning.
    fn pinned(&self) -> BpfMaps {
        BpfMaps::open_pinned(&self.dp).expect("opening the pinned maps")
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

    fn create_slice(
        &self,
        service: &str,
        ports: serde_json::Value,
        endpoints: &[(Ipv4Addr, bool)],
    ) {
        let slice = endpoint_slice(service, ports, endpoint_list(endpoints));
        self.rt
            .block_on(self.slices().create(&PostParams::default(), &slice))
            .expect("creating an endpointslice");
    }

    fn set_endpoints(&self, service: &str, endpoints: &[(Ipv4Addr, bool)]) {
        let patch = json!({ "endpoints": endpoint_list(endpoints) });
        self.rt
            .block_on(self.slices().patch(
                &format!("{service}-1"),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            ))
            .expect("patching an endpointslice");
    }

    /// What the API asks for, computed with the proxy's own builder (one oracle; the cases
    /// check the traffic independently).
    fn desired_from_api(&self) -> BTreeMap<Frontend, Vec<ekube_proxy::BackendAddr>> {
        let all_services: Vec<Service> = self
            .rt
            .block_on(Api::<Service>::all(self.client.clone()).list(&ListParams::default()))
            .unwrap()
            .items;
        let all_slices: Vec<EndpointSlice> = self
            .rt
            .block_on(Api::<EndpointSlice>::all(self.client.clone()).list(&ListParams::default()))
            .unwrap()
            .items;
        let mut want = BTreeMap::new();
        for svc in &all_services {
            let svc = ServiceView::of(svc).unwrap();
            let slices: Vec<SliceView> = all_slices
                .iter()
                .filter_map(SliceView::of)
                .filter(|(owner, _)| *owner == svc.name)
                .map(|(_, view)| view)
                .collect();
            let desired: DesiredService = desired_state(&svc, &slices).unwrap();
            for (frontend, spec) in desired {
                want.insert(frontend, spec.backends);
            }
        }
        want
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.backends.kill();
        let _ = self.backends.wait();
    }
}

/// One line of `out`, read byte by byte so nothing after it is consumed.
fn first_line(out: &mut impl Read) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8];
    while out.read(&mut byte).expect("reading the client") == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// Endpoints `(ip, ready)` as EndpointSlice JSON.
fn endpoint_list(list: &[(Ipv4Addr, bool)]) -> serde_json::Value {
    let list: Vec<_> = list.iter().map(|&(ip, ready)| (ip, ready, None)).collect();
    endpoints(&list)
}

fn all_ready() -> Vec<(Ipv4Addr, bool)> {
    BACKENDS.iter().map(|(_, ip)| (*ip, true)).collect()
}

/// `ip:port` as a client prints the peer it connected to.
fn sa(ip: Ipv4Addr, port: u16) -> String {
    format!("{ip}:{port}")
}

/// A tiny HTTP/1.1 GET on loopback: (status, body).
fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Routes the service range locally in namespace `ns` and starts the backends and a "direct"
/// server on [`WEB_IP`]:80 there.
fn start_backends(ns: &str) -> Child {
    netns::ip(&[
        "-n",
        ns,
        "route",
        "add",
        "local",
        SERVICE_RANGE,
        "dev",
        "lo",
    ]);
    let mut args: Vec<String> = BACKENDS.iter().map(|(n, ip)| format!("{n}={ip}")).collect();
    args.push(format!("direct={WEB_IP}:80"));
    serve(ns, &args)
}

/// Polls `tcp ip:port` rounds of `n` until `done(replies)`, within `timeout`.
fn poll_tcp(
    fx: &Fixture,
    ip: Ipv4Addr,
    port: u16,
    n: u32,
    timeout: Duration,
    what: &str,
    done: impl Fn(&[Reply]) -> bool,
) -> Vec<Reply> {
    let deadline = Instant::now() + timeout;
    loop {
        let replies = fx.tcp(ip, port, n);
        if done(&replies) {
            return replies;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not seen within {timeout:?}; last replies: {replies:?}\nproxy log:\n{}",
            fx.proxy_log()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Raw consistency of the pinned maps: no slot without its record, no backend nothing uses,
/// no backend stored twice, no service listing a backend twice.
fn assert_no_stale_entries(maps: &BpfMaps) {
    let services = maps.services().unwrap();
    let backends = maps.backends().unwrap();
    let records: BTreeMap<_, _> = services
        .iter()
        .filter(|(k, _)| k.slot == 0)
        .map(|(k, v)| ((k.vip, k.port, k.proto), *v))
        .collect();
    let mut used = BTreeSet::new();
    let mut per_service: BTreeMap<_, Vec<u32>> = BTreeMap::new();
    for (key, value) in services.iter().filter(|(k, _)| k.slot > 0) {
        let record = records
            .get(&(key.vip, key.port, key.proto))
            .unwrap_or_else(|| panic!("slot {key:?} has no slot-0 record"));
        assert!(
            key.slot <= record.count,
            "slot {key:?} beyond count {}",
            record.count
        );
        assert_eq!(
            value.service_id, record.service_id,
            "slot {key:?} of another service"
        );
        used.insert(value.backend_id);
        per_service
            .entry((key.vip, key.port, key.proto))
            .or_default()
            .push(value.backend_id);
    }
    for (service, ids) in &per_service {
        let distinct: BTreeSet<_> = ids.iter().collect();
        assert_eq!(
            distinct.len(),
            ids.len(),
            "service {service:?} lists a backend twice: {ids:?}"
        );
    }
    let mut values = BTreeSet::new();
    for (id, backend) in &backends {
        assert!(
            used.contains(id),
            "backend {id} ({backend:?}) is used by no service"
        );
        assert!(
            values.insert((backend.ip, backend.port, backend.proto)),
            "backend {backend:?} stored twice"
        );
    }
}

/// What the pinned maps hold, backends sorted per frontend.
fn programmed(maps: &BpfMaps) -> BTreeMap<Frontend, Vec<ekube_proxy::BackendAddr>> {
    dump_store(maps)
        .unwrap()
        .services
        .into_iter()
        .map(|(f, mut e)| {
            e.backends.sort();
            (f, e.backends)
        })
        .collect()
}

#[test]
fn proxy_programs_services_from_the_api() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut fx = Fixture::new();
    let shrink_ip = Ipv4Addr::new(10, 96, 100, 11);
    let empty_ip = Ipv4Addr::new(10, 96, 100, 12);
    let sticky_ip = Ipv4Addr::new(10, 96, 100, 13);
    let np_ip = Ipv4Addr::new(10, 96, 100, 14);
    let late_ip = Ipv4Addr::new(10, 96, 100, 15);

    // web: a named targetPort resolved through the slice, and a UDP port.
    fx.create_service(json!({
        "metadata": { "name": "web" },
        "spec": {
            "clusterIP": WEB_IP.to_string(),
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
        &all_ready(),
    );
    fx.create_service(cluster_ip_service("shrink", shrink_ip));
    fx.create_slice("shrink", tcp_ports(), &all_ready());
    fx.create_service(cluster_ip_service("empty", empty_ip));
    fx.create_slice("empty", tcp_ports(), &[(BACKENDS[0].1, false)]);
    let mut sticky = cluster_ip_service("sticky", sticky_ip);
    sticky["spec"]["sessionAffinity"] = json!("ClientIP");
    sticky["spec"]["sessionAffinityConfig"] = json!({ "clientIP": { "timeoutSeconds": 600 } });
    fx.create_service(sticky);
    fx.create_slice("sticky", tcp_ports(), &all_ready());
    let mut np = cluster_ip_service("np", np_ip);
    np["spec"]["type"] = json!("NodePort");
    let np = fx.create_service(np);
    let node_port = np.spec.unwrap().ports.unwrap()[0]
        .node_port
        .expect("nodePort allocated") as u16;
    fx.create_slice("np", tcp_ports(), &all_ready());

    // 1. 300 connections spread over three backends; getpeername() shows the ClusterIP.
    poll_tcp(
        &fx,
        WEB_IP,
        80,
        1,
        Duration::from_secs(10),
        "service web programmed",
        |r| {
            names(r).iter().all(|n| n.starts_with('b'))
                && r.len() == 1
                && matches!(r[0], Reply::Ok { .. })
        },
    );
    let counts = tally_from(&fx.tcp(WEB_IP, 80, 300), &sa(WEB_IP, 80), None);
    assert_eq!(counts.len(), 3, "every backend used: {counts:?}");
    for (name, n) in &counts {
        assert!(
            (60..=141).contains(n),
            "{name} got {n}/300, outside 20-47%: {counts:?}"
        );
    }

    // 2. UDP on an unconnected socket: replies come from the ClusterIP.
    let udp = fx.client(true, "udp", WEB_IP, 53, 30);
    let counts = tally_from(&udp, &sa(WEB_IP, 53), None);
    assert_eq!(counts.values().sum::<usize>(), 30);
    assert!(counts.keys().all(|n| n.starts_with('b')), "{counts:?}");

    // 8. A process outside the cgroup reaches the untranslated address (the "direct" server).
    let outside = tally_from(
        &fx.client(false, "tcp", WEB_IP, 80, 5),
        &sa(WEB_IP, 80),
        None,
    );
    assert_eq!(outside, BTreeMap::from([("direct".to_string(), 5)]));

    // 4. ClientIP affinity: one client, one backend.
    poll_tcp(
        &fx,
        sticky_ip,
        80,
        1,
        Duration::from_secs(5),
        "service sticky programmed",
        |r| matches!(r[0], Reply::Ok { .. }),
    );
    let counts = tally_from(&fx.tcp(sticky_ip, 80, 50), &sa(sticky_ip, 80), None);
    assert_eq!(counts.len(), 1, "50 connections on one backend: {counts:?}");

    // 5. NodePort from the node itself, on loopback and on the node IP.
    for ip in [Ipv4Addr::LOCALHOST, NODE_IP] {
        let counts = tally_from(&fx.tcp(ip, node_port, 10), &sa(ip, node_port), None);
        assert!(
            counts.keys().all(|n| n.starts_with('b')),
            "{ip}:{node_port}: {counts:?}"
        );
    }

    // 3. An endpoint removed through the API gets no new connections once synced...
    fx.set_endpoints("shrink", &[(BACKENDS[0].1, true), (BACKENDS[1].1, true)]);
    poll_tcp(
        &fx,
        shrink_ip,
        80,
        20,
        Duration::from_secs(2),
        "endpoint b3 of shrink removed",
        |r| !names(r).contains("b3"),
    );
    let counts = tally_from(&fx.tcp(shrink_ip, 80, 60), &sa(shrink_ip, 80), None);
    assert!(
        !counts.contains_key("b3"),
        "b3 still chosen after the sync: {counts:?}"
    );
    // ...zero ready endpoints refuse at once (the frontend is programmed with no backends)...
    let maps = fx.pinned();
    let empty = Frontend::cluster_ip(empty_ip, 80, Protocol::Tcp);
    assert_eq!(
        programmed(&maps).get(&empty),
        Some(&vec![]),
        "service empty has no backends"
    );
    let started = Instant::now();
    assert_eq!(fx.tcp(empty_ip, 80, 1), [Reply::Err(ECONNREFUSED)]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refusal took {:?}",
        started.elapsed()
    );
    // ...and a deleted service is gone: the connect reaches the (empty) local address.
    fx.rt
        .block_on(fx.services().delete("shrink", &DeleteParams::default()))
        .expect("deleting service shrink");
    poll_tcp(
        &fx,
        shrink_ip,
        80,
        1,
        Duration::from_secs(2),
        "service shrink removed",
        |r| r == [Reply::Err(ECONNREFUSED)],
    );

    // A Service the datapath cannot express is skipped with a Warning Event, nothing crashes.
    let mut sctp = cluster_ip_service("sctp", Ipv4Addr::new(10, 96, 100, 16));
    sctp["spec"]["ports"][0]["protocol"] = json!("SCTP");
    fx.create_service(sctp);
    let events: Api<Event> = Api::namespaced(fx.client.clone(), "default");
    wait_for(
        Duration::from_secs(5),
        "a FailedToProgram event on service sctp",
        || {
            let list = fx.rt.block_on(events.list(&ListParams::default()))?;
            Ok(list.items.iter().any(|e| {
                e.involved_object.name.as_deref() == Some("sctp")
                    && e.reason.as_deref() == Some("FailedToProgram")
                    && e.type_.as_deref() == Some("Warning")
                    && e.source.as_ref().and_then(|s| s.component.as_deref()) == Some("ekube-proxy")
            }))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\nproxy log:\n{}", fx.proxy_log()));
    assert!(fx.metric("ekube_proxy_sync_failures_total") >= 1.0);
    fx.rt
        .block_on(fx.services().delete("sctp", &DeleteParams::default()))
        .expect("deleting service sctp");

    // 6. kill -9: flows keep going, new connections still work, changes made meanwhile apply.
    let mut stream = fx.spawn_client(
        true,
        &["stream".into(), WEB_IP.to_string(), "80".into(), "4".into()],
    );
    // The client's first line says its connection is up: the proxy dies under a live flow.
    let connected = first_line(stream.stdout.as_mut().expect("piped stdout"));
    fx.kill_proxy();
    let counts = tally_from(&fx.tcp(WEB_IP, 80, 30), &sa(WEB_IP, 80), None);
    assert_eq!(counts.values().sum::<usize>(), 30, "{counts:?}");
    fx.create_service(cluster_ip_service("late", late_ip));
    fx.create_slice("late", tcp_ports(), &[(BACKENDS[1].1, true)]);
    fx.rt
        .block_on(fx.services().delete("np", &DeleteParams::default()))
        .expect("deleting service np");
    fx.set_endpoints("sticky", &[(BACKENDS[2].1, true)]);
    let mut replies = vec![Reply::parse(&connected)];
    replies.extend(collect(stream, "stream"));
    match replies.as_slice() {
        [Reply::Ok { peer, .. }, Reply::Echo { sent, bad }] => {
            assert_eq!(*peer, sa(WEB_IP, 80));
            assert!(
                *sent > 50 && *bad == 0,
                "echo over the restart: {sent} sent, {bad} failed"
            );
        }
        other => panic!("stream client: {other:?}"),
    }
    fx.start_proxy();
    let counts = tally_from(&fx.tcp(late_ip, 80, 5), &sa(late_ip, 80), None);
    assert_eq!(
        counts,
        BTreeMap::from([("b2".to_string(), 5)]),
        "service created while down"
    );
    let counts = tally_from(&fx.tcp(sticky_ip, 80, 5), &sa(sticky_ip, 80), None);
    assert_eq!(
        counts,
        BTreeMap::from([("b3".to_string(), 5)]),
        "endpoints changed while down"
    );
    assert_eq!(
        fx.tcp(Ipv4Addr::LOCALHOST, node_port, 1),
        [Reply::Err(ECONNREFUSED)],
        "deleted NodePort"
    );
    let maps = fx.pinned();
    assert_no_stale_entries(&maps);
    assert_eq!(
        programmed(&maps),
        fx.desired_from_api(),
        "pinned maps == what the API asks for"
    );
}

#[test]
fn ten_thousand_services_then_one_endpoint_change() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let fx = Fixture::new();
    const SERVICES: usize = 10_000;
    let started = Instant::now();
    let services = fx.services();
    let slices = fx.slices();
    // Each service gets two endpoints of its own (never reachable, only programmed)...
    let fake =
        |i: usize, j: usize| Ipv4Addr::new(10, 244, (i / 125) as u8, ((i % 125) * 2 + j + 1) as u8);
    let created: Vec<(usize, Ipv4Addr)> = fx.rt.block_on(async {
        futures::stream::iter(0..SERVICES)
            .map(|i| {
                let services = services.clone();
                let slices = slices.clone();
                async move {
                    let name = format!("bulk-{i}");
                    let svc: Service = serde_json::from_value(json!({
                        "metadata": { "name": name },
                        "spec": { "ports": [{ "name": "http", "protocol": "TCP", "port": 80, "targetPort": TCP_PORT }] },
                    }))
                    .unwrap();
                    let svc = services.create(&PostParams::default(), &svc).await?;
                    // ...except the last one, whose endpoints are real backends.
                    let endpoints = if i == SERVICES - 1 {
                        vec![(BACKENDS[0].1, true), (BACKENDS[1].1, true)]
                    } else {
                        vec![(fake(i, 0), true), (fake(i, 1), true)]
                    };
                    let slice = endpoint_slice(&name, tcp_ports(), endpoint_list(&endpoints));
                    slices.create(&PostParams::default(), &slice).await?;
                    let ip: Ipv4Addr = svc.spec.unwrap().cluster_ip.unwrap().parse().unwrap();
                    anyhow::Ok((i, ip))
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()
            .expect("creating services")
    });
    let created_in = started.elapsed();
    let target_ip = created.iter().find(|(i, _)| *i == SERVICES - 1).unwrap().1;
    wait_for(
        Duration::from_secs(90),
        "the proxy to program 10,000 services",
        || {
            Ok(fx.metric("ekube_proxy_services") >= SERVICES as f64
                && fx.metric("ekube_proxy_backends") >= 2.0 * SERVICES as f64)
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\nproxy log:\n{}", fx.proxy_log()));
    let programmed_in = started.elapsed();
    poll_tcp(
        &fx,
        target_ip,
        80,
        10,
        Duration::from_secs(5),
        "the last service programmed",
        |r| names(r) == BTreeSet::from(["b1".to_string(), "b2".to_string()]),
    );

    // One endpoint change: b2 → b3.
    let writes_before = fx.metric("ekube_proxy_map_writes_total");
    let syncs_before = fx.metric("ekube_proxy_syncs_total{kind=\"service\"}");
    fx.set_endpoints(
        &format!("bulk-{}", SERVICES - 1),
        &[(BACKENDS[0].1, true), (BACKENDS[2].1, true)],
    );
    let changed = Instant::now();
    poll_tcp(
        &fx,
        target_ip,
        80,
        10,
        Duration::from_secs(1),
        "the endpoint change in the datapath",
        |r| {
            let seen = names(r);
            seen.contains("b3") && !seen.contains("b2")
        },
    );
    let reflected_in = changed.elapsed();
    wait_for(
        Duration::from_secs(5),
        "the service sync in the metrics",
        || Ok(fx.metric("ekube_proxy_syncs_total{kind=\"service\"}") > syncs_before),
    )
    .unwrap();
    let writes = fx.metric("ekube_proxy_map_writes_total") - writes_before;
    assert!(
        writes <= 4.0,
        "one endpoint change among 10,000 services cost {writes} map writes"
    );
    let frontends = programmed(&fx.pinned());
    assert!(
        frontends.len() > SERVICES,
        "{} frontends programmed",
        frontends.len()
    );
    eprintln!(
        "10,000 services: created in {created_in:?}, programmed by {programmed_in:?}; one endpoint \
         change: {writes} map writes, in the datapath after {reflected_in:?}"
    );
}
