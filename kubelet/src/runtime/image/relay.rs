//! The relay that presents client certificates to registries.
//!
//! The registry client (oci-client) builds its own HTTP client and has no way to present a
//! client certificate. A pull from an endpoint whose `configs.<host>.tls` names one therefore
//! goes in plain HTTP to this relay on the node's loopback, addressed as an HTTP proxy; the
//! relay opens the TLS connection to the endpoint with the certificate (and the host's CA and
//! verification settings) and passes the exchange through, the body streamed.
//!
//! Only the image store talks to it: it answers requests that carry its secret as the proxy
//! password (128 random bits, as the CRI streaming server's tokens) and only for hosts the
//! store admitted, so other processes on the node cannot borrow the node's certificate.
//! Redirects and token realms that point back at the same host are rewritten to come through
//! the relay too; those that point elsewhere are followed directly.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::with_causes;
use crate::runtime::registries::Tls;

type Body = BoxBody<Bytes, std::io::Error>;

/// The user name in the relay's proxy credentials.
const USER: &str = "ekube";

/// A running relay; it stops when dropped.
pub struct Relay {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

struct State {
    /// `Basic <base64 of ekube:secret>`, the one `Proxy-Authorization` it answers.
    authorization: String,
    secret: String,
    /// Admitted hosts (`host[:port]`, lower case) and the clients that reach them.
    routes: Mutex<HashMap<String, reqwest::Client>>,
}

impl Relay {
    /// Listens on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let secret = format!("{:032x}", rand::random::<u128>());
        let authorization = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{secret}"))
        );
        let state = Arc::new(State {
            authorization,
            secret,
            routes: Mutex::new(HashMap::new()),
        });
        let task = tokio::spawn(serve(listener, state.clone()));
        tracing::info!(%addr, "registry client-certificate relay listening");
        Ok(Self { addr, state, task })
    }

    /// Lets requests for `host` through, over TLS as `tls` says.
    pub fn admit(&self, host: &str, tls: &Tls) -> Result<(), String> {
        let host = host.to_ascii_lowercase();
        let mut routes = self.state.routes.lock().expect("relay routes");
        if let std::collections::hash_map::Entry::Vacant(e) = routes.entry(host) {
            e.insert(tls.http_client(false)?);
        }
        Ok(())
    }

    /// The proxy URL the registry client is given, credentials included.
    pub fn proxy_url(&self) -> String {
        format!("http://{USER}:{}@{}", self.state.secret, self.addr)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: tokio::net::TcpListener, state: Arc<State>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "relay accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(state.relay(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Headers that belong to one connection, not to the exchange (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

impl State {
    async fn relay(&self, req: Request<Incoming>) -> Response<Body> {
        let authorized = req
            .headers()
            .get(header::PROXY_AUTHORIZATION)
            .is_some_and(|v| v.as_bytes() == self.authorization.as_bytes());
        if !authorized {
            let mut answer = refuse(
                StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                "proxy authorization required",
            );
            answer.headers_mut().insert(
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"ekube registry relay\""),
            );
            return answer;
        }
        let Some(authority) = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_ascii_lowercase())
        else {
            return refuse(
                StatusCode::BAD_REQUEST,
                "the relay takes absolute-form requests",
            );
        };
        let Some(client) = self
            .routes
            .lock()
            .expect("relay routes")
            .get(&authority)
            .cloned()
        else {
            return refuse(
                StatusCode::FORBIDDEN,
                &format!("{authority} is not a registry the relay serves"),
            );
        };
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let url = format!("https://{authority}{path}");
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return refuse(StatusCode::BAD_REQUEST, &format!("request body: {e}")),
        };
        let mut headers = parts.headers;
        strip(&mut headers);
        headers.remove(header::HOST);
        let answer = client
            .request(parts.method, &url)
            .headers(headers)
            .body(body)
            .send()
            .await;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                return refuse(
                    StatusCode::BAD_GATEWAY,
                    &format!("{url}: {}", with_causes(&e)),
                );
            }
        };
        let mut out = Response::builder().status(answer.status());
        let mut headers = answer.headers().clone();
        strip(&mut headers);
        for name in [header::LOCATION, header::WWW_AUTHENTICATE] {
            let through = headers
                .get(&name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| through_relay(v, &authority))
                .and_then(|v| HeaderValue::from_str(&v).ok());
            if let Some(v) = through {
                headers.insert(name, v);
            }
        }
        if let Some(h) = out.headers_mut() {
            *h = headers;
        }
        let stream = answer
            .bytes_stream()
            .map_ok(Frame::data)
            .map_err(std::io::Error::other);
        out.body(BodyExt::boxed(StreamBody::new(stream)))
            .unwrap_or_else(|e| refuse(StatusCode::BAD_GATEWAY, &e.to_string()))
    }
}

/// `value` with its `https://<authority>/` URL (a redirect, a token realm) made to come
/// through the relay, when it has one.
fn through_relay(value: &str, authority: &str) -> Option<String> {
    let same_host = format!("https://{authority}/");
    // ASCII lower-casing keeps byte offsets.
    let at = value.to_ascii_lowercase().find(&same_host)?;
    Some(format!(
        "{}http://{authority}/{}",
        &value[..at],
        &value[at + same_host.len()..]
    ))
}

fn strip(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn refuse(status: StatusCode, why: &str) -> Response<Body> {
    let mut answer = Response::new(
        Full::new(Bytes::from(format!("{why}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *answer.status_mut() = status;
    answer
}
