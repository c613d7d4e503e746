//! Test lab for the plugin: node and pod network namespaces behind an RAII guard,
//! a runner that execs a CNI binary inside a node netns exactly as a kubelet would,
//! and small readers of kernel state (through `ip -j`, independent of the plugin).
//!
//! Needs root. Every name starts with `ekcni-<pid>-`, so parallel runs do not
//! collide and leftovers of a crashed run (dead pid) are removed at start.

#![allow(dead_code)]

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const PLUGIN: &str = env!("CARGO_BIN_EXE_ekube-cni");
pub const REFERENCE_DIR: &str = "/usr/lib/cni";
const PREFIX: &str = "ekcni-";

fn sh(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd} {args:?}: {e}"))
}

/// Deletes netns of earlier runs whose process is gone.
fn clear_leftovers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(dir) = std::fs::read_dir("/run/netns") else {
            return;
        };
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(rest) = name.strip_prefix(PREFIX) else {
                continue;
            };
            let pid = rest.split('-').next().unwrap_or_default();
            if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
                let _ = sh("ip", &["netns", "del", &name]);
            }
        }
    });
}

/// A set of namespaces (and a state directory) removed on drop, also on panic.
pub struct Lab {
    tag: String,
    netns: Vec<String>,
    pub dir: tempfile::TempDir,
}

impl Lab {
    pub fn new(tag: &str) -> Self {
        assert!(
            unsafe { libc::geteuid() } == 0,
            "the CNI plugin tests need root (CI runs as root)"
        );
        clear_leftovers();
        Lab {
            tag: format!("{PREFIX}{}-{tag}", std::process::id()),
            netns: Vec::new(),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Creates netns `<prefix>-<tag>-<role>` and returns its name.
    pub fn netns(&mut self, role: &str) -> String {
        let name = format!("{}-{role}", self.tag);
        let _ = sh("ip", &["netns", "del", &name]);
        let out = sh("ip", &["netns", "add", &name]);
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.netns.push(name.clone());
        let out = sh("ip", &["-n", &name, "link", "set", "lo", "up"]);
        assert!(out.status.success());
        name
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("networks")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for n in self.netns.iter().rev() {
            let _ = sh("ip", &["netns", "del", n]);
        }
    }
}

pub fn netns_path(name: &str) -> String {
    format!("/run/netns/{name}")
}

/// What a plugin run produced.
#[derive(Debug)]
pub struct Outcome {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?}, stderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts success and returns the parsed result.
    pub fn ok(&self) -> Value {
        assert!(
            self.success,
            "plugin failed: stdout {} stderr {}",
            self.stdout, self.stderr
        );
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts failure with the spec's error object and returns its code.
    pub fn err_code(&self) -> u64 {
        assert!(
            !self.success,
            "plugin unexpectedly succeeded: {}",
            self.stdout
        );
        let v = self.json();
        assert!(
            v["cniVersion"].is_string(),
            "error object lacks cniVersion: {v}"
        );
        assert!(
            v["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "error object lacks msg: {v}"
        );
        v["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("error object lacks code: {v}"))
    }
}

/// One invocation: binary, command, env and stdin, run inside `node` netns.
pub struct Invocation<'a> {
    pub binary: &'a str,
    pub node: &'a str,
    pub command: &'a str,
    pub container: &'a str,
    pub netns: Option<String>,
    pub ifname: &'a str,
    /// The config on stdin; a JSON string value is written verbatim instead (for
    /// feeding malformed input).
    pub config: &'a Value,
}

impl Invocation<'_> {
    pub fn run(&self) -> Outcome {
        let node = File::open(netns_path(self.node)).expect("open node netns");
        let node_fd = node.as_raw_fd();
        let mut cmd = Command::new(self.binary);
        cmd.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("CNI_COMMAND", self.command)
            .env("CNI_CONTAINERID", self.container)
            .env("CNI_IFNAME", self.ifname)
            .env("CNI_PATH", format!("{REFERENCE_DIR}:/nonexistent"))
            .env("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default")
            .env("RUST_LOG", "info")
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(ns) = &self.netns {
            cmd.env("CNI_NETNS", ns);
        }
        // SAFETY: only async-signal-safe setns between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(node_fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn plugin");
        let stdin = match self.config {
            Value::String(raw) => raw.clone(),
            other => other.to_string(),
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().expect("wait plugin");
        drop(node);
        Outcome {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    }
}

/// `ip -n <ns> -j <args>` parsed.
pub fn ip_json(ns: &str, args: &[&str]) -> Value {
    let mut full = vec!["-n", ns, "-j"];
    full.extend_from_slice(args);
    let out = sh("ip", &full);
    assert!(
        out.status.success(),
        "ip {full:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        Value::Array(vec![])
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

/// IPv4 addresses (as `a.b.c.d/p`) on `dev` in `ns`.
pub fn addrs(ns: &str, dev: &str) -> Vec<String> {
    ip_json(ns, &["-4", "addr", "show", "dev", dev])
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

/// The default route's gateway in `ns`.
pub fn default_gw(ns: &str) -> Option<String> {
    ip_json(ns, &["-4", "route", "show", "default"])
        .as_array()
        .unwrap()
        .iter()
        .find_map(|r| r["gateway"].as_str().map(str::to_string))
}

/// Names of veth links in `ns`.
pub fn veths(ns: &str) -> Vec<String> {
    ip_json(ns, &["link", "show", "type", "veth"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .collect()
}

/// (master, hairpin) of bridge port `dev` in `ns`.
pub fn port_info(ns: &str, dev: &str) -> (Option<String>, bool) {
    let v = ip_json(ns, &["-d", "link", "show", "dev", dev]);
    let l = &v[0];
    (
        l["master"].as_str().map(str::to_string),
        l["linkinfo"]["info_slave_data"]["hairpin"]
            .as_bool()
            .unwrap_or(false),
    )
}

/// Bounded poll: `busybox ping` from `ns` to `dst` until one reply or `timeout`.
pub fn ping(ns: &str, dst: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let out = sh(
            "nsenter",
            &[
                &format!("--net={}", netns_path(ns)),
                "busybox",
                "ping",
                "-c",
                "1",
                "-W",
                "1",
                dst,
            ],
        );
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no ping reply from {dst} in {ns} after {timeout:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// Runs `f` on a thread that has entered netns `ns`.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let file = File::open(netns_path(ns)).expect("open netns");
    std::thread::spawn(move || {
        // SAFETY: this thread only; it ends after `f`.
        assert_eq!(
            unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
            0,
            "setns"
        );
        f()
    })
}

/// Allocation files (named by IP) in a host-local style directory.
pub fn allocation_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `iptables -t nat -S` inside `ns`.
pub fn nat_rules(ns: &str) -> String {
    let out = sh(
        "nsenter",
        &[
            &format!("--net={}", netns_path(ns)),
            "iptables",
            "-w",
            "5",
            "-t",
            "nat",
            "-S",
        ],
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Reads a sysctl inside `ns` (through /proc of a process in it).
pub fn sysctl(ns: &str, key: &str) -> String {
    let out = sh(
        "nsenter",
        &[&format!("--net={}", netns_path(ns)), "sysctl", "-n", key],
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
