//! The iptables rules flannel keeps on a node: accept forwarding to and from the cluster CIDR
//! (so a node whose FORWARD policy is DROP still carries pod traffic), and, with `--ip-masq`,
//! masquerade pod traffic leaving the cluster CIDR while pod-to-pod traffic keeps its source.
//!
//! Rules live in chains of their own (`EKUBE-FLANNEL-FWD` in filter, `EKUBE-FLANNEL-POSTRTG`
//! in nat) reached by one jump each; every rule is checked with `-C` before it is appended, so
//! running this again (restart, resync) changes nothing.

use std::process::Command;

use ipnetwork::Ipv4Network;

use super::{Error, Result};

const FWD_CHAIN: &str = "EKUBE-FLANNEL-FWD";
const MASQ_CHAIN: &str = "EKUBE-FLANNEL-POSTRTG";

fn iptables(table: &str, args: &[&str]) -> Result<std::process::Output> {
    let bin = ["/usr/sbin/iptables", "/sbin/iptables"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("iptables");
    Command::new(bin)
        .args(["-w", "5", "-t", table])
        .args(args)
        .output()
        .map_err(|e| Error::Iptables {
            rule: args.join(" "),
            reason: e.to_string(),
        })
}

fn ensure_chain(table: &str, chain: &str) -> Result<()> {
    if iptables(table, &["-S", chain])?.status.success() {
        return Ok(());
    }
    let out = iptables(table, &["-N", chain])?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Iptables {
            rule: format!("-t {table} -N {chain}"),
            reason: String::from_utf8_lossy(&out.stderr).trim().into(),
        })
    }
}

fn ensure_rule(table: &str, chain: &str, rule: &[&str]) -> Result<()> {
    let with = |op: &'static str| {
        [op, chain]
            .into_iter()
            .chain(rule.iter().copied())
            .collect::<Vec<_>>()
    };
    if iptables(table, &with("-C"))?.status.success() {
        return Ok(());
    }
    let out = iptables(table, &with("-A"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Iptables {
            rule: format!("-t {table} {}", with("-A").join(" ")),
            reason: String::from_utf8_lossy(&out.stderr).trim().into(),
        })
    }
}

/// Installs the forward (always) and masquerade (when `masq`) rules for `network`.
pub fn ensure(network: Ipv4Network, masq: bool) -> Result<()> {
    let net = network.to_string();
    ensure_chain("filter", FWD_CHAIN)?;
    ensure_rule("filter", FWD_CHAIN, &["-s", &net, "-j", "ACCEPT"])?;
    ensure_rule("filter", FWD_CHAIN, &["-d", &net, "-j", "ACCEPT"])?;
    ensure_rule(
        "filter",
        "FORWARD",
        &[
            "-m",
            "comment",
            "--comment",
            "ekube flannel forwarding",
            "-j",
            FWD_CHAIN,
        ],
    )?;
    if masq {
        ensure_chain("nat", MASQ_CHAIN)?;
        // Pod to pod (also across nodes): keep the pod's address.
        ensure_rule("nat", MASQ_CHAIN, &["-s", &net, "-d", &net, "-j", "RETURN"])?;
        // Pod to anything else but multicast: the node's address.
        ensure_rule(
            "nat",
            MASQ_CHAIN,
            &["-s", &net, "!", "-d", "224.0.0.0/4", "-j", "MASQUERADE"],
        )?;
        ensure_rule(
            "nat",
            "POSTROUTING",
            &[
                "-m",
                "comment",
                "--comment",
                "ekube flannel masquerade",
                "-j",
                MASQ_CHAIN,
            ],
        )?;
    }
    Ok(())
}
