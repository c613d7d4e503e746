//! `cargo xtask build-ebpf`: builds the kernel programs under `ebpf/programs`.
//!
//! The programs are compiled for `bpfel-unknown-none` with the `nightly` toolchain
//! (`-Z build-std=core`, set in `ebpf/programs/.cargo/config.toml`) and linked by `bpf-linker`
//! with BTF kept. The object lands at `target/ebpf/ekube.bpf.o` under the workspace root, where
//! the proxy's build script embeds it from (override with `EKUBE_BPF_OBJECT`). The intermediate
//! cargo build lives in `target/ebpf/build`, independent of `CARGO_TARGET_DIR`.
//!
//! Toolchain pieces (DESIGN.md §7): nightly + `rust-src`, `bpf-linker` built against Debian's
//! LLVM 22 (`llvm-22-dev libpolly-22-dev zlib1g-dev libzstd-dev`, installed by `deps`).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

/// Toolchain the kernel crate is built with (also pinned in `ebpf/programs/rust-toolchain.toml`).
pub(crate) const TOOLCHAIN: &str = "nightly";
/// Target triple of the kernel programs.
const TARGET: &str = "bpfel-unknown-none";
/// Where Debian's LLVM 22 lives; `bpf-linker` is built against it.
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// Apt packages `bpf-linker` needs to build and run.
const LLVM_APT: &str = "llvm-22-dev libpolly-22-dev zlib1g-dev libzstd-dev";
/// The one binary the kernel crate builds (its `[[bin]]` name).
const PROGRAM_BIN: &str = "ekube";

#[derive(clap::Args)]
pub struct BuildArgs {
    /// Build with the `debug` feature (aya-log output from the kernel programs).
    #[arg(long)]
    pub debug_log: bool,
    /// Where to write the object [default: <workspace>/target/ebpf/ekube.bpf.o].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The workspace root (parent of `xtask/`).
pub(crate) fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
}

/// Default object path, the one the proxy embeds.
pub fn default_object_path() -> PathBuf {
    workspace_root().join("target/ebpf/ekube.bpf.o")
}

pub fn build(args: &BuildArgs) -> Result<()> {
    ensure_toolchain(false)?;
    let root = workspace_root();
    let crate_dir = root.join("ebpf/programs");
    let target_dir = root.join("target/ebpf/build");
    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        TOOLCHAIN,
        "cargo",
        "build",
        "--release",
        "--locked",
        "--target",
        TARGET,
    ])
    .arg("--target-dir")
    .arg(&target_dir)
    .current_dir(&crate_dir);
    if args.debug_log {
        cmd.args(["--features", "debug"]);
    }
    // The outer cargo (stable) exports variables that would leak into the nightly BPF build.
    for var in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTUP_TOOLCHAIN",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .context("running the nightly cargo for ebpf/programs")?;
    if !status.success() {
        bail!("building ebpf/programs failed ({status})");
    }

    let built = target_dir.join(TARGET).join("release").join(PROGRAM_BIN);
    let out = args.out.clone().unwrap_or_else(default_object_path);
    install_if_changed(&built, &out)?;
    println!("eBPF object: {}", out.display());
    Ok(())
}

/// Copies `from` to `to` unless the bytes are already there, so an unchanged object keeps its
/// mtime and does not force the proxy to rebuild.
fn install_if_changed(from: &Path, to: &Path) -> Result<()> {
    let bytes = fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    if fs::read(to).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let dir = to.parent().context("object path has no parent directory")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = to.with_extension("o.tmp");
    fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, to).with_context(|| format!("renaming to {}", to.display()))?;
    Ok(())
}

/// Checks the pieces the kernel build needs; with `install`, installs `rust-src` and
/// `bpf-linker` (the LLVM apt packages must already be there). Without `install`, the first
/// missing piece is reported in one line naming the command that installs it.
pub fn ensure_toolchain(install: bool) -> Result<()> {
    if !succeeds(Command::new("rustup").args(["run", TOOLCHAIN, "rustc", "--version"])) {
        let fix = format!("rustup toolchain install {TOOLCHAIN} --component rust-src");
        if !install {
            bail!("the {TOOLCHAIN} Rust toolchain is missing; install it with `{fix}`");
        }
        run_shell(&fix)?;
    }
    if !has_rust_src()? {
        let fix = format!("rustup component add rust-src --toolchain {TOOLCHAIN}");
        if !install {
            bail!("rust-src for {TOOLCHAIN} is missing; install it with `{fix}`");
        }
        run_shell(&fix)?;
    }
    let llvm_present = Path::new(LLVM_PREFIX).join("bin/llvm-config").exists();
    if !llvm_present {
        bail!("LLVM 22 is missing; install it with `apt-get install -y {LLVM_APT}`");
    }
    if !succeeds(Command::new("bpf-linker").arg("--version")) {
        let fix = format!(
            "LLVM_PREFIX={LLVM_PREFIX} cargo install bpf-linker --no-default-features --features \
             llvm-22"
        );
        if !install {
            bail!("bpf-linker is missing or cannot start; install it with `{fix}`");
        }
        run_shell(&fix)?;
    }
    Ok(())
}

fn has_rust_src() -> Result<bool> {
    let out = Command::new("rustup")
        .args(["run", TOOLCHAIN, "rustc", "--print", "sysroot"])
        .output()
        .context("running rustup")?;
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok(out.status.success()
        && Path::new(&sysroot)
            .join("lib/rustlib/src/rust/library/core/Cargo.toml")
            .exists())
}

pub(crate) fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(crate) fn run_shell(line: &str) -> Result<()> {
    println!("+ {line}");
    let status = Command::new("sh")
        .args(["-c", line])
        .env_remove("RUSTUP_TOOLCHAIN")
        .status()
        .with_context(|| format!("running `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}
