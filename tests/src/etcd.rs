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
    /// With TLS: clients must present a certificate of this member's CA.
    pub tls: Option<ClientTls>,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

/// What a client of a TLS member needs: the CA that signed the member's serving certificate,
/// and a client certificate of that CA.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
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
        Self::start_with(false, true)
    }

    /// A member whose data is on disk (the temporary directory), fsyncing as in production:
    /// for benches, where the figures must be a real etcd's.
    pub fn start_on_disk() -> Result<Self> {
        Self::start_with(false, false)
    }

    /// A member serving TLS only and requiring client certificates, with a CA of its own
    /// (`ca.crt` in its directory) that issued its serving certificate (for 127.0.0.1) and
    /// one client certificate ([`Etcd::tls`]).
    pub fn start_tls() -> Result<Self> {
        Self::start_with(true, true)
    }

    fn start_with(tls: bool, in_memory: bool) -> Result<Self> {
        // In memory when it can be: tests check behaviour, not the disk's fsync latency.
        let shm = std::path::Path::new("/dev/shm");
        let tmp = if in_memory && shm_has_room() {
            tempfile::tempdir_in(shm)?
        } else {
            tempfile::tempdir()?
        };
        let dir = tmp.path().to_path_buf();
        let mut etcd = Self {
            client_port: free_port(),
            peer_port: free_port(),
            tls: tls.then(|| issue_certificates(&dir)).transpose()?,
            dir,
            child: None,
            _tmp: tmp,
        };
        etcd.spawn()?;
        Ok(etcd)
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// Starts (or restarts, on the same data) the member and waits until it reports healthy.
    pub fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))?;
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut etcd = Command::new("etcd");
        if self.tls.is_some() {
            let pki = self.dir.join("pki");
            etcd.arg(format!("--cert-file={}", pki.join("server.crt").display()))
                .arg(format!("--key-file={}", pki.join("server.key").display()))
                .arg(format!(
                    "--trusted-ca-file={}",
                    pki.join("ca.crt").display()
                ))
                .arg("--client-cert-auth");
        }
        let child = etcd
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
            Ok(match self.tls {
                Some(_) => self.etcdctl(&["endpoint", "health"]).status.success(),
                None => self.health().is_some_and(|body| body.contains("\"true\"")),
            })
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
        let mut etcdctl = Command::new("etcdctl");
        etcdctl.env("ETCDCTL_API", "3");
        if let Some(tls) = &self.tls {
            etcdctl
                .arg(format!("--cacert={}", tls.ca.display()))
                .arg(format!("--cert={}", tls.cert.display()))
                .arg(format!("--key={}", tls.key.display()));
        }
        etcdctl
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

/// Whether `/dev/shm` has room for a member: etcd preallocates its write-ahead log in 64 MiB
/// segments, more than a container's default 64 MiB `/dev/shm`.
fn shm_has_room() -> bool {
    Command::new("df")
        .args(["--output=avail", "-BM", "/dev/shm"])
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines()
                .nth(1)?
                .trim()
                .trim_end_matches('M')
                .parse::<u64>()
                .ok()
        })
        .is_some_and(|mib| mib >= 1024)
}

/// A CA in `<dir>/pki`, a serving certificate for 127.0.0.1 and a client certificate.
fn issue_certificates(dir: &std::path::Path) -> Result<ClientTls> {
    let pki = dir.join("pki");
    let ca = ekube_apiserver::pki::Ca::load_or_create(&pki)?;
    let write = |name: &str, issued: &ekube_apiserver::pki::Issued| -> Result<()> {
        std::fs::write(pki.join(format!("{name}.crt")), &issued.cert_pem)?;
        std::fs::write(pki.join(format!("{name}.key")), &issued.key_pem)?;
        Ok(())
    };
    write(
        "server",
        &ca.issue("etcd", &[], &["127.0.0.1".into()], true)?,
    )?;
    write(
        "client",
        &ca.issue("ekube-apiserver-etcd-client", &[], &[], false)?,
    )?;
    Ok(ClientTls {
        ca: pki.join("ca.crt"),
        cert: pki.join("client.crt"),
        key: pki.join("client.key"),
    })
}
