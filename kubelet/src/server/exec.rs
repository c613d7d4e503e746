//! `/exec/{ns}/{pod}/{container}` and `/attach/{ns}/{pod}/{container}` over the WebSocket
//! channel protocols ([`super::ws`]), and `/run/{ns}/{pod}/{container}`, upstream's plain
//! request/response exec.
//!
//! Exec runs `runc exec` in the container: with pipes for stdin/stdout/stderr, or with
//! `tty` on a pseudo-terminal this side allocates — its slave end is runc's controlling
//! terminal and stdio, runc proxies it to a terminal inside the container and follows its
//! size on `SIGWINCH`, which resizing the master (channel 4) delivers. The exit code goes to
//! the client on the error channel as the `Status` kubectl turns into its own exit code.
//!
//! Attach streams the container's output as it is written to its CRI log, split back into
//! stdout and stderr, until the container exits; containers are started without stdin, so
//! input is discarded.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Stdio;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::lookup::{self, NotServed};
use super::ws::{self, Protocol};
use super::{Body, Finish, Node, Query, full, text};
use crate::cri::{self, ContainerState};
use crate::runtime::runc::{Runc, exit_code};

/// Which streams the client asked for.
#[derive(Debug, Clone, Copy)]
struct Streams {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

impl Streams {
    /// Upstream names (`stdin`) and the kubelet's older ones (`input`).
    fn parse(q: &Query) -> Self {
        Self {
            stdin: q.flag(&["stdin", "input"]),
            stdout: q.flag(&["stdout", "output"]),
            stderr: q.flag(&["stderr", "error"]),
            tty: q.flag(&["tty"]),
        }
    }
}

pub async fn serve_exec(
    node: &Node,
    ns: &str,
    pod: &str,
    container: &str,
    q: &Query,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let cmd = q.all("command");
    if cmd.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 command",
        );
    }
    let streams = Streams::parse(q);
    let found = match lookup::running(node, ns, pod, container).await {
        Ok(f) => f,
        Err(NotServed(code, msg)) => return text(code, msg),
    };
    let (resp, protocol, upgraded) = match ws::accept(req) {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let runc = node.runc.clone();
    // The command line can carry secrets (passwords in arguments): only at debug.
    tracing::info!(%ns, %pod, %container, tty = streams.tty, "exec");
    tracing::debug!(%ns, %pod, %container, ?cmd, "exec command");
    tokio::spawn(async move {
        if let Some(socket) = upgraded.await {
            exec_session(socket, protocol, runc, found.id, cmd, streams).await;
        }
    });
    resp
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
    let mut c = node.runc.exec_command(&found.id, &cmd, false);
    c.stdin(Stdio::null());
    match c.output().await {
        Ok(out) => {
            let mut data = out.stdout;
            data.extend(out.stderr);
            match exit_code(out.status) {
                0 => Response::builder()
                    .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
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
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("running runc exec: {e}"),
        ),
    }
}

pub async fn serve_attach(
    node: &Node,
    ns: &str,
    pod: &str,
    container: &str,
    q: &Query,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let streams = Streams::parse(q);
    let found = match lookup::running(node, ns, pod, container).await {
        Ok(f) => f,
        Err(NotServed(code, msg)) => return text(code, msg),
    };
    let (resp, protocol, upgraded) = match ws::accept(req) {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let rc = node.runtime.clone();
    tokio::spawn(async move {
        if let Some(socket) = upgraded.await {
            attach_session(socket, protocol, rc, found, streams).await;
        }
    });
    resp
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// A started `runc exec`.
struct Process {
    child: tokio::process::Child,
    stdin: Option<Writer>,
    outputs: Vec<(u8, Reader)>,
    /// The terminal's master end, for resizing.
    pty: Option<OwnedFd>,
}

fn set_size(fd: &OwnedFd, width: u16, height: u16) {
    let size = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ with a valid winsize on a terminal fd we own.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) };
}

fn spawn(runc: &Runc, id: &str, cmd: &[String], s: Streams) -> std::io::Result<Process> {
    let mut c = runc.exec_command(id, cmd, s.tty);
    if !s.tty {
        let pipe = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
        c.stdin(pipe(s.stdin))
            .stdout(pipe(s.stdout))
            .stderr(pipe(s.stderr));
        let mut child = c.spawn()?;
        let mut outputs: Vec<(u8, Reader)> = Vec::new();
        if let Some(o) = child.stdout.take() {
            outputs.push((ws::STDOUT, Box::new(o)));
        }
        if let Some(e) = child.stderr.take() {
            outputs.push((ws::STDERR, Box::new(e)));
        }
        let stdin = child.stdin.take().map(|i| Box::new(i) as Writer);
        return Ok(Process {
            child,
            stdin,
            outputs,
            pty: None,
        });
    }
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty fills two fds; no name buffer, default termios and size.
    if unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: openpty succeeded, so both are fresh fds owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    set_size(&master, 80, 24);
    c.stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    // SAFETY: only async-signal-safe calls between fork and exec: make the terminal runc's
    // controlling terminal so that resizing the master signals runc.
    unsafe {
        c.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = c.spawn()?;
    // Dropping the command closes this side's copies of the slave: the master then reads EOF
    // (EIO) once runc and the command are gone.
    drop(c);
    let read = tokio::fs::File::from_std(std::fs::File::from(master.try_clone()?));
    let write = tokio::fs::File::from_std(std::fs::File::from(master.try_clone()?));
    Ok(Process {
        child,
        stdin: s.stdin.then(|| Box::new(write) as Writer),
        outputs: vec![(ws::STDOUT, Box::new(read))],
        pty: Some(master),
    })
}

type Socket = tokio_tungstenite::WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

/// Sends messages queued by the session's tasks; closes the socket when every sender is gone.
fn writer(
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
        let _ = sink.send(ws::normal_close()).await;
        let _ = sink.close().await;
    });
    (tx, task)
}

/// Copies `from` to the client on `channel` until EOF.
async fn pump(channel: u8, mut from: Reader, tx: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx
                    .send(Message::Binary(ws::frame(channel, &buf[..n]).into()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

async fn exec_session(
    socket: Socket,
    protocol: Protocol,
    runc: Runc,
    id: String,
    cmd: Vec<String>,
    s: Streams,
) {
    let (sink, mut source) = socket.split();
    let (tx, writer) = writer(sink);
    let finish = |tx: mpsc::Sender<Message>, code: Option<i32>, failure: Option<String>| async move {
        if let Some(status) = ws::exit_status(protocol, code, failure.as_deref()) {
            let _ = tx
                .send(Message::Binary(ws::frame(ws::ERROR, &status).into()))
                .await;
        }
    };
    let mut process = match spawn(&runc, &id, &cmd, s) {
        Ok(p) => p,
        Err(e) => {
            finish(tx, None, Some(format!("starting runc exec: {e}"))).await;
            let _ = writer.await;
            return;
        }
    };
    let pumps: Vec<_> = process
        .outputs
        .drain(..)
        .map(|(ch, r)| tokio::spawn(pump(ch, r, tx.clone())))
        .collect();
    let (mut stdin, pty) = (process.stdin.take(), process.pty.take());
    let tty = s.tty;
    // Client → process: stdin, resize, and (v5) the close of stdin. Ends when the client
    // closes the socket or goes away.
    let input = async move {
        while let Some(Ok(msg)) = source.next().await {
            let data = match msg {
                Message::Binary(d) => d,
                Message::Close(_) => return,
                _ => continue,
            };
            match (data.first(), data.get(1)) {
                (Some(&ws::STDIN), _) => {
                    if let Some(w) = stdin.as_mut()
                        && (w.write_all(&data[1..]).await.is_err() || w.flush().await.is_err())
                    {
                        stdin = None;
                    }
                }
                (Some(&ws::RESIZE), _) => {
                    if let (Some(fd), Some((w, h))) = (&pty, ws::parse_resize(&data[1..])) {
                        set_size(fd, w, h);
                    }
                }
                (Some(&ws::CLOSE), Some(&ws::STDIN)) if protocol == Protocol::V5 => {
                    if let Some(mut w) = stdin.take() {
                        // A terminal has no end of file of its own: send the EOF character.
                        if tty {
                            let _ = w.write_all(&[4]).await;
                        }
                        let _ = w.shutdown().await;
                    }
                }
                _ => {}
            }
        }
    };
    tokio::select! {
        status = process.child.wait() => {
            // Output written just before the exit is still in the pipes: drain it (bounded, a
            // background process may hold them open).
            let drained = futures::future::join_all(pumps);
            let _ = tokio::time::timeout(Duration::from_secs(2), drained).await;
            let code = status.map(exit_code).ok();
            finish(tx, code, code.is_none().then(|| "waiting for the command failed".to_owned())).await;
        }
        _ = input => {
            tracing::debug!(container = %id, "exec client went away; killing the command");
            let _ = process.child.kill().await;
            drop(tx);
        }
    }
    let _ = writer.await;
}

async fn attach_session(
    socket: Socket,
    protocol: Protocol,
    mut rc: crate::runtime::RuntimeClient,
    found: lookup::Found,
    s: Streams,
) {
    let (sink, mut source) = socket.split();
    let (tx, writer) = writer(sink);
    let output = async {
        let Ok(mut file) = tokio::fs::File::open(&found.log_path).await else {
            return;
        };
        let mut pos = file.seek(std::io::SeekFrom::End(0)).await.unwrap_or(0);
        let mut pending = Vec::new();
        let mut last_check = tokio::time::Instant::now();
        loop {
            let mut exited = false;
            if last_check.elapsed() >= Duration::from_secs(1) {
                last_check = tokio::time::Instant::now();
                exited = rc
                    .container_status(cri::ContainerStatusRequest {
                        container_id: found.id.clone(),
                        verbose: false,
                    })
                    .await
                    .ok()
                    .and_then(|r| r.into_inner().status)
                    .is_none_or(|st| st.state != ContainerState::ContainerRunning as i32);
            }
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
                    let Some(r) = super::logs::parse_record(line) else {
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
            if exited {
                return;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    };
    let input = async {
        while let Some(Ok(msg)) = source.next().await {
            if let Message::Close(_) = msg {
                return;
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
