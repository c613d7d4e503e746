//! A real etcd member on loopback (Debian's `etcd-server`), for the datastore tests.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::{free_port, wait_for};

/// One etcd member with its own data directory; killed on drop.
pub struct Etcd {
    pub client_port: u16,
    peer_port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

impl Etcd {
    /// Whether etcd is installed. `cargo xtask test` installs it, so under it (where
    /// `EKUBE_REQUIRE_ROOT_TESTS` is set) a missing etcd is a failure, not a skip.
    pub fn available() -> bool {
        let found = Command::new("etcd")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found || std::env::var_os("EKUBE_REQUIRE_ROOT_TESTS").is_none(),
            "etcd is not installed (apt-get install etcd-server etcd-client; cargo xtask deps does)"
        );
        if !found {
            eprintln!("skipped: etcd is not installed");
        }
        found
    }

    pub fn start() -> Result<Self> {
        // In memory when it can be: these tests check behaviour, not the disk's fsync latency.
        let shm = std::path::Path::new("/dev/shm");
        let tmp = if shm.is_dir() {
            tempfile::tempdir_in(shm)?
        } else {
            tempfile::tempdir()?
        };
        let mut etcd = Self {
            client_port: free_port(),
            peer_port: free_port(),
            dir: tmp.path().to_path_buf(),
            child: None,
            _tmp: tmp,
        };
        etcd.spawn()?;
        Ok(etcd)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Starts (or restarts, on the same data) the member and waits until it reports healthy.
    pub fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))?;
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new("etcd")
            .arg("--name=ekube-test")
            .arg(format!("--data-dir={}", self.dir.join("data").display()))
            .arg(format!("--listen-client-urls={}", self.url()))
            .arg(format!("--advertise-client-urls={}", self.url()))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=ekube-test={peer}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting etcd")?;
        self.child = Some(child);
        wait_for(Duration::from_secs(20), "etcd to report healthy", || {
            Ok(self.health().is_some_and(|body| body.contains("\"true\"")))
        })
    }

    /// The body of `GET /health`, if the member answers.
    fn health(&self) -> Option<String> {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.client_port)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        conn.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .ok()?;
        let mut response = String::new();
        conn.read_to_string(&mut response).ok()?;
        Some(response)
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `etcdctl` against this member (API v3).
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.url()))
            .args(args)
            .output()
            .expect("etcdctl runs")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}
