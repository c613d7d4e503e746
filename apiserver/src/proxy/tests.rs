use std::convert::Infallible;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::location::global_unicast;
use super::*;

#[test]
fn names_split_like_upstream() {
    assert_eq!(
        split_scheme_name_port("https:web:8443"),
        Some(("https", "web", "8443"))
    );
    assert_eq!(
        split_scheme_name_port("web:http"),
        Some(("", "web", "http"))
    );
    assert_eq!(split_scheme_name_port("web"), Some(("", "web", "")));
    assert_eq!(
        split_scheme_name_port("http:web:"),
        Some(("http", "web", ""))
    );
    // Two parts are always name and port: `https:web` is the port `web` of `https`.
    assert_eq!(
        split_scheme_name_port("https:web"),
        Some(("", "https", "web"))
    );
    for bad in ["", ":80", "ftp:web:80", "http::80", "a:b:c:d"] {
        assert_eq!(split_scheme_name_port(bad), None, "{bad:?}");
    }
    assert_eq!(percent_decode("web%3A80"), "web:80");
    assert_eq!(percent_decode("web%zz"), "web%zz");
}

#[test]
fn proxy_paths_and_the_redirect() {
    let ns = "/api/v1/namespaces/dev/services/web:80/proxy";
    let cases = [
        ("", ""),
        ("/", "/"),
        ("/some/path", "/some/path"),
        ("/some/path/", "/some/path/"),
        ("//a//b//", "/a/b/"),
        ("/a/./b/../c", "/a/c"),
        ("/../../../pods", "/pods"),
        ("/..", "/"),
    ];
    for (rest, want) in cases {
        let path = format!("{ns}{rest}");
        assert_eq!(split_path(&path, 7), Some((ns, want.to_string())), "{path}");
    }
    let node = "/api/v1/nodes/n1/proxy";
    assert_eq!(
        split_path(&format!("{node}/healthz"), 5),
        Some((node, "/healthz".to_string()))
    );
    assert_eq!(split_path("/api/v1/nodes/n1", 5), None);
    // Only `GET` and `HEAD` of `…/proxy` itself are redirected, the query kept.
    assert_eq!(
        redirect(&Method::GET, ns, Some("x=1&y=2"), ""),
        Some(format!("{ns}/?x=1&y=2"))
    );
    assert_eq!(
        redirect(&Method::HEAD, ns, None, ""),
        Some(format!("{ns}/"))
    );
    assert_eq!(redirect(&Method::POST, ns, None, ""), None);
    assert_eq!(redirect(&Method::GET, ns, None, "/"), None);
}

#[test]
fn credentials_and_hop_by_hop_headers_stay_behind() {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("authorization", "Bearer secret"),
        ("impersonate-user", "someone"),
        ("impersonate-group", "admins"),
        ("impersonate-extra-scopes", "all"),
        ("host", "apiserver:6443"),
        ("content-length", "5"),
        ("connection", "Upgrade, X-Private"),
        ("x-private", "hop"),
        ("upgrade", "websocket"),
        ("keep-alive", "timeout=5"),
        ("te", "trailers"),
        ("accept", "text/html"),
        ("cookie", "a=b"),
        ("sec-websocket-key", "abc"),
    ] {
        h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    let names = |m: HeaderMap| {
        let mut v: Vec<String> = m.keys().map(|k| k.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(
        names(forwardable(&h, false)),
        ["accept", "cookie", "sec-websocket-key"]
    );
    assert_eq!(
        names(forwardable(&h, true)),
        [
            "accept",
            "connection",
            "cookie",
            "sec-websocket-key",
            "upgrade"
        ]
    );
    assert!(is_upgrade(&h));
    h.remove("connection");
    assert!(!is_upgrade(&h), "Upgrade without Connection: Upgrade");

    let mut back = HeaderMap::new();
    for (k, v) in [
        ("content-type", "text/html"),
        ("transfer-encoding", "chunked"),
        ("access-control-allow-origin", "*"),
        ("access-control-allow-credentials", "true"),
        ("set-cookie", "s=1"),
    ] {
        back.append(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    assert_eq!(names(answer_headers(&back)), ["content-type", "set-cookie"]);
}

#[test]
fn locations_are_rewritten_under_the_proxy_path() {
    let prefix = "/api/v1/namespaces/dev/services/web/proxy";
    let backend = "10.244.1.5:8080";
    let client = "127.0.0.1:8001";
    let rewrite = |l: &str| rewrite_location(l, backend, client, prefix);
    assert_eq!(rewrite("/login?next=/"), format!("{prefix}/login?next=/"));
    assert_eq!(rewrite("/dir/"), format!("{prefix}/dir/"));
    assert_eq!(
        rewrite("http://10.244.1.5:8080/x#top"),
        format!("{prefix}/x#top")
    );
    // Already under the prefix, another host, or relative: left alone.
    assert_eq!(rewrite(&format!("{prefix}/a")), format!("{prefix}/a"));
    assert_eq!(rewrite("https://example.com/a"), "https://example.com/a");
    assert_eq!(rewrite("next/page"), "next/page");
    // On the client's own host: kept absolute, the path moved under the prefix.
    assert_eq!(
        rewrite("http://127.0.0.1:8001/a"),
        format!("http://127.0.0.1:8001{prefix}/a")
    );
}

#[test]
fn only_global_unicast_addresses_are_proxied() {
    for ip in ["10.244.1.5", "192.168.64.10", "2001:db8::1", "fd00::5"] {
        assert!(global_unicast(ip.parse().unwrap()), "{ip}");
    }
    for ip in [
        "127.0.0.1",
        "0.0.0.0",
        "169.254.169.254",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "fe80::1",
    ] {
        assert!(!global_unicast(ip.parse().unwrap()), "{ip}");
    }
    assert_eq!(
        Location::new(Tls::None, "fd00::5", None).authority,
        "[fd00::5]"
    );
    let l = Location::new(Tls::Insecure, "10.0.0.1", None);
    assert_eq!((l.port, l.authority.as_str()), (443, "10.0.0.1"));
}

/// A backend on loopback: answers a WebSocket-style upgrade with `101` and then echoes bytes
/// upper-cased; answers anything else with the request line, `X-Forwarded-For`, and the body.
async fn backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = conn.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let text = String::from_utf8_lossy(&buf).to_string();
                if text.to_ascii_lowercase().contains("upgrade: websocket") {
                    conn.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n").await.unwrap();
                    loop {
                        let n = conn.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        let up = chunk[..n].to_ascii_uppercase();
                        if conn.write_all(&up).await.is_err() {
                            return;
                        }
                    }
                }
                let (head, body) = text.split_once("\r\n\r\n").unwrap();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                let mut body = body.as_bytes().to_vec();
                while body.len() < length {
                    let n = conn.read(&mut chunk).await.unwrap();
                    body.extend_from_slice(&chunk[..n]);
                }
                let xff = head
                    .lines()
                    .find_map(|l| l.strip_prefix("x-forwarded-for: "))
                    .unwrap_or("-");
                let answer = format!(
                    "{} for={xff} body={}",
                    head.lines().next().unwrap(),
                    String::from_utf8_lossy(&body)
                );
                let _ = conn
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                            answer.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    port
}

/// A front server on loopback relaying every request to `backend` as the proxy does: headers
/// through [`outgoing_headers`], the body streamed, upgrades spliced by [`send`].
async fn front(backend: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (conn, client) = listener.accept().await.unwrap();
            let peer = client.ip();
            let service =
                hyper::service::service_fn(move |mut req: Request<Incoming>| async move {
                    let upgrading = is_upgrade(req.headers());
                    let client = upgrading.then(|| hyper::upgrade::on(&mut req));
                    let headers = outgoing_headers(
                        req.headers(),
                        upgrading,
                        Some(peer),
                        req.uri().path(),
                        "backend",
                    );
                    let (method, uri) = (req.method().clone(), req.uri().clone());
                    let body: Body = req
                        .into_body()
                        .map_err(std::io::Error::other)
                        .boxed_unsync();
                    let mut out = Request::builder()
                        .method(method)
                        .uri(uri)
                        .body(body)
                        .unwrap();
                    *out.headers_mut() = headers;
                    let location = Location::new(Tls::None, "127.0.0.1", Some(backend));
                    let mut sender = connect(&location, &insecure_tls()).await.unwrap();
                    let resp = match send(&mut sender, out, client).await.unwrap() {
                        Answer::Switched(r) => r,
                        Answer::Plain(r) => {
                            r.map(|b| b.map_err(std::io::Error::other).boxed_unsync())
                        }
                    };
                    Ok::<_, Infallible>(resp)
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(conn), service)
                    .with_upgrades(),
            );
        }
    });
    port
}

async fn read_until(conn: &mut tokio::net::TcpStream, want: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(want.len()).any(|w| w == want) {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut chunk))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(
            n > 0,
            "closed before {:?}: {:?}",
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
    buf
}

#[tokio::test]
async fn bodies_stream_and_upgrades_are_spliced() {
    let front = front(backend().await).await;

    // A plain request: the body reaches the backend, the answer comes back.
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", front))
        .await
        .unwrap();
    conn.write_all(b"POST /echo?x=1 HTTP/1.1\r\nHost: front\r\nAuthorization: Bearer t\r\nContent-Length: 5\r\n\r\nhello").await.unwrap();
    let got = String::from_utf8(read_until(&mut conn, b"body=hello").await).unwrap();
    assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
    assert!(
        got.contains("POST /echo?x=1 HTTP/1.1 for=127.0.0.1 body=hello"),
        "{got}"
    );

    // An upgrade: the 101 comes back and bytes then flow both ways.
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", front))
        .await
        .unwrap();
    conn.write_all(
        b"GET /ws HTTP/1.1\r\nHost: front\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let head = String::from_utf8(read_until(&mut conn, b"\r\n\r\n").await).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    conn.write_all(b"ping").await.unwrap();
    assert_eq!(read_until(&mut conn, b"PING").await, b"PING");
    conn.write_all(b"again").await.unwrap();
    assert_eq!(read_until(&mut conn, b"AGAIN").await, b"AGAIN");
}

#[tokio::test]
async fn an_unreachable_backend_is_named() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let location = Location::new(Tls::None, "127.0.0.1", Some(port));
    let Err(e) = connect(&location, &insecure_tls()).await else {
        panic!("connected to a closed port");
    };
    assert!(
        e.starts_with(&format!("dial tcp 127.0.0.1:{port}: ")),
        "{e}"
    );
}
