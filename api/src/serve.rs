//! The accept loop the HTTPS servers (the apiserver on `:6443`, the kubelet API on `:10250`, the
//! ingress on `:443`) and the ingress's plain HTTP run, hardened against clients that connect
//! and then misbehave.
//!
//! - A TLS handshake that has not finished after [`Limits::handshake_timeout`] is dropped, so
//!   connections that never speak cannot pile up (upstream: 10 s).
//! - HTTP/1 request headers must arrive within [`Limits::header_read_timeout`] (upstream's
//!   `ReadHeaderTimeout`, 32 s), which ends slowloris clients.
//! - At most [`Limits::max_connections`] connections are open at once; past that the loop stops
//!   accepting and new clients wait in the kernel's backlog.
//! - A failing `accept` (EMFILE, ENFILE, ENOBUFS…) is retried after a back-off of 5 ms doubling to
//!   1 s, as Go's `net/http` does; retrying at once would spin a core while the pending
//!   connection keeps the listener readable.
//!
//! Each connection gets a [`ConnectionAbort`] its handlers can fire to drop the connection from
//! the server's side (a watcher that stopped reading is closed, not buffered for).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long and how many: the defaults are upstream's.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time from `accept` to a finished TLS handshake.
    pub handshake_timeout: Duration,
    /// Time an HTTP/1 client has to send a request's headers once it started one (and to start
    /// the next request on a kept-alive connection).
    pub header_read_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Limits {
    /// The default connection cap.
    pub const MAX_CONNECTIONS: usize = 10_000;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(32),
            max_connections: Self::MAX_CONNECTIONS,
        }
    }
}

/// Lets a request handler close the connection it arrived on. Cloned into the request's
/// extensions by the servers.
#[derive(Debug, Clone, Default)]
pub struct ConnectionAbort(Arc<Notify>);

impl ConnectionAbort {
    /// Drops the connection (its socket and every request on it) soon.
    pub fn abort(&self) {
        // A stored permit: the connection task sees it even if it is not waiting right now.
        self.0.notify_one();
    }

    async fn aborted(&self) {
        self.0.notified().await;
    }
}

/// A server TLS config with a certificate for `names` signed by its own key, made at start
/// (as upstream's components do without `--tls-cert-file`, and the Kubernetes Dashboard with
/// `--auto-generate-certificates`); HTTP/2 and HTTP/1.1 by ALPN.
pub fn self_signed(names: Vec<String>) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let issued = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    let cert = CertificateDer::from(issued.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(issued.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The body of a `Status` failure, as the apiserver and upstream's components write refusals.
pub fn failure_status(code: http::StatusCode, reason: &str, message: &str) -> String {
    serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {},
        "code": code.as_u16(),
    })
    .to_string()
}

/// The HTTP/1.1 + HTTP/2 connection builder with the header read timeout set.
pub fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        // Finds peers that vanished without a FIN, which would otherwise hold a slot forever.
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// Accepts TLS connections on `listener` until `shutdown`, running `handle` for each finished
/// handshake (with the peer address and the connection's abort handle).
pub async fn serve<H, F>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    handle: H,
) where
    H: Fn(TlsStream<TcpStream>, SocketAddr, ConnectionAbort) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let acceptor = TlsAcceptor::from(tls);
    let handle = Arc::new(handle);
    serve_tcp(listener, limits, shutdown, move |tcp, peer, abort| {
        let (acceptor, handle) = (acceptor.clone(), handle.clone());
        async move {
            let tls =
                match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            handle(tls, peer, abort).await
        }
    })
    .await
}

/// Accepts plain TCP connections on `listener` until `shutdown`, running `handle` for each
/// (with the peer address and the connection's abort handle), within the connection cap.
pub async fn serve_tcp<H, F>(
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    handle: H,
) where
    H: Fn(TcpStream, SocketAddr, ConnectionAbort) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let handle = Arc::new(handle);
    let mut backoff = Backoff::default();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            _ = &mut shutdown => return,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                // The semaphore is never closed.
                Err(_) => return,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    backoff.reset();
                    a
                }
                Err(e) => {
                    let wait = backoff.next();
                    tracing::warn!(error = %e, retry_in = ?wait, "accept failed");
                    tokio::select! {
                        _ = &mut shutdown => return,
                        _ = tokio::time::sleep(wait) => continue,
                    }
                }
            },
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _ = tcp.set_nodelay(true);
            let abort = ConnectionAbort::default();
            tokio::select! {
                _ = handle(tcp, peer, abort.clone()) => {}
                _ = abort.aborted() => tracing::debug!(%peer, "connection closed by the server"),
            }
        });
    }
}

/// Serves small plain-text endpoints (`/metrics`, `/healthz`, …) over HTTP/1.1 on `listener`
/// until `stop` turns true, as the add-ons serve theirs beside their work: `answer` maps a
/// request path to its status and body, sent as Prometheus' text format.
pub async fn text_endpoints<A>(
    listener: TcpListener,
    answer: A,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    A: Fn(&str) -> (http::StatusCode, String) + Send + Sync + 'static,
{
    use bytes::Bytes;
    use http_body_util::Full;
    let answer = Arc::new(answer);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "accept");
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let answer = answer.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (status, body) = answer(req.uri().path());
                    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
                    *response.status_mut() = status;
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Go's `net/http` accept back-off: 5 ms, doubling, at most 1 s; reset by a successful accept.
#[derive(Debug, Default)]
struct Backoff(Option<Duration>);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    fn next(&mut self) -> Duration {
        let wait = self.0.map_or(Self::FIRST, |d| (d * 2).min(Self::MAX));
        self.0 = Some(wait);
        wait
    }

    fn reset(&mut self) {
        self.0 = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_second_and_resets() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..10).map(|_| b.next().as_millis() as u64).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(5));
    }
}
