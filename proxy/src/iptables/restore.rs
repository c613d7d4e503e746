//! Running `iptables-save` and `iptables-restore` behind the small [`Restore`] trait.
//!
//! [`Binary`] runs the real programs of one variant (`iptables-legacy-*` or `iptables-nft-*`,
//! both from Debian's `iptables` package) in the proxy's own network namespace; [`Recorder`]
//! is the fake the rendering tests use: it remembers every restore input and answers saves
//! from a canned table dump.

use super::Result;
use crate::rules::{fake_outcome, run};

/// Which iptables implementation the rules are written with (Debian's two alternatives of
/// `iptables`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    /// The x_tables kernel API (`iptables-legacy-restore`).
    Legacy,
    /// nf_tables through the iptables compatibility layer (`iptables-nft-restore`).
    Nft,
}

impl Variant {
    /// The `iptables-restore` program of this variant.
    pub fn restore_program(self) -> &'static str {
        match self {
            Variant::Legacy => "iptables-legacy-restore",
            Variant::Nft => "iptables-nft-restore",
        }
    }

    /// The `iptables-save` program of this variant.
    pub fn save_program(self) -> &'static str {
        match self {
            Variant::Legacy => "iptables-legacy-save",
            Variant::Nft => "iptables-nft-save",
        }
    }
}

/// How rules reach the kernel: one `save` per table to read what is there, one `restore` per
/// batch to change it.
pub trait Restore: Send {
    /// The `iptables-save -t <table>` text of one table.
    fn save(&mut self, table: &str) -> Result<String>;

    /// Applies `input` (several tables, each ending in `COMMIT`) with `--noflush`: chains and
    /// rules the input does not mention stay as they are.
    fn restore(&mut self, input: &str) -> Result<()>;
}

/// The real programs of one [`Variant`].
#[derive(Clone, Debug)]
pub struct Binary {
    pub variant: Variant,
}

impl Binary {
    pub fn new(variant: Variant) -> Self {
        Self { variant }
    }
}

impl Restore for Binary {
    fn save(&mut self, table: &str) -> Result<String> {
        run(self.variant.save_program(), &["-t", table], "")
    }

    fn restore(&mut self, input: &str) -> Result<()> {
        // `-w 5`: wait for the xtables lock like kube-proxy rather than failing at once.
        run(
            self.variant.restore_program(),
            &["--noflush", "-w", "5"],
            input,
        )
        .map(drop)
    }
}

/// What a [`Recorder`] saw and answers; shared so a test keeps a handle after moving the
/// recorder into a datapath.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Every restore input, in order.
    pub restores: Vec<String>,
    /// Tables `save` was asked for, in order.
    pub saves: Vec<String>,
    /// The `iptables-save` text answered for each table (empty when absent).
    pub tables: Vec<(String, String)>,
    /// When set, the next restore fails with this message (and is still recorded).
    pub fail_next: Option<String>,
}

/// The in-memory fake of [`Restore`].
pub type Recorder = crate::rules::Recorder<Recorded>;

impl Restore for Recorder {
    fn save(&mut self, table: &str) -> Result<String> {
        let mut rec = self.lock();
        rec.saves.push(table.to_string());
        Ok(rec
            .tables
            .iter()
            .find(|(t, _)| t == table)
            .map(|(_, text)| text.clone())
            .unwrap_or_default())
    }

    fn restore(&mut self, input: &str) -> Result<()> {
        let mut rec = self.lock();
        rec.restores.push(input.to_string());
        fake_outcome("iptables-restore", &mut rec.fail_next)
    }
}
