//! The admission chain end to end with the real kubectl against `ekube server` on loopback
//! (apiserver, controllers, scheduler; no kubelet): ResourceQuota refusing a create over
//! `spec.hard` in upstream's words while the quota controller keeps `kubectl describe quota`
//! current, LimitRange defaults and bounds, NamespaceLifecycle, and NodeRestriction for a
//! `system:node:n1` client certificate whose authorization is granted outright (so what refuses
//! is admission, whatever the authorization mode).

use std::process::Output;
use std::time::Duration;

use ekube_tests::{ServerProcess, kubectl_as, ok, wait_for};
use serde_json::Value;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts `out` failed with `expected` in its error.
fn refused(out: Output, expected: &str) {
    assert!(!out.status.success(), "succeeded, expected: {expected}");
    let err = stderr(&out);
    assert!(err.contains(expected), "expected {expected:?} in:\n{err}");
}

fn apply(s: &ServerProcess, manifest: &str) -> Output {
    s.kubectl_stdin(&["apply", "-f", "-"], Some(manifest))
}

fn pod_manifest(ns: &str, name: &str, resources: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  containers:\n  - name: app\n    image: registry.example/app:1\n    resources: {resources}\n"
    )
}

/// The `Used` and `Hard` columns of `kubectl describe quota` for `resource`.
fn described_quota(
    s: &ServerProcess,
    ns: &str,
    name: &str,
    resource: &str,
) -> Option<(String, String)> {
    let out = ok(s.kubectl(&["describe", "quota", name, "-n", ns]));
    out.lines().find_map(
        |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
            [r, used, hard] if r == resource => Some((used.to_string(), hard.to_string())),
            _ => None,
        },
    )
}

fn wait_quota(s: &ServerProcess, ns: &str, used: &str, hard: &str) {
    let want = Some((used.to_string(), hard.to_string()));
    wait_for(
        Duration::from_secs(30),
        &format!("kubectl describe quota to show pods {used}/{hard}"),
        || Ok(described_quota(s, ns, "q", "pods") == want),
    )
    .unwrap();
}

#[test]
fn resource_quota_refuses_the_third_pod_and_describe_shows_usage() {
    let s = ServerProcess::start(&[]).unwrap();
    ok(s.kubectl(&["create", "namespace", "quota"]));
    ok(s.kubectl(&["create", "quota", "q", "--hard=pods=2", "-n", "quota"]));
    wait_quota(&s, "quota", "0", "2");
    for name in ["p1", "p2"] {
        ok(apply(&s, &pod_manifest("quota", name, "{}")));
    }
    refused(
        apply(&s, &pod_manifest("quota", "p3", "{}")),
        "pods \"p3\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2",
    );
    let pods = ok(s.kubectl(&["get", "pods", "-n", "quota", "-o", "name"]));
    assert_eq!(pods.lines().collect::<Vec<_>>(), ["pod/p1", "pod/p2"]);
    wait_quota(&s, "quota", "2", "2");
    let listed = ok(s.kubectl(&["get", "quota", "-n", "quota"]));
    assert!(listed.contains("pods: 2/2"), "{listed}");

    // A deleted pod gives its share back, and the next create fits again.
    ok(s.kubectl(&["delete", "pod", "p1", "-n", "quota", "--wait=false"]));
    wait_quota(&s, "quota", "1", "2");
    ok(apply(&s, &pod_manifest("quota", "p3", "{}")));
    wait_quota(&s, "quota", "2", "2");
}

#[test]
fn limit_range_defaults_and_bounds_containers() {
    let s = ServerProcess::start(&[]).unwrap();
    ok(s.kubectl(&["create", "namespace", "limits"]));
    ok(apply(
        &s,
        "apiVersion: v1\nkind: LimitRange\nmetadata: {name: defaults, namespace: limits}\n\
         spec:\n  limits:\n  - type: Container\n    max: {cpu: '1'}\n    default: {cpu: 500m, memory: 128Mi}\n    defaultRequest: {cpu: 100m, memory: 64Mi}\n",
    ));
    ok(apply(&s, &pod_manifest("limits", "web", "{}")));
    let pod: Value = serde_json::from_str(&ok(
        s.kubectl(&["get", "pod", "web", "-n", "limits", "-o", "json"])
    ))
    .unwrap();
    let resources = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"]["cpu"], "100m", "{resources}");
    assert_eq!(resources["requests"]["memory"], "64Mi", "{resources}");
    assert_eq!(resources["limits"]["cpu"], "500m", "{resources}");
    assert_eq!(pod["status"]["qosClass"], "Burstable");
    assert_eq!(
        pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app"
    );
    refused(
        apply(&s, &pod_manifest("limits", "big", "{limits: {cpu: '2'}}")),
        "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2",
    );
    refused(
        s.kubectl(&["get", "pod", "big", "-n", "limits"]),
        "NotFound",
    );
}

#[test]
fn namespace_lifecycle_guards_terminating_and_system_namespaces() {
    let s = ServerProcess::start(&[]).unwrap();
    ok(s.kubectl(&["create", "namespace", "doomed"]));
    // A finalizer nobody removes keeps the namespace terminating for the rest of the test.
    ok(apply(
        &s,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, namespace: doomed, finalizers: [example.com/hold]}\n",
    ));
    ok(s.kubectl(&["delete", "namespace", "doomed", "--wait=false"]));
    refused(
        s.kubectl(&["create", "configmap", "late", "-n", "doomed"]),
        "configmaps \"late\" is forbidden: unable to create new content in namespace doomed because it is being terminated",
    );
    refused(
        s.kubectl(&["create", "configmap", "nowhere", "-n", "missing"]),
        "namespaces \"missing\" not found",
    );
    refused(
        s.kubectl(&["delete", "ns", "kube-system"]),
        "namespaces \"kube-system\" is forbidden: this namespace may not be deleted",
    );
    ok(s.kubectl(&["get", "ns", "kube-system"]));
}

#[test]
fn node_restriction_keeps_a_kubelet_to_its_own_node() {
    let s = ServerProcess::start(&[]).unwrap();
    for node in ["n1", "n2"] {
        ok(apply(
            &s,
            &format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {node}}}\n"),
        ));
    }
    // Authorization lets the node do anything: only admission stands in its way.
    ok(s.kubectl(&[
        "create",
        "clusterrolebinding",
        "n1-everything",
        "--clusterrole=cluster-admin",
        "--user=system:node:n1",
    ]));
    let n1 = s
        .user_kubeconfig("system:node:n1", &["system:nodes"])
        .unwrap();
    let as_n1 = |args: &[&str]| kubectl_as(&n1, args);
    wait_for(
        Duration::from_secs(10),
        "the binding of system:node:n1 to apply",
        || {
            Ok(
                String::from_utf8_lossy(&as_n1(&["auth", "can-i", "patch", "nodes"]).stdout).trim()
                    == "yes",
            )
        },
    )
    .unwrap();

    refused(
        as_n1(&["label", "node", "n2", "team=a"]),
        "nodes \"n2\" is forbidden: node \"n1\" is not allowed to modify node \"n2\"",
    );
    refused(
        as_n1(&["label", "node", "n1", "node-restriction.kubernetes.io/x=y"]),
        "nodes \"n1\" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/x",
    );
    ok(as_n1(&[
        "label",
        "node",
        "n1",
        "node.kubernetes.io/pool=a",
        "team=a",
    ]));
    refused(
        as_n1(&["delete", "node", "n2"]),
        "node \"n1\" is not allowed to modify node \"n2\"",
    );
    refused(
        as_n1(&["run", "web", "--image=registry.example/app:1"]),
        "pods \"web\" is forbidden: pod does not have \"kubernetes.io/config.mirror\" annotation, node \"n1\" can only create mirror pods",
    );
    // The same writes by the administrator pass.
    ok(s.kubectl(&["label", "node", "n2", "node-restriction.kubernetes.io/x=y"]));
    let labels = ok(s.kubectl(&["get", "node", "n1", "-o", "jsonpath={.metadata.labels}"]));
    assert!(
        labels.contains("\"node.kubernetes.io/pool\":\"a\""),
        "{labels}"
    );
}

/// PodSecurity with the real kubectl: `restricted` refuses a privileged pod in upstream's words,
/// a `warn` level prints kubectl's `Warning:` for a Deployment without refusing it, a bad label
/// value is refused, and tightening `enforce` over running violators names them (the pod made
/// here, and the Deployment's own pod once its controller created it: `(and 1 other pods)`).
#[test]
fn pod_security_enforces_warns_and_names_existing_violators() {
    let s = ServerProcess::start(&[]).unwrap();
    ok(s.kubectl(&["create", "namespace", "secure"]));
    ok(s.kubectl(&[
        "label",
        "namespace",
        "secure",
        "pod-security.kubernetes.io/enforce=restricted",
    ]));
    let privileged = "apiVersion: v1\nkind: Pod\nmetadata: {name: root, namespace: secure}\n\
        spec:\n  containers:\n  - name: app\n    image: registry.example/app:1\n    \
        securityContext: {privileged: true}\n";
    refused(
        apply(&s, privileged),
        "pods \"root\" is forbidden: violates PodSecurity \"restricted:latest\": privileged \
         (container \"app\" must not set securityContext.privileged=true), \
         allowPrivilegeEscalation != false (container \"app\" must set \
         securityContext.allowPrivilegeEscalation=false)",
    );
    assert!(
        !s.kubectl(&["get", "pod", "root", "-n", "secure"])
            .status
            .success()
    );

    ok(s.kubectl(&["create", "namespace", "warned"]));
    ok(s.kubectl(&[
        "label",
        "namespace",
        "warned",
        "pod-security.kubernetes.io/warn=baseline",
    ]));
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: warned}\n\
        spec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    \
        spec:\n      hostNetwork: true\n      containers: [{name: app, image: registry.example/app:1}]\n";
    let out = apply(&s, deployment);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "Warning: would violate PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true)"
        ),
        "{}",
        stderr(&out)
    );

    refused(
        s.kubectl(&[
            "label",
            "namespace",
            "warned",
            "pod-security.kubernetes.io/enforce=strict",
        ]),
        "metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: \"strict\": \
         must be one of privileged, baseline, restricted",
    );

    let host_pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: hostnet, namespace: warned}\n\
        spec:\n  hostNetwork: true\n  containers: [{name: app, image: registry.example/app:1}]\n";
    let out = apply(&s, host_pod);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s.kubectl(&[
        "label",
        "namespace",
        "warned",
        "pod-security.kubernetes.io/enforce=baseline",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "Warning: existing pods in namespace \"warned\" violate the new PodSecurity enforce level \"baseline:latest\""
        ) && err.lines().any(|l| l.starts_with("Warning: hostnet")
            && l.ends_with(": host namespaces")),
        "{err}"
    );
}
