//! `/exec/{ns}/{pod}/{container}`, `/attach/{ns}/{pod}/{container}` and
//! `/portForward/{ns}/{pod}` through the runtime's CRI, as upstream's kubelet serves them: the
//! container or sandbox is found through CRI ([`lookup`]), the runtime's `Exec`, `Attach` or
//! `PortForward` answers a URL on its streaming server, and the client's upgraded connection
//! is proxied there byte for byte. The protocols themselves (WebSocket channels, SPDY) are the
//! runtime's ([`crate::runtime::streaming`]).
//!
//! `/run/{ns}/{pod}/{container}`, upstream's plain request/response exec, is CRI `ExecSync`.

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use super::lookup::{self, NotServed};
use super::{Body, Finish, Node, Query, full, text};
use crate::cri;

/// Which streams the client asked for, by upstream's names (`stdin`) or the kubelet's older
/// ones (`input`). A terminal has one output: with `tty`, stderr is dropped as upstream does.
fn streams(q: &Query) -> (bool, bool, bool, bool) {
    let tty = q.flag(&["tty"]);
    (
        q.flag(&["stdin", "input"]),
        q.flag(&["stdout", "output"]),
        q.flag(&["stderr", "error"]) && !tty,
        tty,
    )
}

/// The HTTP answer to a refused CRI call.
fn refused(what: &str, status: tonic::Status) -> Response<Body> {
    let code = match status.code() {
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    text(code, format!("{what}: {}", status.message()))
}

/// What `/exec` and `/attach` run in a container: a new process, or the container's own.
pub enum Session {
    Exec,
    Attach,
}

/// `/exec` and `/attach`: the running container found through CRI, the runtime's `Exec` or
/// `Attach` asked for a URL with the client's streams, and the connection proxied there.
pub async fn serve_session(
    node: &Node,
    session: Session,
    (ns, pod, container): (&str, &str, &str),
    q: &Query,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let cmd = q.all("command");
    if matches!(session, Session::Exec) && cmd.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 command",
        );
    }
    let found = match lookup::running(node, ns, pod, container).await {
        Ok(f) => f,
        Err(NotServed(code, msg)) => return text(code, msg),
    };
    let (stdin, stdout, stderr, tty) = streams(q);
    let mut runtime = node.runtime.clone();
    let (what, asked) = match session {
        Session::Exec => {
            // The command line can carry secrets (passwords in arguments): only at debug.
            tracing::info!(%ns, %pod, %container, tty, "exec");
            tracing::debug!(%ns, %pod, %container, ?cmd, "exec command");
            let request = cri::ExecRequest {
                container_id: found.id,
                cmd,
                tty,
                stdin,
                stdout,
                stderr,
            };
            (
                "exec",
                runtime.exec(request).await.map(|r| r.into_inner().url),
            )
        }
        Session::Attach => {
            tracing::info!(%ns, %pod, %container, tty, "attach");
            let request = cri::AttachRequest {
                container_id: found.id,
                stdin,
                tty,
                stdout,
                stderr,
            };
            (
                "attach",
                runtime.attach(request).await.map(|r| r.into_inner().url),
            )
        }
    };
    through(what, asked, req).await
}

pub async fn serve_port_forward(
    node: &Node,
    ns: &str,
    pod: &str,
    q: &Query,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    // WebSocket clients name their ports in the query; SPDY clients name one per stream.
    let mut ports = Vec::new();
    for p in q.all("ports").iter().flat_map(|p| p.split(',')) {
        match p.trim().parse::<u16>() {
            Ok(port) if port > 0 => ports.push(i32::from(port)),
            _ => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("invalid port {p:?}: a port is a number from 1 to 65535"),
                );
            }
        }
    }
    let sb = match lookup::sandbox(node, ns, pod).await {
        Ok(sb) => sb,
        Err(NotServed(code, msg)) => return text(code, msg),
    };
    if sb.state != cri::PodSandboxState::SandboxReady as i32 {
        return text(
            StatusCode::BAD_REQUEST,
            format!("pod {ns}/{pod} is not running"),
        );
    }
    tracing::info!(%ns, %pod, ?ports, "port-forward");
    let asked = node
        .runtime
        .clone()
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: sb.id,
            port: ports,
        })
        .await;
    through("port-forward", asked.map(|r| r.into_inner().url), req).await
}

/// `POST /run/{ns}/{pod}/{container}?cmd=…`: runs `cmd` (split on spaces, as upstream does) to
/// its end and answers its stdout followed by its stderr; a failing command is a 500 carrying
/// its exit code and output.
pub async fn serve_run(
    node: &Node,
    ns: &str,
    pod: &str,
    container: &str,
    q: &Query,
) -> Response<Body> {
    let cmd: Vec<String> = q
        .get("cmd")
        .unwrap_or_default()
        .split(' ')
        .map(str::to_string)
        .collect();
    if cmd.iter().all(String::is_empty) {
        return text(StatusCode::BAD_REQUEST, "you must specify a command in cmd");
    }
    let found = match lookup::running(node, ns, pod, container).await {
        Ok(f) => f,
        Err(NotServed(code, msg)) => return text(code, msg),
    };
    tracing::info!(%ns, %pod, %container, "run");
    tracing::debug!(%ns, %pod, %container, ?cmd, "run command");
    let ran = node
        .runtime
        .clone()
        .exec_sync(cri::ExecSyncRequest {
            container_id: found.id,
            cmd,
            timeout: 0,
        })
        .await;
    let out = match ran {
        Ok(r) => r.into_inner(),
        Err(status) => return refused("run", status),
    };
    let mut data = out.stdout;
    data.extend(out.stderr);
    match out.exit_code {
        0 => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(full(data))
            .finish(),
        code => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "command terminated with exit code {code}: {}",
                String::from_utf8_lossy(&data)
            ),
        ),
    }
}

/// Proxies `req` to the streaming URL the runtime answered for `what`, or says why it refused.
async fn through(
    what: &str,
    url: Result<String, tonic::Status>,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    match url {
        Ok(url) => proxy(&url, req).await,
        Err(status) => refused(what, status),
    }
}

/// Sends `req` on to the runtime's streaming `url` and answers what it answers; once both
/// sides switch protocols, copies bytes between the client and the runtime until either
/// closes.
async fn proxy(url: &str, mut req: Request<hyper::body::Incoming>) -> Response<Body> {
    let failed = |e: &dyn std::fmt::Display| {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reaching the runtime's streaming server at {url}: {e}"),
        )
    };
    let target: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => return failed(&e),
    };
    let (Some(authority), Some(path)) = (target.authority(), target.path_and_query()) else {
        return failed(&"not an absolute URL");
    };
    let stream = match tokio::net::TcpStream::connect(authority.as_str()).await {
        Ok(s) => s,
        Err(e) => return failed(&e),
    };
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(h) => h,
            Err(e) => return failed(&e),
        };
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "streaming connection to the runtime ended");
        }
    });
    let client_upgrade = hyper::upgrade::on(&mut req);
    let mut forward = Request::builder().method(req.method()).uri(path.clone());
    for (name, value) in req.headers() {
        if name != header::HOST && name != header::AUTHORIZATION {
            forward = forward.header(name, value);
        }
    }
    let forward = match forward
        .header(header::HOST, authority.as_str())
        .body(Empty::<Bytes>::new())
    {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    let mut answer = match sender.send_request(forward).await {
        Ok(a) => a,
        Err(e) => return failed(&e),
    };
    if answer.status() == StatusCode::SWITCHING_PROTOCOLS {
        let runtime_upgrade = hyper::upgrade::on(&mut answer);
        tokio::spawn(async move {
            let (client, runtime) = match tokio::join!(client_upgrade, runtime_upgrade) {
                (Ok(c), Ok(r)) => (c, r),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!(error = %e, "streaming upgrade failed");
                    return;
                }
            };
            let (mut client, mut runtime) = (TokioIo::new(client), TokioIo::new(runtime));
            let _ = tokio::io::copy_bidirectional(&mut client, &mut runtime).await;
        });
    }
    let (parts, body) = answer.into_parts();
    Response::from_parts(parts, body.map_err(std::io::Error::other).boxed())
}
