//! The one way ekube components build a kube-rs client against the apiserver.
//!
//! A kubeconfig whose user names its client certificate by file (the kubelet's
//! `kubelet-client-current.pem`, rotated before it expires) gets a client that follows the file:
//! see [`crate::client_cert`]. Every other kubeconfig gets kube-rs's own client.

use std::path::{Path, PathBuf};

use kube::client::ConfigExt;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::client_cert::FileIdentity;

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
    #[error("kubeconfig {path}: client certificate: {source}")]
    Identity {
        path: String,
        source: crate::client_cert::Error,
    },
}

/// Builds a client from a kubeconfig file, using its current context.
pub async fn from_kubeconfig(path: &Path) -> Result<kube::Client, Error> {
    let shown = path.display().to_string();
    let kubeconfig = Kubeconfig::read_from(path).map_err(|source| Error::Read {
        path: shown.clone(),
        source,
    })?;
    let files = certificate_files(&kubeconfig);
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| Error::Config {
            path: shown.clone(),
            source,
        })?;
    let client_err = |source| Error::Client {
        path: shown.clone(),
        source,
    };
    let Some((cert, key)) = files else {
        return kube::Client::try_from(config).map_err(client_err);
    };
    let identity = FileIdentity::load(&cert, &key).map_err(|source| Error::Identity {
        path: shown.clone(),
        source,
    })?;
    following(config, &identity).map_err(client_err)
}

/// The files of the current user's client certificate and key, when it names them by path
/// (not embedded data, not a credential plugin).
pub fn certificate_files(kubeconfig: &Kubeconfig) -> Option<(PathBuf, PathBuf)> {
    let context = kubeconfig.current_context.as_ref()?;
    let user = kubeconfig
        .contexts
        .iter()
        .find(|c| &c.name == context)?
        .context
        .as_ref()?
        .user
        .as_ref()?;
    let auth = kubeconfig
        .auth_infos
        .iter()
        .find(|a| &a.name == user)?
        .auth_info
        .as_ref()?;
    if auth.exec.is_some() || auth.client_certificate_data.is_some() {
        return None;
    }
    Some((
        PathBuf::from(auth.client_certificate.as_ref()?),
        PathBuf::from(auth.client_key.as_ref()?),
    ))
}

/// kube-rs's client stack (base URI, auth, headers, retries of 429/503/504, timeouts) over a
/// connector that presents `identity` as it is at each handshake and closes its connections
/// when it changes.
fn following(
    config: kube::Config,
    identity: &std::sync::Arc<FileIdentity>,
) -> kube::Result<kube::Client> {
    use hyper_util::client::legacy::connect::HttpConnector;
    use tower::ServiceBuilder;

    let mut tls = config.rustls_client_config()?;
    tls.client_auth_cert_resolver = identity.clone();
    // A resumed TLS session carries the client certificate of the session it resumes, without
    // the resolver being asked: after a rotation the new connections would still be the old
    // certificate (until it expires and the apiserver refuses them). Each handshake is full.
    tls.resumption = rustls::client::Resumption::disabled();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let mut https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
            kube::Error::RustlsTls(kube::client::RustlsTlsError::InvalidServerName(e))
        })?;
        https = https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let https = https.enable_http1().wrap_connector(http);
    let mut connector = hyper_timeout::TimeoutConnector::new(identity.closing(https));
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    let http_client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.default_retry.then(|| {
            tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry())
        }))
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(http_client);
    identity.watch_files();
    Ok(kube::Client::new(service, config.default_namespace))
}
