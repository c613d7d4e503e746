//! End-to-end test of the socket-level datapath on the running kernel (needs root).
//!
//! One fixture per run: a private network namespace (held by a file descriptor, so nothing is
//! left behind), a child cgroup v2 directory `ekube-dptest-<pid>` with the four programs
//! attached, pins under `/sys/fs/bpf/ekube/ekube-dptest-<pid>/`, and TCP/UDP servers on
//! loopback addresses of the namespace that answer with their own name. Clients are this binary
//! re-executed (cgroup membership is per process): `pre_exec` joins the namespace and, unless
//! the case wants an outside client, moves the child into the cgroup. The cases run one after
//! another in this process (custom harness), and a guard removes pins and the cgroup at the end
//! and leftovers of crashed runs at the start. The NodePort conntrack cases run crafted frames
//! through the tc ingress program instead ([`handshake`]), as do the hostPort cases
//! ([`hostport`]).

#[path = "datapath/handshake.rs"]
mod handshake;
#[path = "datapath/hostport.rs"]
mod hostport;

use std::{
    collections::BTreeMap,
    env,
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    os::{fd::AsRawFd, unix::process::CommandExt},
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
    process::{self, Command},
    thread,
    time::Duration,
};

use ekube_proxy::{
    Affinity, BackendAddr, Datapath, DatapathConfig, Frontend, Protocol, ServiceDatapath,
    datapath::{BpfMaps, Counter, remove_pins},
};

/// Set in a re-executed child: the client job to run instead of the tests.
const CLIENT_ENV: &str = "EKUBE_DPTEST_CLIENT";
const PREFIX: &str = "ekube-dptest-";
const CGROUP_ROOT: &str = "/sys/fs/cgroup/unified";
const BPFFS: &str = "/sys/fs/bpf";
const BACKENDS: [(&str, Ipv4Addr); 3] = [
    ("b1", Ipv4Addr::new(127, 0, 0, 11)),
    ("b2", Ipv4Addr::new(127, 0, 0, 12)),
    ("b3", Ipv4Addr::new(127, 0, 0, 13)),
];
const TCP_PORT: u16 = 8080;
const UDP_PORT: u16 = 5353;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);
const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 50);
/// A "ClusterIP" that is also a real local address with its own server, so a client the
/// programs do not cover visibly reaches something else.
const LOCAL_VIP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 50);

type Case = (&'static str, fn(&mut Fixture));

const CASES: &[Case] = &[
    (
        "tcp_connects_spread_over_backends",
        tcp_connects_spread_over_backends,
    ),
    (
        "udp_replies_come_from_the_service",
        udp_replies_come_from_the_service,
    ),
    (
        "zero_backends_refuse_with_econnrefused",
        zero_backends_refuse_with_econnrefused,
    ),
    ("client_ip_affinity_sticks", client_ip_affinity_sticks),
    (
        "affinity_forgets_a_removed_backend",
        affinity_forgets_a_removed_backend,
    ),
    (
        "process_outside_the_cgroup_is_unaffected",
        process_outside_the_cgroup_is_unaffected,
    ),
    (
        "node_port_on_loopback_and_node_ip",
        node_port_on_loopback_and_node_ip,
    ),
    (
        "nodeport_flow_opens_only_on_syn",
        handshake::nodeport_flow_opens_only_on_syn,
    ),
    (
        "unestablished_flow_expires",
        handshake::unestablished_flow_expires,
    ),
    (
        "full_share_refuses_syns_and_keeps_established",
        handshake::full_share_refuses_syns_and_keeps_established,
    ),
    (
        "host_ports_come_after_node_ports_and_stay_on_node_addresses",
        hostport::host_ports_come_after_node_ports_and_stay_on_node_addresses,
    ),
    (
        "restart_keeps_state_and_flows",
        restart_keeps_state_and_flows,
    ),
    (
        "restart_replaces_a_reshaped_map",
        restart_replaces_a_reshaped_map,
    ),
    ("restart_resizes_the_lb_maps", restart_resizes_the_lb_maps),
    (
        "loads_while_signals_keep_arriving",
        loads_while_signals_keep_arriving,
    ),
];

fn main() {
    if let Ok(job) = env::var(CLIENT_ENV) {
        client(&job);
        return;
    }
    let args: Vec<String> = env::args().skip(1).collect();
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let selected: Vec<&Case> = CASES
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in &selected {
            println!("{name}: test");
        }
        return;
    }
    println!("\nrunning {} tests", selected.len());
    if selected.is_empty() {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the datapath test needs root (CAP_BPF, cgroups)"
    );
    clear_leftovers();
    let mut fixture = Fixture::new();
    let mut failed = Vec::new();
    let total = selected.len();
    for (name, case) in selected {
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| case(&mut fixture)));
        println!(
            "test {name} ... {}",
            if outcome.is_ok() { "ok" } else { "FAILED" }
        );
        if outcome.is_err() {
            failed.push(*name);
        }
    }
    drop(fixture);
    if failed.is_empty() {
        println!("\ntest result: ok. {total} passed");
    } else {
        println!("\ntest result: FAILED. failures: {failed:?}");
        process::exit(1);
    }
}

/// Everything the cases share; dropping it removes pins and the cgroup.
struct Fixture {
    config: DatapathConfig,
    /// `None` only while a case simulates a stopped proxy.
    datapath: Option<Datapath<BpfMaps>>,
    netns: File,
    cgroup_procs: File,
}

impl Fixture {
    fn new() -> Self {
        let name = format!("{PREFIX}{}", process::id());
        let cgroup = Path::new(CGROUP_ROOT).join(&name);
        fs::create_dir(&cgroup).expect("creating the test cgroup");
        let cgroup_procs = OpenOptions::new()
            .write(true)
            .open(cgroup.join("cgroup.procs"))
            .expect("opening cgroup.procs");
        let config = DatapathConfig {
            cgroup,
            bpffs: PathBuf::from(BPFFS),
            ..DatapathConfig::new(name)
        };
        let netns = start_servers();
        let datapath = Datapath::open(&config).expect("opening the datapath");
        for pin in [
            "link_connect4",
            "link_sendmsg4",
            "link_recvmsg4",
            "link_getpeername4",
        ] {
            assert!(config.pin_dir().join(pin).exists(), "{pin} not pinned");
        }
        Self {
            config,
            datapath: Some(datapath),
            netns,
            cgroup_procs,
        }
    }

    fn dp(&mut self) -> &mut Datapath<BpfMaps> {
        self.datapath.as_mut().expect("datapath open")
    }

    /// Runs `job` in a child process inside the namespace (and the cgroup if `in_cgroup`).
    fn client(&self, in_cgroup: bool, job: &str) -> Vec<Reply> {
        let netns = self.netns.as_raw_fd();
        let procs = self.cgroup_procs.as_raw_fd();
        let mut cmd = Command::new(env::current_exe().expect("own path"));
        cmd.env(CLIENT_ENV, job);
        // SAFETY: only async-signal-safe calls (write, setns) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // "0" moves the writing process itself.
                if in_cgroup && libc::write(procs, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
                if libc::setns(netns, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().expect("running the client");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "client `{job}` failed: {}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout.lines().map(Reply::parse).collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        drop(self.datapath.take());
        if let Err(e) = remove_pins(&self.config) {
            eprintln!("cleanup: {e}");
        }
        if let Err(e) = fs::remove_dir(&self.config.cgroup) {
            eprintln!("cleanup: removing {}: {e}", self.config.cgroup.display());
        }
    }
}

/// Removes cgroups and pins of earlier runs whose process is gone.
fn clear_leftovers() {
    let stale = |name: &str| {
        name.strip_prefix(PREFIX)
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    for dir in fs::read_dir(Path::new(BPFFS).join("ekube"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = dir.file_name().to_string_lossy().into_owned();
        if stale(&name) {
            let config = DatapathConfig {
                node_name: name,
                ..DatapathConfig::new("")
            };
            let _ = remove_pins(&config);
        }
    }
    for dir in fs::read_dir(CGROUP_ROOT).into_iter().flatten().flatten() {
        if stale(&dir.file_name().to_string_lossy()) {
            let _ = fs::remove_dir(dir.path());
        }
    }
}

/// Creates the namespace, brings `lo` up, binds every server there and serves them from
/// threads. Returns the namespace handle.
fn start_servers() -> File {
    let netns = thread::spawn(|| {
        // SAFETY: unshare affects only this thread, which ends right after.
        assert_eq!(
            unsafe { libc::unshare(libc::CLONE_NEWNET) },
            0,
            "unshare(CLONE_NEWNET)"
        );
        loopback_up();
        let mut servers = Vec::new();
        for (name, ip) in BACKENDS {
            servers.push((
                name,
                TcpListener::bind((ip, TCP_PORT)).unwrap(),
                UdpSocket::bind((ip, UDP_PORT)).unwrap(),
            ));
        }
        let direct = TcpListener::bind((LOCAL_VIP, 80)).unwrap();
        let ns = File::open("/proc/thread-self/ns/net").unwrap();
        (ns, servers, direct)
    })
    .join()
    .expect("setting up the namespace");
    let (ns, servers, direct) = netns;
    for (name, tcp, udp) in servers {
        thread::spawn(move || serve_tcp(name, tcp));
        thread::spawn(move || serve_udp(name, udp));
    }
    thread::spawn(move || serve_tcp("direct", direct));
    ns
}

fn serve_tcp(name: &'static str, listener: TcpListener) {
    for mut stream in listener.incoming().flatten() {
        let _ = stream.write_all(name.as_bytes());
    }
}

fn serve_udp(name: &'static str, socket: UdpSocket) {
    let mut buf = [0u8; 64];
    while let Ok((_, from)) = socket.recv_from(&mut buf) {
        let _ = socket.send_to(name.as_bytes(), from);
    }
}

/// `ip link set lo up` with the SIOCSIFFLAGS ioctl, in the calling thread's namespace.
fn loopback_up() {
    let sock = UdpSocket::bind("127.0.0.1:0")
        .or_else(|_| UdpSocket::bind("0.0.0.0:0"))
        .ok();
    // SAFETY: plain ioctls on a socket we own with a zeroed, named ifreq.
    unsafe {
        let fd = match &sock {
            Some(s) => s.as_raw_fd(),
            None => libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0),
        };
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        assert_eq!(
            libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req),
            0,
            "SIOCGIFFLAGS lo"
        );
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &mut req),
            0,
            "SIOCSIFFLAGS lo"
        );
    }
}

/// One line of client output.
#[derive(Debug, PartialEq)]
enum Reply {
    /// The server's name and the peer address the client saw (getpeername / recvfrom).
    Ok { name: String, peer: SocketAddr },
    /// The errno of a failed connect or send.
    Err(i32),
}

impl Reply {
    fn parse(line: &str) -> Self {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["ok", name, peer] => Reply::Ok {
                name: name.to_string(),
                peer: peer.parse().unwrap(),
            },
            ["err", errno] => Reply::Err(errno.parse().unwrap()),
            _ => panic!("bad client line {line:?}"),
        }
    }
}

/// The child side: `tcp|udp <addr> <count>`, one output line per attempt.
fn client(job: &str) {
    let parts: Vec<&str> = job.split_whitespace().collect();
    let [kind, addr, count] = parts.as_slice() else {
        panic!("bad job {job:?}")
    };
    let addr: SocketAddr = addr.parse().unwrap();
    let count: usize = count.parse().unwrap();
    let errno = |e: io::Error| e.raw_os_error().unwrap_or(-1);
    let mut out = io::stdout().lock();
    match *kind {
        "tcp" => {
            for _ in 0..count {
                let line = match TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT) {
                    Ok(mut s) => {
                        let peer = s.peer_addr().unwrap();
                        s.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
                        let mut name = String::new();
                        s.read_to_string(&mut name).unwrap();
                        format!("ok {name} {peer}")
                    }
                    Err(e) => format!("err {}", errno(e)),
                };
                writeln!(out, "{line}").unwrap();
            }
        }
        "udp" => {
            let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
            sock.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
            for _ in 0..count {
                let line = match sock.send_to(b"who", addr) {
                    Ok(_) => {
                        let mut buf = [0u8; 64];
                        let (n, from) = sock.recv_from(&mut buf).expect("UDP reply within 3s");
                        format!("ok {} {from}", String::from_utf8_lossy(&buf[..n]))
                    }
                    Err(e) => format!("err {}", errno(e)),
                };
                writeln!(out, "{line}").unwrap();
            }
        }
        other => panic!("unknown client kind {other}"),
    }
}

impl Fixture {
    /// Programs `frontend` with the TCP backends, without session affinity.
    fn upsert_tcp(&mut self, frontend: Frontend) {
        self.dp()
            .upsert_service(frontend, &backends(TCP_PORT), Affinity::None)
            .unwrap();
    }

    /// `n` TCP requests from inside the cgroup to `ip:port`, counted per backend (each reply
    /// checked to come from `ip:port`).
    fn tcp_tally(&self, ip: Ipv4Addr, port: u16, n: usize) -> BTreeMap<String, usize> {
        tally(
            &self.client(true, &format!("tcp {ip}:{port} {n}")),
            sock(ip, port),
        )
    }
}

fn backends(port: u16) -> Vec<BackendAddr> {
    BACKENDS
        .iter()
        .map(|(_, ip)| BackendAddr { ip: *ip, port })
        .collect()
}

fn vip(ip: Ipv4Addr, port: u16, proto: Protocol) -> Frontend {
    Frontend::cluster_ip(ip, port, proto)
}

/// Counts replies per server name, asserting each came through and showed `expected_peer`.
fn tally(replies: &[Reply], expected_peer: SocketAddr) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for reply in replies {
        match reply {
            Reply::Ok { name, peer } => {
                assert_eq!(*peer, expected_peer, "peer address seen by the client");
                *counts.entry(name.clone()).or_insert(0) += 1;
            }
            Reply::Err(errno) => panic!("a request failed with errno {errno}"),
        }
    }
    counts
}

fn sock(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

fn tcp_connects_spread_over_backends(fx: &mut Fixture) {
    fx.upsert_tcp(vip(CLUSTER_IP, 80, Protocol::Tcp));
    let replies = fx.client(true, &format!("tcp {CLUSTER_IP}:80 300"));
    assert_eq!(replies.len(), 300);
    let counts = tally(&replies, sock(CLUSTER_IP, 80));
    assert_eq!(counts.len(), 3, "every backend used: {counts:?}");
    for (name, n) in &counts {
        assert!(
            (60..=141).contains(n),
            "{name} got {n}/300, outside 20-47%: {counts:?}"
        );
    }
}

fn udp_replies_come_from_the_service(fx: &mut Fixture) {
    fx.dp()
        .upsert_service(
            vip(CLUSTER_IP, 53, Protocol::Udp),
            &backends(UDP_PORT),
            Affinity::None,
        )
        .unwrap();
    let replies = fx.client(true, &format!("udp {CLUSTER_IP}:53 30"));
    let counts = tally(&replies, sock(CLUSTER_IP, 53));
    assert_eq!(counts.values().sum::<usize>(), 30);
    assert!(counts.keys().all(|n| n.starts_with('b')), "{counts:?}");
}

fn zero_backends_refuse_with_econnrefused(fx: &mut Fixture) {
    let empty = Ipv4Addr::new(10, 96, 0, 51);
    fx.dp()
        .upsert_service(vip(empty, 80, Protocol::Tcp), &[], Affinity::None)
        .unwrap();
    fx.dp()
        .upsert_service(vip(empty, 53, Protocol::Udp), &[], Affinity::None)
        .unwrap();
    assert_eq!(
        fx.client(true, &format!("tcp {empty}:80 1")),
        [Reply::Err(libc::ECONNREFUSED)]
    );
    assert_eq!(
        fx.client(true, &format!("udp {empty}:53 1")),
        [Reply::Err(libc::ECONNREFUSED)]
    );
    let counters = fx.dp().counters().unwrap();
    assert!(
        counters
            .iter()
            .any(|(c, n)| *c == Counter::NoBackend && *n >= 2),
        "{counters:?}"
    );
}

fn client_ip_affinity_sticks(fx: &mut Fixture) {
    let sticky = Ipv4Addr::new(10, 96, 0, 52);
    let affinity = Affinity::ClientIp { timeout_secs: 60 };
    fx.dp()
        .upsert_service(
            vip(sticky, 80, Protocol::Tcp),
            &backends(TCP_PORT),
            affinity,
        )
        .unwrap();
    let counts = fx.tcp_tally(sticky, 80, 50);
    assert_eq!(
        counts.len(),
        1,
        "all 50 connects on one backend: {counts:?}"
    );
    // A second process of the same client (same network namespace) lands there too.
    let again = fx.tcp_tally(sticky, 80, 5);
    assert_eq!(
        again.keys().collect::<Vec<_>>(),
        counts.keys().collect::<Vec<_>>()
    );
}

fn affinity_forgets_a_removed_backend(fx: &mut Fixture) {
    let sticky = Ipv4Addr::new(10, 96, 0, 53);
    let affinity = Affinity::ClientIp { timeout_secs: 60 };
    let frontend = vip(sticky, 80, Protocol::Tcp);
    fx.dp()
        .upsert_service(frontend, &backends(TCP_PORT), affinity)
        .unwrap();
    let first = fx.tcp_tally(sticky, 80, 5);
    assert_eq!(first.len(), 1, "{first:?}");
    let chosen = first.keys().next().unwrap().clone();
    // The chosen backend leaves this service but stays alive for others (the ClusterIP
    // service of the first case still uses it): its clients must move on.
    let rest: Vec<BackendAddr> = BACKENDS
        .iter()
        .filter(|(name, _)| **name != chosen)
        .map(|(_, ip)| BackendAddr {
            ip: *ip,
            port: TCP_PORT,
        })
        .collect();
    fx.dp().upsert_service(frontend, &rest, affinity).unwrap();
    let after = fx.tcp_tally(sticky, 80, 10);
    assert!(
        !after.contains_key(&chosen),
        "{chosen} still chosen: {after:?}"
    );
    assert_eq!(after.len(), 1, "affinity to the new backend: {after:?}");
}

fn process_outside_the_cgroup_is_unaffected(fx: &mut Fixture) {
    fx.upsert_tcp(vip(LOCAL_VIP, 80, Protocol::Tcp));
    let inside = fx.tcp_tally(LOCAL_VIP, 80, 20);
    assert!(!inside.contains_key("direct"), "{inside:?}");
    let outside = tally(
        &fx.client(false, &format!("tcp {LOCAL_VIP}:80 5")),
        sock(LOCAL_VIP, 80),
    );
    assert_eq!(outside, BTreeMap::from([("direct".to_string(), 5)]));
}

fn node_port_on_loopback_and_node_ip(fx: &mut Fixture) {
    let node_ip = Ipv4Addr::new(192, 0, 2, 10);
    fx.dp().set_node_addrs(&[node_ip]).unwrap();
    fx.upsert_tcp(Frontend::node_port(30080, Protocol::Tcp));
    for ip in [Ipv4Addr::LOCALHOST, node_ip] {
        let counts = fx.tcp_tally(ip, 30080, 15);
        assert!(
            counts.keys().all(|n| n.starts_with('b')),
            "{ip}: {counts:?}"
        );
    }
    // A port that is no NodePort stays untranslated, and nothing listens there.
    let other = fx.client(true, "tcp 127.0.0.1:30081 1");
    assert_eq!(other, [Reply::Err(libc::ECONNREFUSED)]);
}

/// Link id and program id of each pinned cgroup link, as bpftool shows them.
fn linked_programs(fx: &Fixture) -> BTreeMap<&'static str, (u64, u64)> {
    let field = |json: &str, name: &str| -> u64 {
        let at = json
            .find(&format!("\"{name}\":"))
            .unwrap_or_else(|| panic!("no {name} in {json}"));
        json[at + name.len() + 3..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .expect("a number")
    };
    [
        "link_connect4",
        "link_sendmsg4",
        "link_recvmsg4",
        "link_getpeername4",
    ]
    .into_iter()
    .map(|pin| {
        let out = Command::new("bpftool")
            .args(["-j", "link", "show", "pinned"])
            .arg(fx.config.pin_dir().join(pin))
            .output()
            .expect("running bpftool");
        let json = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "bpftool: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (pin, (field(&json, "id"), field(&json, "prog_id")))
    })
    .collect()
}

fn restart_keeps_state_and_flows(fx: &mut Fixture) {
    let before = fx.dp().dump().unwrap();
    assert!(
        before.services.len() >= 5,
        "earlier cases programmed services: {before:?}"
    );
    let programs = linked_programs(fx);
    // Proxy down: the pinned programs and maps keep serving.
    drop(fx.datapath.take());
    let counts = fx.tcp_tally(CLUSTER_IP, 80, 10);
    assert_eq!(counts.values().sum::<usize>(), 10);

    // The same build restarts: its pinned programs are re-used, nothing is loaded.
    let reopened = Datapath::open(&fx.config).expect("re-opening from pins");
    fx.datapath = Some(reopened);
    assert_eq!(
        linked_programs(fx),
        programs,
        "a restart of the same build keeps its links and programs"
    );
    // Another build's restart finds no programs pinned under its object's digest: it loads
    // its own and the same links switch to them (an upgrade takes effect).
    drop(fx.datapath.take());
    remove_program_pins(fx);
    let reopened = Datapath::open(&fx.config).expect("re-opening as another build");
    fx.datapath = Some(reopened);
    let after = linked_programs(fx);
    for (pin, (link, program)) in &after {
        let (old_link, old_program) = programs[pin];
        assert_eq!(*link, old_link, "{pin}: the link was replaced");
        assert_ne!(*program, old_program, "{pin}: still runs the old program");
    }
    assert_eq!(
        fx.dp().dump().unwrap(),
        before,
        "state survives the restart"
    );
    let writes = fx.dp().map_writes();
    fx.upsert_tcp(vip(CLUSTER_IP, 80, Protocol::Tcp));
    assert_eq!(
        fx.dp().map_writes(),
        writes,
        "re-applying the same service writes nothing"
    );
    assert_eq!(fx.dp().dump().unwrap(), before, "no duplicates");
    let counts = fx.tcp_tally(CLUSTER_IP, 80, 10);
    assert_eq!(counts.values().sum::<usize>(), 10);
    let translated = fx.dp().counters().unwrap();
    assert!(
        translated
            .iter()
            .any(|(c, n)| *c == Counter::Connect4Translated && *n >= 300),
        "{translated:?}"
    );
}

/// Removes the pinned programs (`prog_*`), as a build with another object would not find
/// its own: the next open loads and verifies everything.
fn remove_program_pins(fx: &Fixture) {
    let mut removed = 0;
    for entry in fs::read_dir(fx.config.pin_dir()).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("prog_") {
            fs::remove_file(entry.path()).unwrap();
            removed += 1;
        }
    }
    assert_eq!(
        removed, 6,
        "four socket programs and two tc programs were pinned"
    );
}

/// `(value size, max entries)` of the map pinned at `pin`, as bpftool shows it.
fn pinned_map_shape(pin: &Path) -> (u32, u32) {
    let out = Command::new("bpftool")
        .args(["map", "show", "pinned"])
        .arg(pin)
        .output()
        .expect("running bpftool");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| -> u32 {
        let words: Vec<&str> = text.split_whitespace().collect();
        let at = words.iter().position(|w| *w == name);
        let value = at.and_then(|i| words.get(i + 1)).unwrap_or(&"");
        value
            .trim_end_matches('B')
            .parse()
            .unwrap_or_else(|_| panic!("no {name} in bpftool's output: {text}"))
    };
    (field("value"), field("max_entries"))
}

/// An upgrade that changed a map's layout: the old pin has another value size. Re-opening
/// must re-create that map (the programs would not verify against the old one) and keep every
/// other pin and the state in it.
fn restart_replaces_a_reshaped_map(fx: &mut Fixture) {
    fx.upsert_tcp(vip(CLUSTER_IP, 80, Protocol::Tcp));
    let before = fx.dp().dump().unwrap();
    drop(fx.datapath.take());
    let pin = fx.config.pin_dir().join(ekube_ebpf_common::NODEPORT_CONFIG);
    fs::remove_file(&pin).unwrap();
    let status = Command::new("bpftool")
        .args(["map", "create"])
        .arg(&pin)
        .args(["type", "array", "key", "4", "value", "8", "entries", "1"])
        .args(["name", "old_np_config"])
        .status()
        .expect("running bpftool");
    assert!(status.success(), "bpftool map create: {status}");
    assert_eq!(pinned_map_shape(&pin), (8, 1));

    let reopened = Datapath::open(&fx.config).expect("re-opening over a reshaped pin");
    fx.datapath = Some(reopened);
    let expected = std::mem::size_of::<ekube_ebpf_common::NodePortConfig>() as u32;
    assert_eq!(
        pinned_map_shape(&pin),
        (expected, 1),
        "re-created in this build's shape"
    );
    assert_eq!(
        fx.dp().dump().unwrap(),
        before,
        "the other maps kept their state"
    );
    let counts = fx.tcp_tally(CLUSTER_IP, 80, 10);
    assert_eq!(counts.values().sum::<usize>(), 10);
}

/// A restart with another `--bpf-lb-map-max`: the pinned programs are not re-used, the
/// service, backend and affinity maps are re-created at the new size (empty, for the proxy's
/// full sync to fill), and the services written after answer. Back at the default, the same.
fn restart_resizes_the_lb_maps(fx: &mut Fixture) {
    let programs = linked_programs(fx);
    let default = fx.config.lb_map_max;
    for max in [default * 2, default] {
        drop(fx.datapath.take());
        fx.config.lb_map_max = max;
        let reopened = Datapath::open(&fx.config).expect("re-opening with resized maps");
        fx.datapath = Some(reopened);
        for (map, entries) in [
            (ekube_ebpf_common::SERVICES, 2 * max),
            (ekube_ebpf_common::BACKENDS, max),
            (ekube_ebpf_common::AFFINITY, max),
        ] {
            let (_, pinned) = pinned_map_shape(&fx.config.pin_dir().join(map));
            assert_eq!(pinned, entries, "{map} with --bpf-lb-map-max {max}");
        }
        fx.upsert_tcp(vip(CLUSTER_IP, 80, Protocol::Tcp));
        let counts = fx.tcp_tally(CLUSTER_IP, 80, 10);
        assert_eq!(counts.values().sum::<usize>(), 10, "with {max}");
    }
    let after = linked_programs(fx);
    for (pin, (link, program)) in &after {
        let (old_link, old_program) = programs[pin];
        assert_eq!(*link, old_link, "{pin}: the link was replaced");
        assert_ne!(
            *program, old_program,
            "{pin}: still runs the program verified against the old maps"
        );
    }
}

/// The verifier abandons a load with `EAGAIN` when a signal is pending for the loading thread;
/// in `ekube agent` the kubelet's children send a stream of `SIGCHLD`s. Re-opening (which
/// loads and verifies the tc programs again) while this process is flooded with handled
/// signals must still succeed (the program pins are removed first, so each open loads).
fn loads_while_signals_keep_arriving(fx: &mut Fixture) {
    extern "C" fn ignore(_: libc::c_int) {}
    // SAFETY: installs a handler that does nothing, for a signal nothing else here uses.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let storm = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: a process-directed signal to ourselves, with a handler installed.
                unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) };
                sent += 1;
                thread::sleep(Duration::from_micros(50));
            }
            sent
        })
    };
    let mut failure = None;
    for _ in 0..3 {
        drop(fx.datapath.take());
        remove_program_pins(fx);
        match Datapath::open(&fx.config) {
            Ok(dp) => fx.datapath = Some(dp),
            Err(err) => {
                failure = Some(err);
                break;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = storm.join().expect("signal thread");
    if let Some(err) = failure {
        panic!("opening the datapath while signals arrive: {err}");
    }
    assert!(sent > 100, "only {sent} signals were sent");
    let counts = fx.tcp_tally(CLUSTER_IP, 80, 10);
    assert_eq!(counts.values().sum::<usize>(), 10);
}
