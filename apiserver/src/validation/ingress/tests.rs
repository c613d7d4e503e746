//! Ingress and IngressClass validation against upstream's cases, and through the registry.

use serde_json::json;

use super::*;
use crate::admission::tests::registry;
use crate::registry::WriteOptions;
use crate::validation::names::WILDCARD_DNS1123_SUBDOMAIN;
use crate::validation::{DNS1035_LABEL, DNS1123_LABEL, DNS1123_SUBDOMAIN};

fn render(causes: Vec<Cause>) -> Vec<String> {
    causes
        .into_iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect()
}

/// The causes of creating an Ingress with `spec`.
fn create(spec: Value) -> Vec<String> {
    let mut causes = Vec::new();
    ingress(&json!({"spec": spec}), None, &mut causes);
    render(causes)
}

/// A spec with one rule holding one path.
fn one_path(path: Value) -> Value {
    json!({"rules": [{"host": "foo.example.com", "http": {"paths": [path]}}]})
}

fn svc() -> Value {
    json!({"service": {"name": "web", "port": {"number": 80}}})
}

#[test]
fn valid_ingresses() {
    let cases = [
        json!({"defaultBackend": svc()}),
        json!({"defaultBackend": {"service": {"name": "web", "port": {"name": "http"}}}}),
        json!({"defaultBackend": {"resource": {"apiGroup": "k8s.example.com", "kind": "StorageBucket", "name": "static"}}}),
        json!({"rules": [{"host": "*.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": svc()}]}}]}),
        json!({"rules": [{"host": "only.example.com"}], "ingressClassName": "ekube"}),
        one_path(json!({"path": "/foo/bar/", "pathType": "Prefix", "backend": svc()})),
        one_path(json!({"path": "/", "pathType": "Exact", "backend": svc()})),
        one_path(json!({"path": "/foo%20bar;v=1", "pathType": "Exact", "backend": svc()})),
        one_path(json!({"pathType": "ImplementationSpecific", "backend": svc()})),
        // ImplementationSpecific paths are the controller's to interpret.
        one_path(
            json!({"path": "/foo/../bar//", "pathType": "ImplementationSpecific", "backend": svc()}),
        ),
        json!({"defaultBackend": svc(), "tls": [{"hosts": ["*.example.com", "a.example.com"], "secretName": "tls-cert"}]}),
        json!({"defaultBackend": svc(), "tls": [{}]}),
    ];
    for spec in cases {
        assert_eq!(create(spec.clone()), Vec::<String>::new(), "{spec}");
    }
}

#[test]
fn invalid_ingresses() {
    let subdomain = DNS1123_SUBDOMAIN;
    let wildcard = WILDCARD_DNS1123_SUBDOMAIN;
    let at = "spec.rules[0].http.paths[0]";
    let cases: Vec<(Value, Vec<String>)> = vec![
        (
            json!({}),
            vec!["spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified".into()],
        ),
        (
            json!({"rules": []}),
            vec!["spec: Invalid value: []networking.IngressRule{}: either `defaultBackend` or `rules` must be specified".into()],
        ),
        (
            json!({"defaultBackend": {"service": {"name": "web", "port": {"number": 80}},
                "resource": {"kind": "Bucket", "name": "b"}}}),
            vec!["spec.defaultBackend: Invalid value: \"\": cannot set both resource and service backends".into()],
        ),
        (
            json!({"defaultBackend": {}}),
            vec!["spec.defaultBackend: Invalid value: \"\": resource or service backend is required".into()],
        ),
        (
            json!({"defaultBackend": {"service": {"name": "web", "port": {"number": 80, "name": "http"}}}}),
            vec!["spec.defaultBackend: Invalid value: \"\": cannot set both port name & port number".into()],
        ),
        (
            json!({"defaultBackend": {"service": {"name": "web", "port": {}}}}),
            vec!["spec.defaultBackend: Required value: port name or number is required".into()],
        ),
        (
            json!({"defaultBackend": {"service": {"name": "web", "port": {"number": 65536}}}}),
            vec!["spec.defaultBackend.service.port.number: Invalid value: 65536: must be between 1 and 65535, inclusive".into()],
        ),
        (
            json!({"defaultBackend": {"service": {"name": "web", "port": {"name": "8080"}}}}),
            vec!["spec.defaultBackend.service.port.name: Invalid value: \"8080\": must contain at least one letter (a-z)".into()],
        ),
        (
            json!({"defaultBackend": {"service": {"name": "web", "port": {"name": "http--alt"}}}}),
            vec!["spec.defaultBackend.service.port.name: Invalid value: \"http--alt\": must not contain consecutive hyphens".into()],
        ),
        (
            json!({"defaultBackend": {"service": {"port": {"number": 80}}}}),
            vec!["spec.defaultBackend.service.name: Required value".into()],
        ),
        (
            json!({"defaultBackend": {"service": {"name": "1web", "port": {"number": 80}}}}),
            vec![format!("spec.defaultBackend.service.name: Invalid value: \"1web\": {DNS1035_LABEL}")],
        ),
        (
            json!({"defaultBackend": {"resource": {"apiGroup": "Example", "kind": "a/b"}}}),
            vec![
                format!("spec.defaultBackend.resource.apiGroup: Invalid value: \"Example\": {subdomain}"),
                "spec.defaultBackend.resource.kind: Invalid value: \"a/b\": may not contain '/'".into(),
                "spec.defaultBackend.resource.name: Required value".into(),
            ],
        ),
        (
            json!({"rules": [{"host": "1.2.3.4"}]}),
            vec!["spec.rules[0].host: Invalid value: \"1.2.3.4\": must be a DNS name, not an IP address".into()],
        ),
        (
            json!({"rules": [{"host": "010.2.3.4"}]}),
            vec!["spec.rules[0].host: Invalid value: \"010.2.3.4\": must be a DNS name, not an IP address".into()],
        ),
        (
            json!({"rules": [{"host": "Foo.example.com"}]}),
            vec![format!("spec.rules[0].host: Invalid value: \"Foo.example.com\": {subdomain}")],
        ),
        (
            json!({"rules": [{"host": "*.*.example.com"}]}),
            vec![format!("spec.rules[0].host: Invalid value: \"*.*.example.com\": {wildcard}")],
        ),
        (
            json!({"rules": [{"host": "foo.*.example.com"}]}),
            vec![format!("spec.rules[0].host: Invalid value: \"foo.*.example.com\": {wildcard}")],
        ),
        (
            json!({"rules": [{"host": "*"}]}),
            vec![format!("spec.rules[0].host: Invalid value: \"*\": {wildcard}")],
        ),
        (
            json!({"rules": [{"host": "a.example.com", "http": {"paths": []}}]}),
            vec!["spec.rules[0].http.paths: Required value".into()],
        ),
        (
            one_path(json!({"path": "/", "backend": {}})),
            vec![format!("{at}.pathType: Required value: pathType must be specified")],
        ),
        (
            one_path(json!({"path": "/", "pathType": "Regex", "backend": svc()})),
            vec![format!("{at}.pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"")],
        ),
        (
            one_path(json!({"path": "/", "pathType": "Prefix"})),
            vec![format!("{at}.backend: Invalid value: \"\": resource or service backend is required")],
        ),
        (
            one_path(json!({"pathType": "Exact", "backend": svc()})),
            vec![format!("{at}.path: Invalid value: \"\": must be an absolute path")],
        ),
        (
            one_path(json!({"path": "foo", "pathType": "Prefix", "backend": svc()})),
            vec![format!("{at}.path: Invalid value: \"foo\": must be an absolute path")],
        ),
        (
            one_path(json!({"path": "foo", "pathType": "ImplementationSpecific", "backend": svc()})),
            vec![format!("{at}.path: Invalid value: \"foo\": must be an absolute path")],
        ),
        (
            json!({"defaultBackend": svc(), "tls": [{"hosts": ["*.*.example.com", "Bad"], "secretName": "Bad_Secret"}]}),
            vec![
                format!("spec.tls[0].hosts[0]: Invalid value: \"*.*.example.com\": {wildcard}"),
                format!("spec.tls[0].hosts[1]: Invalid value: \"Bad\": {subdomain}"),
                format!("spec.tls[0].secretName: Invalid value: \"Bad_Secret\": {subdomain}"),
            ],
        ),
        (
            json!({"defaultBackend": svc(), "ingressClassName": "Ekube"}),
            vec![format!("spec.ingressClassName: Invalid value: \"Ekube\": {subdomain}")],
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(create(spec.clone()), want, "{spec}");
    }
}

#[test]
fn exact_and_prefix_paths_are_normalised_already() {
    let cases = [
        ("//foo", "must not contain '//'"),
        ("/foo/./bar", "must not contain '/./'"),
        ("/foo/../bar", "must not contain '/../'"),
        ("/foo%2fbar", "must not contain '%2f'"),
        ("/foo%2Fbar", "must not contain '%2F'"),
        ("/foo/..", "cannot end with '/..'"),
        ("/foo/.", "cannot end with '/.'"),
    ];
    for path_type in ["Exact", "Prefix"] {
        for (path, msg) in cases {
            let spec = one_path(json!({"path": path, "pathType": path_type, "backend": svc()}));
            assert_eq!(
                create(spec),
                [format!(
                    "spec.rules[0].http.paths[0].path: Invalid value: \"{path}\": {msg}"
                )],
                "{path_type} {path}"
            );
        }
    }
}

#[test]
fn the_class_annotation_must_agree_on_create() {
    let ing = |annotation: &str, class: &str| {
        json!({"metadata": {"annotations": {CLASS_ANNOTATION: annotation}},
            "spec": {"ingressClassName": class, "defaultBackend": svc()}})
    };
    let mut causes = Vec::new();
    ingress(&ing("ekube", "ekube"), None, &mut causes);
    assert_eq!(causes, []);
    ingress(&ing("nginx", "ekube"), None, &mut causes);
    assert_eq!(
        render(causes),
        [
            "annotations.kubernetes.io/ingress.class: Invalid value: \"nginx\": must match `ingressClassName` when both are specified"
        ]
    );
    // Upstream checks this on create only.
    let mut causes = Vec::new();
    let old = ing("nginx", "nginx");
    ingress(&ing("nginx", "ekube"), Some(&old), &mut causes);
    assert_eq!(causes, []);
}

#[test]
fn updates_keep_what_was_stored() {
    let update = |old: Value, new: Value| {
        let mut causes = Vec::new();
        ingress(&new, Some(&old), &mut causes);
        render(causes)
    };
    let bad_secret =
        json!({"spec": {"defaultBackend": svc(), "tls": [{"secretName": "Bad_Secret"}]}});
    // Unchanged (a status write, a finalizer removed): not judged again.
    assert_eq!(
        update(bad_secret.clone(), bad_secret.clone()),
        Vec::<String>::new()
    );
    // Changed: the stored invalid secret name is allowed, the rest is judged.
    let mut changed = bad_secret.clone();
    changed["spec"]["tls"][0]["hosts"] = json!(["a.example.com"]);
    assert_eq!(update(bad_secret.clone(), changed), Vec::<String>::new());
    let mut worse = bad_secret.clone();
    worse["spec"]["ingressClassName"] = json!("Bad");
    assert_eq!(update(bad_secret, worse).len(), 1);
    // A DNS-1123 label that is not a DNS-1035 one stays allowed once stored.
    let named = |name: &str| json!({"spec": {"defaultBackend": {"service": {"name": name, "port": {"number": 80}}}}});
    assert_eq!(update(named("1web"), named("2web")), Vec::<String>::new());
    assert_eq!(update(named("web"), named("2web")).len(), 1);
    // Invalid rules under a wildcard host stay allowed once stored.
    let wild = |path: &str| {
        json!({"spec": {"rules": [{"host": "*.example.com", "http": {"paths": [
            {"path": path, "pathType": "Prefix", "backend": svc()}]}}]}})
    };
    assert_eq!(update(wild("foo"), wild("bar")), Vec::<String>::new());
    assert_eq!(update(wild("/foo"), wild("bar")).len(), 1);
}

#[test]
fn load_balancer_status() {
    let with_status = |points: Value| json!({"spec": {"defaultBackend": svc()}, "status": {"loadBalancer": {"ingress": points}}});
    let write = |old: &Value, points: Value| {
        let mut causes = Vec::new();
        ingress(&with_status(points), Some(old), &mut causes);
        render(causes)
    };
    let old = with_status(json!([]));
    assert_eq!(
        write(
            &old,
            json!([{"ip": "192.0.2.10"}, {"ip": "2001:db8::1"}, {"hostname": "lb.example.com"}])
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        write(&old, json!([{"ip": "192.0.2"}, {"hostname": "192.0.2.10"}, {"hostname": "LB"}])),
        [
            "status.loadBalancer.ingress[0].ip: Invalid value: \"192.0.2\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".to_string(),
            "status.loadBalancer.ingress[1].hostname: Invalid value: \"192.0.2.10\": must be a DNS name, not an IP address".into(),
            format!("status.loadBalancer.ingress[2].hostname: Invalid value: \"LB\": {DNS1123_SUBDOMAIN}"),
        ]
    );
    // An address the stored status already had is kept.
    let legacy = with_status(json!([{"ip": "010.0.0.1"}]));
    assert_eq!(
        write(
            &legacy,
            json!([{"ip": "010.0.0.1"}, {"hostname": "lb.example.com"}])
        ),
        Vec::<String>::new()
    );
}

fn class(spec: Value) -> Vec<String> {
    let mut causes = Vec::new();
    ingress_class(&json!({"spec": spec}), &mut causes);
    render(causes)
}

#[test]
fn ingress_classes() {
    for spec in [
        json!({"controller": "ekube.io/ingress"}),
        json!({"controller": "example.com/a/b-c_d~e:f", "parameters": {
            "apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "lb", "scope": "Cluster"}}),
        json!({"controller": "example.com/x", "parameters": {
            "kind": "ConfigMap", "name": "lb", "scope": "Namespace", "namespace": "ingress"}}),
    ] {
        assert_eq!(class(spec.clone()), Vec::<String>::new(), "{spec}");
    }
    let cases: Vec<(Value, Vec<String>)> = vec![
        (json!({}), vec!["spec.controller: Required value".into()]),
        (
            json!({"controller": "ekube"}),
            vec!["spec.controller: Invalid value: \"ekube\": must be a domain-prefixed path (such as \"acme.io/foo\")".into()],
        ),
        (
            json!({"controller": "/ingress"}),
            vec!["spec.controller: Invalid value: \"/ingress\": must be a domain-prefixed path (such as \"acme.io/foo\")".into()],
        ),
        (
            json!({"controller": "Ekube.io/ingress"}),
            vec![format!("spec.controller: Invalid value: \"Ekube.io\": {DNS1123_SUBDOMAIN}")],
        ),
        (
            json!({"controller": "ekube.io/in gress"}),
            vec!["spec.controller: Invalid value: \"in gress\": Invalid path (regex used for validation is '[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')".into()],
        ),
        (
            json!({"controller": format!("ekube.io/{}", "a".repeat(250))}),
            vec!["spec.controller: Too long: must have at most 250 bytes".into()],
        ),
        (
            json!({"controller": "ekube.io/x", "parameters": {"kind": "..", "scope": "Cluster"}}),
            vec![
                "spec.parameters.kind: Invalid value: \"..\": may not be '..'".into(),
                "spec.parameters.name: Required value".into(),
            ],
        ),
        (
            json!({"controller": "ekube.io/x", "parameters": {"kind": "K", "name": "n"}}),
            vec!["spec.parameters.scope: Required value".into()],
        ),
        (
            json!({"controller": "ekube.io/x", "parameters": {"kind": "K", "name": "n", "scope": "Global"}}),
            vec!["spec.parameters.scope: Unsupported value: \"Global\": supported values: \"Cluster\", \"Namespace\"".into()],
        ),
        (
            json!({"controller": "ekube.io/x", "parameters": {"kind": "K", "name": "n", "scope": "Namespace"}}),
            vec!["spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'".into()],
        ),
        (
            json!({"controller": "ekube.io/x", "parameters": {"kind": "K", "name": "n", "scope": "Namespace", "namespace": "Team"}}),
            vec![format!("spec.parameters.namespace: Invalid value: \"Team\": {DNS1123_LABEL}")],
        ),
        (
            json!({"controller": "ekube.io/x", "parameters": {"kind": "K", "name": "n", "scope": "Cluster", "namespace": "team"}}),
            vec!["spec.parameters.namespace: Forbidden: `parameters.scope` is set to 'Cluster'".into()],
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(class(spec.clone()), want, "{spec}");
    }
    let mut causes = Vec::new();
    let old = json!({"spec": {"controller": "ekube.io/ingress"}});
    ingress_class_immutable(&old, &old, &mut causes);
    assert_eq!(causes, []);
    let new = json!({"spec": {"controller": "ekube.io/other"}});
    ingress_class_immutable(&old, &new, &mut causes);
    assert_eq!(
        render(causes),
        ["spec.controller: Invalid value: \"ekube.io/other\": field is immutable"]
    );
}

/// Through the registry, as a client's create and update arrive: admission, defaulting,
/// validation, storage.
#[tokio::test]
async fn the_registry_refuses_bad_ingresses_and_defaults_the_class() {
    let reg = registry().await;
    let opts = WriteOptions::default();
    let ingresses = ekube_api::resources::find("networking.k8s.io", "v1", "ingresses").unwrap();
    let classes = ekube_api::resources::find("networking.k8s.io", "v1", "ingressclasses").unwrap();

    let bad = json!({"metadata": {"name": "web"}, "spec": {"rules": [{"host": "1.2.3.4",
        "http": {"paths": [{"path": "/a//b", "pathType": "Prefix", "backend": svc()}]}}]}});
    let err = reg
        .create(ingresses, Some("team"), bad, &opts)
        .await
        .unwrap_err();
    assert_eq!((err.code, err.reason), (422, "Invalid"));
    assert_eq!(
        err.message,
        "Ingress \"web\" is invalid: [spec.rules[0].host: Invalid value: \"1.2.3.4\": must be a DNS name, not an IP address, spec.rules[0].http.paths[0].path: Invalid value: \"/a//b\": must not contain '//']"
    );
    let details = err.details.unwrap();
    let fields: Vec<&str> = details["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["spec.rules[0].host", "spec.rules[0].http.paths[0].path"]
    );
    assert_eq!(details["kind"], "Ingress");
    assert_eq!(details["group"], "networking.k8s.io");

    // An IngressClass: its parameters' scope defaults to Cluster; its controller is fixed.
    let class = json!({"metadata": {"name": "ekube",
        "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": "ekube.io/ingress",
            "parameters": {"kind": "ConfigMap", "name": "ingress"}}});
    let (stored, _) = reg.create(classes, None, class, &opts).await.unwrap();
    assert_eq!(stored["spec"]["parameters"]["scope"], "Cluster");
    let err = reg
        .guaranteed_update(classes, None, "ekube", None, &opts, |mut c| {
            c["spec"]["controller"] = json!("example.com/other");
            Ok(c)
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.message,
        "IngressClass \"ekube\" is invalid: spec.controller: Invalid value: \"example.com/other\": field is immutable"
    );
    let err = reg
        .create(
            classes,
            None,
            json!({"metadata": {"name": "bare"}, "spec": {}}),
            &opts,
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.message,
        "IngressClass \"bare\" is invalid: spec.controller: Required value"
    );

    // A good Ingress without a class gets the default one.
    let good = json!({"metadata": {"name": "web"}, "spec": {"rules": [{"host": "*.example.com",
        "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": svc()}]}}]}});
    let (stored, _) = reg
        .create(ingresses, Some("team"), good, &opts)
        .await
        .unwrap();
    assert_eq!(stored["spec"]["ingressClassName"], "ekube");

    // The status writer may report addresses, not anything.
    let err = reg
        .guaranteed_update(
            ingresses,
            Some("team"),
            "web",
            Some("status"),
            &opts,
            |mut i| {
                i["status"] = json!({"loadBalancer": {"ingress": [{"ip": "not-an-ip"}]}});
                Ok(i)
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, 422);
    assert_eq!(
        err.details.unwrap()["causes"][0]["field"],
        "status.loadBalancer.ingress[0].ip"
    );
    let (stored, _) = reg
        .guaranteed_update(
            ingresses,
            Some("team"),
            "web",
            Some("status"),
            &opts,
            |mut i| {
                i["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}});
                Ok(i)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        stored["status"]["loadBalancer"]["ingress"][0]["ip"],
        "192.0.2.10"
    );
}
