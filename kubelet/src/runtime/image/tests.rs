//! Image store tests: OCI archives import, and bad digests or blobs are refused with a clear
//! error before anything is written where a digest would point.

use super::*;
use crate::runtime::registries::{Credential, Registries};
use serde_json::json;

/// A tar of `files` (name, content), names written unchecked.
fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn descriptor(media_type: &str, data: &[u8]) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": BlobDigest::of(data), "size": data.len()})
}

/// The blobs of a one-layer image, manifest last; `edit` may spoil the manifest.
fn image_blobs(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<Vec<u8>> {
    let layer = tar_of(&[("hello".into(), b"world".to_vec())]);
    let config = serde_json::to_vec(&json!({"config": {"Cmd": ["sh"]}})).unwrap();
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &layer)],
    });
    edit(&mut manifest);
    vec![layer, config, serde_json::to_vec(&manifest).unwrap()]
}

/// An OCI layout archive of `blobs` (stored under their own digests unless `name` says
/// otherwise) whose index names the last blob, or `index_digest`.
fn archive(
    blobs: &[Vec<u8>],
    name: impl Fn(&[u8]) -> String,
    index_digest: Option<&str>,
) -> Vec<u8> {
    let manifest = blobs.last().unwrap();
    let digest = index_digest.map_or_else(|| BlobDigest::of(manifest).to_string(), str::to_owned);
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest,
        "size": manifest.len(),
        "annotations": {"io.containerd.image.name": "example.com/t:1"},
    }]});
    let mut files = vec![("index.json".to_owned(), serde_json::to_vec(&index).unwrap())];
    files.extend(blobs.iter().map(|b| (name(b), b.clone())));
    tar_of(&files)
}

fn own_name(blob: &[u8]) -> String {
    format!("blobs/sha256/{}", BlobDigest::of(blob).hex())
}

/// Imports `archive` into a fresh store inside a sandbox, asserting nothing appeared in the
/// sandbox beside the store; the store's answer and the sandbox.
async fn import(archive: &[u8]) -> (Result<Vec<String>>, tempfile::TempDir) {
    let sandbox = tempfile::tempdir().unwrap();
    let path = sandbox.path().join("image.tar");
    std::fs::write(&path, archive).unwrap();
    let store =
        ImageStore::open(&sandbox.path().join("store/root"), Registries::default()).unwrap();
    let result = store.import_archive(&path).await;
    let mut outside: Vec<_> = std::fs::read_dir(sandbox.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    outside.sort();
    assert_eq!(
        outside,
        ["image.tar", "store"],
        "files appeared beside the store"
    );
    let store_dir: Vec<_> = std::fs::read_dir(sandbox.path().join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(store_dir, ["root"], "files appeared beside the store");
    (result, sandbox)
}

#[tokio::test]
async fn archives_import_with_checked_digests() {
    let (tags, sandbox) = import(&archive(&image_blobs(|_| {}), own_name, None)).await;
    assert_eq!(tags.unwrap(), ["example.com/t:1"]);
    let store =
        ImageStore::open(&sandbox.path().join("store/root"), Registries::default()).unwrap();
    let record = store.find("example.com/t:1").unwrap();
    let layer = store.layer_dir(&record.layers[0]);
    assert_eq!(std::fs::read(layer.join("hello")).unwrap(), b"world");
}

#[tokio::test]
async fn blobs_that_do_not_hash_to_their_name_are_refused() {
    let blobs = image_blobs(|_| {});
    let layer_name = own_name(&blobs[0]);
    // Spoil the layer's content but keep its name.
    let mut spoiled = archive(&blobs, own_name, None);
    let at = spoiled.windows(5).position(|w| w == b"world").unwrap();
    spoiled[at] = b'W';
    let (result, _sandbox) = import(&spoiled).await;
    let e = result.unwrap_err().to_string();
    assert!(
        e.contains("hashes to") && e.contains(&layer_name[13..]),
        "{e}"
    );
}

#[tokio::test]
async fn malformed_digests_are_refused_before_they_become_paths() {
    let (result, _sandbox) = import(&archive(
        &image_blobs(|_| {}),
        own_name,
        Some("sha256:../../../../image.tar"),
    ))
    .await;
    let e = result.unwrap_err().to_string();
    assert!(
        e.contains("index.json entry for example.com/t:1") && e.contains("invalid"),
        "{e}"
    );

    let bad_layer = |m: &mut serde_json::Value| {
        let d = m["layers"][0]["digest"].as_str().unwrap().to_uppercase();
        m["layers"][0]["digest"] = json!(d.replacen("SHA256", "sha256", 1));
    };
    let (result, _sandbox) = import(&archive(&image_blobs(bad_layer), own_name, None)).await;
    let e = result.unwrap_err().to_string();
    assert!(
        e.contains("manifest sha256:") && e.contains("not lowercase hex"),
        "{e}"
    );

    let other_algorithm = |m: &mut serde_json::Value| {
        m["config"]["digest"] = json!(format!("sha512:{}", "0".repeat(128)));
    };
    let (result, _sandbox) = import(&archive(&image_blobs(other_algorithm), own_name, None)).await;
    let e = result.unwrap_err().to_string();
    assert!(e.contains("only sha256 digests are supported"), "{e}");

    let blobs = image_blobs(|_| {});
    let (result, _sandbox) = import(&archive(
        &blobs,
        |b| format!("blobs/sha256/../../{}", BlobDigest::of(b).hex()),
        None,
    ))
    .await;
    let e = result.unwrap_err().to_string();
    assert!(
        e.contains("blob blobs/sha256/../../") && e.contains("invalid"),
        "{e}"
    );
}

/// How a test registry behaves.
#[derive(Clone, Default)]
struct Serve {
    /// Change the first byte of the layer (the first blob).
    spoil_layer: bool,
    /// The repository served; requests for others are answered 404.
    repository: Option<&'static str>,
    /// `user:password` demanded with HTTP basic auth (401 without it).
    basic: Option<&'static str>,
    /// Demand a bearer token instead, handed out at `/token` for the `basic` credentials (the
    /// distribution spec's token flow), or for this refresh token (its OAuth2 flow).
    bearer: bool,
    refresh_token: Option<&'static str>,
    /// Serve HTTPS with this configuration (which may demand a client certificate).
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

/// The token the test registry's token endpoint hands out.
const TOKEN: &str = "test-token";

/// One accepted connection of the test registry, TLS or not.
trait Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Conn for T {}

/// A registry on 127.0.0.1, one request per connection: it serves the last of `blobs` as the
/// manifest of tag `1` and every blob under its own digest, as `serve` says. Returns
/// `host:port`.
async fn registry(blobs: Vec<Vec<u8>>, serve: Serve) -> String {
    use base64::Engine;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let addr_in = addr.clone();
    let authorization = serve.basic.map(|b| {
        format!(
            "authorization: basic {}",
            base64::engine::general_purpose::STANDARD.encode(b)
        )
        .to_lowercase()
    });
    let scheme = if serve.tls.is_some() { "https" } else { "http" };
    let acceptor = serve.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        let addr = addr_in;
        while let Ok((tcp, _)) = listener.accept().await {
            let conn: Box<dyn Conn> = match &acceptor {
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(tls) => Box::new(tls),
                    // No or a wrong client certificate.
                    Err(_) => continue,
                },
                None => Box::new(tcp),
            };
            let mut conn = tokio::io::BufReader::new(conn);
            let mut request = String::new();
            let mut line = String::new();
            while conn.read_line(&mut line).await.unwrap_or(0) > 2 {
                request.push_str(&line);
                line.clear();
            }
            let lower = request.to_lowercase();
            let length = lower
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            let mut form = vec![0; length];
            let _ = conn.read_exact(&mut form).await;
            let form = String::from_utf8_lossy(&form).into_owned();
            let path = request.split(' ').nth(1).unwrap_or_default().to_owned();
            let path = path.split('?').next().unwrap_or_default();
            let manifest = blobs.last().unwrap();
            let basic_ok = authorization
                .as_ref()
                .is_none_or(|a| lower.contains(a.as_str()));
            if serve.bearer && path == "/token" {
                let refreshed = serve.refresh_token.is_some_and(|t| {
                    let fields: Vec<&str> = form.split('&').collect();
                    request.starts_with("POST ")
                        && fields.contains(&"grant_type=refresh_token")
                        && fields.contains(&format!("refresh_token={t}").as_str())
                        && fields.contains(&"scope=repository%3At%3Apull")
                        && fields.contains(&"service=test")
                });
                let (status, body) = if refreshed {
                    ("200 OK", format!("{{\"access_token\":\"{TOKEN}\"}}"))
                } else if serve.refresh_token.is_none() && basic_ok {
                    ("200 OK", format!("{{\"token\":\"{TOKEN}\"}}"))
                } else {
                    ("401 Unauthorized", String::new())
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.get_mut().write_all(head.as_bytes()).await;
                continue;
            }
            let allowed = if serve.bearer {
                lower.contains(&format!("authorization: bearer {TOKEN}"))
            } else {
                basic_ok
            };
            let in_repository = serve
                .repository
                .is_none_or(|r| path.starts_with(&format!("/v2/{r}/")));
            let found = if !in_repository {
                None
            } else if path.ends_with("/manifests/1") {
                Some(manifest.clone())
            } else {
                blobs
                    .iter()
                    .find(|b| path.ends_with(BlobDigest::of(b).as_str()))
                    .cloned()
            };
            let (status, mut body) = match found {
                _ if !allowed => ("401 Unauthorized", Vec::new()),
                Some(body) => ("200 OK", body),
                None if path == "/v2/" => ("200 OK", b"{}".to_vec()),
                None => ("404 Not Found", Vec::new()),
            };
            if serve.spoil_layer && body == blobs[0] {
                body[0] ^= 1;
            }
            let challenge = match (allowed, serve.bearer) {
                (true, _) => String::new(),
                (false, false) => "WWW-Authenticate: Basic realm=\"test\"\r\n".into(),
                (false, true) => format!(
                    "WWW-Authenticate: Bearer realm=\"{scheme}://{addr}/token\",service=\"test\",\
                     scope=\"repository:t:pull\"\r\n"
                ),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n\
                 {challenge}Docker-Content-Digest: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                BlobDigest::of(&body),
                body.len()
            );
            let conn = conn.get_mut();
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(&body).await;
            let _ = conn.shutdown().await;
        }
    });
    addr
}

/// Pulls `<registry>/t:1` into a fresh store; the answer and the store's leftover temporaries.
async fn pull(blobs: Vec<Vec<u8>>, spoil_layer: bool) -> (Result<String>, Vec<PathBuf>) {
    let serve = Serve {
        spoil_layer,
        ..Serve::default()
    };
    let addr = registry(blobs, serve).await;
    let dir = tempfile::tempdir().unwrap();
    let registries = Registries::parse("")
        .unwrap()
        .with_insecure(vec![addr.clone()]);
    let store = ImageStore::open(dir.path(), registries).unwrap();
    let result = store.pull(&format!("{addr}/t:1"), None).await;
    let leftovers = std::fs::read_dir(dir.path().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    (result, leftovers)
}

/// A `host:port` on 127.0.0.1 where nothing listens.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

#[tokio::test]
async fn mirrors_fall_through_rewrite_and_ask_for_credentials() {
    crate::runtime::install_crypto();
    let blobs = image_blobs(|_| {});
    let config = BlobDigest::of(&blobs[1]);
    let serve = Serve {
        repository: Some("mirrored/t"),
        basic: Some("u:p"),
        ..Serve::default()
    };
    let mirror = registry(blobs, serve).await;
    // The image's own registry is down, and so is the first mirror.
    let down = closed_port().await;
    let yaml = format!(
        "mirrors:\n  \"{down}\":\n    endpoint: [\"http://{down}\", \"http://{mirror}\"]\n    \
         rewrite: {{\"^(.*)$\": \"mirrored/$1\"}}\n"
    );
    let registries = Registries::parse(&yaml)
        .unwrap()
        .with_insecure(vec![down.clone()]);
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path(), registries).unwrap();
    let image = format!("{down}/t:1");

    let e = store.pull(&image, None).await.unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "failed to pull and unpack image \"{image}\": http://{down}: "
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "http://{mirror}: authorization failed: 401 Unauthorized"
        )),
        "{e}"
    );
    assert!(
        !e.contains("not found"),
        "a 401 is not a missing image: {e}"
    );

    let secret = Credential::Basic("u".to_owned(), "p".to_owned());
    assert_eq!(
        store.pull(&image, Some(&secret)).await.unwrap(),
        config.as_str()
    );
    let record = store
        .find(&image)
        .expect("stored under the name it was asked by");
    assert_eq!(record.repo_tags, std::slice::from_ref(&image));
    assert!(record.repo_digests[0].starts_with(&format!("{down}/t@sha256:")));

    let wrong = Credential::Basic("u".to_owned(), "nope".to_owned());
    let e = store
        .pull(&image, Some(&wrong))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("authorization failed"), "{e}");
}

#[tokio::test]
async fn an_index_without_this_platform_is_refused_naming_the_platforms() {
    crate::runtime::install_crypto();
    let mut blobs = image_blobs(|_| {});
    let manifest = blobs.last().unwrap().clone();
    let entry = |os: &str, arch: &str| {
        json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": BlobDigest::of(&manifest),
            "size": manifest.len(),
            "platform": {"os": os, "architecture": arch},
        })
    };
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry("linux", "s390x"), entry("windows", "amd64")],
    });
    blobs.push(serde_json::to_vec(&index).unwrap());
    let addr = registry(blobs, Serve::default()).await;
    let registries = Registries::parse("")
        .unwrap()
        .with_insecure(vec![addr.clone()]);
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path(), registries).unwrap();
    let e = store
        .pull(&format!("{addr}/t:1"), None)
        .await
        .unwrap_err()
        .to_string();
    let wanted = format!(
        "{}/{}",
        oci_spec::image::Os::default(),
        oci_spec::image::Arch::default()
    );
    assert!(
        e.ends_with(&format!(
            "{addr}/t:1: no manifest for {wanted} in its image index (it has linux/s390x, windows/amd64)"
        )),
        "{e}"
    );
}

#[tokio::test]
async fn bearer_tokens_are_fetched_with_the_credentials() {
    crate::runtime::install_crypto();
    let blobs = image_blobs(|_| {});
    let config = BlobDigest::of(&blobs[1]);
    let serve = Serve {
        basic: Some("u:p"),
        bearer: true,
        ..Serve::default()
    };
    let addr = registry(blobs, serve).await;
    let registries = Registries::parse("")
        .unwrap()
        .with_insecure(vec![addr.clone()]);
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path(), registries).unwrap();
    let image = format!("{addr}/t:1");
    let e = store.pull(&image, None).await.unwrap_err().to_string();
    assert!(e.contains("authorization failed"), "{e}");
    let wrong = Credential::Basic("u".to_owned(), "nope".to_owned());
    let e = store
        .pull(&image, Some(&wrong))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("authorization failed"), "{e}");
    let secret = Credential::Basic("u".to_owned(), "p".to_owned());
    assert_eq!(
        store.pull(&image, Some(&secret)).await.unwrap(),
        config.as_str()
    );
}

#[tokio::test]
async fn pulls_check_digests_and_blob_content() {
    crate::runtime::install_crypto();
    let blobs = image_blobs(|_| {});
    let config = BlobDigest::of(&blobs[1]);
    let (id, leftovers) = pull(blobs.clone(), false).await;
    assert_eq!(id.unwrap(), config.as_str());
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let (result, leftovers) = pull(blobs, true).await;
    let e = result.unwrap_err().to_string();
    assert!(e.contains("layer sha256:"), "{e}");
    assert!(
        leftovers.is_empty(),
        "a spoilt layer was kept: {leftovers:?}"
    );

    let escape = |m: &mut serde_json::Value| m["layers"][0]["digest"] = json!("sha256:../../x");
    let (result, _) = pull(image_blobs(escape), false).await;
    let e = result.unwrap_err().to_string();
    assert!(
        e.contains("\"sha256:../../x\" is invalid: wrong length"),
        "{e}"
    );
}

#[test]
fn image_ref_is_the_repo_digest_of_the_name_the_container_used() {
    let digest = format!("sha256:{}", "a".repeat(64));
    let record = ImageRecord {
        id: BlobDigest::parse(&format!("sha256:{}", "c".repeat(64))).unwrap(),
        repo_tags: Vec::new(),
        repo_digests: vec![
            format!("docker.io/library/busybox@{digest}"),
            format!("192.168.64.1:5001/team/busybox@{digest}"),
        ],
        size: 0,
        layers: Vec::new(),
        config: ImageConfig::default(),
    };
    assert_eq!(
        record.image_ref("192.168.64.1:5001/team/busybox:latest"),
        format!("192.168.64.1:5001/team/busybox@{digest}")
    );
    assert_eq!(
        record.image_ref("busybox"),
        format!("docker.io/library/busybox@{digest}")
    );
    // A name the record has no digest for (a retag): the first repo digest.
    assert_eq!(
        record.image_ref("example.com/other:1"),
        format!("docker.io/library/busybox@{digest}")
    );
}

/// Writes `pem` to `dir/name`; its path as registries.yaml names it.
fn write_pem(dir: &Path, name: &str, pem: String) -> String {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn identity_tokens_are_traded_for_pull_tokens() {
    crate::runtime::install_crypto();
    let blobs = image_blobs(|_| {});
    let config = BlobDigest::of(&blobs[1]);
    let serve = Serve {
        bearer: true,
        refresh_token: Some("r3fresh"),
        ..Serve::default()
    };
    let addr = registry(blobs, serve).await;
    let store_with = |token: &str| {
        let yaml = format!(
            "configs:\n  \"{addr}\":\n    auth: {{username: \"<token>\", identitytoken: {token}}}\n"
        );
        let registries = Registries::parse(&yaml)
            .unwrap()
            .with_insecure(vec![addr.clone()]);
        let dir = tempfile::tempdir().unwrap();
        (ImageStore::open(dir.path(), registries).unwrap(), dir)
    };
    let image = format!("{addr}/t:1");

    let (store, _dir) = store_with("r3fresh");
    assert_eq!(store.pull(&image, None).await.unwrap(), config.as_str());

    let (store, _dir) = store_with("stale");
    let e = store.pull(&image, None).await.unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "authorization failed: the token service http://{addr}/token answered 401"
        )) && e.contains("identitytoken"),
        "{e}"
    );

    // The CRI's identity_token does the same for a pull without registries.yaml credentials.
    let registries = Registries::parse("")
        .unwrap()
        .with_insecure(vec![addr.clone()]);
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path(), registries).unwrap();
    let secret = Credential::IdentityToken("r3fresh".into());
    assert_eq!(
        store.pull(&image, Some(&secret)).await.unwrap(),
        config.as_str()
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all in PEM: (CA, server
/// chain and key, client chain, client key).
fn certificates() -> (String, (String, String), (String, String)) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "registry-ca");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca_cert, &ca_key)
        .unwrap();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut client = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    client
        .distinguished_name
        .push(rcgen::DnType::CommonName, "node");
    client.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client = client.signed_by(&client_key, &ca_cert, &ca_key).unwrap();
    (
        ca_cert.pem(),
        (server.pem(), server_key.serialize_pem()),
        (client.pem(), client_key.serialize_pem()),
    )
}

/// A TLS server configuration that demands a client certificate signed by `ca`.
fn demanding_client_certificates(ca: &str, (cert, key): &(String, String)) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
        .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder(std::sync::Arc::new(roots))
        .build()
        .unwrap();
    rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        )
        .unwrap()
}

#[tokio::test]
async fn client_certificates_are_presented_through_the_relay() {
    crate::runtime::install_crypto();
    let (ca, server, client) = certificates();
    let blobs = image_blobs(|_| {});
    let config = BlobDigest::of(&blobs[1]);
    // Basic credentials for a bearer token whose realm is on the same host: the token request
    // must present the certificate too.
    let serve = Serve {
        basic: Some("u:p"),
        bearer: true,
        tls: Some(std::sync::Arc::new(demanding_client_certificates(
            &ca, &server,
        ))),
        ..Serve::default()
    };
    let addr = registry(blobs, serve).await;
    let pems = tempfile::tempdir().unwrap();
    let ca_file = write_pem(pems.path(), "ca.pem", ca);
    let cert_file = write_pem(pems.path(), "cert.pem", client.0);
    let key_file = write_pem(pems.path(), "key.pem", client.1);
    let store_with = |tls: String| {
        let yaml = format!(
            "configs:\n  \"{addr}\":\n    auth: {{username: u, password: p}}\n    tls: {{{tls}}}\n"
        );
        let dir = tempfile::tempdir().unwrap();
        (
            ImageStore::open(dir.path(), Registries::parse(&yaml).unwrap()).unwrap(),
            dir,
        )
    };
    let image = format!("{addr}/t:1");

    let (store, _dir) = store_with(format!("ca_file: {ca_file}"));
    let e = store.pull(&image, None).await.unwrap_err().to_string();
    assert!(
        e.contains(&format!("https://{addr}: ")) && e.contains("CertificateRequired"),
        "{e}"
    );

    let (store, _dir) = store_with(format!(
        "ca_file: {ca_file}, cert_file: {cert_file}, key_file: {key_file}"
    ));
    assert_eq!(store.pull(&image, None).await.unwrap(), config.as_str());
    let record = store.find(&image).unwrap();
    assert!(
        store.layer_dir(&record.layers[0]).join("hello").exists(),
        "the layer came through the relay whole"
    );
}

#[tokio::test]
async fn the_relay_serves_only_the_store_and_admitted_hosts() {
    crate::runtime::install_crypto();
    let relay = relay::Relay::start().await.unwrap();
    let admitted = closed_port().await;
    relay
        .admit(&admitted, &crate::runtime::registries::Tls::default())
        .unwrap();
    let proxy_url = relay.proxy_url();
    let through = |proxy: &str| {
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::http(proxy).unwrap())
            .build()
            .unwrap()
    };
    let status = |client: reqwest::Client, host: String| async move {
        client
            .get(format!("http://{host}/v2/"))
            .send()
            .await
            .unwrap()
            .status()
    };
    let stranger = proxy_url.replacen("ekube:", "ekube:0", 1);
    assert_eq!(
        status(through(&stranger), admitted.clone()).await,
        reqwest::StatusCode::PROXY_AUTHENTICATION_REQUIRED
    );
    let elsewhere = closed_port().await;
    assert_eq!(
        status(through(&proxy_url), elsewhere).await,
        reqwest::StatusCode::FORBIDDEN
    );
    // An admitted host that is down is the relay's 502, its cause named.
    assert_eq!(
        status(through(&proxy_url), admitted).await,
        reqwest::StatusCode::BAD_GATEWAY
    );
}
