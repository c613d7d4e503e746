use std::convert::Infallible;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::*;

/// An apiserver stand-in on loopback that answers every request with what it received.
async fn echo_apiserver() -> kube::Client {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let header = |name: header::HeaderName| {
                        req.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    let seen = json!({
                        "method": req.method().as_str(),
                        "uri": req.uri().to_string(),
                        "authorization": header(header::AUTHORIZATION),
                        "contentType": header(header::CONTENT_TYPE),
                        "token": header(header::HeaderName::from_static(TOKEN_HEADER)),
                    });
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let mut seen = seen;
                    seen["body"] = json!(String::from_utf8_lossy(&body));
                    let mut resp = Response::new(Full::new(Bytes::from(seen.to_string())));
                    *resp.status_mut() = StatusCode::CREATED;
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

async fn call(relay: &Relay, req: Request<Full<Bytes>>) -> (StatusCode, Value) {
    let resp = relay.handle(req).await;
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[test]
fn only_api_paths_are_relayed() {
    for path in ["/api", "/api/v1/pods", "/apis", "/apis/apps/v1/deployments"] {
        assert!(relayed(path), "{path}");
    }
    for path in ["/", "/app.js", "/apix", "/api-docs", "/metrics", "/healthz"] {
        assert!(!relayed(path), "{path}");
    }
}

#[tokio::test]
async fn a_call_goes_out_with_the_viewers_token_and_nothing_else_of_its_headers() {
    let relay = Relay::new(echo_apiserver().await);
    let req =
        Request::patch("/apis/apps/v1/namespaces/default/deployments/web/scale?fieldManager=x")
            .header(TOKEN_HEADER, "Bearer abc.def")
            .header(header::CONTENT_TYPE, "application/merge-patch+json")
            .header(header::COOKIE, "session=1")
            .body(Full::new(Bytes::from(r#"{"spec":{"replicas":4}}"#)))
            .unwrap();
    let (status, seen) = call(&relay, req).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(seen["method"], "PATCH");
    assert_eq!(
        seen["uri"],
        "/apis/apps/v1/namespaces/default/deployments/web/scale?fieldManager=x"
    );
    assert_eq!(seen["authorization"], "Bearer abc.def");
    assert_eq!(seen["contentType"], "application/merge-patch+json");
    assert_eq!(seen["token"], Value::Null, "the page's header stays here");
    assert_eq!(seen["body"], r#"{"spec":{"replicas":4}}"#);
}

#[tokio::test]
async fn without_a_usable_token_nothing_is_sent() {
    let relay = Relay::new(echo_apiserver().await);
    let cases = [
        (None, StatusCode::UNAUTHORIZED, "Unauthorized"),
        (Some("  "), StatusCode::UNAUTHORIZED, "Unauthorized"),
        (Some("Bearer "), StatusCode::UNAUTHORIZED, "Unauthorized"),
        (Some("abc def"), StatusCode::BAD_REQUEST, "BadRequest"),
    ];
    for (token, code, reason) in cases {
        let mut req = Request::get("/api/v1/nodes");
        if let Some(token) = token {
            req = req.header(TOKEN_HEADER, token);
        }
        let (status, body) = call(&relay, req.body(Full::new(Bytes::new())).unwrap()).await;
        assert_eq!(status, code, "{token:?}");
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["reason"], reason, "{token:?}");
        assert_eq!(body["code"], code.as_u16());
    }
}

#[tokio::test]
async fn other_methods_and_oversized_bodies_are_refused() {
    let relay = Relay::new(echo_apiserver().await);
    let options = Request::builder()
        .method(Method::OPTIONS)
        .uri("/api/v1/nodes")
        .header(TOKEN_HEADER, "t")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(
        call(&relay, options).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let huge = Request::post("/api/v1/namespaces/default/configmaps")
        .header(TOKEN_HEADER, "t")
        .body(Full::new(Bytes::from(vec![b'x'; MAX_BODY + 1])))
        .unwrap();
    let (status, body) = call(&relay, huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["reason"], "RequestEntityTooLarge");
}
