//! `ekube kubelet` and `ekube runtime`: the node agent and the CRI runtime it drives
//! (DESIGN.md §5). The crate is the kubelet; [`runtime`] is the CRI runtime it ships and
//! [`server`] its API on :10250.
//!
//! The kubelet: node registration and heartbeat ([`node`]), the pod watch and static pods
//! ([`pods`], [`static_pods`]) feeding one worker per pod ([`worker`]), probes and lifecycle
//! hooks ([`probe`]), the CNI plugin exec'd against each sandbox ([`cni`]), and the per-pod
//! inputs it resolves (env: [`inputs`]; volumes and mounts: [`volumes`]). A restarted kubelet
//! adopts the sandboxes and containers its runtime still runs.
//!
//! It talks to its runtime through CRI over a unix socket: the one given by
//! `--container-runtime-endpoint`, or one it starts in-process under `--root-dir` when that
//! flag is absent (as `ekube agent` does).

pub mod bootstrap;
mod cgroups;
mod cni;
pub mod cri;
pub mod devices;
mod dns;
mod hosts;
mod image_gc;
mod inputs;
mod logs;
pub mod metrics;
mod node;
mod ownership;
mod pods;
mod probe;
mod pull_secrets;
pub mod reset;
mod respond;
pub mod rotation;
pub mod runtime;
mod sandbox;
mod security;
pub mod server;
mod service_env;
mod static_pods;
mod status;
mod volumes;
mod worker;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Flags of `ekube kubelet` (upstream names where the concept is the same).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Kubeconfig of the apiserver to talk to.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// Node name instead of the host name.
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// The node's InternalIP.
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// Kubelet state: pod volumes, and the in-process runtime's state.
    #[arg(long, default_value = "/var/lib/ekube/kubelet")]
    pub root_dir: PathBuf,
    /// Directory of static pod manifests, read every few seconds.
    #[arg(long)]
    pub pod_manifest_path: Option<PathBuf>,
    /// CRI socket (`unix:///path` or a path); absent: run the runtime in-process.
    #[arg(long)]
    pub container_runtime_endpoint: Option<String>,
    /// Where CNI plugin binaries are.
    #[arg(long, default_value = "/opt/cni/bin")]
    pub cni_bin_dir: PathBuf,
    /// Where the CNI network configuration (`*.conflist`) is.
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// Cgroup (in every hierarchy) under which pods get `pod<uid>/<container>`.
    #[arg(long, default_value = "/ekube")]
    pub cgroup_root: String,
    /// Registries (`host:port`) pulled over plain HTTP (in-process runtime).
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// Registry mirrors, rewrites, credentials and TLS, k3s `registries.yaml` format, read at
    /// start-up (in-process runtime).
    #[arg(long, default_value = runtime::registries::DEFAULT_PATH)]
    pub registries_config: PathBuf,
    /// OCI image archives imported at start (in-process runtime).
    #[arg(long)]
    pub images_dir: Option<PathBuf>,
    /// The runc binary (in-process runtime).
    #[arg(long, default_value = "runc")]
    pub runc: PathBuf,
    /// Where container logs go (`<ns>_<pod>_<uid>/<container>/<restart>.log`).
    #[arg(long, default_value = "/var/log/pods")]
    pub pod_logs_dir: PathBuf,
    /// Cluster DNS server written into pods' resolv.conf (dnsPolicy ClusterFirst).
    #[arg(long, default_value = "10.96.0.10")]
    pub cluster_dns: Vec<IpAddr>,
    /// Cluster domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// The node's resolver configuration: what pods with `dnsPolicy: Default` get, and whose
    /// search path `ClusterFirst` pods get after the cluster's; empty for none.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// Size at which a container's log is rotated (quantity, e.g. `10Mi`).
    #[arg(long, default_value = "10Mi", value_parser = logs::parse_size)]
    pub container_log_max_size: u64,
    /// Most log files kept per container, the current one included (at least 2).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(2..))]
    pub container_log_max_files: u64,
    /// How often container logs are checked for rotation and the log directories of gone pods
    /// removed (seconds).
    #[arg(long, default_value = "10", value_parser = ekube_api::flags::parse_interval)]
    pub container_log_monitor_interval: std::time::Duration,
    /// Most pods this node takes.
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// Image filesystem usage (percent) at which unused images are garbage collected; 100
    /// turns image garbage collection off.
    #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub image_gc_high_threshold: u8,
    /// Image filesystem usage (percent) image garbage collection frees down to.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub image_gc_low_threshold: u8,
    /// Least time an unused image is kept after the kubelet first saw it.
    #[arg(long, default_value = "2m", value_parser = ekube_api::flags::parse_duration)]
    pub minimum_image_ttl_duration: std::time::Duration,
    /// How often image filesystem usage is checked (fixed at 5 minutes upstream).
    #[arg(long, default_value = "5m", value_parser = ekube_api::flags::parse_duration)]
    pub image_gc_period: std::time::Duration,
    /// Run containers that name no seccomp profile under `RuntimeDefault` instead of
    /// `Unconfined` (`--seccomp-default=false` to turn off).
    ///
    /// On by default, where upstream's kubelet defaults it off: a hostile image should not
    /// reach the kernel's rarely used system calls (keyrings, `unshare`, `mount`, BPF) just
    /// because its pod forgot to ask for confinement. The profile allows what ordinary
    /// workloads call, as containerd's default does.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub seccomp_default: bool,
    /// Most processes (tasks) the containers of one pod may have together; -1 for no limit.
    ///
    /// 4096 where upstream defaults to no limit: a fork bomb in one pod then stops at a few
    /// thousand tasks instead of filling the node's pid space (32768 by default), and no
    /// ordinary pod comes near it.
    #[arg(long, default_value_t = 4096, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(-1..))]
    pub pod_max_pids: i64,
    /// The kubelet API (`--address`, `--port`, `--tls-cert-file`, `--tls-private-key-file`).
    #[command(flatten)]
    pub server: crate::server::Config,
}

/// Errors of the kubelet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubeconfig: {0}")]
    Client(#[from] ekube_api::client::Error),
    #[error("apiserver: {0}")]
    Api(#[from] kube::Error),
    #[error("runtime: {0}")]
    Runtime(#[from] runtime::Error),
    #[error("CRI call failed: {0}")]
    Cri(#[from] tonic::Status),
    #[error("CNI {command}: {reason}")]
    Cni { command: String, reason: String },
    #[error("{0}")]
    Config(String),
}

/// Shared by every task of the kubelet.
pub(crate) struct Ctx {
    pub client: kube::Client,
    pub node: String,
    pub node_ip: Option<IpAddr>,
    pub config: Config,
    pub rc: runtime::RuntimeClient,
    pub ic: runtime::ImageClient,
    /// The pods this kubelet runs, shared with the kubelet API's `/pods`.
    pub pods: crate::server::PodSet,
    /// What the node offers pods (read once: the host's CPUs and memory do not change).
    pub allocatable:
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    /// ServiceAccount tokens requested for projected volumes.
    pub tokens: volumes::tokens::TokenManager,
    /// Device plugins and the devices pods were given.
    pub devices: devices::Manager,
}

/// Runs the kubelet until `shutdown`.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    runtime::install_crypto();
    let image_gc = image_gc::Policy {
        high: config.image_gc_high_threshold,
        low: config.image_gc_low_threshold,
        min_age: config.minimum_image_ttl_duration,
    };
    image_gc.check().map_err(Error::Config)?;
    if config.image_gc_period.is_zero() {
        return Err(Error::Config("--image-gc-period must be positive".into()));
    }
    let node = ekube_api::flags::node_name(config.hostname_override.as_deref()).map_err(|e| {
        Error::Config(format!(
            "reading the host name ({e}); set --hostname-override"
        ))
    })?;
    let client = ekube_api::client::from_kubeconfig(&config.kubeconfig).await?;
    let kubeconfig_ca = kubeconfig_ca(&config.kubeconfig).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let (endpoint, runtime_task) = start_runtime(&config, stopped(stop_rx.clone())).await?;
    let (rc, ic) = runtime::connect(&endpoint).await?;
    let pods = crate::server::PodSet::default();
    let api = crate::server::Node {
        name: node.clone(),
        ip: config.node_ip,
        pod_logs_dir: config.pod_logs_dir.clone(),
        cert_dir: config.root_dir.join("pki"),
        runtime: rc.clone(),
        pods: pods.clone(),
        cgroup_root: config.cgroup_root.clone(),
        cpu_samples: Default::default(),
        kubeconfig_ca,
        client: client.clone(),
    };
    let api_task = tokio::spawn(crate::server::serve(
        config.server.clone(),
        api,
        stopped(stop_rx.clone()),
    ));
    let devices = devices::Manager::open(config.root_dir.join("device-plugins"));
    let registration = tokio::spawn(devices::serve(devices.clone(), stopped(stop_rx.clone())));
    let ctx = Arc::new(Ctx {
        client,
        node: node.clone(),
        node_ip: config.node_ip,
        allocatable: node::allocatable(&config),
        config,
        rc,
        ic,
        pods,
        tokens: Default::default(),
        devices,
    });
    tracing::info!(%node, runtime = %endpoint, "kubelet starting");
    node::register(&ctx).await?;
    let heartbeat = tokio::spawn(node::heartbeat(ctx.clone(), stopped(stop_rx.clone())));
    let pods = tokio::spawn(pods::run(ctx.clone(), stopped(stop_rx.clone())));
    let log_policy = logs::Policy {
        max_size: ctx.config.container_log_max_size,
        max_files: ctx.config.container_log_max_files as usize,
    };
    let log_rotation = tokio::spawn(logs::run(
        ctx.clone(),
        log_policy,
        ctx.config.container_log_monitor_interval,
        stopped(stop_rx.clone()),
    ));
    let image_gc = tokio::spawn(image_gc::run(
        ctx.clone(),
        image_gc,
        ctx.config.image_gc_period,
        stopped(stop_rx.clone()),
    ));
    shutdown.await;
    tracing::info!("kubelet stopping");
    let _ = stop_tx.send(true);
    let _ = pods.await;
    if let Ok(Err(e)) = api_task.await {
        tracing::error!(error = %e, "kubelet API failed");
    }
    if let Ok(Err(e)) = registration.await {
        tracing::error!(error = %e, "device plugin registration failed");
    }
    heartbeat.abort();
    log_rotation.abort();
    image_gc.abort();
    if let Some(t) = runtime_task {
        let _ = t.await;
    }
    Ok(())
}

/// The CRI endpoint the kubelet talks to: `--container-runtime-endpoint`, or the in-process
/// runtime (under `--root-dir`), started here and serving until `stop`.
async fn start_runtime(
    config: &Config,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(String, Option<tokio::task::JoinHandle<runtime::Result<()>>>), Error> {
    if let Some(endpoint) = &config.container_runtime_endpoint {
        return Ok((endpoint.clone(), None));
    }
    let mut rcfg = runtime::Config::under(&config.root_dir);
    rcfg.insecure_registries = config.insecure_registries.clone();
    rcfg.images_dir = config.images_dir.clone();
    rcfg.registries_config = config.registries_config.clone();
    rcfg.runc = config.runc.clone();
    let rt = runtime::Runtime::open(&rcfg).await?;
    let listen = rcfg.listen.clone();
    let _ = std::fs::remove_file(&listen);
    let task = tokio::spawn(async move { runtime::serve(rt, &listen, stop).await });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !rcfg.listen.exists() {
        if std::time::Instant::now() > deadline {
            return Err(Error::Config(format!(
                "in-process runtime did not bind {}",
                rcfg.listen.display()
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok((rcfg.listen.display().to_string(), Some(task)))
}

/// The CA certificates of a kubeconfig's cluster (the kubelet API's default client CA).
async fn kubeconfig_ca(path: &std::path::Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    let loaded = match kube::config::Kubeconfig::read_from(path) {
        Ok(k) => kube::Config::from_custom_kubeconfig(k, &Default::default())
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match loaded {
        Ok(c) => c
            .root_cert
            .unwrap_or_default()
            .into_iter()
            .map(rustls::pki_types::CertificateDer::from)
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "no CA in the kubeconfig for the kubelet API");
            Vec::new()
        }
    }
}
