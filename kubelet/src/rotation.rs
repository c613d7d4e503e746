//! Client certificate rotation, as client-go's certificate manager does it for the kubelet:
//! once 70–90% (jittered) of the node's client certificate's lifetime has passed, a new key is
//! made and a CertificateSigningRequest for `system:node:<name>` is posted as the node itself
//! (auto-approved as `selfnodeclient`); the signed pair is kept as a new dated file and
//! `kubelet-client-current.pem` is pointed at it ([`bootstrap::install`]).
//!
//! Nothing is restarted: every client built from the node's kubeconfig presents what the file
//! holds at each handshake and drops connections made with the old pair
//! ([`ekube_api::client_cert`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::bootstrap::{self, CURRENT, Error, Result};

/// The first wait after a failed renewal; doubled up to [`MAX_BACKOFF`].
const BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Keeps the node's client certificate renewed.
pub struct Rotation {
    /// The node's kubeconfig, naming `<pki_dir>/kubelet-client-current.pem`.
    pub kubeconfig: PathBuf,
    pub pki_dir: PathBuf,
    pub node_name: String,
    /// How long to wait for a request to be approved and signed.
    pub timeout: Duration,
}

/// When a certificate valid from `not_before` to `not_after` is renewed: at 70% of its
/// lifetime plus `jitter` (0 to 1) times another 20%, as upstream's `nextRotationDeadline`.
pub fn deadline(not_before: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let total = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    not_before + total.mul_f64(0.7 + 0.2 * jitter.clamp(0.0, 1.0))
}

impl Rotation {
    /// Whether `kubeconfig` authenticates with the certificate this rotation manages (a
    /// kubeconfig with an embedded certificate, such as an admin's, is left alone).
    pub fn manages(kubeconfig: &Path, pki_dir: &Path) -> bool {
        kube::config::Kubeconfig::read_from(kubeconfig)
            .ok()
            .and_then(|k| ekube_api::client::certificate_files(&k))
            .is_some_and(|(cert, _)| cert == pki_dir.join(CURRENT))
    }

    /// Renews the certificate before each expiry until `shutdown` completes.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        tokio::pin!(shutdown);
        loop {
            let at = self.next_deadline()?;
            let wait = at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tracing::info!(
                renew_in = ?wait,
                "client certificate rotation scheduled"
            );
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
            let mut backoff = BACKOFF;
            loop {
                match self.renew().await {
                    Ok(path) => {
                        tracing::info!(path = %path.display(), "client certificate rotated");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "renewing the client certificate");
                    }
                }
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    fn next_deadline(&self) -> Result<SystemTime> {
        let current = self.pki_dir.join(CURRENT);
        let pem = std::fs::read(&current).map_err(|source| Error::Io {
            path: current.clone(),
            source,
        })?;
        let (not_before, not_after) =
            ekube_api::client_cert::pem_validity(&pem).ok_or_else(|| Error::Kubeconfig {
                path: current,
                reason: "the node's client certificate does not parse".into(),
            })?;
        Ok(deadline(not_before, not_after, rand::random()))
    }

    /// Asks for a new certificate as the node and swaps it in.
    async fn renew(&self) -> Result<PathBuf> {
        let client = ekube_api::client::from_kubeconfig(&self.kubeconfig).await?;
        let pair = bootstrap::request_certificate(client, &self.node_name, self.timeout).await?;
        bootstrap::install(&self.pki_dir, &pair, SystemTime::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::Pair;

    #[test]
    fn renewal_falls_between_70_and_90_percent_of_the_lifetime() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let end = start + Duration::from_secs(100);
        assert_eq!(deadline(start, end, 0.0), start + Duration::from_secs(70));
        assert_eq!(deadline(start, end, 0.5), start + Duration::from_secs(80));
        assert_eq!(deadline(start, end, 1.0), start + Duration::from_secs(90));
        // Out-of-range jitter is held to the window; a certificate that ends before it starts
        // is renewed at once.
        assert_eq!(deadline(start, end, 7.0), start + Duration::from_secs(90));
        assert_eq!(deadline(end, start, 0.3), end);
    }

    fn pair(cn: &str, life: Duration) -> Pair {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.not_before = time::OffsetDateTime::now_utc();
        params.not_after = params.not_before + life;
        Pair {
            cert: params.self_signed(&key).unwrap().pem(),
            key: key.serialize_pem(),
        }
    }

    #[test]
    fn a_new_pair_is_a_new_dated_file_and_the_current_link_moves_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000);
        let first = pair("first", Duration::from_secs(60));
        let current = bootstrap::install(dir.path(), &first, t0).unwrap();
        assert_eq!(current, dir.path().join(CURRENT));
        let read = || std::fs::read_to_string(&current).unwrap();
        assert_eq!(read(), format!("{}{}", first.cert, first.key));

        let second = pair("second", Duration::from_secs(60));
        bootstrap::install(dir.path(), &second, t0 + Duration::from_secs(45)).unwrap();
        assert_eq!(read(), format!("{}{}", second.cert, second.key));
        let target = std::fs::read_link(&current).unwrap();
        assert!(
            target.to_string_lossy().starts_with("kubelet-client-20"),
            "{target:?}"
        );
        let mut files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files.len(), 3, "two dated pairs and the link: {files:?}");
        assert!(!files.iter().any(|f| f.ends_with(".tmp")), "{files:?}");
        // The older pair stays, as upstream keeps it.
        assert!(files.contains(&target.to_string_lossy().into_owned()));

        // The deadline is read from what the link points at now.
        let rotation = Rotation {
            kubeconfig: dir.path().join("kubelet.conf"),
            pki_dir: dir.path().to_path_buf(),
            node_name: "n2".into(),
            timeout: Duration::from_secs(1),
        };
        let (not_before, not_after) =
            ekube_api::client_cert::pem_validity(second.cert.as_bytes()).unwrap();
        let at = rotation.next_deadline().unwrap();
        assert!(
            at >= deadline(not_before, not_after, 0.0) && at <= not_after,
            "{at:?}"
        );
    }
}
