//! Attach sessions: the container's output as it is written to its CRI log, split back
//! into stdout and stderr, until the container exits. The client's input goes to the
//! container's stdin FIFO when it was created with `stdin` (see [`crate::runtime::shim`]), and
//! is discarded otherwise.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use http::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use super::Streams;
use super::ws::{self, Protocol, Socket};
use crate::respond::Body;
use crate::runtime::log::parse_record;

/// Accepts the client's upgrade and streams the log at `log_path` until `exited`.
pub fn serve(
    req: Request<hyper::body::Incoming>,
    log_path: PathBuf,
    stdin: Option<PathBuf>,
    exited: tokio::sync::watch::Receiver<bool>,
    streams: Streams,
) -> Response<Body> {
    ws::serve(req, move |socket, protocol| {
        Box::pin(session(socket, protocol, log_path, stdin, exited, streams))
    })
}

async fn session(
    socket: Socket,
    protocol: Protocol,
    log_path: PathBuf,
    stdin: Option<PathBuf>,
    mut exited: tokio::sync::watch::Receiver<bool>,
    s: Streams,
) {
    let (sink, mut source) = socket.split();
    let (tx, writer) = ws::writer(sink);
    let output = async {
        let Ok(mut file) = tokio::fs::File::open(&log_path).await else {
            return;
        };
        let mut pos = file.seek(std::io::SeekFrom::End(0)).await.unwrap_or(0);
        let mut pending = Vec::new();
        let mut gone = false;
        loop {
            // Read before the last pass: the log is complete once the exit is recorded.
            let done = gone || *exited.borrow_and_update();
            let mut buf = Vec::new();
            if file.seek(std::io::SeekFrom::Start(pos)).await.is_err()
                || file.read_to_end(&mut buf).await.is_err()
            {
                return;
            }
            pos += buf.len() as u64;
            pending.extend_from_slice(&buf);
            if let Some(end) = pending.iter().rposition(|b| *b == b'\n') {
                let complete: Vec<u8> = pending.drain(..=end).collect();
                for line in complete.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    let Some(r) = parse_record(line) else {
                        continue;
                    };
                    let channel = if r.stderr && !s.tty {
                        ws::STDERR
                    } else {
                        ws::STDOUT
                    };
                    if (channel == ws::STDOUT && !s.stdout) || (channel == ws::STDERR && !s.stderr)
                    {
                        continue;
                    }
                    let mut data = r.text.to_vec();
                    if !r.partial {
                        data.push(b'\n');
                    }
                    if tx
                        .send(Message::Binary(ws::frame(channel, &data).into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
            if done {
                return;
            }
            // New output shows within 150 ms; the exit at once (one last read follows it).
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(150)) => {}
                // A dropped sender: the container's record is gone, as good as exited.
                changed = exited.changed() => gone = changed.is_err(),
            }
        }
    };
    let input = async {
        // Opening fails once the container (and the shim holding the FIFO) is gone.
        let mut fifo = stdin.and_then(|p| {
            tokio::net::unix::pipe::OpenOptions::new()
                .open_sender(p)
                .ok()
        });
        while let Some(Ok(msg)) = source.next().await {
            let data = match msg {
                Message::Binary(d) => d,
                Message::Close(_) => return,
                _ => continue,
            };
            if data.first() == Some(&ws::STDIN)
                && let Some(w) = fifo.as_mut()
                && w.write_all(&data[1..]).await.is_err()
            {
                fifo = None;
            }
        }
    };
    tokio::select! {
        _ = output => {
            if let Some(status) = ws::exit_status(protocol, Some(0), None) {
                let _ = tx.send(Message::Binary(ws::frame(ws::ERROR, &status).into())).await;
            }
        }
        _ = input => {}
    }
    drop(tx);
    let _ = writer.await;
}
