//! `ekube dashboard`: the cluster's web UI, run as the dashboard add-on (DESIGN.md §11) behind
//! Service `kubernetes-dashboard` (443) in namespace `kubernetes-dashboard`, and reached as the
//! Kubernetes Dashboard is, through `kubectl proxy` at
//! `/api/v1/namespaces/kubernetes-dashboard/services/https:kubernetes-dashboard:/proxy/`.
//!
//! It serves one page of plain HTML, CSS and JavaScript ([`assets`]) over HTTPS, with a
//! certificate it makes at start (the Kubernetes Dashboard's `--auto-generate-certificates`),
//! and relays the page's API calls to the apiserver with the bearer token the person signed in
//! with ([`relay`]). The dashboard has no identity of its own: its pod mounts no ServiceAccount
//! token, and a call without a token is refused before it leaves the dashboard.

pub mod assets;
pub mod relay;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use ekube_api::serve::{self, Limits};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::relay::Relay;

/// Where the in-cluster CA bundle is mounted (the add-on mounts ConfigMap `kube-root-ca.crt`
/// there, as kubelets project it into pods that do mount a ServiceAccount token).
pub const DEFAULT_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// Flags of `ekube dashboard`.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// The address the HTTPS port is bound on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// The HTTPS port.
    #[arg(long, default_value_t = 8443)]
    pub port: u16,
    /// The apiserver's URL; without it, the in-cluster one
    /// (`https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`).
    #[arg(long)]
    pub apiserver_host: Option<String>,
    /// The CA bundle that verifies the apiserver's certificate.
    #[arg(long, default_value = DEFAULT_CA)]
    pub certificate_authority: PathBuf,
}

/// Why the dashboard stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no --apiserver-host, and KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set (not in a pod)"
    )]
    NoApiserver,
    #[error("--apiserver-host {0:?} is not a URL: {1}")]
    BadApiserver(String, String),
    #[error("reading --certificate-authority {path}: {source}")]
    Ca {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("connecting to the apiserver: {0}")]
    Client(String),
    #[error("making the serving certificate: {0}")]
    Certificate(String),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The apiserver URL from the flag or the pod's environment.
fn apiserver_url(config: &Config) -> Result<http::Uri, Error> {
    let url = match &config.apiserver_host {
        Some(url) => url.clone(),
        None => {
            let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| Error::NoApiserver)?;
            let port = std::env::var("KUBERNETES_SERVICE_PORT").map_err(|_| Error::NoApiserver)?;
            // An IPv6 service address goes in brackets.
            if host.contains(':') {
                format!("https://[{host}]:{port}")
            } else {
                format!("https://{host}:{port}")
            }
        }
    };
    url.parse()
        .map_err(|e: http::uri::InvalidUri| Error::BadApiserver(url.clone(), e.to_string()))
}

/// A client of the apiserver that authenticates as nobody: every request it sends carries the
/// viewer's own token ([`relay`]).
fn anonymous_client(config: &Config) -> Result<kube::Client, Error> {
    let url = apiserver_url(config)?;
    let ca_error = |source| Error::Ca {
        path: config.certificate_authority.clone(),
        source,
    };
    let pem = std::fs::read(&config.certificate_authority).map_err(ca_error)?;
    let roots = rustls_pemfile::certs(&mut pem.as_slice())
        .map(|cert| cert.map(|der| der.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ca_error)?;
    if roots.is_empty() {
        return Err(ca_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no PEM certificate in it",
        )));
    }
    let mut kube_config = kube::Config::new(url);
    // The roots to start with, and the file they are re-read from when the CA rotates.
    kube_config.root_cert = Some(roots);
    kube_config.root_cert_file = Some(config.certificate_authority.clone());
    ekube_api::client::from_config(kube_config).map_err(|e| Error::Client(e.to_string()))
}

/// A self-signed serving certificate for the Service's names.
fn serving_config() -> Result<rustls::ServerConfig, Error> {
    let names = [
        "kubernetes-dashboard",
        "kubernetes-dashboard.kubernetes-dashboard",
        "kubernetes-dashboard.kubernetes-dashboard.svc",
        "localhost",
    ];
    serve::self_signed(names.map(String::from).to_vec()).map_err(Error::Certificate)
}

/// Serves until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let relay = Arc::new(Relay::new(anonymous_client(&config)?));
    let tls = Arc::new(serving_config()?);
    let addr = SocketAddr::new(config.bind_address, config.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    tracing::info!(%addr, "serving the dashboard");
    let limits = Limits::default();
    let builder = Arc::new(serve::http_builder(&limits));
    serve::serve(listener, tls, limits, shutdown, move |tls, peer, _| {
        let (relay, builder) = (relay.clone(), builder.clone());
        async move {
            let service = service_fn(move |req| {
                let relay = relay.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&relay, req).await) }
            });
            if let Err(e) = builder.serve_connection(TokioIo::new(tls), service).await {
                tracing::debug!(%peer, error = %e, "connection");
            }
        }
    })
    .await;
    Ok(())
}

/// The page's files, or a relayed API call.
async fn handle(
    relay: &Relay,
    req: http::Request<hyper::body::Incoming>,
) -> http::Response<relay::Body> {
    if relay::relayed(req.uri().path()) {
        return relay.handle(req).await;
    }
    assets::serve(req.method(), req.uri().path())
}
