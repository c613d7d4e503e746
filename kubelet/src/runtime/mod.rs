//! `ekube runtime`: a CRI v1 runtime (RuntimeService + ImageService over gRPC on a unix
//! socket) that runs containers with runc (DESIGN.md §5).
//!
//! Pods get a pause-less sandbox ([`sandbox`]); containers get an overlayfs root file system
//! stacked from the image's unpacked layers ([`image`], blobs named by checked [`digest`]s,
//! each layer kept inside its own directory by [`unpack`]) and an OCI spec ([`spec`]) confined
//! as their security context asks ([`security`], [`seccomp`]); [`runc`] drives them, each under
//! a [`shim`] that lets it outlive the runtime.
//! Sandbox and container records are kept on disk, so a restarted runtime takes over what
//! still runs (and the kubelet adopts it); only what has no usable record is removed.

pub mod addon_image;
pub mod digest;
pub mod image;
mod inroot;
pub mod log;
pub mod reference;
pub mod registries;
pub mod runc;
pub mod sandbox;
pub mod seccomp;
pub mod security;
mod service;
pub mod shim;
pub mod spec;
mod store;
pub mod streaming;
pub mod unpack;

use std::path::{Path, PathBuf};

pub use service::{NETNS_INFO_KEY, Runtime};

/// Flags of `ekube runtime`.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// The CRI socket to serve.
    #[arg(long, default_value = "/run/ekube/runtime.sock")]
    pub listen: PathBuf,
    /// Where images, sandboxes and container bundles live.
    #[arg(long = "root", default_value = "/var/lib/ekube/runtime")]
    pub root: PathBuf,
    /// runc's state directory (`runc --root`).
    #[arg(long, default_value = "/run/ekube/runc")]
    pub runc_root: PathBuf,
    /// The runc binary.
    #[arg(long, default_value = "runc")]
    pub runc: PathBuf,
    /// Registries (`host:port`) reached over plain HTTP instead of HTTPS.
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// Directory of OCI image layout archives (`*.tar`) imported at start-up.
    #[arg(long)]
    pub images_dir: Option<PathBuf>,
    /// Where the streaming server of exec, attach and port-forward listens (port 0: any free
    /// port); the kubelet proxies clients to the URLs it hands out.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub streaming_address: std::net::SocketAddr,
    /// Registry mirrors, rewrites, credentials and TLS (k3s `registries.yaml` format), read at
    /// start-up; a missing file means pulling from each registry directly.
    #[arg(long, default_value = registries::DEFAULT_PATH)]
    pub registries_config: PathBuf,
}

impl Config {
    /// A runtime whose state lives under `dir` (socket, images, bundles, runc state).
    pub fn under(dir: &Path) -> Self {
        Self {
            listen: dir.join("runtime.sock"),
            root: dir.join("runtime"),
            runc_root: dir.join("runc"),
            runc: PathBuf::from("runc"),
            insecure_registries: Vec::new(),
            images_dir: None,
            streaming_address: ([127, 0, 0, 1], 0).into(),
            registries_config: PathBuf::from(registries::DEFAULT_PATH),
        }
    }
}

/// Errors of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image {image}: {reason}")]
    Image { image: String, reason: String },
    /// containerd's wording, so events read as upstream's.
    #[error("failed to pull and unpack image \"{image}\": {reason}")]
    Pull { image: String, reason: String },
    #[error(transparent)]
    Registries(#[from] registries::ConfigError),
    #[error("sandbox: {0}")]
    Sandbox(String),
    #[error("runc {action}: {reason}")]
    Runc { action: String, reason: String },
    #[error("invalid OCI spec: {0}")]
    Spec(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The request is valid but the state forbids it now (an image in use).
    #[error("{0}")]
    InUse(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("serving the CRI socket: {0}")]
    Serve(String),
}

/// Result with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }

    pub(crate) fn spec(e: impl std::fmt::Display) -> Error {
        Error::Spec(e.to_string())
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match &e {
            Error::NotFound(_) => tonic::Status::not_found(e.to_string()),
            Error::InvalidArgument(_) => tonic::Status::invalid_argument(e.to_string()),
            Error::Timeout(_) => tonic::Status::deadline_exceeded(e.to_string()),
            Error::InUse(_) => tonic::Status::failed_precondition(e.to_string()),
            _ => tonic::Status::unknown(e.to_string()),
        }
    }
}

/// Installs the process-wide TLS crypto provider (ring) registry clients need.
pub(crate) fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Serves the CRI on `config.listen` until `shutdown`.
pub async fn run(config: Config, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    install_crypto();
    let runtime = Runtime::open(&config).await?;
    serve(runtime, &config.listen, shutdown).await
}

/// Serves an opened runtime on a unix socket until `shutdown`.
pub async fn serve(
    runtime: Runtime,
    listen: &Path,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    use crate::cri::{
        image_service_server::ImageServiceServer, runtime_service_server::RuntimeServiceServer,
    };
    if let Some(parent) = listen.parent() {
        std::fs::create_dir_all(parent).map_err(Error::io("creating", parent))?;
    }
    let _ = std::fs::remove_file(listen);
    let listener = tokio::net::UnixListener::bind(listen).map_err(Error::io("binding", listen))?;
    tracing::info!(socket = %listen.display(), "CRI runtime serving");
    let runtime = std::sync::Arc::new(runtime);
    let result = tonic::transport::Server::builder()
        .add_service(RuntimeServiceServer::from_arc(runtime.clone()))
        .add_service(ImageServiceServer::from_arc(runtime.clone()))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::UnixListenerStream::new(listener),
            shutdown,
        )
        .await
        .map_err(|e| Error::Serve(e.to_string()));
    let _ = std::fs::remove_file(listen);
    result
}

/// A CRI client connected to the runtime at `socket` (a path, or `unix://<path>`); every call
/// is counted and timed in the kubelet's runtime-operation metrics.
pub async fn connect(socket: &str) -> Result<(RuntimeClient, ImageClient)> {
    let path = PathBuf::from(socket.strip_prefix("unix://").unwrap_or(socket));
    let channel = unix_channel(path)
        .await
        .map_err(|e| Error::Serve(format!("connecting to {socket}: {e}")))?;
    let channel = Timed(channel);
    Ok((
        RuntimeClient::new(channel.clone()),
        ImageClient::new(channel),
    ))
}

/// A gRPC channel that records each call's method and time
/// ([`crate::metrics::runtime_operation`]); the time runs until the answer's headers, which a
/// unary CRI call sends once the runtime has done the work.
#[derive(Clone, Debug)]
pub struct Timed(tonic::transport::Channel);

impl tower::Service<http::Request<tonic::body::Body>> for Timed {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = std::result::Result<Self::Response, Self::Error>>
                + Send,
        >,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let started = std::time::Instant::now();
        let call = self.0.call(request);
        Box::pin(async move {
            let answer = call.await;
            crate::metrics::runtime_operation(&path, started.elapsed());
            answer
        })
    }
}

/// A gRPC channel to a unix socket (the runtime's, or a device plugin's).
pub async fn unix_channel(
    path: PathBuf,
) -> std::result::Result<tonic::transport::Channel, tonic::transport::Error> {
    // tonic wants a URI; the connector dials the socket and never reads it.
    tonic::transport::Endpoint::from_static("http://[::1]:50051")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                tokio::net::UnixStream::connect(path)
                    .await
                    .map(hyper_util::rt::TokioIo::new)
            }
        }))
        .await
}

/// The generated CRI runtime client over a timed unix socket channel.
pub type RuntimeClient = crate::cri::runtime_service_client::RuntimeServiceClient<Timed>;
/// The generated CRI image client over a timed unix socket channel.
pub type ImageClient = crate::cri::image_service_client::ImageServiceClient<Timed>;
