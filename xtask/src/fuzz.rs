//! `cargo xtask fuzz <target> --seconds N`: runs one cargo-fuzz target of `fuzz/` for N seconds.
//!
//! Targets are built with the `nightly` toolchain (libFuzzer's coverage instrumentation) and no
//! sanitizer: the code under test is safe Rust, so what the fuzzer hunts is panics, overflows
//! (debug assertions stay on) and runaway allocations. The committed seeds in
//! `fuzz/corpus/<target>` are read; what the fuzzer finds goes to
//! `target/fuzz-corpus/<target>` so a run leaves the committed corpus alone. A crash is kept
//! in `fuzz/artifacts/<target>/` and fails the command.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::ebpf::{run_shell, succeeds, workspace_root};

/// The targets in `fuzz/Cargo.toml`.
const TARGETS: &[&str] = &["apiserver_body", "cni_config", "image_config"];

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// One of: apiserver_body, cni_config, image_config.
    pub target: String,
    /// How long to fuzz.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
}

pub fn run(args: &FuzzArgs) -> Result<()> {
    if !TARGETS.contains(&args.target.as_str()) {
        bail!(
            "unknown fuzz target {:?}; the targets are {}",
            args.target,
            TARGETS.join(", ")
        );
    }
    if !succeeds(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        run_shell("rustup toolchain install nightly --profile minimal")?;
    }
    if !succeeds(Command::new("cargo").args(["fuzz", "--version"])) {
        run_shell("cargo install cargo-fuzz")?;
    }
    let root = workspace_root();
    let found = root.join("target/fuzz-corpus").join(&args.target);
    std::fs::create_dir_all(&found).with_context(|| format!("creating {}", found.display()))?;
    let seeds = root.join("fuzz/corpus").join(&args.target);
    let status = Command::new("cargo")
        .current_dir(root)
        .env_remove("RUSTUP_TOOLCHAIN")
        .args([
            "+nightly",
            "fuzz",
            "run",
            "--sanitizer",
            "none",
            &args.target,
        ])
        .arg(&found)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={}", args.seconds))
        .arg("-print_final_stats=1")
        .status()
        .context("running cargo fuzz")?;
    if !status.success() {
        bail!(
            "fuzz target {} failed ({status}); the input is under fuzz/artifacts/{}",
            args.target,
            args.target
        );
    }
    Ok(())
}
