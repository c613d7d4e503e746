//! `ekube join`: a host becomes a node of a cluster, given only the control plane's address,
//! a bootstrap token and the CA's pin, as `kubeadm join` does it.
//!
//! 1. Discovery: `kube-public/cluster-info` is read anonymously over TLS that trusts nothing
//!    yet. Its kubeconfig is trusted only if the bootstrap signer's detached JWS for this
//!    token's id verifies with the token's secret (so whoever answered knows the token), and
//!    its CA only if the SHA-256 of its public key is one of the pins given. cluster-info is
//!    then read again over TLS verified with that CA.
//! 2. TLS bootstrap: with the token, the node asks for its client certificate through a CSR
//!    (`ekube_kubelet::bootstrap`) and writes `kubelet.conf`, its identity
//!    `system:node:<name>` from then on. The token is not kept.
//! 3. The node agent starts with `kubelet.conf`: detached (pid file and log as
//!    `ekube init` leaves them), or in the foreground with `--foreground`.
//!
//! With `--control-plane`, the host first becomes a further control plane of the cluster
//! ([`control_plane`]): its node then bootstraps against its own server, and is marked as a
//! control-plane node once it registers.
//!
//! Anything after `--` is passed to `ekube agent` as it is.

mod control_plane;

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;
use ekube_api::bootstrap::{self, Token};
use ekube_api::k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::config::Kubeconfig;

use crate::agent;
use crate::daemon::Dirs;
use crate::flags::component;

/// Where kubeadm keeps a node's kubeconfigs.
const KUBECONFIG: &str = "/etc/kubernetes/kubelet.conf";
const BOOTSTRAP_KUBECONFIG: &str = "bootstrap-kubelet.conf";

/// Flags of `ekube join`.
#[derive(Debug, clap::Args)]
pub struct JoinArgs {
    /// The control plane's `host:port`.
    pub api_server_endpoint: Option<String>,
    /// A kubeadm `JoinConfiguration` file, instead of the discovery flags.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// The bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}`, used for discovery and TLS bootstrap.
    #[arg(long)]
    pub token: Option<String>,
    /// The CA's public key pin, `sha256:<hex>` (repeatable; any may match).
    #[arg(long = "discovery-token-ca-cert-hash")]
    pub ca_cert_hashes: Vec<String>,
    /// Trust the CA found by discovery without a pin.
    #[arg(long)]
    pub discovery_token_unsafe_skip_ca_verification: bool,
    /// How long discovery waits for the control plane and for a signature of this token.
    #[arg(long, value_parser = ekube_api::flags::parse_duration)]
    pub discovery_timeout: Option<Duration>,
    /// The node's name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Run the node agent in this process instead of detaching it.
    #[arg(long)]
    pub foreground: bool,
    /// Join as a further control-plane host: run an `ekube server` here, on the cluster's
    /// etcd, with the certificates `ekube init --upload-certs` uploaded.
    #[arg(long)]
    pub control_plane: bool,
    /// The key the certificates were uploaded with (64 hex digits), with `--control-plane`.
    #[arg(long)]
    pub certificate_key: Option<String>,
    /// The address this host's API server advertises, with `--control-plane` (default: the
    /// host's address on the default route).
    #[arg(long)]
    pub apiserver_advertise_address: Option<IpAddr>,
    /// This host's API server port, with `--control-plane`.
    #[arg(long)]
    pub apiserver_bind_port: Option<u16>,
    /// Where this host's API server keeps its state, with `--control-plane`.
    #[arg(long, default_value = "/var/lib/ekube/server")]
    pub data_dir: PathBuf,
    /// Where this host's certificates go, with `--control-plane` (default: the cluster's
    /// `certificatesDir`).
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,
    #[command(flatten)]
    pub dirs: Dirs,
    /// Flags for `ekube agent` (after `--`); `--kubeconfig` says where `kubelet.conf` goes.
    #[arg(last = true, allow_hyphen_values = true)]
    pub agent_args: Vec<OsString>,
}

/// Where and how to join, from the flags or a `JoinConfiguration`.
struct Discovery {
    endpoint: String,
    token: Token,
    pins: Vec<String>,
    timeout: Duration,
    node_name: Option<String>,
    /// `nodeRegistration.kubeletExtraArgs` of `--config`.
    kubelet_args: Vec<(String, String)>,
    /// With `--control-plane` (or `controlPlane` in `--config`).
    control_plane: Option<control_plane::Joining>,
}

impl Discovery {
    fn resolve(args: &JoinArgs) -> Result<Self> {
        let control_plane_given = [
            ("control-plane", args.control_plane),
            ("certificate-key", args.certificate_key.is_some()),
            (
                "apiserver-advertise-address",
                args.apiserver_advertise_address.is_some(),
            ),
            ("apiserver-bind-port", args.apiserver_bind_port.is_some()),
        ];
        let mut file = crate::init::config::FileConfig::default();
        let (endpoint, token, hashes, skip, timeout, node_name, kubelet_args) = match &args.config {
            Some(path) => {
                let given = [
                    ("api-server-endpoint", args.api_server_endpoint.is_some()),
                    ("token", args.token.is_some()),
                    (
                        "discovery-token-ca-cert-hash",
                        !args.ca_cert_hashes.is_empty(),
                    ),
                    (
                        "discovery-token-unsafe-skip-ca-verification",
                        args.discovery_token_unsafe_skip_ca_verification,
                    ),
                    ("node-name", args.node_name.is_some()),
                ];
                let given: Vec<_> = given.into_iter().chain(control_plane_given).collect();
                file =
                    crate::init::config::read_file(path, crate::init::config::JOIN_KINDS, &given)?;
                (
                    file.api_server_endpoint.take(),
                    file.token.take(),
                    std::mem::take(&mut file.ca_cert_hashes),
                    file.unsafe_skip_ca_verification,
                    args.discovery_timeout.or(file.discovery_timeout),
                    file.node_name.take(),
                    std::mem::take(&mut file.kubelet_args),
                )
            }
            None => {
                if !args.control_plane
                    && let Some((flag, _)) = control_plane_given.iter().find(|(_, given)| *given)
                {
                    bail!("--{flag} is for a control-plane host: give --control-plane too");
                }
                file.control_plane = args.control_plane;
                file.certificate_key = args.certificate_key.clone();
                file.advertise_address = args.apiserver_advertise_address;
                file.bind_port = args.apiserver_bind_port;
                (
                    args.api_server_endpoint.clone(),
                    args.token.clone(),
                    args.ca_cert_hashes.clone(),
                    args.discovery_token_unsafe_skip_ca_verification,
                    args.discovery_timeout,
                    args.node_name.clone(),
                    Vec::new(),
                )
            }
        };
        let control_plane = if file.control_plane {
            let certificate_key = file.certificate_key.context(
                "a control-plane host needs --certificate-key (or controlPlane.certificateKey \
                 in --config): the key `ekube init --upload-certs` printed",
            )?;
            let certificate_key =
                crate::init::certs_upload::CertificateKey::parse(&certificate_key)
                    .context("--certificate-key")?;
            Some(control_plane::Joining {
                certificate_key,
                advertise: file.advertise_address,
                port: file.bind_port,
                data_dir: args.data_dir.clone(),
                cert_dir: args.cert_dir.clone(),
                taints: file.taints,
            })
        } else {
            if file.taints.as_ref().is_some_and(|t| !t.is_empty()) {
                bail!(
                    "nodeRegistration.taints: ekube sets taints when a node joins as a control \
                     plane only; taint a worker with `kubectl taint nodes` once it has joined"
                );
            }
            None
        };
        let endpoint = endpoint.context(
            "which control plane to join: give its host:port (or discovery.bootstrapToken.apiServerEndpoint in --config)",
        )?;
        let token =
            token.context("--token (or discovery.bootstrapToken.token in --config) is required")?;
        let token = Token::parse(&token).map_err(anyhow::Error::msg)?;
        let pins = hashes
            .iter()
            .map(|p| bootstrap::parse_ca_cert_hash(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        if pins.is_empty() && !skip {
            bail!(
                "discovery needs --discovery-token-ca-cert-hash (the CA's public key pin, printed by \
                 `ekube init` and `ekube token create --print-join-command`), or \
                 --discovery-token-unsafe-skip-ca-verification to trust whichever CA answers"
            );
        }
        Ok(Self {
            endpoint,
            token,
            pins,
            timeout: timeout.unwrap_or(Duration::from_secs(300)),
            node_name,
            kubelet_args,
            control_plane,
        })
    }
}

pub async fn run(args: JoinArgs) -> Result<()> {
    let discovery = Discovery::resolve(&args)?;
    let token = discovery.token.clone();
    let node_name = ekube_api::flags::node_name(discovery.node_name.as_deref())
        .context("finding the node's name")?;
    // The file's kubelet arguments first, so flags after `--` win.
    let mut agent_argv = crate::init::kubelet_args(&discovery.kubelet_args);
    agent_argv.extend(args.agent_args.iter().cloned());
    if !agent_argv.iter().any(|a| a == "--kubeconfig") {
        agent_argv.extend(["--kubeconfig".into(), KUBECONFIG.into()]);
    }
    agent_argv.extend(["--hostname-override".into(), node_name.clone().into()]);
    let config: agent::Config = component("agent", agent_argv.clone(), &[])?;

    println!("[preflight] Running pre-flight checks");
    if config.kubeconfig.exists() {
        bail!(
            "[preflight] {} already exists: this host has joined a cluster already (run \
             `ekube reset` first)",
            config.kubeconfig.display()
        );
    }
    println!(
        "[discovery] Reading cluster-info from {}",
        discovery.endpoint
    );
    let cluster = discover(
        &discovery.endpoint,
        &token,
        &discovery.pins,
        discovery.timeout,
    )
    .await?;
    println!(
        "[discovery] Cluster info signature and contents are valid and the CA is pinned; \
         using API server {}",
        cluster.server
    );

    let dir = config
        .kubeconfig
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let bootstrap_kubeconfig = dir.join(BOOTSTRAP_KUBECONFIG);
    let pki_dir = config.pki_dir();
    let joined = async {
        write_bootstrap_kubeconfig(&cluster, &token, &bootstrap_kubeconfig)?;
        let (shared, cluster_configuration) = cluster_settings(&bootstrap_kubeconfig).await?;
        let control_plane = match &discovery.control_plane {
            Some(joining) => {
                let bootstrap = ekube_api::client::from_kubeconfig(&bootstrap_kubeconfig).await?;
                let cluster_configuration = cluster_configuration.context(
                    "the cluster stores no kube-system/kubeadm-config: only a control plane \
                     set up by `ekube init` can be joined as a control plane",
                )?;
                let cluster_port = discovery
                    .endpoint
                    .rsplit_once(':')
                    .and_then(|(_, port)| port.parse().ok())
                    .unwrap_or(6443);
                Some(
                    joining
                        .prepare(
                            bootstrap,
                            &cluster_configuration,
                            &cluster.ca_pem,
                            cluster_port,
                            &dir,
                            &args.dirs,
                        )
                        .await?,
                )
            }
            None => None,
        };
        let identity = async {
            if let Some(prepared) = &control_plane {
                // The node's identity comes from this host's own server, and its kubelet
                // talks to it.
                let local = Cluster {
                    server: format!("https://{}", prepared.control_plane.endpoint()),
                    ca_pem: cluster.ca_pem.clone(),
                };
                write_bootstrap_kubeconfig(&local, &token, &bootstrap_kubeconfig)?;
            }
            ekube_kubelet::bootstrap::Bootstrap {
                kubeconfig: &config.kubeconfig,
                bootstrap_kubeconfig: &bootstrap_kubeconfig,
                pki_dir: &pki_dir,
                node_name: &node_name,
                timeout: Duration::from_secs(120),
            }
            .ensure()
            .await
            .context("TLS bootstrap")
        }
        .await;
        if let Err(e) = identity {
            if let Some(prepared) = &control_plane {
                prepared.undo(&args.dirs).await;
            }
            return Err(e);
        }
        anyhow::Ok((shared, control_plane))
    }
    .await;
    // The token is a credential: it is not left on the node, whatever happened.
    let _ = std::fs::remove_file(&bootstrap_kubeconfig);
    let (shared, control_plane) = match joined {
        Ok(joined) => joined,
        Err(e) => {
            let _ = std::fs::remove_file(&config.kubeconfig);
            let _ = std::fs::remove_file(pki_dir.join(ekube_kubelet::bootstrap::CURRENT));
            return Err(e);
        }
    };
    // The cluster's network settings first, so the flags given after `--` win.
    let agent_argv: Vec<OsString> = shared.into_iter().chain(agent_argv).collect();
    let config: agent::Config = component("agent", agent_argv.clone(), &[])?;
    println!("[kubelet-start] The node's client certificate was issued to system:node:{node_name}");

    // Once the node registers, it is marked as a control-plane node.
    let mark = control_plane.map(|prepared| {
        let admin = prepared
            .control_plane
            .kubeconfig_dir
            .join(crate::init::ADMIN_CONF);
        let taints = discovery
            .control_plane
            .as_ref()
            .map(control_plane::Joining::taints)
            .unwrap_or_default();
        let node_name = node_name.clone();
        tokio::spawn(async move {
            let client = ekube_api::client::from_kubeconfig(&admin).await?;
            crate::init::mark_control_plane(client, &node_name, &taints).await?;
            println!(
                "[mark-control-plane] Marked the node {node_name} as control-plane (label \"{}=''\", taints {})",
                crate::init::CONTROL_PLANE_ROLE,
                serde_json::Value::from(taints)
            );
            anyhow::Ok(())
        })
    });
    if args.foreground {
        println!("[kubelet-start] Running the node agent");
        if let Some(mark) = mark {
            tokio::spawn(async move {
                match mark.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => eprintln!("error: [mark-control-plane] {e:#}"),
                    Err(e) => eprintln!("error: [mark-control-plane] {e}"),
                }
            });
        }
        return agent::run(config, crate::shutdown_signal())
            .await
            .context("agent");
    }
    let mut argv = vec![OsString::from("agent")];
    argv.extend(agent_argv);
    let started = args.dirs.spawn("agent", &argv)?;
    println!("[kubelet-start] Started the node agent ({started})");
    let control_plane = mark.is_some();
    if let Some(mark) = mark {
        mark.await.context("[mark-control-plane]")??;
    }
    if control_plane {
        println!(
            "\nThis node has joined the cluster and a new control plane instance was created:\n\
             * Certificate signing request was sent to apiserver and approval was received.\n\
             * The node agent was informed of the new secure connection details.\n\
             * Control plane label and taint were applied to the new node.\n\
             * The API server on this host serves the cluster's etcd.\n"
        );
        return Ok(());
    }
    println!(
        "\nThis node has joined the cluster:\n\
         * Certificate signing request was sent to apiserver and a response was received.\n\
         * The node agent was informed of the new secure connection details.\n\n\
         Run 'kubectl get nodes' on the control-plane to see this node join the cluster.\n"
    );
    Ok(())
}

/// What discovery establishes: the API server's URL and the CA to trust it with.
struct Cluster {
    server: String,
    ca_pem: Vec<u8>,
}

/// Reads `cluster-info` until it carries a signature for `token` (or `timeout` passes), checks
/// it and the CA pin, then reads it again over verified TLS.
async fn discover(
    endpoint: &str,
    token: &Token,
    pins: &[String],
    timeout: Duration,
) -> Result<Cluster> {
    let url: http::Uri = format!("https://{endpoint}")
        .parse()
        .with_context(|| format!("{endpoint:?} is not a host:port"))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let (cluster_info, ca_pem, server) = loop {
        let why_not = match read_cluster_info(&url, None).await {
            Ok(cm) => match check_signature(&cm, token) {
                Ok(kubeconfig) => break (cm, kubeconfig.0, kubeconfig.1),
                Err(Unsigned::Never(e)) => return Err(e),
                Err(Unsigned::NotYet(e)) => e,
            },
            Err(e) => e,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(why_not.context(format!("discovery gave up after {timeout:?}")));
        }
        tracing::debug!(error = %why_not, "discovery: trying again");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let hash = bootstrap::ca_cert_hash(&ca_pem).map_err(anyhow::Error::msg)?;
    if !pins.is_empty() && !pins.contains(&hash) {
        bail!(
            "cluster CA found in cluster-info ConfigMap is invalid: its public key is {hash}, and \
             none of the pins given ({}) match it",
            pins.join(", ")
        );
    }
    // The same object over TLS verified with that CA: the endpoint really holds its key.
    let verified = read_cluster_info(&url, Some(&ca_pem))
        .await
        .context("reading cluster-info again over TLS verified with the pinned CA")?;
    if verified
        .data
        .as_ref()
        .and_then(|d| d.get(bootstrap::KUBECONFIG_KEY))
        != cluster_info
            .data
            .as_ref()
            .and_then(|d| d.get(bootstrap::KUBECONFIG_KEY))
    {
        bail!("cluster-info changed between the unverified and the verified read; try again");
    }
    Ok(Cluster { server, ca_pem })
}

/// Why cluster-info does not carry a good signature: `NotYet` may change on a later read (the
/// signer has not run yet), `Never` will not.
enum Unsigned {
    NotYet(anyhow::Error),
    Never(anyhow::Error),
}

/// The CA (PEM) and server of cluster-info's kubeconfig, once its signature for `token`
/// verifies.
fn check_signature(cm: &ConfigMap, token: &Token) -> Result<(Vec<u8>, String), Unsigned> {
    let data = cm.data.clone().unwrap_or_default();
    let Some(kubeconfig) = data.get(bootstrap::KUBECONFIG_KEY) else {
        return Err(Unsigned::Never(anyhow::anyhow!(
            "cluster-info has no {:?} key",
            bootstrap::KUBECONFIG_KEY
        )));
    };
    let Some(jws) = data.get(&format!("{}{}", bootstrap::JWS_PREFIX, token.id)) else {
        return Err(Unsigned::NotYet(anyhow::anyhow!(
            "there is no JWS signed token in the cluster-info ConfigMap for token id {:?}: the \
             token is invalid for this cluster, or it has expired or been deleted (create a new \
             one with `ekube token create` on the control plane)",
            token.id
        )));
    };
    bootstrap::verify_detached(jws, kubeconfig, token).map_err(|e| {
        Unsigned::Never(anyhow::anyhow!(
            "failed to verify the JWS signature of cluster-info ({e}); can't trust this API server"
        ))
    })?;
    let parsed = Kubeconfig::from_yaml(kubeconfig)
        .map_err(|e| Unsigned::Never(anyhow::anyhow!("cluster-info's kubeconfig: {e}")))?;
    let cluster = parsed
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| {
            Unsigned::Never(anyhow::anyhow!("cluster-info's kubeconfig has no cluster"))
        })?;
    let ca = cluster
        .certificate_authority_data
        .as_deref()
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .ok_or_else(|| {
            Unsigned::Never(anyhow::anyhow!(
                "cluster-info's kubeconfig has no certificate-authority-data"
            ))
        })?;
    let server = cluster.server.clone().ok_or_else(|| {
        Unsigned::Never(anyhow::anyhow!("cluster-info's kubeconfig has no server"))
    })?;
    Ok((ca, server))
}

/// `kube-public/cluster-info`, read anonymously; over unverified TLS when `ca` is `None`.
async fn read_cluster_info(url: &http::Uri, ca: Option<&[u8]>) -> Result<ConfigMap> {
    let mut config = kube::Config::new(url.clone());
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(10));
    match ca {
        Some(pem) => {
            let (_, block) = x509_parser::pem::parse_x509_pem(pem)
                .map_err(|e| anyhow::anyhow!("the cluster CA is not PEM: {e}"))?;
            config.root_cert = Some(vec![block.contents]);
        }
        None => config.accept_invalid_certs = true,
    }
    let client = ekube_api::client::from_config(config).context("building the discovery client")?;
    Api::<ConfigMap>::namespaced(client, bootstrap::CLUSTER_INFO_NAMESPACE)
        .get(bootstrap::CLUSTER_INFO)
        .await
        .with_context(|| {
            format!(
                "reading {}/{} from {url}",
                bootstrap::CLUSTER_INFO_NAMESPACE,
                bootstrap::CLUSTER_INFO
            )
        })
}

/// Writes the kubeconfig that authenticates with the token, for TLS bootstrap.
fn write_bootstrap_kubeconfig(cluster: &Cluster, token: &Token, path: &Path) -> Result<()> {
    let ca = base64::engine::general_purpose::STANDARD.encode(&cluster.ca_pem);
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kubernetes", "cluster": {"server": cluster.server, "certificate-authority-data": ca}}],
        "contexts": [{"name": "tls-bootstrap-token-user@kubernetes", "context": {"cluster": "kubernetes", "user": "tls-bootstrap-token-user"}}],
        "current-context": "tls-bootstrap-token-user@kubernetes",
        "users": [{"name": "tls-bootstrap-token-user", "user": {"token": token.to_string()}}],
    });
    Ok(ekube_kubelet::bootstrap::write_private(
        path,
        &serde_yaml::to_string(&kubeconfig)?,
    )?)
}

/// The cluster-wide network settings `ekube init` stored (`kubeadm-config`, `kubelet-config`),
/// as agent flags; none when the cluster has no such ConfigMaps (a control plane started
/// with `ekube server`, whose nodes take the defaults or their own flags).
async fn cluster_settings(
    bootstrap_kubeconfig: &Path,
) -> Result<(Vec<OsString>, Option<serde_json::Value>)> {
    let client = ekube_api::client::from_kubeconfig(bootstrap_kubeconfig).await?;
    let configmaps: Api<ConfigMap> = Api::namespaced(client, "kube-system");
    let read = |name: &'static str| {
        let configmaps = configmaps.clone();
        async move {
            match configmaps.get(name).await {
                Ok(cm) => Ok(Some(cm.data.unwrap_or_default())),
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 403 => Ok(None),
                Err(e) => Err(e).with_context(|| format!("reading kube-system/{name}")),
            }
        }
    };
    let (Some(kubeadm), Some(kubelet)) = (
        read(crate::init::KUBEADM_CONFIG).await?,
        read(crate::init::KUBELET_CONFIG).await?,
    ) else {
        return Ok((Vec::new(), None));
    };
    let yaml = |data: &std::collections::BTreeMap<String, String>,
                key: &str|
     -> Result<serde_json::Value> {
        serde_yaml::from_str(data.get(key).map(String::as_str).unwrap_or_default())
            .with_context(|| format!("the cluster's {key} is not YAML"))
    };
    let cluster = yaml(&kubeadm, "ClusterConfiguration")?;
    let kubelet = yaml(&kubelet, "kubelet")?;
    let pod_subnet = cluster["networking"]["podSubnet"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("the cluster's ClusterConfiguration has no networking.podSubnet")?;
    let dns = kubelet["clusterDNS"][0]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("the cluster's KubeletConfiguration has no clusterDNS")?;
    let domain = kubelet["clusterDomain"].as_str().unwrap_or("cluster.local");
    println!(
        "[kubelet-start] Using the cluster's settings: pod network {pod_subnet}, DNS {dns}, domain {domain}"
    );
    Ok((
        crate::init::shared_agent_args(pod_subnet, dns, domain),
        Some(cluster),
    ))
}
