//! Node-level plumbing outside netlink: IPv4 forwarding and the masquerade rules.
//!
//! Masquerade uses a dedicated nat chain per network, `EKUBE-MASQ-<hash>`, reached
//! from `POSTROUTING` for packets sourced in the pod subnet. Inside the chain,
//! traffic to the cluster CIDR (pod to pod, also across the overlay) and to
//! multicast returns untouched; everything else is masqueraded. Each rule is
//! checked with `-C` before it is appended, so repeated ADDs change nothing; callers
//! serialise through the node lock so two ADDs never append the same rule.

use std::path::PathBuf;
use std::process::Command;

use ipnetwork::Ipv4Network;

use crate::error::{Error, Result};

/// Turns on `net.ipv4.ip_forward` in the caller's netns (a no-op when already on).
pub fn enable_ip_forward() -> Result<()> {
    const P: &str = "/proc/sys/net/ipv4/ip_forward";
    let cur = std::fs::read_to_string(P).map_err(|e| Error::io("reading ip_forward", e))?;
    if cur.trim() != "1" {
        std::fs::write(P, "1").map_err(|e| Error::io("enabling ip_forward", e))?;
    }
    Ok(())
}

/// The nat chain name for network `name` (at most 28 characters).
pub fn chain_name(name: &str) -> String {
    format!("EKUBE-MASQ-{:08X}", crate::short_hash(name) as u32)
}

fn iptables_bin() -> PathBuf {
    // Runtimes often exec plugins with a bare environment, so look in the usual
    // places when PATH does not help.
    let from_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("iptables"))
            .find(|c| c.is_file())
    });
    from_path
        .or_else(|| {
            ["/usr/sbin/iptables", "/sbin/iptables"]
                .map(PathBuf::from)
                .into_iter()
                .find(|c| c.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("iptables"))
}

fn iptables(args: &[&str]) -> Result<std::process::Output> {
    Command::new(iptables_bin())
        .args(["-w", "5", "-t", "nat"])
        .args(args)
        .output()
        .map_err(|e| Error::Iptables {
            context: args.join(" "),
            reason: e.to_string(),
        })
}

fn ensure_rule(chain: &str, rule: &[&str]) -> Result<()> {
    let check: Vec<&str> = ["-C", chain]
        .into_iter()
        .chain(rule.iter().copied())
        .collect();
    if iptables(&check)?.status.success() {
        return Ok(());
    }
    let add: Vec<&str> = ["-A", chain]
        .into_iter()
        .chain(rule.iter().copied())
        .collect();
    let out = iptables(&add)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Iptables {
            context: add.join(" "),
            reason: String::from_utf8_lossy(&out.stderr).trim().into(),
        })
    }
}

/// Installs the masquerade chain and jump for `subnet` leaving `cluster_cidr`.
pub fn ensure_masquerade(
    network: &str,
    subnet: Ipv4Network,
    cluster_cidr: Ipv4Network,
) -> Result<()> {
    let chain = chain_name(network);
    if !iptables(&["-S", &chain])?.status.success() {
        let out = iptables(&["-N", &chain])?;
        if !out.status.success() {
            return Err(Error::Iptables {
                context: format!("-N {chain}"),
                reason: String::from_utf8_lossy(&out.stderr).trim().into(),
            });
        }
    }
    let comment = format!("ekube-cni masquerade for network {network}");
    let (sub, cluster) = (subnet.to_string(), cluster_cidr.to_string());
    ensure_rule(&chain, &["-d", &cluster, "-j", "RETURN"])?;
    ensure_rule(&chain, &["-d", "224.0.0.0/4", "-j", "RETURN"])?;
    ensure_rule(&chain, &["-j", "MASQUERADE"])?;
    ensure_rule(
        "POSTROUTING",
        &[
            "-s",
            &sub,
            "-m",
            "comment",
            "--comment",
            &comment,
            "-j",
            &chain,
        ],
    )
}
