//! Starting processes inside lab namespaces, and ending them by PID.
//!
//! A child enters its host's network namespace with `setns(2)` between fork and exec (not
//! `ip netns exec`, which would remount `/sys` and hide cgroups and bpffs), moves itself into the
//! host's cgroup2 subtree, and starts a new session so that it outlives `lab up`. Every long-lived
//! process is recorded with its start time and command line, so a later teardown ends exactly
//! that process and never a recycled PID.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Error, Result, io_err, net};

/// A process started by the lab, as written to the state file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ProcRecord {
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`: unique for the PID's lifetime.
    pub start_time: u64,
    pub cmdline: Vec<String>,
    pub host: String,
    pub name: String,
}

/// What a one-shot command printed and how it ended.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    /// Exit code, `None` when killed by a signal (or by the timeout).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl ExecOutput {
    /// Whether the command exited with 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Builds a command that runs `argv` in `netns` (and, when given, in the cgroup2 subtree whose
/// `cgroup.procs` is open as `procs`).
fn command_in(
    netns: &File,
    procs: Option<&File>,
    argv: &[String],
    new_session: bool,
) -> Result<Command> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Error::Config("empty command line".into()))?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    let ns_fd = netns.as_raw_fd();
    let procs_fd = procs.map(|f| f.as_raw_fd());
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe syscalls
    // on descriptors opened (and kept open) by the parent.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(fd) = procs_fd
                && libc::write(fd, b"0".as_ptr().cast(), 1) != 1
            {
                return Err(std::io::Error::last_os_error());
            }
            if new_session && libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// Starts a long-lived `argv` in `netns` and cgroup `cgroup` (relative), output to `log`.
pub(crate) fn spawn(
    netns: &str,
    cgroup: &str,
    log: &Path,
    argv: &[String],
    env: &[(&str, &str)],
) -> Result<Child> {
    let ns = net::open_netns(netns)?;
    let procs = crate::cgroup::open_procs(cgroup)?;
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_err("opening log", log))?;
    let err = out.try_clone().map_err(io_err("opening log", log))?;
    let mut cmd = command_in(&ns, Some(&procs), argv, true)?;
    cmd.envs(env.iter().copied()).stdout(out).stderr(err);
    cmd.spawn().map_err(|e| Error::Command {
        command: argv.join(" "),
        stderr: format!("cannot start in {netns}: {e}"),
    })
}

/// Runs `argv` in `netns` (and cgroup `cgroup`, relative, when given) to completion (or
/// until `timeout`, then kills it).
pub(crate) fn exec(
    netns: &str,
    cgroup: Option<&str>,
    argv: &[String],
    timeout: Duration,
) -> Result<ExecOutput> {
    let ns = net::open_netns(netns)?;
    let procs = cgroup.map(crate::cgroup::open_procs).transpose()?;
    let mut cmd = command_in(&ns, procs.as_ref(), argv, false)?;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = |e: std::io::Error| Error::Command {
        command: argv.join(" "),
        stderr: format!("cannot start in {netns}: {e}"),
    };
    let mut child = cmd.spawn().map_err(started)?;
    let readers = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .map(|r| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(started)? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let [stdout, stderr] = readers.map(|h| h.join().unwrap_or_default());
    match status {
        Some(status) => Ok(ExecOutput {
            code: status.code(),
            stdout,
            stderr,
        }),
        None => Err(Error::Timeout {
            what: format!(
                "`{}` in {netns} (stdout: {stdout:?}, stderr: {stderr:?})",
                argv.join(" ")
            ),
            secs: timeout.as_secs(),
        }),
    }
}

/// Start time (field 22 of `/proc/<pid>/stat`), `None` when the process is gone or a zombie.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `rest` starts at field 3 (state); field 22 is 19 further on.
    fields.nth(18)?.parse().ok()
}

/// Command line of a live process.
pub(crate) fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// Records a freshly started child.
pub(crate) fn record(pid: u32, host: &str, name: &str) -> ProcRecord {
    ProcRecord {
        pid,
        start_time: start_time(pid).unwrap_or(0),
        cmdline: cmdline(pid).unwrap_or_default(),
        host: host.to_owned(),
        name: name.to_owned(),
    }
}

/// Whether `record` still describes the running process with its PID.
pub(crate) fn still_ours(record: &ProcRecord) -> bool {
    start_time(record.pid) == Some(record.start_time)
        && cmdline(record.pid).as_ref() == Some(&record.cmdline)
}

/// Whether a PID is a live (non-zombie) process.
pub(crate) fn alive(pid: u32) -> bool {
    start_time(pid).is_some()
}

/// Sends `signal` to `pid`, ignoring processes that are already gone.
fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) with a concrete PID (never 0 or -1) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Reaps `pid` if it is our own exited child; harmless otherwise.
fn reap(pid: u32) {
    let mut status = 0;
    // SAFETY: waitpid with WNOHANG on one PID only touches `status`.
    unsafe {
        libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG);
    }
}

/// Ends processes: SIGTERM, up to `grace` to exit, then SIGKILL. Returns those still alive.
pub(crate) fn end(pids: &[u32], grace: Duration) -> Vec<u32> {
    let me = std::process::id();
    let pids: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|p| *p != me && *p > 1)
        .collect();
    for &pid in &pids {
        tracing::debug!(pid, "SIGTERM");
        signal(pid, libc::SIGTERM);
    }
    for (sig, wait) in [(None, grace), (Some(libc::SIGKILL), Duration::from_secs(5))] {
        if let Some(sig) = sig {
            for &pid in pids.iter().filter(|p| alive(**p)) {
                tracing::debug!(pid, "SIGKILL");
                signal(pid, sig);
            }
        }
        let deadline = Instant::now() + wait;
        loop {
            pids.iter().for_each(|p| reap(*p));
            if !pids.iter().any(|p| alive(*p)) || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    pids.into_iter().filter(|p| alive(*p)).collect()
}

/// PIDs of all processes whose network namespace is the one with inode `ns_inode`.
pub(crate) fn pids_in_netns(ns_inodes: &[u64]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/net"))
                .ok()
                .and_then(|l| {
                    let l = l.to_string_lossy().into_owned();
                    l.strip_prefix("net:[")?
                        .strip_suffix(']')?
                        .parse::<u64>()
                        .ok()
                })
                .is_some_and(|ino| ns_inodes.contains(&ino))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_start_time_and_cmdline() {
        let me = std::process::id();
        assert!(start_time(me).is_some_and(|t| t > 0));
        let rec = record(me, "test", "self");
        assert!(still_ours(&rec));
        let recycled = ProcRecord {
            start_time: rec.start_time + 1,
            ..rec
        };
        assert!(!still_ours(&recycled));
    }
}
