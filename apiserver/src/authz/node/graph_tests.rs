use serde_json::{Value, json};

use super::VertexKind::*;
use super::*;

/// A pod `name` in `default` on `node` ("" for unbound) mounting secret `secret`.
fn pod(name: &str, node: &str, secret: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "s", "secret": {"secretName": secret}}],
        },
    })
}

fn secret(name: &str) -> Vertex {
    Vertex::new(Secret, "default", name)
}

#[test]
fn a_bound_pod_grants_its_node_what_it_uses() {
    let mut g = Graph::default();
    g.set_pod("default", "web", &pod("web", "n1", "tls"));
    assert!(g.reaches("n1", &secret("tls")));
    assert!(g.reaches("n1", &Vertex::new(Pod, "default", "web")));
    assert!(!g.reaches("n2", &secret("tls")), "another node");
    assert!(!g.reaches("n1", &secret("other")), "a secret no pod uses");
    assert!(
        !g.reaches("n1", &Vertex::new(Secret, "prod", "tls")),
        "the same name in another namespace"
    );
    assert!(
        !g.reaches("n1", &Vertex::new(ConfigMap, "default", "tls")),
        "another kind of the same name"
    );
}

#[test]
fn an_unbound_pod_grants_nothing_until_bound() {
    let mut g = Graph::default();
    g.set_pod("default", "web", &pod("web", "", "tls"));
    assert_eq!(g.pod_count(), 0);
    assert!(!g.reaches("n1", &secret("tls")));
    g.set_pod("default", "web", &pod("web", "n1", "tls"));
    assert!(g.reaches("n1", &secret("tls")));
}

#[test]
fn a_deleted_pod_no_longer_grants() {
    let mut g = Graph::default();
    g.set_pod("default", "web", &pod("web", "n1", "tls"));
    g.remove_pod("default", "web");
    assert!(!g.reaches("n1", &secret("tls")));
    assert!(!g.reaches("n1", &Vertex::new(Pod, "default", "web")));
    assert!(g.used_by.is_empty(), "counts left behind: {:?}", g.used_by);
    // Deleting what is not held is harmless.
    g.remove_pod("default", "web");
}

#[test]
fn a_pod_that_moves_takes_its_grants_along() {
    let mut g = Graph::default();
    g.set_pod("default", "web", &pod("web", "n1", "tls"));
    g.set_pod("default", "web", &pod("web", "n2", "tls"));
    assert!(!g.reaches("n1", &secret("tls")));
    assert!(g.reaches("n2", &secret("tls")));
}

#[test]
fn an_updated_pod_grants_only_what_it_now_uses() {
    let mut g = Graph::default();
    g.set_pod("default", "web", &pod("web", "n1", "old"));
    g.set_pod("default", "web", &pod("web", "n1", "new"));
    assert!(!g.reaches("n1", &secret("old")));
    assert!(g.reaches("n1", &secret("new")));
}

#[test]
fn a_secret_two_pods_use_stays_granted_until_both_are_gone() {
    let mut g = Graph::default();
    g.set_pod("default", "a", &pod("a", "n1", "tls"));
    g.set_pod("default", "b", &pod("b", "n1", "tls"));
    g.set_pod("default", "c", &pod("c", "n2", "tls"));
    g.remove_pod("default", "a");
    assert!(g.reaches("n1", &secret("tls")), "b still uses it on n1");
    g.remove_pod("default", "b");
    assert!(!g.reaches("n1", &secret("tls")));
    assert!(g.reaches("n2", &secret("tls")), "c on n2 is untouched");
}

#[test]
fn every_kind_of_reference_is_found() {
    let p = json!({
        "metadata": {"name": "web", "namespace": "ns"},
        "spec": {
            "nodeName": "n1",
            "serviceAccountName": "robot",
            "imagePullSecrets": [{"name": "pull"}],
            "initContainers": [{"name": "i", "envFrom": [{"configMapRef": {"name": "init-env"}}]}],
            "containers": [{
                "name": "c",
                "envFrom": [{"secretRef": {"name": "env-all"}}],
                "env": [
                    {"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-one", "key": "a"}}},
                    {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm-one", "key": "b"}}},
                    {"name": "C", "value": "plain"},
                ],
            }],
            "ephemeralContainers": [{"name": "e", "envFrom": [{"secretRef": {"name": "debug"}}]}],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "cm-vol"}},
                {"name": "p", "projected": {"sources": [
                    {"secret": {"name": "proj-secret"}},
                    {"configMap": {"name": "proj-cm"}},
                    {"serviceAccountToken": {"path": "token"}},
                ]}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                {"name": "ceph", "cephfs": {"monitors": ["m"], "secretRef": {"name": "ceph-key"}}},
                {"name": "csi", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "csi-key"}}},
                {"name": "dup", "secret": {"secretName": "pull"}},
            ],
        },
    });
    let got: Vec<(VertexKind, String)> = pod_uses("ns", &p)
        .into_iter()
        .inspect(|v| assert_eq!(v.namespace, "ns"))
        .map(|v| (v.kind, v.name))
        .collect();
    let mut want: Vec<(VertexKind, String)> = [
        (Secret, "pull"),
        (Secret, "env-all"),
        (Secret, "env-one"),
        (Secret, "debug"),
        (Secret, "proj-secret"),
        (Secret, "ceph-key"),
        (Secret, "csi-key"),
        (ConfigMap, "init-env"),
        (ConfigMap, "cm-one"),
        (ConfigMap, "cm-vol"),
        (ConfigMap, "proj-cm"),
        (PersistentVolumeClaim, "data"),
        (PersistentVolumeClaim, "web-scratch"),
        (ServiceAccount, "robot"),
    ]
    .into_iter()
    .map(|(k, n)| (k, n.to_string()))
    .collect();
    want.sort();
    assert_eq!(got, want);
}

fn volume(claim: Option<(&str, &str)>) -> Value {
    let mut pv = json!({
        "metadata": {"name": "pv1"},
        "spec": {"csi": {
            "driver": "d",
            "volumeHandle": "h",
            "nodeStageSecretRef": {"name": "stage", "namespace": "storage"},
            "controllerPublishSecretRef": {"name": "controller", "namespace": "storage"},
        }},
    });
    if let Some((ns, name)) = claim {
        pv["spec"]["claimRef"] = json!({"namespace": ns, "name": name});
    }
    pv
}

#[test]
fn a_volume_and_its_secrets_are_reached_through_the_claim() {
    let mut g = Graph::default();
    let mut p = pod("db", "n1", "unused");
    p["spec"]["volumes"] = json!([{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]);
    g.set_pod("default", "db", &p);
    let pv = Vertex::new(PersistentVolume, "", "pv1");
    let stage = Vertex::new(Secret, "storage", "stage");

    g.set_volume("pv1", &volume(None));
    assert!(!g.reaches("n1", &pv), "an unclaimed volume");
    assert!(!g.reaches("n1", &stage));

    g.set_volume("pv1", &volume(Some(("default", "data"))));
    assert!(g.reaches("n1", &Vertex::new(PersistentVolumeClaim, "default", "data")));
    assert!(g.reaches("n1", &pv));
    assert!(g.reaches("n1", &stage));
    assert!(
        !g.reaches("n1", &Vertex::new(Secret, "storage", "controller")),
        "the controller's secret is not the kubelet's"
    );
    assert!(!g.reaches("n2", &pv));

    g.set_volume("pv1", &volume(Some(("default", "other"))));
    assert!(!g.reaches("n1", &pv), "bound to a claim no pod on n1 uses");
    g.set_volume("pv1", &volume(Some(("default", "data"))));
    g.remove_pod("default", "db");
    assert!(!g.reaches("n1", &stage));
    g.remove_volume("pv1");
    assert!(g.volumes_by_secret.is_empty());
}

#[test]
fn ten_thousand_pods_are_indexed_and_forgotten() {
    let mut g = Graph::default();
    for i in 0..10_000 {
        let name = format!("p{i}");
        let p = pod(&name, &format!("n{}", i % 100), &format!("s{}", i % 500));
        g.set_pod("default", &name, &p);
    }
    assert_eq!(g.pod_count(), 10_000);
    // Secret s7 is used by pods 7, 507, 1007, …: nodes 7, 7, 7, … and so on (i % 100).
    assert!(g.reaches("n7", &secret("s7")));
    assert!(g.reaches("n7", &secret("s107")));
    assert!(!g.reaches("n8", &secret("s7")));
    for i in 0..10_000 {
        g.remove_pod("default", &format!("p{i}"));
    }
    assert!(g.used_by.is_empty());
}
