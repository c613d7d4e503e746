//! Certificates by SNI: each TLS section's hosts get the `kubernetes.io/tls` Secret it names;
//! a host without one, a client without SNI, and a Secret that does not parse get the default
//! certificate (`--default-ssl-certificate`, else one made at start, as ingress-nginx's "Fake
//! Certificate").

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Secret;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A certificate and key pair from PEM, checked to belong together.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, String> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.crt: {e}"))?;
    if certs.is_empty() {
        return Err("tls.crt holds no PEM certificate".into());
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| format!("tls.key: {e}"))?
        .ok_or("tls.key holds no PEM private key")?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("tls.key: {e}"))?;
    let certified = CertifiedKey::new(certs, signer);
    certified
        .keys_match()
        .map_err(|e| format!("tls.key does not match tls.crt: {e}"))?;
    Ok(certified)
}

/// The pair of a `kubernetes.io/tls` Secret.
pub fn from_secret(secret: &Secret) -> Result<CertifiedKey, String> {
    let data = secret.data.as_ref();
    let field = |name: &str| {
        data.and_then(|d| d.get(name))
            .map(|b| b.0.clone())
            .ok_or_else(|| format!("the Secret has no {name}"))
    };
    certified_key(&field("tls.crt")?, &field("tls.key")?)
}

/// A self-signed certificate for when nothing else fits.
pub fn fake_certificate() -> CertifiedKey {
    let key = rcgen::KeyPair::generate().expect("generating a key");
    let mut params = rcgen::CertificateParams::new(vec!["ingress.local".to_string()])
        .expect("certificate parameters");
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "ekube Ingress Controller Fake Certificate",
    );
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Acme Co");
    let cert = params.self_signed(&key).expect("self-signing");
    certified_key(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
        .expect("a certificate made here parses")
}

/// What a handshake may be given.
#[derive(Debug, Default)]
pub struct Certificates {
    pub exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by what follows `*.`.
    pub wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl Certificates {
    pub fn insert(&mut self, host: &str, key: Arc<CertifiedKey>) {
        let host = host.to_ascii_lowercase();
        let map = match host.strip_prefix("*.") {
            Some(parent) => (&mut self.wildcard, parent.to_string()),
            None => (&mut self.exact, host),
        };
        map.0.entry(map.1).or_insert(key);
    }

    fn find(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        self.exact.get(host).cloned().or_else(|| {
            host.split_once('.')
                .and_then(|(_, parent)| self.wildcard.get(parent).cloned())
        })
    }
}

/// The resolver handshakes ask; its certificates are swapped when Secrets or Ingresses change.
#[derive(Debug)]
pub struct Resolver {
    pub certificates: RwLock<Arc<Certificates>>,
    pub default: RwLock<Arc<CertifiedKey>>,
}

impl Resolver {
    pub fn new(default: CertifiedKey) -> Self {
        Self {
            certificates: RwLock::default(),
            default: RwLock::new(Arc::new(default)),
        }
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let found = hello.server_name().and_then(|name| {
            let name = name.to_ascii_lowercase();
            self.certificates.read().expect("certificates").find(&name)
        });
        found.or_else(|| Some(self.default.read().expect("default certificate").clone()))
    }
}

/// The server side of TLS: certificates from `resolver`, HTTP/2 and HTTP/1.1 by ALPN.
pub fn server_config(resolver: Arc<Resolver>) -> rustls::ServerConfig {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the ring provider supports the default versions")
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_pair_parses_and_a_mismatch_or_garbage_is_refused() {
        let (cert, key) = pair("a.example");
        assert!(certified_key(cert.as_bytes(), key.as_bytes()).is_ok());
        let (_, other_key) = pair("b.example");
        let mismatch = certified_key(cert.as_bytes(), other_key.as_bytes()).unwrap_err();
        assert!(mismatch.contains("does not match"), "{mismatch}");
        let garbage = certified_key(
            cert.as_bytes(),
            b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(garbage.starts_with("tls.key"), "{garbage}");
        assert!(certified_key(b"", key.as_bytes()).is_err());
    }

    #[test]
    fn hosts_find_exact_then_one_label_wildcard() {
        let (cert, key) = pair("x");
        let k = Arc::new(certified_key(cert.as_bytes(), key.as_bytes()).unwrap());
        let mut c = Certificates::default();
        c.insert("A.example", k.clone());
        c.insert("*.wild.example", k);
        assert!(c.find("a.example").is_some());
        assert!(c.find("x.wild.example").is_some());
        assert!(c.find("y.x.wild.example").is_none());
        assert!(c.find("wild.example").is_none());
        let _ = fake_certificate();
    }
}
