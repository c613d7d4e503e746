//! The CRI streaming server: where the runtime serves `Exec`, `Attach` and `PortForward`.
//!
//! As in containerd, each of these RPCs only registers the session and answers a single-use
//! URL (`http://<address>/<exec|attach|portforward>/<token>`). The kubelet proxies the
//! client's upgraded connection to that URL, and this server speaks the Kubernetes streaming
//! protocols on it: the WebSocket channel protocols of exec and attach ([`ws`], [`exec`],
//! [`attach`]) and SPDY port forwarding ([`spdy`], [`portforward`]). A token is good for one
//! connection within [`TOKEN_TTL`]. The server listens on loopback by default, so only the
//! node itself reaches it.

pub mod attach;
pub mod exec;
pub mod portforward;
pub mod spdy;
pub mod ws;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use super::runc::Runc;
use super::{Error, Result};
use crate::respond::{Body, text};

/// How long a URL stays usable once handed out (upstream's request cache keeps one minute).
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// At most this many sessions wait for their connection (upstream's cache holds 1000).
const MAX_PENDING: usize = 1000;

/// Which of a command's streams the client wants.
#[derive(Debug, Clone, Copy, Default)]
pub struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A session registered by an RPC, waiting for its client to connect.
#[derive(Debug)]
pub enum Session {
    /// `runc exec` of `cmd` in `container`.
    Exec {
        container: String,
        cmd: Vec<String>,
        streams: Streams,
    },
    /// The output of `container` as it is written to its CRI log, until `exited` turns true.
    Attach {
        log_path: PathBuf,
        /// The container's stdin FIFO, when it has one and the client sends input.
        stdin: Option<PathBuf>,
        exited: tokio::sync::watch::Receiver<bool>,
        streams: Streams,
    },
    /// Connections to ports of the sandbox whose network namespace is `netns` (`None`: the
    /// node's, for a sandbox in the host network).
    PortForward { netns: Option<PathBuf> },
}

impl Session {
    /// The URL path segment of the session's kind.
    fn kind(&self) -> &'static str {
        match self {
            Session::Exec { .. } => "exec",
            Session::Attach { .. } => "attach",
            Session::PortForward { .. } => "portforward",
        }
    }
}

/// What the connection tasks share with the runtime.
struct Shared {
    runc: Runc,
    pending: Mutex<HashMap<String, (Instant, Session)>>,
}

impl Shared {
    /// Takes the session `token` names, if it is of `kind` and has not expired.
    fn take(&self, kind: &str, token: &str) -> Option<Session> {
        let mut pending = self.pending.lock().expect("pending sessions");
        match pending.remove(token) {
            Some((at, session)) if at.elapsed() < TOKEN_TTL && session.kind() == kind => {
                Some(session)
            }
            _ => None,
        }
    }
}

/// The listening server; dropping it stops it.
pub struct Server {
    /// `http://<bound address>`.
    base: String,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Server {
    /// Listens on `address` (port 0: any free port) and serves sessions run with `runc`.
    pub async fn start(address: SocketAddr, runc: Runc) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| Error::Serve(format!("binding the streaming server to {address}: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Error::Serve(format!("streaming server address: {e}")))?;
        tracing::info!(address = %bound, "CRI streaming server listening");
        let shared = Arc::new(Shared {
            runc,
            pending: Mutex::new(HashMap::new()),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self {
            base: format!("http://{bound}"),
            shared,
            accept,
        })
    }

    /// Registers `session` and returns the URL its client connects to.
    pub fn register(&self, session: Session) -> Result<String> {
        let mut pending = self.shared.pending.lock().expect("pending sessions");
        pending.retain(|_, (at, _)| at.elapsed() < TOKEN_TTL);
        if pending.len() >= MAX_PENDING {
            return Err(Error::Serve(format!(
                "{MAX_PENDING} streaming sessions are already waiting for their clients"
            )));
        }
        let token = format!("{:032x}", rand::random::<u128>());
        let url = format!("{}/{}/{token}", self.base, session.kind());
        pending.insert(token, (Instant::now(), session));
        Ok(url)
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a streaming connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(route(&shared, req)) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "streaming connection ended");
            }
        });
    }
}

fn route(shared: &Shared, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let path = req.uri().path().trim_matches('/').to_owned();
    let Some((kind, token)) = path.split_once('/') else {
        return text(StatusCode::NOT_FOUND, "no such streaming endpoint");
    };
    let Some(session) = shared.take(kind, token) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("unknown or expired {kind} session"),
        );
    };
    match session {
        Session::Exec {
            container,
            cmd,
            streams,
        } => exec::serve(req, shared.runc.clone(), container, cmd, streams),
        Session::Attach {
            log_path,
            stdin,
            exited,
            streams,
        } => attach::serve(req, log_path, stdin, exited, streams),
        Session::PortForward { netns } => portforward::serve(req, netns),
    }
}
