//! Port-forward sessions: the `portforward.k8s.io` protocol over SPDY/3.1 ([`super::spdy`]),
//! either tunnelled in WebSocket binary messages (subprotocol `SPDY/3.1+portforward.k8s.io`,
//! what kubectl 1.30+ uses through the apiserver) or on a plain `Upgrade: SPDY/3.1` connection.
//!
//! The client opens two streams per forwarded connection, both with headers `port` and
//! `requestID`: `streamType: error` and `streamType: data`. Once both exist this side connects
//! to `localhost:<port>` inside the pod's network namespace and copies bytes between the data
//! stream and that socket; a failure to connect is written on the error stream. Each
//! direction ends with a FIN; both streams are FINished once the pod side closes.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::spdy::{self, Frame};
use crate::respond::{Body, Finish, full, text};

/// The WebSocket subprotocol of SPDY tunnelled over WebSocket.
const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
const STREAM_PROTOCOL: &str = "portforward.k8s.io";

/// Accepts the client's upgrade and forwards its streams into the namespace at `netns` (the
/// node's own when `None`: a sandbox in the host network).
pub fn serve(req: Request<hyper::body::Incoming>, netns: Option<PathBuf>) -> Response<Body> {
    let headers = req.headers();
    let offered = |name: &http::HeaderName| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim() == TUNNEL_PROTOCOL || p.trim() == STREAM_PROTOCOL)
    };
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    tracing::debug!(%upgrade, netns = ?netns, "port-forward session");
    if upgrade == "websocket" {
        if !offered(&header::SEC_WEBSOCKET_PROTOCOL) {
            return text(
                StatusCode::BAD_REQUEST,
                format!("port forwarding over WebSocket needs subprotocol {TUNNEL_PROTOCOL}"),
            );
        }
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
            return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
        };
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        tokio::spawn(async move {
            let Ok(upgraded) = hyper::upgrade::on(req).await else {
                return;
            };
            let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            let (mut sink, mut source) = socket.split();
            let (in_tx, in_rx) = mpsc::channel::<Bytes>(64);
            let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
            #[expect(
                clippy::collapsible_match,
                reason = "the frame is moved into the send, which a match guard cannot do"
            )]
            let reader = async move {
                while let Some(Ok(m)) = source.next().await {
                    match m {
                        Message::Binary(b) => {
                            if in_tx.send(b).await.is_err() {
                                return;
                            }
                        }
                        Message::Close(_) => return,
                        _ => {}
                    }
                }
            };
            let writer = async move {
                while let Some(frame) = out_rx.recv().await {
                    if sink.send(Message::Binary(frame.into())).await.is_err() {
                        return;
                    }
                }
                let _ = sink.send(super::ws::normal_close()).await;
                let _ = sink.close().await;
            };
            tokio::spawn(reader);
            tokio::spawn(writer);
            session(in_rx, out_tx, netns).await;
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, accept)
            .header(header::SEC_WEBSOCKET_PROTOCOL, TUNNEL_PROTOCOL)
            .body(full(Bytes::new()))
            .finish();
    }
    if upgrade == "spdy/3.1" {
        tokio::spawn(async move {
            let Ok(upgraded) = hyper::upgrade::on(req).await else {
                return;
            };
            let (mut rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));
            let (in_tx, in_rx) = mpsc::channel::<Bytes>(64);
            let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                while let Ok(n) = rd.read(&mut buf).await {
                    if n == 0 || in_tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        return;
                    }
                }
            });
            tokio::spawn(async move {
                while let Some(frame) = out_rx.recv().await {
                    if wr.write_all(&frame).await.is_err() {
                        return;
                    }
                }
                let _ = wr.shutdown().await;
            });
            session(in_rx, out_tx, netns).await;
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "SPDY/3.1")
            .header("X-Stream-Protocol-Version", STREAM_PROTOCOL)
            .body(full(Bytes::new()))
            .finish();
    }
    text(
        StatusCode::BAD_REQUEST,
        "port forwarding needs an upgrade to WebSocket or SPDY/3.1",
    )
}

/// Connects to `127.0.0.1:port` in the network namespace at `netns`, or the node's own.
async fn connect(netns: Option<&Path>, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    match netns {
        Some(netns) => connect_in(netns, port).await,
        None => {
            let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                tokio::net::TcpStream::connect(to),
            )
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
        }
    }
}

/// Connects to `127.0.0.1:port` from inside the network namespace at `netns` (on a thread of
/// its own, which alone enters the namespace; the socket stays in it).
async fn connect_in(netns: &Path, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let netns = netns.to_owned();
    let std_stream = tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || -> std::io::Result<std::net::TcpStream> {
            let ns = std::fs::File::open(&netns)?;
            // SAFETY: setns on this short-lived thread only, with an fd we hold open.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let s = std::net::TcpStream::connect_timeout(
                &([127, 0, 0, 1], port).into(),
                std::time::Duration::from_secs(10),
            )?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .join()
        .map_err(|_| std::io::Error::other("connect thread panicked"))?
    })
    .await
    .map_err(std::io::Error::other)??;
    tokio::net::TcpStream::from_std(std_stream)
}

/// A forwarded connection being set up: its two streams as they arrive.
#[derive(Default)]
struct Pair {
    port: u16,
    error: Option<u32>,
    data: Option<u32>,
}

/// Serves one SPDY connection: `input` carries its bytes in, frames go out on `output`.
async fn session(
    mut input: mpsc::Receiver<Bytes>,
    output: mpsc::Sender<Vec<u8>>,
    netns: Option<PathBuf>,
) {
    let mut headers = spdy::Headers::default();
    let mut buf = Vec::new();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    // Data stream id → where its bytes go (towards the pod).
    let mut sinks: HashMap<u32, mpsc::UnboundedSender<Option<Bytes>>> = HashMap::new();
    // Their receiving ends, until the pair's error stream arrives too.
    let mut receivers: HashMap<u32, mpsc::UnboundedReceiver<Option<Bytes>>> = HashMap::new();
    while let Some(chunk) = input.recv().await {
        buf.extend_from_slice(&chunk);
        while let Some(frame) = spdy::take_frame(&mut buf) {
            match frame {
                Frame::Control {
                    kind: spdy::SYN_STREAM,
                    flags: _,
                    data,
                } => {
                    let Some(id) = spdy::stream_id(&data) else {
                        continue;
                    };
                    let h = match headers.decode(data.get(10..).unwrap_or_default()) {
                        Ok(h) => h,
                        Err(e) => {
                            tracing::debug!(error = %e, "port-forward: bad SPDY header block");
                            return;
                        }
                    };
                    let get = |k: &str| {
                        h.iter()
                            .find(|(n, _)| n == k)
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default()
                    };
                    let reply = headers.encode(&[]);
                    let mut body = id.to_be_bytes().to_vec();
                    body.extend(reply);
                    if output
                        .send(spdy::control(spdy::SYN_REPLY, 0, &body))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    let (kind, request) = (get("streamtype"), get("requestid"));
                    let port = get("port").parse::<u16>().unwrap_or(0);
                    let pair = pairs.entry(request.clone()).or_default();
                    pair.port = port;
                    match kind.as_str() {
                        "error" => pair.error = Some(id),
                        "data" => {
                            pair.data = Some(id);
                            let (tx, rx) = mpsc::unbounded_channel();
                            sinks.insert(id, tx);
                            receivers.insert(id, rx);
                        }
                        other => tracing::debug!(
                            stream = id,
                            kind = other,
                            "port-forward: unknown stream type"
                        ),
                    }
                    if let Some(Pair {
                        port,
                        error: Some(e),
                        data: Some(d),
                    }) = pairs.get(&request)
                    {
                        let (port, e, d) = (*port, *e, *d);
                        pairs.remove(&request);
                        if let Some(rx) = receivers.remove(&d) {
                            tokio::spawn(forward(netns.clone(), port, e, d, rx, output.clone()));
                        }
                    }
                }
                Frame::Control {
                    kind: spdy::SYN_REPLY | spdy::HEADERS,
                    data,
                    ..
                } => {
                    // Keep the inflate context in step even though nothing here needs them.
                    let skip = if data.len() >= 4 { 4 } else { data.len() };
                    let _ = headers.decode(&data[skip..]);
                }
                Frame::Control {
                    kind: spdy::PING,
                    data,
                    ..
                } => {
                    if output
                        .send(spdy::control(spdy::PING, 0, &data))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Frame::Control {
                    kind: spdy::RST_STREAM,
                    data,
                    ..
                } => {
                    if let Some(id) = spdy::stream_id(&data)
                        && let Some(tx) = sinks.remove(&id)
                    {
                        let _ = tx.send(None);
                    }
                }
                Frame::Control {
                    kind: spdy::GOAWAY, ..
                } => return,
                Frame::Control { .. } => {}
                Frame::Data {
                    stream,
                    flags,
                    data,
                } => {
                    if let Some(tx) = sinks.get(&stream) {
                        if !data.is_empty() {
                            let _ = tx.send(Some(Bytes::from(data)));
                        }
                        if flags & spdy::FLAG_FIN != 0 {
                            let _ = tx.send(None);
                            sinks.remove(&stream);
                        }
                    }
                }
            }
        }
    }
    // The client went away: ending every sink stops the copies towards the pods.
    for (_, tx) in sinks.drain() {
        let _ = tx.send(None);
    }
}

/// One forwarded connection: pod socket ↔ data stream `data`; failures on stream `error`.
async fn forward(
    netns: Option<PathBuf>,
    port: u16,
    error: u32,
    data: u32,
    mut from_client: mpsc::UnboundedReceiver<Option<Bytes>>,
    output: mpsc::Sender<Vec<u8>>,
) {
    let conn = match connect(netns.as_deref(), port).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!(
                "error forwarding port {port} to pod: failed to connect to localhost:{port} inside the pod network namespace: {e}"
            );
            tracing::debug!(%msg, "port-forward");
            let _ = output.send(spdy::data(error, false, msg.as_bytes())).await;
            let _ = output.send(spdy::data(error, true, &[])).await;
            let _ = output.send(spdy::data(data, true, &[])).await;
            return;
        }
    };
    let _ = conn.set_nodelay(true);
    let (mut rd, mut wr) = conn.into_split();
    let upstream = async move {
        while let Some(Some(chunk)) = from_client.recv().await {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let out = output.clone();
    let downstream = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out.send(spdy::data(data, false, &buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = out.send(spdy::data(data, true, &[])).await;
    };
    let up = tokio::spawn(upstream);
    downstream.await;
    let _ = output.send(spdy::data(error, true, &[])).await;
    up.abort();
}
