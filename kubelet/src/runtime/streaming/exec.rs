//! Exec sessions: `runc exec` in the container, over the WebSocket channel protocols
//! ([`super::ws`]).
//!
//! The command runs with pipes for stdin/stdout/stderr, or with `tty` on a pseudo-terminal
//! this side allocates: its slave end is runc's controlling terminal and stdio, runc proxies
//! it to a terminal inside the container and follows its size on `SIGWINCH`, which resizing
//! the master (channel 4) delivers. The exit code goes to the client on the error channel as
//! the `Status` kubectl turns into its own exit code.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use http::{Request, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::Streams;
use super::ws::{self, Protocol, Socket};
use crate::respond::Body;
use crate::runtime::runc::{Runc, exit_code};

/// Accepts the client's upgrade and runs `cmd` in `container` once it is through.
pub fn serve(
    req: Request<hyper::body::Incoming>,
    runc: Runc,
    container: String,
    cmd: Vec<String>,
    streams: Streams,
) -> Response<Body> {
    ws::serve(req, move |socket, protocol| {
        Box::pin(session(socket, protocol, runc, container, cmd, streams))
    })
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

async fn session(
    socket: Socket,
    protocol: Protocol,
    runc: Runc,
    id: String,
    cmd: Vec<String>,
    s: Streams,
) {
    let (sink, mut source) = socket.split();
    let (tx, writer) = ws::writer(sink);
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
