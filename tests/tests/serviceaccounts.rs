//! ServiceAccount tokens, TokenReview and bootstrap tokens against a loopback server with the
//! real kubectl: `kubectl create token` gives a token that authenticates; a pod-bound token
//! dies with its pod; tokens of another key, malformed tokens and expired bootstrap tokens
//! get 401; pods get their ServiceAccount and token volume; every namespace gets the CA.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use ekube_tests::{ServerProcess, kubectl_bin, ok, wait_for};
use serde_json::{Value, json};

/// A kubeconfig for `server` that authenticates with `token` only (no client certificate, so
/// the token alone decides who is asking).
fn token_kubeconfig(s: &ServerProcess, name: &str, token: &str) -> std::path::PathBuf {
    let admin: Value =
        serde_yaml::from_str(&std::fs::read_to_string(s.kubeconfig()).unwrap()).unwrap();
    let mut config = admin.clone();
    config["users"] = json!([{"name": "token", "user": {"token": token}}]);
    config["contexts"][0]["context"]["user"] = json!("token");
    let path = s.dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}

fn kubectl_with(kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    Command::new(kubectl_bin())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env("HOME", kubeconfig.parent().unwrap())
        .stdin(Stdio::null())
        .output()
        .expect("running kubectl")
}

/// `kubectl get pods` with only `token`: Ok(stdout) or Err(stderr).
fn get_pods_with(s: &ServerProcess, name: &str, token: &str) -> Result<String, String> {
    let out = kubectl_with(&token_kubeconfig(s, name, token), &["get", "pods"]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn refused(result: Result<String, String>, what: &str) {
    match result {
        Err(e) => assert!(
            e.contains("Unauthorized")
                || e.contains("provide credentials")
                || e.contains("logged in"),
            "{what}: expected 401, got: {e}"
        ),
        Ok(out) => panic!("{what}: accepted: {out}"),
    }
}

fn review(s: &ServerProcess, token: &str) -> Value {
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}});
    let out = ok(s.kubectl_stdin(
        &["create", "-f", "-", "-o", "json"],
        Some(&review.to_string()),
    ));
    serde_json::from_str(&out).unwrap()
}

fn wait_default_sa(s: &ServerProcess) {
    wait_for(
        Duration::from_secs(20),
        "serviceaccount default/default",
        || {
            Ok(s.kubectl(&["get", "serviceaccount", "default"])
                .status
                .success())
        },
    )
    .unwrap();
}

#[test]
fn service_account_tokens_authenticate_until_their_pod_is_gone() {
    let s = ServerProcess::start(&[]).unwrap();
    wait_default_sa(&s);
    let discovery = ok(s.kubectl(&["get", "--raw", "/api/v1"]));
    assert!(discovery.contains("serviceaccounts/token"), "{discovery}");

    // kubectl create token → a JWT that authenticates as the ServiceAccount.
    let token = ok(s.kubectl(&["create", "token", "default"]))
        .trim()
        .to_string();
    assert_eq!(token.split('.').count(), 3, "{token}");
    // It authenticates, but RBAC grants the ServiceAccount nothing until a binding does.
    let err = get_pods_with(&s, "sa", &token).expect_err("a ServiceAccount may not list pods");
    assert!(
        err.contains(
            "User \"system:serviceaccount:default:default\" cannot list resource \"pods\""
        ),
        "{err}"
    );
    ok(s.kubectl(&[
        "create",
        "rolebinding",
        "default-view",
        "--clusterrole=view",
        "--serviceaccount=default:default",
    ]));
    wait_for(
        Duration::from_secs(10),
        "the binding to let the token list pods",
        || Ok(get_pods_with(&s, "sa", &token).is_ok()),
    )
    .unwrap();
    let r = review(&s, &token);
    assert_eq!(r["status"]["authenticated"], true, "{r}");
    assert_eq!(
        r["status"]["user"]["username"],
        "system:serviceaccount:default:default"
    );
    let groups = r["status"]["user"]["groups"].to_string();
    assert!(
        groups.contains("system:serviceaccounts:default"),
        "{groups}"
    );
    let sa = serde_json::from_str::<Value>(&ok(s.kubectl(&["get", "sa", "default", "-o", "json"])))
        .unwrap();
    assert_eq!(r["status"]["user"]["uid"], sa["metadata"]["uid"]);

    // Lifetimes outside [10 min, 2^32 s] are invalid.
    let short = s.kubectl(&["create", "token", "default", "--duration=5m"]);
    let err = String::from_utf8_lossy(&short.stderr);
    assert!(
        !short.status.success() && err.contains("10 minutes"),
        "{err}"
    );

    // A token bound to a pod is refused once the pod is deleted.
    ok(s.kubectl(&[
        "run",
        "web",
        "--image=registry.invalid/web:1",
        "--restart=Never",
    ]));
    let pod: Value =
        serde_json::from_str(&ok(s.kubectl(&["get", "pod", "web", "-o", "json"]))).unwrap();
    let bound = ok(s.kubectl(&[
        "create",
        "token",
        "default",
        "--bound-object-kind=Pod",
        "--bound-object-name=web",
    ]))
    .trim()
    .to_string();
    let r = review(&s, &bound);
    assert_eq!(
        r["status"]["user"]["extra"]["authentication.kubernetes.io/pod-uid"],
        json!([pod["metadata"]["uid"]]),
        "{r}"
    );
    get_pods_with(&s, "bound", &bound).expect("the pod-bound token authenticates");
    ok(s.kubectl(&[
        "delete",
        "pod",
        "web",
        "--grace-period=0",
        "--force",
        "--wait=true",
    ]));
    refused(get_pods_with(&s, "bound", &bound), "token of a deleted pod");
    let r = review(&s, &bound);
    assert_eq!(r["status"]["authenticated"], false, "{r}");
    assert!(
        r["status"]["error"]
            .as_str()
            .unwrap()
            .contains("pods default/web"),
        "{r}"
    );

    // Another server's token (same issuer, another key) and malformed tokens are refused.
    let other = ServerProcess::start(&[]).unwrap();
    wait_default_sa(&other);
    let foreign = ok(other.kubectl(&["create", "token", "default"]))
        .trim()
        .to_string();
    refused(
        get_pods_with(&s, "foreign", &foreign),
        "token signed by another key",
    );
    let mut forged: Vec<&str> = token.split('.').collect();
    forged[2] = "AAAA";
    refused(
        get_pods_with(&s, "forged", &forged.join(".")),
        "token with a bad signature",
    );
    refused(
        get_pods_with(&s, "malformed", "eyJhbGciOiJSUzI1NiJ9.e30"),
        "malformed JWT",
    );
    refused(get_pods_with(&s, "garbage", "not-a-token"), "garbage");
    // The original token still works.
    get_pods_with(&s, "sa", &token).expect("the first token still authenticates");
}

fn bootstrap_secret(id: &str, expiration: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: bootstrap-token-{id}
  namespace: kube-system
type: bootstrap.kubernetes.io/token
stringData:
  token-id: "{id}"
  token-secret: "0123456789abcdef"
  usage-bootstrap-authentication: "true"
  auth-extra-groups: "system:bootstrappers:kubeadm:default-node-token"
  expiration: "{expiration}"
"#
    )
}

#[test]
fn bootstrap_tokens_authenticate_until_they_expire_and_pods_get_their_account() {
    let s = ServerProcess::start(&[]).unwrap();
    ok(s.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&bootstrap_secret("abcdef", "2999-01-01T00:00:00Z")),
    ));
    ok(s.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&bootstrap_secret("expird", "2020-01-01T00:00:00Z")),
    ));
    // A valid bootstrap token authenticates (and RBAC gives system:bootstrappers nothing here).
    let whoami = kubectl_with(
        &token_kubeconfig(&s, "boot", "abcdef.0123456789abcdef"),
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&whoami.stdout),
        "system:bootstrap:abcdef",
        "{}",
        String::from_utf8_lossy(&whoami.stderr)
    );
    let r = review(&s, "abcdef.0123456789abcdef");
    assert_eq!(
        r["status"]["user"]["username"], "system:bootstrap:abcdef",
        "{r}"
    );
    assert!(
        r["status"]["user"]["groups"]
            .to_string()
            .contains("system:bootstrappers:kubeadm:default-node-token"),
        "{r}"
    );
    refused(
        get_pods_with(&s, "expired", "expird.0123456789abcdef"),
        "expired bootstrap token",
    );
    refused(
        get_pods_with(&s, "wrong", "abcdef.0123456789abcdee"),
        "wrong bootstrap secret",
    );
    // A malformed bootstrap-token Secret is invalid and not stored.
    let bad =
        bootstrap_secret("abcdef", "2999-01-01T00:00:00Z").replace("0123456789abcdef", "short");
    let out = s.kubectl_stdin(
        &["create", "-f", "-"],
        Some(&bad.replace("bootstrap-token-abcdef", "bootstrap-token-zzzzzz")),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("token-secret") && err.contains("invalid"),
        "{err}"
    );
    assert!(
        !s.kubectl(&[
            "get",
            "secret",
            "-n",
            "kube-system",
            "bootstrap-token-zzzzzz"
        ])
        .status
        .success()
    );

    // Admission: the default ServiceAccount and its token volume; a missing one is refused.
    ok(s.kubectl(&[
        "run",
        "web",
        "--image=registry.invalid/web:1",
        "--restart=Never",
    ]));
    let pod: Value =
        serde_json::from_str(&ok(s.kubectl(&["get", "pod", "web", "-o", "json"]))).unwrap();
    assert_eq!(pod["spec"]["serviceAccountName"], "default");
    let volume = &pod["spec"]["volumes"][0];
    assert!(
        volume["name"]
            .as_str()
            .unwrap()
            .starts_with("kube-api-access-"),
        "{volume}"
    );
    assert_eq!(
        pod["spec"]["containers"][0]["volumeMounts"][0]["mountPath"],
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );
    let out = s.kubectl(&[
        "run",
        "lost",
        "--image=x",
        "--overrides={\"spec\":{\"serviceAccountName\":\"nobody\"}}",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("forbidden") && err.contains("service account default/nobody"),
        "{err}"
    );

    // The cluster CA is published in every namespace and restored when deleted.
    let ca = std::fs::read_to_string(s.dir.join("pki/ca.crt")).unwrap();
    let published = || {
        let out = s.kubectl(&[
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ]);
        out.status.success() && String::from_utf8_lossy(&out.stdout) == ca
    };
    wait_for(
        Duration::from_secs(20),
        "kube-root-ca.crt in default",
        || Ok(published()),
    )
    .unwrap();
    ok(s.kubectl(&["delete", "configmap", "kube-root-ca.crt"]));
    wait_for(Duration::from_secs(20), "kube-root-ca.crt restored", || {
        Ok(published())
    })
    .unwrap();
}

/// A CertificateSigningRequest manifest for `subject` with `sans`, signed by a new key.
fn csr(
    name: &str,
    signer: &str,
    cn: &str,
    orgs: &[&str],
    sans: &[&str],
) -> (String, rcgen::KeyPair) {
    use base64::Engine;
    let (pem, key) = ekube_api::csr::testing::request(cn, orgs, sans);
    let manifest = json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {"request": base64::engine::general_purpose::STANDARD.encode(pem), "signerName": signer,
            "usages": ["digital signature", "client auth"], "expirationSeconds": 3600},
    });
    (manifest.to_string(), key)
}

fn csr_status(s: &ServerProcess, name: &str) -> Value {
    let out = ok(s.kubectl(&["get", "csr", name, "-o", "json"]));
    serde_json::from_str::<Value>(&out).unwrap()["status"].clone()
}

#[test]
fn approved_csrs_are_signed_by_the_cluster_ca_and_bad_ones_fail() {
    use base64::Engine;
    let s = ServerProcess::start(&[]).unwrap();
    let (manifest, key) = csr(
        "jane",
        "kubernetes.io/kube-apiserver-client",
        "jane",
        &["dev"],
        &[],
    );
    ok(s.kubectl_stdin(&["create", "-f", "-"], Some(&manifest)));
    assert!(
        csr_status(&s, "jane").get("certificate").is_none(),
        "signed before approval"
    );
    let approved = ok(s.kubectl(&["certificate", "approve", "jane"]));
    assert!(approved.contains("approved"), "{approved}");
    let status = csr_status(&s, "jane");
    assert_eq!(status["conditions"][0]["type"], "Approved", "{status}");
    let pem = base64::engine::general_purpose::STANDARD
        .decode(status["certificate"].as_str().expect("a certificate"))
        .unwrap();
    let pem = String::from_utf8(pem).unwrap();
    let issued = rcgen::CertificateParams::from_ca_cert_pem(&pem).unwrap();
    let dn: Vec<String> = issued
        .distinguished_name
        .iter()
        .map(|(t, v)| format!("{t:?}={v:?}"))
        .collect();
    assert!(
        dn.iter()
            .any(|d| d.contains("CommonName") && d.contains("jane")),
        "{dn:?}"
    );
    assert!(
        dn.iter()
            .any(|d| d.contains("OrganizationName") && d.contains("dev")),
        "{dn:?}"
    );
    let life = issued.not_after - time::OffsetDateTime::now_utc();
    assert!(
        life.whole_seconds() <= 3600 && life.whole_seconds() > 3000,
        "expirationSeconds not honoured: {life}"
    );

    // The certificate authenticates (signed by the cluster CA).
    let admin: Value =
        serde_yaml::from_str(&std::fs::read_to_string(s.kubeconfig()).unwrap()).unwrap();
    let mut config = admin.clone();
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    config["users"] = json!([{"name": "jane", "user": {"client-certificate-data": b64(&pem), "client-key-data": b64(&key.serialize_pem())}}]);
    config["contexts"][0]["context"]["user"] = json!("jane");
    let path = s.dir.join("jane.kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    let out = kubectl_with(
        &path,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "jane",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Created by server-side apply, a request records its requester as one created by POST
    // does: the admin, whatever the body claims.
    let (manifest, _) = csr(
        "applied",
        "kubernetes.io/kube-apiserver-client",
        "jane",
        &[],
        &[],
    );
    let mut claimed: Value = serde_json::from_str(&manifest).unwrap();
    claimed["spec"]["username"] = json!("mallory");
    claimed["spec"]["groups"] = json!(["system:nodes"]);
    let file = s.dir.join("applied-csr.json");
    std::fs::write(&file, claimed.to_string()).unwrap();
    ok(s.kubectl(&["apply", "--server-side", "-f", &file.display().to_string()]));
    let applied: Value =
        serde_json::from_str(&ok(s.kubectl(&["get", "csr", "applied", "-o", "json"]))).unwrap();
    assert_eq!(
        applied["spec"]["username"], "kubernetes-admin",
        "{}",
        applied["spec"]
    );
    assert!(
        applied["spec"]["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("system:masters")),
        "{}",
        applied["spec"]
    );

    // A client certificate with a SAN fails validation and gets no certificate.
    let (manifest, _) = csr(
        "san",
        "kubernetes.io/kube-apiserver-client",
        "jane",
        &[],
        &["jane.example.com"],
    );
    ok(s.kubectl_stdin(&["create", "-f", "-"], Some(&manifest)));
    ok(s.kubectl(&["certificate", "approve", "san"]));
    let status = csr_status(&s, "san");
    assert!(status.get("certificate").is_none(), "{status}");
    let failed = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .cloned()
        .unwrap_or_default();
    assert_eq!(failed["reason"], "SignerValidationFailure", "{status}");
    assert!(
        failed["message"]
            .as_str()
            .unwrap_or_default()
            .contains("subjectAltNames"),
        "{status}"
    );

    // The kubelet client signer wants system:node:<name> in system:nodes.
    let (manifest, _) = csr(
        "node",
        "kubernetes.io/kube-apiserver-client-kubelet",
        "mallory",
        &["system:nodes"],
        &[],
    );
    ok(s.kubectl_stdin(&["create", "-f", "-"], Some(&manifest)));
    ok(s.kubectl(&["certificate", "approve", "node"]));
    assert!(
        csr_status(&s, "node")["conditions"]
            .to_string()
            .contains("system:node:"),
        "bad kubelet CN accepted"
    );

    // Denied requests are never signed; a request that is no CSR is invalid.
    let (manifest, _) = csr(
        "denied",
        "kubernetes.io/kube-apiserver-client",
        "eve",
        &[],
        &[],
    );
    ok(s.kubectl_stdin(&["create", "-f", "-"], Some(&manifest)));
    ok(s.kubectl(&["certificate", "deny", "denied"]));
    let status = csr_status(&s, "denied");
    assert_eq!(status["conditions"][0]["type"], "Denied", "{status}");
    assert!(status.get("certificate").is_none());
    let mut bad: Value =
        serde_json::from_str(&csr("bad", "kubernetes.io/kube-apiserver-client", "x", &[], &[]).0)
            .unwrap();
    bad["spec"]["request"] = json!(b64("not a request"));
    let out = s.kubectl_stdin(&["create", "-f", "-"], Some(&bad.to_string()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("spec.request") && err.contains("invalid"),
        "{err}"
    );
    assert!(
        !s.kubectl(&["get", "csr", "bad"]).status.success(),
        "an invalid request was stored"
    );
}

/// Creates the CSR `manifest` as the user of `kubeconfig`.
fn create_csr_as(kubeconfig: &std::path::Path, manifest: &str) {
    let file = kubeconfig.with_extension("csr.json");
    std::fs::write(&file, manifest).unwrap();
    let out = kubectl_with(kubeconfig, &["create", "-f", &file.display().to_string()]);
    assert!(
        out.status.success(),
        "creating {manifest}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn node_client_requests_are_auto_approved_when_the_requester_may() {
    const KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";
    let s = ServerProcess::start(&[]).unwrap();
    ok(s.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&bootstrap_secret("abcdef", "2999-01-01T00:00:00Z")),
    ));
    // A bootstrap token outside kubeadm's node group, allowed to ask for certificates but
    // without the nodeclient binding.
    ok(s.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&bootstrap_secret("otherb", "2999-01-01T00:00:00Z").replace(
            "system:bootstrappers:kubeadm:default-node-token",
            "system:bootstrappers:other",
        )),
    ));
    ok(s.kubectl(&[
        "create",
        "clusterrolebinding",
        "other-bootstrap",
        "--clusterrole=system:node-bootstrapper",
        "--group=system:bootstrappers:other",
    ]));
    let boot = token_kubeconfig(&s, "boot", "abcdef.0123456789abcdef");
    let other = token_kubeconfig(&s, "other", "otherb.0123456789abcdef");
    let node7 = s
        .user_kubeconfig("system:node:n7", &["system:nodes"])
        .unwrap();
    // Creating CSRs is the Node authorizer's grant to nodes; RBAC stands in for it here.
    ok(s.kubectl(&[
        "create",
        "clusterrolebinding",
        "n7-csr",
        "--clusterrole=system:node-bootstrapper",
        "--user=system:node:n7",
    ]));

    // Requests that are not exactly a node's client certificate, or whose requester may not
    // have one approved, are created first.
    let sans = ["n9.example"];
    create_csr_as(
        &boot,
        &csr(
            "n9-san",
            KUBELET,
            "system:node:n9",
            &["system:nodes"],
            &sans,
        )
        .0,
    );
    create_csr_as(
        &boot,
        &csr("n9-cn", KUBELET, "n9", &["system:nodes"], &[]).0,
    );
    create_csr_as(
        &other,
        &csr("n8", KUBELET, "system:node:n8", &["system:nodes"], &[]).0,
    );
    // The client says who asked; the server records who did.
    let forged = csr("n9", KUBELET, "system:node:n9", &["system:nodes"], &[])
        .0
        .replace(
            "\"signerName\"",
            "\"username\":\"system:node:n9\",\"groups\":[\"system:masters\"],\"signerName\"",
        );
    create_csr_as(&boot, &forged);
    create_csr_as(
        &node7,
        &csr("n7", KUBELET, "system:node:n7", &["system:nodes"], &[]).0,
    );

    for (name, message) in [
        (
            "n9",
            "Auto approving kubelet client certificate after SubjectAccessReview.",
        ),
        (
            "n7",
            "Auto approving self kubelet client certificate after SubjectAccessReview.",
        ),
    ] {
        let mut status = Value::Null;
        wait_for(
            Duration::from_secs(30),
            &format!("csr {name} approved and signed"),
            || {
                status = csr_status(&s, name);
                Ok(status.get("certificate").is_some())
            },
        )
        .unwrap_or_else(|e| panic!("{e}: {status}"));
        let approved = &status["conditions"][0];
        assert_eq!(
            (&approved["type"], &approved["reason"], &approved["message"]),
            (&json!("Approved"), &json!("AutoApproved"), &json!(message)),
            "{status}"
        );
    }
    let spec: Value =
        serde_json::from_str(&ok(s.kubectl(&["get", "csr", "n9", "-o", "json"]))).unwrap();
    assert_eq!(spec["spec"]["username"], "system:bootstrap:abcdef");
    let groups = spec["spec"]["groups"].to_string();
    assert!(
        groups.contains("system:bootstrappers:kubeadm:default-node-token")
            && !groups.contains("system:masters"),
        "{groups}"
    );
    // The others stay pending (watched for a while: the controller may take them last).
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        for name in ["n9-san", "n9-cn", "n8"] {
            let status = csr_status(&s, name);
            assert!(
                status.get("conditions").is_none() && status.get("certificate").is_none(),
                "{name} was decided: {status}"
            );
        }
    }
}
