//! `ekube init`'s preflight checks, named as kubeadm names them so that
//! `--ignore-preflight-errors=<Name>` (or `all`) reads the same.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What the checks look at.
pub struct Host<'a> {
    pub advertise: IpAddr,
    pub port: u16,
    pub node_name: &'a str,
    /// Files init would write that must not be there yet.
    pub files: Vec<PathBuf>,
    /// Directories init fills that must be empty or absent.
    pub dirs: Vec<PathBuf>,
}

/// A failed check: its name and what is wrong.
#[derive(Debug, PartialEq)]
pub struct Failure {
    pub name: String,
    pub message: String,
}

/// The name kubeadm gives a file or directory check: `FileAvailable--etc-kubernetes-admin.conf`.
fn path_check(kind: &str, path: &Path) -> String {
    format!("{kind}{}", path.display().to_string().replace('/', "-"))
}

/// Runs every check; the failures not ignored come back.
pub fn run(host: &Host, ignored: &[String]) -> Vec<Failure> {
    let mut failures = Vec::new();
    let mut fail = |name: String, message: String| failures.push(Failure { name, message });
    if std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        != 0
    {
        fail(
            "IsPrivilegedUser".into(),
            "user is not running as root".into(),
        );
    }
    for (port, addr) in [
        (host.port, host.advertise),
        (10250, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
    ] {
        if let Err(e) = TcpListener::bind((addr, port)) {
            let why = if e.kind() == std::io::ErrorKind::AddrInUse {
                format!("Port {port} is in use")
            } else {
                format!("Port {port} cannot be bound on {addr}: {e}")
            };
            fail(format!("Port-{port}"), why);
        }
    }
    if which("runc").is_none() {
        fail(
            "FileExisting-runc".into(),
            "runc not found in system path".into(),
        );
    }
    for file in &host.files {
        if file.exists() {
            fail(
                path_check("FileAvailable-", file),
                format!("{} already exists", file.display()),
            );
        }
    }
    for dir in &host.dirs {
        if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
            fail(
                path_check("DirAvailable-", dir),
                format!("{} is not empty", dir.display()),
            );
        }
    }
    let forward = "/proc/sys/net/ipv4/ip_forward";
    if !std::fs::read_to_string(forward).is_ok_and(|s| s.trim() == "1") {
        fail(
            path_check("FileContent-", Path::new(forward)),
            format!("{forward} contents are not set to 1"),
        );
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        fail(
            "SystemVerification".into(),
            "the kernel has no BTF (/sys/kernel/btf/vmlinux): the eBPF service proxy needs it"
                .into(),
        );
    }
    if !is_dns_subdomain(host.node_name) {
        fail(
            "Hostname".into(),
            format!(
                "node name {:?} is not a valid DNS-1123 subdomain (lower case letters, digits, '-' and '.')",
                host.node_name
            ),
        );
    }
    let all = ignored.iter().any(|i| i.eq_ignore_ascii_case("all"));
    failures
        .into_iter()
        .filter(|f| !all && !ignored.iter().any(|i| i.eq_ignore_ascii_case(&f.name)))
        .collect()
}

/// kubeadm's report of failed checks.
pub fn report(failures: &[Failure]) -> String {
    let mut out = String::from("[preflight] Some fatal errors occurred:\n");
    for f in failures {
        out.push_str(&format!("\t[ERROR {}]: {}\n", f.name, f.message));
    }
    out.push_str(
        "[preflight] If you know what you are doing, you can make a check non-fatal with \
         `--ignore-preflight-errors=...`",
    );
    out
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_are_named_as_kubeadm_names_them() {
        assert_eq!(
            path_check("FileAvailable-", Path::new("/etc/kubernetes/admin.conf")),
            "FileAvailable--etc-kubernetes-admin.conf"
        );
        let busy = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let taken = dir.path().join("admin.conf");
        std::fs::write(&taken, "x").unwrap();
        let host = Host {
            advertise: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: busy.local_addr().unwrap().port(),
            node_name: "Bad_Name",
            files: vec![taken.clone()],
            dirs: vec![dir.path().to_path_buf()],
        };
        let names: Vec<String> = run(&host, &[]).into_iter().map(|f| f.name).collect();
        let port = format!("Port-{}", host.port);
        for want in [port.as_str(), "Hostname"] {
            assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
        }
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("FileAvailable-") && n.ends_with("-admin.conf"))
        );
        assert!(names.iter().any(|n| n.starts_with("DirAvailable-")));
        let left: Vec<String> = run(&host, &[port.clone(), "hostname".into()])
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert!(
            !left.contains(&port) && !left.iter().any(|n| n == "Hostname"),
            "{left:?}"
        );
        assert!(run(&host, &["all".into()]).is_empty());
        assert!(report(&run(&host, &[])).contains(&format!("[ERROR {port}]: Port")));
    }
}
