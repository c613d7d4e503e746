//! The storage API of one `ekube server`, driven with the real kubectl: StorageClasses are
//! served and printed as upstream prints them (`sc`, ` (default)`), a claim without a class
//! gets the default one and the `kubernetes.io/pvc-protection` finalizer, a volume gets
//! `kubernetes.io/pv-protection`, a volume with a bad node affinity is refused with 422 naming
//! the field, and growing a bound claim is refused unless its class allows expansion.
//!
//! No node and no storage controller runs (the controller-manager runs the namespace
//! controller only, and the `local-storage` add-on is disabled): every status here is the
//! test's own, so what is checked is the apiserver alone.

use anyhow::{Context, Result, ensure};
use ekube_tests::{ServerProcess, ok, stderr};
use serde_json::Value;

fn server() -> Result<ServerProcess> {
    ServerProcess::start(&[
        "--disable=local-storage",
        "--disable=coredns",
        "--kube-controller-manager-arg=controllers=namespace",
    ])
}

fn json_of(out: std::process::Output) -> Result<Value> {
    serde_json::from_str(&ok(out)).context("kubectl printed JSON")
}

const CLASSES: &str = "apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: e2e-default
  annotations: {storageclass.kubernetes.io/is-default-class: \"true\"}
provisioner: example.com/external
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: e2e-grows}
provisioner: example.com/external
allowVolumeExpansion: true
";

fn claim(name: &str, class: Option<&str>) -> String {
    let class = class.map_or(String::new(), |c| format!("  storageClassName: {c}\n"));
    format!(
        "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {name}}}
spec:
{class}  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 1Gi}}}}
"
    )
}

fn volume(operator: &str) -> String {
    format!(
        "apiVersion: v1
kind: PersistentVolume
metadata: {{name: local-1}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  local: {{path: /mnt/disk1}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {{key: kubernetes.io/hostname, operator: {operator}, values: [n1]}}
"
    )
}

/// Marks claim `name` Bound with 1Gi through its status, as the binder would.
fn bind(s: &ServerProcess, name: &str) {
    ok(s.kubectl(&[
        "patch",
        "pvc",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Bound","capacity":{"storage":"1Gi"},"accessModes":["ReadWriteOnce"]}}"#,
    ]));
}

/// Asks claim `name` for 2Gi.
fn grow(s: &ServerProcess, name: &str) -> std::process::Output {
    s.kubectl(&[
        "patch",
        "pvc",
        name,
        "--type=merge",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#,
    ])
}

#[test]
fn storage_classes_claims_and_volumes_through_kubectl() -> Result<()> {
    let s = server()?;

    ok(s.kubectl_stdin(&["apply", "-f", "-"], Some(CLASSES)));
    let table = ok(s.kubectl(&["get", "sc"]));
    let header = table.lines().next().unwrap_or_default();
    for column in [
        "NAME",
        "PROVISIONER",
        "RECLAIMPOLICY",
        "VOLUMEBINDINGMODE",
        "ALLOWVOLUMEEXPANSION",
        "AGE",
    ] {
        ensure!(header.contains(column), "no {column} column in:\n{table}");
    }
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .with_context(|| format!("no {name} row in:\n{table}"))
    };
    ensure!(
        row("e2e-default")?[..6]
            == [
                "e2e-default",
                "(default)",
                "example.com/external",
                "Delete",
                "WaitForFirstConsumer",
                "false"
            ],
        "default class row:\n{table}"
    );
    ensure!(
        row("e2e-grows")?[..5]
            == [
                "e2e-grows",
                "example.com/external",
                "Delete",
                "Immediate",
                "true"
            ],
        "expanding class row:\n{table}"
    );

    // A claim without a class gets the default one and the protection finalizer.
    ok(s.kubectl_stdin(&["apply", "-f", "-"], Some(&claim("data", None))));
    let pvc = json_of(s.kubectl(&["get", "pvc", "data", "-o", "json"]))?;
    ensure!(
        pvc["spec"]["storageClassName"] == "e2e-default",
        "class of a claim without one: {}",
        pvc["spec"]
    );
    ensure!(
        pvc["metadata"]["finalizers"] == serde_json::json!(["kubernetes.io/pvc-protection"]),
        "finalizers: {}",
        pvc["metadata"]
    );

    // A volume whose node affinity has a bad operator: 422, naming the field.
    let out = s.kubectl_stdin(&["create", "-v=6", "-f", "-"], Some(&volume("Near")));
    let err = stderr(&out);
    ensure!(!out.status.success(), "a bad volume was created:\n{err}");
    ensure!(
        err.contains("422 Unprocessable Entity"),
        "not refused with 422:\n{err}"
    );
    ensure!(
        err.contains("The PersistentVolume \"local-1\" is invalid: spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].operator: Invalid value: \"Near\": not a valid selector operator"),
        "refusal does not name the field:\n{err}"
    );
    ok(s.kubectl_stdin(&["create", "-f", "-"], Some(&volume("In"))));
    let pv = json_of(s.kubectl(&["get", "pv", "local-1", "-o", "json"]))?;
    ensure!(
        pv["metadata"]["finalizers"] == serde_json::json!(["kubernetes.io/pv-protection"])
            && pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain",
        "volume as stored: {pv}"
    );

    // Growing a claim: refused while it is unbound (its spec is fixed), refused when bound to
    // a class without expansion, accepted for a class that allows it.
    let out = grow(&s, "data");
    let err = stderr(&out);
    ensure!(
        !out.status.success()
            && err.contains("spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"),
        "growing an unbound claim:\n{err}"
    );
    bind(&s, "data");
    let out = grow(&s, "data");
    let err = stderr(&out);
    ensure!(
        !out.status.success()
            && err.contains("Error from server (Forbidden): persistentvolumeclaims \"data\" is forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"),
        "growing a bound claim of a class without expansion:\n{err}"
    );
    ok(s.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&claim("grows", Some("e2e-grows"))),
    ));
    bind(&s, "grows");
    ok(grow(&s, "grows"));
    let grown = json_of(s.kubectl(&["get", "pvc", "grows", "-o", "json"]))?;
    ensure!(
        grown["spec"]["resources"]["requests"]["storage"] == "2Gi",
        "claim after growing: {}",
        grown["spec"]
    );

    // A class's provisioner never changes.
    let out = s.kubectl(&[
        "patch",
        "sc",
        "e2e-grows",
        "--type=merge",
        "-p",
        r#"{"provisioner":"example.com/other"}"#,
    ]);
    let err = stderr(&out);
    ensure!(
        !out.status.success()
            && err.contains("provisioner: Forbidden: updates to provisioner are forbidden."),
        "changing a provisioner:\n{err}"
    );
    Ok(())
}
