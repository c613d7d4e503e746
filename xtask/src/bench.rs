//! `cargo xtask bench`: measurements, never assertions. Each bench is a release binary of the
//! `ekube-tests` crate (`tests/src/bin/bench-<name>.rs`) that prints a markdown table and writes
//! JSON under `target/bench/`. `cargo xtask bench` runs them all (one failing does not stop
//! the others); `cargo xtask bench <name>` runs one, with any further arguments passed to it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use crate::deps;

/// The benches there are, in the order `cargo xtask bench` runs them, with what each measures.
const BENCHES: &[(&str, &str)] = &[
    ("apiserver", "apiserver throughput and latency (loopback)"),
    (
        "scheduler",
        "pods scheduled per second over 100 hollow nodes, end to end and by the scheduler alone on a backlog (loopback)",
    ),
    (
        "proxy-sync",
        "API change → pinned eBPF maps at 1 / 100 / 10,000 / 100,000 services (root)",
    ),
    (
        "net",
        "pod network throughput and latency: bridge, VXLAN, underlay (2-node lab, root)",
    ),
    (
        "pods",
        "pod start-up latency and agent RSS (1-node lab cluster, root)",
    ),
    (
        "init",
        "ekube init / ekube join → node Ready, beside ekube server + agent (2-node lab, root)",
    ),
    (
        "dns",
        "cluster DNS queries/s and latency, cluster and cached outside names, beside the upstream (2-node lab cluster, root)",
    ),
    (
        "ingress",
        "HTTP through ekube-ingress beside straight to the pod and beside nginx as a reverse proxy, 1 and 64 connections (2-node lab cluster, root)",
    ),
    (
        "lb",
        "Service load balancing: eBPF vs iptables-legacy/nft vs nftables vs pod IP, ClusterIP and NodePort at 10 / 1,000 / 10,000 / 100,000 services (2-node lab, root)",
    ),
];

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Which bench to run (all when omitted).
    name: Option<String>,
    /// Skip installing missing packages and tools.
    #[arg(long)]
    no_deps: bool,
    /// Extra arguments for the one bench named (e.g. `--rounds 5`), after `--`.
    #[arg(last = true)]
    bench_args: Vec<String>,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let names: Vec<&str> = match args.name.as_deref() {
        None => BENCHES.iter().map(|(n, _)| *n).collect(),
        Some(n) if BENCHES.iter().any(|(b, _)| *b == n) => vec![n],
        Some(n) => bail!("no bench named {n:?}; there are: {}", list()),
    };
    if args.name.is_none() && !args.bench_args.is_empty() {
        bail!(
            "arguments after `--` go to one bench: name it (there are: {})",
            list()
        );
    }
    if !args.no_deps {
        deps::ensure_all()?;
    }
    crate::ebpf::build(&crate::ebpf::BuildArgs {
        debug_log: false,
        out: None,
    })?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    deps::run(Command::new(&cargo).args([
        "build",
        "--release",
        "-p",
        "ekube",
        "-p",
        "ekube-cni",
        "-p",
        "ekube-tests",
        "--bins",
    ]))?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let bin_dir = target_dir(root).join("release");
    let out = root.join("target/bench");
    let mut failed = Vec::new();
    for name in names {
        eprintln!("xtask: bench {name}");
        let result = deps::run(
            Command::new(bin_dir.join(format!("bench-{name}")))
                .arg(&out)
                .args(&args.bench_args),
        );
        if let Err(e) = result {
            eprintln!("xtask: bench {name} failed: {e:#}");
            failed.push(name);
        }
    }
    if !failed.is_empty() {
        bail!("benches that did not complete: {}", failed.join(", "));
    }
    eprintln!("xtask: results in {}", out.display());
    Ok(())
}

/// `name (what)` of every bench, for messages.
fn list() -> String {
    BENCHES
        .iter()
        .map(|(n, what)| format!("{n} ({what})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` when set (relative to the current
/// directory, as cargo reads it), else `<workspace>/target`.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}
