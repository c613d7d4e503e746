//! The reverse proxy: each request is routed by the current [`Table`] straight to a ready
//! endpoint of its backend (not through the ClusterIP), over a keep-alive pool per endpoint.
//!
//! - A request without a body and with an idempotent method is tried again on the next
//!   endpoint when its endpoint fails before answering (at most three endpoints); any
//!   bodiless request is when the connection could not even be made. As ingress-nginx's
//!   `proxy_next_upstream error timeout`.
//! - Hosts with TLS get plain HTTP redirected with 308 (`ssl-redirect: "false"` turns it off).
//! - The upstream sees `X-Forwarded-For` (the client's address, replacing what the client
//!   sent), `X-Real-IP`, `X-Forwarded-Host`, `-Proto` and `-Port`.
//! - `Upgrade` requests (WebSocket) are passed through: after the upstream's 101 the two
//!   connections are spliced.
//! - 404 when nothing matches, 503 when the backend has no ready endpoint (or no Service),
//!   502 when every endpoint tried failed, 504 when none answered within the timeout.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as _, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::metrics::{Labels, Metrics};
use crate::routes::{Table, Target, Upstream};

pub type Body = BoxBody<Bytes, hyper::Error>;

/// How long an upstream may take to send its response head (ingress-nginx's
/// `proxy-read-timeout` default).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Endpoints tried per request at most.
const TRIES: usize = 3;

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// What every connection shares.
pub struct Proxy {
    pub table: RwLock<Arc<Table>>,
    client: Client<HttpConnector, Body>,
    pub metrics: Arc<Metrics>,
    pub access_log: bool,
    /// The HTTPS port redirects point to.
    pub https_port: u16,
}

/// Where a request came in.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub client: SocketAddr,
    pub https: bool,
    /// The listener's port.
    pub port: u16,
}

fn full(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(text.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// The request's host, lower case and without a port: the URI's authority (HTTP/2, absolute
/// form) or the `Host` header.
pub fn request_host<B>(req: &Request<B>) -> String {
    let raw = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    strip_port(&raw).to_ascii_lowercase()
}

fn strip_port(authority: &str) -> &str {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split_once(']').map_or(authority, |(ip, _)| ip);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Drops the hop-by-hop headers, and those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if !(keep_upgrade && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

impl Proxy {
    pub fn new(metrics: Arc<Metrics>, access_log: bool, https_port: u16) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build(connector);
        Self {
            table: RwLock::new(Arc::new(Table::default())),
            client,
            metrics,
            access_log,
            https_port,
        }
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request<Incoming>, conn: Conn) -> Response<Body> {
        let started = Instant::now();
        let host = request_host(&req);
        let (method, target, version) = (
            req.method().clone(),
            req.uri()
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_string(),
            req.version(),
        );
        let (referer, agent) = (
            header_text(req.headers(), header::REFERER),
            header_text(req.headers(), header::USER_AGENT),
        );
        let table = self.table.read().expect("routing table").clone();
        let mut labels = Labels {
            namespace: String::new(),
            ingress: String::new(),
            upstream: String::new(),
            status: 0,
        };
        let mut upstream_addr = None;
        let response = 'answer: {
            if !conn.https
                && let Some(server) = table.tls_server(&host)
                && server.tls
                && server.ssl_redirect
            {
                let port = match self.https_port {
                    443 => String::new(),
                    p => format!(":{p}"),
                };
                let mut r = full(StatusCode::PERMANENT_REDIRECT, "");
                if let Ok(location) =
                    HeaderValue::from_str(&format!("https://{host}{port}{target}"))
                {
                    r.headers_mut().insert(header::LOCATION, location);
                }
                break 'answer r;
            }
            let route = match table.route(&host, req.uri().path()) {
                Target::Route(route) => route,
                Target::NotFound => {
                    break 'answer full(StatusCode::NOT_FOUND, "default backend - 404\n");
                }
            };
            let (upstream, origin) = route.choose(rand::random_range(0..u32::MAX));
            labels.namespace.clone_from(&origin.namespace);
            labels.ingress.clone_from(&origin.name);
            labels.upstream.clone_from(&upstream.name);
            if upstream.endpoints.is_empty() {
                let why = upstream.problem.as_deref().unwrap_or("no endpoints");
                break 'answer full(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("503 Service Temporarily Unavailable: {why}\n"),
                );
            }
            match tokio::time::timeout(RESPONSE_TIMEOUT, self.forward(req, upstream, &host, conn))
                .await
            {
                Ok(Ok((response, addr))) => {
                    upstream_addr = Some(addr);
                    response
                }
                Ok(Err(e)) => {
                    tracing::debug!(upstream = %upstream.name, error = %e, "upstream failed");
                    full(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n")
                }
                Err(_) => full(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Time-out\n"),
            }
        };
        let took = started.elapsed();
        labels.status = response.status().as_u16();
        if self.access_log {
            let length = response
                .body()
                .size_hint()
                .exact()
                .map_or("-".to_string(), |n| n.to_string());
            // ingress-nginx's log format, abridged: the upstream's name and address at the end.
            println!(
                "{} - - [{}] \"{method} {target} {version:?}\" {} {length} \"{referer}\" \"{agent}\" {:.3} [{}] {}",
                conn.client.ip(),
                ekube_api::time::Timestamp::now().strftime("%d/%b/%Y:%H:%M:%S +0000"),
                labels.status,
                took.as_secs_f64(),
                labels.upstream,
                upstream_addr.map_or("-".to_string(), |a| a.to_string()),
            );
        }
        self.metrics.observe(labels, took);
        response
    }

    /// Sends the request to the upstream's endpoints in turn; the response and who gave it.
    async fn forward(
        &self,
        mut req: Request<Incoming>,
        upstream: &Upstream,
        host: &str,
        conn: Conn,
    ) -> Result<(Response<Body>, SocketAddr), hyper_util::client::legacy::Error> {
        let upgrade = is_upgrade(req.headers());
        let client_side = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers, upgrade);
        if !headers.contains_key(header::HOST)
            && let Some(authority) = parts.uri.authority()
            && let Ok(v) = HeaderValue::from_str(authority.as_str())
        {
            headers.insert(header::HOST, v);
        }
        let client_ip = conn.client.ip().to_string();
        let forwarded = [
            ("x-forwarded-for", client_ip.as_str()),
            ("x-real-ip", client_ip.as_str()),
            ("x-forwarded-host", host),
            (
                "x-forwarded-proto",
                if conn.https { "https" } else { "http" },
            ),
            ("x-forwarded-port", &conn.port.to_string()),
        ];
        for (name, value) in forwarded {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        }
        let target = parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string();
        let bodiless = body.is_end_stream();
        let mut body = Some(body.boxed());
        let mut last = None;
        for addr in upstream.pick().take(TRIES) {
            let mut attempt = Request::new(body.take().unwrap_or_else(empty));
            *attempt.method_mut() = parts.method.clone();
            *attempt.version_mut() = Version::HTTP_11;
            *attempt.headers_mut() = headers.clone();
            *attempt.uri_mut() = format!("http://{addr}{target}")
                .parse()
                .expect("an address and a request target make a URI");
            match self.client.request(attempt).await {
                Ok(mut response) => {
                    if let (Some(client_side), StatusCode::SWITCHING_PROTOCOLS) =
                        (client_side, response.status())
                    {
                        let upstream_side = hyper::upgrade::on(&mut response);
                        tokio::spawn(splice(client_side, upstream_side));
                    } else {
                        strip_hop_by_hop(response.headers_mut(), false);
                    }
                    return Ok((response.map(|b| b.boxed()), addr));
                }
                Err(e) => {
                    let again = bodiless && (idempotent(&parts.method) || e.is_connect());
                    tracing::debug!(%addr, error = %e, again, "upstream attempt failed");
                    if !again {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.expect("an upstream with endpoints was tried"))
    }
}

fn header_text(headers: &HeaderMap, name: HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .replace('"', "\\\"")
}

/// Copies both ways between an upgraded client connection and its upstream.
async fn splice(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => return tracing::debug!(error = %e, "upgrade failed"),
    };
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_port_and_case() {
        let req = |host: &str| Request::builder().header("host", host).body(()).unwrap();
        assert_eq!(request_host(&req("Foo.Example:8080")), "foo.example");
        assert_eq!(request_host(&req("foo.example")), "foo.example");
        assert_eq!(request_host(&req("[::1]:80")), "::1");
        let h2 = Request::builder()
            .uri("https://bar.example:443/x")
            .body(())
            .unwrap();
        assert_eq!(request_host(&h2), "bar.example");
    }

    #[test]
    fn hop_by_hop_headers_stay_behind_unless_upgrading() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        let mut plain = h.clone();
        strip_hop_by_hop(&mut plain, false);
        assert_eq!(plain.len(), 1, "{plain:?}");
        assert!(plain.contains_key("x-kept"));
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }
}
