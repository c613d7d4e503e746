//! Running `iptables-save` and `iptables-restore` behind the small [`Restore`] trait.
//!
//! [`Binary`] runs the real programs of one variant (`iptables-legacy-*` or `iptables-nft-*`,
//! both from Debian's `iptables` package) in the proxy's own network namespace; [`Recorder`]
//! is the fake the rendering tests use: it remembers every restore input and answers saves
//! from a canned table dump.

use std::{
    io::Write,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
};

use super::{Error, Result};

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
        let program = self.variant.save_program();
        let out = Command::new(program)
            .args(["-t", table])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| Error::Spawn { program, source })?;
        if !out.status.success() {
            return Err(Error::Failed {
                program,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn restore(&mut self, input: &str) -> Result<()> {
        let program = self.variant.restore_program();
        // `-w 5`: wait for the xtables lock like kube-proxy rather than failing at once.
        let mut child = Command::new(program)
            .args(["--noflush", "-w", "5"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Spawn { program, source })?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // Written from this thread while the child reads; stderr is drained after stdin closes,
        // which is safe because restore only reports errors after reading its input.
        let written = stdin.write_all(input.as_bytes());
        drop(stdin);
        let out = child
            .wait_with_output()
            .map_err(|source| Error::Spawn { program, source })?;
        if !out.status.success() || written.is_err() {
            return Err(Error::Failed {
                program,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
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
#[derive(Clone, Debug, Default)]
pub struct Recorder(pub Arc<Mutex<Recorded>>);

impl Recorder {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

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
        match rec.fail_next.take() {
            Some(stderr) => Err(Error::Failed {
                program: "iptables-restore",
                status: "exit status: 1".into(),
                stderr,
            }),
            None => Ok(()),
        }
    }
}
