//! The page's API calls, relayed to the apiserver as the viewer.
//!
//! The page sends the token it was given in `X-Dashboard-Token`, not in `Authorization`:
//! between the browser and the dashboard sit `kubectl proxy`, which authenticates with its own
//! credentials, and the apiserver's service proxy, which drops the `Authorization` it
//! authenticated. The dashboard forwards calls to `/api/…` and `/apis/…` with
//! `Authorization: Bearer <token>`, their method, query, `Accept`, `Content-Type` and body, and
//! streams the apiserver's answer back. Refusals are `Status` objects, as the apiserver's own.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};

/// What the dashboard answers with.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The header the page puts the viewer's bearer token in.
pub const TOKEN_HEADER: &str = "x-dashboard-token";

/// The largest request body relayed: the apiserver's own limit (3 MiB).
const MAX_BODY: usize = 3 << 20;

/// Whether `path` is an API call the dashboard relays.
pub fn relayed(path: &str) -> bool {
    ["/api", "/apis"].iter().any(|root| {
        path.strip_prefix(root)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// A body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A refused call, answered as the apiserver answers: a `Status` object.
#[derive(Debug)]
struct Refusal {
    code: StatusCode,
    reason: &'static str,
    message: String,
}

impl Refusal {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
        }
    }

    fn response(self) -> Response<Body> {
        let status = ekube_api::serve::failure_status(self.code, self.reason, &self.message);
        let mut resp = Response::new(full(status));
        *resp.status_mut() = self.code;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

/// The viewer's token from the page's header (a pasted `Bearer ` prefix is dropped).
fn token(headers: &HeaderMap) -> Result<&str, Refusal> {
    let missing = || {
        Refusal::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "sign in with a bearer token: the dashboard acts only with its viewer's credentials",
        )
    };
    let value = headers.get(TOKEN_HEADER).ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the token is not printable ASCII",
        )
    })?;
    let token = value.trim();
    let token = match token.split_once(char::is_whitespace) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        None if token.eq_ignore_ascii_case("bearer") => "",
        _ => token,
    };
    if token.is_empty() {
        return Err(missing());
    }
    if token.chars().any(|c| c.is_ascii_whitespace()) {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the token contains whitespace: paste it as one line",
        ));
    }
    Ok(token)
}

/// Relays API calls through one client of the apiserver that has no credentials of its own.
pub struct Relay {
    client: kube::Client,
}

impl Relay {
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    /// Relays `req`, or answers why not.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.forward(req).await.unwrap_or_else(Refusal::response)
    }

    async fn forward<B>(&self, req: Request<B>) -> Result<Response<Body>, Refusal>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let method = req.method().clone();
        if !matches!(
            method,
            Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        ) {
            return Err(Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("{method} is not relayed to the apiserver"),
            ));
        }
        let bearer = HeaderValue::try_from(format!("Bearer {}", token(req.headers())?))
            .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "BadRequest", "malformed token"))?;
        let path = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_string(), ToString::to_string);
        let mut out = Request::builder().method(method).uri(path);
        for name in [header::ACCEPT, header::CONTENT_TYPE] {
            if let Some(value) = req.headers().get(&name) {
                out = out.header(name, value);
            }
        }
        out = out.header(header::AUTHORIZATION, bearer);
        let body = Limited::new(req.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    Refusal::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "RequestEntityTooLarge",
                        format!("the request body is larger than {MAX_BODY} bytes"),
                    )
                } else {
                    Refusal::new(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        format!("reading the request body: {e}"),
                    )
                }
            })?
            .to_bytes();
        let out = out
            .body(kube::client::Body::from(body))
            .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()))?;
        let answer = self.client.send(out).await.map_err(|e| {
            Refusal::new(
                StatusCode::BAD_GATEWAY,
                "ServiceUnavailable",
                format!("the apiserver could not be reached: {e}"),
            )
        })?;
        let (parts, body) = answer.into_parts();
        let mut resp = Response::new(body.map_err(|e| Box::new(e) as BoxError).boxed_unsync());
        *resp.status_mut() = parts.status;
        if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
            resp.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
        }
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(resp)
    }
}

#[cfg(test)]
mod tests;
