//! The `ekube-cni` binary: CNI protocol on stdin/env/stdout around [`ekube_cni::run`].
//!
//! Logs go to stderr (level from `RUST_LOG`, default `warn`), or appended to the file
//! named by `EKUBE_CNI_LOG`; stdout carries only the result or the error object.

use std::io::{Read, Write};
use std::process::ExitCode;

use ekube_cni::{config, env::CniEnv, plugin, types};
use tracing_subscriber::EnvFilter;

fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    match std::env::var_os("EKUBE_CNI_LOG").and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    }) {
        Some(file) => builder.with_writer(std::sync::Mutex::new(file)).init(),
        None => builder.with_writer(std::io::stderr).init(),
    }
}

fn main() -> ExitCode {
    init_logging();
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let version =
        config::sniff_version(&stdin).unwrap_or_else(|| types::LATEST_VERSION.to_string());
    let outcome = match read {
        Ok(_) => CniEnv::from_process().and_then(|env| plugin::run(&env, &stdin, &plugin::Kernel)),
        Err(e) => Err(ekube_cni::Error::io("reading stdin", e)),
    };
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(text) => {
            if let Some(text) = text {
                let _ = writeln!(out, "{text}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(code = e.code(), error = %e, "command failed");
            let json = serde_json::to_string(&e.to_json(&version)).expect("serialisable");
            let _ = writeln!(out, "{json}");
            ExitCode::from(1)
        }
    }
}
