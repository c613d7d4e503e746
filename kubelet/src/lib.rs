//! `ekube kubelet` and `ekube runtime`: the node agent and the CRI runtime it drives.
//!
//! Not built yet: both entry points report that.

use std::path::PathBuf;

pub mod runtime {
    //! `ekube runtime`: a CRI v1 runtime over runc.
    use std::path::PathBuf;

    #[derive(Debug, Clone, clap::Args)]
    pub struct Config {
        /// The CRI socket to serve.
        #[arg(long, default_value = "/run/ekube/runtime.sock")]
        pub listen: PathBuf,
    }

    pub async fn run(_config: Config, _shutdown: impl std::future::Future<Output = ()>) -> Result<(), super::Error> {
        Err(super::Error::NotBuilt)
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Kubeconfig of the apiserver to talk to.
    #[arg(long)]
    pub kubeconfig: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the kubelet is not built yet")]
    NotBuilt,
}

pub async fn run(_config: Config, _shutdown: impl std::future::Future<Output = ()>) -> Result<(), Error> {
    Err(Error::NotBuilt)
}
