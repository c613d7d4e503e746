//! "Is it answering yet?": the readiness probe behind every programming-time number, and the
//! commands that start processes inside a pod (network namespace plus the node's cgroup).
//!
//! The probe is this same binary run as `bench-lb __probe ADDR DEADLINE_S INTERVAL_MS`: it
//! connects to `ADDR` over and over, sends one request line, and exits 0 (printing the backend's
//! name) at the first answer, or 1 at the deadline. Unprogrammed service addresses fail fast —
//! the node routes the whole service range to itself as local, so an untranslated SYN meets a
//! RST, and a NodePort without rules has no listener — so the probe's resolution is its interval
//! plus one round trip. It runs as its own process because the eBPF socket hooks only apply to
//! processes inside the node's cgroup subtree.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ekube_tests::{bench::netns_path, netns};

/// First argument that turns this binary into the probe.
pub const ARG: &str = "__probe";

/// The probe's `main`: `args` are the arguments after [`ARG`].
pub fn main(args: &[String]) -> Result<()> {
    let [addr, deadline, interval] = args else {
        bail!("usage: bench-lb {ARG} ADDR DEADLINE_S INTERVAL_MS");
    };
    let addr: SocketAddr = addr.parse().context("probe address")?;
    let deadline =
        Instant::now() + Duration::from_secs_f64(deadline.parse().context("probe deadline")?);
    let interval =
        Duration::from_secs_f64(interval.parse::<f64>().context("probe interval")? / 1000.0);
    let mut buf = [0u8; 256];
    loop {
        let attempt = (|| -> std::io::Result<usize> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
            s.set_read_timeout(Some(Duration::from_secs(1)))?;
            s.write_all(b"PROBE\n")?;
            let mut len = 0;
            loop {
                match s.read(&mut buf[len..])? {
                    0 => return Ok(len),
                    n => len += n,
                }
                if len == buf.len() {
                    return Ok(len);
                }
            }
        })();
        if let Ok(n) = attempt
            && n > 0
        {
            print!("{}", String::from_utf8_lossy(&buf[..n]));
            return Ok(());
        }
        if Instant::now() >= deadline {
            std::process::exit(1);
        }
        std::thread::sleep(interval);
    }
}

/// A command that runs `program` inside network namespace `ns` and, when `cgroup_procs` is
/// given, inside that cgroup (its `cgroup.procs` file): the joins happen between fork and exec.
pub fn command_in(
    ns: &str,
    cgroup_procs: Option<&Path>,
    program: impl AsRef<std::ffi::OsStr>,
) -> Result<Command> {
    let path = netns_path(ns);
    let netns = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let procs = cgroup_procs
        .map(|p| {
            OpenOptions::new()
                .write(true)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))
        })
        .transpose()?;
    let mut cmd = Command::new(program);
    // SAFETY: only setns(2) and write(2) between fork and exec (both async-signal-safe), on
    // descriptors that move into the closure and so stay open as long as the command.
    unsafe {
        cmd.pre_exec(move || {
            netns::setns(&netns)?;
            if let Some(procs) = &procs
                && libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// Where a probe or a load client runs: a namespace and maybe a cgroup.
#[derive(Clone, Debug)]
pub struct Place {
    pub netns: String,
    /// `cgroup.procs` of the node's cgroup v2 subtree, for clients the socket hooks must see.
    pub cgroup_procs: Option<std::path::PathBuf>,
}

impl Place {
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Result<Command> {
        command_in(&self.netns, self.cgroup_procs.as_deref(), program)
    }
}

/// Starts a probe of `addr` from `place`, polling every `interval_ms` until `deadline`.
pub fn spawn(
    place: &Place,
    addr: SocketAddr,
    deadline: Duration,
    interval_ms: f64,
) -> Result<Child> {
    let me = std::env::current_exe().context("this executable")?;
    place
        .command(me)?
        .args([
            ARG,
            &addr.to_string(),
            &deadline.as_secs_f64().to_string(),
            &interval_ms.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the probe")
}

/// Waits for a probe: `Some(when it answered)`, or `None` when it gave up.
pub fn wait(mut child: Child) -> Result<Option<Instant>> {
    let status = child.wait().context("waiting for the probe")?;
    let when = Instant::now();
    Ok(status.success().then_some(when))
}

/// Waits for several probes at once, polling every millisecond and calling `check` in
/// between (e.g. "is the proxy still running?"); each slot gets `Some(Some(when it answered))`
/// or `Some(None)` when that probe gave up. Stops early when `check` fails.
pub fn wait_all(
    probes: &mut [(Child, Option<Option<Instant>>)],
    mut check: impl FnMut() -> Result<()>,
) -> Result<()> {
    let mut last_check = Instant::now();
    while probes.iter().any(|(_, done)| done.is_none()) {
        for (child, done) in probes.iter_mut().filter(|(_, d)| d.is_none()) {
            if let Some(status) = child.try_wait().context("polling a probe")? {
                *done = Some(status.success().then(Instant::now));
            }
        }
        if last_check.elapsed() > Duration::from_millis(200) {
            check()?;
            last_check = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Whether `addr` answers from `place` within one attempt (a fast refusal is the usual "no").
pub fn answers(place: &Place, addr: SocketAddr) -> Result<bool> {
    Ok(wait(spawn(place, addr, Duration::ZERO, 0.0)?)?.is_some())
}
