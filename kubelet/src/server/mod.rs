//! The kubelet API (DESIGN.md §3: HTTPS on `:10250`): what the apiserver proxies `pods/log`,
//! `pods/exec`, `pods/attach` and `pods/portforward` to.
//!
//! Routes follow the upstream kubelet: `/containerLogs/{ns}/{pod}/{container}` ([`logs`]),
//! `/pods`, `/stats/summary` and `/metrics` ([`stats`]), `/metrics/resource` ([`resource`]),
//! `/exec/{ns}/{pod}/{container}`, `/attach/{ns}/{pod}/{container}`, `/portForward/{ns}/{pod}`
//! and `/run/{ns}/{pod}/{container}` ([`streaming`]), and `/healthz`.
//! Every request is authenticated (a client certificate of the client CA, a bearer token the
//! apiserver vouches for, or anonymous with `--anonymous-auth`; [`auth`], [`access`]) and then
//! authorized by the apiserver as `nodes/<subresource>` of this node ([`access`], [`ekube_api::review`]).
//! Pods and containers are found through CRI ([`lookup`]), and exec, attach and port-forward
//! go through CRI too: the runtime's streaming server serves them and this API proxies the
//! client to it, so any CRI runtime on the node's socket serves them.

mod access;
mod auth;
mod logs;
mod lookup;
mod resource;
mod stats;
mod streaming;
mod tls;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ekube_api::serve::{Limits, http_builder};
use http::{Method, Request, Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::runtime::RuntimeClient;

/// Flags of the kubelet API (upstream names), flattened into the kubelet's.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
pub struct Config {
    /// IP address the kubelet API listens on (all interfaces by default).
    #[arg(long = "address", default_value = "0.0.0.0")]
    pub address: IpAddr,
    /// Port of the kubelet API.
    #[arg(long = "port", default_value_t = 10250)]
    pub port: u16,
    /// Serving certificate (PEM); absent: a self-signed one for the node's name and IP is
    /// generated under `--root-dir`/pki.
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    /// Key of `--tls-cert-file` (PEM).
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,
    /// CA bundle (PEM) client certificates must chain to; default: the CA of `--kubeconfig`.
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// Serve requests that bring no valid client certificate (as `system:anonymous`).
    #[arg(
        long,
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub anonymous_auth: bool,
    /// Authenticate bearer tokens by asking the apiserver (TokenReview).
    #[arg(
        long,
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub authentication_token_webhook: bool,
    /// How long the apiserver's answer about a token is kept (an unknown token's: 30s).
    #[arg(long, default_value = "2m", value_parser = ekube_api::flags::parse_duration)]
    pub authentication_token_webhook_cache_ttl: Duration,
    /// Who decides what an authenticated client may do: `Webhook` asks the apiserver
    /// (SubjectAccessReview for `nodes/<subresource>`), `AlwaysAllow` allows everything.
    #[arg(long, value_enum, default_value = "Webhook")]
    pub authorization_mode: access::AuthorizationMode,
    /// How long an allowing answer of the apiserver is kept.
    #[arg(long, default_value = "5m", value_parser = ekube_api::flags::parse_duration)]
    pub authorization_webhook_cache_authorized_ttl: Duration,
    /// How long a denying answer of the apiserver is kept.
    #[arg(long, default_value = "30s", value_parser = ekube_api::flags::parse_duration)]
    pub authorization_webhook_cache_unauthorized_ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            address: IpAddr::from([0, 0, 0, 0]),
            port: 10250,
            tls_cert_file: None,
            tls_private_key_file: None,
            client_ca_file: None,
            anonymous_auth: false,
            authentication_token_webhook: true,
            authentication_token_webhook_cache_ttl: Duration::from_secs(120),
            authorization_mode: access::AuthorizationMode::Webhook,
            authorization_webhook_cache_authorized_ttl: Duration::from_secs(300),
            authorization_webhook_cache_unauthorized_ttl: Duration::from_secs(30),
        }
    }
}

/// What the API serves: this node's runtime and where its pods' logs are.
#[derive(Clone)]
pub struct Node {
    /// The node's name (in the self-signed certificate).
    pub name: String,
    /// The node's InternalIP (in the self-signed certificate).
    pub ip: Option<IpAddr>,
    /// `<ns>_<pod>_<uid>/<container>/<restart>.log` live here.
    pub pod_logs_dir: PathBuf,
    /// Where a self-signed serving certificate is kept.
    pub cert_dir: PathBuf,
    /// CRI client of the runtime.
    pub runtime: RuntimeClient,
    /// The pods the kubelet runs (by UID), newest version each, for `/pods`.
    pub pods: PodSet,
    /// Cgroup under which pods get `pod<uid>/<container id>` (`--cgroup-root`), for stats.
    pub cgroup_root: String,
    /// CPU counters of the previous `/stats/summary`, for rates.
    pub cpu_samples: stats::Samples,
    /// The client CA (DER) when `--client-ca-file` is not given: the kubeconfig's CA.
    pub kubeconfig_ca: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// The kubelet's apiserver client, for TokenReviews and SubjectAccessReviews.
    pub client: kube::Client,
}

/// The pods a kubelet runs, by UID: each worker's view of its pod (`None` once it is gone).
pub type PodSet = Arc<
    std::sync::Mutex<
        std::collections::BTreeMap<
            String,
            tokio::sync::watch::Receiver<Option<k8s_openapi::api::core::v1::Pod>>,
        >,
    >,
>;

/// Errors of the kubelet API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving certificate: {0}")]
    Tls(String),
}

pub(crate) use crate::respond::{Body, Finish, full, text};

/// Serves the kubelet API until `shutdown`.
pub async fn serve(
    config: Config,
    node: Node,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    crate::runtime::install_crypto();
    let ca = match &config.client_ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| Error::Tls(format!("reading {}: {e}", path.display())))?;
            rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?
        }
        None => node.kubeconfig_ca.clone(),
    };
    if ca.is_empty() && !config.anonymous_auth {
        tracing::warn!(
            "no client CA (--client-ca-file, kubeconfig) and --anonymous-auth=false: every request will be refused"
        );
    }
    let client_auth = Arc::new(auth::ClientAuth::new(
        &ca,
        Arc::new(rustls::crypto::ring::default_provider()),
    )?);
    let gate = Arc::new(access::Gate {
        reviews: ekube_api::review::Cached::new(
            ekube_api::review::ApiReviewer(node.client.clone()),
            ekube_api::review::Ttls {
                authenticated: config.authentication_token_webhook_cache_ttl,
                // Upstream's kubelet keeps "unknown token" answers this long.
                unauthenticated: Duration::from_secs(30),
                authorized: config.authorization_webhook_cache_authorized_ttl,
                unauthorized: config.authorization_webhook_cache_unauthorized_ttl,
            },
        ),
        token_webhook: config.authentication_token_webhook,
        mode: config.authorization_mode,
        anonymous: config.anonymous_auth,
        node: node.name.clone(),
    });
    let tls = tls::server_config(&config, &node, client_auth.clone())?;
    let addr = SocketAddr::new(config.address, config.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    tracing::info!(%addr, mode = ?config.authorization_mode, "kubelet API serving");
    let node = Arc::new(node);
    let limits = Limits::default();
    ekube_api::serve::serve(
        listener,
        Arc::new(tls),
        limits,
        shutdown,
        move |tls, peer, _abort| {
            let (node, client_auth, gate) = (node.clone(), client_auth.clone(), gate.clone());
            async move {
                let certificate_user =
                    Arc::new(client_auth.identify(tls.get_ref().1.peer_certificates()));
                tracing::debug!(%peer, user = ?certificate_user.as_ref().as_ref().map(|u| &u.name), "kubelet API client");
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (node, gate, certificate_user) =
                        (node.clone(), gate.clone(), certificate_user.clone());
                    async move {
                        let checked = gate
                            .check(
                                certificate_user.as_ref().as_ref(),
                                req.method(),
                                req.uri().path(),
                                req.headers(),
                            )
                            .await;
                        Ok::<_, Infallible>(match checked {
                            Ok(user) => {
                                tracing::debug!(user = %user.name, path = %req.uri().path(), "kubelet API request allowed");
                                route(node, req).await
                            }
                            Err(refusal) => refusal,
                        })
                    }
                });
                if let Err(e) = http_builder(&limits)
                    .serve_connection_with_upgrades(TokioIo::new(tls), service)
                    .await
                {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
        },
    )
    .await;
    Ok(())
}

/// The parsed query string, keeping repeated keys (`command=sh&command=-c`).
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(q: Option<&str>) -> Self {
        Self(
            q.unwrap_or_default()
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn all(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A boolean flag given under any of `names` (`true`, `1`).
    pub(crate) fn flag(&self, names: &[&str]) -> bool {
        names
            .iter()
            .any(|n| matches!(self.get(n), Some("true" | "1" | "True")))
    }
}

/// Percent-decoding with `+` as a space (form encoding).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tracing::instrument(skip_all, fields(method = %req.method(), path = %req.uri().path()))]
async fn route(node: Arc<Node>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let segs: Vec<String> = path.trim_matches('/').split('/').map(decode).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let query = Query::parse(req.uri().query());
    let get_or_post = matches!(*req.method(), Method::GET | Method::POST);
    let response = match (req.method(), segs.as_slice()) {
        (&Method::GET, ["healthz"]) => text(StatusCode::OK, "ok"),
        (&Method::GET, ["pods"]) => stats::pods(&node),
        (&Method::GET, ["stats", "summary"]) => stats::summary(&node).await,
        (&Method::GET, ["metrics"]) => stats::metrics(&node).await,
        (&Method::GET, ["metrics", "resource"]) => resource::serve(&node).await,
        (&Method::GET, ["containerLogs", ns, pod, container]) => {
            logs::serve(&node, ns, pod, container, &query).await
        }
        (_, ["exec", ns, pod, container]) if get_or_post => {
            let at = (*ns, *pod, *container);
            streaming::serve_session(&node, streaming::Session::Exec, at, &query, req).await
        }
        (&Method::POST, ["run", ns, pod, container]) => {
            streaming::serve_run(&node, ns, pod, container, &query).await
        }
        (_, ["attach", ns, pod, container]) if get_or_post => {
            let at = (*ns, *pod, *container);
            streaming::serve_session(&node, streaming::Session::Attach, at, &query, req).await
        }
        (_, ["portForward", ns, pod]) if get_or_post => {
            streaming::serve_port_forward(&node, ns, pod, &query, req).await
        }
        _ => text(StatusCode::NOT_FOUND, format!("404 page not found: {path}")),
    };
    tracing::debug!(status = response.status().as_u16(), "kubelet API request");
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keeps_repeated_commands_and_decodes() {
        let q = Query::parse(Some(
            "command=sh&command=-c&command=echo+%24X&container=side&stdin=true&tty=1&output=1",
        ));
        assert_eq!(q.all("command"), ["sh", "-c", "echo $X"]);
        assert_eq!(q.get("container"), Some("side"));
        assert!(q.flag(&["stdin", "input"]) && q.flag(&["tty"]) && q.flag(&["stdout", "output"]));
        assert!(!q.flag(&["stderr", "error"]));
        assert_eq!(decode("a%2"), "a%2");
    }
}
