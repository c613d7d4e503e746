//! `ekube dns`: the cluster's DNS server, run as the `coredns` add-on (DESIGN.md §11).
//!
//! It answers the cluster's names from a watch cache of Services and EndpointSlices
//! ([`records`], [`resolve`]), forwards every other name to the node's upstream resolvers with
//! a small cache ([`forward`]), over UDP and TCP ([`server`]). Beside it, as CoreDNS serves
//! them: Prometheus metrics on `:9153/metrics`, liveness on `:8080/health` and readiness on
//! `:8181/ready`, which turns 200 once both caches have listed.

pub mod forward;
mod http;
pub mod metrics;
pub mod records;
pub mod resolve;
pub mod server;
mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tokio::net::TcpListener;
use tokio::sync::watch as signal;

use crate::forward::Forwarder;
use crate::metrics::Metrics;
use crate::records::Records;
use crate::resolve::Zone;
use crate::server::Handler;

/// Flags of `ekube dns`.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Kubeconfig of the apiserver; without it, the pod's service account (in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Where queries are answered, over UDP and TCP.
    #[arg(long, default_value = "0.0.0.0:53")]
    pub listen: SocketAddr,
    /// An upstream resolver for names outside the cluster (repeatable, `IP` or `IP:port`).
    /// Default: the nameservers of `--resolv-conf`.
    #[arg(long = "upstream", value_name = "ADDR", value_parser = parse_upstream)]
    pub upstreams: Vec<SocketAddr>,
    /// The resolver configuration whose nameservers are the default upstreams.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// TTL of the cluster's answers, seconds.
    #[arg(long, default_value_t = 30)]
    pub ttl: u32,
    /// Where `/metrics` is served.
    #[arg(long, default_value = "0.0.0.0:9153")]
    pub metrics_bind_address: SocketAddr,
    /// Where `/health` is served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub health_bind_address: SocketAddr,
    /// Where `/ready` is served.
    #[arg(long, default_value = "0.0.0.0:8181")]
    pub ready_bind_address: SocketAddr,
}

/// Why the server stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--cluster-domain {0:?} is not a DNS domain")]
    Domain(String),
    #[error("reading {path}: {source}")]
    ResolvConf {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("connecting to the apiserver: {0}")]
    Client(String),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Watch(String),
}

fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .or_else(|_| {
            s.parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .map_err(|_| format!("{s:?} is neither IP nor IP:port"))
}

impl Config {
    /// The zone, checked.
    fn zone(&self) -> Result<Zone, Error> {
        let domain = self
            .cluster_domain
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if domain.is_empty() || hickory_proto::rr::Name::from_ascii(&domain).is_err() {
            return Err(Error::Domain(self.cluster_domain.clone()));
        }
        Ok(Zone {
            domain,
            ttl: self.ttl,
        })
    }

    /// `--upstream`, or the nameservers of `--resolv-conf`. None at all is allowed (an
    /// air-gapped node): the cluster's names are still served, others answer SERVFAIL.
    fn upstreams(&self) -> Result<Vec<SocketAddr>, Error> {
        if !self.upstreams.is_empty() {
            return Ok(self.upstreams.clone());
        }
        let text =
            std::fs::read_to_string(&self.resolv_conf).map_err(|source| Error::ResolvConf {
                path: self.resolv_conf.clone(),
                source,
            })?;
        let found = forward::nameservers(&text);
        if found.is_empty() {
            tracing::warn!(
                resolv_conf = %self.resolv_conf.display(),
                "no nameserver and no --upstream: names outside the cluster answer SERVFAIL"
            );
        }
        Ok(found)
    }
}

/// Serves until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let zone = config.zone()?;
    let upstreams = config.upstreams()?;
    let client = ekube_api::client::from_kubeconfig_or_in_cluster(config.kubeconfig.as_deref())
        .await
        .map_err(Error::Client)?;
    let (udp, tcp) = server::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })
    };
    let metrics_listener = bind(config.metrics_bind_address).await?;
    let health_listener = bind(config.health_bind_address).await?;
    let ready_listener = bind(config.ready_bind_address).await?;
    tracing::info!(
        listen = %config.listen,
        zone = %zone.domain,
        upstreams = ?upstreams,
        "serving DNS"
    );

    let records = Arc::new(RwLock::new(Records::default()));
    let metrics = Arc::new(Metrics::default());
    let handler = Arc::new(Handler {
        zone,
        records: records.clone(),
        forwarder: Forwarder::new(upstreams),
        metrics: metrics.clone(),
    });
    let (stop_tx, stop) = signal::channel(false);
    let tasks = [
        tokio::spawn(server::serve_udp(udp, handler.clone(), stop.clone())),
        tokio::spawn(server::serve_tcp(tcp, handler, stop.clone())),
        tokio::spawn(http::serve(metrics_listener, metrics.clone(), stop.clone())),
        tokio::spawn(http::serve(health_listener, metrics.clone(), stop.clone())),
        tokio::spawn(http::serve(ready_listener, metrics.clone(), stop.clone())),
    ];
    let result = tokio::select! {
        r = watch::run(client, records, metrics) => r,
        () = shutdown => Ok(()),
    };
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    result
}
