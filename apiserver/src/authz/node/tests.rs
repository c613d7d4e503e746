//! The Node authorizer's decisions, in the `Node,RBAC` chain, against upstream's behaviour.

use serde_json::{Value, json};

use super::*;
use crate::authz::cache::RbacCache;
use crate::authz::tests::{req, user};
use crate::authz::{Authorization, Mode};

fn node_user(name: &str) -> User {
    user(&format!("{NODE_USER_PREFIX}{name}"), &[NODES_GROUP])
}

fn pods() -> Vec<(&'static str, Value)> {
    vec![
        (
            "pods",
            json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {
                "nodeName": "n1",
                "serviceAccountName": "robot",
                "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "settings"}}]}],
                "volumes": [
                    {"name": "tls", "secret": {"secretName": "tls"}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                ],
            }}),
        ),
        (
            "pods",
            json!({"metadata": {"name": "db", "namespace": "default"}, "spec": {
                "nodeName": "n2",
                "containers": [{"name": "c"}],
                "volumes": [{"name": "s", "secret": {"secretName": "db-password"}}],
            }}),
        ),
        (
            "persistentvolumes",
            json!({"metadata": {"name": "pv-data"}, "spec": {
                "claimRef": {"namespace": "default", "name": "data"},
            }}),
        ),
    ]
}

/// `Node,RBAC` over the bootstrap policy.
fn chain() -> Authorization {
    let policy = crate::authz::reconcile::objects();
    Authorization::new(
        &[Mode::Node, Mode::Rbac],
        &RbacCache::from_objects(policy.iter().map(|(p, o)| (*p, o.clone()))),
        &NodeGraph::from_objects(pods()),
    )
}

/// A request of node `n1`: verb, group, `resource[/subresource]`, namespace, name, and the
/// reason it is refused with (`None`: allowed).
type Case<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, Option<&'a str>);

fn n1(verb: &str, group: &str, resource: &str, ns: &str, name: &str) -> Attributes {
    let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
    req(&node_user("n1"), verb, group, resource, sub, ns, name)
}

#[track_caller]
fn check(a: &Authorization, r: Attributes, refused: Option<&str>) {
    match (a.authorize(&r), refused) {
        (Decision::Allow, None) => {}
        (Decision::NoOpinion(reason), Some(why)) if reason.contains(why) => {}
        (got, want) => panic!("{got:?}, wanted refusal {want:?}, for {r:?}"),
    }
}

fn check_all(cases: &[Case]) {
    let a = chain();
    for &(verb, group, resource, ns, name, refused) in cases {
        check(&a, n1(verb, group, resource, ns, name), refused);
    }
}

const UNRELATED: Option<&str> = Some("no relationship found between node 'n1' and this object");

#[test]
fn a_node_reads_only_what_its_pods_use() {
    check_all(&[
        ("get", "", "secrets", "default", "tls", None),
        ("watch", "", "secrets", "default", "tls", None),
        ("get", "", "configmaps", "default", "settings", None),
        ("get", "", "persistentvolumeclaims", "default", "data", None),
        ("get", "", "persistentvolumes", "", "pv-data", None),
        ("get", "", "pods", "default", "web", None),
        ("get", "", "secrets", "default", "db-password", UNRELATED),
        ("get", "", "secrets", "default", "nobody-uses", UNRELATED),
        ("get", "", "pods", "default", "db", UNRELATED),
        (
            "list",
            "",
            "secrets",
            "default",
            "",
            Some("No Object name found"),
        ),
        (
            "update",
            "",
            "secrets",
            "default",
            "tls",
            Some("can only read"),
        ),
        ("get", "", "secrets", "", "tls", Some("namespaced")),
        (
            "list",
            "",
            "persistentvolumes",
            "",
            "pv-data",
            Some("can only get"),
        ),
        // Tokens only for the ServiceAccounts of its pods.
        (
            "create",
            "",
            "serviceaccounts/token",
            "default",
            "robot",
            None,
        ),
        (
            "create",
            "",
            "serviceaccounts/token",
            "default",
            "default",
            UNRELATED,
        ),
        (
            "get",
            "",
            "serviceaccounts",
            "default",
            "robot",
            Some("individual"),
        ),
    ]);
    let other = req(
        &node_user("n2"),
        "get",
        "",
        "secrets",
        "",
        "default",
        "db-password",
    );
    check(&chain(), other, None);
}

#[test]
fn its_own_node_and_lease_only() {
    const LEASES: &str = "coordination.k8s.io";
    check_all(&[
        ("get", "", "nodes", "", "n1", None),
        ("watch", "", "nodes", "", "n1", None),
        ("patch", "", "nodes/status", "", "n1", None),
        // Which Node a node writes is NodeRestriction admission's to confine, as upstream.
        ("update", "", "nodes", "", "n1", None),
        ("create", "", "nodes", "", "", None),
        // Other Nodes are the Node authorizer's to refuse, but RBAC's `ekube:node-proxier`
        // lets every node read them: its service proxy and overlay, which share the node's
        // identity, need every Node's addresses.
        ("get", "", "nodes", "", "n2", None),
        ("list", "", "nodes", "", "", None),
        ("delete", "", "nodes", "", "n1", Some("")),
        ("get", LEASES, "leases", NODE_LEASE_NAMESPACE, "n1", None),
        ("update", LEASES, "leases", NODE_LEASE_NAMESPACE, "n1", None),
        ("create", LEASES, "leases", NODE_LEASE_NAMESPACE, "", None),
        (
            "update",
            LEASES,
            "leases",
            NODE_LEASE_NAMESPACE,
            "n2",
            Some("same name"),
        ),
        (
            "list",
            LEASES,
            "leases",
            NODE_LEASE_NAMESPACE,
            "",
            Some("can only get"),
        ),
        (
            "get",
            LEASES,
            "leases",
            "kube-system",
            "n1",
            Some("\"kube-node-lease\""),
        ),
    ]);
}

#[test]
fn pods_are_listed_by_node_name_only() {
    let a = chain();
    let mut list = n1("list", "", "pods", "", "");
    let unselected = Some("spec.nodeName field selector");
    check(&a, list.clone(), unselected);
    list.field_selector = "spec.nodeName=n1".into();
    check(&a, list.clone(), None);
    list.field_selector = "spec.nodeName=n2".into();
    check(&a, list, unselected);
    check_all(&[
        // Mirror pods and statuses: admission confines them to the node's own.
        ("create", "", "pods", "default", "", None),
        ("patch", "", "pods/status", "default", "db", None),
        ("update", "", "pods", "default", "web", Some("")),
    ]);
}

#[test]
fn other_requests_are_held_to_the_system_node_role() {
    check_all(&[
        ("list", "", "services", "", "", None),
        ("create", "", "events", "default", "", None),
        (
            "create",
            "authentication.k8s.io",
            "tokenreviews",
            "",
            "",
            None,
        ),
        ("list", "apps", "deployments", "", "", Some("")),
        ("delete", "", "namespaces", "", "default", Some("")),
    ]);
}

#[test]
fn only_members_of_system_nodes_are_nodes() {
    let a = chain();
    let impostor = user("system:node:n1", &[]);
    let secret = req(&impostor, "get", "", "secrets", "", "default", "tls");
    check(&a, secret, Some(""));
    check(
        &a,
        req(&impostor, "list", "", "services", "", "", ""),
        Some(""),
    );
    let nameless = req(&node_user(""), "get", "", "services", "", "", "x");
    check(&a, nameless, Some("unknown node for user \"system:node:\""));
    assert_eq!(node_identity(&node_user("n1")), Some("n1"));
    assert_eq!(node_identity(&impostor), None);
}

#[test]
fn an_explicit_binding_still_grants_after_the_node_authorizer_passes() {
    let mut objects = crate::authz::reconcile::objects();
    objects.push((
        "clusterrolebindings",
        json!({"metadata": {"name": "nodes-view"},
            "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "Group", "name": NODES_GROUP}]}),
    ));
    let a = Authorization::new(
        &[Mode::Node, Mode::Rbac],
        &RbacCache::from_objects(objects),
        &NodeGraph::from_objects(pods()),
    );
    check(&a, n1("list", "", "pods", "default", ""), None);
}

#[test]
fn a_claim_and_its_volume_are_readable_only_from_the_claiming_pods_node() {
    let a = chain();
    let n2 = |resource: &str, ns: &str, name: &str| {
        req(&node_user("n2"), "get", "", resource, "", ns, name)
    };
    check(
        &a,
        n2("persistentvolumeclaims", "default", "data"),
        UNRELATED_N2,
    );
    check(&a, n2("persistentvolumes", "", "pv-data"), UNRELATED_N2);
    check_all(&[
        ("get", "", "persistentvolumeclaims", "default", "data", None),
        ("get", "", "persistentvolumes", "", "pv-data", None),
        (
            "update",
            "",
            "persistentvolumeclaims/status",
            "default",
            "data",
            None,
        ),
        (
            "get",
            "",
            "persistentvolumeclaims",
            "default",
            "other",
            UNRELATED,
        ),
        ("get", "", "persistentvolumes", "", "pv-other", UNRELATED),
        (
            "update",
            "",
            "persistentvolumes",
            "",
            "pv-data",
            Some("can only get"),
        ),
    ]);
}

const UNRELATED_N2: Option<&str> = Some("no relationship found between node 'n2' and this object");
