//! The secure port of the controller-manager (`:10257`) and the scheduler (`:10259`), as
//! upstream's components serve it: HTTPS with a self-signed certificate made at start (upstream
//! makes one when no `--tls-cert-file` is given), `/healthz`, `/livez` and `/readyz` open to
//! everyone (upstream's `--authorization-always-allow-paths`), and everything else, `/metrics`
//! above all, behind delegated authentication and authorization: a bearer token is reviewed by
//! the apiserver (TokenReview), a request without one is `system:anonymous`, and the user must
//! be allowed `get` on the path (SubjectAccessReview, matched by RBAC `nonResourceURLs`).
//! Refusals are `Status` objects with upstream's wording. Client certificates are not
//! authenticated here.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::review::{Access, ApiReviewer, Cached, Reviewer, Ttls, User};
use crate::serve::{Limits, http_builder};
use crate::user::bearer_token;

/// Paths served without authentication or authorization.
const ALWAYS_ALLOWED: &[&str] = &["/healthz", "/readyz", "/livez"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "binding the secure port {addr}: {source} (choose another with --secure-port, or 0 to disable it)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("making the self-signed serving certificate: {0}")]
    Certificate(String),
}

/// A bound secure port, ready to serve.
pub struct SecurePort {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
}

impl SecurePort {
    /// Binds `--bind-address`:`--secure-port`; `None` when the port is 0 (disabled).
    pub async fn bind(address: IpAddr, port: u16) -> Result<Option<Self>, Error> {
        if port == 0 {
            return Ok(None);
        }
        let addr = SocketAddr::new(address, port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        Ok(Some(Self {
            listener,
            tls: Arc::new(self_signed(address)?),
        }))
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves for as long as the future is polled (the component drops it when it stops),
    /// asking the apiserver through `client` and rendering `/metrics` with `metrics`.
    pub async fn serve(
        self,
        client: kube::Client,
        metrics: impl Fn() -> String + Send + Sync + 'static,
    ) {
        let gate = Arc::new(Gate {
            reviews: Cached::new(ApiReviewer(client), TTLS),
        });
        let metrics = Arc::new(metrics);
        let limits = Limits::default();
        crate::serve::serve(
            self.listener,
            self.tls,
            limits,
            std::future::pending(),
            move |tls, peer, _abort| {
                let (gate, metrics) = (gate.clone(), metrics.clone());
                async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (gate, metrics) = (gate.clone(), metrics.clone());
                        async move {
                            Ok::<_, Infallible>(
                                gate.handle(req.method(), req.uri().path(), req.headers(), || {
                                    metrics()
                                })
                                .await,
                            )
                        }
                    });
                    if let Err(e) = http_builder(&limits)
                        .serve_connection(TokioIo::new(tls), service)
                        .await
                    {
                        tracing::debug!(%peer, error = %e, "secure port connection ended");
                    }
                }
            },
        )
        .await;
    }
}

/// Upstream's delegated authentication and authorization cache times (10 s each way).
const TTLS: Ttls = Ttls {
    authenticated: Duration::from_secs(10),
    unauthenticated: Duration::from_secs(10),
    authorized: Duration::from_secs(10),
    unauthorized: Duration::from_secs(10),
};

/// A self-signed certificate for `localhost`, the loopback addresses and `address`.
fn self_signed(address: IpAddr) -> Result<rustls::ServerConfig, Error> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if !address.is_unspecified() && !address.is_loopback() {
        names.push(address.to_string());
    }
    crate::serve::self_signed(names).map_err(Error::Certificate)
}

/// The decisions of one secure port.
struct Gate<R> {
    reviews: Cached<R>,
}

fn respond(
    code: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// A `Status` refusal, as upstream's response writers send it.
fn status(code: StatusCode, reason: &str, message: &str) -> Response<Full<Bytes>> {
    respond(
        code,
        "application/json",
        crate::serve::failure_status(code, reason, message),
    )
}

impl<R: Reviewer> Gate<R> {
    async fn handle(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        metrics: impl FnOnce() -> String,
    ) -> Response<Full<Bytes>> {
        if !ALWAYS_ALLOWED.contains(&path) {
            let user = match self.authenticate(headers).await {
                Ok(user) => user,
                Err(response) => return response,
            };
            if let Err(response) = self.authorize(&user, method, path).await {
                return response;
            }
        }
        match path {
            "/healthz" | "/livez" | "/readyz" => {
                respond(StatusCode::OK, "text/plain; charset=utf-8", "ok")
            }
            "/metrics" => respond(StatusCode::OK, crate::metrics::CONTENT_TYPE, metrics()),
            _ => respond(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "404 page not found\n",
            ),
        }
    }

    async fn authenticate(&self, headers: &HeaderMap) -> Result<User, Response<Full<Bytes>>> {
        let unauthorized = || status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
        let Some(token) = bearer_token(headers) else {
            return Ok(User::anonymous());
        };
        match self.reviews.token(token).await {
            Ok(Some(user)) => Ok(user.with_authenticated_group()),
            Ok(None) => Err(unauthorized()),
            Err(e) => {
                tracing::warn!(error = %e, "reviewing a bearer token failed");
                Err(unauthorized())
            }
        }
    }

    async fn authorize(
        &self,
        user: &User,
        method: &Method,
        path: &str,
    ) -> Result<(), Response<Full<Bytes>>> {
        let verb = match *method {
            Method::GET | Method::HEAD => "get",
            Method::POST => "post",
            Method::PUT => "put",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "",
        };
        let access = Access::Path {
            verb,
            path: path.to_string(),
        };
        match self.reviews.access(user, &access).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &format!(
                    "forbidden: User {:?} cannot {verb} path {path:?}",
                    user.name
                ),
            )),
            Err(e) => {
                tracing::warn!(error = %e, "asking the apiserver for access failed");
                Err(status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    &format!("Internal Server Error: {path:?}: {e}"),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::review::testing::{Fake, ttls};

    async fn ask(gate: &Gate<Fake>, path: &str, token: Option<&str>) -> (u16, String) {
        let mut headers = HeaderMap::new();
        if let Some(t) = token {
            headers.insert(
                header::AUTHORIZATION,
                format!("Bearer {t}").parse().unwrap(),
            );
        }
        let response = gate
            .handle(&Method::GET, path, &headers, || "m 1\n".into())
            .await;
        let code = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn metrics_need_an_allowed_user_and_health_needs_nobody() {
        let gate = Gate {
            reviews: Cached::new(Fake::default(), ttls()),
        };
        assert_eq!(
            ask(&gate, "/metrics", Some("good")).await,
            (200, "m 1\n".into())
        );
        for probe in ["/healthz", "/livez", "/readyz"] {
            assert_eq!(ask(&gate, probe, None).await, (200, "ok".into()));
        }
        let (code, body) = ask(&gate, "/metrics", None).await;
        assert_eq!(code, 403);
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            status["message"],
            "forbidden: User \"system:anonymous\" cannot get path \"/metrics\""
        );
        assert_eq!(status["reason"], "Forbidden");
        let (code, body) = ask(&gate, "/metrics", Some("bad")).await;
        assert_eq!(code, 401);
        assert!(body.contains("\"message\":\"Unauthorized\""), "{body}");
        // Authorized first, then routed: alice may not get other paths.
        assert_eq!(ask(&gate, "/configz", Some("good")).await.0, 403);
        gate.reviews
            .inner()
            .down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(ask(&gate, "/metrics", Some("other")).await.0, 401);
    }

    #[tokio::test]
    async fn port_zero_disables_and_a_taken_port_is_a_clear_error() {
        assert!(
            SecurePort::bind("127.0.0.1".parse().unwrap(), 0)
                .await
                .unwrap()
                .is_none()
        );
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = SecurePort::bind("127.0.0.1".parse().unwrap(), port)
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("--secure-port"), "{err}");
    }
}
