//! The HTTPS listener: TLS with optional client certificates, HTTP/1.1 and HTTP/2, one task per
//! connection, requests handed to [`crate::handler`] with the authenticated user. The accept
//! loop and its limits (handshake and header timeouts, connection cap, accept back-off) are
//! [`ekube_api::serve`], shared with the kubelet API.

use std::net::SocketAddr;
use std::sync::Arc;

use ekube_api::serve::{ConnectionAbort, Limits, http_builder};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use crate::ApiServer;
use crate::auth::User;
use crate::errors::ApiError;

pub fn tls_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("serving certificate: {e}"))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| format!("serving key: {e}"))?
        .ok_or("serving key: no private key found")?;
    let mut roots = RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots
            .add(ca.map_err(|e| format!("CA certificate: {e}"))?)
            .map_err(|e| format!("CA certificate: {e}"))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("client certificate verifier: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| format!("serving certificate: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The connection limits from the flags.
pub fn limits(config: &crate::Config) -> Limits {
    Limits {
        max_connections: config.max_connections,
        ..Limits::default()
    }
}

pub async fn serve(
    api: Arc<ApiServer>,
    listener: TcpListener,
    tls: rustls::ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let limits = limits(&api.config);
    let health = api.clone();
    let shutdown = async move {
        shutdown.await;
        // `/readyz` fails from here on for connections still open.
        health.health.begin_shutdown();
    };
    ekube_api::serve::serve(
        listener,
        Arc::new(tls),
        limits,
        shutdown,
        move |tls, peer, abort| {
            let api = api.clone();
            async move {
                if let Err(e) = connection(api, &limits, tls, peer, abort).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
        },
    )
    .await;
}

async fn connection(
    api: Arc<ApiServer>,
    limits: &Limits,
    tls: TlsStream<TcpStream>,
    peer: SocketAddr,
    abort: ConnectionAbort,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
    let user = leaf.and_then(User::from_certificate);
    let expires = leaf.and_then(|c| ekube_api::client_cert::validity(c).map(|(_, until)| until));
    tracing::trace!(%peer, user = ?user, "connection");
    let service = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(abort.clone());
        req.extensions_mut().insert(crate::proxy::Peer(peer));
        let (api, user) = (api.clone(), user.clone());
        async move {
            // Upstream's x509 authenticator verifies the client certificate on every request:
            // a connection that outlives its certificate is refused from then on.
            if expires.is_some_and(|t| std::time::SystemTime::now() > t) {
                tracing::debug!(%peer, user = ?user, "client certificate expired on a live connection");
                let expired = ApiError::unauthorized_because("the client certificate has expired");
                return Ok(crate::handler::error_response(&expired));
            }
            crate::handler::handle(api, user, req).await
        }
    });
    http_builder(limits)
        .serve_connection_with_upgrades(TokioIo::new(tls), service)
        .await
}
