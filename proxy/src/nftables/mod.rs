//! `ekube proxy --mode nftables`: the Service datapath as kube-proxy's nftables rules.
//!
//! [`NftablesDatapath`] is the shared [`RuleDatapath`] with an [`NftablesWriter`]: each commit
//! renders the model ([`render::render`]) and hands `nft -f -` one transaction with what
//! changed since the last one ([`render::script`]), as kube-proxy's nftables proxier does with
//! its partial syncs: a changed Service rewrites its own chains and map elements, not the
//! other 10,000. The first commit, and the one after a failure, re-creates the whole
//! `ip kube-proxy` table in one transaction (so whatever an earlier run left is replaced, and
//! session-affinity memory starts afresh). NodePorts answer on the node's addresses, or on
//! every local address except 127.0.0.1 while none is known; pods' hostPorts are served too.
//! The mode never touches bpffs, cgroups or iptables.

pub mod render;

use std::time::Instant;

use ipnetwork::Ipv4Network;
use tracing::{debug, info, warn};

use self::render::Ruleset;
use crate::rules::{Error, Model, RuleDatapath, RuleWriter, conntrack::Netlink, fake_outcome, run};

/// The program that applies the scripts.
const NFT: &str = "nft";

/// How scripts reach the kernel.
pub trait Nft: Send {
    /// Applies `script` (`nft -f` syntax) as one transaction.
    fn apply(&mut self, script: &str) -> Result<(), Error>;
}

/// The real `nft`, in the proxy's own network namespace.
#[derive(Clone, Copy, Debug, Default)]
pub struct Binary;

impl Nft for Binary {
    fn apply(&mut self, script: &str) -> Result<(), Error> {
        run(NFT, &["-f", "-"], script).map(drop)
    }
}

/// What a [`Recorder`] saw; shared so a test keeps a handle after moving the recorder into a
/// datapath.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Every script, in order.
    pub scripts: Vec<String>,
    /// When set, the next script fails with this message (and is still recorded).
    pub fail_next: Option<String>,
}

/// The in-memory fake of [`Nft`].
pub type Recorder = crate::rules::Recorder<Recorded>;

impl Nft for Recorder {
    fn apply(&mut self, script: &str) -> Result<(), Error> {
        let mut rec = self.lock();
        rec.scripts.push(script.to_string());
        fake_outcome(NFT, &mut rec.fail_next)
    }
}

/// Writes the model as kube-proxy's nftables rules, each time only what changed.
pub struct NftablesWriter<N> {
    nft: N,
    /// What the kernel holds, as of the last successful transaction (`None`: not known, the
    /// next one re-creates the table).
    applied: Option<Ruleset>,
    /// Successful transactions.
    transactions: u64,
}

/// The services as kube-proxy's nftables rules.
pub type NftablesDatapath<N> = RuleDatapath<NftablesWriter<N>>;

impl NftablesDatapath<Binary> {
    /// The datapath over the real `nft`; checks that it runs and that the kernel takes an
    /// nftables table.
    pub fn open(cluster_cidr: Option<Ipv4Network>) -> Result<Self, Error> {
        let probe = format!(
            "add table ip {0}-probe\ndelete table ip {0}-probe\n",
            render::TABLE
        );
        Binary.apply(&probe)?;
        info!("nftables datapath ready");
        Ok(Self::new(Binary, cluster_cidr).with_flow_table(Box::<Netlink>::default()))
    }
}

impl<N: Nft> NftablesDatapath<N> {
    pub fn new(nft: N, cluster_cidr: Option<Ipv4Network>) -> Self {
        let writer = NftablesWriter {
            nft,
            applied: None,
            transactions: 0,
        };
        Self::with_writer(writer, cluster_cidr)
    }

    pub fn nft_handle(&self) -> &N {
        &self.writer().nft
    }
}

impl<N: Nft> RuleWriter for NftablesWriter<N> {
    fn write(&mut self, model: &Model) -> crate::datapath::Result<()> {
        let new = render::render(model);
        let script = render::script(self.applied.as_ref(), &new);
        if script.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        match self.nft.apply(&script) {
            Ok(()) => {
                debug!(
                    bytes = script.len(),
                    full = self.applied.is_none(),
                    took = ?started.elapsed(),
                    "nft transaction"
                );
                self.applied = Some(new);
                self.transactions += 1;
                Ok(())
            }
            Err(err) => {
                warn!(%err, "applying the nftables rules; the next sync re-creates the table");
                self.applied = None;
                Err(err.into())
            }
        }
    }

    fn writes(&self) -> u64 {
        self.transactions
    }
}

/// Removes the table with the real `nft` (`ekube reset`, or a proxy started in another
/// mode); whether it was there. Without `nft` there is nothing to remove.
pub fn remove_table() -> Result<bool, Error> {
    match Binary.apply(&format!("delete table ip {}\n", render::TABLE)) {
        Ok(()) => Ok(true),
        Err(Error::Spawn { .. }) => Ok(false),
        Err(Error::Failed { stderr, .. }) if stderr.contains("No such file or directory") => {
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests;
