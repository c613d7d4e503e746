//! Driving `runc`: one `runc run --keep` child per running container (the runtime is its
//! shim: it holds the container's stdio and learns its exit status from that child), plus
//! `kill`, `exec`, `state` and `delete` as one-shot commands. Container output goes through
//! [`pump_log`] into the CRI log file.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::log::log_record;
use super::{Error, Result};

/// Where runc lives and keeps its state.
#[derive(Debug, Clone)]
pub struct Runc {
    pub binary: PathBuf,
    /// `runc --root`: runc's state directory.
    pub root: PathBuf,
}

/// What `runc exec` returned.
pub struct ExecResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// Longest log line written in one piece; longer lines are split into `P` (partial) records.
const MAX_LINE: usize = 16 * 1024;

impl Runc {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root")
            .arg(&self.root)
            .stdin(Stdio::null())
            .kill_on_drop(false);
        c
    }

    async fn simple(&self, args: &[&str]) -> Result<String> {
        let out = self
            .command()
            .args(args)
            .output()
            .await
            .map_err(|e| Error::Runc {
                action: args.join(" "),
                reason: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(Error::Runc {
                action: args.join(" "),
                reason: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts `runc run --keep` for the bundle; stdout and stderr are piped.
    pub fn run(&self, id: &str, bundle: &Path, log: &Path) -> Result<Child> {
        self.command()
            .arg("--log")
            .arg(log)
            .arg("--log-format")
            .arg("json")
            .args(["run", "--keep", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Runc {
                action: format!("run {id}"),
                reason: e.to_string(),
            })
    }

    /// `runc state`'s status (`creating`, `created`, `running`, `stopped`), `None` if unknown.
    pub async fn status(&self, id: &str) -> Option<String> {
        let out = self.simple(&["state", id]).await.ok()?;
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        v["status"].as_str().map(str::to_owned)
    }

    /// The host PID of the container's init process, while it runs.
    pub async fn pid(&self, id: &str) -> Option<i64> {
        let out = self.simple(&["state", id]).await.ok()?;
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        v["pid"].as_i64().filter(|p| *p > 0)
    }

    /// Sends `signal` (e.g. `TERM`, `KILL`) to every process of the container.
    pub async fn kill(&self, id: &str, signal: &str) -> Result<()> {
        self.simple(&["kill", "--all", id, signal]).await.map(drop)
    }

    /// Deletes the container (its cgroups with it), killing it first if needed; succeeds when
    /// runc no longer knows it.
    pub async fn delete(&self, id: &str) -> Result<()> {
        match self.simple(&["delete", "--force", id]).await {
            Ok(_) => Ok(()),
            Err(Error::Runc { reason, .. })
                if reason.contains("does not exist") || reason.contains("not exist") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// IDs of every container runc knows under this root.
    pub async fn list(&self) -> Vec<String> {
        let Ok(out) = self.simple(&["list", "--format", "json"]).await else {
            return Vec::new();
        };
        serde_json::from_str::<Option<Vec<serde_json::Value>>>(&out)
            .ok()
            .flatten()
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// Runs `cmd` in the container and waits for it (bounded by `timeout` when non-zero).
    pub async fn exec(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecResult> {
        let mut c = self.command();
        c.arg("exec")
            .arg(id)
            .args(cmd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = c.spawn().map_err(|e| Error::Runc {
            action: format!("exec {id}"),
            reason: e.to_string(),
        })?;
        let wait = child.wait_with_output();
        let out = if timeout.is_zero() {
            wait.await
        } else {
            tokio::time::timeout(timeout, wait).await.map_err(|_| {
                Error::Timeout(format!("exec in {id} did not finish within {timeout:?}"))
            })?
        }
        .map_err(|e| Error::Runc {
            action: format!("exec {id}"),
            reason: e.to_string(),
        })?;
        Ok(ExecResult {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: exit_code(out.status),
        })
    }

    /// `runc exec` of `cmd` in the container for a streaming session (kubelet `/exec`): the
    /// caller sets the child's stdio (pipes, or a terminal's slave end with `tty`, which runc
    /// then proxies to a terminal it allocates inside the container) and spawns it. Killing
    /// the child on drop ends a session whose client went away.
    pub fn exec_command(&self, id: &str, cmd: &[String], tty: bool) -> Command {
        let mut c = self.command();
        c.arg("exec");
        if tty {
            c.arg("--tty");
        }
        c.arg(id).args(cmd).kill_on_drop(true);
        c
    }
}

/// Exit code of a finished process as a shell reports it (128 + signal when killed).
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Copies `input` line by line into the CRI log `log` as `stream` until EOF.
pub async fn pump_log(
    input: impl AsyncRead + Unpin,
    stream: &'static str,
    log: std::sync::Arc<tokio::sync::Mutex<tokio::fs::File>>,
) {
    let mut reader = tokio::io::BufReader::new(input);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = match (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(n) => n,
            Err(_) => break,
        };
        if n == 0 {
            break;
        }
        let full = buf.ends_with(b"\n");
        let text = if full {
            &buf[..buf.len() - 1]
        } else {
            &buf[..]
        };
        let partial = !full && n >= MAX_LINE;
        let record = log_record(stream, partial, text);
        let mut file = log.lock().await;
        if file.write_all(&record).await.is_err() {
            break;
        }
        let _ = file.flush().await;
    }
}

use tokio::io::AsyncReadExt as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pump_splits_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let file = tokio::fs::File::create(&path).await.unwrap();
        let log = std::sync::Arc::new(tokio::sync::Mutex::new(file));
        pump_log(&b"one\ntwo\nthree"[..], "stdout", log).await;
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
        assert_eq!(lines, ["stdout F one", "stdout F two", "stdout F three"]);
    }
}
