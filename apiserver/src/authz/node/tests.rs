//! The Node authorizer's decisions, in the `Node,RBAC` chain, against upstream's behaviour.

use serde_json::{Value, json};

use super::*;
use crate::authz::cache::RbacCache;
use crate::authz::{Authorization, Mode};

fn node_user(name: &str) -> User {
    User {
        name: format!("{NODE_USER_PREFIX}{name}"),
        groups: vec![NODES_GROUP.into(), "system:authenticated".into()],
        ..User::default()
    }
}

fn req(u: &User, verb: &str, group: &str, resource: &str, ns: &str, name: &str) -> Attributes {
    let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
    Attributes {
        user: u.clone(),
        verb: verb.into(),
        resource_request: true,
        namespace: ns.into(),
        api_group: group.into(),
        resource: resource.into(),
        subresource: sub.into(),
        name: name.into(),
        ..Attributes::default()
    }
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

#[track_caller]
fn allowed(a: &Authorization, r: Attributes) {
    assert_eq!(a.authorize(&r), Decision::Allow, "{r:?}");
}

/// Refused, with `why` in the reason.
#[track_caller]
fn refused(a: &Authorization, r: Attributes, why: &str) {
    match a.authorize(&r) {
        Decision::NoOpinion(reason) => assert!(reason.contains(why), "{reason:?} for {r:?}"),
        other => panic!("{other:?} for {r:?}"),
    }
}

#[test]
fn a_node_reads_only_what_its_pods_use() {
    let a = chain();
    let n1 = node_user("n1");
    let none = "no relationship found between node 'n1' and this object";
    allowed(&a, req(&n1, "get", "", "secrets", "default", "tls"));
    allowed(&a, req(&n1, "watch", "", "secrets", "default", "tls"));
    allowed(&a, req(&n1, "get", "", "configmaps", "default", "settings"));
    allowed(
        &a,
        req(&n1, "get", "", "persistentvolumeclaims", "default", "data"),
    );
    allowed(&a, req(&n1, "get", "", "persistentvolumes", "", "pv-data"));
    allowed(&a, req(&n1, "get", "", "pods", "default", "web"));
    refused(
        &a,
        req(&n1, "get", "", "secrets", "default", "db-password"),
        none,
    );
    refused(
        &a,
        req(&n1, "get", "", "secrets", "default", "nobody-uses"),
        none,
    );
    refused(&a, req(&n1, "get", "", "pods", "default", "db"), none);
    refused(
        &a,
        req(&n1, "list", "", "secrets", "default", ""),
        "No Object name found",
    );
    refused(
        &a,
        req(&n1, "update", "", "secrets", "default", "tls"),
        "can only read",
    );
    refused(&a, req(&n1, "get", "", "secrets", "", "tls"), "namespaced");
    refused(
        &a,
        req(&n1, "list", "", "persistentvolumes", "", "pv-data"),
        "can only get",
    );
    allowed(
        &a,
        req(
            &node_user("n2"),
            "get",
            "",
            "secrets",
            "default",
            "db-password",
        ),
    );
}

#[test]
fn tokens_only_for_the_service_accounts_of_its_pods() {
    let a = chain();
    let n1 = node_user("n1");
    allowed(
        &a,
        req(
            &n1,
            "create",
            "",
            "serviceaccounts/token",
            "default",
            "robot",
        ),
    );
    refused(
        &a,
        req(
            &n1,
            "create",
            "",
            "serviceaccounts/token",
            "default",
            "default",
        ),
        "no relationship",
    );
    refused(
        &a,
        req(&n1, "get", "", "serviceaccounts", "default", "robot"),
        "individual",
    );
}

#[test]
fn its_own_node_and_lease_only() {
    let a = chain();
    let n1 = node_user("n1");
    allowed(&a, req(&n1, "get", "", "nodes", "", "n1"));
    allowed(&a, req(&n1, "watch", "", "nodes", "", "n1"));
    allowed(&a, req(&n1, "patch", "", "nodes/status", "", "n1"));
    // Which Node a node writes is NodeRestriction admission's to confine, as upstream.
    allowed(&a, req(&n1, "update", "", "nodes", "", "n1"));
    allowed(&a, req(&n1, "create", "", "nodes", "", ""));
    refused(
        &a,
        req(&n1, "get", "", "nodes", "", "n2"),
        "cannot read 'n2'",
    );
    refused(
        &a,
        req(&n1, "list", "", "nodes", "", ""),
        "cannot read all nodes",
    );
    refused(&a, req(&n1, "delete", "", "nodes", "", "n1"), "");

    let lease = |verb, ns, name| req(&n1, verb, "coordination.k8s.io", "leases", ns, name);
    allowed(&a, lease("get", NODE_LEASE_NAMESPACE, "n1"));
    allowed(&a, lease("update", NODE_LEASE_NAMESPACE, "n1"));
    allowed(&a, lease("create", NODE_LEASE_NAMESPACE, ""));
    refused(&a, lease("update", NODE_LEASE_NAMESPACE, "n2"), "same name");
    refused(&a, lease("list", NODE_LEASE_NAMESPACE, ""), "can only get");
    refused(&a, lease("get", "kube-system", "n1"), "\"kube-node-lease\"");
}

#[test]
fn pods_are_listed_by_node_name_only() {
    let a = chain();
    let n1 = node_user("n1");
    let mut list = req(&n1, "list", "", "pods", "", "");
    refused(&a, list.clone(), "spec.nodeName field selector");
    list.field_selector = "spec.nodeName=n1".into();
    allowed(&a, list.clone());
    list.field_selector = "spec.nodeName=n2".into();
    refused(&a, list, "spec.nodeName field selector");
    // Mirror pods and statuses: admission confines them to the node's own.
    allowed(&a, req(&n1, "create", "", "pods", "default", ""));
    allowed(&a, req(&n1, "patch", "", "pods/status", "default", "db"));
    refused(&a, req(&n1, "update", "", "pods", "default", "web"), "");
}

#[test]
fn other_requests_are_held_to_the_system_node_role() {
    let a = chain();
    let n1 = node_user("n1");
    allowed(&a, req(&n1, "list", "", "services", "", ""));
    allowed(&a, req(&n1, "create", "", "events", "default", ""));
    allowed(
        &a,
        req(
            &n1,
            "create",
            "authentication.k8s.io",
            "tokenreviews",
            "",
            "",
        ),
    );
    refused(&a, req(&n1, "list", "apps", "deployments", "", ""), "");
    refused(&a, req(&n1, "delete", "", "namespaces", "", "default"), "");
}

#[test]
fn only_members_of_system_nodes_are_nodes() {
    let a = chain();
    let impostor = User {
        name: "system:node:n1".into(),
        groups: vec!["system:authenticated".into()],
        ..User::default()
    };
    refused(
        &a,
        req(&impostor, "get", "", "secrets", "default", "tls"),
        "",
    );
    refused(&a, req(&impostor, "list", "", "services", "", ""), "");
    let nameless = node_user("");
    refused(
        &a,
        req(&nameless, "get", "", "services", "", "x"),
        "unknown node for user \"system:node:\"",
    );
    assert_eq!(node_identity(&node_user("n1")), Some("n1"));
    assert_eq!(node_identity(&impostor), None);
}

#[test]
fn an_explicit_binding_still_grants_after_the_node_authorizer_passes() {
    let mut objects = crate::authz::reconcile::objects();
    objects.push((
        "clusterrolebindings",
        json!({"metadata": {"name": "nodes-read-secrets"},
            "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "Group", "name": NODES_GROUP}]}),
    ));
    let a = Authorization::new(
        &[Mode::Node, Mode::Rbac],
        &RbacCache::from_objects(objects),
        &NodeGraph::from_objects(pods()),
    );
    allowed(&a, req(&node_user("n1"), "list", "", "pods", "default", ""));
}
