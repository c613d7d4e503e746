//! HTTP responses as the kubelet API and the runtime's streaming server build them: one body
//! type, plain-text errors, and a builder that cannot panic.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};

/// Response body of every handler.
pub(crate) type Body = BoxBody<Bytes, std::io::Error>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// A `text/plain` response of `msg`, newline-terminated.
pub(crate) fn text(code: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut msg = msg.into();
    if !msg.ends_with('\n') {
        msg.push('\n');
    }
    let mut response = Response::new(full(msg));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Finishes a built response: a header value that does not encode gives a 500, not a panic.
pub(crate) trait Finish {
    fn finish(self) -> Response<Body>;
}

impl Finish for http::Result<Response<Body>> {
    fn finish(self) -> Response<Body> {
        self.unwrap_or_else(|e| {
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("building the response: {e}"),
            )
        })
    }
}
