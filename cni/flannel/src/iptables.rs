//! The iptables rules flannel keeps on a node: accept forwarding to and from the cluster CIDR
//! (so a node whose FORWARD policy is DROP still carries pod traffic), and, with `--ip-masq`,
//! masquerade pod traffic leaving the cluster CIDR while pod-to-pod traffic keeps its source.
//!
//! Rules live in chains of their own (`EKUBE-FLANNEL-FWD` in filter, `EKUBE-FLANNEL-POSTRTG`
//! in nat) reached by one jump each; the check-then-change helpers of [`ekube_cni::iptables`]
//! make running this again (restart, resync) change nothing.

use ekube_cni::iptables::{Binary, Runner, Table};
use ipnetwork::Ipv4Network;

use super::Result;

const FWD_CHAIN: &str = "EKUBE-FLANNEL-FWD";
const MASQ_CHAIN: &str = "EKUBE-FLANNEL-POSTRTG";

/// Installs the forward (always) and masquerade (when `masq`) rules for `network`.
pub fn ensure(network: Ipv4Network, masq: bool) -> Result<()> {
    install(&Binary::find(), network, masq)
}

/// [`ensure`] through `ipt`.
fn install(ipt: &dyn Runner, network: Ipv4Network, masq: bool) -> Result<()> {
    let net = network.to_string();
    ensure_forward(Table::new(ipt, "filter"), &net)?;
    if masq {
        ensure_masquerade(Table::new(ipt, "nat"), &net)?;
    }
    Ok(())
}

/// Accepts forwarded traffic from and to `net`, whatever the FORWARD policy.
fn ensure_forward(filter: Table, net: &str) -> Result<()> {
    filter.ensure_chain(FWD_CHAIN)?;
    filter.ensure_rule(FWD_CHAIN, &["-s", net, "-j", "ACCEPT"])?;
    filter.ensure_rule(FWD_CHAIN, &["-d", net, "-j", "ACCEPT"])?;
    filter.ensure_rule(
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
    Ok(())
}

/// Masquerades traffic from `net` to anywhere outside it but multicast.
fn ensure_masquerade(nat: Table, net: &str) -> Result<()> {
    nat.ensure_chain(MASQ_CHAIN)?;
    // Pod to pod (also across nodes): keep the pod's address.
    nat.ensure_rule(MASQ_CHAIN, &["-s", net, "-d", net, "-j", "RETURN"])?;
    // Pod to anything else but multicast: the node's address.
    nat.ensure_rule(
        MASQ_CHAIN,
        &["-s", net, "!", "-d", "224.0.0.0/4", "-j", "MASQUERADE"],
    )?;
    nat.ensure_rule(
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use ekube_cni::iptables::{Recorder, exited};

    use super::*;

    fn cluster() -> Ipv4Network {
        "10.244.0.0/16".parse().unwrap()
    }

    const FORWARD: [&str; 8] = [
        "-w 5 -t filter -S EKUBE-FLANNEL-FWD",
        "-w 5 -t filter -N EKUBE-FLANNEL-FWD",
        "-w 5 -t filter -C EKUBE-FLANNEL-FWD -s 10.244.0.0/16 -j ACCEPT",
        "-w 5 -t filter -A EKUBE-FLANNEL-FWD -s 10.244.0.0/16 -j ACCEPT",
        "-w 5 -t filter -C EKUBE-FLANNEL-FWD -d 10.244.0.0/16 -j ACCEPT",
        "-w 5 -t filter -A EKUBE-FLANNEL-FWD -d 10.244.0.0/16 -j ACCEPT",
        "-w 5 -t filter -C FORWARD -m comment --comment ekube flannel forwarding -j EKUBE-FLANNEL-FWD",
        "-w 5 -t filter -A FORWARD -m comment --comment ekube flannel forwarding -j EKUBE-FLANNEL-FWD",
    ];

    #[test]
    fn without_masquerade_only_forwarding_is_installed() {
        let rec = Recorder::empty();
        install(&rec, cluster(), false).unwrap();
        assert_eq!(rec.calls(), FORWARD);
    }

    #[test]
    fn with_masquerade_the_nat_chain_follows() {
        let rec = Recorder::empty();
        install(&rec, cluster(), true).unwrap();
        let masq = [
            "-w 5 -t nat -S EKUBE-FLANNEL-POSTRTG",
            "-w 5 -t nat -N EKUBE-FLANNEL-POSTRTG",
            "-w 5 -t nat -C EKUBE-FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.0.0/16 -j RETURN",
            "-w 5 -t nat -A EKUBE-FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.0.0/16 -j RETURN",
            "-w 5 -t nat -C EKUBE-FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -j MASQUERADE",
            "-w 5 -t nat -A EKUBE-FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -j MASQUERADE",
            "-w 5 -t nat -C POSTROUTING -m comment --comment ekube flannel masquerade -j EKUBE-FLANNEL-POSTRTG",
            "-w 5 -t nat -A POSTROUTING -m comment --comment ekube flannel masquerade -j EKUBE-FLANNEL-POSTRTG",
        ];
        assert_eq!(rec.calls(), [FORWARD.as_slice(), &masq].concat());
    }

    #[test]
    fn resync_on_a_complete_node_only_looks() {
        let rec = Recorder::complete();
        install(&rec, cluster(), true).unwrap();
        let calls = rec.calls();
        assert_eq!(calls.len(), 8, "{calls:#?}");
        assert_eq!(rec.changes(), Vec::<String>::new());
    }

    #[test]
    fn failure_names_the_table_and_command() {
        let rec = Recorder::answering(|_| Ok(exited(3, "can't initialize iptables table")));
        let err = install(&rec, cluster(), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "iptables -t filter -N EKUBE-FLANNEL-FWD: can't initialize iptables table"
        );
    }
}
