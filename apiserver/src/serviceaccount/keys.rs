//! The ServiceAccount token keys: an RSA private key that signs (`sa.key`) and the public keys
//! that verify (`sa.pub`, plus any `--service-account-key-file`), laid out as kubeadm lays them
//! out. Missing files are generated on first start, like the rest of the PKI.
//!
//! PEM parsing and key generation use the `rsa` crate; signing and verification use ring.

use std::path::Path;

use base64::Engine;
use ring::signature::{self, RsaKeyPair};
use rsa::pkcs1::{
    DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPrivateKey, EncodeRsaPublicKey,
};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};
use rsa::{RsaPrivateKey, RsaPublicKey};

use super::Error;
use crate::pki;

/// Size of a generated key, as kubeadm generates `sa.key`.
const GENERATED_BITS: usize = 2048;

/// The key that signs tokens.
pub struct SigningKey {
    pair: RsaKeyPair,
    /// Upstream's key id: base64url of the SHA-256 of the DER public key (SubjectPublicKeyInfo).
    pub kid: String,
}

/// A key that verifies tokens.
#[derive(Clone)]
pub struct VerifyingKey {
    /// The PKCS#1 `RSAPublicKey`, as ring takes it.
    pkcs1: Vec<u8>,
    pub kid: String,
}

fn kid_of(public: &RsaPublicKey) -> Result<String, Error> {
    let spki = public
        .to_public_key_der()
        .map_err(|e| Error::Key(format!("encoding a public key: {e}")))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, spki.as_bytes());
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest))
}

impl VerifyingKey {
    fn of(public: &RsaPublicKey) -> Result<Self, Error> {
        let pkcs1 = public
            .to_pkcs1_der()
            .map_err(|e| Error::Key(format!("encoding a public key: {e}")))?
            .into_vec();
        Ok(Self {
            pkcs1,
            kid: kid_of(public)?,
        })
    }

    /// Whether `signature` is this key's RS256 signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.pkcs1)
            .verify(message, signature)
            .is_ok()
    }
}

impl SigningKey {
    /// The RS256 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let mut out = vec![0; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                message,
                &mut out,
            )
            .expect("an RSA key ring accepted signs any message");
        out
    }

    fn from_private(private: &RsaPrivateKey) -> Result<Self, Error> {
        let der = private
            .to_pkcs1_der()
            .map_err(|e| Error::Key(format!("encoding the signing key: {e}")))?;
        let pair = RsaKeyPair::from_der(der.as_bytes())
            .map_err(|e| Error::Key(format!("the signing key is not usable for RS256: {e}")))?;
        Ok(Self {
            pair,
            kid: kid_of(&RsaPublicKey::from(private))?,
        })
    }
}

fn parse_private(path: &Path, pem: &str) -> Result<RsaPrivateKey, Error> {
    RsaPrivateKey::from_pkcs1_pem(pem)
        .or_else(|_| RsaPrivateKey::from_pkcs8_pem(pem))
        .map_err(|_| {
            Error::Key(format!(
                "{}: not an RSA private key in PEM (\"RSA PRIVATE KEY\" or \"PRIVATE KEY\")",
                path.display()
            ))
        })
}

/// The PEM blocks of a file, each from its `-----BEGIN` line to its `-----END` line.
fn pem_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("-----BEGIN ") {
            current = Some(String::new());
        }
        if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
        if line.starts_with("-----END ") {
            out.extend(current.take());
        }
    }
    out
}

/// The public keys in one PEM file: public keys, or the public halves of private keys.
fn parse_public(path: &Path, pem: &str) -> Result<Vec<RsaPublicKey>, Error> {
    let keys = pem_blocks(pem)
        .iter()
        .map(|block| {
            RsaPublicKey::from_public_key_pem(block)
                .or_else(|_| RsaPublicKey::from_pkcs1_pem(block))
                .or_else(|_| parse_private(path, block).map(|k| RsaPublicKey::from(&k)))
                .map_err(|_| {
                    Error::Key(format!(
                        "{}: a PEM block is not an RSA public or private key",
                        path.display()
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(Error::Key(format!(
            "{}: no PEM block found",
            path.display()
        )));
    }
    Ok(keys)
}

/// The signing key and the verifying keys.
pub struct Keys {
    pub signing: SigningKey,
    pub verifying: Vec<VerifyingKey>,
}

impl Keys {
    /// Loads the keys: the signing key from `signing_file` (default `<pki>/sa.key`, generated
    /// with `sa.pub` when both are absent) and the verifying keys from `key_files` (default
    /// `<pki>/sa.pub`). The signing key's own public key always verifies.
    pub fn load_or_create(
        pki_dir: &Path,
        signing_file: Option<&Path>,
        key_files: &[std::path::PathBuf],
    ) -> Result<Self, Error> {
        let (default_key, default_pub) = (pki_dir.join("sa.key"), pki_dir.join("sa.pub"));
        let signing_path = signing_file.unwrap_or(&default_key);
        if signing_file.is_none() && !default_key.exists() {
            let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, GENERATED_BITS)
                .map_err(|e| Error::Key(format!("generating sa.key: {e}")))?;
            let pem = private
                .to_pkcs1_pem(LineEnding::LF)
                .map_err(|e| Error::Key(format!("encoding sa.key: {e}")))?;
            pki::write(&default_key, &pem, 0o600)?;
            let public = RsaPublicKey::from(&private)
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| Error::Key(format!("encoding sa.pub: {e}")))?;
            pki::write(&default_pub, &public, 0o600)?;
        }
        let private = parse_private(signing_path, &pki::read(signing_path)?)?;
        let signing = SigningKey::from_private(&private)?;
        let mut verifying = vec![VerifyingKey::of(&RsaPublicKey::from(&private))?];
        let defaults = [default_pub];
        let files = if key_files.is_empty() {
            &defaults[..]
        } else {
            key_files
        };
        for path in files.iter().filter(|p| !key_files.is_empty() || p.exists()) {
            for public in parse_public(path, &pki::read(path)?)? {
                let key = VerifyingKey::of(&public)?;
                if !verifying.iter().any(|k| k.kid == key.kid) {
                    verifying.push(key);
                }
            }
        }
        Ok(Self { signing, verifying })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh key pair in a temporary PKI directory.
    pub(crate) fn keys() -> (tempfile::TempDir, Keys) {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_create(dir.path(), None, &[]).unwrap();
        (dir, keys)
    }

    #[test]
    fn generated_once_as_kubeadm_lays_them_out_and_reloaded() {
        let (dir, keys) = keys();
        let key = std::fs::read_to_string(dir.path().join("sa.key")).unwrap();
        let public = std::fs::read_to_string(dir.path().join("sa.pub")).unwrap();
        assert!(key.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{key}");
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
        let again = Keys::load_or_create(dir.path(), None, &[]).unwrap();
        assert_eq!(again.signing.kid, keys.signing.kid);
        assert_eq!(again.verifying.len(), 1, "sa.pub is the signing key's own");
        let sig = keys.signing.sign(b"message");
        assert!(again.verifying[0].verifies(b"message", &sig));
        assert!(!again.verifying[0].verifies(b"massage", &sig));
    }

    #[test]
    fn a_file_that_is_no_key_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a key").unwrap();
        let err = Keys::load_or_create(dir.path(), Some(&bad), &[])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("bad.pem") && err.contains("RSA private key"),
            "{err}"
        );
    }
}
