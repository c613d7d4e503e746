//! Authentication of kubelet API clients, as the upstream kubelet does it with
//! `--client-ca-file` and `--anonymous-auth`.
//!
//! The TLS handshake asks for a client certificate but does not insist on one, and accepts
//! whatever chain is offered as long as the client proves it holds the key (the handshake
//! signatures are still checked). Whether the chain leads to the client CA is decided per
//! connection afterwards, so that a missing or foreign certificate earns the same
//! `401 Unauthorized` answer the upstream kubelet gives rather than a TLS alert. Requests
//! without a valid certificate are let through only with `--anonymous-auth=true`.
//!
//! A valid certificate names its user (CN) and groups (O); bearer tokens, anonymous requests and
//! authorization are [`super::access`]'s.

use std::sync::Arc;

use rustls::DistinguishedName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};

use super::Error;
use ekube_api::user::User;

/// Offers client authentication in the handshake without requiring it, and remembers the CA
/// to check chains against afterwards.
#[derive(Debug)]
pub struct ClientAuth {
    /// Verifies chains against the client CA; `None` when no CA is configured (then no
    /// certificate is valid).
    inner: Option<Arc<dyn ClientCertVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientAuth {
    /// Client authentication against the CA certificates `ca` (none: every client is anonymous).
    pub fn new(
        ca: &[CertificateDer<'static>],
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Self, Error> {
        let inner = if ca.is_empty() {
            None
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for c in ca {
                roots
                    .add(c.clone())
                    .map_err(|e| Error::Tls(format!("client CA: {e}")))?;
            }
            Some(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .allow_unauthenticated()
                .build()
                .map_err(|e| Error::Tls(format!("client CA: {e}")))?,
            )
        };
        Ok(Self { inner, provider })
    }

    /// The user of `chain` (the peer certificates of a finished handshake) when it leads to
    /// the client CA; `None` for no or a foreign certificate.
    pub fn identify(&self, chain: Option<&[CertificateDer<'static>]>) -> Option<User> {
        match (chain, &self.inner) {
            (Some([leaf, intermediates @ ..]), Some(inner))
                if inner
                    .verify_client_cert(leaf, intermediates, UnixTime::now())
                    .is_ok() =>
            {
                User::from_certificate(leaf)
            }
            _ => None,
        }
    }
}

impl ClientCertVerifier for ClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner
            .as_ref()
            .map(|i| i.root_hint_subjects())
            .unwrap_or(&[])
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Judged after the handshake by `identify`.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A CA and a client certificate it signed.
    fn ca_and_client() -> (CertificateDer<'static>, CertificateDer<'static>) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "test-ca");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut client = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        client
            .distinguished_name
            .push(rcgen::DnType::CommonName, "someone");
        client
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "team");
        client.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client.signed_by(&key, &ca_cert, &ca_key).unwrap();
        (ca_cert.der().clone(), client_cert.der().clone())
    }

    #[test]
    fn only_certificates_of_the_client_ca_identify() {
        crate::runtime::install_crypto();
        let (ca, client) = ca_and_client();
        let (other_ca, stranger) = ca_and_client();
        let auth = ClientAuth::new(&[ca], provider()).unwrap();
        let user = auth.identify(Some(std::slice::from_ref(&client))).unwrap();
        assert_eq!(
            (user.name.as_str(), user.groups.as_slice()),
            ("someone", &["team".to_string()][..])
        );
        assert_eq!(auth.identify(Some(std::slice::from_ref(&stranger))), None);
        assert_eq!(auth.identify(None), None);
        let auth = ClientAuth::new(&[other_ca], provider()).unwrap();
        assert_eq!(auth.identify(Some(std::slice::from_ref(&client))), None);
        let none = ClientAuth::new(&[], provider()).unwrap();
        assert_eq!(none.identify(Some(std::slice::from_ref(&client))), None);
    }
}
