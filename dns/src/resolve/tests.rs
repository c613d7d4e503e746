use std::str::FromStr;

use super::*;
use crate::records::tests::{service, slice};

fn zone() -> Zone {
    Zone {
        domain: "cluster.local".into(),
        ttl: 30,
    }
}

fn records() -> Records {
    let mut r = Records::default();
    r.apply_service(&service(
        "default",
        "web",
        serde_json::json!({"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]}),
    ));
    r.apply_service(&service(
        "kube-system",
        "kube-dns",
        serde_json::json!({"clusterIP": "10.96.0.10", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}),
    ));
    r.apply_service(&service(
        "default",
        "db",
        serde_json::json!({"clusterIP": "None"}),
    ));
    r.apply_slice(&slice(
        "default",
        "db-x",
        "db",
        &[
            ("10.244.1.5", Some("db-0"), true),
            ("10.244.2.6", None, true),
            ("10.244.3.7", None, false),
        ],
        serde_json::json!([{"name": "sql", "port": 3306}]),
    ));
    r.apply_service(&service(
        "default",
        "empty",
        serde_json::json!({"clusterIP": "None"}),
    ));
    r.apply_service(&service(
        "default",
        "ext",
        serde_json::json!({"type": "ExternalName", "externalName": "example.org."}),
    ));
    r
}

fn ask(name: &str, kind: RecordType) -> Resolution {
    zone().resolve(&records(), &Name::from_str(name).unwrap(), kind, 7)
}

fn answer(name: &str, kind: RecordType) -> Answer {
    match ask(name, kind) {
        Resolution::Answer(a) => a,
        other => panic!("{name} {kind}: {other:?}"),
    }
}

/// The answer section as `type data` strings.
fn data(a: &Answer) -> Vec<String> {
    a.answers
        .iter()
        .map(|r| format!("{} {}", r.record_type(), r.data))
        .collect()
}

fn nxdomain(name: &str, kind: RecordType) {
    let a = answer(name, kind);
    assert_eq!(a.code, ResponseCode::NXDomain, "{name}");
    assert!(a.answers.is_empty());
    assert_eq!(a.authority.len(), 1, "SOA with NXDOMAIN");
}

fn nodata(name: &str, kind: RecordType) {
    let a = answer(name, kind);
    assert_eq!(a.code, ResponseCode::NoError, "{name}");
    assert!(a.answers.is_empty(), "{name}: {:?}", a.answers);
    assert_eq!(a.authority[0].record_type(), RecordType::SOA);
}

#[test]
fn a_cluster_ip_service() {
    let a = answer("web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&a), vec!["A 10.96.0.20"]);
    assert_eq!(a.answers[0].ttl, 30);
    assert!(a.authority.is_empty());
    // Names are case-insensitive.
    assert_eq!(
        data(&answer("WEB.Default.SVC.cluster.LOCAL.", RecordType::A)),
        vec!["A 10.96.0.20"]
    );
    nodata("web.default.svc.cluster.local.", RecordType::AAAA);
    nodata("web.default.svc.cluster.local.", RecordType::MX);
    nxdomain("nope.default.svc.cluster.local.", RecordType::A);
    nxdomain("web.other.svc.cluster.local.", RecordType::A);
}

#[test]
fn a_headless_service_answers_its_ready_endpoints() {
    let a = answer("db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&a), vec!["A 10.244.1.5", "A 10.244.2.6"]);
    nxdomain("empty.default.svc.cluster.local.", RecordType::A);
    nxdomain("empty.default.svc.cluster.local.", RecordType::SRV);
    // Endpoints by hostname, else by dashed address; not-ready ones are not there.
    assert_eq!(
        data(&answer("db-0.db.default.svc.cluster.local.", RecordType::A)),
        vec!["A 10.244.1.5"]
    );
    assert_eq!(
        data(&answer(
            "10-244-2-6.db.default.svc.cluster.local.",
            RecordType::A
        )),
        vec!["A 10.244.2.6"]
    );
    nxdomain("10-244-3-7.db.default.svc.cluster.local.", RecordType::A);
    nxdomain("db-9.db.default.svc.cluster.local.", RecordType::A);
}

#[test]
fn srv_of_named_ports() {
    let a = answer("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(
        data(&a),
        vec!["SRV 0 100 80 web.default.svc.cluster.local."]
    );
    assert_eq!(a.additionals.len(), 1);
    assert_eq!(a.additionals[0].data.to_string(), "10.96.0.20");

    let a = answer("_sql._tcp.db.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(
        data(&a),
        vec![
            "SRV 0 50 3306 db-0.db.default.svc.cluster.local.",
            "SRV 0 50 3306 10-244-2-6.db.default.svc.cluster.local."
        ]
    );
    assert_eq!(a.additionals.len(), 2);
    // The service's own name answers SRV for all its named ports.
    assert_eq!(
        data(&answer("web.default.svc.cluster.local.", RecordType::SRV)).len(),
        1
    );
    nxdomain("_http._udp.web.default.svc.cluster.local.", RecordType::SRV);
    nxdomain("_nope._tcp.web.default.svc.cluster.local.", RecordType::SRV);
    nodata("_http._tcp.web.default.svc.cluster.local.", RecordType::A);
}

#[test]
fn external_name_is_a_cname() {
    match ask("ext.default.svc.cluster.local.", RecordType::A) {
        Resolution::Alias(alias) => {
            let Alias { cname, target } = *alias;
            assert_eq!(cname.record_type(), RecordType::CNAME);
            assert_eq!(target.to_string(), "example.org.");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn reverse_names() {
    let a = answer("20.0.96.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(data(&a), vec!["PTR web.default.svc.cluster.local."]);
    let a = answer("5.1.244.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(data(&a), vec!["PTR db-0.db.default.svc.cluster.local."]);
    // Addresses the cluster does not know are the upstream's.
    assert_eq!(
        ask("8.8.8.8.in-addr.arpa.", RecordType::PTR),
        Resolution::Forward
    );
    assert_eq!(
        ask("300.0.96.10.in-addr.arpa.", RecordType::PTR),
        Resolution::Forward
    );
}

#[test]
fn pods_by_dashed_address() {
    let a = answer("10-244-1-9.default.pod.cluster.local.", RecordType::A);
    assert_eq!(data(&a), vec!["A 10.244.1.9"]);
    nxdomain("10-244-1-999.default.pod.cluster.local.", RecordType::A);
    nxdomain("nonsense.default.pod.cluster.local.", RecordType::A);
}

#[test]
fn the_zones_own_names() {
    let a = answer("cluster.local.", RecordType::SOA);
    assert_eq!(a.answers.len(), 1);
    assert!(
        a.answers[0]
            .data
            .to_string()
            .starts_with("ns.dns.cluster.local. hostmaster.cluster.local. 7 ")
    );
    assert_eq!(
        data(&answer("cluster.local.", RecordType::NS)),
        vec!["NS ns.dns.cluster.local."]
    );
    assert_eq!(
        data(&answer("ns.dns.cluster.local.", RecordType::A)),
        vec!["A 10.96.0.10"]
    );
    assert_eq!(
        data(&answer("dns-version.cluster.local.", RecordType::TXT)),
        vec!["TXT 1.1.0"]
    );
    nodata("svc.cluster.local.", RecordType::A);
    nodata("default.svc.cluster.local.", RecordType::A);
    nxdomain("nons.svc.cluster.local.", RecordType::A);
    nxdomain("a.b.c.d.e.svc.cluster.local.", RecordType::A);
    nxdomain("whatever.cluster.local.", RecordType::A);
}

#[test]
fn other_names_are_forwarded() {
    assert_eq!(ask("example.org.", RecordType::A), Resolution::Forward);
    assert_eq!(ask("local.", RecordType::A), Resolution::Forward);
    assert_eq!(ask("notcluster.local.", RecordType::A), Resolution::Forward);
    let other = Zone {
        domain: "k8s.example".into(),
        ttl: 5,
    };
    assert_eq!(
        other.resolve(
            &records(),
            &Name::from_str("web.default.svc.cluster.local.").unwrap(),
            RecordType::A,
            1
        ),
        Resolution::Forward
    );
}
