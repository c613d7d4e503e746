//! Network namespaces for the end-to-end tests: commands inside them, `ip` that must succeed,
//! clean-up of namespaces a crashed earlier run left (named `<prefix><pid>-…`), and a thread's
//! stay in one.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `ip netns` keeps its namespace handles.
const NETNS_DIR: &str = "/run/netns";

/// `/run/netns/<name>`: the handle `ip netns` keeps for namespace `name`.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// A command that runs its arguments in network namespace `name` through `nsenter`, which
/// keeps the real `/sys` (cgroups, bpffs) unlike `ip netns exec`.
pub fn nsenter(name: &str) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={NETNS_DIR}/{name}")).arg("--");
    cmd
}

/// Runs `ip <args>`; panics with its error output when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes namespace `name`, if it exists.
pub fn delete(name: &str) {
    let _ = Command::new("ip").args(["netns", "delete", name]).output();
}

/// Whether `name` is `<prefix><pid>-…` of a process that is gone.
pub fn stale(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.split('-').next()?.parse::<u32>().ok())
        .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

/// Deletes the namespaces of earlier runs (see [`stale`]) whose process is gone.
pub fn clear_stale(prefix: &str) {
    for ns in std::fs::read_dir(NETNS_DIR).into_iter().flatten().flatten() {
        let name = ns.file_name().to_string_lossy().into_owned();
        if stale(prefix, &name) {
            delete(&name);
        }
    }
}

/// The calling thread moved into network namespace `name` until the guard drops, when it goes
/// back to the namespace it came from. Threads and processes it starts meanwhile start there
/// too; a connection it opens starts there, never in the root namespace.
pub struct Entered {
    home: File,
}

impl Entered {
    pub fn enter(name: &str) -> std::io::Result<Self> {
        let home = File::open("/proc/thread-self/ns/net")?;
        setns(&File::open(path(name))?)?;
        Ok(Self { home })
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.home) {
            // Staying in a namespace that is about to go would leave the thread with no
            // network at all; no test can go on sensibly from there. During a panic's unwind a
            // second panic would abort and lose the first one's message, so that is only told.
            let message = format!("returning to the original network namespace: {e}");
            if std::thread::panicking() {
                eprintln!("{message}");
            } else {
                panic!("{message}");
            }
        }
    }
}

/// setns(2) of the calling thread into the network namespace open as `ns`; async-signal-safe,
/// so also for a command's `pre_exec`.
pub fn setns(ns: &File) -> std::io::Result<()> {
    // SAFETY: setns on a descriptor we hold open; CLONE_NEWNET changes this thread only.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
