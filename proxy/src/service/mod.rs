//! `ekube proxy`: watches Services and EndpointSlices and keeps the service datapath in step
//! (DESIGN.md §7).
//!
//! [`run`] validates the [`Config`], binds the metrics and healthz endpoints, opens the datapath
//! of the chosen `--mode` — the eBPF maps (re-using their pins, so a restart continues where the
//! last process stopped), or kube-proxy's iptables ([`crate::iptables`]) or nftables
//! ([`crate::nftables`]) rules — and runs the
//! sync loop in [`watch`]: [`view`] reduces each Service and EndpointSlice to what the proxy
//! reads, [`desired`] turns one Service and its EndpointSlices into frontends and backends, [`hostport`] one pod of this node into its hostPort frontends, [`sync`]
//! applies only what changed, [`metrics`] and [`http`] report.

pub mod desired;
pub mod healthcheck;
pub mod hostport;
mod http;
pub mod metrics;
pub mod sync;
pub mod view;
mod watch;

use std::{
    fs,
    future::Future,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use ipnetwork::Ipv4Network;
use tokio::net::TcpListener;
use tracing::{debug, info};

pub use self::{
    desired::{DesiredService, FrontendSpec, ServiceName, Unsupported, desired_state},
    hostport::{PodHostPorts, PodName, desired_host_ports},
    metrics::Metrics,
    sync::{Outcome, Owner, ProxyDatapath, Syncer},
    view::{ServiceView, SliceView},
    watch::{COMPONENT, FAILED_REASON},
};
use crate::{
    datapath::{
        DEFAULT_LB_MAP_MAX, Datapath, DatapathConfig, MAX_LB_MAP_MAX, MIN_LB_MAP_MAX,
        NodePortSettings, snat_ports_for_host,
    },
    iptables::{Binary, IptablesConfig, IptablesDatapath, Variant},
    nftables::NftablesDatapath,
};

/// Which datapath programs the services.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Socket-level load balancing in eBPF (cgroup hooks and pinned maps).
    #[default]
    Ebpf,
    /// kube-proxy's iptables rules, applied with `iptables-restore`.
    Iptables,
    /// kube-proxy's nftables rules (table `ip kube-proxy`), applied with `nft`.
    Nftables,
}

/// `statfs(2)` magic of a cgroup v2 mount.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// Flags of `ekube proxy` (names as kube-proxy's where the concept is the same).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Kubeconfig of the apiserver to talk to.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// This node's name (default: the host name); pins go to `<bpffs>/ekube/<name>/`.
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// cgroup v2 directory whose processes (and descendants) get service load balancing.
    #[arg(long, default_value = "/sys/fs/cgroup/unified")]
    pub cgroup_path: PathBuf,
    /// bpffs mount point (mounted there if nothing is).
    #[arg(long, default_value = "/sys/fs/bpf")]
    pub bpffs_path: PathBuf,
    /// An address of this node on which NodePorts answer (repeatable; 127.0.0.1 always does).
    /// Default: the Node object's InternalIPs.
    #[arg(long = "node-ip", value_name = "IP")]
    pub node_ips: Vec<Ipv4Addr>,
    /// Where `/metrics` is served.
    #[arg(long, default_value = "127.0.0.1:10249")]
    pub metrics_bind_address: SocketAddr,
    /// Where `/healthz` is served.
    #[arg(long, default_value = "0.0.0.0:10256")]
    pub healthz_bind_address: SocketAddr,
    /// Period of the full re-sync and prune (e.g. `30s`, `1m`, `500ms`).
    #[arg(long, default_value = "30s", value_parser = ekube_api::flags::parse_duration)]
    pub sync_period: Duration,
    /// The datapath: `ebpf` (socket-level load balancing), or kube-proxy's rules in `iptables`
    /// or `nftables`.
    #[arg(long, alias = "proxy-mode", value_enum, default_value = "ebpf")]
    pub mode: Mode,
    /// In iptables mode, which iptables writes the rules: `legacy` (x_tables) or `nft`
    /// (`--iptables-backend` is the older name of this flag).
    #[arg(long, alias = "iptables-backend", value_enum, default_value = "nft")]
    pub iptables_variant: Variant,
    /// In iptables and nftables mode, the shortest time between two rule writes
    /// (`iptables-restore`, `nft`): changes arriving faster are applied together.
    #[arg(long, default_value = "1s", value_parser = ekube_api::flags::parse_duration)]
    pub iptables_min_sync_period: Duration,
    /// Pod CIDR; in iptables and nftables mode, traffic from outside it to a ClusterIP is
    /// masqueraded.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: Option<Ipv4Network>,
    /// Idle timeout of an open TCP flow on the per-packet NodePort path.
    #[arg(long, default_value = "6h", value_parser = ekube_api::flags::parse_duration)]
    pub conntrack_tcp_timeout_established: Duration,
    /// How long a TCP flow on the per-packet NodePort path lives after FIN or RST (a SNATed one
    /// keeps its SNAT port for TIME_WAIT, 60 s, unless its timestamps are shifted: then one
    /// second after both sides closed).
    #[arg(long, default_value = "10s", value_parser = ekube_api::flags::parse_duration)]
    pub conntrack_tcp_timeout_close_wait: Duration,
    /// Idle timeout of a UDP flow on the per-packet NodePort path.
    #[arg(long, default_value = "60s", value_parser = ekube_api::flags::parse_duration)]
    pub conntrack_udp_timeout: Duration,
    /// How long a TCP flow on the per-packet NodePort path lives after its SYN until the
    /// client completes the handshake (kube-proxy has no such flag; netfilter's `SYN_RECV`
    /// timeout is the same 60 s). Such flows hold at most half of the conntrack, so a SYN flood
    /// cannot evict established flows, and a SNAT port held by one for over 1 s may go to a
    /// new flow.
    #[arg(long, default_value = "60s", value_parser = ekube_api::flags::parse_duration)]
    pub conntrack_tcp_timeout_syn: Duration,
    /// Source ports for NodePort flows SNATed to another node's backend, `MIN-MAX`. Default:
    /// the largest span of 1024-65535 outside `net.ipv4.ip_local_port_range` and 30000-32767.
    #[arg(long, value_name = "MIN-MAX", value_parser = parse_port_range)]
    pub nodeport_snat_port_range: Option<(u16, u16)>,
    /// In eBPF mode, entries of the backend and session-affinity maps; the service map gets
    /// twice as many (a frontend and a slot per backend). Each Service port with N endpoints
    /// takes 1 + N service entries. Changing it re-creates those maps at the next start.
    #[arg(long, default_value_t = DEFAULT_LB_MAP_MAX)]
    pub bpf_lb_map_max: u32,
}

impl Config {
    /// The defaults, for embedding (`ekube agent`) and tests.
    pub fn new(kubeconfig: impl Into<PathBuf>) -> Self {
        Self {
            kubeconfig: kubeconfig.into(),
            hostname_override: None,
            cgroup_path: PathBuf::from("/sys/fs/cgroup/unified"),
            bpffs_path: PathBuf::from("/sys/fs/bpf"),
            node_ips: Vec::new(),
            metrics_bind_address: SocketAddr::from(([127, 0, 0, 1], 10249)),
            healthz_bind_address: SocketAddr::from(([0, 0, 0, 0], 10256)),
            sync_period: Duration::from_secs(30),
            mode: Mode::Ebpf,
            iptables_variant: Variant::Nft,
            iptables_min_sync_period: Duration::from_secs(1),
            cluster_cidr: Some(Ipv4Network::new(Ipv4Addr::new(10, 244, 0, 0), 16).expect("valid")),
            conntrack_tcp_timeout_established: Duration::from_secs(6 * 3600),
            conntrack_tcp_timeout_close_wait: Duration::from_secs(10),
            conntrack_udp_timeout: Duration::from_secs(60),
            conntrack_tcp_timeout_syn: Duration::from_secs(60),
            nodeport_snat_port_range: None,
            bpf_lb_map_max: DEFAULT_LB_MAP_MAX,
        }
    }

    /// Checks the whole configuration; returns the node name.
    pub fn validate(&self) -> Result<String, RunError> {
        let invalid = |message: String| Err(RunError::Config { message });
        if let Err(err) = fs::metadata(&self.kubeconfig) {
            return invalid(format!("--kubeconfig {}: {err}", self.kubeconfig.display()));
        }
        let node =
            ekube_api::flags::node_name(self.hostname_override.as_deref()).map_err(|err| {
                RunError::Config {
                    message: format!("reading the host name ({err}); set --hostname-override"),
                }
            })?;
        if !is_dns_subdomain(&node) {
            return invalid(format!(
                "node name {node:?} is not a valid DNS subdomain (lowercase letters, digits, '-' \
                 and '.'); set --hostname-override"
            ));
        }
        // The rule modes touch neither cgroups nor bpffs.
        if self.mode == Mode::Ebpf
            && let Err(message) = check_cgroup2(&self.cgroup_path)
        {
            return invalid(format!(
                "--cgroup-path {}: {message}",
                self.cgroup_path.display()
            ));
        }
        if self.mode == Mode::Ebpf && !self.bpffs_path.is_absolute() {
            return invalid(format!(
                "--bpffs-path {} must be absolute",
                self.bpffs_path.display()
            ));
        }
        for ip in &self.node_ips {
            if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
                return invalid(format!("--node-ip {ip} is not a unicast address"));
            }
        }
        if self.metrics_bind_address == self.healthz_bind_address
            && self.metrics_bind_address.port() != 0
        {
            return invalid(format!(
                "--metrics-bind-address and --healthz-bind-address are both {}",
                self.metrics_bind_address
            ));
        }
        if self.iptables_min_sync_period > self.sync_period {
            return invalid(format!(
                "--iptables-min-sync-period {:?} is longer than --sync-period {:?}",
                self.iptables_min_sync_period, self.sync_period
            ));
        }
        if self.conntrack_tcp_timeout_syn < Duration::from_secs(1) {
            return invalid(format!(
                "--conntrack-tcp-timeout-syn {:?} is shorter than 1s (a handshake's first \
                 retransmission comes after 1s)",
                self.conntrack_tcp_timeout_syn
            ));
        }
        if self.sync_period < Duration::from_secs(1) {
            return invalid(format!(
                "--sync-period {:?} is shorter than 1s",
                self.sync_period
            ));
        }
        if !(MIN_LB_MAP_MAX..=MAX_LB_MAP_MAX).contains(&self.bpf_lb_map_max) {
            return invalid(format!(
                "--bpf-lb-map-max {} is outside {MIN_LB_MAP_MAX}..={MAX_LB_MAP_MAX}",
                self.bpf_lb_map_max
            ));
        }
        Ok(node)
    }
}

/// Errors that stop the proxy.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid configuration: {message}")]
    Config { message: String },
    #[error(transparent)]
    Client(#[from] ekube_api::client::Error),
    #[error("binding the {what} endpoint on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("opening the eBPF datapath: {0}")]
    Datapath(#[from] crate::datapath::Error),
    #[error("setting up the rules datapath: {0}")]
    Rules(#[from] crate::rules::Error),
    #[error("the {what} watch ended")]
    WatchEnded { what: &'static str },
}

/// Runs the proxy until `shutdown` completes. The eBPF datapath stays pinned and keeps serving
/// after it returns; the iptables rules stay in place too.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let node_name = config.validate()?;
    let client = ekube_api::client::from_kubeconfig(&config.kubeconfig).await?;
    let metrics_listener = bind("metrics", config.metrics_bind_address).await?;
    let healthz_listener = bind("healthz", config.healthz_bind_address).await?;
    let listeners = (metrics_listener, healthz_listener);
    match config.mode {
        Mode::Ebpf => {
            let dp_config = DatapathConfig {
                cgroup: config.cgroup_path.clone(),
                bpffs: config.bpffs_path.clone(),
                node_name: node_name.clone(),
                lb_map_max: config.bpf_lb_map_max,
            };
            let nodeport = NodePortSettings {
                tcp_established_timeout: config.conntrack_tcp_timeout_established,
                tcp_close_timeout: config.conntrack_tcp_timeout_close_wait,
                udp_timeout: config.conntrack_udp_timeout,
                tcp_syn_timeout: config.conntrack_tcp_timeout_syn,
                snat_ports: config
                    .nodeport_snat_port_range
                    .unwrap_or_else(snat_ports_for_host),
                ..NodePortSettings::default()
            };
            info!(snat_ports = ?nodeport.snat_ports, "NodePort SNAT port range");
            let datapath = Datapath::open_with(&dp_config, &nodeport)?;
            serve(config, node_name, client, listeners, datapath, shutdown).await
        }
        Mode::Iptables => {
            let datapath = IptablesDatapath::open(&IptablesConfig {
                variant: config.iptables_variant,
                cluster_cidr: config.cluster_cidr,
            })?;
            // Rules of the other rule mode would translate the same traffic first.
            if crate::nftables::remove_table()? {
                info!("removed the nftables rules of an earlier --mode nftables");
            }
            serve(config, node_name, client, listeners, datapath, shutdown).await
        }
        Mode::Nftables => {
            let datapath = NftablesDatapath::open(config.cluster_cidr)?;
            for variant in [Variant::Legacy, Variant::Nft] {
                match crate::iptables::cleanup::cleanup(&mut Binary::new(variant), &["KUBE-"]) {
                    Ok(removed) if !removed.is_empty() => info!(
                        ?variant,
                        chains = removed.len(),
                        "removed the iptables rules of an earlier --mode iptables"
                    ),
                    Ok(_) => {}
                    Err(err) => debug!(?variant, %err, "no iptables rules to remove"),
                }
            }
            serve(config, node_name, client, listeners, datapath, shutdown).await
        }
    }
}

/// The proxy over an opened datapath: HTTP endpoints plus the sync loop.
async fn serve<D: ProxyDatapath + Send + 'static>(
    config: Config,
    node_name: String,
    client: kube::Client,
    (metrics_listener, healthz_listener): (TcpListener, TcpListener),
    datapath: D,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    info!(
        node = %node_name,
        mode = ?config.mode,
        metrics = %config.metrics_bind_address,
        healthz = %config.healthz_bind_address,
        "proxy started"
    );
    let metrics = Arc::new(Metrics::new(config.sync_period));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(http::serve(
        metrics_listener,
        metrics.clone(),
        stopped.clone(),
    ));
    tokio::spawn(http::serve(healthz_listener, metrics.clone(), stopped));
    let loop_config = watch::LoopConfig {
        node_name,
        node_ips: config.node_ips.clone(),
        sync_period: config.sync_period,
        min_commit_interval: match config.mode {
            Mode::Ebpf => Duration::ZERO,
            Mode::Iptables | Mode::Nftables => config.iptables_min_sync_period,
        },
    };
    let result = watch::run_loop(
        client,
        Syncer::new(datapath),
        metrics,
        loop_config,
        shutdown,
    )
    .await;
    let _ = stop.send(true);
    result
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { what, addr, source })
}

/// `MIN-MAX`, both 1–65535, MIN ≤ MAX.
fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{text:?} is not a port range like 1024-29999");
    let (min, max) = text.trim().split_once('-').ok_or_else(bad)?;
    let (min, max): (u16, u16) = (
        min.trim().parse().map_err(|_| bad())?,
        max.trim().parse().map_err(|_| bad())?,
    );
    if min == 0 || min > max {
        return Err(bad());
    }
    Ok((min, max))
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// The path must be a directory on a cgroup v2 mount.
fn check_cgroup2(path: &Path) -> Result<(), String> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| "contains a NUL byte".to_string())?;
    // SAFETY: a zeroed statfs is a valid out-parameter; the path is NUL-terminated.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    if stat.f_type as i64 != CGROUP2_SUPER_MAGIC {
        return Err("not a cgroup v2 directory".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_parse_like_kube_proxy_flags() {
        assert_eq!(parse_port_range("1024-29999"), Ok((1024, 29_999)));
        assert!(parse_port_range("2000-1000").is_err());
        assert!(parse_port_range("0-10").is_err());
        assert!(parse_port_range("1024").is_err());
    }

    #[test]
    fn validation_names_the_bad_flag() {
        let dir = std::env::temp_dir();
        let kubeconfig = dir.join(format!("ekube-proxy-validate-{}", std::process::id()));
        fs::write(&kubeconfig, "").unwrap();
        let mut config = Config::new(&kubeconfig);
        config.hostname_override = Some("node-1".into());
        config.cgroup_path = dir.clone();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("--cgroup-path"), "{err}");

        config.mode = Mode::Iptables;
        config.bpf_lb_map_max = 100;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("--bpf-lb-map-max 100"), "{err}");
        config.bpf_lb_map_max = DEFAULT_LB_MAP_MAX;

        config.hostname_override = Some("Node_1".into());
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("--hostname-override"), "{err}");

        config.kubeconfig = dir.join("does-not-exist.conf");
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("--kubeconfig"), "{err}");
        fs::remove_file(&kubeconfig).unwrap();
    }

    #[test]
    fn run_can_be_spawned() {
        fn is_send<T: Send + 'static>(_: &T) {}
        // `ekube agent` spawns the proxy next to the kubelet: the future must be Send.
        is_send(&run(Config::new("/nonexistent"), async {}));
    }

    #[test]
    fn dns_subdomains() {
        assert!(is_dns_subdomain("n1"));
        assert!(is_dns_subdomain("lab-n1.example"));
        assert!(!is_dns_subdomain(""));
        assert!(!is_dns_subdomain("a/b"));
        assert!(!is_dns_subdomain("-a"));
    }
}
