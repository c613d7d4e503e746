//! Network namespaces and the underlay of a lab.
//!
//! The fabric namespace holds bridge `br0` with `192.168.64.1/24`; every other host hangs off it
//! by a veth pair created directly between the two namespaces (`v-<short>` on the bridge, `eth0`
//! in the host), so no link, address or route ever appears in the root namespace. Links are
//! configured with `ip -n <netns> …`, sysctls by a shell started inside the namespace.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::config::{FABRIC_IP, Host, Role, UNDERLAY_PREFIX, is_lab_netns};
use crate::{Error, Result};

/// Where `ip netns` keeps its namespace handles.
const NETNS_DIR: &str = "/run/netns";
/// Bridge in the fabric namespace.
const BRIDGE: &str = "br0";
/// A host's underlay interface.
pub const HOST_IF: &str = "eth0";

fn netns_path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Opens a namespace handle for `setns(2)`.
pub(crate) fn open_netns(name: &str) -> Result<File> {
    File::open(netns_path(name)).map_err(|source| Error::Netns {
        netns: name.to_owned(),
        source,
    })
}

/// Runs `f` on a fresh thread that has entered network namespace `name`; sockets it opens live
/// there. The thread ends with `f`, so no other code ever runs in the namespace by accident.
pub(crate) fn in_netns<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let ns = open_netns(name)?;
    let netns = name.to_owned();
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        // SAFETY: setns on a descriptor we own; CLONE_NEWNET only changes this thread.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(Error::Netns {
                netns,
                source: std::io::Error::last_os_error(),
            });
        }
        drop(ns);
        Ok(f())
    })
    .join()
    .expect("netns thread panicked")
}

/// Inode of a namespace handle, to find processes living in it.
pub(crate) fn netns_inode(name: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(netns_path(name)).ok().map(|m| m.ino())
}

/// Names of existing namespaces that belong to lab `lab`.
pub(crate) fn lab_namespaces(lab: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_lab_netns(lab, n))
        .collect();
    names.sort();
    names
}

/// The `ip` invocations that build a lab's underlay, in order.
pub(crate) fn plan(hosts: &[Host]) -> Vec<Vec<String>> {
    let fab = hosts
        .iter()
        .find(|h| h.role == Role::Fabric)
        .expect("a lab has a fabric host");
    let cidr = |h: &Host| format!("{}/{UNDERLAY_PREFIX}", h.ip);
    let mut cmds: Vec<Vec<String>> = Vec::new();
    let mut push = |args: &[&str]| cmds.push(args.iter().map(|s| s.to_string()).collect());
    for h in hosts {
        push(&["netns", "add", &h.netns]);
        push(&["-n", &h.netns, "link", "set", "lo", "up"]);
    }
    push(&["-n", &fab.netns, "link", "add", BRIDGE, "type", "bridge"]);
    push(&["-n", &fab.netns, "addr", "add", &cidr(fab), "dev", BRIDGE]);
    push(&["-n", &fab.netns, "link", "set", BRIDGE, "up"]);
    for h in hosts.iter().filter(|h| h.role != Role::Fabric) {
        let port = format!("v-{}", h.short);
        push(&[
            "-n", &fab.netns, "link", "add", &port, "type", "veth", "peer", "name", HOST_IF,
            "netns", &h.netns,
        ]);
        push(&["-n", &fab.netns, "link", "set", &port, "master", BRIDGE]);
        push(&["-n", &fab.netns, "link", "set", &port, "up"]);
        push(&["-n", &h.netns, "addr", "add", &cidr(h), "dev", HOST_IF]);
        push(&["-n", &h.netns, "link", "set", HOST_IF, "up"]);
        push(&[
            "-n",
            &h.netns,
            "route",
            "add",
            "default",
            "via",
            &FABRIC_IP.to_string(),
        ]);
    }
    cmds
}

/// Sysctls set inside a host's namespace (never in the root namespace).
pub(crate) fn sysctls(host: &Host) -> Vec<(&'static str, &'static str)> {
    let mut s = vec![("net/ipv4/ping_group_range", "0 2147483647")];
    if host.is_node() {
        s.extend([
            ("net/ipv4/ip_forward", "1"),
            ("net/ipv4/conf/all/rp_filter", "0"),
            ("net/ipv4/conf/default/rp_filter", "0"),
            ("net/ipv4/conf/all/route_localnet", "1"),
        ]);
    }
    s
}

/// Runs `ip args…` and fails with its stderr.
pub(crate) fn ip(args: &[String]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| Error::Command {
            command: format!("ip {}", args.join(" ")),
            stderr: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command: format!("ip {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Builds the underlay and sets each namespace's sysctls.
pub(crate) fn create(hosts: &[Host]) -> Result<()> {
    for args in plan(hosts) {
        ip(&args)?;
    }
    for h in hosts {
        let script: String = sysctls(h)
            .iter()
            .map(|(k, v)| format!("echo '{v}' > /proc/sys/{k} && "))
            .chain(["true".to_owned()])
            .collect();
        let argv = ["/bin/sh", "-c", &script].map(str::to_owned);
        let out = crate::process::exec(&h.netns, None, &argv, Duration::from_secs(10))?;
        if !out.success() {
            return Err(Error::Command {
                command: script,
                stderr: out.stderr,
            });
        }
    }
    Ok(())
}

/// Deletes a namespace handle; the namespace itself goes once nothing lives in it.
pub(crate) fn delete(name: &str) -> Result<()> {
    ip(&["netns".into(), "delete".into(), name.into()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LabConfig;

    #[test]
    fn plan_touches_only_lab_namespaces() {
        let mut config = LabConfig::new("ekl");
        config.nodes = 2;
        let cmds = plan(&config.hosts());
        for c in &cmds {
            let ns = if c[0] == "netns" { &c[2] } else { &c[1] };
            assert!(
                c[0] == "netns" || c[0] == "-n",
                "{c:?} runs in the root namespace"
            );
            assert!(ns.starts_with("ekl-"), "{c:?}");
        }
        let line = |s: &str| cmds.iter().any(|c| c.join(" ") == s);
        assert!(line("-n ekl-fab addr add 192.168.64.1/24 dev br0"));
        assert!(line(
            "-n ekl-fab link add v-n2 type veth peer name eth0 netns ekl-n2"
        ));
        assert!(line("-n ekl-n2 addr add 192.168.64.20/24 dev eth0"));
        assert!(line("-n ekl-ext addr add 192.168.64.100/24 dev eth0"));
        assert!(line("-n ekl-ext route add default via 192.168.64.1"));
    }

    #[test]
    fn forwarding_only_on_nodes() {
        let config = LabConfig::new("ekl");
        for h in config.hosts() {
            let fwd = sysctls(&h)
                .iter()
                .any(|(k, v)| *k == "net/ipv4/ip_forward" && *v == "1");
            assert_eq!(fwd, h.is_node(), "{}", h.netns);
        }
    }
}
