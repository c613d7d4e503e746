//! Encryption at rest, configured like kube-apiserver's `--encryption-provider-config`.
//!
//! The file is upstream's `EncryptionConfiguration` (`apiserver.config.k8s.io/v1`): for each
//! group of resources a list of providers, the first of which encrypts new writes while every
//! one of them is tried for reads, so keys rotate by listing the new key first. Stored values
//! carry upstream's prefix `k8s:enc:<provider>:v1:<key name>:` followed by upstream's layout:
//! `aescbc` is the IV and then AES-CBC with PKCS#7 padding, `aesgcm` the 12-byte nonce and then
//! the sealed value (the storage key is the additional authenticated data, binding a value to
//! its key), `secretbox` the 24-byte nonce and then NaCl's tag-first box. `identity` stores
//! plaintext; plaintext is readable only where `identity` is listed, as upstream has it.
//! See <https://kubernetes.io/docs/tasks/administer-cluster/encrypt-data/>.

use std::path::Path;

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockCipher, BlockDecryptMut, BlockEncryptMut, KeyInit, KeyIvInit};
use aes_gcm::aead::{Aead, AeadInPlace, Payload, generic_array::GenericArray};
use base64::Engine;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--encryption-provider-config {path}: {message}")]
    Config { path: String, message: String },
    #[error("encrypting {key}: {message}")]
    Encrypt { key: String, message: String },
    #[error("decrypting {key}: {message}")]
    Decrypt { key: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A parsed `EncryptionConfiguration`.
#[derive(Debug)]
pub struct Encryption {
    rules: Vec<Rule>,
}

/// Which resources one `resources[]` entry covers, and how they are stored.
#[derive(Debug)]
struct Rule {
    /// `(plural, group)` patterns; `*` matches any plural, a group of `*` any group.
    resources: Vec<(String, String)>,
    providers: Vec<Provider>,
}

#[derive(Debug)]
enum Provider {
    Identity,
    Cipher { kind: CipherKind, keys: Vec<Key> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CipherKind {
    AesCbc,
    AesGcm,
    Secretbox,
}

struct Key {
    /// `k8s:enc:<provider>:v1:<name>:`
    prefix: Vec<u8>,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.write_str(&String::from_utf8_lossy(&self.prefix))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileDoc {
    api_version: String,
    kind: String,
    #[serde(default)]
    resources: Vec<FileRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRule {
    resources: Vec<String>,
    providers: Vec<FileProvider>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProvider {
    aescbc: Option<FileKeys>,
    aesgcm: Option<FileKeys>,
    secretbox: Option<FileKeys>,
    identity: Option<serde_yaml::Value>,
    kms: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
struct FileKeys {
    keys: Vec<FileKey>,
}

#[derive(Deserialize)]
struct FileKey {
    name: String,
    secret: String,
}

impl CipherKind {
    fn name(self) -> &'static str {
        match self {
            CipherKind::AesCbc => "aescbc",
            CipherKind::AesGcm => "aesgcm",
            CipherKind::Secretbox => "secretbox",
        }
    }

    fn key_sizes(self) -> &'static [usize] {
        match self {
            CipherKind::AesCbc | CipherKind::AesGcm => &[16, 24, 32],
            CipherKind::Secretbox => &[32],
        }
    }
}

impl Encryption {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&text).map_err(|message| Error::Config {
            path: path.display().to_string(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let doc: FileDoc = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        if doc.kind != "EncryptionConfiguration" || doc.api_version != "apiserver.config.k8s.io/v1"
        {
            return Err(format!(
                "expected apiVersion apiserver.config.k8s.io/v1, kind EncryptionConfiguration; found {}, {}",
                doc.api_version, doc.kind
            ));
        }
        let rules = doc
            .resources
            .into_iter()
            .enumerate()
            .map(|(i, rule)| parse_rule(rule).map_err(|e| format!("resources[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { rules })
    }

    /// The rule covering the object stored at `key` (`/registry/<group>/<plural>/…`).
    fn rule(&self, key: &str) -> Option<&Rule> {
        let mut parts = key.strip_prefix("/registry/")?.split('/');
        let group = match parts.next()? {
            "core" => "",
            g => g,
        };
        let plural = parts.next()?;
        self.rules.iter().find(|rule| {
            rule.resources
                .iter()
                .any(|(p, g)| (p == "*" || p == plural) && (g == "*" || g == group))
        })
    }

    /// The bytes to store for `value` at `key`: encrypted by the first provider of the rule
    /// covering it, unchanged when no rule does.
    pub fn encrypt(&self, key: &str, value: &[u8]) -> Result<Vec<u8>> {
        let Some(rule) = self.rule(key) else {
            return Ok(value.to_vec());
        };
        match &rule.providers[0] {
            Provider::Identity => Ok(value.to_vec()),
            Provider::Cipher { kind, keys } => {
                let k = &keys[0];
                let sealed = seal(*kind, &k.secret, key.as_bytes(), value).map_err(|message| {
                    Error::Encrypt {
                        key: key.to_string(),
                        message,
                    }
                })?;
                let mut out = k.prefix.clone();
                out.extend_from_slice(&sealed);
                Ok(out)
            }
        }
    }

    /// The plaintext of `stored` at `key`, read by whichever provider its prefix names.
    pub fn decrypt(&self, key: &str, stored: &[u8]) -> Result<Vec<u8>> {
        let Some(rule) = self.rule(key) else {
            return Ok(stored.to_vec());
        };
        let err = |message: String| Error::Decrypt {
            key: key.to_string(),
            message,
        };
        for provider in &rule.providers {
            let Provider::Cipher { kind, keys } = provider else {
                continue;
            };
            for k in keys {
                if let Some(body) = stored.strip_prefix(k.prefix.as_slice()) {
                    return open(*kind, &k.secret, key.as_bytes(), body).map_err(err);
                }
            }
        }
        if stored.starts_with(b"k8s:enc:") {
            return Err(err(
                "it was written with a provider or key no longer in --encryption-provider-config"
                    .into(),
            ));
        }
        if rule
            .providers
            .iter()
            .any(|p| matches!(p, Provider::Identity))
        {
            return Ok(stored.to_vec());
        }
        Err(err("it is stored unencrypted and --encryption-provider-config does not list the identity provider for it".into()))
    }
}

fn parse_rule(rule: FileRule) -> Result<Rule, String> {
    if rule.resources.is_empty() {
        return Err("resources: must name at least one resource".into());
    }
    if rule.providers.is_empty() {
        return Err("providers: must list at least one provider".into());
    }
    let resources = rule
        .resources
        .iter()
        .map(|r| match r.split_once('.') {
            Some((plural, group)) => (plural.to_string(), group.to_string()),
            None => (r.clone(), String::new()),
        })
        .collect();
    let providers = rule
        .providers
        .into_iter()
        .enumerate()
        .map(|(i, p)| parse_provider(p).map_err(|e| format!("providers[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rule {
        resources,
        providers,
    })
}

fn parse_provider(p: FileProvider) -> Result<Provider, String> {
    if p.kms.is_some() {
        return Err("the kms provider is not supported; use aescbc, aesgcm or secretbox".into());
    }
    let mut found = Vec::new();
    if p.identity.is_some() {
        found.push(Provider::Identity);
    }
    for (kind, keys) in [
        (CipherKind::AesCbc, p.aescbc),
        (CipherKind::AesGcm, p.aesgcm),
        (CipherKind::Secretbox, p.secretbox),
    ] {
        if let Some(keys) = keys {
            found.push(Provider::Cipher {
                kind,
                keys: parse_keys(kind, keys)?,
            });
        }
    }
    if found.len() != 1 {
        return Err(
            "each provider entry names exactly one of aescbc, aesgcm, secretbox, identity".into(),
        );
    }
    Ok(found.pop().expect("one provider"))
}

fn parse_keys(kind: CipherKind, keys: FileKeys) -> Result<Vec<Key>, String> {
    if keys.keys.is_empty() {
        return Err(format!("{}: keys: must list at least one key", kind.name()));
    }
    let mut names = std::collections::HashSet::new();
    keys.keys
        .into_iter()
        .map(|k| {
            let what = format!("{} key {:?}", kind.name(), k.name);
            if k.name.is_empty() || k.name.contains(':') {
                return Err(format!("{what}: a key name is non-empty and has no ':'"));
            }
            if !names.insert(k.name.clone()) {
                return Err(format!("{what}: names a key twice"));
            }
            let secret = base64::engine::general_purpose::STANDARD
                .decode(k.secret.trim())
                .map_err(|e| format!("{what}: secret is not base64: {e}"))?;
            if !kind.key_sizes().contains(&secret.len()) {
                return Err(format!(
                    "{what}: secret is {} bytes; it must be {:?} bytes (e.g. `head -c 32 /dev/urandom | base64`)",
                    secret.len(),
                    kind.key_sizes()
                ));
            }
            Ok(Key {
                prefix: format!("k8s:enc:{}:v1:{}:", kind.name(), k.name).into_bytes(),
                secret,
            })
        })
        .collect()
}

/// Encrypts `plain` in `kind`'s upstream layout (without the prefix).
fn seal(kind: CipherKind, secret: &[u8], aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, String> {
    match (kind, secret.len()) {
        (CipherKind::AesCbc, 16) => Ok(cbc_seal::<aes::Aes128>(secret, plain)),
        (CipherKind::AesCbc, 24) => Ok(cbc_seal::<aes::Aes192>(secret, plain)),
        (CipherKind::AesCbc, _) => Ok(cbc_seal::<aes::Aes256>(secret, plain)),
        (CipherKind::AesGcm, 16) => aead_seal::<aes_gcm::Aes128Gcm>(secret, 12, aad, plain),
        (CipherKind::AesGcm, 24) => aead_seal::<Aes192Gcm>(secret, 12, aad, plain),
        (CipherKind::AesGcm, _) => aead_seal::<aes_gcm::Aes256Gcm>(secret, 12, aad, plain),
        (CipherKind::Secretbox, _) => secretbox_seal(secret, plain),
    }
}

/// Decrypts what [`seal`] produced.
fn open(kind: CipherKind, secret: &[u8], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, String> {
    match (kind, secret.len()) {
        (CipherKind::AesCbc, 16) => cbc_open::<aes::Aes128>(secret, sealed),
        (CipherKind::AesCbc, 24) => cbc_open::<aes::Aes192>(secret, sealed),
        (CipherKind::AesCbc, _) => cbc_open::<aes::Aes256>(secret, sealed),
        (CipherKind::AesGcm, 16) => aead_open::<aes_gcm::Aes128Gcm>(secret, 12, aad, sealed),
        (CipherKind::AesGcm, 24) => aead_open::<Aes192Gcm>(secret, 12, aad, sealed),
        (CipherKind::AesGcm, _) => aead_open::<aes_gcm::Aes256Gcm>(secret, 12, aad, sealed),
        (CipherKind::Secretbox, _) => secretbox_open(secret, sealed),
    }
}

type Aes192Gcm = aes_gcm::AesGcm<aes::Aes192, aes_gcm::aead::consts::U12>;

const AES_BLOCK: usize = 16;
const SECRETBOX_NONCE: usize = 24;
const SECRETBOX_TAG: usize = 16;

fn cbc_seal<C>(secret: &[u8], plain: &[u8]) -> Vec<u8>
where
    C: BlockEncryptMut + BlockCipher + KeyInit,
    cbc::Encryptor<C>: KeyIvInit + BlockEncryptMut,
{
    let iv: [u8; AES_BLOCK] = rand::random();
    let mut buf = vec![0u8; AES_BLOCK + (plain.len() / AES_BLOCK + 1) * AES_BLOCK];
    buf[..AES_BLOCK].copy_from_slice(&iv);
    buf[AES_BLOCK..AES_BLOCK + plain.len()].copy_from_slice(plain);
    let len = cbc::Encryptor::<C>::new_from_slices(secret, &iv)
        .expect("key and IV sizes are checked at load")
        .encrypt_padded_mut::<Pkcs7>(&mut buf[AES_BLOCK..], plain.len())
        .expect("the buffer has room for the padding")
        .len();
    buf.truncate(AES_BLOCK + len);
    buf
}

fn cbc_open<C>(secret: &[u8], sealed: &[u8]) -> Result<Vec<u8>, String>
where
    C: BlockDecryptMut + BlockCipher + KeyInit,
    cbc::Decryptor<C>: KeyIvInit + BlockDecryptMut,
{
    if sealed.len() < 2 * AES_BLOCK || !sealed.len().is_multiple_of(AES_BLOCK) {
        return Err("the aescbc value is truncated".into());
    }
    let (iv, body) = sealed.split_at(AES_BLOCK);
    let mut buf = body.to_vec();
    let len = cbc::Decryptor::<C>::new_from_slices(secret, iv)
        .expect("key and IV sizes are checked at load")
        .decrypt_padded_mut::<Pkcs7>(&mut buf)
        .map_err(|_| "wrong key or corrupt aescbc value (bad padding)".to_string())?
        .len();
    buf.truncate(len);
    Ok(buf)
}

fn aead_seal<C: Aead + KeyInit>(
    secret: &[u8],
    nonce_len: usize,
    aad: &[u8],
    plain: &[u8],
) -> Result<Vec<u8>, String> {
    let nonce: Vec<u8> = (0..nonce_len).map(|_| rand::random()).collect();
    let cipher = C::new_from_slice(secret).map_err(|e| e.to_string())?;
    let sealed = cipher
        .encrypt(
            GenericArray::from_slice(&nonce),
            Payload { msg: plain, aad },
        )
        .map_err(|e| e.to_string())?;
    Ok([nonce, sealed].concat())
}

fn aead_open<C: Aead + KeyInit>(
    secret: &[u8],
    nonce_len: usize,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, String> {
    if sealed.len() < nonce_len {
        return Err("the value is truncated".into());
    }
    let (nonce, body) = sealed.split_at(nonce_len);
    let cipher = C::new_from_slice(secret).map_err(|e| e.to_string())?;
    cipher
        .decrypt(GenericArray::from_slice(nonce), Payload { msg: body, aad })
        .map_err(|_| "wrong key or corrupt value (authentication failed)".into())
}

/// NaCl's layout: nonce, then the tag, then the ciphertext.
fn secretbox_seal(secret: &[u8], plain: &[u8]) -> Result<Vec<u8>, String> {
    let nonce: [u8; SECRETBOX_NONCE] = rand::random();
    let cipher =
        crypto_secretbox::XSalsa20Poly1305::new_from_slice(secret).map_err(|e| e.to_string())?;
    let mut body = plain.to_vec();
    let tag = cipher
        .encrypt_in_place_detached(GenericArray::from_slice(&nonce), b"", &mut body)
        .map_err(|e| e.to_string())?;
    Ok([nonce.as_slice(), tag.as_slice(), &body].concat())
}

fn secretbox_open(secret: &[u8], sealed: &[u8]) -> Result<Vec<u8>, String> {
    if sealed.len() < SECRETBOX_NONCE + SECRETBOX_TAG {
        return Err("the secretbox value is truncated".into());
    }
    let (nonce, rest) = sealed.split_at(SECRETBOX_NONCE);
    let (tag, body) = rest.split_at(SECRETBOX_TAG);
    let cipher =
        crypto_secretbox::XSalsa20Poly1305::new_from_slice(secret).map_err(|e| e.to_string())?;
    let mut body = body.to_vec();
    cipher
        .decrypt_in_place_detached(
            GenericArray::from_slice(nonce),
            b"",
            &mut body,
            GenericArray::from_slice(tag),
        )
        .map_err(|_| "wrong key or corrupt secretbox value (authentication failed)")?;
    Ok(body)
}

#[cfg(test)]
mod tests;
