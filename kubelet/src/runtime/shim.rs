//! Containers that outlive the runtime process. Each container runs under a tiny shell shim
//! in its own session: `sh` runs `runc run --keep` with the container's stdout and stderr
//! appended to plain files in the container directory (its stdin from `/dev/null`, or from a
//! FIFO there when the container keeps stdin open) and, once runc returns, writes the exit
//! status to `exit` (atomically, via rename). runc writes the container's PID to `pid` once the
//! container's process runs (`--pid-file`). Nothing ties the container to the runtime, so a
//! restarted runtime finds it still running, keeps tailing its output into the CRI log from
//! the offset saved next to each output file, and learns the exit code from `exit`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::log::log_record;
use super::runc::Runc;
use super::{Error, Result};

/// The shim: `$1` runc, `$2` its root, `$3` its log, `$4` bundle (where runc writes `pid`),
/// `$5` id, `$6`/`$7` output files, `$8` exit file, `$9` stdin (`/dev/null`, or the
/// container's stdin FIFO). The shim
/// holds the FIFO open on fd 3 so that opening it does not wait for a writer and the
/// container's stdin stays open between attaches (no `stdinOnce` end of file).
const SCRIPT: &str = r#"exec 3<>"$9"
"$1" --root "$2" --log "$3" --log-format json run --keep --pid-file "$4/pid" --bundle "$4" "$5" >>"$6" 2>>"$7" <"$9" 3>&-
echo $? >"$8.tmp" && mv "$8.tmp" "$8""#;

/// Longest log line written in one piece; longer lines are split into `P` records.
const MAX_LINE: usize = 16 * 1024;
/// How often output files are checked for new data.
const TAIL_PERIOD: Duration = Duration::from_millis(200);

/// The raw output file of `stream` (`stdout` or `stderr`) in a container directory.
pub fn output_path(dir: &Path, stream: &str) -> PathBuf {
    dir.join(stream)
}

/// The FIFO a container with `stdin` reads from; attach sessions write into it.
pub fn stdin_path(dir: &Path) -> PathBuf {
    dir.join("stdin")
}

/// Creates the stdin FIFO of a container that keeps its stdin open.
pub fn make_stdin(dir: &Path) -> Result<()> {
    let path = stdin_path(dir);
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(Error::io("creating", &path)(e));
        }
    }
    Ok(())
}

/// The file runc writes the container's PID to once its process runs (after the exec of the
/// container's command, so it exists only for a started container).
pub fn pid_path(dir: &Path) -> PathBuf {
    dir.join("pid")
}

/// The exit status file the shim writes.
pub fn exit_path(dir: &Path) -> PathBuf {
    dir.join("exit")
}

/// The container's exit code once the shim recorded it.
pub fn exit_code(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(exit_path(dir))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Starts the shim for the container `id` whose bundle is `dir`.
pub fn spawn(runc: &Runc, id: &str, dir: &Path, runc_log: &Path) -> Result<Child> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(SCRIPT).arg("ekube-shim");
    cmd.arg(&runc.binary)
        .arg(&runc.root)
        .arg(runc_log)
        .arg(dir)
        .arg(id);
    cmd.arg(output_path(dir, "stdout"))
        .arg(output_path(dir, "stderr"))
        .arg(exit_path(dir));
    let stdin = stdin_path(dir);
    if stdin.exists() {
        cmd.arg(stdin);
    } else {
        cmd.arg("/dev/null");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(false);
    // SAFETY: setsid(2) is async-signal-safe; the shim leaves the runtime's session so that
    // signals aimed at the runtime's process group do not reach containers.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| Error::Runc {
        action: format!("run {id}"),
        reason: e.to_string(),
    })
}

/// Copies what the container writes to `stream` into the CRI log, line by line, from the
/// saved offset on; returns after a last read once `done` turns true.
pub async fn tail(
    dir: PathBuf,
    stream: &'static str,
    log: Arc<tokio::sync::Mutex<tokio::fs::File>>,
    mut done: tokio::sync::watch::Receiver<bool>,
) {
    let path = output_path(&dir, stream);
    let offset_path = dir.join(format!("{stream}.offset"));
    let mut offset: u64 = std::fs::read_to_string(&offset_path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let finished = *done.borrow();
        let mut chunk = Vec::new();
        if let Ok(mut f) = tokio::fs::File::open(&path).await
            && f.seek(std::io::SeekFrom::Start(offset + pending.len() as u64))
                .await
                .is_ok()
        {
            let _ = f.read_to_end(&mut chunk).await;
        }
        pending.extend_from_slice(&chunk);
        let mut records = Vec::new();
        let mut consumed = 0;
        while let Some(nl) = pending[consumed..].iter().position(|b| *b == b'\n') {
            let line = &pending[consumed..consumed + nl];
            for (i, piece) in line.chunks(MAX_LINE).enumerate() {
                let last = (i + 1) * MAX_LINE >= line.len();
                records.extend(log_record(stream, !last, piece));
            }
            if line.is_empty() {
                records.extend(log_record(stream, false, b""));
            }
            consumed += nl + 1;
        }
        if pending.len() - consumed >= MAX_LINE || (finished && pending.len() > consumed) {
            records.extend(log_record(stream, !finished, &pending[consumed..]));
            consumed = pending.len();
        }
        if !records.is_empty() {
            let mut file = log.lock().await;
            let _ = file.write_all(&records).await;
            let _ = file.flush().await;
        }
        if consumed > 0 {
            pending.drain(..consumed);
            offset += consumed as u64;
            let _ = std::fs::write(&offset_path, offset.to_string());
        }
        if finished {
            return;
        }
        tokio::select! {
            _ = done.changed() => {}
            _ = tokio::time::sleep(TAIL_PERIOD) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tail_resumes_from_the_saved_offset() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_owned();
        std::fs::write(output_path(&d, "stdout"), b"one\ntwo\n").unwrap();
        let log_path = d.join("0.log");
        let open = || async {
            Arc::new(tokio::sync::Mutex::new(
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log_path)
                    .await
                    .unwrap(),
            ))
        };
        let (_tx, rx) = tokio::sync::watch::channel(true);
        tail(d.clone(), "stdout", open().await, rx.clone()).await;
        std::fs::OpenOptions::new()
            .append(true)
            .open(output_path(&d, "stdout"))
            .unwrap()
            .write_all_sync(b"three\npart");
        tail(d.clone(), "stdout", open().await, rx).await;
        let text = std::fs::read_to_string(&log_path).unwrap();
        let lines: Vec<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
        assert_eq!(
            lines,
            [
                "stdout F one",
                "stdout F two",
                "stdout F three",
                "stdout F part"
            ]
        );
    }

    trait WriteAllSync {
        fn write_all_sync(self, b: &[u8]);
    }

    impl WriteAllSync for std::fs::File {
        fn write_all_sync(mut self, b: &[u8]) {
            std::io::Write::write_all(&mut self, b).unwrap();
        }
    }
}
