//! `ekube proxy`: watches Services and EndpointSlices and keeps the datapath in step.
//!
//! Not built yet: `run` reports that. The datapath it will drive is in [`crate::datapath`].

use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Kubeconfig of the apiserver to talk to.
    #[arg(long)]
    pub kubeconfig: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the proxy is not built yet")]
    NotBuilt,
}

pub async fn run(_config: Config, _shutdown: impl std::future::Future<Output = ()>) -> Result<(), RunError> {
    Err(RunError::NotBuilt)
}
