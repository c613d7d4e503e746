//! Node-level plumbing outside netlink: IPv4 forwarding and the masquerade rules.
//!
//! Masquerade uses a dedicated nat chain per network, `EKUBE-MASQ-<hash>`, reached
//! from `POSTROUTING` for packets sourced in the pod subnet. Inside the chain,
//! traffic to the cluster CIDR (pod to pod, also across the overlay) and to
//! multicast returns untouched; everything else is masqueraded. Each rule is
//! checked with `-C` before it is appended, so repeated ADDs change nothing; callers
//! serialise through the node lock so two ADDs never append the same rule.

use ipnetwork::Ipv4Network;

use crate::error::{Error, Result};
use crate::iptables::{Binary, Runner, Table};

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

/// Installs the masquerade chain and jump for `subnet` leaving `cluster_cidr`.
pub fn ensure_masquerade(
    network: &str,
    subnet: Ipv4Network,
    cluster_cidr: Ipv4Network,
) -> Result<()> {
    install_masquerade(&Binary::find(), network, subnet, cluster_cidr)
}

/// [`ensure_masquerade`] through `ipt`: the chain first, then its rules, then the jump, so
/// no packet is sent into a chain that is still being filled.
fn install_masquerade(
    ipt: &dyn Runner,
    network: &str,
    subnet: Ipv4Network,
    cluster_cidr: Ipv4Network,
) -> Result<()> {
    let nat = Table::new(ipt, "nat");
    let chain = chain_name(network);
    nat.ensure_chain(&chain)?;
    let comment = format!("ekube-cni masquerade for network {network}");
    let (sub, cluster) = (subnet.to_string(), cluster_cidr.to_string());
    nat.ensure_rule(&chain, &["-d", &cluster, "-j", "RETURN"])?;
    nat.ensure_rule(&chain, &["-d", "224.0.0.0/4", "-j", "RETURN"])?;
    nat.ensure_rule(&chain, &["-j", "MASQUERADE"])?;
    nat.ensure_rule(
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
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iptables::Recorder;

    fn install(rec: &Recorder) -> Result<()> {
        let net = |s: &str| s.parse().unwrap();
        install_masquerade(rec, "ekube", net("10.244.1.0/24"), net("10.244.0.0/16"))
    }

    #[test]
    fn fresh_node_gets_chain_rules_then_jump() {
        let rec = Recorder::empty();
        install(&rec).unwrap();
        let chain = chain_name("ekube");
        let expected = [
            format!("-S {chain}"),
            format!("-N {chain}"),
            format!("-C {chain} -d 10.244.0.0/16 -j RETURN"),
            format!("-A {chain} -d 10.244.0.0/16 -j RETURN"),
            format!("-C {chain} -d 224.0.0.0/4 -j RETURN"),
            format!("-A {chain} -d 224.0.0.0/4 -j RETURN"),
            format!("-C {chain} -j MASQUERADE"),
            format!("-A {chain} -j MASQUERADE"),
            format!(
                "-C POSTROUTING -s 10.244.1.0/24 -m comment --comment \
                 ekube-cni masquerade for network ekube -j {chain}"
            ),
            format!(
                "-A POSTROUTING -s 10.244.1.0/24 -m comment --comment \
                 ekube-cni masquerade for network ekube -j {chain}"
            ),
        ]
        .map(|c| format!("-w 5 -t nat {c}"));
        assert_eq!(rec.calls(), expected);
    }

    #[test]
    fn second_add_changes_nothing() {
        let rec = Recorder::complete();
        install(&rec).unwrap();
        let calls = rec.calls();
        assert_eq!(calls.len(), 5, "{calls:#?}");
        assert_eq!(rec.changes(), Vec::<String>::new());
    }

    #[test]
    fn failure_maps_to_the_cni_iptables_code() {
        let rec = Recorder::answering(|_| Ok(crate::iptables::exited(1, "permission denied")));
        let err = install(&rec).unwrap_err();
        assert_eq!(err.code(), crate::error::code::IPTABLES);
        let chain = chain_name("ekube");
        assert_eq!(
            err.to_string(),
            format!("iptables: -t nat -N {chain}: permission denied")
        );
    }
}
