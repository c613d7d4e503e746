//! `ekube`: one multi-call binary for every ekube component (like k3s).
//!
//! `ekube server` runs the control plane, `ekube apiserver` the apiserver alone, and
//! `ekube kubectl …` (or the binary invoked as `ekubectl`) is the command-line client.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ekube", version, about = "A small Kubernetes-compatible cluster with an eBPF service datapath")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane: the apiserver (and every control-plane component that exists).
    Server(ekube_apiserver::Config),
    /// Run the apiserver alone.
    Apiserver(ekube_apiserver::Config),
}

fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Server(config) | Command::Apiserver(config) => {
            ekube_apiserver::run(config, shutdown_signal()).await.context("apiserver")
        }
    }
}
