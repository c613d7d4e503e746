use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record};

use super::*;
use crate::records::tests::{service, slice};

/// A fake upstream on loopback answering every A query with 192.0.2.1 (TTL 300), counting
/// what it is asked.
async fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            counter.fetch_add(1, Ordering::SeqCst);
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut r = Message::response(q.metadata.id, OpCode::Query);
            r.add_queries(q.queries.clone());
            let name = q.queries[0].name().clone();
            r.add_answer(Record::from_rdata(
                name,
                300,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
            ));
            socket.send_to(&r.to_vec().unwrap(), peer).await.unwrap();
        }
    });
    (addr, asked)
}

fn handler(upstreams: Vec<SocketAddr>) -> Handler {
    let mut r = Records::default();
    r.apply_service(&service(
        "default",
        "web",
        serde_json::json!({"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]}),
    ));
    r.apply_service(&service(
        "default",
        "ext",
        serde_json::json!({"type": "ExternalName", "externalName": "example.org"}),
    ));
    r.apply_service(&service(
        "default",
        "many",
        serde_json::json!({"clusterIP": "None"}),
    ));
    let endpoints: Vec<(String, Option<&str>, bool)> = (1..=60)
        .map(|i| (format!("10.244.1.{i}"), None, true))
        .collect();
    let endpoints: Vec<(&str, Option<&str>, bool)> = endpoints
        .iter()
        .map(|(a, h, r)| (a.as_str(), *h, *r))
        .collect();
    r.apply_slice(&slice(
        "default",
        "many-x",
        "many",
        &endpoints,
        serde_json::json!([]),
    ));
    Handler {
        zone: Zone {
            domain: "cluster.local".into(),
            ttl: 30,
        },
        records: Arc::new(RwLock::new(r)),
        forwarder: Forwarder::new(upstreams),
        metrics: Arc::new(Metrics::default()),
    }
}

fn query(name: &str, kind: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.id = 0x4242;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_str(name).unwrap(), kind));
    m
}

async fn exchange(h: &Handler, request: &Message, protocol: Protocol) -> Message {
    let bytes = h
        .handle(&request.to_vec().unwrap(), protocol)
        .await
        .expect("a response");
    let response = Message::from_vec(&bytes).unwrap();
    assert_eq!(response.metadata.id, request.metadata.id);
    response
}

#[tokio::test]
async fn a_cluster_name_is_answered_authoritatively() {
    let h = handler(vec![]);
    let r = exchange(
        &h,
        &query("web.default.svc.cluster.local.", RecordType::A),
        Protocol::Udp,
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert!(r.metadata.recursion_available);
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.queries.len(), 1, "the question is echoed");
}

#[tokio::test]
async fn bad_messages_get_errors_and_the_server_goes_on() {
    let h = handler(vec![]);
    // A name whose first label claims 1 KiB (a length byte no label may have).
    let mut bytes = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff];
    bytes.extend(std::iter::repeat_n(b'a', 1024));
    bytes.extend([0, 0, 1, 0, 1]);
    let r = Message::from_vec(&h.handle(&bytes, Protocol::Udp).await.unwrap()).unwrap();
    assert_eq!(r.metadata.id, 0x1234);
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);

    // A header that promises a question it does not carry.
    let r = h
        .handle(
            &[0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0],
            Protocol::Udp,
        )
        .await;
    let r = Message::from_vec(&r.unwrap()).unwrap();
    assert_eq!(
        (r.metadata.id, r.metadata.response_code),
        (0xabcd, ResponseCode::FormErr)
    );

    // Too short for a header, or not a query: no answer at all.
    assert!(h.handle(&[1, 2, 3], Protocol::Udp).await.is_none());
    let mut response = query("web.default.svc.cluster.local.", RecordType::A);
    response.metadata.message_type = hickory_proto::op::MessageType::Response;
    assert!(
        h.handle(&response.to_vec().unwrap(), Protocol::Udp)
            .await
            .is_none()
    );

    let any = exchange(
        &h,
        &query("web.default.svc.cluster.local.", RecordType::ANY),
        Protocol::Udp,
    )
    .await;
    assert_eq!(any.metadata.response_code, ResponseCode::NotImp);
    let axfr = exchange(
        &h,
        &query("cluster.local.", RecordType::AXFR),
        Protocol::Tcp,
    )
    .await;
    assert_eq!(axfr.metadata.response_code, ResponseCode::NotImp);

    let mut status = query("web.default.svc.cluster.local.", RecordType::A);
    status.metadata.op_code = OpCode::Status;
    assert_eq!(
        exchange(&h, &status, Protocol::Udp)
            .await
            .metadata
            .response_code,
        ResponseCode::NotImp
    );

    let mut two = query("web.default.svc.cluster.local.", RecordType::A);
    two.add_query(Query::query(Name::from_str("x.").unwrap(), RecordType::A));
    assert_eq!(
        exchange(&h, &two, Protocol::Udp)
            .await
            .metadata
            .response_code,
        ResponseCode::FormErr
    );

    let mut chaos = query("version.bind.", RecordType::TXT);
    chaos.queries[0].set_query_class(DNSClass::CH);
    assert_eq!(
        exchange(&h, &chaos, Protocol::Udp)
            .await
            .metadata
            .response_code,
        ResponseCode::NotImp
    );

    // An unknown type: the name exists (NODATA) or does not (NXDOMAIN).
    let unknown = RecordType::Unknown(999);
    let r = exchange(
        &h,
        &query("web.default.svc.cluster.local.", unknown),
        Protocol::Udp,
    )
    .await;
    assert_eq!(
        (r.metadata.response_code, r.answers.len()),
        (ResponseCode::NoError, 0)
    );
    assert_eq!(r.authorities.len(), 1);
    let r = exchange(
        &h,
        &query("nope.default.svc.cluster.local.", unknown),
        Protocol::Udp,
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);

    // And it still answers.
    let r = exchange(
        &h,
        &query("web.default.svc.cluster.local.", RecordType::A),
        Protocol::Udp,
    )
    .await;
    assert_eq!(r.answers.len(), 1);
    let metrics = h.metrics.render();
    assert!(metrics.contains("rcode=\"FORMERR\"} 3"), "{metrics}");
}

#[tokio::test]
async fn a_long_answer_is_truncated_over_udp_and_whole_over_tcp() {
    let h = handler(vec![]);
    let q = query("many.default.svc.cluster.local.", RecordType::A);
    let udp = h.handle(&q.to_vec().unwrap(), Protocol::Udp).await.unwrap();
    assert!(udp.len() <= 512);
    let udp = Message::from_vec(&udp).unwrap();
    assert!(
        udp.metadata.truncation,
        "60 addresses do not fit in 512 bytes"
    );
    assert!(udp.answers.is_empty());

    // With EDNS the client takes more, up to the 1232 bytes the server offers.
    let mut edns_q = q.clone();
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    edns_q.set_edns(edns);
    let r = h
        .handle(&edns_q.to_vec().unwrap(), Protocol::Udp)
        .await
        .unwrap();
    assert!(r.len() <= 1232);
    let r = Message::from_vec(&r).unwrap();
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 60);
    assert_eq!(r.edns.as_ref().map(|e| e.max_payload()), Some(1232));

    let tcp = exchange(&h, &q, Protocol::Tcp).await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 60);
}

#[tokio::test]
async fn other_names_are_forwarded_and_cached() {
    let (addr, asked) = upstream().await;
    let h = handler(vec![addr]);
    let first = exchange(&h, &query("example.org.", RecordType::A), Protocol::Udp).await;
    assert_eq!(first.answers.len(), 1);
    assert!(!first.metadata.authoritative);
    let second = exchange(&h, &query("EXAMPLE.org.", RecordType::A), Protocol::Udp).await;
    assert_eq!(second.answers.len(), 1);
    assert!(second.answers[0].ttl <= 30, "cached at most 30 s");
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "the second came from the cache"
    );

    // An ExternalName: its CNAME, then the target's addresses.
    let ext = exchange(
        &h,
        &query("ext.default.svc.cluster.local.", RecordType::A),
        Protocol::Udp,
    )
    .await;
    let types: Vec<RecordType> = ext.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types, vec![RecordType::CNAME, RecordType::A]);
}

#[tokio::test]
async fn an_unreachable_upstream_is_servfail() {
    // A bound socket nobody reads from: the query times out.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let h = handler(vec![silent.local_addr().unwrap()]);
    let r = exchange(&h, &query("example.org.", RecordType::A), Protocol::Udp).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
}
