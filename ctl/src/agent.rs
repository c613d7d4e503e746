//! `ekube agent`: everything a worker node runs, in one process — the kubelet (with its
//! in-process CRI runtime), the VXLAN overlay agent and the service proxy.
//!
//! The agent owns only what the three share: the node's name and address, its directories and
//! cgroup, the CNI network configuration that joins the kubelet to the overlay. Each component
//! is configured by parsing its own flags, so its defaults live in one place; anything else a
//! component accepts is passed through with `--kubelet-arg`, `--flannel-arg` or `--proxy-arg`
//! (`name=value`, as k3s does). The network configuration is written once the overlay has
//! written `subnet.env`, so the kubelet never wires a pod into a network that is not there yet.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use ekube_cni::NodeConflist;
use ekube_cni::config::DEFAULT_SUBNET_FILE;

use crate::flags::component;

/// How long TLS bootstrap (and each renewal) waits for the node's certificate to be approved
/// and signed.
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(300);

/// Where cgroup v2 is mounted on a hybrid-cgroup host.
const CGROUP2: &str = "/sys/fs/cgroup/unified";

/// Flags of `ekube agent`.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Kubeconfig of the apiserver to talk to: the node's own identity. With
    /// `--bootstrap-kubeconfig` it is written by TLS bootstrap when missing or expired.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// Kubeconfig holding a bootstrap token, used to ask the cluster for the node's client
    /// certificate (`system:node:<name>`) when `--kubeconfig` holds no valid one.
    #[arg(long)]
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// Where the node's client certificate and key are kept (default `<root-dir>/pki`).
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,
    /// Reach the apiservers through a load balancer on this host's loopback that relays to
    /// every server the `kubernetes` EndpointSlice lists (starting from `--kubeconfig`'s), so
    /// the node keeps working while one of several servers is down (k3s's agent does this).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub apiserver_load_balancer: bool,
    /// The loopback port of that load balancer.
    #[arg(long, default_value_t = 6444)]
    pub apiserver_load_balancer_port: u16,
    /// Node name instead of the host name.
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// The node's InternalIP, also its VXLAN endpoint and NodePort address.
    #[arg(long)]
    pub node_ip: Option<Ipv4Addr>,
    /// Kubelet and runtime state (volumes, images, bundles).
    #[arg(long, default_value = "/var/lib/ekube/agent")]
    pub root_dir: PathBuf,
    /// Cgroup (in every hierarchy) under which pods go; the proxy balances the sockets of this
    /// cgroup v2 subtree unless `--proxy-arg cgroup-path=…` says otherwise.
    #[arg(long, default_value = "/ekube")]
    pub cgroup_root: String,
    /// Where CNI plugin binaries are (default: next to this binary when `ekube-cni` is there,
    /// else `/opt/cni/bin`).
    #[arg(long)]
    pub cni_bin_dir: Option<PathBuf>,
    /// Where the CNI network configuration is written.
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// Where the overlay writes the node's subnet, MTU and cluster CIDR for the CNI plugin.
    #[arg(long, default_value = DEFAULT_SUBNET_FILE)]
    pub subnet_file: PathBuf,
    /// Directory of static pod manifests.
    #[arg(long)]
    pub pod_manifest_path: Option<PathBuf>,
    /// Registries (`host:port`) pulled over plain HTTP.
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// OCI image archives imported at start (air-gapped nodes).
    #[arg(long)]
    pub images_dir: Option<PathBuf>,
    /// Registry mirrors, rewrites, credentials and TLS (k3s `registries.yaml`), read at start.
    #[arg(long, default_value = ekube_kubelet::runtime::registries::DEFAULT_PATH)]
    pub registries_config: PathBuf,
    /// Where container logs go.
    #[arg(long, default_value = "/var/log/pods")]
    pub pod_logs_dir: PathBuf,
    /// Where CNI IPAM keeps its allocations.
    #[arg(long, default_value = ekube_cni::config::DEFAULT_DATA_DIR)]
    pub cni_data_dir: PathBuf,
    /// Do not run the service proxy (another proxy serves this node).
    #[arg(long)]
    pub disable_proxy: bool,
    /// Do not run the overlay agent (another one writes `--subnet-file`).
    #[arg(long)]
    pub disable_flannel: bool,
    /// Extra kubelet flag, `name=value` (repeatable).
    #[arg(
        long = "kubelet-arg",
        value_name = "NAME=VALUE",
        allow_hyphen_values = true
    )]
    pub kubelet_args: Vec<String>,
    /// Extra overlay-agent flag, `name=value` (repeatable).
    #[arg(
        long = "flannel-arg",
        value_name = "NAME=VALUE",
        allow_hyphen_values = true
    )]
    pub flannel_args: Vec<String>,
    /// Extra proxy flag, `name=value` (repeatable).
    #[arg(
        long = "proxy-arg",
        value_name = "NAME=VALUE",
        allow_hyphen_values = true
    )]
    pub proxy_args: Vec<String>,
}

/// `(--flag, value)` pairs as argv, skipping absent optional values.
fn argv<'a>(pairs: impl IntoIterator<Item = (&'a str, Option<OsString>)>) -> Vec<OsString> {
    pairs
        .into_iter()
        .filter_map(|(flag, value)| Some([OsString::from(flag), value?]))
        .flatten()
        .collect()
}

fn os(path: &Path) -> Option<OsString> {
    Some(path.as_os_str().to_owned())
}

impl Config {
    /// Where the node's client certificate is kept: `--cert-dir`, else `<root-dir>/pki`.
    pub(crate) fn pki_dir(&self) -> PathBuf {
        self.cert_dir
            .clone()
            .unwrap_or_else(|| self.root_dir.join("pki"))
    }

    fn cni_bin_dir(&self) -> PathBuf {
        if let Some(dir) = &self.cni_bin_dir {
            return dir.clone();
        }
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .filter(|dir| dir.join("ekube-cni").exists())
            .unwrap_or_else(|| PathBuf::from("/opt/cni/bin"))
    }

    pub(crate) fn kubelet(&self) -> Result<ekube_kubelet::Config> {
        let mut args = argv([
            ("--kubeconfig", os(&self.kubeconfig)),
            (
                "--hostname-override",
                self.hostname_override.clone().map(Into::into),
            ),
            ("--node-ip", self.node_ip.map(|ip| ip.to_string().into())),
            ("--root-dir", os(&self.root_dir)),
            ("--cgroup-root", Some(self.cgroup_root.clone().into())),
            ("--cni-bin-dir", os(&self.cni_bin_dir())),
            ("--cni-conf-dir", os(&self.cni_conf_dir)),
            (
                "--pod-manifest-path",
                self.pod_manifest_path.as_deref().and_then(os),
            ),
            ("--images-dir", self.images_dir.as_deref().and_then(os)),
            ("--registries-config", os(&self.registries_config)),
            ("--pod-logs-dir", os(&self.pod_logs_dir)),
        ]);
        for registry in &self.insecure_registries {
            args.extend(["--insecure-registry".into(), registry.into()]);
        }
        component("kubelet", args, &self.kubelet_args)
    }

    pub(crate) fn flannel(&self) -> Result<ekube_flannel::Config> {
        let args = argv([
            ("--kubeconfig", os(&self.kubeconfig)),
            (
                "--hostname-override",
                self.hostname_override.clone().map(Into::into),
            ),
            ("--public-ip", self.node_ip.map(|ip| ip.to_string().into())),
            ("--subnet-file", os(&self.subnet_file)),
        ]);
        component("flannel", args, &self.flannel_args)
    }

    pub(crate) fn proxy(&self) -> Result<ekube_proxy::service::Config> {
        let cgroup = Path::new(CGROUP2).join(self.cgroup_root.trim_start_matches('/'));
        let args = argv([
            ("--kubeconfig", os(&self.kubeconfig)),
            (
                "--hostname-override",
                self.hostname_override.clone().map(Into::into),
            ),
            ("--node-ip", self.node_ip.map(|ip| ip.to_string().into())),
            ("--cgroup-path", os(&cgroup)),
        ]);
        component("proxy", args, &self.proxy_args)
    }

    /// The conflist joining pods to the overlay: subnet, MTU and cluster CIDR are read from
    /// `subnet.env` on every ADD, so a changed podCIDR needs no rewrite.
    pub(crate) fn conflist(&self) -> NodeConflist {
        NodeConflist {
            subnet_file: self.subnet_file.clone(),
            data_dir: self.cni_data_dir.clone(),
            ..Default::default()
        }
    }
}

/// The node's apiserver load balancer, starting from the server `--kubeconfig` names.
async fn start_balancer(config: &Config) -> Result<std::sync::Arc<ekube_api::balancer::Balancer>> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&config.kubeconfig)
        .with_context(|| format!("reading {}", config.kubeconfig.display()))?;
    let server = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .with_context(|| format!("{}: no usable cluster", config.kubeconfig.display()))?
        .cluster_url;
    let host = server.host().unwrap_or_default().trim_matches(['[', ']']);
    let port = server.port_u16().unwrap_or(443);
    let first: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("resolving the apiserver {server}"))?
        .collect();
    let local =
        std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, config.apiserver_load_balancer_port));
    let balancer = ekube_api::balancer::Balancer::start(local, first)
        .await
        .with_context(|| format!("listening on {local} for the apiserver load balancer"))?;
    tracing::info!(local = %balancer.local, first = %server, "apiserver load balancer");
    Ok(balancer)
}

/// Runs the node components until `shutdown` completes; the first one to fail stops the rest.
pub async fn run(config: Config, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let node_name = ekube_api::flags::node_name(config.hostname_override.as_deref())
        .context("finding the node's name")?;
    let pki_dir = config.pki_dir();
    match &config.bootstrap_kubeconfig {
        // As kubeadm's kubelet: a missing or expired identity is asked for again with the
        // bootstrap credentials.
        Some(bootstrap_kubeconfig) => {
            ekube_kubelet::bootstrap::Bootstrap {
                kubeconfig: &config.kubeconfig,
                bootstrap_kubeconfig,
                pki_dir: &pki_dir,
                node_name: &node_name,
                timeout: BOOTSTRAP_TIMEOUT,
            }
            .ensure()
            .await
            .context("TLS bootstrap")?;
        }
        // Without bootstrap credentials an expired certificate is the end of the node's identity
        // (a kubeconfig with a token, or none at all, is left to the components to use or
        // refuse).
        None => {
            use ekube_kubelet::bootstrap::Unusable;
            if let Some(why @ (Unusable::Expired | Unusable::Unparsable)) =
                ekube_kubelet::bootstrap::unusable(&config.kubeconfig)
            {
                anyhow::bail!(
                    "{}: {why}; the node cannot authenticate. Give --bootstrap-kubeconfig with a \
                     bootstrap token to ask for a new certificate, or join the node again \
                     (`ekube reset`, then `ekube join`)",
                    config.kubeconfig.display()
                );
            }
        }
    }
    let rotation =
        ekube_kubelet::rotation::Rotation::manages(&config.kubeconfig, &pki_dir).then(|| {
            ekube_kubelet::rotation::Rotation {
                kubeconfig: config.kubeconfig.clone(),
                pki_dir,
                node_name,
                timeout: BOOTSTRAP_TIMEOUT,
            }
        });
    if config.apiserver_load_balancer {
        let balancer = start_balancer(&config).await?;
        ekube_api::client::route_through(balancer.url());
        let client = ekube_api::client::from_kubeconfig(&config.kubeconfig).await?;
        tokio::spawn(balancer.follow_endpoints(client));
    }
    let kubelet = config.kubelet()?;
    let flannel = (!config.disable_flannel)
        .then(|| config.flannel())
        .transpose()?;
    let proxy = (!config.disable_proxy)
        .then(|| config.proxy())
        .transpose()?;
    if let Some(proxy) = &proxy {
        std::fs::create_dir_all(&proxy.cgroup_path)
            .with_context(|| format!("creating cgroup {}", proxy.cgroup_path.display()))?;
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(flannel) = flannel {
        let stop = stopped(stop_rx.clone());
        tasks.spawn(async move {
            (
                "flannel",
                ekube_flannel::run(flannel, stop)
                    .await
                    .map_err(anyhow::Error::from),
            )
        });
    }
    {
        let (conflist, subnet_file, conf_dir) = (
            config.conflist(),
            config.subnet_file.clone(),
            config.cni_conf_dir.clone(),
        );
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let written = tokio::select! {
                r = write_conflist_when_ready(&subnet_file, &conf_dir, &conflist) => r,
                _ = stop.wait_for(|s| *s) => Ok(()),
            };
            ("network config", written)
        });
    }
    {
        let stop = stopped(stop_rx.clone());
        tasks.spawn(async move {
            (
                "kubelet",
                ekube_kubelet::run(kubelet, stop)
                    .await
                    .map_err(anyhow::Error::from),
            )
        });
    }
    if let Some(rotation) = rotation {
        let stop = stopped(stop_rx.clone());
        tasks.spawn(async move {
            (
                "client certificate rotation",
                rotation.run(stop).await.map_err(anyhow::Error::from),
            )
        });
    }
    if let Some(proxy) = proxy {
        let stop = stopped(stop_rx.clone());
        tasks.spawn(async move {
            (
                "proxy",
                ekube_proxy::service::run(proxy, stop)
                    .await
                    .map_err(anyhow::Error::from),
            )
        });
    }

    let mut failure = None;
    tokio::select! {
        () = shutdown => tracing::info!("agent stopping"),
        Some(err) = next_failure(&mut tasks) => {
            tracing::error!(error = %format!("{err:#}"), "component failed; stopping the others");
            failure = Some(err);
        }
    }
    let _ = stop_tx.send(true);
    while let Some(done) = tasks.join_next().await {
        if let Some(err) = finished(done) {
            tracing::error!(error = %format!("{err:#}"), "component stopped");
            failure.get_or_insert(err);
        }
    }
    match failure {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// The first component that ends with an error (a component that ends well, like the one
/// writing the network config, is not a failure).
async fn next_failure(
    tasks: &mut tokio::task::JoinSet<(&'static str, Result<()>)>,
) -> Option<anyhow::Error> {
    while let Some(done) = tasks.join_next().await {
        if let Some(err) = finished(done) {
            return Some(err);
        }
    }
    std::future::pending().await
}

fn finished(
    done: Result<(&'static str, Result<()>), tokio::task::JoinError>,
) -> Option<anyhow::Error> {
    match done {
        Ok((_, Ok(()))) => None,
        Ok((what, Err(err))) => Some(err.context(what)),
        Err(err) => Some(anyhow::anyhow!("a component panicked: {err}")),
    }
}

/// Waits for the overlay's `subnet.env`, then writes the node's conflist.
async fn write_conflist_when_ready(
    subnet_file: &Path,
    conf_dir: &Path,
    conflist: &NodeConflist,
) -> Result<()> {
    let mut waited = Duration::ZERO;
    while !subnet_file.exists() {
        if waited == Duration::from_secs(30) {
            tracing::info!(path = %subnet_file.display(), "still waiting for the overlay's subnet file");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        waited += Duration::from_millis(200);
    }
    let path =
        ekube_cni::write_conflist(conf_dir, conflist).context("writing the CNI network config")?;
    tracing::info!(path = %path.display(), "pod network configured");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use ekube_cni::config::DEFAULT_CLUSTER_CIDR;

    fn config(extra: &[&str]) -> Config {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            agent: Config,
        }
        let mut argv = vec![
            "agent",
            "--kubeconfig",
            "/k.conf",
            "--hostname-override",
            "n1",
            "--node-ip",
            "192.168.64.10",
        ];
        argv.extend(extra);
        Cli::try_parse_from(argv).unwrap().agent
    }

    #[test]
    fn shared_flags_reach_every_component() {
        let c = config(&[
            "--cgroup-root",
            "/ekube/lab/n1",
            "--insecure-registry",
            "192.168.64.1:5000",
            "--cni-bin-dir",
            "/cni",
        ]);
        let kubelet = c.kubelet().unwrap();
        assert_eq!(kubelet.hostname_override.as_deref(), Some("n1"));
        assert_eq!(kubelet.cgroup_root, "/ekube/lab/n1");
        assert_eq!(kubelet.insecure_registries, ["192.168.64.1:5000"]);
        assert_eq!(kubelet.cni_bin_dir, Path::new("/cni"));
        let flannel = c.flannel().unwrap();
        assert_eq!(flannel.public_ip, Some(Ipv4Addr::new(192, 168, 64, 10)));
        assert_eq!(flannel.subnet_file, Path::new(DEFAULT_SUBNET_FILE));
        assert_eq!(flannel.cluster_cidr.to_string(), DEFAULT_CLUSTER_CIDR);
        let proxy = c.proxy().unwrap();
        assert_eq!(
            proxy.cgroup_path,
            Path::new("/sys/fs/cgroup/unified/ekube/lab/n1")
        );
        assert_eq!(proxy.node_ips, [Ipv4Addr::new(192, 168, 64, 10)]);
    }

    #[test]
    fn pass_through_flags_override_and_bad_ones_are_named() {
        let c = config(&[
            "--kubelet-arg",
            "max-pods=12",
            "--proxy-arg",
            "--sync-period=5s",
            "--flannel-arg",
            "vni=7",
        ]);
        assert_eq!(c.kubelet().unwrap().max_pods, 12);
        assert_eq!(c.proxy().unwrap().sync_period, Duration::from_secs(5));
        assert_eq!(c.flannel().unwrap().vni, 7);

        let err = config(&["--kubelet-arg", "no-such-flag=1"])
            .kubelet()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kubelet flags") && err.contains("no-such-flag"),
            "{err}"
        );
        let err = config(&["--proxy-arg", "sync-period"])
            .proxy()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("proxy flag") && err.contains("not name=value"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_expired_identity_without_bootstrap_credentials_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(2);
        params.not_after = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        let cert = params.self_signed(&key).unwrap();
        let pem = dir.path().join("kubelet-client-current.pem");
        std::fs::write(&pem, format!("{}{}", cert.pem(), key.serialize_pem())).unwrap();
        let mut c = config(&[]);
        c.kubeconfig = dir.path().join("kubelet.conf");
        std::fs::write(
            &c.kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nusers:\n- name: n\n  user:\n    client-certificate: {0}\n    client-key: {0}\n",
                pem.display()
            ),
        )
        .unwrap();
        let err = format!("{:#}", run(c, std::future::pending()).await.unwrap_err());
        assert!(
            err.contains("has expired") && err.contains("--bootstrap-kubeconfig"),
            "{err}"
        );
    }
}
