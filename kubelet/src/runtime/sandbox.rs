//! Pod sandboxes without a pause container: the pod's network, IPC and UTS namespaces are
//! created by a short-lived thread and kept alive by bind mounts under
//! `<root>/sandboxes/<id>/ns/{net,ipc,uts}`; every container of the pod joins them by path.
//! The thread also brings `lo` up (so containers reach each other over localhost) and sets
//! the pod's hostname. `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` are written
//! next to them and bind-mounted into each container.
//!
//! The CRI `NamespaceOption` says which of them the pod shares with the node instead, as
//! containerd reads it: network `NODE` keeps no network (nor UTS) namespace, so containers
//! run in the runtime's own and see the node's hostname; IPC `NODE` keeps no IPC namespace.
//! A namespace the sandbox does not keep is never created, mounted or unmounted here.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{Error, Result};
use crate::cri::{self, NamespaceMode};

/// The namespaces a sandbox can keep, with their `/proc/thread-self/ns` names and clone flags.
pub const NAMESPACES: [(&str, libc::c_int); 3] = [
    ("net", libc::CLONE_NEWNET),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
];

/// The namespace options of a sandbox config.
pub fn options(config: &cri::PodSandboxConfig) -> cri::NamespaceOption {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

/// Which namespaces a sandbox with `options` keeps (names as in [`NAMESPACES`]); an error for
/// modes this runtime cannot give a pod.
pub fn kept(options: &cri::NamespaceOption) -> Result<Vec<&'static str>> {
    let mode = |kind: &str, m: i32| match NamespaceMode::try_from(m) {
        Ok(NamespaceMode::Pod) => Ok(true),
        Ok(NamespaceMode::Node) => Ok(false),
        _ => Err(Error::InvalidArgument(format!(
            "{kind} namespace mode {m} is not supported for a pod sandbox (POD or NODE)"
        ))),
    };
    let net = mode("network", options.network)?;
    let ipc = mode("ipc", options.ipc)?;
    Ok([("net", net), ("ipc", ipc), ("uts", net)]
        .into_iter()
        .filter(|(_, k)| *k)
        .map(|(kind, _)| kind)
        .collect())
}

/// Path of a sandbox's namespace file (`kind` is `net`, `ipc` or `uts`).
pub fn ns_path(dir: &Path, kind: &str) -> PathBuf {
    dir.join("ns").join(kind)
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

/// Creates the namespaces `kinds` of a sandbox whose directory is `dir`: the hostname is set
/// only in a new UTS namespace and `lo` brought up only in a new network namespace.
pub fn create_namespaces(dir: &Path, hostname: &str, kinds: &[&'static str]) -> Result<()> {
    let ns_dir = dir.join("ns");
    std::fs::create_dir_all(&ns_dir).map_err(Error::io("creating", &ns_dir))?;
    if kinds.is_empty() {
        return Ok(());
    }
    for kind in kinds {
        let p = ns_path(dir, kind);
        std::fs::write(&p, b"").map_err(Error::io("creating", &p))?;
    }
    let dir = dir.to_owned();
    let hostname = hostname.to_owned();
    let kinds = kinds.to_vec();
    // unshare(2) of these namespaces affects only the calling thread; the thread ends right
    // after, so no other task ever runs in them.
    std::thread::spawn(move || -> std::io::Result<()> {
        let flags = NAMESPACES
            .iter()
            .filter(|(kind, _)| kinds.contains(kind))
            .fold(0, |f, (_, c)| f | c);
        // SAFETY: unshare with namespace flags only affects this thread.
        if unsafe { libc::unshare(flags) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if kinds.contains(&"uts") {
            let h = hostname.as_bytes();
            // SAFETY: valid buffer and length.
            if unsafe { libc::sethostname(h.as_ptr().cast(), h.len()) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        if kinds.contains(&"net") {
            loopback_up()?;
        }
        for kind in &kinds {
            let src = cstr(&Path::new("/proc/thread-self/ns").join(kind));
            let dst = cstr(&ns_path(&dir, kind));
            // SAFETY: bind mount of valid paths.
            if unsafe {
                libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            } != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| Error::Sandbox("namespace thread panicked".into()))?
    .map_err(|e| Error::Sandbox(format!("creating namespaces: {e}")))
}

/// Sets IFF_UP on `lo` of the calling thread's network namespace.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: plain socket/ioctl calls on a zeroed ifreq; the socket is closed below.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// Whether the sandbox's namespaces `kinds` are still held by their bind mounts (a namespace
/// file lives on nsfs, not on the file system of its directory).
pub fn namespaces_kept(dir: &Path, kinds: &[&str]) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(d) = std::fs::metadata(dir) else {
        return false;
    };
    kinds
        .iter()
        .all(|kind| std::fs::metadata(ns_path(dir, kind)).is_ok_and(|m| m.dev() != d.dev()))
}

/// Unmounts and removes the namespace files the sandbox made; succeeds when they are already
/// gone. Only files under `dir` are touched, never the namespaces of the node.
pub fn remove_namespaces(dir: &Path) -> Result<()> {
    for (kind, _) in NAMESPACES {
        let p = ns_path(dir, kind);
        if !p.exists() {
            continue;
        }
        let c = cstr(&p);
        // SAFETY: umount2 of a valid path; EINVAL (not mounted) is fine.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(Error::Sandbox(format!("unmounting {}: {e}", p.display())));
            }
        }
        let _ = std::fs::remove_file(&p);
    }
    Ok(())
}

/// Writes `hosts`, `hostname` and `resolv.conf` for the pod.
pub fn write_etc(dir: &Path, hostname: &str, dns: Option<&crate::cri::DnsConfig>) -> Result<()> {
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    );
    let mut resolv = String::new();
    if let Some(dns) = dns {
        if !dns.searches.is_empty() {
            resolv.push_str(&format!("search {}\n", dns.searches.join(" ")));
        }
        for s in &dns.servers {
            resolv.push_str(&format!("nameserver {s}\n"));
        }
        if !dns.options.is_empty() {
            resolv.push_str(&format!("options {}\n", dns.options.join(" ")));
        }
    }
    for (name, data) in [
        ("hosts", hosts),
        ("hostname", format!("{hostname}\n")),
        ("resolv.conf", resolv),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, data).map_err(Error::io("writing", &p))?;
    }
    Ok(())
}

/// The hostname [`write_etc`] recorded for the sandbox in `dir` (empty if it cannot be read).
pub fn hostname(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("hostname"))
        .map(|h| h.trim_end().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_kept_by_bind_mounts_and_released() {
        // SAFETY: geteuid has no preconditions.
        assert!(
            unsafe { libc::geteuid() } == 0,
            "sandbox namespaces need root; CI runs as root"
        );
        let dir = tempfile::tempdir().unwrap();
        let all = kept(&Default::default()).unwrap();
        assert_eq!(all, ["net", "ipc", "uts"]);
        create_namespaces(dir.path(), "pod-a", &all).unwrap();
        let own = std::fs::metadata("/proc/self/ns/net").unwrap();
        let kept_net = std::fs::metadata(ns_path(dir.path(), "net")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_ne!(own.ino(), kept_net.ino(), "a new network namespace is kept");
        assert!(namespaces_kept(dir.path(), &all));
        remove_namespaces(dir.path()).unwrap();
        assert!(!ns_path(dir.path(), "net").exists());
        assert!(!namespaces_kept(dir.path(), &all));
        remove_namespaces(dir.path()).unwrap();
    }

    #[test]
    fn a_host_network_sandbox_keeps_only_its_ipc_namespace() {
        let host = cri::NamespaceOption {
            network: NamespaceMode::Node as i32,
            ..Default::default()
        };
        assert_eq!(kept(&host).unwrap(), ["ipc"]);
        let all_host = cri::NamespaceOption {
            network: NamespaceMode::Node as i32,
            ipc: NamespaceMode::Node as i32,
            ..Default::default()
        };
        assert!(kept(&all_host).unwrap().is_empty());
        let dir = tempfile::tempdir().unwrap();
        create_namespaces(dir.path(), "ignored", &[]).unwrap();
        assert!(!ns_path(dir.path(), "net").exists());
        assert!(namespaces_kept(dir.path(), &[]));
        remove_namespaces(dir.path()).unwrap();
        let container = cri::NamespaceOption {
            network: NamespaceMode::Container as i32,
            ..Default::default()
        };
        assert!(kept(&container).is_err());
    }
}
