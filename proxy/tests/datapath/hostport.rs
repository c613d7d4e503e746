//! Cases for pods' hostPorts in the kernel programs: which frontend a destination on a node
//! address finds (NodePort first, then a hostPort bound to that address, then one on every
//! address), through the socket hooks (real clients) and the tc ingress program (crafted
//! frames, nothing sent).

use std::net::{Ipv4Addr, SocketAddrV4};

use ekube_proxy::{
    Affinity, BackendAddr, Frontend, Protocol, ServiceDatapath,
    datapath::{IngressProbe, ServiceOptions},
};

use crate::{BACKENDS, Fixture, Reply, TCP_PORT, handshake};

const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const OTHER_NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
/// Not an address of this node.
const ELSEWHERE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);

/// Backend `i` (b1, b2, b3) alone.
fn only(i: usize) -> [BackendAddr; 1] {
    [BackendAddr {
        ip: BACKENDS[i].1,
        port: TCP_PORT,
    }]
}

fn host_port(fx: &mut Fixture, host_ip: Option<Ipv4Addr>, port: u16, backend: usize) {
    let options = ServiceOptions {
        host_port: true,
        ..ServiceOptions::default()
    };
    let frontend = Frontend::host_port(host_ip, port, Protocol::Tcp);
    fx.dp()
        .upsert_service_with(frontend, &only(backend), options)
        .unwrap();
}

/// Where the tc ingress program sends a SYN to `dst`.
fn tc_destination(fx: &Fixture, probe: &IngressProbe, dst: SocketAddrV4) -> SocketAddrV4 {
    let client = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 40_100 + dst.port() % 100);
    let (verdict, to) = handshake::run_frame(fx, probe, client, dst, handshake::TCP_SYN);
    assert_eq!(verdict, 0, "SYN to {dst} not passed");
    to
}

pub fn host_ports_come_after_node_ports_and_stay_on_node_addresses(fx: &mut Fixture) {
    fx.dp().set_node_addrs(&[NODE_IP, OTHER_NODE_IP]).unwrap();
    host_port(fx, None, 8090, 0);
    // A NodePort of the same number wins over the hostPort.
    host_port(fx, None, 8091, 0);
    fx.dp()
        .upsert_service(
            Frontend::node_port(8091, Protocol::Tcp),
            &only(1),
            Affinity::None,
        )
        .unwrap();
    // Bound to one node address (and to one that is not this node's).
    host_port(fx, Some(OTHER_NODE_IP), 8092, 2);
    host_port(fx, Some(ELSEWHERE), 8093, 2);

    let b = |i: usize| SocketAddrV4::new(BACKENDS[i].1, TCP_PORT);
    let probe = IngressProbe::load(&fx.config).expect("loading the ingress program");
    let at = |ip, port| SocketAddrV4::new(ip, port);
    assert_eq!(tc_destination(fx, &probe, at(NODE_IP, 8090)), b(0));
    assert_eq!(tc_destination(fx, &probe, at(OTHER_NODE_IP, 8090)), b(0));
    assert_eq!(tc_destination(fx, &probe, at(NODE_IP, 8091)), b(1));
    assert_eq!(tc_destination(fx, &probe, at(OTHER_NODE_IP, 8092)), b(2));
    assert_eq!(
        tc_destination(fx, &probe, at(NODE_IP, 8092)),
        at(NODE_IP, 8092),
        "a hostPort bound to another address answered on {NODE_IP}"
    );

    // The socket hooks: the same choices for clients of this node, 127.0.0.1 included.
    let name = |job: &str| match fx.client(true, job).as_slice() {
        [Reply::Ok { name, .. }] => name.clone(),
        other => panic!("{job}: {other:?}"),
    };
    assert_eq!(name("tcp 127.0.0.1:8090 1"), "b1");
    assert_eq!(name(&format!("tcp {NODE_IP}:8090 1")), "b1");
    assert_eq!(name(&format!("tcp {NODE_IP}:8091 1")), "b2");
    assert_eq!(name(&format!("tcp {OTHER_NODE_IP}:8092 1")), "b3");
    // Not this node's address: left alone (nothing routes it in the test namespace).
    let elsewhere = fx.client(true, &format!("tcp {ELSEWHERE}:8093 1"));
    assert!(
        !matches!(elsewhere.as_slice(), [Reply::Ok { .. }]),
        "{ELSEWHERE}:8093 was translated: {elsewhere:?}"
    );
    for port in [8090, 8091, 8092, 8093] {
        for ip in [None, Some(OTHER_NODE_IP), Some(ELSEWHERE)] {
            fx.dp()
                .delete_service(Frontend::host_port(ip, port, Protocol::Tcp))
                .unwrap();
        }
    }
    fx.dp()
        .delete_service(Frontend::node_port(8091, Protocol::Tcp))
        .unwrap();
}
