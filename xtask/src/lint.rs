//! `cargo xtask lint`: the gates every change passes before the tests run (DESIGN.md §9).
//!
//! Formatting (`cargo fmt --check`, the workspace and the kernel crate), clippy with warnings
//! as errors over the lints in the root `Cargo.toml`'s `[workspace.lints]`, unused dependencies
//! (`cargo machete`, installed when missing) and no stray files tracked by git (merge leftovers,
//! editor backups). Each gate runs even when an earlier one failed, so one run lists every
//! problem.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::deps;

/// Tracked file names that are leftovers, never sources: patch and merge debris, editor
/// backups and swap files.
const STRAY_SUFFIXES: &[&str] = &[".orig", ".rej", ".bak", ".swp", ".swo", "~"];

/// A named check; `Err` says what failed.
type Gate<'a> = (&'static str, Box<dyn Fn() -> Result<()> + 'a>);

#[derive(clap::Args)]
pub struct LintArgs {
    /// Skip installing cargo-machete when it is missing (the unused-dependency gate then fails).
    #[arg(long)]
    pub no_deps: bool,
}

pub fn run(args: &LintArgs) -> Result<()> {
    if !args.no_deps {
        ensure_components()?;
        ensure_machete()?;
    }
    let root = crate::ebpf::workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let gates: [Gate; 5] = [
        (
            "cargo fmt --check",
            Box::new(|| deps::run(Command::new(&cargo).args(["fmt", "--all", "--check"]))),
        ),
        (
            "cargo fmt --check (ebpf/programs)",
            Box::new(|| {
                deps::run(
                    Command::new(&cargo)
                        .current_dir(root.join("ebpf/programs"))
                        .args(["fmt", "--check"]),
                )
            }),
        ),
        (
            "cargo clippy -D warnings",
            Box::new(|| {
                deps::run(Command::new(&cargo).args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ]))
            }),
        ),
        (
            "cargo machete",
            // Run as its own binary with the path: started as `cargo machete` from inside a
            // cargo-run xtask it takes the subcommand's name for a directory to scan.
            Box::new(|| deps::run(Command::new("cargo-machete").arg(root))),
        ),
        ("no stray files", Box::new(|| stray_files(root))),
    ];
    let failed: Vec<&str> = gates
        .iter()
        .filter_map(|(name, gate)| {
            eprintln!("xtask lint: {name}");
            gate()
                .inspect_err(|e| eprintln!("xtask lint: {name} failed: {e:#}"))
                .err()
                .map(|_| *name)
        })
        .collect();
    if !failed.is_empty() {
        bail!("lint gates failed: {}", failed.join(", "));
    }
    Ok(())
}

/// rustfmt and clippy for the host toolchain (stable, as `rust-toolchain.toml` says) and rustfmt
/// for the kernel crate's nightly: a minimal rustup profile has neither, and `rustup component
/// add` does nothing when they are there.
fn ensure_components() -> Result<()> {
    crate::ebpf::run_shell("rustup component add rustfmt clippy --toolchain stable")?;
    crate::ebpf::run_shell(&format!(
        "rustup component add rustfmt --toolchain {}",
        crate::ebpf::TOOLCHAIN
    ))
}

/// Installs `cargo-machete` from crates.io unless `cargo-machete --version` already works.
fn ensure_machete() -> Result<()> {
    let present = Command::new("cargo-machete")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-machete");
    deps::run(Command::new("cargo").args(["install", "--locked", "cargo-machete"]))
}

/// Fails when git tracks a file whose name marks it as a leftover.
fn stray_files(root: &Path) -> Result<()> {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .context("running git ls-files")?;
    if !out.status.success() {
        bail!(
            "git ls-files failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stray: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split('\0')
        .filter(|p| is_stray(p))
        .map(str::to_owned)
        .collect();
    if !stray.is_empty() {
        bail!(
            "stray files are tracked (remove them with git rm): {}",
            stray.join(", ")
        );
    }
    Ok(())
}

fn is_stray(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    !name.is_empty()
        && (STRAY_SUFFIXES.iter().any(|s| name.ends_with(s))
            || name.starts_with(".#")
            || (name.starts_with('#') && name.ends_with('#')))
}

#[cfg(test)]
mod tests {
    use super::is_stray;

    #[test]
    fn leftovers_are_stray_and_sources_are_not() {
        for p in [
            "proxy/src/service/watch.rs.orig",
            "a.rej",
            "b~",
            ".x.rs.swp",
            "d/.#e",
            "#f#",
        ] {
            assert!(is_stray(p), "{p}");
        }
        for p in [
            "README.md",
            "kubelet/src/server/spdy3.dict",
            ".gitignore",
            "origin.rs",
            "",
        ] {
            assert!(!is_stray(p), "{p}");
        }
    }
}
