//! `ekube proxy --mode iptables`: the Service datapath as kube-proxy's iptables rules.
//!
//! [`IptablesDatapath`] is the shared [`RuleDatapath`] (the services' model in memory, driven
//! by the same watch and syncer as the eBPF datapath) with an [`IptablesWriter`]: each commit
//! renders the whole `KUBE-*` rule set ([`render`]) and applies it with one
//! `iptables-restore --noflush` ([`restore`]) — kube-proxy's own strategy, and the
//! baseline the eBPF datapath is measured against (DESIGN.md §7). Like kube-proxy's since
//! 1.26, a restore after a successful one writes the fixed chains (`KUBE-SERVICES`,
//! `KUBE-NODEPORTS`, …) and only the per-service chains that changed; the first one (and the
//! one after a failure) reads the tables back with `iptables-save` to find chains an earlier
//! run left and which jumps from the built-in chains are missing, and writes every chain. It never touches bpffs or
//! cgroups. Pods' hostPorts are rendered as the kubelet's hostport rules ([`hostports`]).
//! NodePorts answer on the node's addresses, or on every local address while none is
//! known; `127.0.0.1:<nodePort>` would also need `net.ipv4.conf.*.route_localnet=1`, which the
//! proxy does not set, so localhost NodePorts are not served in this mode.

pub mod cleanup;
pub mod hostports;
pub mod render;
pub mod restore;

use std::time::Instant;

use ipnetwork::Ipv4Network;
use tracing::{debug, info, warn};

use self::render::{Before, Chains, Ruleset};
pub use self::restore::{Binary, Recorder, Restore, Variant};
use crate::rules::{Error, Model, RuleDatapath, RuleWriter, conntrack::Netlink};

/// `Result` with the error of running the iptables programs.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Settings of the iptables datapath.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IptablesConfig {
    pub variant: Variant,
    /// Pod CIDR: traffic from outside it is masqueraded on its way to a ClusterIP.
    pub cluster_cidr: Option<Ipv4Network>,
}

/// Writes the model as kube-proxy's iptables rules.
pub struct IptablesWriter<R> {
    restore: R,
    /// What the last successful restore wrote (`None`: not known, the next restore reads the
    /// tables first and writes every chain).
    applied: Option<Ruleset>,
    /// Successful restores.
    restores: u64,
}

/// The services as kube-proxy's iptables rules.
pub type IptablesDatapath<R> = RuleDatapath<IptablesWriter<R>>;

impl IptablesDatapath<Binary> {
    /// The datapath over the real programs of `config.variant`; checks they run.
    pub fn open(config: &IptablesConfig) -> Result<Self> {
        let mut binary = Binary::new(config.variant);
        binary.save("nat")?;
        info!(
            variant = config.variant.restore_program(),
            "iptables datapath ready"
        );
        Ok(Self::new(binary, config.cluster_cidr).with_flow_table(Box::<Netlink>::default()))
    }
}

impl<R: Restore> IptablesDatapath<R> {
    pub fn new(restore: R, cluster_cidr: Option<Ipv4Network>) -> Self {
        let writer = IptablesWriter {
            restore,
            applied: None,
            restores: 0,
        };
        Self::with_writer(writer, cluster_cidr)
    }

    pub fn restore_handle(&self) -> &R {
        &self.writer().restore
    }
}

impl<R: Restore> IptablesWriter<R> {
    /// Renders the rule set and applies it: after a successful restore only what changed,
    /// otherwise everything, reading the tables first.
    fn apply(&mut self, model: &Model) -> Result<()> {
        let new = render::render(model);
        let mut read = (Chains::default(), Vec::new());
        if self.applied.is_none() {
            for table in ["filter", "nat"] {
                let dump = self.restore.save(table)?;
                let (chains, jumps) = render::parse_save(table, &dump);
                match table {
                    "filter" => read.0.filter = chains,
                    _ => read.0.nat = chains,
                }
                read.1.extend(jumps);
            }
        }
        let before = match &self.applied {
            Some(old) => Before::Applied(old),
            None => Before::Read {
                chains: &read.0,
                missing_jumps: &read.1,
            },
        };
        let text = render::restore_input(&new, &before);
        let started = Instant::now();
        self.restore.restore(&text)?;
        debug!(
            bytes = text.len(),
            full = self.applied.is_none(),
            took = ?started.elapsed(),
            "iptables-restore"
        );
        if !read.1.is_empty() {
            info!(
                jumps = read.1.len(),
                "installed the jumps into the KUBE-* chains"
            );
        }
        self.applied = Some(new);
        self.restores += 1;
        Ok(())
    }
}

impl<R: Restore> RuleWriter for IptablesWriter<R> {
    fn write(&mut self, model: &Model) -> crate::datapath::Result<()> {
        match self.apply(model) {
            Ok(()) => Ok(()),
            Err(err) => {
                warn!(%err, "applying the iptables rules; the next sync retries in full");
                self.applied = None;
                Err(err.into())
            }
        }
    }

    fn writes(&self) -> u64 {
        self.restores
    }
}

#[cfg(test)]
mod tests;
