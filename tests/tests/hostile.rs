//! The apiserver against hostile clients: connections that never handshake, slowloris
//! headers, exhausted file descriptors, more requests than `--max-*-requests-inflight`, a
//! watcher that stops reading, and bodies or options built to make the server panic. All on
//! loopback; every loop is bounded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ekube_tests::{ServerProcess, ok, wait_for};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const TOKEN: &str = "hostile-token";

/// A server whose `--token-auth-file` knows [`TOKEN`] as a user outside `system:masters` (the
/// admin kubeconfig's user is exempt from the inflight limits, as upstream's super-user is).
/// Authorization is `AlwaysAllow`: these tests are about load and malformed input, which must
/// reach the handlers rather than stop at RBAC.
fn server_with_token(extra: &[&str]) -> (ServerProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, format!("{TOKEN},alice,1000,\"devs\"\n")).unwrap();
    let mut args = vec![
        "--token-auth-file",
        tokens.to_str().unwrap(),
        "--authorization-mode",
        "AlwaysAllow",
    ];
    args.extend_from_slice(extra);
    (ServerProcess::start(&args).unwrap(), dir)
}

/// A TLS connection to the server (its certificate is not checked; loopback), over a socket
/// with the given receive buffer.
async fn tls(port: u16, recv_buffer: Option<u32>) -> TlsStream<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let tcp = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let mut config = ekube_api::tls::unverified_client().with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// Sends one HTTP/1.1 request with the bearer token and returns the response's status code,
/// headers and body (the connection is closed after it).
async fn request(port: u16, method: &str, path: &str, ct: &str, body: &str) -> (u16, String) {
    let mut conn = tls(port, None).await;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

/// The JSON body of a response read by [`request`] (not chunked: a `Status`).
fn status_of(response: &str) -> Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// `kubectl get ns`, timed.
fn timed_get_ns(s: &ServerProcess) -> (Duration, String) {
    let started = Instant::now();
    let out = ok(s.kubectl(&["get", "ns", "-o", "name"]));
    (started.elapsed(), out)
}

/// User and system CPU time of a process, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // Counted in USER_HZ, which is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The server's descriptor count once it has stopped changing: `ekube server` runs the
/// controllers in-process, each with its own client and watches, and they connect over the
/// first seconds. A limit set before they are done would starve the server of its own
/// connections rather than test what it does when clients exhaust it.
fn settled_fds(pid: u32) -> usize {
    let mut last = open_fds(pid);
    let mut same = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while same < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        let now = open_fds(pid);
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_slowloris_do_not_starve_kubectl() {
    let (s, _tokens) = server_with_token(&[]);
    // Discovery cached by a first run, as a user's kubectl has it.
    timed_get_ns(&s);

    // 2,000 connections that never start a TLS handshake.
    let idle: Vec<std::net::TcpStream> = (0..2000)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap())
        .collect();
    // Slowloris: a finished handshake, then a request header one byte every 2 seconds.
    let mut slow = tls(s.port, None).await;
    let slowloris = tokio::spawn(async move {
        for b in b"GET /api/v1/namespaces HTTP/1.1\r\nHost: localhost\r\n".iter() {
            if slow.write_all(&[*b]).await.is_err() || slow.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    // Let the server accept them (on a loaded machine the first ones may already have met
    // the handshake timeout by the time the last is opened).
    wait_for(
        Duration::from_secs(20),
        "the server to accept the idle connections",
        || Ok(open_fds(s.pid()) > 1000),
    )
    .unwrap();

    let (took, out) = tokio::task::block_in_place(|| timed_get_ns(&s));
    assert!(out.contains("namespace/default"), "{out}");
    assert!(
        took < Duration::from_secs(2),
        "kubectl get ns took {took:?} next to 2,000 idle connections and a slowloris client"
    );

    // The handshake timeout (10 s) frees what the idle connections held, though they stay
    // open on this side.
    wait_for(
        Duration::from_secs(25),
        "the server to drop connections that never handshake",
        || Ok(open_fds(s.pid()) < 500),
    )
    .unwrap();
    drop(idle);
    slowloris.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_file_descriptors_neither_spin_nor_stick() {
    let (s, _tokens) = server_with_token(&[]);
    timed_get_ns(&s);
    let pid = s.pid();
    let limit = settled_fds(pid) + 64;
    let set = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .unwrap();
    assert!(set.success(), "prlimit failed: {set}");

    // More connections than descriptors are left: the rest wait in the backlog, and accept
    // fails with EMFILE while the listener stays readable.
    let clients: Vec<std::net::TcpStream> = (0..200)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::from(([127, 0, 0, 1], s.port)),
                Duration::from_millis(200),
            )
            .ok()
        })
        .collect();
    wait_for(Duration::from_secs(5), "accept to fail with EMFILE", || {
        Ok(s.log().contains("accept failed"))
    })
    .unwrap();
    let before = cpu_time(pid);
    let window = Duration::from_secs(3);
    std::thread::sleep(window);
    let used = cpu_time(pid) - before;
    assert!(
        used < window / 10,
        "the server used {used:?} of CPU in {window:?} with its descriptors exhausted"
    );

    drop(clients);
    let mut last = String::new();
    wait_for(
        Duration::from_secs(15),
        "kubectl get ns after the descriptors were freed",
        || {
            let out = s.kubectl(&["get", "ns", "-o", "name"]);
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            Ok(out.status.success())
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {last}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_inflight_pool_answers_429_with_retry_after() {
    let (s, _tokens) = server_with_token(&[
        "--max-requests-inflight",
        "1",
        "--max-mutating-requests-inflight",
        "1",
    ]);
    let cms = "/api/v1/namespaces/default/configmaps";
    // A create whose body never comes holds the one mutating slot.
    let mut holder = tls(s.port, None).await;
    holder
        .write_all(
            format!(
                "POST {cms} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    holder.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let body = json!({"metadata": {"name": "c"}}).to_string();
    let (code, resp) = request(s.port, "POST", cms, "application/json", &body).await;
    assert_eq!(code, 429, "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("\r\nretry-after: 1\r\n"),
        "{resp}"
    );
    let st = status_of(&resp);
    assert_eq!(st["reason"], "TooManyRequests", "{st}");
    assert_eq!(st["details"]["retryAfterSeconds"], 1, "{st}");

    // Reads have their own pool, and the super-user is never refused.
    let (code, resp) = request(s.port, "GET", cms, "application/json", "").await;
    assert_eq!(code, 200, "{resp}");
    let out = tokio::task::block_in_place(|| {
        s.kubectl(&["create", "configmap", "admin-cm", "--from-literal=a=b"])
    });
    assert!(out.status.success(), "{out:?}");

    // Once the slot is free, creates pass again.
    drop(holder);
    let mut created = 0;
    for _ in 0..50 {
        let (code, _) = request(s.port, "POST", cms, "application/json", &body).await;
        if code == 201 {
            created = code;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        created, 201,
        "the create never passed after the slot was freed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_watcher_is_closed() {
    let (s, _tokens) = server_with_token(&["--watch-stall-timeout", "1"]);
    // A small receive window, so the server's buffers fill with few events.
    let mut watch = tls(s.port, Some(4096)).await;
    watch
        .write_all(
            format!(
                "GET /api/v1/namespaces/default/configmaps?watch=true HTTP/1.1\r\n\
                 Host: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut head = [0u8; 12];
    watch.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "{}", String::from_utf8_lossy(&head));

    // The client reads nothing more while 300 ConfigMaps of 64 KiB are written.
    let client = s.client().await.unwrap();
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client, "default");
    let data = "x".repeat(64 << 10);
    let total = 300;
    for i in 0..total {
        let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": format!("big-{i}")}, "data": {"d": data},
        }))
        .unwrap();
        cms.create(&Default::default(), &cm).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // What the server had sent before it gave up arrives, then the end of the connection.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match watch.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the stalled watch was still open 30 s after the writes"
    );
    let events = String::from_utf8_lossy(&rest).matches("\"ADDED\"").count();
    assert!(
        events < total,
        "the stalled watcher received all {total} events: it was buffered, not closed"
    );
    assert!(
        s.log()
            .contains("closing a watch whose client stopped reading"),
        "{}",
        s.log()
    );
}

#[tokio::test]
async fn bodies_and_options_built_to_panic_are_bad_requests() {
    let (s, _tokens) = server_with_token(&[]);
    let pods = "/api/v1/namespaces/default/pods";
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"nodeName": "nowhere", "containers": [{"name": "c", "image": "i"}]}});
    let (code, resp) = request(s.port, "POST", pods, "application/json", &pod.to_string()).await;
    assert_eq!(code, 201, "{resp}");

    let hostile = r#"{"metadata":"x"}"#;
    for (method, path, ct) in [
        ("POST", pods.to_string(), "application/json"),
        ("PUT", format!("{pods}/p"), "application/json"),
        ("PATCH", format!("{pods}/p"), "application/merge-patch+json"),
        (
            "PATCH",
            format!("{pods}/p"),
            "application/strategic-merge-patch+json",
        ),
    ] {
        let (code, resp) = request(s.port, method, &path, ct, hostile).await;
        assert_eq!(code, 400, "{method} {ct}: {resp}");
        assert_eq!(status_of(&resp)["reason"], "BadRequest", "{resp}");
    }
    let (code, resp) = request(
        s.port,
        "PATCH",
        &format!("{pods}/p"),
        "application/json-patch+json",
        r#"[{"op":"replace","path":"/metadata","value":7}]"#,
    )
    .await;
    assert_eq!(code, 400, "{resp}");

    let (code, resp) = request(
        s.port,
        "GET",
        &format!("{pods}/p/log?sinceSeconds=9223372036854775807"),
        "application/json",
        "",
    )
    .await;
    assert_eq!(code, 400, "{resp}");
    let st = status_of(&resp);
    assert!(
        st["message"]
            .as_str()
            .unwrap_or_default()
            .contains("sinceSeconds"),
        "{st}"
    );

    // The server is still there and the pod unchanged.
    let (code, resp) = request(s.port, "GET", &format!("{pods}/p"), "", "").await;
    assert_eq!(code, 200, "{resp}");
    assert_eq!(status_of(&resp)["metadata"]["name"], "p");
}
