//! Authorization end to end with the real kubectl against a loopback server: a user certificate
//! for `jane` from the cluster CA, RBAC bindings made with `kubectl create rolebinding`,
//! `kubectl auth can-i [--list]` and `whoami`, upstream's Forbidden wording, anonymous access to
//! the public-info paths only (401 with `--anonymous-auth=false`), escalation prevention and
//! rule validation; the Node authorizer confining a kubelet's certificate to its own Node and
//! Lease and to the Secrets its bound pods use; `ekube server`'s controllers acting as their own
//! ServiceAccounts.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use ekube_tests::{ServerProcess, anonymous, kubectl_as, ok, stderr, wait_for};

/// Waits until a binding just created shows in what `kubeconfig`'s user may do.
fn wait_allowed(kubeconfig: &Path, args: &[&str]) {
    wait_for(
        Duration::from_secs(10),
        &format!("kubectl {} to be allowed", args.join(" ")),
        || Ok(kubectl_as(kubeconfig, args).status.success()),
    )
    .unwrap();
}

#[test]
fn jane_can_do_what_her_bindings_say() {
    let s = ServerProcess::start(&[]).unwrap();
    ok(s.kubectl(&["create", "namespace", "dev"]));
    ok(s.kubectl(&["create", "namespace", "prod"]));
    let jane = s.user_kubeconfig("jane", &[]).unwrap();

    // Nothing before a binding, in upstream's words.
    let out = kubectl_as(&jane, &["get", "pods", "-n", "dev"]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        "Error from server (Forbidden): pods is forbidden: User \"jane\" cannot list resource \"pods\" in API group \"\" in the namespace \"dev\""
    );
    let out = kubectl_as(&jane, &["get", "namespaces"]);
    assert!(
        stderr(&out).contains("User \"jane\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope"),
        "{}",
        stderr(&out)
    );

    ok(s.kubectl(&[
        "create",
        "rolebinding",
        "jane-view",
        "--clusterrole=view",
        "--user=jane",
        "-n",
        "dev",
    ]));
    wait_allowed(&jane, &["get", "pods", "-n", "dev"]);
    ok(kubectl_as(
        &jane,
        &["get", "deployments,configmaps", "-n", "dev"],
    ));
    for (args, what) in [
        (&["get", "pods", "-n", "prod"][..], "pods in prod"),
        (&["get", "secrets", "-n", "dev"], "secrets in dev"),
        (
            &["create", "configmap", "x", "-n", "dev"],
            "creating a configmap in dev",
        ),
        (&["get", "pods", "-A"], "pods in every namespace"),
    ] {
        let out = kubectl_as(&jane, args);
        assert!(!out.status.success(), "jane was allowed {what}");
        assert!(
            stderr(&out).contains("is forbidden: User \"jane\" cannot"),
            "{what}: {}",
            stderr(&out)
        );
    }

    // can-i, asked by jane and by the admin impersonating her, agree.
    let yes = ok(kubectl_as(
        &jane,
        &["auth", "can-i", "list", "pods", "-n", "dev"],
    ));
    assert_eq!(yes.trim(), "yes");
    let no = kubectl_as(&jane, &["auth", "can-i", "list", "pods", "-n", "prod"]);
    assert_eq!(String::from_utf8_lossy(&no.stdout).trim(), "no");
    let hers = ok(kubectl_as(&jane, &["auth", "can-i", "--list", "-n", "dev"]));
    let impersonated = ok(s.kubectl(&["auth", "can-i", "--list", "--as", "jane", "-n", "dev"]));
    assert_eq!(hers, impersonated);
    let pods = hers
        .lines()
        .find(|l| l.split_whitespace().next() == Some("pods"))
        .unwrap_or_else(|| panic!("no pods line in:\n{hers}"));
    assert!(pods.ends_with("[get list watch]"), "{pods}");
    assert!(!hers.lines().any(|l| l.starts_with("secrets ")), "{hers}");
    assert!(
        hers.contains("selfsubjectrulesreviews.authorization.k8s.io"),
        "{hers}"
    );
    let elsewhere = ok(s.kubectl(&["auth", "can-i", "--list", "--as", "jane", "-n", "prod"]));
    assert!(
        !elsewhere.lines().any(|l| l.starts_with("pods ")),
        "{elsewhere}"
    );

    // Impersonation itself is authorized: jane may not act as someone else.
    let out = kubectl_as(&jane, &["get", "pods", "-n", "dev", "--as", "admin"]);
    assert!(
        stderr(&out).contains("users \"admin\" is forbidden: User \"jane\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"),
        "{}",
        stderr(&out)
    );

    let whoami = ok(kubectl_as(&jane, &["auth", "whoami", "-o", "json"]));
    let review: serde_json::Value = serde_json::from_str(&whoami).unwrap();
    assert_eq!(review["kind"], "SelfSubjectReview");
    assert_eq!(review["status"]["userInfo"]["username"], "jane");
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        serde_json::json!(["system:authenticated"])
    );
}

#[test]
fn escalation_is_refused_and_invalid_rules_are_not_stored() {
    let s = ServerProcess::start(&[]).unwrap();
    ok(s.kubectl(&["create", "namespace", "team"]));
    // The aggregation controller has written what `admin` grants into it.
    wait_for(
        Duration::from_secs(10),
        "clusterrole admin to aggregate rules",
        || {
            let admin = ok(s.kubectl(&["get", "clusterrole", "admin", "-o", "json"]));
            let admin: serde_json::Value = serde_json::from_str(&admin).unwrap();
            Ok(admin["rules"].as_array().is_some_and(|rules| {
                rules.iter().any(|r| {
                    r["resources"]
                        .as_array()
                        .is_some_and(|res| res.iter().any(|x| x == "rolebindings"))
                }) && rules.iter().any(|r| {
                    r["resources"]
                        .as_array()
                        .is_some_and(|res| res.iter().any(|x| x == "pods/log"))
                })
            }))
        },
    )
    .unwrap();
    let jane = s.user_kubeconfig("jane", &["devs"]).unwrap();
    ok(s.kubectl(&[
        "create",
        "rolebinding",
        "devs-admin",
        "--clusterrole=admin",
        "--group=devs",
        "-n",
        "team",
    ]));
    wait_allowed(&jane, &["get", "roles", "-n", "team"]);

    // What she holds she may hand on…
    ok(kubectl_as(
        &jane,
        &[
            "create",
            "role",
            "reader",
            "--verb=get",
            "--resource=pods",
            "-n",
            "team",
        ],
    ));
    // …but not nodes, which she cannot read, nor cluster-admin.
    let out = kubectl_as(
        &jane,
        &[
            "create",
            "role",
            "sneaky",
            "--verb=get",
            "--resource=nodes",
            "-n",
            "team",
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("roles.rbac.authorization.k8s.io \"sneaky\" is forbidden: user \"jane\" (groups=[\"devs\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:"),
        "{}",
        stderr(&out)
    );
    let out = kubectl_as(
        &jane,
        &[
            "create",
            "rolebinding",
            "root",
            "--clusterrole=cluster-admin",
            "--user=jane",
            "-n",
            "team",
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "rolebindings.rbac.authorization.k8s.io \"root\" is forbidden: user \"jane\""
        ),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("{APIGroups:[\"*\"], Resources:[\"*\"], Verbs:[\"*\"]}"),
        "{}",
        stderr(&out)
    );
    let names = ok(s.kubectl(&["get", "roles,rolebindings", "-n", "team", "-o", "name"]));
    assert!(
        !names.contains("sneaky") && !names.contains("/root"),
        "{names}"
    );
    assert!(
        names.contains("role.rbac.authorization.k8s.io/reader"),
        "{names}"
    );

    // A rule without verbs is invalid, for the admin too, and nothing is stored.
    let bad = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: bad\n  namespace: team\nrules:\n- apiGroups: [\"\"]\n  resources: [pods]\n  verbs: []\n";
    let out = s.kubectl_stdin(&["create", "-f", "-"], Some(bad));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("The Role \"bad\" is invalid: rules[0].verbs: Required value"),
        "{}",
        stderr(&out)
    );
    let out = s.kubectl(&["get", "role", "bad", "-n", "team"]);
    assert!(stderr(&out).contains("NotFound"), "{}", stderr(&out));
}

#[test]
fn anonymous_reaches_public_info_only() {
    // `cluster-info` exists from the first start (the apiserver writes it).
    let s = ServerProcess::start(&[]).unwrap();
    let (code, body) = anonymous(s.port, "/version");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("gitVersion"), "{body}");
    assert_eq!(anonymous(s.port, "/healthz"), (200, "ok".into()));
    assert_eq!(anonymous(s.port, "/readyz").0, 200);
    wait_for(Duration::from_secs(10), "anonymous cluster-info", || {
        Ok(anonymous(
            s.port,
            "/api/v1/namespaces/kube-public/configmaps/cluster-info",
        )
        .0 == 200)
    })
    .unwrap();
    let (code, body) = anonymous(s.port, "/api/v1/namespaces");
    assert_eq!(code, 403, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        status["message"],
        "namespaces is forbidden: User \"system:anonymous\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope"
    );
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(status["details"]["kind"], "namespaces");
    assert_eq!(
        anonymous(s.port, "/api/v1/namespaces/kube-public/configmaps/other").0,
        403
    );
    let (code, body) = anonymous(s.port, "/api");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("cannot get path \\\"/api\\\""), "{body}");

    let closed = ServerProcess::start(&["--anonymous-auth=false"]).unwrap();
    assert_eq!(anonymous(closed.port, "/api/v1/namespaces").0, 401);
    assert_eq!(anonymous(closed.port, "/healthz").0, 401);
    ok(closed.kubectl(&["get", "namespaces"]));
}

/// Two Nodes with their Leases, a pod bound to each (no kubelet runs: `spec.nodeName` is set
/// directly), each using its own Secret, and a Secret no pod uses.
const NODE_OBJECTS: &str = r#"
{apiVersion: v1, kind: Node, metadata: {name: n1}}
---
{apiVersion: v1, kind: Node, metadata: {name: n2}}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: n1, namespace: kube-node-lease}
spec: {holderIdentity: n1, leaseDurationSeconds: 40}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: n2, namespace: kube-node-lease}
spec: {holderIdentity: n2, leaseDurationSeconds: 40}
---
{apiVersion: v1, kind: Secret, metadata: {name: for-n1}, data: {k: b25l}}
---
{apiVersion: v1, kind: Secret, metadata: {name: for-n2}, data: {k: dHdv}}
---
{apiVersion: v1, kind: Secret, metadata: {name: unused}, data: {k: bm9uZQ==}}
---
apiVersion: v1
kind: Pod
metadata: {name: on-n1}
spec:
  nodeName: n1
  automountServiceAccountToken: false
  containers: [{name: c, image: busybox}]
  volumes: [{name: s, secret: {secretName: for-n1}}]
---
apiVersion: v1
kind: Pod
metadata: {name: on-n2}
spec:
  nodeName: n2
  automountServiceAccountToken: false
  containers:
  - name: c
    image: busybox
    env: [{name: K, valueFrom: {secretKeyRef: {name: for-n2, key: k}}}]
"#;

/// Refused with upstream's Forbidden message, containing `why`.
#[track_caller]
fn forbidden(out: Output, why: &str) {
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("is forbidden: User") && err.contains(why),
        "wanted a 403 saying {why:?}, got {}: {err}",
        out.status
    );
}

#[test]
fn a_node_reaches_only_its_own_objects_and_what_its_pods_use() {
    // The default mode is Node,RBAC.
    let s = ServerProcess::start(&[]).unwrap();
    // Pods need their ServiceAccount, which the controller-manager makes.
    wait_for(
        Duration::from_secs(20),
        "ServiceAccount default/default",
        || {
            Ok(s.kubectl(&["get", "serviceaccount", "default"])
                .status
                .success())
        },
    )
    .unwrap();
    ok(s.kubectl_stdin(&["apply", "-f", "-"], Some(NODE_OBJECTS)));
    let n1 = s
        .user_kubeconfig("system:node:n1", &["system:nodes"])
        .unwrap();

    // Its own Node and Lease: read and write.
    ok(kubectl_as(&n1, &["get", "node", "n1"]));
    // Its status, written as the kubelet does (PUT of `nodes/n1/status`; `kubectl patch
    // --subresource=status` would first read `nodes/status`, which upstream does not allow).
    let mut node: serde_json::Value =
        serde_json::from_str(&ok(kubectl_as(&n1, &["get", "node", "n1", "-o", "json"]))).unwrap();
    node["status"]["capacity"] = serde_json::json!({"pods": "7"});
    let file = s.dir.join("n1-status.json");
    std::fs::write(&file, node.to_string()).unwrap();
    let file = file.to_str().unwrap();
    ok(kubectl_as(
        &n1,
        &["replace", "--raw", "/api/v1/nodes/n1/status", "-f", file],
    ));
    let capacity = ok(s.kubectl(&[
        "get",
        "node",
        "n1",
        "-o",
        "jsonpath={.status.capacity.pods}",
    ]));
    assert_eq!(capacity, "7");
    ok(kubectl_as(
        &n1,
        &["annotate", "node", "n1", "ekube.test/seen=yes"],
    ));
    ok(kubectl_as(
        &n1,
        &[
            "annotate",
            "lease",
            "n1",
            "-n",
            "kube-node-lease",
            "ekube.test/renewed=yes",
        ],
    ));
    let annotated = ok(s.kubectl(&[
        "get",
        "node",
        "n1",
        "-o",
        "jsonpath={.metadata.annotations}",
    ]));
    assert!(annotated.contains("ekube.test/seen"), "{annotated}");

    // Another node's Node and Lease: readable (`ekube:node-proxier`: the node's service proxy
    // and overlay need every Node's addresses), never writable (NodeRestriction).
    ok(kubectl_as(&n1, &["get", "node", "n2"]));
    ok(kubectl_as(&n1, &["get", "nodes"]));
    let annotated_n2 = kubectl_as(&n1, &["annotate", "node", "n2", "ekube.test/seen=yes"]);
    let err = stderr(&annotated_n2);
    assert!(
        !annotated_n2.status.success()
            && err.contains("Forbidden")
            && err.contains("node \"n1\" is not allowed to modify node \"n2\""),
        "n1 annotated n2: {err}"
    );
    forbidden(
        kubectl_as(
            &n1,
            &["annotate", "lease", "n2", "-n", "kube-node-lease", "x=y"],
        ),
        "can only access node lease with the same name as the requesting node",
    );

    // The Secret its pod uses, once the graph has seen the pod; no other.
    wait_allowed(&n1, &["get", "secret", "for-n1"]);
    let value = ok(kubectl_as(
        &n1,
        &["get", "secret", "for-n1", "-o", "jsonpath={.data.k}"],
    ));
    assert_eq!(value, "b25l", "base64 of \"one\"");
    let unrelated = "no relationship found between node 'n1' and this object";
    forbidden(kubectl_as(&n1, &["get", "secret", "unused"]), unrelated);
    forbidden(kubectl_as(&n1, &["get", "secret", "for-n2"]), unrelated);
    forbidden(
        kubectl_as(&n1, &["get", "secrets"]),
        "cannot list resource \"secrets\"",
    );
    forbidden(kubectl_as(&n1, &["create", "token", "robot"]), unrelated);

    // Pods: its own, listed by node name only.
    ok(kubectl_as(&n1, &["get", "pod", "on-n1"]));
    forbidden(kubectl_as(&n1, &["get", "pod", "on-n2"]), unrelated);
    forbidden(
        kubectl_as(&n1, &["get", "pods", "-A"]),
        "spec.nodeName field selector",
    );
    let listed = ok(kubectl_as(
        &n1,
        &[
            "get",
            "pods",
            "-A",
            "--field-selector",
            "spec.nodeName=n1",
            "-o",
            "name",
        ],
    ));
    assert_eq!(listed.trim(), "pod/on-n1");

    // Everything else the system:node role grants, and no more.
    ok(kubectl_as(&n1, &["get", "services", "-A"]));
    forbidden(
        kubectl_as(&n1, &["get", "deployments"]),
        "cannot list resource \"deployments\"",
    );

    // The review APIs answer as the chain does.
    let can_i = |what: &str| {
        let out = s.kubectl(&[
            "auth",
            "can-i",
            "get",
            what,
            "--as",
            "system:node:n1",
            "--as-group",
            "system:nodes",
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(can_i("secret/for-n1"), "yes");
    assert_eq!(can_i("secret/unused"), format!("no - {unrelated}"));
    assert_eq!(can_i("node/n2"), "yes");
    assert_eq!(
        ok(kubectl_as(&n1, &["auth", "can-i", "get", "secret/for-n1"])).trim(),
        "yes"
    );

    // A deleted pod no longer grants its Secret.
    ok(s.kubectl(&["delete", "pod", "on-n1", "--grace-period=0", "--force"]));
    wait_for(
        Duration::from_secs(10),
        "secret for-n1 to be refused to n1",
        || {
            Ok(!kubectl_as(&n1, &["get", "secret", "for-n1"])
                .status
                .success())
        },
    )
    .unwrap();
    forbidden(kubectl_as(&n1, &["get", "secret", "for-n1"]), unrelated);
}

/// `ekube server` runs each controller as its own ServiceAccount, as kubeadm's
/// controller-manager does: without its role's binding the ReplicaSet controller is refused
/// as `system:serviceaccount:kube-system:replicaset-controller` (the admin it ran as before
/// would not be), and with the binding back it creates the pods.
#[test]
fn controllers_act_as_their_own_service_accounts() {
    let s = ServerProcess::start(&[]).unwrap();
    let sa = "system:serviceaccount:kube-system:replicaset-controller";
    let binding = "system:controller:replicaset-controller";
    let can_create_pods = || {
        let out = s.kubectl(&["auth", "can-i", "create", "pods", "--as", sa]);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    wait_for(Duration::from_secs(10), "the bootstrap policy", || {
        Ok(can_create_pods())
    })
    .unwrap();
    // Its role unbound, the ServiceAccount may only record events (to tell what happened).
    ok(s.kubectl(&["delete", "clusterrolebinding", binding]));
    ok(s.kubectl(&[
        "create",
        "clusterrole",
        "who-events",
        "--verb=create",
        "--resource=events",
    ]));
    ok(s.kubectl(&[
        "create",
        "clusterrolebinding",
        "who-events",
        "--clusterrole=who-events",
        "--serviceaccount=kube-system:replicaset-controller",
    ]));
    wait_for(Duration::from_secs(10), "the unbound role to apply", || {
        Ok(!can_create_pods())
    })
    .unwrap();

    let rs = r#"{"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "who", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "who"}},
          "template": {"metadata": {"labels": {"app": "who"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}"#;
    ok(s.kubectl_stdin(&["create", "-f", "-"], Some(rs)));
    let refused = format!(r#"User "{sa}" cannot create resource "pods""#);
    wait_for(
        Duration::from_secs(20),
        "a FailedCreate event naming the controller's ServiceAccount",
        || {
            let events = ok(s.kubectl(&[
                "get",
                "events",
                "--field-selector",
                "reason=FailedCreate",
                "-o",
                "jsonpath={.items[*].message}",
            ]));
            Ok(events.contains(&refused))
        },
    )
    .unwrap();
    assert_eq!(
        ok(s.kubectl(&["get", "pods", "-l", "app=who", "-o", "name"])).trim(),
        "",
        "no pod may be created without the controller's binding"
    );

    ok(s.kubectl(&[
        "create",
        "clusterrolebinding",
        binding,
        "--clusterrole",
        binding,
        "--serviceaccount",
        "kube-system:replicaset-controller",
    ]));
    wait_for(Duration::from_secs(10), "the binding to apply", || {
        Ok(can_create_pods())
    })
    .unwrap();
    // A change of the ReplicaSet makes the controller try again at once.
    ok(s.kubectl(&["scale", "replicaset", "who", "--replicas", "2"]));
    wait_for(Duration::from_secs(20), "the ReplicaSet's 2 pods", || {
        let pods = ok(s.kubectl(&["get", "pods", "-l", "app=who", "-o", "name"]));
        Ok(pods.lines().count() == 2)
    })
    .unwrap();
}
