//! kubeadm's certificate upload: `ekube init --upload-certs` stores the cluster's authorities
//! and keys in the Secret `kube-system/kubeadm-certs`, each file encrypted with AES-256-GCM
//! under the *certificate key* (32 random bytes, given as 64 hex digits) that only the
//! administrator holds, and `ekube join --control-plane --certificate-key <key>` reads them
//! back on a further control-plane host.
//!
//! As in kubeadm: the Secret's values are the 12-byte nonce followed by the sealed file; the
//! Secret is owned by a short-lived bootstrap token (2 h), so the garbage collector removes it
//! when the token cleaner removes that; holders of a node-joining bootstrap token may read it
//! (a Role and RoleBinding `kubeadm:kubeadm-certs`), which is useless without the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use ekube_api::k8s_openapi::ByteString;
use ekube_api::k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::json;

/// The Secret the files go to, in `kube-system`.
pub const SECRET: &str = "kubeadm-certs";
/// How long the uploaded files stay (kubeadm's `DefaultCertTokenDuration`).
pub const TTL: Duration = Duration::from_secs(2 * 3600);
/// The Role (and RoleBinding) that lets joining hosts read the Secret.
const ROLE: &str = "kubeadm:kubeadm-certs";
/// The group of kubeadm's node-joining bootstrap tokens.
const JOINING: &str = "system:bootstrappers:kubeadm:default-node-token";

/// The files of the certificate directory every control-plane host needs, by their name in
/// the Secret (kubeadm's): the cluster CA and the service-account key pair.
pub const CERT_DIR_FILES: &[&str] = &["ca.crt", "ca.key", "sa.key", "sa.pub"];
/// The names of an external etcd's client files in the Secret, and the `etcd.external` field
/// that says where each goes.
pub const EXTERNAL_ETCD_FILES: &[(&str, &str)] = &[
    ("external-etcd-ca.crt", "caFile"),
    ("external-etcd.crt", "certFile"),
    ("external-etcd.key", "keyFile"),
];

/// A certificate key: 32 bytes.
#[derive(Clone)]
pub struct CertificateKey([u8; 32]);

impl CertificateKey {
    /// A random key.
    pub fn generate() -> Result<Self> {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| anyhow::anyhow!("the system's random number generator failed"))?;
        Ok(Self(key))
    }

    /// A key as `--certificate-key` gives it: 64 hex digits.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        ensure!(
            text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()),
            "a certificate key is 64 hex digits (32 bytes), as `ekube init --upload-certs` \
             prints it; {} characters given",
            text.len()
        );
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)?;
        }
        Ok(Self(key))
    }

    fn cipher(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("a 32-byte AES-256 key"))
    }

    /// The nonce, then `plain` sealed.
    fn seal(&self, plain: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("the system's random number generator failed"))?;
        let mut sealed = plain.to_vec();
        self.cipher()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut sealed,
            )
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Ok(out)
    }

    /// What [`CertificateKey::seal`] sealed, or `None` when this is not the key it used (or
    /// the value was altered).
    fn open(&self, value: &[u8]) -> Option<Vec<u8>> {
        if value.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = value.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = self
            .cipher()
            .open_in_place(nonce, Aad::empty(), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }
}

/// Never the key itself, which is a secret.
impl std::fmt::Debug for CertificateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertificateKey(…)")
    }
}

impl std::fmt::Display for CertificateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The files to upload, by name in the Secret: those of [`CERT_DIR_FILES`] under `cert_dir`,
/// and an external etcd's client files where `etcd_files` (its `etcd.external` fields) says.
pub fn files(
    cert_dir: &Path,
    etcd_files: &BTreeMap<String, PathBuf>,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let paths = CERT_DIR_FILES
        .iter()
        .map(|name| (name.to_string(), cert_dir.join(name)))
        .chain(EXTERNAL_ETCD_FILES.iter().filter_map(|(name, field)| {
            etcd_files
                .get(*field)
                .map(|path| (name.to_string(), path.clone()))
        }));
    for (name, path) in paths {
        let data = std::fs::read(&path)
            .with_context(|| format!("reading {} to upload it", path.display()))?;
        out.insert(name, data);
    }
    Ok(out)
}

/// Stores `files` sealed under `key` in [`SECRET`], owned by the bootstrap token Secret
/// `owner` (name, uid), and lets joining hosts read it.
pub async fn upload(
    client: kube::Client,
    key: &CertificateKey,
    files: &BTreeMap<String, Vec<u8>>,
    owner: (&str, &str),
) -> Result<()> {
    let mut data = BTreeMap::new();
    for (name, plain) in files {
        data.insert(name.clone(), ByteString(key.seal(plain)?));
    }
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {
            "name": SECRET, "namespace": "kube-system",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Secret", "name": owner.0,
                "uid": owner.1, "blockOwnerDeletion": true, "controller": true}],
        },
        "type": "Opaque",
        "data": data,
    });
    let apply = PatchParams::apply("kubeadm").force();
    Api::<Secret>::namespaced(client.clone(), "kube-system")
        .patch(SECRET, &apply, &Patch::Apply(&secret))
        .await
        .with_context(|| format!("storing kube-system/{SECRET}"))?;
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": ROLE, "namespace": "kube-system"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [SECRET], "verbs": ["get"]}]});
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": ROLE, "namespace": "kube-system"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": JOINING}]});
    super::apply_rbac(
        &client,
        &apply,
        &[("roles", role), ("rolebindings", binding)],
    )
    .await
}

/// The files of [`SECRET`], opened with `key`.
pub async fn download(
    client: kube::Client,
    key: &CertificateKey,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let secret = match Api::<Secret>::namespaced(client, "kube-system")
        .get(SECRET)
        .await
    {
        Ok(secret) => secret,
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 403 => bail!(
            "the cluster holds no uploaded certificates (kube-system/{SECRET}: {}): run \
             `ekube init phase upload-certs --upload-certs` with the cluster's `--config` on a \
             control-plane host (they are kept for {} hours), and join with the certificate \
             key it prints",
            e.message,
            TTL.as_secs() / 3600
        ),
        Err(e) => return Err(e).context(format!("reading kube-system/{SECRET}")),
    };
    let mut out = BTreeMap::new();
    for (name, sealed) in secret.data.unwrap_or_default() {
        let plain = key.open(&sealed.0).with_context(|| {
            format!(
                "kube-system/{SECRET}: {name} does not open with this certificate key (it is \
                 not the key the certificates were uploaded with)"
            )
        })?;
        out.insert(name, plain);
    }
    for name in CERT_DIR_FILES {
        ensure!(
            out.contains_key(*name),
            "kube-system/{SECRET} has no {name}"
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_file_opens_with_its_key_only() {
        let key = CertificateKey::generate().unwrap();
        let sealed = key.seal(b"-----BEGIN PRIVATE KEY-----").unwrap();
        assert_eq!(
            key.open(&sealed).as_deref(),
            Some(&b"-----BEGIN PRIVATE KEY-----"[..])
        );
        let other = CertificateKey::generate().unwrap();
        assert_eq!(other.open(&sealed), None);
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(&altered), None);
        assert_eq!(key.open(&sealed[..5]), None);
    }

    #[test]
    fn keys_read_back_as_printed_and_bad_ones_are_named() {
        let key = CertificateKey::generate().unwrap();
        let printed = key.to_string();
        assert_eq!(printed.len(), 64);
        assert_eq!(CertificateKey::parse(&printed).unwrap().0, key.0);
        let err = CertificateKey::parse("abc").unwrap_err().to_string();
        assert!(err.contains("64 hex digits"), "{err}");
        assert!(CertificateKey::parse(&"g".repeat(64)).is_err());
    }
}
