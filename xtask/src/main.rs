//! `cargo xtask …`: the project's developer commands.
//!
//! Every command a newcomer or CI needs goes through here: installing what the machine lacks,
//! building the kernel programs, the lab of network-namespace hosts, the demo, the test run, the
//! fuzz targets and the benchmarks.

mod bench;
mod demo;
mod deps;
mod ebpf;
mod fuzz;
mod images;
mod lab;
mod lint;
mod test;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "ekube developer commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Bring up a 3-node lab cluster, deploy `web` behind NodePort 32143 and curl every node
    /// from outside (`--down` ends it).
    Demo(demo::DemoArgs),
    /// Install what this machine lacks (apt packages, Python clients, the eBPF toolchain).
    Deps,
    /// Build the eBPF programs into the object the proxy embeds.
    BuildEbpf(ebpf::BuildArgs),
    /// Bring a lab of network-namespace hosts up or down.
    Lab(lab::LabArgs),
    /// Build the test images and push them to the lab registry.
    Images(images::ImagesArgs),
    /// The lint gates: rustfmt, clippy with warnings as errors, unused dependencies, stray files.
    Lint(lint::LintArgs),
    /// Install what is missing, run the lint gates, build, and run every test (unit and
    /// end-to-end).
    Test(test::TestArgs),
    /// Fuzz one decoder for a while: `cargo xtask fuzz apiserver_body --seconds 300`.
    Fuzz(fuzz::FuzzArgs),
    /// Measure: `cargo xtask bench [apiserver|scheduler|proxy-sync|net|pods|lb]` (all when no
    /// name is given).
    Bench(bench::BenchArgs),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Demo(args) => demo::run(args),
        Command::Deps => deps::ensure_all(),
        Command::BuildEbpf(args) => ebpf::build(&args),
        Command::Lab(args) => lab::run(args),
        Command::Images(args) => images::run(args),
        Command::Lint(args) => lint::run(&args),
        Command::Test(args) => test::run(args),
        Command::Fuzz(args) => fuzz::run(&args),
        Command::Bench(args) => bench::run(args),
    }
}
