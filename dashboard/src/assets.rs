//! The page: plain HTML, CSS and JavaScript built into the binary, every URL in them relative,
//! so the page works under whatever prefix it is reached at (`…/services/https:kubernetes-
//! dashboard:/proxy/` through `kubectl proxy`, or `/` on the pod's own port). Nothing is
//! fetched from elsewhere at run time, and the Content-Security-Policy says so.

use http::{HeaderValue, Method, Response, StatusCode, header};

use crate::relay::{Body, full};

/// The files, by path: content type and content.
const FILES: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    ),
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("assets/style.css"),
    ),
];

/// Only this origin, no inline script, no framing.
const CSP: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Answers a request for one of the page's files.
pub fn serve(method: &Method, path: &str) -> Response<Body> {
    let file = FILES.iter().find(|(p, _, _)| *p == path);
    let (status, content_type, body) = match (method, file) {
        (&Method::GET | &Method::HEAD, Some((_, ct, content))) => (StatusCode::OK, *ct, *content),
        (_, Some(_)) => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "405 method not allowed\n",
        ),
        (_, None) => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "404 page not found\n",
        ),
    };
    let body = if method == Method::HEAD { "" } else { body };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_refers_only_to_its_own_files_by_relative_urls() {
        let page = include_str!("assets/index.html");
        for reference in ["href=\"style.css\"", "src=\"app.js\""] {
            assert!(page.contains(reference), "{reference}");
        }
        for (_, _, content) in FILES {
            for absolute in [
                "http://",
                "https://",
                "src=\"/",
                "href=\"/",
                "fetch('/",
                "fetch(\"/",
            ] {
                assert!(!content.contains(absolute), "{absolute} in a page file");
            }
        }
    }

    #[test]
    fn files_are_served_with_their_type_and_the_policy() {
        let resp = serve(&Method::GET, "/app.js");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(resp.headers()[header::CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(serve(&Method::GET, "/").status(), StatusCode::OK);
        assert_eq!(
            serve(&Method::GET, "/etc/passwd").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            serve(&Method::POST, "/").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
