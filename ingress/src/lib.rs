//! `ekube ingress`: the cluster's HTTP(S) entry point, run as the `ekube-ingress` add-on
//! (DESIGN.md §11) on every node's own network, on ports 80 and 443.
//!
//! It serves the `networking.k8s.io/v1` Ingresses of the IngressClasses whose controller is
//! `ekube.io/ingress` ([`watch`]), routing each request as the API defines it ([`routes`]) to
//! a ready endpoint of its backend ([`proxy`]), with certificates chosen by SNI from
//! `kubernetes.io/tls` Secrets ([`tls`]). Beside it, as ingress-nginx serves them on port 10254:
//! Prometheus metrics on `/metrics` and `/healthz`, which turns 200 once the cluster is listed.
//! The proxy listens only from then on, so it never answers from an empty table.

mod http;
pub mod metrics;
pub mod proxy;
pub mod routes;
pub mod tls;
mod watch;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use ekube_api::serve::{self, Limits};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch as signal;

pub use watch::DEFAULT_CLASS;

use crate::metrics::Metrics;
use crate::proxy::{Conn, Proxy};
use crate::tls::Resolver;

/// The controller name of ekube's IngressClass.
pub const CONTROLLER: &str = "ekube.io/ingress";

/// Flags of `ekube ingress`.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Kubeconfig of the apiserver; without it, the pod's service account (in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The address the HTTP and HTTPS ports are bound on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// The plain HTTP port.
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,
    /// The HTTPS port.
    #[arg(long, default_value_t = 443)]
    pub https_port: u16,
    /// Where `/metrics` and `/healthz` are served.
    #[arg(long, default_value = "0.0.0.0:10254")]
    pub metrics_bind_address: SocketAddr,
    /// The IngressClass controller name this controller serves.
    #[arg(long, default_value = CONTROLLER)]
    pub controller_class: String,
    /// A `kubernetes.io/tls` Secret (`namespace/name`) served when no Ingress's certificate
    /// matches; without it, a self-signed one.
    #[arg(long)]
    pub default_ssl_certificate: Option<String>,
    /// An address to write into the Ingresses' `status.loadBalancer` (repeatable); without
    /// it, the node addresses of the controller's running pods.
    #[arg(long)]
    pub publish_status_address: Vec<String>,
    /// The label selector of the controller's own pods (in `--namespace`).
    #[arg(long, default_value = "app.kubernetes.io/name=ekube-ingress")]
    pub publish_selector: String,
    /// The controller's namespace (the downward API gives it to the pods).
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// Write an access log line per request to standard output.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub access_log: bool,
}

/// Why the controller stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to the apiserver: {0}")]
    Client(String),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("--default-ssl-certificate {0:?} is not namespace/name")]
    DefaultCertificate(String),
    #[error("{0}")]
    Watch(String),
}

/// Serves until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    if let Some(name) = &config.default_ssl_certificate
        && name
            .split_once('/')
            .is_none_or(|(ns, n)| ns.is_empty() || n.is_empty())
    {
        return Err(Error::DefaultCertificate(name.clone()));
    }
    let client = ekube_api::client::from_kubeconfig_or_in_cluster(config.kubeconfig.as_deref())
        .await
        .map_err(Error::Client)?;
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })
    };
    let http_listener = bind(SocketAddr::new(config.bind_address, config.http_port)).await?;
    let https_listener = bind(SocketAddr::new(config.bind_address, config.https_port)).await?;
    let metrics_listener = bind(config.metrics_bind_address).await?;

    let metrics = Arc::new(Metrics::default());
    let proxy = Arc::new(Proxy::new(
        metrics.clone(),
        config.access_log,
        config.https_port,
    ));
    let resolver = Arc::new(Resolver::new(tls::fake_certificate()));
    let tls_config = Arc::new(tls::server_config(resolver.clone()));
    let (ready_tx, mut ready) = signal::channel(false);
    let (stop_tx, stop) = signal::channel(false);
    let metrics_task = tokio::spawn(http::serve(metrics_listener, metrics, stop.clone()));
    let serving = {
        let (proxy, stop) = (proxy.clone(), stop.clone());
        async move {
            if ready.wait_for(|r| *r).await.is_err() {
                return;
            }
            tracing::info!(
                http = %http_listener.local_addr().map_or("?".into(), |a| a.to_string()),
                https = %https_listener.local_addr().map_or("?".into(), |a| a.to_string()),
                "serving Ingresses"
            );
            tokio::join!(
                serve(http_listener, proxy.clone(), None, stop.clone()),
                serve(https_listener, proxy, Some(tls_config), stop),
            );
        }
    };
    let serving = tokio::spawn(serving);
    let result = tokio::select! {
        r = watch::run(client, config, proxy, resolver, ready_tx) => r,
        () = shutdown => Ok(()),
    };
    let _ = stop_tx.send(true);
    let _ = metrics_task.await;
    serving.abort();
    result
}

/// Serves one listener until `stop`: each connection HTTP/1.1 or HTTP/2 (by preface, or by
/// ALPN under TLS), with upgrades, within the hardened accept loop the apiserver uses.
async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stop: signal::Receiver<bool>,
) {
    let port = listener.local_addr().map_or(0, |a| a.port());
    let limits = Limits::default();
    let builder = Arc::new(serve::http_builder(&limits));
    let connection = move |https: bool| {
        let (proxy, builder) = (proxy.clone(), builder.clone());
        move |client: SocketAddr| {
            let proxy = proxy.clone();
            let conn = Conn {
                client,
                https,
                port,
            };
            let service = service_fn(move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, std::convert::Infallible>(proxy.handle(req, conn).await) }
            });
            (builder.clone(), service)
        }
    };
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    match tls {
        None => {
            let connection = connection(false);
            serve::serve_tcp(listener, limits, shutdown, move |tcp, client, _| {
                let (builder, service) = connection(client);
                async move {
                    if let Err(e) = builder
                        .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                        .await
                    {
                        tracing::debug!(%client, error = %e, "connection");
                    }
                }
            })
            .await
        }
        Some(tls) => {
            let connection = connection(true);
            serve::serve(listener, tls, limits, shutdown, move |stream, client, _| {
                let (builder, service) = connection(client);
                async move {
                    if let Err(e) = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!(%client, error = %e, "connection");
                    }
                }
            })
            .await
        }
    }
}
