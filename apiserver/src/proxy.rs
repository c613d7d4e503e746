//! The `proxy` subresources of pods, services and nodes, as kube-apiserver serves them, and the
//! HTTP relay they share with the kubelet's streaming subresources ([`crate::kubelet_proxy`]).
//!
//! `/api/v1/namespaces/<ns>/services/<[scheme:]name[:port]>/proxy[/<path>]` goes to one ready
//! address of the Service's Endpoints (picked at random, as upstream's `ResourceLocation`),
//! on the endpoint port named like the service port (a port number is first mapped to its
//! service port's name); the address must be the IP of the Pod the endpoint refers to.
//! `pods/<[scheme:]name[:port]>/proxy` goes to the pod IP (the port defaults to the first
//! declared container port, else the scheme's), `nodes/<name[:port]>/proxy` to the node's
//! kubelet over TLS with the apiserver's kubelet client certificate, or to another port of the
//! node's address with the scheme asked for. `https` backends are dialed without verifying
//! their certificate, as kube-apiserver's proxy transport does.
//!
//! As upstream's UpgradeAwareHandler: the path after `/proxy` (cleaned like Go's `path.Join`,
//! a trailing slash kept) and the query go to the backend; `GET` or `HEAD` of `…/proxy`
//! itself answers `301` to `…/proxy/`; every method's body is streamed on and the answer
//! streamed back; hop-by-hop headers are dropped both ways, the client's `Authorization` and
//! `Impersonate-*` headers (already consumed by authentication) are not passed on,
//! `X-Forwarded-For` and `X-Forwarded-Uri` are set, CORS headers of the answer are removed
//! and a `Location` on the backend's own host is rewritten under the proxy path. A
//! `Connection: Upgrade` request is passed on with its upgrade headers and, once the backend
//! answers `101`, the two connections are spliced. A backend that cannot be reached is a 503
//! `error trying to reach service: …`.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

use crate::ApiServer;
use crate::errors::{ApiError, Result};
use crate::handler::{Body, full};
use crate::route::Target;

mod location;

pub use location::{Location, Tls, split_scheme_name_port};
use location::{node_location, pod_location, service_location, unavailable};

/// How long a backend may take to accept the connection (Go's proxy dialer's timeout).
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// The client's address, which the HTTPS listener records on every request.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Decodes `%XX` escapes, as the name segment is in Go's decoded `URL.Path`; a malformed escape
/// stays as it is.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Go's `path.Clean` of a rooted path, `""` for `""`.
fn clean(path: &str) -> String {
    if path.is_empty() {
        return String::new();
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// [`clean`] that keeps a trailing slash (Go's `JoinPreservingTrailingSlash` after the join).
fn clean_keeping_slash(path: &str) -> String {
    let mut cleaned = clean(path);
    if path.ends_with('/') && !cleaned.ends_with('/') {
        cleaned.push('/');
    }
    cleaned
}

/// The proxy path of a request: `(prefix, backend path)`, the prefix being the request path
/// up to and including its `proxy` segment (the `proxy_segment`-th non-empty one, counting
/// from 1) and the backend path what upstream sends on: the rest as upstream's `ProxyOptions`
/// path (leading and trailing slashes trimmed, one leading slash added, a trailing slash of
/// the request kept) joined like `JoinPreservingTrailingSlash`. `None` when the path has fewer
/// segments.
pub fn split_path(path: &str, proxy_segment: usize) -> Option<(&str, String)> {
    let mut seen = 0;
    let mut offset = 0;
    let mut end = None;
    for seg in path.split('/') {
        if !seg.is_empty() {
            seen += 1;
            if seen == proxy_segment {
                end = Some(offset + seg.len());
                break;
            }
        }
        offset += seg.len() + 1;
    }
    let end = end?;
    let (prefix, rest) = path.split_at(end);
    let inner = rest.trim_matches('/');
    let mut sub = if inner.is_empty() {
        String::new()
    } else {
        format!("/{inner}")
    };
    if rest.ends_with('/') && !sub.ends_with('/') {
        sub.push('/');
    }
    Some((prefix, clean_keeping_slash(&sub)))
}

/// The `301` upstream answers a `GET` or `HEAD` of `…/proxy` with: to `…/proxy/`, the query
/// kept. `None` for any other request.
pub fn redirect(
    method: &Method,
    path: &str,
    query: Option<&str>,
    backend_path: &str,
) -> Option<String> {
    if !backend_path.is_empty() || !matches!(*method, Method::GET | Method::HEAD) {
        return None;
    }
    Some(match query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{path}/?{q}"),
        None => format!("{path}/"),
    })
}

/// Headers Go's reverse proxy drops as hop-by-hop.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The tokens of the `Connection` headers (more hop-by-hop headers), lowercase.
fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Request headers passed on to a backend: not the client's credentials (`Authorization`,
/// `Impersonate-*`, consumed by authentication), nor `Host` and `Content-Length` (the relay
/// sets them), nor hop-by-hop headers unless relaying an upgrade, which passes its
/// `Connection` and `Upgrade` on.
pub fn forwardable(headers: &HeaderMap, upgrading: bool) -> HeaderMap {
    let listed = connection_tokens(headers);
    let mut out = HeaderMap::new();
    for (k, v) in headers {
        let name = k.as_str();
        let credential = *k == header::AUTHORIZATION || name.starts_with("impersonate-");
        let hop = HOP_BY_HOP.contains(&name) || listed.iter().any(|t| t == name);
        let upgrade_header = upgrading && (*k == header::CONNECTION || *k == header::UPGRADE);
        if credential
            || *k == header::HOST
            || *k == header::CONTENT_LENGTH
            || (hop && !upgrade_header)
        {
            continue;
        }
        out.append(k.clone(), v.clone());
    }
    out
}

/// Response headers passed back: not hop-by-hop ones (on a `101` the relay keeps them) nor
/// the CORS headers upstream's proxy removes.
fn answer_headers(headers: &HeaderMap) -> HeaderMap {
    const CORS: &[&str] = &[
        "access-control-allow-credentials",
        "access-control-allow-headers",
        "access-control-allow-methods",
        "access-control-allow-origin",
    ];
    let listed = connection_tokens(headers);
    let mut out = HeaderMap::new();
    for (k, v) in headers {
        let name = k.as_str();
        if HOP_BY_HOP.contains(&name) || listed.iter().any(|t| t == name) || CORS.contains(&name) {
            continue;
        }
        out.append(k.clone(), v.clone());
    }
    out
}

/// Upstream's `rewriteURL` for a backend's `Location`: a URL on the backend's host (or the
/// host the client asked for) with an absolute path is moved under the proxy `prefix`, its
/// scheme and host dropped; other hosts and relative paths are left alone.
pub fn rewrite_location(location: &str, backend: &str, request_host: &str, prefix: &str) -> String {
    let (scheme_host, rest) = match location.find("://") {
        Some(i)
            if location[..i]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            let after = &location[i + 3..];
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            (Some((&location[..i], &after[..end])), &after[end..])
        }
        _ if location.starts_with("//") => {
            let after = &location[2..];
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            (Some(("", &after[..end])), &after[end..])
        }
        _ => (None, location),
    };
    let host = scheme_host.map_or("", |(_, h)| h);
    let split = rest.find(['?', '#']).unwrap_or(rest.len());
    let (path, tail) = rest.split_at(split);
    let different_host = !host.is_empty() && host != backend && host != request_host;
    if different_host || !path.starts_with('/') {
        return location.to_string();
    }
    let head = match scheme_host {
        // Upstream keeps a URL already on the client's host as it is.
        Some((scheme, h)) if h == request_host => {
            if scheme.is_empty() {
                format!("//{h}")
            } else {
                format!("{scheme}://{h}")
            }
        }
        _ => String::new(),
    };
    if path.starts_with(prefix) {
        return format!("{head}{path}{tail}");
    }
    let joined = clean_keeping_slash(&format!("{prefix}/{path}"));
    format!("{head}{joined}{tail}")
}

/// The headers sent to the backend: the [`forwardable`] ones, `X-Forwarded-For` with the
/// client's address appended, `X-Forwarded-Uri` (the proxy path the client asked for; not on
/// upgrades) and the client's `Host`, as upstream's UpgradeAwareHandler sends them.
pub(crate) fn outgoing_headers(
    incoming: &HeaderMap,
    upgrading: bool,
    peer: Option<IpAddr>,
    forwarded_uri: &str,
    host: &str,
) -> HeaderMap {
    let mut headers = forwardable(incoming, upgrading);
    if let Some(peer) = peer {
        let mut chain: Vec<String> = incoming
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        chain.push(peer.to_string());
        if let Ok(v) = HeaderValue::from_str(&chain.join(", ")) {
            headers.insert(HeaderName::from_static("x-forwarded-for"), v);
        }
    }
    if !upgrading && let Ok(v) = HeaderValue::from_str(forwarded_uri) {
        headers.insert(HeaderName::from_static("x-forwarded-uri"), v);
    }
    if let Ok(v) = HeaderValue::from_str(host) {
        headers.insert(header::HOST, v);
    }
    headers
}

/// Serves `<pods|services|nodes>/<id>/proxy[/<path>]`.
pub async fn serve(
    api: &Arc<ApiServer>,
    target: &Target,
    mut req: Request<Incoming>,
) -> Result<Response<Body>> {
    let method = req.method().clone();
    if !matches!(
        method,
        Method::GET
            | Method::HEAD
            | Method::POST
            | Method::PUT
            | Method::PATCH
            | Method::DELETE
            | Method::OPTIONS
    ) {
        return Err(ApiError::method_not_allowed(method.as_str()));
    }
    let id = percent_decode(target.name.as_deref().unwrap_or_default());
    let ns = target.namespace.as_deref().unwrap_or("default");
    // api, v1, [namespaces, <ns>,] <plural>, <id>, proxy
    let proxy_segment = if target.namespace.is_some() { 7 } else { 5 };
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let (prefix, backend_path) =
        split_path(&path, proxy_segment).ok_or_else(ApiError::path_not_found)?;
    let prefix = prefix.to_string();
    let location = match target.info.plural {
        "services" => service_location(api, ns, &id).await?,
        "pods" => pod_location(api, ns, &id).await?,
        "nodes" => node_location(api, &id).await?,
        _ => return Err(ApiError::path_not_found()),
    };
    let upgrading = is_upgrade(req.headers());
    if !upgrading && let Some(to) = redirect(&method, &path, query.as_deref(), &backend_path) {
        let mut resp = Response::new(full(Bytes::new()));
        *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
        resp.headers_mut().insert(
            header::LOCATION,
            HeaderValue::from_str(&to).map_err(|e| ApiError::internal(e.to_string()))?,
        );
        return Ok(resp);
    }
    let request_host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let forwarded_uri = clean_keeping_slash(&format!("{prefix}/{backend_path}"));
    let peer = req.extensions().get::<Peer>().map(|Peer(p)| p.ip());
    let headers = outgoing_headers(
        req.headers(),
        upgrading,
        peer,
        &forwarded_uri,
        &request_host,
    );
    let backend = if backend_path.is_empty() {
        "/"
    } else {
        &backend_path
    };
    let path_and_query = match query.as_deref() {
        Some(q) => format!("{backend}?{q}"),
        None => backend.to_string(),
    };
    let client_upgrade = upgrading.then(|| hyper::upgrade::on(&mut req));
    let body: Body = if upgrading {
        full(Bytes::new())
    } else {
        req.into_body()
            .map_err(std::io::Error::other)
            .boxed_unsync()
    };
    let mut out = Request::builder()
        .method(method.clone())
        .uri(path_and_query)
        .body(body)
        .map_err(|e| ApiError::internal(format!("building the proxied request: {e}")))?;
    *out.headers_mut() = headers;
    let reach = |e: String| unavailable(format!("error trying to reach service: {e}"));
    let mut sender = connect(&location, &api.kubelet_tls).await.map_err(reach)?;
    let answer = send(&mut sender, out, client_upgrade)
        .await
        .map_err(reach)?;
    tracing::debug!(
        resource = %target.info.plural, %id, backend = %location.authority, %method,
        "proxied"
    );
    match answer {
        Answer::Switched(resp) => Ok(resp),
        Answer::Plain(resp) => {
            let (parts, body) = resp.into_parts();
            let mut headers = answer_headers(&parts.headers);
            if let Some(rewritten) = headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| rewrite_location(l, &location.authority, &request_host, &prefix))
                && let Ok(v) = HeaderValue::from_str(&rewritten)
            {
                headers.insert(header::LOCATION, v);
            }
            let mut back = Response::new(body.map_err(std::io::Error::other).boxed_unsync());
            *back.status_mut() = parts.status;
            *back.headers_mut() = headers;
            Ok(back)
        }
    }
}

/// Whether a request asks to switch protocols (`Connection: Upgrade` with an `Upgrade`).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && connection_tokens(headers).iter().any(|t| t == "upgrade")
}

/// TLS towards service and pod backends: any certificate, HTTP/1.1, no client certificate.
fn insecure_tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut config = ekube_api::tls::unverified_client().with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        })
        .clone()
}

/// An HTTP/1.1 connection (upgrades allowed) to `location`; the error says what failed, as
/// Go's dialer words it (`dial tcp 10.0.0.5:80: …`).
pub async fn connect(
    location: &Location,
    kubelet_tls: &Arc<rustls::ClientConfig>,
) -> std::result::Result<SendRequest<Body>, String> {
    let addr = if location.host.contains(':') {
        format!("[{}]:{}", location.host, location.port)
    } else {
        format!("{}:{}", location.host, location.port)
    };
    let tcp = tokio::time::timeout(
        DIAL_TIMEOUT,
        tokio::net::TcpStream::connect((location.host.as_str(), location.port)),
    )
    .await
    .map_err(|_| format!("dial tcp {addr}: i/o timeout"))?
    .map_err(|e| format!("dial tcp {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let config = match location.tls {
        Tls::None => return handshake(tcp).await,
        Tls::Insecure => insecure_tls(),
        Tls::Kubelet => kubelet_tls.clone(),
    };
    let server_name = ServerName::try_from(location.host.clone())
        .map_err(|e| format!("{}: {e}", location.host))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    handshake(tls).await
}

async fn handshake<IO>(io: IO) -> std::result::Result<SendRequest<Body>, String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "backend connection ended with an error");
        }
    });
    Ok(sender)
}

/// A backend's answer.
pub enum Answer {
    /// `101`: the connections are spliced; this goes back to the client.
    Switched(Response<Body>),
    /// Any other answer, its body still to read.
    Plain(Response<Incoming>),
}

/// Sends `out`; when the backend switches protocols on an upgrade request, splices the
/// client's upgraded connection (`client`) with the backend's in a task of its own and
/// returns the `101` for the client with the backend's headers.
pub async fn send(
    sender: &mut SendRequest<Body>,
    out: Request<Body>,
    client: Option<OnUpgrade>,
) -> std::result::Result<Answer, String> {
    let mut resp = sender.send_request(out).await.map_err(|e| e.to_string())?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Answer::Plain(resp));
    }
    let Some(client) = client else {
        return Err("the backend switched protocols on a request that asked for no upgrade".into());
    };
    let backend = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        match tokio::try_join!(client, backend) {
            Ok((client, backend)) => {
                let _ = tokio::io::copy_bidirectional(
                    &mut TokioIo::new(client),
                    &mut TokioIo::new(backend),
                )
                .await;
            }
            Err(e) => tracing::debug!(error = %e, "upgrade relay failed"),
        }
    });
    let mut back = Response::new(full(Bytes::new()));
    *back.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *back.headers_mut() = resp.headers().clone();
    Ok(Answer::Switched(back))
}

#[cfg(test)]
mod tests;
