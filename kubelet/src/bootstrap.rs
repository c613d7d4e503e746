//! TLS bootstrap, as the kubelet's `--bootstrap-kubeconfig` does it: a node that has only a
//! bootstrap token asks the cluster for its own client certificate through a
//! CertificateSigningRequest (signer `kubernetes.io/kube-apiserver-client-kubelet`, subject
//! `CN=system:node:<name>, O=system:nodes`), waits for the csrapproving controller to approve
//! it and the CA to sign it, and writes a kubeconfig that authenticates as that node from then
//! on. The key never leaves the node; the certificate and key are kept together in
//! `<pki-dir>/kubelet-client-current.pem`, which the kubeconfig references, as upstream lays
//! them out.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use kube::config::{AuthInfo, Kubeconfig, NamedAuthInfo};

/// The signer of kubelet client certificates.
pub const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The file holding the node's current client certificate and key.
pub const CURRENT: &str = "kubelet-client-current.pem";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bootstrap kubeconfig {path}: {reason}")]
    Kubeconfig { path: PathBuf, reason: String },
    #[error(transparent)]
    Client(#[from] ekube_api::client::Error),
    #[error("making the certificate request: {0}")]
    Request(#[from] rcgen::Error),
    #[error("posting the certificate request: {0}")]
    Post(kube::Error),
    #[error("certificate request {name}: {reason}")]
    Refused { name: String, reason: String },
    #[error(
        "certificate request {name} was not approved and signed within {timeout:?}; is the \
         csrapproving controller running, and is the requester (the bootstrap token's group, or \
         the node renewing its own certificate) allowed to be auto-approved?"
    )]
    Timeout { name: String, timeout: Duration },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where TLS bootstrap reads and writes.
pub struct Bootstrap<'a> {
    /// The node's kubeconfig; written when missing or when its certificate has expired.
    pub kubeconfig: &'a Path,
    /// The kubeconfig holding the bootstrap token.
    pub bootstrap_kubeconfig: &'a Path,
    /// Where the certificate and key go.
    pub pki_dir: &'a Path,
    pub node_name: &'a str,
    /// How long to wait for the certificate.
    pub timeout: Duration,
}

impl Bootstrap<'_> {
    /// Makes sure `kubeconfig` holds a valid client identity for the node, asking for one with
    /// the bootstrap credentials when it does not. Returns whether a new one was obtained.
    pub async fn ensure(&self) -> Result<bool> {
        if let Some(why) = unusable(self.kubeconfig) {
            tracing::info!(kubeconfig = %self.kubeconfig.display(), reason = %why, "requesting a client certificate for the node");
        } else {
            return Ok(false);
        }
        let bootstrap =
            Kubeconfig::read_from(self.bootstrap_kubeconfig).map_err(|e| Error::Kubeconfig {
                path: self.bootstrap_kubeconfig.to_path_buf(),
                reason: e.to_string(),
            })?;
        let client = ekube_api::client::from_kubeconfig(self.bootstrap_kubeconfig).await?;
        let pair = request_certificate(client, self.node_name, self.timeout).await?;
        let current = install(self.pki_dir, &pair, std::time::SystemTime::now())?;
        let kubeconfig = node_kubeconfig(bootstrap, &current, self.node_name)?;
        let yaml = serde_yaml::to_string(&kubeconfig).map_err(|e| Error::Kubeconfig {
            path: self.kubeconfig.to_path_buf(),
            reason: e.to_string(),
        })?;
        write_private(self.kubeconfig, &yaml)?;
        tracing::info!(kubeconfig = %self.kubeconfig.display(), user = format!("system:node:{}", self.node_name), "wrote the node's kubeconfig");
        Ok(true)
    }
}

/// Why a kubeconfig's client identity cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("no usable kubeconfig")]
    NoKubeconfig,
    /// It may hold other credentials (a token), but not the node's certificate.
    #[error("the kubeconfig has no client certificate")]
    NoCertificate,
    #[error("the client certificate has expired")]
    Expired,
    #[error("the client certificate does not parse")]
    Unparsable,
}

/// Why the client identity in `kubeconfig` cannot be used as the node's, if it cannot.
pub fn unusable(kubeconfig: &Path) -> Option<Unusable> {
    let Ok(kubeconfig) = Kubeconfig::read_from(kubeconfig) else {
        return Some(Unusable::NoKubeconfig);
    };
    let auth = kubeconfig
        .auth_infos
        .first()
        .and_then(|a| a.auth_info.as_ref());
    let Some(pem) = auth.and_then(|a| {
        a.client_certificate_data
            .as_ref()
            .and_then(|d| STANDARD.decode(d).ok())
            .or_else(|| {
                a.client_certificate
                    .as_ref()
                    .and_then(|p| std::fs::read(p).ok())
            })
    }) else {
        return Some(Unusable::NoCertificate);
    };
    match ekube_api::client_cert::pem_validity(&pem) {
        Some((_, t)) if t > std::time::SystemTime::now() => None,
        Some(_) => Some(Unusable::Expired),
        None => Some(Unusable::Unparsable),
    }
}

/// A certificate and its private key, PEM encoded.
pub struct Pair {
    pub cert: String,
    pub key: String,
}

/// Posts a request for `node`'s client certificate with a new key, as whoever `client` is (the
/// bootstrap token at first, the node itself when renewing), and waits until it is signed.
pub async fn request_certificate(
    client: kube::Client,
    node: &str,
    timeout: Duration,
) -> Result<Pair> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    let request = params.serialize_request(&key)?.pem()?;
    let api: Api<CertificateSigningRequest> = Api::all(client);
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some("node-csr-".into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(request.into_bytes()),
            signer_name: SIGNER.into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            ..Default::default()
        },
        status: None,
    };
    let created = api
        .create(&PostParams::default(), &csr)
        .await
        .map_err(Error::Post)?;
    let name = created.metadata.name.unwrap_or_default();
    tracing::info!(
        csr = name,
        "waiting for the certificate request to be approved and signed"
    );
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match api.get(&name).await {
            Ok(csr) => {
                if let Some(cert) = signed(&csr).map_err(|reason| Error::Refused {
                    name: name.clone(),
                    reason,
                })? {
                    return Ok(Pair {
                        cert,
                        key: key.serialize_pem(),
                    });
                }
            }
            Err(e) => tracing::warn!(csr = name, error = %e, "reading the certificate request"),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout { name, timeout });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The issued certificate (PEM) once there is one; an error when the request was denied or
/// failed.
fn signed(csr: &CertificateSigningRequest) -> Result<Option<String>, String> {
    let status = csr.status.as_ref();
    for c in status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
    {
        if (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True" {
            return Err(format!(
                "{}: {} {}",
                c.type_.to_lowercase(),
                c.reason.as_deref().unwrap_or_default(),
                c.message.as_deref().unwrap_or_default()
            ));
        }
    }
    Ok(status
        .and_then(|s| s.certificate.as_ref())
        .filter(|c| !c.0.is_empty())
        .map(|c| String::from_utf8_lossy(&c.0).into_owned()))
}

/// The bootstrap kubeconfig with its user replaced by the node's certificate and key.
fn node_kubeconfig(mut kubeconfig: Kubeconfig, current: &Path, node: &str) -> Result<Kubeconfig> {
    let user = "default-auth".to_string();
    let file = Some(current.display().to_string());
    kubeconfig.auth_infos = vec![NamedAuthInfo {
        name: user.clone(),
        auth_info: Some(AuthInfo {
            client_certificate: file.clone(),
            client_key: file,
            ..Default::default()
        }),
        ..Default::default()
    }];
    let context = kubeconfig
        .current_context
        .clone()
        .and_then(|name| kubeconfig.contexts.iter_mut().find(|c| c.name == name))
        .and_then(|c| c.context.as_mut())
        .ok_or_else(|| Error::Kubeconfig {
            path: current.to_path_buf(),
            reason: format!("the bootstrap kubeconfig has no current context to give node {node}"),
        })?;
    context.user = Some(user);
    Ok(kubeconfig)
}

/// Keeps `pair` as a new dated file in `pki_dir` (`kubelet-client-<time>.pem`, as upstream names
/// them) and points `kubelet-client-current.pem` at it, both atomically: a reader sees the old
/// pair or the new one, never half of either. Returns the path of the current link.
pub fn install(pki_dir: &Path, pair: &Pair, now: SystemTime) -> Result<PathBuf> {
    let stamp = ekube_api::time::Timestamp::try_from(now)
        .unwrap_or(ekube_api::time::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%d-%H-%M-%S");
    let dated = format!("kubelet-client-{stamp}.pem");
    write_private(&pki_dir.join(&dated), &format!("{}{}", pair.cert, pair.key))?;
    let current = pki_dir.join(CURRENT);
    let next = pki_dir.join(format!("{CURRENT}.tmp"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    match std::fs::remove_file(&next) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&next)(e)),
        _ => {}
    }
    std::os::unix::fs::symlink(&dated, &next).map_err(io(&next))?;
    std::fs::rename(&next, &current).map_err(io(&current))?;
    Ok(current)
}

/// Writes `contents` readable by root only, creating the directory.
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    ekube_api::files::write_atomic(path, contents, 0o600).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestCondition, CertificateSigningRequestStatus,
    };

    fn with_status(status: CertificateSigningRequestStatus) -> CertificateSigningRequest {
        CertificateSigningRequest {
            status: Some(status),
            ..Default::default()
        }
    }

    #[test]
    fn a_request_is_done_once_signed_and_refused_when_denied() {
        assert_eq!(signed(&CertificateSigningRequest::default()), Ok(None));
        let approved = CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            ..Default::default()
        };
        let pending = with_status(CertificateSigningRequestStatus {
            conditions: Some(vec![approved.clone()]),
            ..Default::default()
        });
        assert_eq!(signed(&pending), Ok(None));
        let done = with_status(CertificateSigningRequestStatus {
            conditions: Some(vec![approved]),
            certificate: Some(k8s_openapi::ByteString(b"PEM".to_vec())),
        });
        assert_eq!(signed(&done), Ok(Some("PEM".into())));
        let denied = with_status(CertificateSigningRequestStatus {
            conditions: Some(vec![CertificateSigningRequestCondition {
                type_: "Denied".into(),
                status: "True".into(),
                reason: Some("NotMine".into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert!(signed(&denied).unwrap_err().contains("NotMine"));
    }

    #[test]
    fn the_node_kubeconfig_keeps_the_cluster_and_swaps_the_user() {
        let yaml = r#"
apiVersion: v1
kind: Config
clusters:
- name: kubernetes
  cluster: {server: "https://192.168.64.10:6443", certificate-authority-data: Q0E=}
contexts:
- name: tls-bootstrap-token-user@kubernetes
  context: {cluster: kubernetes, user: tls-bootstrap-token-user}
current-context: tls-bootstrap-token-user@kubernetes
users:
- name: tls-bootstrap-token-user
  user: {token: abcdef.0123456789abcdef}
"#;
        let k = Kubeconfig::from_yaml(yaml).unwrap();
        let out = node_kubeconfig(k, Path::new("/pki/kubelet-client-current.pem"), "n2").unwrap();
        let text = serde_yaml::to_string(&out).unwrap();
        assert!(!text.contains("abcdef"), "{text}");
        assert!(
            text.contains("client-certificate: /pki/kubelet-client-current.pem"),
            "{text}"
        );
        assert!(text.contains("https://192.168.64.10:6443"), "{text}");
        assert_eq!(
            out.contexts[0].context.as_ref().unwrap().user.as_deref(),
            Some("default-auth")
        );
    }

    /// A kubeconfig whose user embeds a certificate valid from `from` for `life` (negative
    /// offsets make it expired).
    fn kubeconfig_with_certificate(path: &Path, from: time::Duration, life: time::Duration) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.not_before = time::OffsetDateTime::now_utc() + from;
        params.not_after = params.not_before + life;
        let cert = params.self_signed(&key).unwrap();
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nusers:\n- name: n\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            STANDARD.encode(cert.pem()),
            STANDARD.encode(key.serialize_pem())
        );
        std::fs::write(path, yaml).unwrap();
    }

    #[test]
    fn an_identity_is_unusable_when_missing_expired_or_not_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("kubelet.conf");
        assert_eq!(unusable(&conf), Some(Unusable::NoKubeconfig));
        std::fs::write(
            &conf,
            "apiVersion: v1\nkind: Config\nusers:\n- name: t\n  user: {token: abc}\n",
        )
        .unwrap();
        assert_eq!(unusable(&conf), Some(Unusable::NoCertificate));
        let minute = time::Duration::minutes(1);
        kubeconfig_with_certificate(&conf, -minute * 2, minute);
        assert_eq!(unusable(&conf), Some(Unusable::Expired));
        kubeconfig_with_certificate(&conf, -minute, minute * 10);
        assert_eq!(unusable(&conf), None);
    }
}
