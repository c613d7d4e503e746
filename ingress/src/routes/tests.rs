//! The table against the ingress-controller-conformance scenarios (path and host rules), the
//! default backend, merging, canaries and unresolvable backends.

use serde_json::{Value, json};

use super::*;

/// What a snapshot borrows, owned by the test.
#[derive(Default)]
struct Fixture {
    ingresses: Vec<Ingress>,
    services: BTreeMap<(String, String), Service>,
    slices: BTreeMap<(String, String), Vec<EndpointSlice>>,
}

impl Fixture {
    fn build(&self) -> (Table, Vec<Problem>) {
        Snapshot {
            ingresses: &self.ingresses,
            services: &self.services,
            slices: self
                .slices
                .iter()
                .map(|(k, v)| (k.clone(), v.iter().collect()))
                .collect(),
        }
        .build()
    }
}

/// A Service `name` with ports 8080 (named `http`) and one ready endpoint whose address is
/// derived from `index`, so each answer names its Service.
fn service(snapshot: &mut Fixture, name: &str, index: u8) {
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": 8080, "targetPort": 80}]},
    }))
    .unwrap();
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-x"), "namespace": "default",
            "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80}],
        "endpoints": [
            {"addresses": [format!("10.0.0.{index}")], "conditions": {"ready": true}},
            {"addresses": ["10.0.9.9"], "conditions": {"ready": false}},
        ],
    }))
    .unwrap();
    snapshot
        .services
        .insert(("default".into(), name.into()), svc);
    snapshot
        .slices
        .insert(("default".into(), name.into()), vec![slice]);
}

fn ingress(name: &str, spec: Value) -> Ingress {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default",
            "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": spec,
    }))
    .unwrap()
}

fn path(path: &str, kind: &str, service: &str) -> Value {
    json!({"path": path, "pathType": kind,
        "backend": {"service": {"name": service, "port": {"number": 8080}}}})
}

/// The Service a request reaches, or `None` for 404.
fn served(table: &Table, host: &str, request: &str) -> Option<String> {
    match table.route(host, request) {
        Target::Route(route) => Some(
            route
                .upstream
                .name
                .strip_prefix("default-")
                .unwrap()
                .trim_end_matches("-8080")
                .to_string(),
        ),
        Target::NotFound => None,
    }
}

/// The conformance suite's `path_rules.feature` Ingress and its Services.
fn path_rules() -> Table {
    let mut s = Fixture::default();
    for (i, name) in [
        "foo-exact",
        "foo-prefix",
        "aaa-slash-bbb-prefix",
        "aaa-prefix",
        "aaa-slash-bbb-slash-prefix",
        "foo-slash-exact",
    ]
    .iter()
    .enumerate()
    {
        service(&mut s, name, i as u8 + 1);
    }
    s.ingresses.push(ingress(
        "path-rules",
        json!({"rules": [
            {"host": "exact-path-rules", "http": {"paths": [path("/foo", "Exact", "foo-exact")]}},
            {"host": "prefix-path-rules", "http": {"paths": [
                path("/foo", "Prefix", "foo-prefix"),
                path("/aaa/bbb", "Prefix", "aaa-slash-bbb-prefix"),
                path("/aaa", "Prefix", "aaa-prefix"),
            ]}},
            {"host": "mixed-path-rules", "http": {"paths": [
                path("/foo", "Prefix", "foo-prefix"),
                path("/foo", "Exact", "foo-exact"),
            ]}},
            {"host": "trailing-slash-path-rules", "http": {"paths": [
                path("/aaa/bbb/", "Prefix", "aaa-slash-bbb-slash-prefix"),
                path("/foo/", "Exact", "foo-slash-exact"),
            ]}},
        ]}),
    ));
    let (table, problems) = s.build();
    assert_eq!(problems, []);
    table
}

#[test]
fn path_rules_as_the_conformance_suite_has_them() {
    let t = path_rules();
    let cases = [
        ("exact-path-rules", "/foo", Some("foo-exact")),
        ("exact-path-rules", "/foo/", None),
        ("exact-path-rules", "/FOO", None),
        ("exact-path-rules", "/bar", None),
        ("prefix-path-rules", "/foo", Some("foo-prefix")),
        ("prefix-path-rules", "/foo/", Some("foo-prefix")),
        ("prefix-path-rules", "/FOO", None),
        (
            "prefix-path-rules",
            "/aaa/bbb",
            Some("aaa-slash-bbb-prefix"),
        ),
        (
            "prefix-path-rules",
            "/aaa/bbb/ccc",
            Some("aaa-slash-bbb-prefix"),
        ),
        ("prefix-path-rules", "/aaa/ccc", Some("aaa-prefix")),
        ("prefix-path-rules", "/aaaccc", None),
        ("mixed-path-rules", "/foo", Some("foo-exact")),
        ("mixed-path-rules", "/foo/", Some("foo-prefix")),
        (
            "trailing-slash-path-rules",
            "/aaa/bbb",
            Some("aaa-slash-bbb-slash-prefix"),
        ),
        (
            "trailing-slash-path-rules",
            "/aaa/bbb/",
            Some("aaa-slash-bbb-slash-prefix"),
        ),
        ("trailing-slash-path-rules", "/foo", None),
        (
            "trailing-slash-path-rules",
            "/foo/",
            Some("foo-slash-exact"),
        ),
        ("no-such-host", "/foo", None),
    ];
    for (host, request, want) in cases {
        assert_eq!(
            served(&t, host, request).as_deref(),
            want,
            "{host} {request}"
        );
    }
}

#[test]
fn host_rules_with_one_label_wildcards() {
    let mut s = Fixture::default();
    service(&mut s, "wildcard-foo-com", 1);
    service(&mut s, "foo-bar-com", 2);
    s.ingresses.push(ingress(
        "host-rules",
        json!({
            "tls": [{"hosts": ["foo.bar.com"], "secretName": "conformance-tls"}],
            "rules": [
                {"host": "*.foo.com", "http": {"paths": [path("/", "Prefix", "wildcard-foo-com")]}},
                {"host": "foo.bar.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "foo-bar-com", "port": {"name": "http"}}}}]}},
            ],
        }),
    ));
    let (t, problems) = s.build();
    assert_eq!(problems, []);
    assert_eq!(
        served(&t, "foo.bar.com", "/").as_deref(),
        Some("foo-bar-com-http")
    );
    assert_eq!(served(&t, "subdomain.bar.com", "/"), None);
    assert_eq!(
        served(&t, "bar.foo.com", "/").as_deref(),
        Some("wildcard-foo-com")
    );
    assert_eq!(served(&t, "baz.bar.foo.com", "/"), None);
    assert_eq!(served(&t, "foo.com", "/"), None);
    assert!(t.tls_server("foo.bar.com").unwrap().tls);
    assert!(t.tls_server("foo.bar.com").unwrap().ssl_redirect);
    assert!(!t.tls_server("bar.foo.com").unwrap().tls);
}

#[test]
fn the_default_backend_takes_what_nothing_else_matches() {
    let mut s = Fixture::default();
    service(&mut s, "fallback", 1);
    service(&mut s, "api", 2);
    s.ingresses.push(ingress(
        "all",
        json!({
            "defaultBackend": {"service": {"name": "fallback", "port": {"number": 8080}}},
            "rules": [{"host": "a.example", "http": {"paths": [path("/api", "Prefix", "api")]}}],
        }),
    ));
    let (t, _) = s.build();
    assert_eq!(served(&t, "a.example", "/api/v1").as_deref(), Some("api"));
    assert_eq!(
        served(&t, "a.example", "/other").as_deref(),
        Some("fallback")
    );
    assert_eq!(served(&t, "b.example", "/").as_deref(), Some("fallback"));
}

#[test]
fn the_oldest_ingress_keeps_a_contested_path_and_others_merge() {
    let mut s = Fixture::default();
    service(&mut s, "old", 1);
    service(&mut s, "new", 2);
    let mut newer = ingress(
        "newer",
        json!({"rules": [{"host": "h", "http": {"paths": [
            path("/x", "Prefix", "new"), path("/only-new", "Exact", "new")]}}]}),
    );
    newer.metadata.creation_timestamp =
        Some(serde_json::from_value(json!("2026-02-01T00:00:00Z")).unwrap());
    s.ingresses.push(newer);
    s.ingresses.push(ingress(
        "older",
        json!({"rules": [{"host": "h", "http": {"paths": [path("/x", "Prefix", "old")]}}]}),
    ));
    let (t, _) = s.build();
    assert_eq!(served(&t, "h", "/x").as_deref(), Some("old"));
    assert_eq!(served(&t, "h", "/only-new").as_deref(), Some("new"));
}

#[test]
fn a_missing_service_answers_503_and_is_reported() {
    let mut s = Fixture::default();
    service(&mut s, "there", 1);
    s.ingresses.push(ingress(
        "half",
        json!({"rules": [{"host": "h", "http": {"paths": [
            path("/ok", "Prefix", "there"), path("/gone", "Prefix", "missing")]}}]}),
    ));
    let (t, problems) = s.build();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].reason, "ServiceNotFound");
    assert_eq!(problems[0].message, "service \"default/missing\" not found");
    let Target::Route(route) = t.route("h", "/gone") else {
        panic!("the path stays routed, to nothing")
    };
    assert!(route.upstream.endpoints.is_empty());
    let Target::Route(route) = t.route("h", "/ok") else {
        panic!("the other path works")
    };
    assert_eq!(route.upstream.endpoints, ["10.0.0.1:80".parse().unwrap()]);
}

#[test]
fn a_canary_takes_its_weight() {
    let mut s = Fixture::default();
    service(&mut s, "stable", 1);
    service(&mut s, "canary", 2);
    s.ingresses.push(ingress(
        "main",
        json!({"rules": [{"host": "h", "http": {"paths": [path("/", "Prefix", "stable")]}}]}),
    ));
    let mut canary = ingress(
        "canary",
        json!({"rules": [{"host": "h", "http": {"paths": [path("/", "Prefix", "canary")]}}]}),
    );
    canary.metadata.annotations = Some(
        [
            (
                "nginx.ingress.kubernetes.io/canary".to_string(),
                "true".to_string(),
            ),
            (
                "nginx.ingress.kubernetes.io/canary-weight".into(),
                "20".into(),
            ),
        ]
        .into(),
    );
    s.ingresses.push(canary);
    let (t, problems) = s.build();
    assert_eq!(problems, []);
    let Target::Route(route) = t.route("h", "/any") else {
        panic!("routed")
    };
    let to_canary = (0..100)
        .filter(|draw| route.choose(*draw).0.name == "default-canary-8080")
        .count();
    assert_eq!(to_canary, 20);
}

#[test]
fn round_robin_visits_every_endpoint() {
    let u = Upstream::new(
        "u".into(),
        vec![
            "10.0.0.1:80".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
        ],
        None,
    );
    let firsts: Vec<SocketAddr> = (0..4).map(|_| u.pick().next().unwrap()).collect();
    assert_eq!(firsts[0], firsts[2]);
    assert_ne!(firsts[0], firsts[1]);
    assert_eq!(u.pick().count(), 2);
}
