//! RBAC evaluation, escalation and Forbidden wording against upstream's behaviour.

use serde_json::{Value, json};

use super::cache::RbacCache;
use super::escalation::Guard;
use super::*;

pub(super) fn user(name: &str, groups: &[&str]) -> User {
    User {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..User::default()
    }
}

pub(super) fn req(
    u: &User,
    verb: &str,
    group: &str,
    resource: &str,
    sub: &str,
    ns: &str,
    name: &str,
) -> Attributes {
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

fn path(u: &User, verb: &str, p: &str) -> Attributes {
    Attributes {
        user: u.clone(),
        verb: verb.into(),
        path: p.into(),
        ..Attributes::default()
    }
}

const G: &str = "rbac.authorization.k8s.io";

fn no_nodes() -> Arc<node::NodeGraph> {
    node::NodeGraph::from_objects([])
}

fn objects() -> Vec<(&'static str, Value)> {
    vec![
        (
            "clusterroles",
            json!({"metadata": {"name": "pod-reader", "labels": {"agg": "true"}}, "rules": [
                {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]},
            ]}),
        ),
        (
            "clusterroles",
            json!({"metadata": {"name": "scaler"}, "rules": [
                {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["*"]},
                {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cfg"], "verbs": ["get"]},
                {"nonResourceURLs": ["/logs/*", "/metrics"], "verbs": ["get"]},
            ]}),
        ),
        (
            "clusterroles",
            json!({"metadata": {"name": "aggregated"}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "true"}}]}, "rules": []}),
        ),
        (
            "roles",
            json!({"metadata": {"name": "secrets", "namespace": "dev"}, "rules": [
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
            ]}),
        ),
        (
            "rolebindings",
            json!({"metadata": {"name": "jane-pods", "namespace": "dev"},
            "roleRef": {"apiGroup": G, "kind": "ClusterRole", "name": "pod-reader"},
            "subjects": [{"kind": "User", "apiGroup": G, "name": "jane"}]}),
        ),
        (
            "rolebindings",
            json!({"metadata": {"name": "sa-secrets", "namespace": "dev"},
            "roleRef": {"apiGroup": G, "kind": "Role", "name": "secrets"},
            "subjects": [{"kind": "ServiceAccount", "name": "robot"}]}),
        ),
        (
            "rolebindings",
            json!({"metadata": {"name": "dangling", "namespace": "dev"},
            "roleRef": {"apiGroup": G, "kind": "ClusterRole", "name": "nope"},
            "subjects": [{"kind": "Group", "apiGroup": G, "name": "ops"}]}),
        ),
        (
            "clusterrolebindings",
            json!({"metadata": {"name": "ops-scale"},
            "roleRef": {"apiGroup": G, "kind": "ClusterRole", "name": "scaler"},
            "subjects": [{"kind": "Group", "apiGroup": G, "name": "ops"}]}),
        ),
        (
            "clusterrolebindings",
            json!({"metadata": {"name": "agg"},
            "roleRef": {"apiGroup": G, "kind": "ClusterRole", "name": "aggregated"},
            "subjects": [{"kind": "User", "apiGroup": G, "name": "agg-user"}]}),
        ),
    ]
}

fn rbac() -> Authorization {
    Authorization::new(
        &[Mode::Rbac],
        &RbacCache::from_objects(objects()),
        &no_nodes(),
    )
}

#[test]
fn role_bindings_apply_only_in_their_namespace() {
    let a = rbac();
    let jane = user("jane", &["system:authenticated"]);
    assert_eq!(
        a.authorize(&req(&jane, "list", "", "pods", "", "dev", "")),
        Decision::Allow
    );
    assert_eq!(
        a.authorize(&req(&jane, "get", "", "pods", "log", "dev", "web")),
        Decision::Allow
    );
    assert_ne!(
        a.authorize(&req(&jane, "list", "", "pods", "", "prod", "")),
        Decision::Allow
    );
    assert_ne!(
        a.authorize(&req(&jane, "list", "", "pods", "", "", "")),
        Decision::Allow
    );
    assert_ne!(
        a.authorize(&req(&jane, "delete", "", "pods", "", "dev", "web")),
        Decision::Allow
    );
    assert_ne!(
        a.authorize(&req(&jane, "get", "", "pods", "exec", "dev", "web")),
        Decision::Allow
    );
    assert_ne!(
        a.authorize(&req(&jane, "list", "apps", "pods", "", "dev", "")),
        Decision::Allow
    );
}

#[test]
fn subjects_wildcards_names_and_urls() {
    let a = rbac();
    let robot = user("system:serviceaccount:dev:robot", &[]);
    assert_eq!(
        a.authorize(&req(&robot, "get", "", "secrets", "", "dev", "s")),
        Decision::Allow
    );
    let other = user("system:serviceaccount:prod:robot", &[]);
    assert_ne!(
        a.authorize(&req(&other, "get", "", "secrets", "", "dev", "s")),
        Decision::Allow
    );

    let ops = user("olga", &["ops"]);
    assert_eq!(
        a.authorize(&req(
            &ops,
            "patch",
            "apps",
            "deployments",
            "scale",
            "x",
            "web"
        )),
        Decision::Allow
    );
    assert_ne!(
        a.authorize(&req(&ops, "patch", "apps", "deployments", "", "x", "web")),
        Decision::Allow
    );
    assert_eq!(
        a.authorize(&req(&ops, "get", "", "configmaps", "", "x", "cfg")),
        Decision::Allow
    );
    assert_ne!(
        a.authorize(&req(&ops, "get", "", "configmaps", "", "x", "other")),
        Decision::Allow
    );
    assert_ne!(
        a.authorize(&req(&ops, "list", "", "configmaps", "", "x", "")),
        Decision::Allow
    );
    assert_eq!(
        a.authorize(&path(&ops, "get", "/logs/kube.log")),
        Decision::Allow
    );
    assert_eq!(a.authorize(&path(&ops, "get", "/metrics")), Decision::Allow);
    assert_ne!(
        a.authorize(&path(&ops, "get", "/metrics/slis")),
        Decision::Allow
    );
    assert_ne!(
        a.authorize(&path(&ops, "post", "/metrics")),
        Decision::Allow
    );
    // The missing role of a binding that applies is reported.
    assert_eq!(
        a.authorize(&req(&ops, "list", "", "secrets", "", "dev", "")),
        Decision::NoOpinion(
            "RBAC: clusterrole.rbac.authorization.k8s.io \"nope\" not found".into()
        )
    );
}

#[test]
fn aggregated_roles_hold_their_selected_roles() {
    let a = rbac();
    let u = user("agg-user", &[]);
    assert_eq!(
        a.authorize(&req(&u, "get", "", "pods", "", "any", "p")),
        Decision::Allow
    );
    assert_ne!(
        a.authorize(&req(&u, "get", "", "secrets", "", "any", "p")),
        Decision::Allow
    );
}

#[test]
fn the_aggregation_controller_sees_stale_rules() {
    let stale = RbacCache::from_objects(objects()).stale_aggregations();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].0, "aggregated");
    assert_eq!(
        stale[0].1,
        [rules::Rule::resource(
            &["get", "list"],
            &[""],
            &["pods", "pods/log"]
        )]
    );
    let mut objs = objects();
    objs[2].1["rules"] =
        json!([{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}]);
    assert!(
        RbacCache::from_objects(objs)
            .stale_aggregations()
            .is_empty()
    );
}

#[test]
fn masters_and_modes() {
    let none = Authorization::new(
        &[Mode::AlwaysDeny],
        &RbacCache::from_objects([]),
        &no_nodes(),
    );
    let admin = user("admin", &["system:masters"]);
    assert_eq!(
        none.authorize(&req(&admin, "delete", "", "nodes", "", "", "n")),
        Decision::Allow
    );
    assert!(matches!(
        none.authorize(&req(&user("x", &[]), "get", "", "pods", "", "d", "p")),
        Decision::Deny(_)
    ));
    let all = Authorization::new(
        &[Mode::AlwaysAllow],
        &RbacCache::from_objects([]),
        &no_nodes(),
    );
    assert_eq!(
        all.authorize(&req(&user("x", &[]), "get", "", "pods", "", "d", "p")),
        Decision::Allow
    );
    assert_eq!(
        Mode::parse_list("RBAC,AlwaysAllow").unwrap(),
        [Mode::Rbac, Mode::AlwaysAllow]
    );
    assert_eq!(
        Mode::parse_list("Node,RBAC").unwrap(),
        [Mode::Node, Mode::Rbac]
    );
    assert!(
        Mode::parse_list("Webhook")
            .unwrap_err()
            .contains("not supported")
    );
    assert!(Mode::parse_list("Node,Node").unwrap_err().contains("twice"));
    assert!(Mode::parse_list("Magic").is_err());
}

#[test]
fn forbidden_messages_are_upstreams() {
    let jane = user("jane", &[]);
    let cases = [
        (
            req(&jane, "list", "", "pods", "", "prod", ""),
            "pods is forbidden: User \"jane\" cannot list resource \"pods\" in API group \"\" in the namespace \"prod\"",
        ),
        (
            req(&jane, "list", "", "namespaces", "", "", ""),
            "namespaces is forbidden: User \"jane\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope",
        ),
        (
            req(&jane, "get", "apps", "deployments", "", "dev", "web"),
            "deployments.apps \"web\" is forbidden: User \"jane\" cannot get resource \"deployments\" in API group \"apps\" in the namespace \"dev\"",
        ),
        (
            req(&jane, "create", "", "pods", "exec", "dev", "web"),
            "pods \"web\" is forbidden: User \"jane\" cannot create resource \"pods/exec\" in API group \"\" in the namespace \"dev\"",
        ),
        (
            path(&jane, "get", "/metrics"),
            "forbidden: User \"jane\" cannot get path \"/metrics\"",
        ),
    ];
    for (a, want) in cases {
        let e = rbac().check(&a).unwrap_err();
        assert_eq!(
            (e.code, e.reason, e.message.as_str()),
            (403, "Forbidden", want)
        );
    }
    let e = forbidden(
        &req(&jane, "get", "apps", "deployments", "", "dev", "web"),
        "",
    );
    assert_eq!(
        e.details,
        Some(json!({"name": "web", "group": "apps", "kind": "deployments"}))
    );
}

#[test]
fn escalation_needs_the_permissions_or_escalate_and_bind() {
    let a = rbac();
    let cache = RbacCache::from_objects(objects());
    let jane = user("jane", &["system:authenticated"]);
    let guard = Guard {
        authz: &a,
        cache: &cache,
        user: &jane,
    };
    let roles = ekube_api::resources::find(G, "v1", "roles").unwrap();
    let bindings = ekube_api::resources::find(G, "v1", "rolebindings").unwrap();
    let role = |rules: Value| json!({"metadata": {"name": "r"}, "rules": rules});
    // What she holds she may grant…
    guard
        .check(
            roles,
            Some("dev"),
            &role(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}])),
        )
        .unwrap();
    // …but not more, and not elsewhere.
    let e = guard
        .check(
            roles,
            Some("dev"),
            &role(json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}])),
        )
        .unwrap_err();
    assert_eq!(e.code, 403);
    assert_eq!(
        e.message,
        "roles.rbac.authorization.k8s.io \"r\" is forbidden: user \"jane\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"
    );
    assert!(
        guard
            .check(
                roles,
                Some("prod"),
                &role(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]))
            )
            .is_err()
    );
    let binding = |role: &str| json!({"metadata": {"name": "b"}, "roleRef": {"apiGroup": G, "kind": "ClusterRole", "name": role}, "subjects": []});
    guard
        .check(bindings, Some("dev"), &binding("pod-reader"))
        .unwrap();
    assert!(
        guard
            .check(bindings, Some("dev"), &binding("scaler"))
            .is_err()
    );
    // `*/scale` covers `deployments/scale`; a named rule covers only its names.
    let ops = user("olga", &["ops"]);
    let guard = Guard {
        authz: &a,
        cache: &cache,
        user: &ops,
    };
    guard.check(roles, Some("x"), &role(json!([{"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]}]))).unwrap();
    guard.check(roles, Some("x"), &role(json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cfg"], "verbs": ["get"]}]))).unwrap();
    assert!(
        guard
            .check(
                roles,
                Some("x"),
                &role(json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]))
            )
            .is_err()
    );
}

#[test]
fn bootstrap_policy_grants_what_upstream_does() {
    let mut objs = reconcile::objects();
    objs.push((
        "rolebindings",
        json!({"metadata": {"name": "v", "namespace": "dev"},
        "roleRef": {"apiGroup": G, "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "apiGroup": G, "name": "jane"}]}),
    ));
    let a = Authorization::new(&[Mode::Rbac], &RbacCache::from_objects(objs), &no_nodes());
    let anon = User::anonymous();
    assert_eq!(
        a.authorize(&path(&anon, "get", "/version")),
        Decision::Allow
    );
    assert_eq!(
        a.authorize(&path(&anon, "get", "/healthz")),
        Decision::Allow
    );
    assert_ne!(a.authorize(&path(&anon, "get", "/api")), Decision::Allow);
    assert_ne!(
        a.authorize(&req(&anon, "list", "", "namespaces", "", "", "")),
        Decision::Allow
    );
    assert_eq!(
        a.authorize(&req(
            &anon,
            "get",
            "",
            "configmaps",
            "",
            "kube-public",
            "cluster-info"
        )),
        Decision::Allow
    );
    let jane = user("jane", &["system:authenticated"]);
    assert_eq!(
        a.authorize(&path(&jane, "get", "/apis/apps/v1")),
        Decision::Allow
    );
    assert_eq!(
        a.authorize(&req(
            &jane,
            "create",
            "authorization.k8s.io",
            "selfsubjectrulesreviews",
            "",
            "",
            ""
        )),
        Decision::Allow
    );
    // view, aggregated from system:aggregate-to-view.
    assert_eq!(
        a.authorize(&req(&jane, "list", "apps", "deployments", "", "dev", "")),
        Decision::Allow
    );
    // …and from system:aggregated-metrics-reader: `kubectl top pods`.
    assert_eq!(
        a.authorize(&req(&jane, "list", "metrics.k8s.io", "pods", "", "dev", "")),
        Decision::Allow
    );
    assert_ne!(
        a.authorize(&req(&jane, "get", "", "secrets", "", "dev", "s")),
        Decision::Allow
    );
    let scheduler = user("system:kube-scheduler", &["system:authenticated"]);
    assert_eq!(
        a.authorize(&req(
            &scheduler, "create", "", "pods", "binding", "dev", "p"
        )),
        Decision::Allow
    );
    let gc = user(
        "system:serviceaccount:kube-system:generic-garbage-collector",
        &[],
    );
    assert_eq!(
        a.authorize(&req(&gc, "delete", "apps", "replicasets", "", "dev", "r")),
        Decision::Allow
    );
}

#[test]
fn storage_controllers_and_the_scheduler_get_upstream_grants() {
    let a = Authorization::new(
        &[Mode::Rbac],
        &RbacCache::from_objects(reconcile::objects()),
        &no_nodes(),
    );
    let sa = |name: &str| {
        user(
            &format!("system:serviceaccount:kube-system:{name}"),
            &[
                "system:serviceaccounts",
                "system:serviceaccounts:kube-system",
            ],
        )
    };
    let binder = sa("persistent-volume-binder");
    let pvc_protection = sa("pvc-protection-controller");
    let pv_protection = sa("pv-protection-controller");
    let scheduler = user("system:kube-scheduler", &["system:authenticated"]);
    let allowed = [
        (&binder, "create", "", "persistentvolumes", "", ""),
        (&binder, "delete", "", "persistentvolumes", "", ""),
        (&binder, "update", "", "persistentvolumes", "status", ""),
        (&binder, "update", "", "persistentvolumeclaims", "", "dev"),
        (
            &binder,
            "update",
            "",
            "persistentvolumeclaims",
            "status",
            "dev",
        ),
        (&binder, "watch", "storage.k8s.io", "storageclasses", "", ""),
        (&binder, "create", "", "pods", "", "dev"),
        (&binder, "create", "", "events", "", "dev"),
        (
            &pvc_protection,
            "update",
            "",
            "persistentvolumeclaims",
            "",
            "dev",
        ),
        (&pvc_protection, "list", "", "pods", "", ""),
        (&pv_protection, "update", "", "persistentvolumes", "", ""),
        (&scheduler, "patch", "", "persistentvolumeclaims", "", "dev"),
        (&scheduler, "update", "", "persistentvolumes", "", ""),
        (
            &scheduler,
            "list",
            "storage.k8s.io",
            "storageclasses",
            "",
            "",
        ),
    ];
    for (who, verb, group, resource, sub, ns) in allowed {
        assert_eq!(
            a.authorize(&req(who, verb, group, resource, sub, ns, "x")),
            Decision::Allow,
            "{} {verb} {resource}/{sub}",
            who.name
        );
    }
    let refused = [
        (&binder, "patch", "", "persistentvolumes", "", ""),
        (&binder, "delete", "", "persistentvolumeclaims", "", "dev"),
        (&pvc_protection, "update", "", "persistentvolumes", "", ""),
        (&pvc_protection, "delete", "", "pods", "", "dev"),
        (
            &pv_protection,
            "update",
            "",
            "persistentvolumeclaims",
            "",
            "dev",
        ),
        (&scheduler, "delete", "", "persistentvolumes", "", ""),
    ];
    for (who, verb, group, resource, sub, ns) in refused {
        assert_ne!(
            a.authorize(&req(who, verb, group, resource, sub, ns, "x")),
            Decision::Allow,
            "{} {verb} {resource}/{sub}",
            who.name
        );
    }
}
