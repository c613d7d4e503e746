//! `ekube flannel`: the per-node VXLAN overlay agent (DESIGN.md §3, §6).
//!
//! Start-up: find the underlay (the link holding `--public-ip`), optionally register the Node
//! and give it a podCIDR, wait for `spec.podCIDR`, create `flannel.<vni>` holding the subnet's
//! `.0/32`, install the forward/masquerade rules, write `subnet.env` and publish the flannel
//! annotations. Then list-watch every Node into a reflector store and, on each event and on a
//! periodic resync, make the device hold exactly one route, neighbour and FDB entry per other
//! node that has the annotations ([`reconcile`]). Stopping leaves the device and its entries in
//! place, so pods keep talking while the agent restarts; the next start prunes what is stale.

pub mod iptables;
pub mod kernel;
pub mod node;
pub mod peers;
pub mod reconcile;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ipnetwork::Ipv4Network;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};

/// Flags of `ekube flannel`.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Kubeconfig of the apiserver to talk to.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// This node's name (default: the host name).
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// This node's underlay address, published to peers as the VXLAN endpoint (default: the
    /// first IPv4 address of --iface).
    #[arg(long)]
    pub public_ip: Option<Ipv4Addr>,
    /// Underlay interface (default: the one holding --public-ip, else the default route's).
    #[arg(long)]
    pub iface: Option<String>,
    /// Where to write FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_MTU and FLANNEL_IPMASQ.
    #[arg(long, default_value = ekube_cni::config::DEFAULT_SUBNET_FILE)]
    pub subnet_file: PathBuf,
    /// The cluster (pod) CIDR every node subnet comes from.
    #[arg(long, default_value = ekube_cni::config::DEFAULT_CLUSTER_CIDR)]
    pub cluster_cidr: Ipv4Network,
    /// VXLAN network identifier; the device is `flannel.<vni>`.
    #[arg(long, default_value_t = 1)]
    pub vni: u32,
    /// VXLAN UDP port.
    #[arg(long, default_value_t = 8472)]
    pub port: u16,
    /// Create this node's Node object when it does not exist (until a kubelet registers it).
    #[arg(long)]
    pub register_node: bool,
    /// Set this podCIDR on the node when it has none (until node IPAM assigns one).
    #[arg(long)]
    pub pod_cidr: Option<Ipv4Network>,
    /// Masquerade pod traffic leaving the cluster CIDR (`--ip-masq=false` to leave it to the CNI).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub ip_masq: bool,
    /// Seconds between full reconciles, on top of the ones node events trigger.
    #[arg(long, default_value = "30", value_parser = ekube_api::flags::parse_interval)]
    pub resync_interval: Duration,
}

/// Errors of the overlay agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Client(#[from] ekube_api::client::Error),
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("netlink: {what}: {reason}")]
    Netlink { what: String, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("iptables {rule}: {reason}")]
    Iptables { rule: String, reason: String },
    #[error("the node watch ended")]
    WatchEnded,
}

/// A failed rule keeps its command (with the table) and iptables' reason.
impl From<ekube_cni::iptables::Error> for Error {
    fn from(e: ekube_cni::iptables::Error) -> Self {
        Error::Iptables {
            rule: e.command,
            reason: e.reason,
        }
    }
}

/// Result with the agent's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Writes `subnet.env` through a rename, so the CNI plugin never reads half of it.
fn write_subnet_env(path: &Path, text: &str) -> Result<()> {
    let io = |what: String| move |source| Error::Io { what, source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    let tmp = path.with_extension("env.tmp");
    std::fs::write(&tmp, text).map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("renaming to {}", path.display())))
}

/// Runs the agent until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    tokio::select! {
        r = serve(config) => r,
        () = shutdown => {
            tracing::info!("shutting down; the overlay device and its entries stay");
            Ok(())
        }
    }
}

async fn serve(config: Config) -> Result<()> {
    if config.vni == 0 || config.vni >= 1 << 24 {
        return Err(Error::Config(format!(
            "--vni {} is not in 1..16777215",
            config.vni
        )));
    }
    let name =
        ekube_api::flags::node_name(config.hostname_override.as_deref()).map_err(|source| {
            Error::Io {
                what: "reading the host name (set --hostname-override)".into(),
                source,
            }
        })?;
    let client = ekube_api::client::from_kubeconfig(&config.kubeconfig).await?;
    let api: Api<Node> = Api::all(client);
    let handle = kernel::connect()?;
    let (underlay, public_ip) =
        kernel::underlay(&handle, config.iface.as_deref(), config.public_ip).await?;
    tracing::info!(node = %name, iface = %underlay.name, %public_ip, mtu = underlay.mtu, "underlay");

    if config.register_node {
        node::register(&api, &name, public_ip).await?;
    }
    if let Some(cidr) = config.pod_cidr {
        node::ensure_pod_cidr(&api, &name, cidr).await?;
    }
    let subnet = node::wait_for_pod_cidr(&api, &name).await?;
    if !config.cluster_cidr.contains(subnet.network())
        || subnet.prefix() < config.cluster_cidr.prefix()
    {
        tracing::warn!(%subnet, cluster_cidr = %config.cluster_cidr, "the node's podCIDR is outside the cluster CIDR");
    }

    let vtep = peers::vtep_ip(subnet);
    let mtu = underlay.mtu.saturating_sub(kernel::VXLAN_OVERHEAD);
    let spec = kernel::VxlanSpec {
        name: format!("flannel.{}", config.vni),
        vni: config.vni,
        port: config.port,
        local: public_ip,
        underlay: underlay.index,
        mtu,
        mac: peers::Mac::for_vtep(vtep),
        vtep,
    };
    let index = kernel::ensure_vxlan(&handle, &spec).await?;
    tracing::info!(dev = %spec.name, %vtep, mac = %spec.mac, mtu, "overlay device ready");

    let (cidr, masq) = (config.cluster_cidr, config.ip_masq);
    ensure_rules(cidr, masq).await?;
    write_subnet_env(
        &config.subnet_file,
        &peers::subnet_env(config.cluster_cidr, subnet, mtu, config.ip_masq),
    )?;
    tracing::info!(path = %config.subnet_file.display(), %subnet, "wrote subnet.env");

    let annotations = peers::own_annotations(config.vni, spec.mac, public_ip);
    node::publish(&api, &name, &annotations).await?;

    // List, then watch, then reflect: every event (and every resync tick) wakes the reconciler,
    // which works from the whole store, so coalesced wake-ups lose nothing.
    let (reader, writer) = reflector::store::<Node>();
    let wake = Arc::new(tokio::sync::Notify::new());
    let watch = {
        let wake = wake.clone();
        let stream = watcher(api.clone(), watcher::Config::default())
            .default_backoff()
            .reflect(writer);
        async move {
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(_) => wake.notify_one(),
                    Err(e) => tracing::warn!(error = %e, "node watch"),
                }
            }
        }
    };
    let watch = tokio::spawn(watch);
    reader
        .wait_until_ready()
        .await
        .map_err(|_| Error::WatchEnded)?;
    tracing::info!(nodes = reader.state().len(), "node list synced");

    let overlay = kernel::Netlink { handle, index };
    let mut rules_checked = tokio::time::Instant::now();
    loop {
        let nodes = reader.state();
        let desired = peers::desired(nodes.iter().map(|n| n.as_ref()), &name, subnet, config.vni);
        match reconcile::reconcile(&overlay, &desired).await {
            Ok(out) if out.added + out.deleted > 0 || !out.failed.is_empty() => {
                tracing::info!(
                    added = out.added,
                    deleted = out.deleted,
                    failed = out.failed.len(),
                    peers = desired.len() / 3,
                    "reconciled"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading the overlay device"),
        }
        // Someone may have dropped our annotations (a re-registration, a manual edit); put them
        // back. A node deleted through the API is not recreated here: that is the kubelet's job.
        if let Some(me) = nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name.as_str()))
            && !peers::has_annotations(me, &annotations)
            && let Err(e) = node::publish(&api, &name, &annotations).await
        {
            tracing::warn!(error = %e, "republishing annotations");
        }
        // Put back rules someone flushed, as flanneld checks its own: the CNI plugin leaves
        // masquerading to them.
        if rules_checked.elapsed() >= config.resync_interval {
            rules_checked = tokio::time::Instant::now();
            if let Err(e) = ensure_rules(cidr, masq).await {
                tracing::warn!(error = %e, "restoring the iptables rules");
            }
        }
        if watch.is_finished() {
            return Err(Error::WatchEnded);
        }
        let _ = tokio::time::timeout(config.resync_interval, wake.notified()).await;
    }
}

/// [`iptables::ensure`], off the runtime's threads.
async fn ensure_rules(cidr: Ipv4Network, masq: bool) -> Result<()> {
    tokio::task::spawn_blocking(move || iptables::ensure(cidr, masq))
        .await
        .map_err(|e| Error::Config(format!("iptables task: {e}")))?
}
