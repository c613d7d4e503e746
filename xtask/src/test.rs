//! `cargo xtask test`: the one test command. Installs what is missing, builds the eBPF objects,
//! runs the lint gates, builds the workspace once, and runs every test (unit and end-to-end)
//! against that build, then the demo.

use std::process::Command;

use anyhow::Result;

use crate::deps;

#[derive(clap::Args)]
pub struct TestArgs {
    /// Skip installing missing packages and tools.
    #[arg(long)]
    no_deps: bool,
    /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
    #[arg(last = true)]
    cargo_args: Vec<String>,
}

pub fn run(args: TestArgs) -> Result<()> {
    if !args.no_deps {
        deps::ensure_all()?;
    }
    crate::ebpf::build(&crate::ebpf::BuildArgs {
        debug_log: false,
        out: None,
    })?;
    // The gates before the build: a change that fails them fails here, not after minutes of
    // end-to-end tests. (After the eBPF build, so clippy sees the proxy's embedded object.)
    crate::lint::run(&crate::lint::LintArgs {
        no_deps: args.no_deps,
    })?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // One build of every binary the end-to-end tests start.
    deps::run(Command::new(&cargo).args(["build", "--workspace", "--bins"]))?;
    let kubectl = deps::kubectl_path()?;
    let tests = deps::run(
        Command::new(&cargo)
            .args(["test", "--workspace", "--no-fail-fast"])
            .args(&args.cargo_args)
            .env("EKUBE_KUBECTL", kubectl)
            .env("EKUBE_REQUIRE_ROOT_TESTS", "1"),
    );
    // The README's first command, end to end on this build (skipped when a filter narrows the
    // run to some tests).
    let demo = if args.cargo_args.is_empty() {
        crate::demo::check()
    } else {
        Ok(())
    };
    ekube_lab::Lab::remove_shared_dirs();
    tests.and(demo)
}
