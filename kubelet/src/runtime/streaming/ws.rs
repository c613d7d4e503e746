//! The Kubernetes WebSocket channel protocols of exec and attach
//! (`k8s.io/apimachinery/pkg/util/httpstream/wsstream`): every binary message starts with a
//! channel byte — 0 stdin, 1 stdout, 2 stderr, 3 error (a `Status` from v4 on, plain text
//! before), 4 terminal resize (v3+) — and `v5.channel.k8s.io` adds channel 255, whose message
//! `[255, n]` closes channel `n` (the client's end of stdin).

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

use futures::SinkExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::respond::{Body, Finish, full, text};

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
pub const CLOSE: u8 = 255;

/// The negotiated channel protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    /// `channel.k8s.io` / `v1.channel.k8s.io`, or no subprotocol.
    V1,
    V2,
    V3,
    V4,
    V5,
}

impl Protocol {
    const ALL: [(&'static str, Protocol); 6] = [
        ("v5.channel.k8s.io", Protocol::V5),
        ("v4.channel.k8s.io", Protocol::V4),
        ("v3.channel.k8s.io", Protocol::V3),
        ("v2.channel.k8s.io", Protocol::V2),
        ("v1.channel.k8s.io", Protocol::V1),
        ("channel.k8s.io", Protocol::V1),
    ];

    /// The best protocol both sides speak, with its name (`None` when the client offered
    /// protocols and none is known; an empty name when it offered none).
    pub fn negotiate(headers: &HeaderMap) -> Option<(&'static str, Protocol)> {
        let offered: Vec<String> = headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        if offered.is_empty() {
            return Some(("", Protocol::V1));
        }
        Self::ALL
            .iter()
            .find(|(name, _)| offered.iter().any(|o| o == name))
            .copied()
    }
}

/// Whether the request asks for a WebSocket upgrade.
pub fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Accepts the WebSocket upgrade of `req`: the `101` response to return now, and the future
/// connection with the negotiated protocol.
#[expect(
    clippy::type_complexity,
    clippy::result_large_err,
    reason = "the error is the response to send back, built once per upgrade; the connection \
              is an opaque future that a type alias cannot name"
)]
pub fn accept(
    req: Request<hyper::body::Incoming>,
) -> Result<
    (
        Response<Body>,
        Protocol,
        impl Future<Output = Option<WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>>>,
    ),
    Response<Body>,
> {
    if !is_websocket(req.headers()) {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "this endpoint needs a WebSocket upgrade (Upgrade: websocket)",
        ));
    }
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return Err(text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key"));
    };
    let Some((name, protocol)) = Protocol::negotiate(req.headers()) else {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "none of the requested WebSocket subprotocols is supported; supported: v5.channel.k8s.io, v4.channel.k8s.io, v3.channel.k8s.io, v2.channel.k8s.io, channel.k8s.io",
        ));
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept);
    if !name.is_empty() {
        resp = resp.header(header::SEC_WEBSOCKET_PROTOCOL, name);
    }
    let resp = resp.body(full(Bytes::new())).finish();
    let upgraded = async move {
        match hyper::upgrade::on(req).await {
            Ok(u) => {
                Some(WebSocketStream::from_raw_socket(TokioIo::new(u), Role::Server, None).await)
            }
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket upgrade failed");
                None
            }
        }
    };
    Ok((resp, protocol, upgraded))
}

/// Accepts the WebSocket upgrade of `req` and runs `session` on the connection once it is
/// through; the answer is the `101`, or why the upgrade was refused.
pub fn serve(
    req: Request<hyper::body::Incoming>,
    session: impl FnOnce(Socket, Protocol) -> BoxFuture<'static, ()> + Send + 'static,
) -> Response<Body> {
    let (resp, protocol, upgraded) = match accept(req) {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    tokio::spawn(async move {
        if let Some(socket) = upgraded.await {
            session(socket, protocol).await;
        }
    });
    resp
}

/// An accepted WebSocket connection.
pub type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Sends messages queued by the session's tasks; closes the socket when every sender is gone.
pub fn writer(
    socket: futures::stream::SplitSink<Socket, Message>,
) -> (mpsc::Sender<Message>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Message>(32);
    let task = tokio::spawn(async move {
        let mut sink = socket;
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        let _ = sink.send(normal_close()).await;
        let _ = sink.close().await;
    });
    (tx, task)
}

/// The close frame ending a session: kubectl reads only a normal closure (1000) as the end of
/// its streams, and a close without a status as an error.
pub fn normal_close() -> tokio_tungstenite::tungstenite::Message {
    use tokio_tungstenite::tungstenite::protocol::{CloseFrame, frame::coding::CloseCode};
    tokio_tungstenite::tungstenite::Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

/// A message on `channel`.
pub fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(channel);
    out.extend_from_slice(data);
    out
}

/// What the error channel carries when the command ended with `exit_code` (`None`: it could
/// not run, with `failure` saying why), for `protocol`; `None` when nothing is to be sent.
pub fn exit_status(
    protocol: Protocol,
    exit_code: Option<i32>,
    failure: Option<&str>,
) -> Option<Vec<u8>> {
    let message = match (exit_code, failure) {
        (_, Some(f)) => f.to_owned(),
        (Some(0), None) => String::new(),
        (Some(code), None) => {
            format!("command terminated with non-zero exit code: exit status {code}")
        }
        (None, None) => "command terminated".to_owned(),
    };
    if protocol < Protocol::V4 {
        return (!message.is_empty()).then(|| message.into_bytes());
    }
    let status = match (exit_code, failure) {
        (Some(0), None) => serde_json::json!({"metadata": {}, "status": "Success"}),
        (Some(code), None) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        _ => {
            serde_json::json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500})
        }
    };
    Some(status.to_string().into_bytes())
}

/// A terminal size from a resize message (`{"Width":80,"Height":24}`).
pub fn parse_resize(data: &[u8]) -> Option<(u16, u16)> {
    let v: serde_json::Value = serde_json::from_slice(data).ok()?;
    Some((v["Width"].as_u64()? as u16, v["Height"].as_u64()? as u16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_the_newest() {
        let mut h = HeaderMap::new();
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "v4.channel.k8s.io, v5.channel.k8s.io".parse().unwrap(),
        );
        assert_eq!(
            Protocol::negotiate(&h),
            Some(("v5.channel.k8s.io", Protocol::V5))
        );
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "base64.channel.k8s.io".parse().unwrap(),
        );
        assert_eq!(Protocol::negotiate(&h), None);
        assert_eq!(
            Protocol::negotiate(&HeaderMap::new()),
            Some(("", Protocol::V1))
        );
    }

    #[test]
    fn exit_statuses_as_kubectl_reads_them() {
        let s: serde_json::Value =
            serde_json::from_slice(&exit_status(Protocol::V5, Some(3), None).unwrap()).unwrap();
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(
            s["details"]["causes"][0],
            serde_json::json!({"reason": "ExitCode", "message": "3"})
        );
        let s: serde_json::Value =
            serde_json::from_slice(&exit_status(Protocol::V4, Some(0), None).unwrap()).unwrap();
        assert_eq!(s["status"], "Success");
        assert_eq!(exit_status(Protocol::V2, Some(0), None), None);
        assert_eq!(
            parse_resize(br#"{"Width":120,"Height":40}"#),
            Some((120, 40))
        );
    }
}
