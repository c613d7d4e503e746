//! Cases for the NodePort conntrack's handling of unestablished TCP flows (ekube issue 13):
//! crafted frames run through the tc ingress program with `BPF_PROG_TEST_RUN`, inside the
//! fixture's namespace (nothing is sent), against the fixture's pinned maps.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    os::fd::AsRawFd,
    thread,
    time::{Duration, Instant},
};

use ekube_ebpf_common::{CT_DIR_FORWARD, CT_FLAG_UNESTABLISHED, CtKey, CtValue};
use ekube_proxy::{
    Affinity, Frontend, Protocol, ServiceDatapath,
    datapath::{Counter, IngressProbe, NodePortSettings, conntrack},
};

use crate::{Fixture, TCP_PORT, backends};

const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const NODE_PORT: u16 = 30090;
pub const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
/// `TC_ACT_OK` and `TC_ACT_SHOT`.
const PASS: i32 = 0;
const DROP: i32 = 2;
/// The SYN timeout the cases configure, short to keep the run short.
const SYN_TIMEOUT: Duration = Duration::from_secs(2);

/// The service, the short SYN timeout and the probe the cases share.
struct Bench<'a> {
    fx: &'a mut Fixture,
    probe: IngressProbe,
}

impl<'a> Bench<'a> {
    fn new(fx: &'a mut Fixture, unestablished_max: u32) -> Self {
        fx.dp().set_node_addrs(&[NODE_IP]).unwrap();
        fx.dp()
            .upsert_service(
                Frontend::node_port(NODE_PORT, Protocol::Tcp),
                &backends(TCP_PORT),
                Affinity::None,
            )
            .unwrap();
        let settings = NodePortSettings {
            tcp_syn_timeout: SYN_TIMEOUT,
            tcp_unestablished_max: unestablished_max,
            ..NodePortSettings::default()
        };
        conntrack::set_settings(&fx.config, &settings).unwrap();
        let probe = IngressProbe::load(&fx.config).expect("loading the ingress program");
        Self { fx, probe }
    }

    /// Runs a TCP segment from `client` to the NodePort with `flags`; returns the verdict and
    /// where the frame now goes.
    fn send(&self, client: SocketAddrV4, flags: u8) -> (i32, SocketAddrV4) {
        let service = SocketAddrV4::new(NODE_IP, NODE_PORT);
        run_frame(self.fx, &self.probe, client, service, flags)
    }

    /// The forward entry of `client`'s flow, if the map holds one.
    fn forward_entry(&self, client: SocketAddrV4) -> Option<CtValue> {
        let key = CtKey {
            saddr: u32::from_ne_bytes(client.ip().octets()),
            daddr: u32::from_ne_bytes(NODE_IP.octets()),
            sport: client.port().to_be(),
            dport: NODE_PORT.to_be(),
            proto: 6,
            dir: CT_DIR_FORWARD,
            _pad: [0; 2],
        };
        conntrack::entries(&self.fx.config)
            .unwrap()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    fn unestablished(&self) -> u64 {
        conntrack::unestablished(&self.fx.config).unwrap()
    }

    fn refused(&self) -> u64 {
        let counters = self.fx.datapath.as_ref().unwrap().counters().unwrap();
        counters
            .iter()
            .find(|(c, _)| *c == Counter::UnestablishedRefused)
            .map_or(0, |(_, n)| *n)
    }
}

impl Drop for Bench<'_> {
    fn drop(&mut self) {
        let _ = conntrack::set_settings(&self.fx.config, &NodePortSettings::default());
    }
}

/// Runs a TCP segment from `src` to `dst` with `flags` through `probe` in the fixture's
/// namespace; returns the verdict and where the frame now goes.
pub fn run_frame(
    fx: &Fixture,
    probe: &IngressProbe,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    flags: u8,
) -> (i32, SocketAddrV4) {
    let frame = tcp_frame(src, dst, flags);
    let netns = fx.netns.as_raw_fd();
    let (verdict, out) = thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on this short-lived thread only; the fd is valid.
            assert_eq!(unsafe { libc::setns(netns, libc::CLONE_NEWNET) }, 0);
            probe.run(&frame).expect("BPF_PROG_TEST_RUN")
        })
        .join()
        .unwrap()
    });
    (verdict, destination(&out))
}

/// Ethernet + IPv4 + TCP header with `flags` (checksums zero: the program only adjusts them).
fn tcp_frame(src: SocketAddrV4, dst: SocketAddrV4, flags: u8) -> Vec<u8> {
    let mut frame = vec![0u8; 14 + 20 + 20];
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut frame[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let tcp = &mut frame[34..54];
    tcp[0..2].copy_from_slice(&src.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&64_240u16.to_be_bytes());
    frame
}

fn destination(frame: &[u8]) -> SocketAddrV4 {
    let ip: [u8; 4] = frame[30..34].try_into().unwrap();
    SocketAddrV4::new(
        ip.into(),
        u16::from_be_bytes(frame[36..38].try_into().unwrap()),
    )
}

fn client(n: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, n), port)
}

fn is_backend(addr: SocketAddrV4) -> bool {
    addr.port() == TCP_PORT && backends(TCP_PORT).iter().any(|b| b.ip == *addr.ip())
}

/// Only a SYN opens a flow; the client's ACK establishes it.
pub fn nodeport_flow_opens_only_on_syn(fx: &mut Fixture) {
    let bench = Bench::new(fx, 1_000);
    let c = client(1, 40_001);
    let service = SocketAddrV4::new(NODE_IP, NODE_PORT);
    for flags in [TCP_ACK, TCP_RST, TCP_ACK | 0x01] {
        assert_eq!(bench.send(c, flags), (PASS, service), "flags {flags:#x}");
        assert_eq!(
            bench.forward_entry(c),
            None,
            "flags {flags:#x} opened a flow"
        );
    }
    let before = bench.unestablished();
    let (verdict, to) = bench.send(c, TCP_SYN);
    assert_eq!(verdict, PASS);
    assert!(is_backend(to), "the SYN went to {to}");
    let entry = bench.forward_entry(c).expect("the SYN opened a flow");
    assert_ne!(entry.flags & CT_FLAG_UNESTABLISHED, 0, "{entry:?}");
    assert_eq!(bench.unestablished(), before + 1);
    // The client's ACK completes the handshake: same backend, flow established.
    assert_eq!(bench.send(c, TCP_ACK), (PASS, to));
    let entry = bench.forward_entry(c).expect("the flow stays");
    assert_eq!(entry.flags & CT_FLAG_UNESTABLISHED, 0, "{entry:?}");
    assert_eq!(bench.unestablished(), before);
}

/// An unestablished flow is gone after the SYN timeout: the program no longer translates it
/// and the sweeper deletes it, while an established flow stays.
pub fn unestablished_flow_expires(fx: &mut Fixture) {
    let bench = Bench::new(fx, 1_000);
    let established = client(2, 40_002);
    let (_, backend) = bench.send(established, TCP_SYN);
    bench.send(established, TCP_ACK);
    let pending = client(3, 40_003);
    let (_, to) = bench.send(pending, TCP_SYN);
    assert!(is_backend(to), "the SYN went to {to}");
    let opened = Instant::now();
    thread::sleep(SYN_TIMEOUT + Duration::from_millis(200));
    let service = SocketAddrV4::new(NODE_IP, NODE_PORT);
    assert_eq!(
        bench.send(pending, TCP_ACK),
        (PASS, service),
        "an ACK after the SYN timeout was still translated"
    );
    let deadline = Instant::now() + SYN_TIMEOUT * 3;
    while bench.forward_entry(pending).is_some() {
        assert!(
            Instant::now() < deadline,
            "the expired flow is still in the map {:?} after its SYN",
            opened.elapsed()
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert!(bench.forward_entry(established).is_some());
    assert_eq!(bench.send(established, TCP_ACK), (PASS, backend));
}

/// With the unestablished share full, SYNs are dropped and create nothing, while established
/// flows keep working; a completed handshake frees a place.
pub fn full_share_refuses_syns_and_keeps_established(fx: &mut Fixture) {
    // Wait for the sweeper to settle what earlier cases left (expired or not).
    let deadline = Instant::now() + SYN_TIMEOUT * 4;
    let mut bench = Bench::new(fx, 1_000);
    let established = client(4, 40_004);
    let (_, backend) = bench.send(established, TCP_SYN);
    bench.send(established, TCP_ACK);
    while bench.unestablished() != 0 {
        assert!(
            Instant::now() < deadline,
            "{} unestablished flows left",
            bench.unestablished()
        );
        thread::sleep(Duration::from_millis(100));
    }
    drop(bench);
    bench = Bench::new(fx, 3);
    let pending: Vec<SocketAddrV4> = (10..13).map(|n| client(n, 41_000)).collect();
    for &c in &pending {
        let (verdict, to) = bench.send(c, TCP_SYN);
        assert_eq!(verdict, PASS);
        assert!(is_backend(to), "the SYN of {c} went to {to}");
    }
    let refused = bench.refused();
    let late = client(20, 41_000);
    let (verdict, _) = bench.send(late, TCP_SYN);
    assert_eq!(verdict, DROP, "a SYN beyond the share was let through");
    assert_eq!(bench.forward_entry(late), None);
    assert_eq!(bench.refused(), refused + 1);
    assert_eq!(bench.send(established, TCP_ACK), (PASS, backend));
    assert!(bench.forward_entry(established).is_some());
    // One handshake completes: room for one more.
    bench.send(pending[0], TCP_ACK);
    let (verdict, to) = bench.send(late, TCP_SYN);
    assert_eq!(verdict, PASS);
    assert!(is_backend(to), "the SYN of {late} went to {to}");
}
