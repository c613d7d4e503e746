//! `ekube proxy --mode iptables`: the Service datapath as kube-proxy's iptables rules.
//!
//! [`IptablesDatapath`] is the shared [`RuleDatapath`] (the services' model in memory, driven
//! by the same watch and syncer as the eBPF datapath) with an [`IptablesWriter`]: each commit
//! renders the whole `KUBE-*` rule set ([`render`]) and applies it with one
//! `iptables-restore --noflush` ([`restore`]) — kube-proxy's own strategy, and the
//! baseline the eBPF datapath is measured against (DESIGN.md §7). On the first commit (and
//! after a failed one) it reads the tables back with `iptables-save` to find chains an earlier
//! run left and which jumps from the built-in chains are missing. It never touches bpffs or
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

pub use self::{
    render::Chains,
    restore::{Binary, Recorder, Restore, Variant},
};
use crate::rules::{Error, Model, RuleDatapath, RuleWriter};

/// `Result` with the error of running the iptables programs.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Settings of the iptables datapath.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IptablesConfig {
    pub variant: Variant,
    /// Pod CIDR: traffic from outside it is masqueraded on its way to a ClusterIP.
    pub cluster_cidr: Option<Ipv4Network>,
}

/// Writes the model as kube-proxy's iptables rules, each time in full.
pub struct IptablesWriter<R> {
    restore: R,
    /// Read the tables back before the next restore (first write, or after a failure).
    resync: bool,
    /// Per-service chains as of the last successful restore.
    chains: Chains,
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
        Ok(Self::new(binary, config.cluster_cidr))
    }
}

impl<R: Restore> IptablesDatapath<R> {
    pub fn new(restore: R, cluster_cidr: Option<Ipv4Network>) -> Self {
        let writer = IptablesWriter {
            restore,
            resync: true,
            chains: Chains::default(),
            restores: 0,
        };
        Self::with_writer(writer, cluster_cidr)
    }

    pub fn restore_handle(&self) -> &R {
        &self.writer().restore
    }
}

impl<R: Restore> IptablesWriter<R> {
    /// Renders the rule set and applies it (reading the tables first when needed).
    fn apply(&mut self, model: &Model) -> Result<()> {
        let mut missing = Vec::new();
        let mut found = None;
        if self.resync {
            let mut existing = Chains::default();
            for table in ["filter", "nat"] {
                let dump = self.restore.save(table)?;
                let (chains, jumps) = render::parse_save(table, &dump);
                match table {
                    "filter" => existing.filter = chains,
                    _ => existing.nat = chains,
                }
                missing.extend(jumps);
            }
            // Chains written last time that a failed restore may have left, too.
            existing.filter.extend(self.chains.filter.iter().cloned());
            existing.nat.extend(self.chains.nat.iter().cloned());
            found = Some(existing);
        }
        let before = found.as_ref().unwrap_or(&self.chains);
        let rendered = render::render(
            model,
            &render::Existing {
                chains: Some(before),
                missing_jumps: &missing,
            },
        );
        let started = Instant::now();
        self.restore.restore(&rendered.text)?;
        let took = started.elapsed();
        debug!(
            bytes = rendered.text.len(),
            chains = rendered.chains.nat.len(),
            ?took,
            "iptables-restore"
        );
        if !missing.is_empty() {
            info!(
                jumps = missing.len(),
                "installed the jumps into the KUBE-* chains"
            );
        }
        self.chains = rendered.chains;
        self.restores += 1;
        Ok(())
    }
}

impl<R: Restore> RuleWriter for IptablesWriter<R> {
    fn write(&mut self, model: &Model) -> crate::datapath::Result<()> {
        match self.apply(model) {
            Ok(()) => {
                self.resync = false;
                Ok(())
            }
            Err(err) => {
                warn!(%err, "applying the iptables rules; the next sync retries");
                self.resync = true;
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
