//! The one way ekube components build a kube-rs client against the apiserver.
//!
//! A kubeconfig whose user names its client certificate by file (the kubelet's
//! `kubelet-client-current.pem`, rotated before it expires) gets a client that follows the file:
//! see [`crate::client_cert`]. Every other kubeconfig gets kube-rs's own client.
//!
//! Either way the client retries as client-go does ([`RetryAfter`]): a 429 or 5xx answer is sent
//! again only when the server says when, with `Retry-After`. kube-rs's own policy retries every
//! 429, 503 and 504 up to 15 times with a backoff growing to minutes, which turns answers that
//! are final for now (an eviction a PodDisruptionBudget refuses, upstream's 429 without
//! `Retry-After`) into a request that hangs for minutes before the caller sees them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{Request, Response, StatusCode, header};
use kube::client::{Body, ClientBuilder, ConfigExt};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tower::retry::{Policy, RetryLayer};

use crate::client_cert::FileIdentity;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading kubeconfig {path}: {source}")]
    Read {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("kubeconfig {path} is unusable: {source}")]
    Config {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("building a client from {path}: {source}")]
    Client { path: String, source: kube::Error },
    #[error("kubeconfig {path}: client certificate: {source}")]
    Identity {
        path: String,
        source: crate::client_cert::Error,
    },
}

/// Where every client this process builds from a kubeconfig connects instead of the
/// kubeconfig's server: the node's apiserver balancer, when the agent runs one.
static ROUTE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sends the clients built from now on through `url` (see [`crate::balancer`]).
pub fn route_through(url: String) {
    let _ = ROUTE.set(url);
}

/// Builds a client from a kubeconfig file, using its current context.
pub async fn from_kubeconfig(path: &Path) -> Result<kube::Client, Error> {
    from_kubeconfig_at(path, ROUTE.get().map(String::as_str)).await
}

/// Like [`from_kubeconfig`], connecting to `server` (an `https://` URL) when given instead of
/// the kubeconfig's server; the server's certificate must name that address too.
pub async fn from_kubeconfig_at(path: &Path, server: Option<&str>) -> Result<kube::Client, Error> {
    let shown = path.display().to_string();
    let kubeconfig = Kubeconfig::read_from(path).map_err(|source| Error::Read {
        path: shown.clone(),
        source,
    })?;
    let files = certificate_files(&kubeconfig);
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|source| Error::Config {
                path: shown.clone(),
                source,
            })?;
    if let Some(server) = server {
        config.cluster_url = server.parse().map_err(|e| Error::Config {
            path: shown.clone(),
            source: kube::config::KubeconfigError::ParseClusterUrl(e),
        })?;
    }
    let client_err = |source| Error::Client {
        path: shown.clone(),
        source,
    };
    let Some((cert, key)) = files else {
        return from_config(config).map_err(client_err);
    };
    let identity = FileIdentity::load(&cert, &key).map_err(|source| Error::Identity {
        path: shown.clone(),
        source,
    })?;
    following(config, &identity).map_err(client_err)
}

/// The files of the current user's client certificate and key, when it names them by path
/// (not embedded data, not a credential plugin).
pub fn certificate_files(kubeconfig: &Kubeconfig) -> Option<(PathBuf, PathBuf)> {
    let context = kubeconfig.current_context.as_ref()?;
    let user = kubeconfig
        .contexts
        .iter()
        .find(|c| &c.name == context)?
        .context
        .as_ref()?
        .user
        .as_ref()?;
    let auth = kubeconfig
        .auth_infos
        .iter()
        .find(|a| &a.name == user)?
        .auth_info
        .as_ref()?;
    if auth.exec.is_some() || auth.client_certificate_data.is_some() {
        return None;
    }
    Some((
        PathBuf::from(auth.client_certificate.as_ref()?),
        PathBuf::from(auth.client_key.as_ref()?),
    ))
}

/// A client from `kubeconfig`, or without one the pod's service account (in-cluster), as the
/// add-ons' containers run; the error says which failed.
pub async fn from_kubeconfig_or_in_cluster(
    kubeconfig: Option<&Path>,
) -> Result<kube::Client, String> {
    match kubeconfig {
        Some(path) => from_kubeconfig(path).await.map_err(|e| e.to_string()),
        None => {
            let incluster = kube::Config::incluster().map_err(|e| format!("in-cluster: {e}"))?;
            from_config(incluster).map_err(|e| e.to_string())
        }
    }
}

/// A client for `config`: kube-rs's, retrying as [`RetryAfter`] says (when
/// `config.default_retry`, as it is unless turned off).
pub fn from_config(mut config: kube::Config) -> kube::Result<kube::Client> {
    let retry = std::mem::replace(&mut config.default_retry, false);
    let namespace = config.default_namespace.clone();
    let plain = kube::Client::try_from(config)?;
    if !retry {
        return Ok(plain);
    }
    let valid_until = *plain.valid_until();
    let send = tower::service_fn(move |req: Request<Body>| {
        let plain = plain.clone();
        async move { plain.send(req).await }
    });
    let service = tower::retry::Retry::new(RetryAfter::default(), send);
    Ok(ClientBuilder::new(service, namespace)
        .with_valid_until(valid_until)
        .build())
}

/// How many times one request is sent again (client-go's default `maxRetries`).
pub const MAX_RETRIES: u32 = 10;

/// client-go's retry policy (`rest.Request`'s `checkWait`): a 429 or 5xx answer carrying
/// `Retry-After: <seconds>` is sent again after that many seconds, at most [`MAX_RETRIES`]
/// times; every other answer, `Retry-After`-less 429s and 5xxs included, goes to the caller at
/// once. Requests whose body cannot be replayed are not retried.
#[derive(Debug, Clone, Default)]
pub struct RetryAfter {
    /// Retries spent on this request (the policy is cloned for each request).
    retries: u32,
}

impl RetryAfter {
    /// The wait `response` asks for before the request is sent again, if it asks for one.
    pub fn wait<B>(response: &Response<B>) -> Option<Duration> {
        let status = response.status();
        if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
            return None;
        }
        let seconds = response
            .headers()
            .get(header::RETRY_AFTER)?
            .to_str()
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(Duration::from_secs(seconds))
    }
}

impl<Res, E> Policy<Request<Body>, Response<Res>, E> for RetryAfter {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _req: &mut Request<Body>,
        result: &mut Result<Response<Res>, E>,
    ) -> Option<Self::Future> {
        let wait = Self::wait(result.as_ref().ok()?)?;
        if self.retries >= MAX_RETRIES {
            return None;
        }
        self.retries += 1;
        Some(tokio::time::sleep(wait))
    }

    fn clone_request(&mut self, req: &Request<Body>) -> Option<Request<Body>> {
        let mut copy = Request::new(req.body().try_clone()?);
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        Some(copy)
    }
}

/// kube-rs's client stack (base URI, auth, headers, timeouts) with [`RetryAfter`] over a
/// connector that presents `identity` as it is at each handshake and closes its connections
/// when it changes.
fn following(
    config: kube::Config,
    identity: &std::sync::Arc<FileIdentity>,
) -> kube::Result<kube::Client> {
    use hyper_util::client::legacy::connect::HttpConnector;
    use tower::ServiceBuilder;

    let mut tls = config.rustls_client_config()?;
    tls.client_auth_cert_resolver = identity.clone();
    // A resumed TLS session carries the client certificate of the session it resumes, without
    // the resolver being asked: after a rotation the new connections would still be the old
    // certificate (until it expires and the apiserver refuses them). Each handshake is full.
    tls.resumption = rustls::client::Resumption::disabled();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let mut https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
            kube::Error::RustlsTls(kube::client::RustlsTlsError::InvalidServerName(e))
        })?;
        https = https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let https = https.enable_http1().wrap_connector(http);
    let mut connector = hyper_timeout::TimeoutConnector::new(identity.closing(https));
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    let http_client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryAfter::default())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(http_client);
    identity.watch_files();
    Ok(kube::Client::new(service, config.default_namespace))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use http_body_util::Full;
    use hyper::body::Bytes;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::Api;

    use super::*;

    fn answer(status: u16, retry_after: Option<&str>) -> Response<()> {
        let mut r = Response::builder().status(status);
        if let Some(secs) = retry_after {
            r = r.header(header::RETRY_AFTER, secs);
        }
        r.body(()).unwrap()
    }

    #[test]
    fn only_answers_that_say_when_are_retried() {
        let secs = |s| Some(Duration::from_secs(s));
        for (status, header, want) in [
            (429, Some("3"), secs(3)),
            (503, Some("1"), secs(1)),
            (500, Some("0"), secs(0)),
            (504, Some(" 10 "), secs(10)),
            // Upstream's refused eviction and any other final answer: no header, no retry.
            (429, None, None),
            (503, None, None),
            (504, None, None),
            // Not a delay in seconds (an HTTP date, a negative number).
            (429, Some("Fri, 04 Dec 2026 16:00:00 GMT"), None),
            (429, Some("-1"), None),
            // Only 429 and 5xx are retried, whatever the header says.
            (404, Some("1"), None),
            (409, Some("1"), None),
            (201, Some("1"), None),
        ] {
            assert_eq!(
                RetryAfter::wait(&answer(status, header)),
                want,
                "{status} Retry-After {header:?}"
            );
        }
    }

    #[tokio::test]
    async fn retries_stop_after_the_limit_and_sleep_as_asked() {
        let mut policy = RetryAfter::default();
        let mut req = Request::new(Body::empty());
        for _ in 0..MAX_RETRIES {
            let mut res: Result<_, ()> = Ok(answer(429, Some("2")));
            let before = tokio::time::Instant::now();
            let sleep = policy.retry(&mut req, &mut res).expect("retried");
            let asked = sleep.deadline() - before;
            assert!(
                asked >= Duration::from_secs(2) && asked < Duration::from_secs(3),
                "{asked:?}"
            );
        }
        let mut res: Result<_, ()> = Ok(answer(429, Some("2")));
        assert!(policy.retry(&mut req, &mut res).is_none());
    }

    /// Serves HTTP on loopback, answering each request with `respond(n)` (n counts from 1).
    async fn serve(respond: fn(u32) -> (u16, Option<&'static str>)) -> (http::Uri, Arc<AtomicU32>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let count = Arc::new(AtomicU32::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                let svc = hyper::service::service_fn(move |_req| {
                    let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                    let (status, retry_after) = respond(n);
                    let body = if status < 300 {
                        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"default"}}"#.to_string()
                    } else {
                        format!(
                            r#"{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":"answer {n}","reason":"TooManyRequests","code":{status}}}"#
                        )
                    };
                    let mut r = Response::builder()
                        .status(status)
                        .header(header::CONTENT_TYPE, "application/json");
                    if let Some(secs) = retry_after {
                        r = r.header(header::RETRY_AFTER, secs);
                    }
                    async move { r.body(Full::new(Bytes::from(body))) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc),
                );
            }
        });
        (uri, count)
    }

    fn config_maps(uri: http::Uri) -> Api<ConfigMap> {
        Api::namespaced(from_config(kube::Config::new(uri)).unwrap(), "default")
    }

    #[tokio::test]
    async fn a_refusal_without_retry_after_reaches_the_caller_at_once() {
        let (uri, count) = serve(|_| (429, None)).await;
        let api = config_maps(uri);
        let err = tokio::time::timeout(Duration::from_secs(10), api.get("c"))
            .await
            .expect("the 429 answered within 10s, not retried")
            .expect_err("refused");
        let kube::Error::Api(status) = err else {
            panic!("not an API error: {err}");
        };
        assert_eq!((status.code, status.message.as_str()), (429, "answer 1"));
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_answer_with_retry_after_is_retried_until_it_succeeds() {
        let (uri, count) = serve(|n| if n < 3 { (503, Some("0")) } else { (200, None) }).await;
        let cm = config_maps(uri).get("c").await.expect("third answer");
        assert_eq!(cm.metadata.name.as_deref(), Some("c"));
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn retries_end_after_the_limit() {
        let (uri, count) = serve(|_| (429, Some("0"))).await;
        let err = config_maps(uri).get("c").await.expect_err("refused");
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 429),
            "{err}"
        );
        assert_eq!(count.load(Ordering::SeqCst), 1 + MAX_RETRIES);
    }

    #[tokio::test]
    async fn turning_retries_off_is_honoured() {
        let (uri, count) = serve(|_| (429, Some("0"))).await;
        let mut config = kube::Config::new(uri);
        config.default_retry = false;
        let api: Api<ConfigMap> = Api::namespaced(from_config(config).unwrap(), "default");
        api.get("c").await.expect_err("refused");
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }
}
