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
    get_pods_with(&s, "sa", &token).expect("the ServiceAccount token authenticates");
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
    get_pods_with(&s, "boot", "abcdef.0123456789abcdef")
        .expect("a valid bootstrap token authenticates");
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
