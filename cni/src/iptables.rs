//! Idempotent iptables programming, shared by the plugin's masquerade ([`crate::masq`]) and
//! the flannel agent's forward and masquerade rules.
//!
//! Both keep their rules in chains of their own reached by one jump, and both must be safe to
//! run again (repeated ADDs, agent restarts, resyncs). So the two operations here look before
//! they change: [`Table::ensure_chain`] lists the chain with `-S` and creates it with `-N` only
//! when missing, [`Table::ensure_rule`] checks with `-C` and appends with `-A` only when the
//! rule is absent. Every command is `iptables -w 5 -t <table> ...`: `-w 5` waits up to five
//! seconds for the xtables lock, which kube-proxy and other agents hold while they write.
//!
//! Commands go through the [`Runner`] trait: [`Binary`] execs the host's `iptables`,
//! [`Recorder`] is the fake that unit tests use to assert the exact commands.

use std::cell::RefCell;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Output};

/// Seconds `-w` lets a command wait for the xtables lock before it gives up.
const LOCK_WAIT_SECS: &str = "5";

/// An iptables command that could not be run, or that ran and failed.
#[derive(Debug, thiserror::Error)]
#[error("iptables {command}: {reason}")]
pub struct Error {
    /// The command's arguments after `-w`, e.g. `-t nat -A POSTROUTING -j EKUBE-MASQ-1`.
    pub command: String,
    /// Why it failed: the exec error, or what iptables wrote to stderr (its exit status
    /// when it wrote nothing).
    pub reason: String,
}

/// Result with an iptables [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs one iptables command; the seam between the rule logic and the host.
pub trait Runner {
    /// Runs `iptables <args>` (`args` already hold `-w` and `-t`) and returns how it ended.
    fn output(&self, args: &[&str]) -> io::Result<Output>;
}

/// The host's `iptables` program.
#[derive(Debug, Clone)]
pub struct Binary {
    path: PathBuf,
}

impl Binary {
    /// Looks for `iptables` on `PATH`, then in `/usr/sbin` and `/sbin`: container runtimes
    /// often exec plugins with a bare environment. Falls back to the bare name, so a host
    /// without iptables fails with an exec error that names it.
    pub fn find() -> Self {
        let on_path = std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|dir| dir.join("iptables"))
                .find(|c| c.is_file())
        });
        let path = on_path
            .or_else(|| {
                ["/usr/sbin/iptables", "/sbin/iptables"]
                    .map(PathBuf::from)
                    .into_iter()
                    .find(|c| c.is_file())
            })
            .unwrap_or_else(|| PathBuf::from("iptables"));
        Binary { path }
    }
}

impl Runner for Binary {
    fn output(&self, args: &[&str]) -> io::Result<Output> {
        Command::new(&self.path)
            .args(args)
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("running {}: {e}", self.path.display())))
    }
}

/// One table (`filter`, `nat`, ...) whose chains and rules are programmed through a [`Runner`].
#[derive(Clone, Copy)]
pub struct Table<'a> {
    runner: &'a dyn Runner,
    name: &'a str,
}

impl<'a> Table<'a> {
    /// The table `name`, reached through `runner`.
    pub fn new(runner: &'a dyn Runner, name: &'a str) -> Self {
        Table { runner, name }
    }

    /// Creates `chain` unless `-S` shows that it exists already.
    pub fn ensure_chain(&self, chain: &str) -> Result<()> {
        if self.output(&["-S", chain])?.status.success() {
            return Ok(());
        }
        self.change(&["-N", chain])
    }

    /// Appends `rule` to `chain` unless `-C` finds it there already.
    pub fn ensure_rule(&self, chain: &str, rule: &[&str]) -> Result<()> {
        let with = |op| {
            [op, chain]
                .into_iter()
                .chain(rule.iter().copied())
                .collect::<Vec<_>>()
        };
        if self.output(&with("-C"))?.status.success() {
            return Ok(());
        }
        self.change(&with("-A"))
    }

    /// Runs a command that must succeed (`-N`, `-A`).
    fn change(&self, args: &[&str]) -> Result<()> {
        let out = self.output(args)?;
        if out.status.success() {
            return Ok(());
        }
        Err(self.error(args, failure_reason(&out)))
    }

    /// Runs `iptables -w 5 -t <table> <args>`; only failing to run it at all is an error here,
    /// since a failed `-S` or `-C` just means "not there".
    fn output(&self, args: &[&str]) -> Result<Output> {
        let full: Vec<&str> = ["-w", LOCK_WAIT_SECS, "-t", self.name]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        self.runner
            .output(&full)
            .map_err(|e| self.error(args, e.to_string()))
    }

    fn error(&self, args: &[&str], reason: String) -> Error {
        Error {
            command: format!("-t {} {}", self.name, args.join(" ")),
            reason,
        }
    }
}

/// What iptables wrote to stderr, or its exit status when it wrote nothing.
fn failure_reason(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if stderr.is_empty() {
        out.status.to_string()
    } else {
        stderr
    }
}

/// A fake [`Runner`] for tests: records every command and answers from a closure.
pub struct Recorder {
    /// The commands run so far, each as its arguments joined by spaces.
    calls: RefCell<Vec<String>>,
    answer: Answer,
}

/// How a [`Recorder`] answers a command, given its arguments.
type Answer = Box<dyn Fn(&[&str]) -> io::Result<Output>>;

impl Recorder {
    /// Answers each command with `answer(args)`.
    pub fn answering(answer: impl Fn(&[&str]) -> io::Result<Output> + 'static) -> Self {
        Recorder {
            calls: RefCell::default(),
            answer: Box::new(answer),
        }
    }

    /// A host with none of the chains and rules yet: `-S` and `-C` fail, everything else
    /// succeeds.
    pub fn empty() -> Self {
        Recorder::answering(|args| {
            let looks = args.iter().any(|a| matches!(*a, "-S" | "-C"));
            Ok(exited(if looks { 1 } else { 0 }, ""))
        })
    }

    /// A host that has every chain and rule already: every command succeeds.
    pub fn complete() -> Self {
        Recorder::answering(|_| Ok(exited(0, "")))
    }

    /// The commands run so far, each as its arguments joined by spaces.
    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    /// The commands run so far that change rules or chains (`-N`, `-A`).
    pub fn changes(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.contains(" -N ") || c.contains(" -A "))
            .collect()
    }
}

impl Runner for Recorder {
    fn output(&self, args: &[&str]) -> io::Result<Output> {
        self.calls.borrow_mut().push(args.join(" "));
        (self.answer)(args)
    }
}

/// The output of a command that exited with `code` after writing `stderr`.
pub fn exited(code: i32, stderr: &str) -> Output {
    Output {
        // A wait status holds the exit code in its second byte.
        status: ExitStatus::from_raw(code << 8),
        stdout: Vec::new(),
        stderr: stderr.as_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_chain_is_listed_then_created() {
        let rec = Recorder::empty();
        Table::new(&rec, "nat").ensure_chain("EKUBE-X").unwrap();
        assert_eq!(
            rec.calls(),
            ["-w 5 -t nat -S EKUBE-X", "-w 5 -t nat -N EKUBE-X"]
        );
    }

    #[test]
    fn missing_rule_is_checked_then_appended() {
        let rec = Recorder::empty();
        let filter = Table::new(&rec, "filter");
        filter.ensure_rule("FORWARD", &["-j", "EKUBE-X"]).unwrap();
        assert_eq!(
            rec.calls(),
            [
                "-w 5 -t filter -C FORWARD -j EKUBE-X",
                "-w 5 -t filter -A FORWARD -j EKUBE-X"
            ]
        );
    }

    #[test]
    fn present_chain_and_rule_are_left_alone() {
        let rec = Recorder::complete();
        let nat = Table::new(&rec, "nat");
        nat.ensure_chain("EKUBE-X").unwrap();
        nat.ensure_rule("EKUBE-X", &["-j", "MASQUERADE"]).unwrap();
        assert_eq!(
            rec.calls(),
            [
                "-w 5 -t nat -S EKUBE-X",
                "-w 5 -t nat -C EKUBE-X -j MASQUERADE"
            ]
        );
    }

    #[test]
    fn failed_append_names_table_command_and_stderr() {
        let rec = Recorder::answering(|_| Ok(exited(1, "iptables: No chain by that name.\n")));
        let err = Table::new(&rec, "nat")
            .ensure_rule("EKUBE-X", &["-j", "MASQUERADE"])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "iptables -t nat -A EKUBE-X -j MASQUERADE: iptables: No chain by that name."
        );
    }

    #[test]
    fn silent_failure_reports_the_exit_status() {
        let rec = Recorder::answering(|_| Ok(exited(4, "")));
        let err = Table::new(&rec, "filter")
            .ensure_chain("EKUBE-X")
            .unwrap_err();
        assert_eq!(err.command, "-t filter -N EKUBE-X");
        assert_eq!(err.reason, "exit status: 4");
    }

    #[test]
    fn exec_failure_stops_at_the_first_command() {
        let rec = Recorder::answering(|_| Err(io::Error::other("running iptables: not found")));
        let err = Table::new(&rec, "nat").ensure_chain("EKUBE-X").unwrap_err();
        assert_eq!(err.command, "-t nat -S EKUBE-X");
        assert_eq!(rec.calls().len(), 1);
    }
}
