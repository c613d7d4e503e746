//! `cargo xtask bench`: measurements, never assertions. Each bench is a release binary of the
//! `ekube-tests` crate that prints a markdown table and writes JSON under `target/bench/`.

use std::process::Command;

use anyhow::{Result, bail};

use crate::deps;

/// The benches there are, in the order `cargo xtask bench` runs them.
const BENCHES: &[&str] = &["apiserver"];

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Which bench to run (all when omitted).
    name: Option<String>,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let names: Vec<&str> = match args.name.as_deref() {
        None => BENCHES.to_vec(),
        Some(n) if BENCHES.contains(&n) => vec![n],
        Some(n) => bail!("no bench named {n:?}; there are: {}", BENCHES.join(", ")),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    deps::run(Command::new(&cargo).args(["build", "--release", "-p", "ekube", "-p", "ekube-tests", "--bins"]))?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let out = root.join("target/bench");
    for name in names {
        deps::run(Command::new(root.join(format!("target/release/bench-{name}"))).arg(&out))?;
    }
    Ok(())
}
