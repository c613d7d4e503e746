//! Address management: the built-in host-local style allocator and delegation
//! to another IPAM plugin.
//!
//! The built-in store keeps one file per allocated address in the network's
//! directory (`<dataDir>/<network>/<ip>`, content `<container id>\r\n<ifname>` as
//! the reference host-local plugin writes it) plus `last_reserved_ip.0`, so
//! allocation goes round-robin. Every read-modify-write holds an exclusive
//! `flock` on `<dir>/lock`, which makes concurrent ADDs on one node safe.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::types::CniResult;

const LAST_RESERVED: &str = "last_reserved_ip.0";
/// How long to wait for another invocation holding a lock before answering code 11.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// An exclusive `flock` on a file, released on drop.
#[derive(Debug)]
pub struct DirLock {
    file: File,
}

impl DirLock {
    /// Takes the lock `<dir>/<name>`, creating the directory; gives up after
    /// [`LOCK_TIMEOUT`] with a try-again error.
    pub fn acquire(dir: &Path, name: &str) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let path = dir.join(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening lock {}", path.display()), e))?;
        let deadline = Instant::now() + LOCK_TIMEOUT;
        loop {
            // SAFETY: flock on a valid, owned descriptor.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(DirLock { file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != ErrorKind::WouldBlock {
                return Err(Error::io(format!("locking {}", path.display()), err));
            }
            if Instant::now() >= deadline {
                return Err(Error::TryAgain(format!(
                    "lock {} still held after {}s",
                    path.display(),
                    LOCK_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // SAFETY: unlocking our own descriptor; closing would release it anyway.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// One allocation record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub ip: Ipv4Addr,
    pub container_id: String,
    pub ifname: String,
}

/// The built-in allocator for one network.
#[derive(Debug, Clone)]
pub struct HostLocal {
    pub dir: PathBuf,
    pub network: String,
    pub subnet: String,
    pub range_start: Ipv4Addr,
    pub range_end: Ipv4Addr,
}

impl HostLocal {
    fn lock(&self) -> Result<DirLock> {
        DirLock::acquire(&self.dir, "lock")
    }

    /// Reads every allocation record (caller holds the lock).
    fn records(&self) -> Result<Vec<Allocation>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("listing {}", self.dir.display()), e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::io(format!("listing {}", self.dir.display()), e))?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let text = match fs::read_to_string(entry.path()) {
                Ok(t) => t,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("reading {}", entry.path().display()), e)),
            };
            let mut lines = text.lines().map(str::trim);
            let container_id = lines.next().unwrap_or_default().to_string();
            let ifname = lines.next().unwrap_or_default().to_string();
            out.push(Allocation {
                ip,
                container_id,
                ifname,
            });
        }
        Ok(out)
    }

    /// All allocations (takes the lock).
    pub fn list(&self) -> Result<Vec<Allocation>> {
        let _l = self.lock()?;
        self.records()
    }

    /// The address held by `container_id`/`ifname`, if any.
    pub fn find(&self, container_id: &str, ifname: &str) -> Result<Option<Ipv4Addr>> {
        Ok(self
            .list()?
            .into_iter()
            .find(|a| a.container_id == container_id && a.ifname == ifname)
            .map(|a| a.ip))
    }

    /// Reserves a free address for `container_id`/`ifname`. Fails with
    /// [`Error::AlreadyAttached`] when that pair already holds one and with
    /// [`Error::IpExhausted`] when the range is full.
    pub fn allocate(&self, container_id: &str, ifname: &str) -> Result<Ipv4Addr> {
        let _l = self.lock()?;
        let records = self.records()?;
        if records
            .iter()
            .any(|a| a.container_id == container_id && a.ifname == ifname)
        {
            return Err(Error::AlreadyAttached {
                container: container_id.into(),
                ifname: ifname.into(),
                network: self.network.clone(),
            });
        }
        let (start, end) = (u32::from(self.range_start), u32::from(self.range_end));
        let size = end.saturating_sub(start) + 1;
        let last = fs::read_to_string(self.dir.join(LAST_RESERVED))
            .ok()
            .and_then(|s| s.trim().parse::<Ipv4Addr>().ok())
            .map(u32::from)
            .filter(|v| (start..=end).contains(v));
        // Round-robin: start after the last handed-out address.
        let first = last
            .map(|l| if l >= end { start } else { l + 1 })
            .unwrap_or(start);
        for i in 0..size {
            let candidate = Ipv4Addr::from(start + (first - start + i) % size);
            let path = self.dir.join(candidate.to_string());
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    let write = f
                        .write_all(format!("{container_id}\r\n{ifname}").as_bytes())
                        .and_then(|_| f.sync_all());
                    if let Err(e) = write {
                        let _ = fs::remove_file(&path);
                        return Err(Error::io(format!("writing {}", path.display()), e));
                    }
                    fs::write(self.dir.join(LAST_RESERVED), candidate.to_string())
                        .map_err(|e| Error::io("writing last reserved address", e))?;
                    return Ok(candidate);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
            }
        }
        Err(Error::IpExhausted {
            network: self.network.clone(),
            subnet: format!(
                "{} (range {}-{})",
                self.subnet, self.range_start, self.range_end
            ),
            used: records.len(),
        })
    }

    /// Frees whatever `container_id`/`ifname` holds; returns the freed addresses.
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Vec<Ipv4Addr>> {
        let _l = self.lock()?;
        self.release_where(|a| a.container_id == container_id && a.ifname == ifname)
    }

    /// Frees every allocation for which `pred` holds (GC); caller-visible lock inside.
    pub fn release_unless(&self, keep: impl Fn(&Allocation) -> bool) -> Result<Vec<Ipv4Addr>> {
        let _l = self.lock()?;
        self.release_where(|a| !keep(a))
    }

    fn release_where(&self, pred: impl Fn(&Allocation) -> bool) -> Result<Vec<Ipv4Addr>> {
        let mut freed = Vec::new();
        for a in self.records()?.into_iter().filter(|a| pred(a)) {
            let path = self.dir.join(a.ip.to_string());
            match fs::remove_file(&path) {
                Ok(()) => freed.push(a.ip),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
            }
        }
        Ok(freed)
    }
}

/// Finds `plugin` in the `CNI_PATH` directories.
pub fn find_plugin(plugin: &str, path: &[PathBuf]) -> Result<PathBuf> {
    path.iter()
        .map(|d| d.join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::IpamDelegate {
            plugin: plugin.to_string(),
            reason: format!(
                "not found in CNI_PATH ({})",
                path.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            ),
        })
}

/// Runs a delegated IPAM plugin with the caller's environment (`CNI_COMMAND`
/// replaced by `command`) and `conf` on stdin; returns its parsed stdout.
pub fn exec_delegate(
    plugin: &str,
    search_path: &[PathBuf],
    command: &str,
    conf: &serde_json::Value,
) -> Result<Option<CniResult>> {
    let bin = find_plugin(plugin, search_path)?;
    let mut child = Command::new(&bin)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::IpamDelegate {
            plugin: plugin.into(),
            reason: format!("spawn {}: {e}", bin.display()),
        })?;
    let input = serde_json::to_vec(conf).expect("serialisable");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&input).map_err(|e| Error::IpamDelegate {
            plugin: plugin.into(),
            reason: format!("writing stdin: {e}"),
        })?;
    }
    let out = child.wait_with_output().map_err(|e| Error::IpamDelegate {
        plugin: plugin.into(),
        reason: format!("waiting: {e}"),
    })?;
    if !out.status.success() {
        // Pass the delegate's own error object through when it sent one.
        if let Ok(err) = serde_json::from_slice::<crate::error::ErrorJson>(&out.stdout) {
            return Err(Error::Delegated {
                code: err.code,
                msg: format!("{plugin}: {}", err.msg),
                details: err.details,
            });
        }
        return Err(Error::IpamDelegate {
            plugin: plugin.into(),
            reason: format!(
                "{} with output {:?}",
                out.status,
                String::from_utf8_lossy(&out.stdout)
            ),
        });
    }
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| Error::IpamDelegate {
            plugin: plugin.into(),
            reason: format!("bad result JSON: {e}"),
        })?;
    CniResult::from_value(&v, "IPAM result").map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, last: u8) -> HostLocal {
        HostLocal {
            dir: dir.join("net"),
            network: "net".into(),
            subnet: "10.9.0.0/24".into(),
            range_start: Ipv4Addr::new(10, 9, 0, 2),
            range_end: Ipv4Addr::new(10, 9, 0, last),
        }
    }

    #[test]
    fn allocates_round_robin_and_releases() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path(), 4);
        let a = s.allocate("c1", "eth0").unwrap();
        let b = s.allocate("c2", "eth0").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 9, 0, 2));
        assert_eq!(b, Ipv4Addr::new(10, 9, 0, 3));
        assert_eq!(s.find("c1", "eth0").unwrap(), Some(a));
        assert_eq!(s.release("c1", "eth0").unwrap(), vec![a]);
        // Round robin: the next one is .4, not the just-freed .2.
        assert_eq!(
            s.allocate("c3", "eth0").unwrap(),
            Ipv4Addr::new(10, 9, 0, 4)
        );
        assert_eq!(
            s.allocate("c4", "eth0").unwrap(),
            Ipv4Addr::new(10, 9, 0, 2)
        );
        let e = s.allocate("c5", "eth0").unwrap_err();
        assert_eq!(e.code(), 100, "{e}");
        assert!(s.release("nope", "eth0").unwrap().is_empty());
    }

    #[test]
    fn duplicate_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path(), 10);
        s.allocate("c1", "eth0").unwrap();
        assert_eq!(s.allocate("c1", "eth0").unwrap_err().code(), 101);
        assert!(s.allocate("c1", "eth1").is_ok());
        assert_eq!(
            fs::read_to_string(s.dir.join("10.9.0.2")).unwrap(),
            "c1\r\neth0"
        );
    }

    #[test]
    fn concurrent_allocations_are_distinct() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path(), 254);
        let ips: Vec<Ipv4Addr> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..16)
                .map(|i| {
                    let s = s.clone();
                    sc.spawn(move || s.allocate(&format!("c{i}"), "eth0").unwrap())
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let uniq: std::collections::HashSet<_> = ips.iter().collect();
        assert_eq!(uniq.len(), 16);
    }

    #[test]
    fn gc_keeps_only_valid() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path(), 10);
        s.allocate("keep", "eth0").unwrap();
        s.allocate("drop", "eth0").unwrap();
        let freed = s.release_unless(|a| a.container_id == "keep").unwrap();
        assert_eq!(freed.len(), 1);
        assert_eq!(s.list().unwrap().len(), 1);
    }
}
