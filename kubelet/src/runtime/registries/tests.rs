//! registries.yaml: endpoint order, wildcard, rewrites, credentials, and refusals that name the
//! line and cause.

use super::*;

fn reference(s: &str) -> Reference {
    crate::runtime::reference::normalize(s).unwrap()
}

fn plan(yaml: &str, image: &str) -> Vec<(String, String, String)> {
    Registries::parse(yaml)
        .unwrap()
        .attempts(&reference(image), None)
        .into_iter()
        .map(|a| {
            let auth = match a.credential {
                Some(Credential::Basic(u, p)) => format!("{u}:{p}"),
                Some(Credential::IdentityToken(t)) => format!("token {t}"),
                _ => String::new(),
            };
            (a.endpoint.url(), a.reference.repository().to_owned(), auth)
        })
        .collect()
}

fn t(url: &str, repo: &str, auth: &str) -> (String, String, String) {
    (url.into(), repo.into(), auth.into())
}

const LAB: &str = r#"
mirrors:
  docker.io:
    endpoint:
      - "http://192.168.64.1:5000"
      - mirror.example.com:5443/v2
    rewrite:
      "^library/(.*)": "hub/$1"
      "^library/nginx$": "never/used"
  "*":
    endpoint: ["https://any.example.com"]
configs:
  mirror.example.com:5443:
    auth: {username: alice, password: s3cret}
  docker.io:
    auth: {auth: "Ym9iOnB3"}
  any.example.com:
    auth: {username: "<token>", identitytoken: refresh-me}
"#;

#[test]
fn mirrors_in_order_then_the_default_endpoint_unrewritten() {
    assert_eq!(
        plan(LAB, "nginx:alpine"),
        [
            t("http://192.168.64.1:5000", "hub/nginx", ""),
            t(
                "https://mirror.example.com:5443",
                "hub/nginx",
                "alice:s3cret"
            ),
            t("https://index.docker.io", "library/nginx", "bob:pw"),
        ]
    );
    // The wildcard serves registries without an entry; their own endpoint still comes last.
    assert_eq!(
        plan(LAB, "quay.io/x/y:1"),
        [
            t("https://any.example.com", "x/y", "token refresh-me"),
            t("https://quay.io", "x/y", ""),
        ]
    );
}

#[test]
fn requests_to_a_mirror_carry_the_original_registry() {
    let r = Registries::parse(LAB).unwrap();
    let a = &r.attempts(&reference("nginx:alpine"), None)[0];
    assert_eq!(a.reference.resolve_registry(), "192.168.64.1:5000");
    assert_eq!(a.reference.namespace(), Some("docker.io"));
    assert_eq!(a.reference.tag(), Some("alpine"));
    assert!(matches!(a.client_config().protocol, ClientProtocol::Http));
}

#[test]
fn no_file_means_the_registry_itself_with_pull_secrets() {
    let r = Registries::parse("").unwrap();
    let secret = Credential::Basic("u".to_owned(), "p".to_owned());
    let a = r.attempts(&reference("registry.local:5000/app"), Some(&secret));
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].endpoint.url(), "https://registry.local:5000");
    assert_eq!(a[0].credential.as_ref(), Some(&secret));
    let insecure = Registries {
        insecure: vec!["registry.local:5000".into()],
        ..r
    };
    let a = insecure.attempts(&reference("registry.local:5000/app"), None);
    assert_eq!(a[0].endpoint.url(), "http://registry.local:5000");
}

#[test]
fn malformed_files_are_refused_with_line_and_cause() {
    for (yaml, line, cause) in [
        (
            "mirrors:\n  docker.io:\n    endpoints: [x]\n",
            Some(3),
            "unknown field `endpoints`",
        ),
        (
            "mirrors:\n  docker.io:\n    endpoint: x\n",
            Some(3),
            "invalid type",
        ),
        ("mirrors: [\n", Some(1), "expected a map"),
        (
            "mirrors:\n\tdocker.io: {}\n",
            Some(2),
            "cannot start any token",
        ),
        (
            "mirrors:\n  docker.io:\n    endpoint: [\"ftp://m\"]\n",
            Some(2),
            "only http:// and https://",
        ),
        (
            "mirrors:\n  docker.io:\n    endpoint: [\"https://m/some/path\"]\n",
            Some(2),
            "a path other than /v2",
        ),
        (
            "mirrors:\n  docker.io:\n    rewrite:\n      \"(\": x\n",
            Some(4),
            "rewrite: regex parse error",
        ),
        (
            "configs:\n  m:\n    auth: {username: u}\n",
            Some(2),
            "auth needs either username and password",
        ),
        (
            "configs:\n  m:\n    auth: {auth: \"!!\"}\n",
            Some(2),
            "auth is not base64",
        ),
        (
            "configs:\n  m:\n    auth: {password: p, identitytoken: t}\n",
            Some(2),
            "or identitytoken",
        ),
        (
            "configs:\n  m:\n    tls: {cert_file: /nonexistent/c.pem, key_file: /k}\n",
            Some(2),
            "tls.cert_file /nonexistent/c.pem: No such file",
        ),
        (
            "configs:\n  m:\n    tls: {cert_file: /c}\n",
            Some(2),
            "tls.cert_file and tls.key_file go together",
        ),
        (
            "configs:\n  m:\n    tls: {ca_file: /nonexistent/ca.pem}\n",
            Some(2),
            "tls.ca_file /nonexistent/ca.pem",
        ),
    ] {
        let (l, reason) = Registries::parse(yaml).unwrap_err();
        assert_eq!(l, line, "{yaml}: {reason}");
        assert!(reason.contains(cause), "{yaml}: {reason}");
    }
}

#[test]
fn load_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registries.yaml");
    assert!(
        Registries::load(&path, vec![]).unwrap().mirrors.is_empty(),
        "a missing file is no configuration"
    );
    std::fs::write(&path, "mirrors:\n  docker.io:\n    endpoint: 5\n").unwrap();
    let e = Registries::load(&path, vec![]).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "registries config {}:3: mirrors.docker.io.endpoint: invalid type",
            path.display()
        )),
        "{e}"
    );
}

#[test]
fn the_lab_mirror_config_is_understood() {
    let r = Registries::parse(&ekube_lab::mirror_config(true)).unwrap();
    let urls = |image: &str| -> Vec<(String, String)> {
        r.attempts(&reference(image), None)
            .into_iter()
            .map(|a| (a.endpoint.url(), a.reference.repository().to_owned()))
            .collect()
    };
    assert_eq!(
        urls("nginx:alpine"),
        [
            ("http://192.168.64.1:5000".into(), "library/nginx".into()),
            ("https://index.docker.io".into(), "library/nginx".into()),
        ]
    );
    assert_eq!(
        urls("192.168.64.1:5001/team/busybox"),
        [
            ("http://192.168.64.1:5002".into(), "library/busybox".into()),
            ("http://192.168.64.1:5001".into(), "library/busybox".into()),
            ("https://192.168.64.1:5001".into(), "team/busybox".into()),
        ]
    );
}

#[test]
fn client_certificates_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let other = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["node".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    let cert = write("cert.pem", cert.pem());
    let key = write("key.pem", key.serialize_pem());
    let other = write("other.pem", other.serialize_pem());
    let yaml = |key: &str| {
        format!("configs:\n  m.example:\n    tls: {{cert_file: {cert}, key_file: {key}}}\n")
    };

    let r = Registries::parse(&yaml(&key)).unwrap();
    let a = r.attempts(&reference("m.example/app"), None);
    assert!(a[0].tls.has_identity());
    crate::runtime::install_crypto();
    a[0].tls
        .http_client(false)
        .expect("a client that presents the certificate");

    let (line, e) = Registries::parse(&yaml(&other)).unwrap_err();
    assert_eq!(line, Some(2));
    assert!(
        e.contains(&format!("tls.cert_file {cert} with tls.key_file {other}"))
            && e.contains("the key does not fit the certificate"),
        "{e}"
    );
    let (_, e) = Registries::parse(&yaml(&cert)).unwrap_err();
    assert!(e.contains("no private key"), "{e}");
}
