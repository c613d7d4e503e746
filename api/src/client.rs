//! The one way ekube components build a kube-rs client against the apiserver.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading kubeconfig {path}: {source}")]
    Read {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("kubeconfig {path} is unusable: {source}")]
    Config {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("building a client from {path}: {source}")]
    Client { path: String, source: kube::Error },
}

/// Builds a client from a kubeconfig file, using its current context.
pub async fn from_kubeconfig(path: &Path) -> Result<kube::Client, Error> {
    let shown = path.display().to_string();
    let kubeconfig = Kubeconfig::read_from(path).map_err(|source| Error::Read {
        path: shown.clone(),
        source,
    })?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| Error::Config {
            path: shown.clone(),
            source,
        })?;
    kube::Client::try_from(config).map_err(|source| Error::Client {
        path: shown,
        source,
    })
}
