use super::*;

pub(crate) fn service(ns: &str, name: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": spec,
    }))
    .expect("service")
}

/// A slice of `svc` whose endpoints are (address, hostname, ready).
pub(crate) fn slice(
    ns: &str,
    name: &str,
    svc: &str,
    endpoints: &[(&str, Option<&str>, bool)],
    ports: serde_json::Value,
) -> EndpointSlice {
    let endpoints: Vec<serde_json::Value> = endpoints
        .iter()
        .map(|(ip, host, ready)| {
            serde_json::json!({"addresses": [ip], "hostname": host, "conditions": {"ready": ready}})
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": ns, "name": name, "labels": {SERVICE_NAME_LABEL: svc}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }))
    .expect("slice")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn reverse_of(r: &Records, addr: &str) -> Vec<String> {
    r.reverse(&ip(addr)).map(str::to_owned).collect()
}

#[test]
fn a_services_kind_and_named_ports() {
    let mut r = Records::default();
    r.apply_service(&service(
        "default",
        "web",
        serde_json::json!({"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
            "ports": [{"name": "http", "port": 80}, {"port": 81}, {"name": "dns", "port": 53, "protocol": "UDP"}]}),
    ));
    r.apply_service(&service(
        "default",
        "db",
        serde_json::json!({"clusterIP": "None"}),
    ));
    r.apply_service(&service(
        "default",
        "ext",
        serde_json::json!({"type": "ExternalName", "externalName": "example.org"}),
    ));
    let web = r.service("default", "web").unwrap();
    assert_eq!(web.kind, Kind::ClusterIp(vec![ip("10.96.0.20")]));
    assert_eq!(
        web.ports,
        vec![
            Port {
                name: "http".into(),
                protocol: "tcp".into(),
                port: 80
            },
            Port {
                name: "dns".into(),
                protocol: "udp".into(),
                port: 53
            },
        ],
        "unnamed ports have no SRV name"
    );
    assert_eq!(r.service("default", "db").unwrap().kind, Kind::Headless);
    assert_eq!(
        r.service("default", "ext").unwrap().kind,
        Kind::ExternalName("example.org".into())
    );
    assert!(r.has_namespace("default"));
    assert_eq!(reverse_of(&r, "10.96.0.20"), vec!["web.default.svc"]);
}

#[test]
fn endpoints_are_the_ready_ones_unless_not_ready_ones_are_published() {
    let mut r = Records::default();
    r.apply_service(&service(
        "default",
        "db",
        serde_json::json!({"clusterIP": "None"}),
    ));
    r.apply_slice(&slice(
        "default",
        "db-1",
        "db",
        &[
            ("10.244.1.5", Some("db-0"), true),
            ("10.244.2.6", None, false),
        ],
        serde_json::json!([{"name": "sql", "port": 3306}]),
    ));
    let ready: Vec<_> = r
        .endpoints("default", "db")
        .map(|(e, _)| e.addresses[0])
        .collect();
    assert_eq!(ready, vec![ip("10.244.1.5")]);
    assert_eq!(reverse_of(&r, "10.244.1.5"), vec!["db-0.db.default.svc"]);
    assert!(reverse_of(&r, "10.244.2.6").is_empty());

    r.apply_service(&service(
        "default",
        "db",
        serde_json::json!({"clusterIP": "None", "publishNotReadyAddresses": true}),
    ));
    assert_eq!(r.endpoints("default", "db").count(), 2);
    assert_eq!(
        reverse_of(&r, "10.244.2.6"),
        vec!["10-244-2-6.db.default.svc"]
    );
}

#[test]
fn a_slice_before_its_service_and_deletions() {
    let mut r = Records::default();
    r.apply_slice(&slice(
        "ns1",
        "db-a",
        "db",
        &[("10.244.1.5", None, true)],
        serde_json::json!([]),
    ));
    assert!(reverse_of(&r, "10.244.1.5").is_empty(), "no service yet");
    r.apply_service(&service(
        "ns1",
        "db",
        serde_json::json!({"clusterIP": "None"}),
    ));
    assert_eq!(reverse_of(&r, "10.244.1.5"), vec!["10-244-1-5.db.ns1.svc"]);
    let serial = r.serial();

    r.delete_slice("ns1", "db-a");
    assert_eq!(r.endpoints("ns1", "db").count(), 0);
    assert!(reverse_of(&r, "10.244.1.5").is_empty());
    assert_ne!(r.serial(), serial, "a change moves the serial");

    r.delete_service("ns1", "db");
    assert!(r.service("ns1", "db").is_none());
    assert!(!r.has_namespace("ns1"));
}

#[test]
fn a_fresh_list_replaces_what_was_held() {
    let mut r = Records::default();
    r.apply_service(&service(
        "default",
        "old",
        serde_json::json!({"clusterIP": "10.96.0.30"}),
    ));
    r.apply_service(&service(
        "default",
        "kept",
        serde_json::json!({"clusterIP": "10.96.0.31"}),
    ));
    r.replace_services(&[service(
        "default",
        "kept",
        serde_json::json!({"clusterIP": "10.96.0.32"}),
    )]);
    assert!(r.service("default", "old").is_none());
    assert!(reverse_of(&r, "10.96.0.30").is_empty());
    assert!(reverse_of(&r, "10.96.0.31").is_empty());
    assert_eq!(reverse_of(&r, "10.96.0.32"), vec!["kept.default.svc"]);

    r.apply_service(&service(
        "default",
        "db",
        serde_json::json!({"clusterIP": "None"}),
    ));
    r.apply_slice(&slice(
        "default",
        "db-a",
        "db",
        &[("10.244.1.5", None, true)],
        serde_json::json!([]),
    ));
    r.replace_slices(&[]);
    assert_eq!(r.endpoints("default", "db").count(), 0);
}

#[test]
fn a_slice_moving_to_another_service() {
    let mut r = Records::default();
    r.apply_service(&service(
        "default",
        "a",
        serde_json::json!({"clusterIP": "None"}),
    ));
    r.apply_service(&service(
        "default",
        "b",
        serde_json::json!({"clusterIP": "None"}),
    ));
    r.apply_slice(&slice(
        "default",
        "s",
        "a",
        &[("10.244.1.5", None, true)],
        serde_json::json!([]),
    ));
    r.apply_slice(&slice(
        "default",
        "s",
        "b",
        &[("10.244.1.5", None, true)],
        serde_json::json!([]),
    ));
    assert_eq!(r.endpoints("default", "a").count(), 0);
    assert_eq!(r.endpoints("default", "b").count(), 1);
    assert_eq!(
        reverse_of(&r, "10.244.1.5"),
        vec!["10-244-1-5.b.default.svc"]
    );
}
