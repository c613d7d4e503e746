//! Stale UDP flows in the kernel's connection tracking, removed after each rule write as
//! kube-proxy does (`CleanStaleEntries`).
//!
//! UDP has no connection to close. A client that keeps sending from one socket keeps using the
//! conntrack entry its first datagram made, and the rules only ever see that first datagram. So
//! a flow whose endpoint has gone keeps going to it, and a flow that began before its Service
//! had endpoints (or rules) keeps going to the node itself; neither recovers until it has been
//! idle for the UDP timeout, which a client sending every few seconds never is. After each
//! write, for every UDP Service port that has endpoints, the flows addressed to its
//! `ClusterIP:port`, or to its NodePort on any address, whose replies do not come from one of
//! its endpoints are deleted; the rules balance their next datagram again.
//!
//! [`clean`] decides from the [`Model`] and the listed flows; [`Netlink`] lists and deletes
//! them over `NETLINK_NETFILTER`.

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    net::{IpAddr, Ipv4Addr, SocketAddrV4},
};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
    conntrack::{ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use super::Model;
use crate::datapath::Protocol as ServiceProtocol;

/// One UDP flow as conntrack holds it: the addresses of its first datagram and the address its
/// replies come from (the endpoint it was DNATed to, or the original destination when it was
/// not translated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpFlow {
    pub source: SocketAddrV4,
    pub destination: SocketAddrV4,
    pub reply_source: Ipv4Addr,
}

/// Where a rule mode finds and deletes UDP flows.
pub trait FlowTable: Send {
    /// Every IPv4 UDP flow.
    fn udp_flows(&mut self) -> io::Result<Vec<UdpFlow>>;

    /// Deletes `flow`; one that is already gone is not an error.
    fn delete(&mut self, flow: &UdpFlow) -> io::Result<()>;
}

/// The endpoint addresses each UDP frontend may reply from, for the ports that have any.
#[derive(Debug, Default)]
struct Serving {
    cluster: BTreeMap<SocketAddrV4, BTreeSet<Ipv4Addr>>,
    node_ports: BTreeMap<u16, BTreeSet<Ipv4Addr>>,
}

impl Serving {
    fn of(model: &Model) -> Self {
        let mut serving = Self::default();
        for group in model.groups() {
            if group.proto != ServiceProtocol::Udp {
                continue;
            }
            // All the port's endpoints: a NodePort with `externalTrafficPolicy: Local` lists
            // only this node's, but a flow to any of them is a live one.
            let endpoints: BTreeSet<Ipv4Addr> = [group.cluster, group.node_port]
                .into_iter()
                .flatten()
                .flat_map(|(_, fm)| fm.backends.iter().map(|b| b.ip))
                .collect();
            if endpoints.is_empty() {
                continue;
            }
            if let Some((frontend, _)) = group.cluster {
                let addr = SocketAddrV4::new(frontend.ip, frontend.port);
                serving.cluster.insert(addr, endpoints.clone());
            }
            if let Some((frontend, _)) = group.node_port {
                serving.node_ports.insert(frontend.port, endpoints);
            }
        }
        serving
    }

    fn is_empty(&self) -> bool {
        self.cluster.is_empty() && self.node_ports.is_empty()
    }

    fn is_stale(&self, flow: &UdpFlow) -> bool {
        let not_serving = |endpoints: &BTreeSet<Ipv4Addr>| !endpoints.contains(&flow.reply_source);
        self.cluster.get(&flow.destination).is_some_and(not_serving)
            || (self.node_ports.get(&flow.destination.port())).is_some_and(not_serving)
    }
}

/// Deletes the stale flows of `model` from `table`: how many it deleted. Lists nothing when no
/// UDP Service port has endpoints.
pub fn clean(table: &mut dyn FlowTable, model: &Model) -> io::Result<usize> {
    let serving = Serving::of(model);
    if serving.is_empty() {
        return Ok(0);
    }
    let mut deleted = 0;
    for flow in table.udp_flows()? {
        if serving.is_stale(&flow) {
            table.delete(&flow)?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// The kernel's conntrack table of this network namespace, over `NETLINK_NETFILTER`: one
/// socket, opened at the first request and kept for the next (a cleaning pass is a dump and a
/// delete per stale flow), opened again after it failed.
#[derive(Default)]
pub struct Netlink {
    socket: Option<Socket>,
    /// Of the last request; an answer to another one (left by a request that failed
    /// midway) is skipped.
    sequence: u32,
}

impl Netlink {
    /// Sends one conntrack request and hands each conntrack message of the answer to `each`,
    /// until the dump ends or the kernel acknowledges.
    fn request(
        &mut self,
        flags: u16,
        message: ConntrackMessage,
        each: impl FnMut(ConntrackMessage),
    ) -> io::Result<()> {
        let socket = match self.socket.take() {
            Some(socket) => socket,
            None => {
                let mut socket = Socket::new(NETLINK_NETFILTER)?;
                socket.bind_auto()?;
                socket.connect(&SocketAddr::new(0, 0))?;
                socket
            }
        };
        self.sequence = self.sequence.wrapping_add(1);
        // After a failure the socket may hold the rest of an answer: it is not used again. A
        // refusal is the kernel's whole answer.
        let refused = exchange(&socket, self.sequence, flags, message, each)?;
        self.socket = Some(socket);
        refused
    }
}

/// Sends `message` as request `sequence` and hands each conntrack message of the answer to
/// `each`, until the dump ends or the kernel acknowledges. The outer error is the socket's;
/// the inner one, the kernel refusing the request.
fn exchange(
    socket: &Socket,
    sequence: u32,
    flags: u16,
    message: ConntrackMessage,
    mut each: impl FnMut(ConntrackMessage),
) -> io::Result<io::Result<()>> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = sequence;
    let inner = NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0),
        message,
    );
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(inner));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;

    loop {
        let (data, _) = socket.recv_from_full()?;
        let mut offset = 0;
        while offset < data.len() {
            let reply = NetlinkMessage::<NetfilterMessage>::deserialize(&data[offset..])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = reply.header.length as usize;
            if reply.header.sequence_number == sequence {
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(Ok(())),
                    NetlinkPayload::Error(err) => {
                        return Ok(match err.code {
                            None => Ok(()),
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                        });
                    }
                    NetlinkPayload::InnerMessage(NetfilterMessage {
                        inner: NetfilterMessageInner::Conntrack(message),
                        ..
                    }) => each(message),
                    _ => {}
                }
            }
            if len == 0 {
                break;
            }
            offset += len.next_multiple_of(4);
        }
    }
}

impl FlowTable for Netlink {
    fn udp_flows(&mut self) -> io::Result<Vec<UdpFlow>> {
        let mut flows = Vec::new();
        self.request(NLM_F_DUMP, ConntrackMessage::Get(Vec::new()), |message| {
            if let ConntrackMessage::New(attrs) | ConntrackMessage::Get(attrs) = message
                && let Some(flow) = udp_flow(&attrs)
            {
                flows.push(flow);
            }
        })?;
        Ok(flows)
    }

    fn delete(&mut self, flow: &UdpFlow) -> io::Result<()> {
        let tuple = vec![
            Tuple::Ip(vec![
                IPTuple::SourceAddress(IpAddr::V4(*flow.source.ip())),
                IPTuple::DestinationAddress(IpAddr::V4(*flow.destination.ip())),
            ]),
            Tuple::Proto(vec![
                ProtoTuple::Protocol(Protocol::Udp),
                ProtoTuple::SourcePort(flow.source.port()),
                ProtoTuple::DestinationPort(flow.destination.port()),
            ]),
        ];
        let message = ConntrackMessage::Delete(vec![ConntrackAttribute::CtaTupleOrig(tuple)]);
        match self.request(NLM_F_ACK, message, |_| {}) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other,
        }
    }
}

/// The UDP flow a dumped conntrack entry describes, if it is one.
fn udp_flow(attrs: &[ConntrackAttribute]) -> Option<UdpFlow> {
    let (mut original, mut reply) = (None, None);
    for attr in attrs {
        match attr {
            ConntrackAttribute::CtaTupleOrig(tuple) => original = Some(endpoints(tuple)?),
            ConntrackAttribute::CtaTupleReply(tuple) => reply = Some(endpoints(tuple)?),
            _ => {}
        }
    }
    let ((source, destination), (reply_source, _)) = (original?, reply?);
    Some(UdpFlow {
        source,
        destination,
        reply_source: *reply_source.ip(),
    })
}

/// Source and destination of an IPv4 UDP tuple.
fn endpoints(tuple: &[Tuple]) -> Option<(SocketAddrV4, SocketAddrV4)> {
    let (mut src, mut dst, mut sport, mut dport, mut udp) = (None, None, None, None, false);
    for part in tuple {
        match part {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(IpAddr::V4(a)) => src = Some(*a),
                        IPTuple::DestinationAddress(IpAddr::V4(a)) => dst = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(fields) => {
                for field in fields {
                    match field {
                        ProtoTuple::Protocol(p) => udp = *p == Protocol::Udp,
                        ProtoTuple::SourcePort(p) => sport = Some(*p),
                        ProtoTuple::DestinationPort(p) => dport = Some(*p),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if !udp {
        return None;
    }
    Some((
        SocketAddrV4::new(src?, sport?),
        SocketAddrV4::new(dst?, dport?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        datapath::{Affinity, Frontend},
        rules::{FrontendModel, fixtures::ep},
    };

    /// The flows of `flows` that [`clean`] would delete.
    fn stale(model: &Model, flows: &[UdpFlow]) -> Vec<UdpFlow> {
        let serving = Serving::of(model);
        flows
            .iter()
            .filter(|flow| serving.is_stale(flow))
            .copied()
            .collect()
    }

    fn udp_frontend(model: &mut Model, frontend: Frontend, backends: &[&str], name: &str) {
        let backends = backends.iter().map(|ip| ep(ip, 5353)).collect();
        let fm = FrontendModel {
            backends,
            affinity: Affinity::None,
            external_local: false,
        };
        model.frontends.insert(frontend, fm);
        model.ports.insert(frontend, name.to_string());
    }

    fn flow(source: &str, destination: &str, reply_source: &str) -> UdpFlow {
        UdpFlow {
            source: source.parse().unwrap(),
            destination: destination.parse().unwrap(),
            reply_source: reply_source.parse().unwrap(),
        }
    }

    /// `default/dns:dns`: ClusterIP 10.96.0.10:53 and NodePort 30053 over 10.244.0.11 and .12.
    fn dns() -> Model {
        let mut model = Model::default();
        let cluster = Frontend::cluster_ip([10, 96, 0, 10].into(), 53, ServiceProtocol::Udp);
        let node_port = Frontend::node_port(30053, ServiceProtocol::Udp);
        for frontend in [cluster, node_port] {
            let endpoints = ["10.244.0.11", "10.244.0.12"];
            udp_frontend(&mut model, frontend, &endpoints, "default/dns:dns");
        }
        model
    }

    #[test]
    fn flows_not_answered_by_an_endpoint_are_stale() {
        let model = dns();
        let flows = [
            // Live: DNATed to an endpoint.
            flow("10.244.0.5:4000", "10.96.0.10:53", "10.244.0.11"),
            flow("192.168.1.9:4000", "192.168.1.10:30053", "10.244.0.12"),
            // The endpoint .13 has gone.
            flow("10.244.0.5:4001", "10.96.0.10:53", "10.244.0.13"),
            // Began before the rules: not translated, answered by the node itself.
            flow("192.168.1.9:4001", "192.168.1.10:30053", "192.168.1.10"),
            // Another port of the ClusterIP, and a port that is no NodePort: not ours.
            flow("10.244.0.5:4002", "10.96.0.10:54", "10.96.0.10"),
            flow("10.244.0.5:4003", "8.8.8.8:53", "8.8.8.8"),
        ];
        assert_eq!(stale(&model, &flows), vec![flows[2], flows[3]]);
    }

    #[test]
    fn ports_without_endpoints_and_tcp_ports_are_left_alone() {
        let mut model = Model::default();
        let empty = Frontend::cluster_ip([10, 96, 0, 11].into(), 53, ServiceProtocol::Udp);
        udp_frontend(&mut model, empty, &[], "default/empty:dns");
        let tcp = Frontend::cluster_ip([10, 96, 0, 12].into(), 53, ServiceProtocol::Tcp);
        udp_frontend(&mut model, tcp, &["10.244.0.11"], "default/tcp:dns");
        let flows = [
            flow("10.244.0.5:4000", "10.96.0.11:53", "10.96.0.11"),
            flow("10.244.0.5:4000", "10.96.0.12:53", "10.96.0.12"),
        ];
        assert_eq!(stale(&model, &flows), vec![]);
    }

    #[test]
    fn a_local_node_port_keeps_flows_to_endpoints_elsewhere() {
        // externalTrafficPolicy: Local: the NodePort frontend holds only this node's endpoint,
        // the ClusterIP both.
        let mut model = dns();
        let node_port = Frontend::node_port(30053, ServiceProtocol::Udp);
        let local = model.frontends.get_mut(&node_port).unwrap();
        local
            .backends
            .retain(|b| b.ip == Ipv4Addr::new(10, 244, 0, 11));
        local.external_local = true;
        let flows = [flow(
            "192.168.1.9:4000",
            "192.168.1.10:30053",
            "10.244.0.12",
        )];
        assert_eq!(stale(&model, &flows), vec![]);
    }

    /// A table in memory.
    #[derive(Default)]
    struct Table {
        flows: Vec<UdpFlow>,
        listed: usize,
    }

    impl FlowTable for Table {
        fn udp_flows(&mut self) -> io::Result<Vec<UdpFlow>> {
            self.listed += 1;
            Ok(self.flows.clone())
        }

        fn delete(&mut self, flow: &UdpFlow) -> io::Result<()> {
            self.flows.retain(|f| f != flow);
            Ok(())
        }
    }

    #[test]
    fn clean_deletes_the_stale_flows_and_lists_nothing_without_udp_endpoints() {
        let live = flow("10.244.0.5:4000", "10.96.0.10:53", "10.244.0.11");
        let gone = flow("10.244.0.5:4001", "10.96.0.10:53", "10.244.0.13");
        let mut table = Table {
            flows: vec![live, gone],
            listed: 0,
        };
        assert_eq!(clean(&mut table, &dns()).unwrap(), 1);
        assert_eq!(table.flows, vec![live]);

        assert_eq!(clean(&mut table, &Model::default()).unwrap(), 0);
        assert_eq!(
            table.listed, 1,
            "a model without UDP endpoints lists nothing"
        );
    }

    #[test]
    fn dumped_entries_become_flows() {
        let ips = |src: [u8; 4], dst: [u8; 4]| {
            Tuple::Ip(vec![
                IPTuple::SourceAddress(IpAddr::from(src)),
                IPTuple::DestinationAddress(IpAddr::from(dst)),
            ])
        };
        let ports = |proto, sport, dport| {
            Tuple::Proto(vec![
                ProtoTuple::Protocol(proto),
                ProtoTuple::SourcePort(sport),
                ProtoTuple::DestinationPort(dport),
            ])
        };
        let entry = |proto| {
            vec![
                ConntrackAttribute::CtaTupleOrig(vec![
                    ips([10, 244, 0, 5], [10, 96, 0, 10]),
                    ports(proto, 4000, 53),
                ]),
                ConntrackAttribute::CtaTupleReply(vec![
                    ips([10, 244, 0, 11], [10, 244, 0, 5]),
                    ports(proto, 5353, 4000),
                ]),
                ConntrackAttribute::CtaMark(0),
            ]
        };
        assert_eq!(
            udp_flow(&entry(Protocol::Udp)),
            Some(flow("10.244.0.5:4000", "10.96.0.10:53", "10.244.0.11"))
        );
        assert_eq!(udp_flow(&entry(Protocol::Tcp)), None);
    }
}
