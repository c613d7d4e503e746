//! What joining a cluster by token rests on, shared by the apiserver, the controllers and
//! `ekube join`: bootstrap tokens and the Secrets that hold them, the detached JWS with which
//! the bootstrap signer vouches for `kube-public/cluster-info`, and the CA pin
//! (`sha256:<hex>` of the CA's SubjectPublicKeyInfo) that `--discovery-token-ca-cert-hash`
//! names. Formats are upstream's (`k8s.io/cluster-bootstrap`), so kubeadm's tokens and hashes
//! work unchanged.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::Rng;
use serde_json::Value;
use x509_parser::prelude::FromDer;

/// The Secret type of bootstrap tokens.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// Bootstrap-token Secrets live here, named [`secret_name`].
pub const NAMESPACE: &str = "kube-system";
/// The group every bootstrap token authenticates in.
pub const GROUP: &str = "system:bootstrappers";
/// Where discovery reads the cluster's address and CA.
pub const CLUSTER_INFO_NAMESPACE: &str = "kube-public";
pub const CLUSTER_INFO: &str = "cluster-info";
/// The `cluster-info` key holding the kubeconfig that is signed.
pub const KUBECONFIG_KEY: &str = "kubeconfig";
/// Prefix of the `cluster-info` keys holding one signature per signing token.
pub const JWS_PREFIX: &str = "jws-kubeconfig-";

/// The usages a token may allow (`usage-bootstrap-<usage>: "true"`).
pub const USAGES: &[&str] = &["signing", "authentication"];

const SECRET_PREFIX: &str = "bootstrap-token-";
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A bootstrap token, `<id>.<secret>` (`[a-z0-9]{6}.[a-z0-9]{16}`).
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub id: String,
    pub secret: String,
}

fn is_lower_alnum(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Whether `s` has the form of a token id (`[a-z0-9]{6}`).
pub fn is_token_id(s: &str) -> bool {
    is_lower_alnum(s, 6)
}

/// Whether `s` has the form of a token secret (`[a-z0-9]{16}`).
pub fn is_token_secret(s: &str) -> bool {
    is_lower_alnum(s, 16)
}

impl Token {
    /// Parses `<id>.<secret>`, saying what is wrong when it has not that form.
    pub fn parse(token: &str) -> Result<Self, String> {
        match token.split_once('.') {
            Some((id, secret)) if is_token_id(id) && is_token_secret(secret) => Ok(Self {
                id: id.to_string(),
                secret: secret.to_string(),
            }),
            _ => Err(format!(
                "the bootstrap token {:?} was not of the form \"[a-z0-9]{{6}}.[a-z0-9]{{16}}\"",
                redact(token)
            )),
        }
    }

    /// A fresh random token.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let mut pick = |n: usize| -> String {
            (0..n)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect()
        };
        Self {
            id: pick(6),
            secret: pick(16),
        }
    }
}

/// The token with its secret part hidden, for messages.
fn redact(token: &str) -> String {
    match token.split_once('.') {
        Some((id, _)) => format!("{id}.<redacted>"),
        None => "<redacted>".to_string(),
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}.<redacted>)", self.id)
    }
}

/// Whether `g` is an extra group a bootstrap token may carry in `auth-extra-groups`
/// (`system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]`).
pub fn is_extra_group(g: &str) -> bool {
    g.strip_prefix("system:bootstrappers:").is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= 256
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
            && !rest.ends_with([':', '-'])
    })
}

/// `bootstrap-token-<id>`, the name of the Secret holding token `id`.
pub fn secret_name(id: &str) -> String {
    format!("{SECRET_PREFIX}{id}")
}

/// The token id a Secret name stands for, when it is a bootstrap-token name.
pub fn id_of_secret_name(name: &str) -> Option<&str> {
    name.strip_prefix(SECRET_PREFIX)
        .filter(|id| is_token_id(id))
}

/// A Secret's `data` (base64) merged with its `stringData`, decoded; undecodable values are
/// left out.
pub fn secret_data(secret: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in secret["data"].as_object().into_iter().flatten() {
        let decoded = v
            .as_str()
            .and_then(|s| STANDARD.decode(s).ok())
            .and_then(|b| String::from_utf8(b).ok());
        out.extend(decoded.map(|d| (k.clone(), d)));
    }
    for (k, v) in secret["stringData"].as_object().into_iter().flatten() {
        out.extend(v.as_str().map(|s| (k.clone(), s.to_string())));
    }
    out
}

/// Whether the decoded token data has an `expiration` at or before `now`. An unparsable
/// expiration counts as expired (the apiserver refuses to store one).
pub fn is_expired(data: &BTreeMap<String, String>, now: crate::time::Timestamp) -> bool {
    data.get("expiration")
        .is_some_and(|exp| crate::time::parse(exp).is_none_or(|t| t <= now))
}

/// Whether the decoded token data allows `usage` (`authentication`, `signing`).
pub fn allows(data: &BTreeMap<String, String>, usage: &str) -> bool {
    data.get(&format!("usage-bootstrap-{usage}"))
        .is_some_and(|v| v == "true")
}

/// A detached compact JWS over `payload` (`<header>..<signature>`), HS256 keyed by the token
/// secret with the token id as `kid`, as the bootstrap signer writes into `cluster-info`.
pub fn sign_detached(payload: &str, token: &Token) -> String {
    detached_signature(payload, &token.id, &token.secret)
}

fn detached_signature(payload: &str, id: &str, secret: &str) -> String {
    let header = serde_json::json!({"alg": "HS256", "kid": id}).to_string();
    let header = URL_SAFE_NO_PAD.encode(header);
    let tag = ring::hmac::sign(
        &hmac_key(secret),
        signing_input(&header, payload).as_bytes(),
    );
    let signature = URL_SAFE_NO_PAD.encode(tag);
    format!("{header}..{signature}")
}

/// Checks a detached JWS made by [`sign_detached`] (or upstream's bootstrap signer) over
/// `payload` with `token`; the error names what does not hold.
pub fn verify_detached(jws: &str, payload: &str, token: &Token) -> Result<(), String> {
    let mut parts = jws.split('.');
    let (Some(header), Some(""), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the signature is not a detached compact JWS".to_string());
    };
    let decoded: Value = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or("the signature's header is not base64url JSON")?;
    if decoded["alg"] != "HS256" {
        return Err(format!(
            "the signature's algorithm is {}, not HS256",
            decoded["alg"]
        ));
    }
    if decoded["kid"] != token.id.as_str() {
        return Err(format!(
            "the signature's key id is {}, not the token id {:?}",
            decoded["kid"], token.id
        ));
    }
    let sig = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| "the signature is not base64url")?;
    // `hmac::verify` compares in constant time.
    ring::hmac::verify(
        &hmac_key(&token.secret),
        signing_input(header, payload).as_bytes(),
        &sig,
    )
    .map_err(|_| "the signature does not match the token".to_string())
}

fn hmac_key(secret: &str) -> ring::hmac::Key {
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes())
}

fn signing_input(header_b64: &str, payload: &str) -> String {
    format!("{header_b64}.{}", URL_SAFE_NO_PAD.encode(payload))
}

/// The kubeconfig `cluster-info` carries, in the shape kubeadm writes it (client-go's
/// serialisation of a config holding one cluster named `""` and nothing else): the address
/// joining nodes use and the CA they pin. `server` is a URL (`https://10.0.0.1:6443`).
pub fn cluster_info_kubeconfig(server: &str, ca_pem: &str) -> String {
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n",
        ca = STANDARD.encode(ca_pem),
    )
}

/// `sha256:<hex>` of the SubjectPublicKeyInfo of the first certificate in `pem`: the pin
/// `kubeadm join --discovery-token-ca-cert-hash` takes.
pub fn ca_cert_hash(pem: &[u8]) -> Result<String, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|_| "the CA is not a PEM certificate".to_string())?;
    ca_cert_hash_der(&block.contents)
}

/// [`ca_cert_hash`] of a DER certificate (as kube-rs holds a kubeconfig's CA).
pub fn ca_cert_hash_der(der: &[u8]) -> Result<String, String> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| format!("the CA is not a certificate: {e}"))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.public_key().raw);
    Ok(format!("sha256:{}", hex(digest.as_ref())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Normalises a `--discovery-token-ca-cert-hash` value (`sha256:<64 hex>`, any case) or says
/// why it is not one.
pub fn parse_ca_cert_hash(pin: &str) -> Result<String, String> {
    let Some(hex) = pin.strip_prefix("sha256:") else {
        return Err(format!(
            "the CA pin {pin:?} must be of the form \"sha256:<hex of the SubjectPublicKeyInfo>\""
        ));
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "the CA pin {pin:?} does not hold a SHA-256 (64 hex digits)"
        ));
    }
    Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Token {
        Token::parse("abcdef.0123456789abcdef").unwrap()
    }

    #[test]
    fn tokens_parse_and_generate_in_the_upstream_form() {
        assert_eq!(token().to_string(), "abcdef.0123456789abcdef");
        for bad in [
            "abcdef",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde!",
        ] {
            let err = Token::parse(bad).unwrap_err();
            assert!(!err.contains("0123456789abcde"), "secret leaked: {err}");
        }
        let t = Token::generate();
        assert_eq!(Token::parse(&t.to_string()).unwrap(), t);
        assert_ne!(Token::generate(), t);
        assert!(!format!("{t:?}").contains(&t.secret));
    }

    #[test]
    fn detached_signatures_verify_only_with_their_token_and_payload() {
        let jws = sign_detached("payload", &token());
        assert!(jws.contains(".."));
        verify_detached(&jws, "payload", &token()).unwrap();
        let err = verify_detached(&jws, "other", &token()).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        let other = Token::parse("abcdef.aaaaaaaaaaaaaaaa").unwrap();
        assert!(verify_detached(&jws, "payload", &other).is_err());
        let other_id = Token::parse("zzzzzz.0123456789abcdef").unwrap();
        let err = verify_detached(&jws, "payload", &other_id).unwrap_err();
        assert!(err.contains("key id"), "{err}");
        assert!(verify_detached("a.b.c", "payload", &token()).is_err());
    }

    /// Upstream's test vectors (`k8s.io/cluster-bootstrap/token/jws`): the same bytes, so a
    /// kubeadm node verifies ekube's signatures and the other way round.
    #[test]
    fn signatures_match_upstream() {
        let (id, secret) = ("joshua", "my voice is my passcode");
        assert_eq!(
            detached_signature(
                "Hello from the other side. I must have called a thousand times.",
                id,
                secret
            ),
            "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..VShe2taLd-YTrmWuRkcL_8QTNDHYxQIEBsAYYiIj1_8"
        );
        assert_eq!(
            detached_signature("", id, secret),
            "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..7Ui1ALizW4jXphVUB7xUqC9vLYLL9RZeOFfVLoB7Tgk"
        );
    }

    #[test]
    fn expiry_and_usages_read_from_the_secret() {
        let secret = serde_json::json!({
            "data": {"usage-bootstrap-signing": STANDARD.encode("true")},
            "stringData": {"expiration": "2020-01-01T00:00:00Z"},
        });
        let data = secret_data(&secret);
        assert!(allows(&data, "signing"));
        assert!(!allows(&data, "authentication"));
        assert!(is_expired(&data, crate::time::Timestamp::now()));
        assert!(!is_expired(&BTreeMap::new(), crate::time::Timestamp::now()));
        assert_eq!(id_of_secret_name("bootstrap-token-abcdef"), Some("abcdef"));
        assert_eq!(id_of_secret_name("bootstrap-token-ABCDEF"), None);
    }

    #[test]
    fn cluster_info_kubeconfig_reads_back_as_a_kubeconfig() {
        let text = cluster_info_kubeconfig("https://10.0.0.1:6443", "PEM");
        let config = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(config.clusters.len(), 1);
        assert_eq!(config.clusters[0].name, "");
        let cluster = config.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://10.0.0.1:6443"));
        assert_eq!(
            cluster.certificate_authority_data.as_deref(),
            Some(STANDARD.encode("PEM").as_str())
        );
        assert!(config.auth_infos.is_empty() && config.contexts.is_empty());
    }

    #[test]
    fn ca_pins_parse() {
        let hex = "A".repeat(64);
        assert_eq!(
            parse_ca_cert_hash(&format!("sha256:{hex}")).unwrap(),
            format!("sha256:{}", "a".repeat(64))
        );
        assert!(parse_ca_cert_hash("md5:00").is_err());
        assert!(parse_ca_cert_hash("sha256:00").is_err());
    }
}
