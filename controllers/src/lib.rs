//! `ekube controller-manager`: the controllers that keep the cluster's state converging.
//!
//! Each controller is a kube-runtime client of the apiserver: it watches the objects it owns,
//! reconciles one object at a time (`reconcile(obj, ctx) -> Action`) and writes only through the
//! API. Reconcilers read what they act on with a fresh LIST (consistent with storage), so a
//! controller never acts twice on a lagging cache and needs no "expectations" bookkeeping; the
//! watches only decide *when* to reconcile.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

pub mod bootstrapsigner;
pub mod credentials;
pub mod cronjob;
pub mod csrapproving;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub use ekube_api::events;
pub mod gc;
pub mod history;
pub mod informer;
pub mod ipam;
pub mod job;
pub mod localpath;
pub mod metrics;
pub mod namespace;
pub mod nodelifecycle;
pub mod podautoscaler;
pub mod replicaset;
pub mod replicationcontroller;
pub mod resourcequota;
pub mod rootca;
mod runner;
pub mod serviceaccount;
pub mod statefulset;
pub mod tokencleaner;
mod util;
pub mod volume;

/// Every controller this binary runs, by its upstream name (`--controllers`).
pub const CONTROLLERS: &[&str] = &[
    "nodeipam",
    "endpointslice",
    "endpoints",
    "replicaset",
    "replicationcontroller",
    "deployment",
    "daemonset",
    "statefulset",
    "job",
    "cronjob",
    "disruption",
    "garbagecollector",
    "namespace",
    "serviceaccount",
    "root-ca-cert-publisher",
    "nodelifecycle",
    "resourcequota",
    "horizontalpodautoscaling",
    "csrapproving",
    "persistentvolume-binder",
    "pvc-protection",
    "pv-protection",
    "bootstrapsigner",
    "tokencleaner",
];

/// Controllers `*` leaves out, as upstream's `ControllersDisabledByDefault`: only clusters
/// joined by bootstrap token need them, and kubeadm (like `ekube server`, see
/// [`SERVER_CONTROLLERS`]) names them.
pub const DISABLED_BY_DEFAULT: &[&str] = &["bootstrapsigner", "tokencleaner"];

/// The `--controllers` value `ekube server` runs with, kubeadm's.
pub const SERVER_CONTROLLERS: &str = "*,bootstrapsigner,tokencleaner";

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Kubeconfig of the apiserver to talk to.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// Controllers to run: `*` for all but bootstrapsigner and tokencleaner, a name to enable
    /// one, `-name` to disable one.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,
    /// Assign every Node a `spec.podCIDR` out of `--cluster-cidr`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub allocate_node_cidrs: bool,
    /// The pod network the node subnets are cut from.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
    /// Prefix length of each node's subnet.
    #[arg(long, default_value_t = 24)]
    pub node_cidr_mask_size: u8,
    /// How often node health is checked.
    #[arg(long, default_value = "5s", value_parser = ekube_api::flags::parse_duration)]
    pub node_monitor_period: Duration,
    /// How long a node may go without renewing its Lease before it is marked NotReady.
    #[arg(long, default_value = "40s", value_parser = ekube_api::flags::parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// How long pods stay bound to an unreachable node before they are evicted.
    #[arg(long, default_value = "5m", value_parser = ekube_api::flags::parse_duration)]
    pub pod_eviction_timeout: Duration,
    /// The cluster CA (PEM) published as `kube-root-ca.crt` in every namespace. Default: the
    /// CA of `--kubeconfig`.
    #[arg(long)]
    pub root_ca_file: Option<PathBuf>,
    /// How often every ResourceQuota's usage is recomputed from scratch.
    #[arg(long, default_value = "5m", value_parser = ekube_api::flags::parse_duration)]
    pub resource_quota_sync_period: Duration,
    /// How often every HorizontalPodAutoscaler is synced with its metrics.
    #[arg(long, default_value = "15s", value_parser = ekube_api::flags::parse_duration)]
    pub horizontal_pod_autoscaler_sync_period: Duration,
    /// How far back the autoscaler looks for a higher recommendation before scaling down (the
    /// scale-down stabilization window of autoscalers without `behavior.scaleDown`'s own).
    #[arg(long, default_value = "5m0s", value_parser = ekube_api::flags::parse_duration)]
    pub horizontal_pod_autoscaler_downscale_stabilization: Duration,
    /// Run each controller as its own ServiceAccount `kube-system/<controller>` (see
    /// [`credentials`]) instead of with `--kubeconfig`'s user.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub use_service_account_credentials: bool,
    /// Port of the HTTPS server for `/metrics` and the health endpoints; 0 disables it.
    #[arg(long, default_value_t = 10257)]
    pub secure_port: u16,
    /// Address the secure port listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: std::net::IpAddr,
    /// One controller-manager of several acts: the holder of the Lease
    /// `kube-system/kube-controller-manager`.
    #[command(flatten)]
    pub leader: ekube_api::leader::Flags,
}

impl Config {
    /// The configuration `ekube server` runs this component with: every controller (the
    /// bootstrap-token ones too, as kubeadm runs them), upstream defaults.
    pub fn for_server(kubeconfig: PathBuf) -> Self {
        Self {
            kubeconfig,
            controllers: SERVER_CONTROLLERS.split(',').map(String::from).collect(),
            allocate_node_cidrs: true,
            cluster_cidr: "10.244.0.0/16".into(),
            node_cidr_mask_size: 24,
            node_monitor_period: Duration::from_secs(5),
            node_monitor_grace_period: Duration::from_secs(40),
            pod_eviction_timeout: Duration::from_secs(300),
            root_ca_file: None,
            resource_quota_sync_period: Duration::from_secs(300),
            horizontal_pod_autoscaler_sync_period: Duration::from_secs(15),
            horizontal_pod_autoscaler_downscale_stabilization: Duration::from_secs(300),
            use_service_account_credentials: false,
            secure_port: 10257,
            bind_address: std::net::Ipv4Addr::UNSPECIFIED.into(),
            leader: ekube_api::leader::Flags::default(),
        }
    }

    /// Whether `--controllers` enables `name`.
    pub fn enabled(&self, name: &str) -> bool {
        let mut on = false;
        for c in &self.controllers {
            match c.as_str() {
                "*" => on = !DISABLED_BY_DEFAULT.contains(&name),
                n if n == name => return true,
                n if n.strip_prefix('-') == Some(name) => return false,
                _ => {}
            }
        }
        on
    }

    fn validate(&self) -> Result<ipam::ClusterCidr, Error> {
        for c in &self.controllers {
            let name = c.trim_start_matches('-');
            if name != "*" && !CONTROLLERS.contains(&name) {
                return Err(Error::Config(format!(
                    "--controllers: unknown controller {name:?}, known: {}",
                    CONTROLLERS.join(", ")
                )));
            }
        }
        self.leader.validate().map_err(Error::Config)?;
        ipam::ClusterCidr::new(&self.cluster_cidr, self.node_cidr_mask_size).map_err(Error::Config)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Client(#[from] ekube_api::client::Error),
    #[error("{controller} stopped: {message}")]
    Stopped {
        controller: &'static str,
        message: String,
    },
    #[error(transparent)]
    SecurePort(#[from] ekube_api::secure_port::Error),
}

/// The error a reconcile returns: the API call that failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{action}: {source}")]
    Api { action: String, source: kube::Error },
    #[error("{0}")]
    Other(String),
}

pub(crate) type Result<T, E = ReconcileError> = std::result::Result<T, E>;

/// Extension to give kube errors the action that failed.
pub(crate) trait Context<T> {
    fn ctx(self, action: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for Result<T, kube::Error> {
    fn ctx(self, action: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| ReconcileError::Api {
            action: action(),
            source,
        })
    }
}

/// Runs the enabled controllers until `shutdown` completes, while this controller-manager holds
/// the `kube-controller-manager` Lease (always, with `--leader-elect=false`). The secure port
/// serves throughout, as upstream's does while it waits for the Lease.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let cidr = config.validate()?;
    let secure_port =
        ekube_api::secure_port::SecurePort::bind(config.bind_address, config.secure_port).await?;
    let credentials = credentials::Credentials::new(&config).await?;
    let serving = async {
        match secure_port {
            Some(port) => port.serve(credentials.own(), metrics::render).await,
            None => std::future::pending().await,
        }
    };
    let elector = config
        .leader
        .elector(credentials.own(), "kube-controller-manager");
    let controllers = ekube_api::leader::run_elected(elector, shutdown, || {
        run_controllers(&config, &credentials, &cidr)
    });
    tokio::select! {
        done = controllers => done.unwrap_or(Ok(())),
        () = serving => Err(Error::Stopped {
            controller: "secure port",
            message: "the server ended".into(),
        }),
    }
}

/// Starts every enabled controller and waits; returns when one of them stops (dropping it
/// stops them all).
async fn run_controllers(
    config: &Config,
    credentials: &credentials::Credentials,
    cidr: &ipam::ClusterCidr,
) -> Result<(), Error> {
    let mut tasks = tokio::task::JoinSet::new();
    let on = |name| config.enabled(name);
    // One pod watch for every controller that follows pods, run once they have subscribed.
    let mut pods = informer::SharedWatch::new(kube::Api::<Pod>::all(credentials.own()));
    if on("nodeipam") && config.allocate_node_cidrs {
        let (client, recorder) = credentials.for_controller("nodeipam").await?;
        tasks.spawn(named("nodeipam", ipam::run(client, recorder, *cidr)));
    }
    // Two controllers upstream, with a role each: one writes EndpointSlices, one Endpoints.
    if on("endpointslice") {
        let (client, _) = credentials.for_controller("endpointslice").await?;
        tasks.spawn(named(
            "endpointslice",
            endpoints::run(client, pods.subscribe(), true, false),
        ));
    }
    if on("endpoints") {
        let (client, _) = credentials.for_controller("endpoints").await?;
        tasks.spawn(named(
            "endpoints",
            endpoints::run(client, pods.subscribe(), false, true),
        ));
    }
    if on("replicaset") {
        let (client, recorder) = credentials.for_controller("replicaset").await?;
        tasks.spawn(named(
            "replicaset",
            replicaset::run(client.clone(), recorder.clone(), pods.subscribe()),
        ));
    }
    if on("replicationcontroller") {
        let (client, recorder) = credentials.for_controller("replicationcontroller").await?;
        tasks.spawn(named(
            "replicationcontroller",
            replicationcontroller::run(client, recorder, pods.subscribe()),
        ));
    }
    if on("deployment") {
        let (client, recorder) = credentials.for_controller("deployment").await?;
        tasks.spawn(named(
            "deployment",
            deployment::run(client.clone(), recorder.clone()),
        ));
    }
    if on("daemonset") {
        let (client, recorder) = credentials.for_controller("daemonset").await?;
        tasks.spawn(named(
            "daemonset",
            daemonset::run(client.clone(), recorder.clone(), pods.subscribe()),
        ));
    }
    if on("statefulset") {
        let (client, recorder) = credentials.for_controller("statefulset").await?;
        tasks.spawn(named(
            "statefulset",
            statefulset::run(client.clone(), recorder.clone(), pods.subscribe()),
        ));
    }
    if on("job") {
        let (client, recorder) = credentials.for_controller("job").await?;
        let (ttl, _) = credentials.for_controller("ttl-after-finished").await?;
        tasks.spawn(named(
            "job",
            job::run(client.clone(), recorder.clone(), ttl, pods.subscribe()),
        ));
    }
    if on("cronjob") {
        let (client, recorder) = credentials.for_controller("cronjob").await?;
        tasks.spawn(named(
            "cronjob",
            cronjob::run(client.clone(), recorder.clone()),
        ));
    }
    if on("disruption") {
        let (client, recorder) = credentials.for_controller("disruption").await?;
        tasks.spawn(named(
            "disruption",
            disruption::run(client, recorder, pods.subscribe()),
        ));
    }
    if on("garbagecollector") {
        let (client, _) = credentials.for_controller("garbagecollector").await?;
        tasks.spawn(named("garbagecollector", gc::run(client.clone())));
    }
    if on("namespace") {
        let (client, _) = credentials.for_controller("namespace").await?;
        tasks.spawn(named("namespace", namespace::run(client.clone())));
    }
    if on("serviceaccount") {
        let (client, _) = credentials.for_controller("serviceaccount").await?;
        tasks.spawn(named("serviceaccount", serviceaccount::run(client.clone())));
    }
    if on("root-ca-cert-publisher") {
        let (client, _) = credentials.for_controller("root-ca-cert-publisher").await?;
        let ca = rootca::ca_bundle(config.root_ca_file.as_deref(), &config.kubeconfig)
            .map_err(Error::Config)?;
        tasks.spawn(named(
            "root-ca-cert-publisher",
            rootca::run(client.clone(), ca),
        ));
    }
    if on("csrapproving") {
        let (client, _) = credentials.for_controller("csrapproving").await?;
        tasks.spawn(named("csrapproving", csrapproving::run(client)));
    }
    if on("nodelifecycle") {
        let (client, recorder) = credentials.for_controller("nodelifecycle").await?;
        let lc = nodelifecycle::Settings {
            period: config.node_monitor_period,
            grace: config.node_monitor_grace_period,
            eviction: config.pod_eviction_timeout,
        };
        tasks.spawn(named(
            "nodelifecycle",
            nodelifecycle::run(client.clone(), recorder.clone(), lc),
        ));
    }
    if on("resourcequota") {
        let (client, _) = credentials.for_controller("resourcequota").await?;
        tasks.spawn(named(
            "resourcequota",
            resourcequota::run(client, config.resource_quota_sync_period),
        ));
    }
    if on("horizontalpodautoscaling") {
        let (client, _) = credentials
            .for_controller("horizontalpodautoscaling")
            .await?;
        // Upstream's events come from `horizontal-pod-autoscaler`, as `kubectl describe` shows.
        let recorder = events::Recorder::new(client.clone(), "horizontal-pod-autoscaler");
        let settings = podautoscaler::Settings {
            sync_period: config.horizontal_pod_autoscaler_sync_period,
            downscale_stabilization: config.horizontal_pod_autoscaler_downscale_stabilization,
        };
        tasks.spawn(named(
            "horizontalpodautoscaling",
            podautoscaler::run(client, recorder, settings),
        ));
    }
    if on("persistentvolume-binder") {
        let (client, _) = credentials
            .for_controller("persistentvolume-binder")
            .await?;
        // Upstream's events come from `persistentvolume-controller`.
        let recorder = events::Recorder::new(client.clone(), "persistentvolume-controller");
        tasks.spawn(named(
            "persistentvolume-binder",
            volume::binder::run(client, recorder),
        ));
    }
    if on("pvc-protection") {
        let (client, _) = credentials.for_controller("pvc-protection").await?;
        tasks.spawn(named(
            "pvc-protection",
            volume::protection::run_claims(client, pods.subscribe()),
        ));
    }
    if on("pv-protection") {
        let (client, _) = credentials.for_controller("pv-protection").await?;
        tasks.spawn(named(
            "pv-protection",
            volume::protection::run_volumes(client),
        ));
    }
    if on("bootstrapsigner") {
        let (client, _) = credentials.for_controller("bootstrapsigner").await?;
        tasks.spawn(named("bootstrapsigner", bootstrapsigner::run(client)));
    }
    if on("tokencleaner") {
        let (client, _) = credentials.for_controller("tokencleaner").await?;
        tasks.spawn(named("tokencleaner", tokencleaner::run(client)));
    }
    tracing::info!(controllers = tasks.len(), "controller-manager running");
    if pods.has_subscribers() {
        tasks.spawn(named("shared pod watch", pods.run()));
    }
    let Some(done) = tasks.join_next().await else {
        // No controller enabled: stand by until shut down.
        return std::future::pending().await;
    };
    tasks.abort_all();
    Err(match done {
        Ok((controller, Err(message))) => Error::Stopped {
            controller,
            message,
        },
        Ok((controller, Ok(()))) => Error::Stopped {
            controller,
            message: "watch ended".into(),
        },
        Err(e) => Error::Stopped {
            controller: "controller",
            message: e.to_string(),
        },
    })
}

async fn named(
    name: &'static str,
    fut: impl Future<Output = Result<(), String>>,
) -> (&'static str, Result<(), String>) {
    (name, fut.await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_selection() {
        let mut c = Config::for_server("k".into());
        assert!(c.enabled("nodeipam"));
        assert!(c.enabled("bootstrapsigner") && c.enabled("tokencleaner"));
        c.controllers = vec!["*".into()];
        assert!(!c.enabled("bootstrapsigner") && !c.enabled("tokencleaner"));
        c.controllers = vec!["*".into(), "tokencleaner".into()];
        assert!(c.enabled("tokencleaner") && !c.enabled("bootstrapsigner"));
        c.controllers = vec!["*".into(), "-nodeipam".into()];
        assert!(!c.enabled("nodeipam") && c.enabled("deployment"));
        c.controllers = vec!["nodelifecycle".into()];
        assert!(c.enabled("nodelifecycle") && !c.enabled("deployment"));
        c.controllers = vec!["bogus".into()];
        assert!(c.validate().is_err());
    }
}
