//! Bootstrap tokens end to end against a loopback `ekube server`: `kube-public/cluster-info`
//! exists from the start and anyone may read it; `ekube token create --print-join-command`
//! stores the Secret kubeadm would and prints the CA pin of the cluster; the bootstrap signer
//! signs `cluster-info` with the token and takes the signature away when `ekube token delete`
//! removes it; the token cleaner deletes a token past its TTL, and its signature goes too.

use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine;
use ekube_api::bootstrap::{self, Token};
use ekube_tests::{ServerProcess, anonymous, ekube_bin, ok, stderr, wait_for};
use serde_json::Value;

/// `ekube token …` with the server's admin kubeconfig.
fn ekube_token(s: &ServerProcess, args: &[&str]) -> Output {
    Command::new(ekube_bin())
        .arg("token")
        .args(args)
        .arg("--kubeconfig")
        .arg(s.kubeconfig())
        .output()
        .unwrap()
}

const CLUSTER_INFO_PATH: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";

/// `cluster-info`'s data, read anonymously as a joining node reads it.
fn cluster_info(s: &ServerProcess) -> serde_json::Map<String, Value> {
    let (code, body) = anonymous(s.port, CLUSTER_INFO_PATH);
    assert_eq!(code, 200, "anonymous GET of cluster-info: {body}");
    let cm: Value = serde_json::from_str(&body).unwrap();
    cm["data"].as_object().cloned().unwrap_or_default()
}

fn secret_exists(s: &ServerProcess, id: &str) -> bool {
    let out = s.kubectl(&[
        "get",
        "secret",
        "-n",
        "kube-system",
        &bootstrap::secret_name(id),
    ]);
    if !out.status.success() {
        assert!(stderr(&out).contains("NotFound"), "{}", stderr(&out));
    }
    out.status.success()
}

/// Waits until `cluster-info` carries (or no longer carries) the signature of `id`.
fn wait_signature(s: &ServerProcess, id: &str, present: bool) -> serde_json::Map<String, Value> {
    let key = format!("{}{id}", bootstrap::JWS_PREFIX);
    let mut data = Default::default();
    wait_for(
        Duration::from_secs(15),
        &format!(
            "cluster-info to {} {key}",
            if present { "carry" } else { "lose" }
        ),
        || {
            data = cluster_info(s);
            Ok(data.contains_key(&key) == present)
        },
    )
    .unwrap();
    data
}

#[test]
fn tokens_sign_cluster_info_until_deleted_or_expired() {
    let s = ServerProcess::start(&[]).unwrap();
    let ca = ekube_apiserver::pki::Ca::load_or_create(&s.dir.join("pki"))
        .unwrap()
        .cert_pem;

    // cluster-info is there from the first start, in kubeadm's shape, for anyone to read;
    // other ConfigMaps of kube-public are not.
    let data = cluster_info(&s);
    let kubeconfig = data[bootstrap::KUBECONFIG_KEY]
        .as_str()
        .unwrap()
        .to_string();
    let parsed = kube::config::Kubeconfig::from_yaml(&kubeconfig).unwrap();
    let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
    assert_eq!(
        cluster.server.as_deref(),
        Some(format!("https://127.0.0.1:{}", s.port).as_str())
    );
    let ca_data = base64::engine::general_purpose::STANDARD
        .decode(cluster.certificate_authority_data.as_ref().unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(ca_data).unwrap(), ca);
    assert_eq!(
        anonymous(s.port, "/api/v1/namespaces/kube-public/configmaps").0,
        403
    );

    // `generate` stores nothing and prints a token.
    let generated = ok(ekube_token(&s, &["generate"]));
    Token::parse(generated.trim()).unwrap();

    // create: the Secret as kubeadm writes it, the join command with this cluster's CA pin.
    let out = ok(ekube_token(
        &s,
        &[
            "create",
            "--print-join-command",
            "--description",
            "e2e token",
        ],
    ));
    let words: Vec<&str> = out.split_whitespace().collect();
    let [
        "ekube",
        "join",
        endpoint,
        "--token",
        token,
        "--discovery-token-ca-cert-hash",
        hash,
    ] = words[..]
    else {
        panic!("not a join command: {out}");
    };
    assert_eq!(endpoint, format!("127.0.0.1:{}", s.port));
    assert_eq!(hash, bootstrap::ca_cert_hash(ca.as_bytes()).unwrap());
    let token = Token::parse(token).unwrap();
    let id = token.id.as_str();
    let secret: Value = serde_json::from_str(&ok(s.kubectl(&[
        "get",
        "secret",
        "-n",
        "kube-system",
        &bootstrap::secret_name(id),
        "-o",
        "json",
    ])))
    .unwrap();
    assert_eq!(secret["type"], bootstrap::SECRET_TYPE);
    let stored = bootstrap::secret_data(&secret);
    assert_eq!(stored["token-secret"], token.secret);
    assert_eq!(stored["usage-bootstrap-signing"], "true");
    assert_eq!(stored["description"], "e2e token");
    assert!(stored.contains_key("expiration"));

    // The signer signs cluster-info with it.
    let data = wait_signature(&s, id, true);
    let jws = data[&format!("{}{id}", bootstrap::JWS_PREFIX)]
        .as_str()
        .unwrap();
    bootstrap::verify_detached(jws, &kubeconfig, &token).unwrap();

    // The same id again is refused.
    let again = ekube_token(&s, &["create", &token.to_string()]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains(&format!("a token with id \"{id}\" already exists")),
        "{}",
        stderr(&again)
    );

    // list shows it in kubeadm's columns.
    let list = ok(ekube_token(&s, &["list"]));
    let header = list.lines().next().unwrap();
    let columns: Vec<&str> = header
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        columns,
        [
            "TOKEN",
            "TTL",
            "EXPIRES",
            "USAGES",
            "DESCRIPTION",
            "EXTRA GROUPS"
        ]
    );
    let line = list
        .lines()
        .find(|l| l.starts_with(&token.to_string()))
        .unwrap_or_else(|| panic!("{token} not listed:\n{list}"));
    for cell in [
        "23h",
        "authentication,signing",
        "e2e token",
        "system:bootstrappers:kubeadm:default-node-token",
    ] {
        assert!(line.contains(cell), "{cell:?} missing in {line:?}");
    }

    // delete (by the whole token) removes the Secret, then the signature.
    let deleted = ok(ekube_token(&s, &["delete", &token.to_string()]));
    assert_eq!(deleted.trim(), format!("bootstrap token \"{id}\" deleted"));
    assert!(!secret_exists(&s, id));
    wait_signature(&s, id, false);
    let gone = ekube_token(&s, &["delete", id]);
    assert!(!gone.status.success());
    assert!(
        stderr(&gone).contains(&format!("bootstrap token \"{id}\" not found")),
        "{}",
        stderr(&gone)
    );

    // A token with a short TTL is deleted by the token cleaner, and its signature goes.
    let short = ok(ekube_token(&s, &["create", "--ttl", "2s"]));
    let short = Token::parse(short.trim()).unwrap();
    wait_for(
        Duration::from_secs(15),
        "the token cleaner to delete the expired token",
        || Ok(!secret_exists(&s, &short.id)),
    )
    .unwrap();
    let data = wait_signature(&s, &short.id, false);
    assert!(
        !data.keys().any(|k| k.starts_with(bootstrap::JWS_PREFIX)),
        "signatures left: {data:?}"
    );
    assert!(!ok(ekube_token(&s, &["list"])).contains(&short.id));
}
