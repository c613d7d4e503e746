//! `ekube init`: a control plane on this host in one command, as `kubeadm init` brings one up,
//! in kubeadm's phases (skip any with `--skip-phases`):
//!
//! preflight → certs (the cluster CA) → kubeconfig (kubeadm's files and identities:
//! `super-admin.conf` in `system:masters`, `controller-manager.conf`, `scheduler.conf`, this
//! node's `kubelet.conf`, and `admin.conf` in `kubeadm:cluster-admins` once the control plane
//! answers) → control-plane (`ekube server`, detached) → wait-control-plane (`/readyz`) →
//! upload-config (`kube-system/kubeadm-config` and `kubelet-config`, readable by joining
//! nodes) → upload-certs (with `--upload-certs`: the CA and keys, sealed under the certificate
//! key, for further control-plane hosts; [`certs_upload`]) → kubelet-start (`ekube agent`, detached) → mark-control-plane (role label and
//! taints) → bootstrap-token → addons.
//!
//! It returns with both processes running (pid files under `--run-dir`, logs under
//! `--log-dir`) and prints kubeadm's closing text with the exact `ekube join` command.
//! Flags after `--` go to the node agent.

pub mod certs_upload;
pub mod config;
mod preflight;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use ekube_api::bootstrap::{self, Token};
use ekube_api::k8s_openapi::api::core::v1::{ConfigMap, Node};
use ipnetwork::Ipv4Network;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::daemon::Dirs;

pub use config::{init_defaults, join_defaults};

const PHASES: &[&str] = &[
    "preflight",
    "certs",
    "kubeconfig",
    "control-plane",
    "wait-control-plane",
    "upload-config",
    "upload-certs",
    "kubelet-start",
    "mark-control-plane",
    "bootstrap-token",
    "addons",
];
/// The ConfigMaps joining nodes read their settings from, and who may read them.
pub const KUBEADM_CONFIG: &str = "kubeadm-config";
pub const KUBELET_CONFIG: &str = "kubelet-config";
pub const CONTROL_PLANE_ROLE: &str = "node-role.kubernetes.io/control-plane";
/// kubeadm's kubeconfig files, and who each one is (CN, groups).
pub const ADMIN_CONF: &str = "admin.conf";
pub const SUPER_ADMIN_CONF: &str = "super-admin.conf";
const CONTROLLER_MANAGER_CONF: &str = "controller-manager.conf";
const SCHEDULER_CONF: &str = "scheduler.conf";
pub const KUBECONFIGS: &[(&str, &str, &[&str])] = &[
    // Bound to cluster-admin by the `kubeadm:cluster-admins` ClusterRoleBinding, so taking
    // the binding away takes the file's powers away (unlike `system:masters`).
    (ADMIN_CONF, "kubernetes-admin", &["kubeadm:cluster-admins"]),
    // The break-glass identity: `system:masters` passes every authorization check.
    (
        SUPER_ADMIN_CONF,
        "kubernetes-super-admin",
        &["system:masters"],
    ),
    (
        CONTROLLER_MANAGER_CONF,
        "system:kube-controller-manager",
        &[],
    ),
    (SCHEDULER_CONF, "system:kube-scheduler", &[]),
];
/// How long the control plane and the node get to come up.
const START_TIMEOUT: Duration = Duration::from_secs(240);

/// `ekube init`, or one of its phases alone (`ekube init phase <name>`, with the same flags).
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct InitCommand {
    #[command(subcommand)]
    phase: Option<PhaseCommand>,
    #[command(flatten)]
    args: InitArgs,
}

#[derive(Debug, clap::Subcommand)]
enum PhaseCommand {
    /// Run one phase of `ekube init` alone.
    Phase {
        /// The phase to run.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(PHASES))]
        name: String,
        #[command(flatten)]
        args: InitArgs,
    },
}

/// Flags of `ekube init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// A kubeadm configuration file (`InitConfiguration`, `ClusterConfiguration`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The address the API server advertises (default: this host's address on the default
    /// route).
    #[arg(long)]
    apiserver_advertise_address: Option<IpAddr>,
    /// The API server's port.
    #[arg(long)]
    apiserver_bind_port: Option<u16>,
    /// The pod network; every node gets a /24 of it.
    #[arg(long)]
    pod_network_cidr: Option<String>,
    /// The Service ClusterIP range.
    #[arg(long)]
    service_cidr: Option<String>,
    /// The cluster's DNS domain.
    #[arg(long)]
    service_dns_domain: Option<String>,
    /// This node's name (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// The bootstrap token nodes join with (default: a random one).
    #[arg(long)]
    token: Option<String>,
    /// How long the token is valid; `0` for ever.
    #[arg(long, value_parser = ekube_api::flags::parse_duration)]
    token_ttl: Option<Duration>,
    /// Where the certificates go.
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    /// Phases not to run.
    #[arg(long, value_delimiter = ',')]
    skip_phases: Vec<String>,
    /// Preflight checks whose errors are only warnings (`all` for every one).
    #[arg(long, value_delimiter = ',')]
    ignore_preflight_errors: Vec<String>,
    /// Say what would be done, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Where the control plane keeps its state.
    #[arg(long, default_value = "/var/lib/ekube/server")]
    data_dir: PathBuf,
    /// Where the kubeconfig files go.
    #[arg(long, default_value = "/etc/kubernetes")]
    kubeconfig_dir: PathBuf,
    /// Upload the CA and keys every control-plane host needs to `kube-system/kubeadm-certs`,
    /// sealed under the certificate key, for `ekube join --control-plane`.
    #[arg(long)]
    upload_certs: bool,
    /// The certificate key (64 hex digits) to seal the uploaded certificates with (default: a
    /// random one, printed).
    #[arg(long)]
    certificate_key: Option<String>,
    /// The directory on every node that holds the `local-path` class's volumes (as k3s's
    /// flag; kubeadm installs no storage).
    #[arg(long, default_value = crate::addons::LocalPath::DEFAULT_PATH)]
    default_local_storage_path: PathBuf,
    #[command(flatten)]
    dirs: Dirs,
    /// Flags for this node's `ekube agent` (after `--`).
    #[arg(last = true, allow_hyphen_values = true)]
    agent_args: Vec<OsString>,
}

/// What init sets up, from the flags or the configuration file and the defaults.
#[derive(Debug)]
struct Plan {
    advertise: IpAddr,
    port: u16,
    pod_subnet: Ipv4Network,
    service_subnet: Ipv4Network,
    dns_domain: String,
    local_storage_path: PathBuf,
    node_name: String,
    token: Token,
    token_ttl: Duration,
    cert_dir: PathBuf,
    taints: Vec<Value>,
    cert_sans: Vec<String>,
    ignore_preflight_errors: Vec<String>,
    /// `extraArgs` of the control-plane components and `kubeletExtraArgs` in `--config`.
    apiserver_args: Vec<(String, String)>,
    controller_manager_args: Vec<(String, String)>,
    scheduler_args: Vec<(String, String)>,
    kubelet_args: Vec<(String, String)>,
}

impl Plan {
    fn resolve(args: &InitArgs) -> Result<Self> {
        let file = match &args.config {
            Some(path) => {
                let given = [
                    (
                        "apiserver-advertise-address",
                        args.apiserver_advertise_address.is_some(),
                    ),
                    ("apiserver-bind-port", args.apiserver_bind_port.is_some()),
                    ("pod-network-cidr", args.pod_network_cidr.is_some()),
                    ("service-cidr", args.service_cidr.is_some()),
                    ("service-dns-domain", args.service_dns_domain.is_some()),
                    ("node-name", args.node_name.is_some()),
                    ("token", args.token.is_some()),
                    ("token-ttl", args.token_ttl.is_some()),
                    ("cert-dir", args.cert_dir.is_some()),
                ];
                config::read_file(path, config::INIT_KINDS, &given)?
            }
            None => config::FileConfig::default(),
        };
        let advertise = match args.apiserver_advertise_address.or(file.advertise_address) {
            Some(ip) => ip,
            None => default_address()?,
        };
        let cidr = |given: Option<String>, default: &str, what: &str| -> Result<Ipv4Network> {
            let text = given.unwrap_or_else(|| default.to_string());
            text.parse()
                .with_context(|| format!("{what} {text:?} is not an IPv4 CIDR"))
        };
        let token = match args.token.clone().or(file.token) {
            Some(t) => Token::parse(&t).map_err(anyhow::Error::msg)?,
            None => Token::generate(),
        };
        let node_name =
            ekube_api::flags::node_name(args.node_name.as_deref().or(file.node_name.as_deref()))
                .context("finding the node's name")?;
        let mut ignore = args.ignore_preflight_errors.clone();
        ignore.extend(file.ignore_preflight_errors);
        Ok(Self {
            advertise,
            port: args.apiserver_bind_port.or(file.bind_port).unwrap_or(6443),
            pod_subnet: cidr(
                args.pod_network_cidr.clone().or(file.pod_subnet),
                "10.244.0.0/16",
                "the pod network",
            )?,
            service_subnet: cidr(
                args.service_cidr.clone().or(file.service_subnet),
                "10.96.0.0/12",
                "the service network",
            )?,
            dns_domain: args
                .service_dns_domain
                .clone()
                .or(file.dns_domain)
                .unwrap_or_else(|| "cluster.local".into()),
            local_storage_path: args.default_local_storage_path.clone(),
            node_name,
            token,
            token_ttl: args
                .token_ttl
                .or(file.token_ttl)
                .unwrap_or(Duration::from_secs(24 * 3600)),
            cert_dir: args
                .cert_dir
                .clone()
                .or(file.cert_dir.map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("/etc/kubernetes/pki")),
            taints: file.taints.unwrap_or_else(default_taints),
            cert_sans: file.cert_sans,
            ignore_preflight_errors: ignore,
            apiserver_args: file.apiserver_args,
            controller_manager_args: file.controller_manager_args,
            scheduler_args: file.scheduler_args,
            kubelet_args: file.kubelet_args,
        })
    }

    /// The cluster DNS address kubeadm gives the kubelets: the 10th of the service range.
    fn cluster_dns(&self) -> Result<Ipv4Addr> {
        crate::addons::cluster_dns_ip(self.service_subnet)
    }

    fn endpoint(&self) -> String {
        endpoint(self.advertise, self.port)
    }

    /// Where the external etcd's client files are, by their `etcd.external` field.
    fn etcd_files(&self) -> BTreeMap<String, PathBuf> {
        etcd_external(&self.apiserver_args).1
    }

    /// What this host's `ekube server` runs with.
    fn control_plane(&self, args: &InitArgs) -> ControlPlane {
        ControlPlane {
            advertise: self.advertise,
            port: self.port,
            pod_subnet: self.pod_subnet,
            service_subnet: self.service_subnet,
            cert_dir: self.cert_dir.clone(),
            cert_sans: self.cert_sans.clone(),
            apiserver_args: self.apiserver_args.clone(),
            controller_manager_args: self.controller_manager_args.clone(),
            scheduler_args: self.scheduler_args.clone(),
            data_dir: args.data_dir.clone(),
            kubeconfig_dir: args.kubeconfig_dir.clone(),
        }
    }
}

/// kubeadm's taint of control-plane nodes.
pub fn default_taints() -> Vec<Value> {
    vec![json!({"key": CONTROL_PLANE_ROLE, "effect": "NoSchedule"})]
}

/// `host:port` of an API server, IPv6 addresses in brackets.
fn endpoint(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V6(ip) => format!("[{ip}]:{port}"),
        IpAddr::V4(ip) => format!("{ip}:{port}"),
    }
}

/// The API server flags that name an external etcd (`etcd.external` of a
/// `ClusterConfiguration`, or kube-apiserver's or ekube's flags among `extraArgs`): its
/// endpoints, and its client files by their `etcd.external` field.
pub fn etcd_external(args: &[(String, String)]) -> (Option<String>, BTreeMap<String, PathBuf>) {
    let mut endpoints = None;
    let mut files = BTreeMap::new();
    for (name, value) in args {
        match etcd_field(name) {
            Some("endpoints") => endpoints = Some(value.clone()),
            Some(field) => {
                files.insert(field.to_string(), PathBuf::from(value));
            }
            None => {}
        }
    }
    (endpoints, files)
}

/// The `etcd.external` field an API server flag (ekube's or kube-apiserver's name) sets.
fn etcd_field(flag: &str) -> Option<&'static str> {
    const ETCD_FLAGS: &[(&str, &str, &str)] = &[
        ("datastore-endpoint", "etcd-servers", "endpoints"),
        ("datastore-cafile", "etcd-cafile", "caFile"),
        ("datastore-certfile", "etcd-certfile", "certFile"),
        ("datastore-keyfile", "etcd-keyfile", "keyFile"),
    ];
    ETCD_FLAGS
        .iter()
        .find(|(ours, upstream, _)| flag == *ours || flag == *upstream)
        .map(|(.., field)| *field)
}

/// What a control-plane host's `ekube server` runs with: init's plan, or, on a host joining
/// as a further control plane, the cluster's stored `ClusterConfiguration` with the host's
/// own address and directories.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    pub advertise: IpAddr,
    pub port: u16,
    pub pod_subnet: Ipv4Network,
    pub service_subnet: Ipv4Network,
    pub cert_dir: PathBuf,
    pub cert_sans: Vec<String>,
    pub apiserver_args: Vec<(String, String)>,
    pub controller_manager_args: Vec<(String, String)>,
    pub scheduler_args: Vec<(String, String)>,
    /// Where the server keeps its state (sled's files, when it has no etcd).
    pub data_dir: PathBuf,
    /// Where the kubeconfig files go.
    pub kubeconfig_dir: PathBuf,
}

impl ControlPlane {
    pub fn endpoint(&self) -> String {
        endpoint(self.advertise, self.port)
    }

    /// Whether the server keeps its state in an etcd other hosts can reach.
    pub fn shares_datastore(&self) -> bool {
        etcd_external(&self.apiserver_args).0.is_some()
    }

    /// Writes kubeconfig `file` of the kubeconfig directory for `user` in `groups`, its
    /// client certificate signed by `ca`.
    pub fn write_kubeconfig(
        &self,
        ca: &ekube_apiserver::pki::Ca,
        file: &str,
        user: &str,
        groups: &[&str],
    ) -> Result<()> {
        println!("[kubeconfig] Writing {file:?} kubeconfig file");
        let issued = ca.issue(user, groups, &[], false)?;
        ekube_apiserver::pki::write_kubeconfig(
            &self.kubeconfig_dir.join(file),
            &format!("https://{}", self.endpoint()),
            &ca.cert_pem,
            user,
            &issued,
        )?;
        Ok(())
    }

    /// `ekube server`'s argv, checked by parsing it as `ekube server` will (a bad `extraArgs`
    /// stops init before anything is written).
    pub fn server_argv(&self) -> Result<Vec<OsString>> {
        let mut argv = vec![
            os("server"),
            os("--data-dir"),
            self.data_dir.clone().into(),
            os("--cert-dir"),
            self.cert_dir.clone().into(),
            os("--advertise-address"),
            os(self.advertise.to_string()),
            os("--secure-port"),
            os(self.port.to_string()),
            os("--controller-manager-kubeconfig"),
            self.kubeconfig_dir.join(CONTROLLER_MANAGER_CONF).into(),
            os("--scheduler-kubeconfig"),
            self.kubeconfig_dir.join(SCHEDULER_CONF).into(),
            os("--service-cluster-ip-range"),
            os(self.service_subnet.to_string()),
            os("--kube-controller-manager-arg"),
            os(format!("cluster-cidr={}", self.pod_subnet)),
            // The addons phase installs them (or, skipped, leaves them out).
            os("--disable"),
            os("coredns"),
            os("--disable"),
            os("local-storage"),
        ];
        for san in &self.cert_sans {
            argv.extend([os("--tls-san"), os(san)]);
        }
        for (name, value) in &self.apiserver_args {
            argv.extend([os(format!("--{name}")), os(value)]);
        }
        for (flag, pairs) in [
            (
                "--kube-controller-manager-arg",
                &self.controller_manager_args,
            ),
            ("--kube-scheduler-arg", &self.scheduler_args),
        ] {
            argv.extend(
                pairs
                    .iter()
                    .flat_map(|(n, v)| [os(flag), os(format!("{n}={v}"))]),
            );
        }
        crate::flags::component::<crate::ServerArgs>("server", argv[1..].to_vec(), &[])
            .and_then(|mut server| server.check())
            .context("the control plane's extraArgs")?;
        Ok(argv)
    }
}

/// This host's address on the default route, found the way kubeadm finds it: the source
/// address the kernel would pick (a UDP socket's connect sends nothing).
pub fn default_address() -> Result<IpAddr> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket
        .connect((Ipv4Addr::new(192, 0, 2, 1), 9))
        .and_then(|()| socket.local_addr())
        .map(|a| a.ip())
        .context("this host has no default route: pass --apiserver-advertise-address")
}

pub async fn run(command: InitCommand) -> Result<()> {
    match command.phase {
        None => run_phases(command.args, true).await,
        Some(PhaseCommand::Phase { name, mut args }) => {
            args.skip_phases = PHASES
                .iter()
                .filter(|p| **p != name)
                .map(|p| p.to_string())
                .collect();
            run_phases(args, false).await
        }
    }
}

/// Runs the phases not skipped; `closing` prints kubeadm's closing text with the join command.
async fn run_phases(args: InitArgs, closing: bool) -> Result<()> {
    if let Some(bad) = args
        .skip_phases
        .iter()
        .find(|p| !PHASES.contains(&p.as_str()))
    {
        bail!(
            "--skip-phases: no phase {bad:?} (phases: {})",
            PHASES.join(", ")
        );
    }
    let plan = Plan::resolve(&args)?;
    let skip = |phase: &str| args.skip_phases.iter().any(|p| p == phase);
    let certificate_key = match (&args.certificate_key, args.upload_certs) {
        (Some(_), false) => {
            bail!("--certificate-key seals the certificates --upload-certs uploads: give both")
        }
        (Some(key), true) => {
            Some(certs_upload::CertificateKey::parse(key).context("--certificate-key")?)
        }
        (None, true) => Some(certs_upload::CertificateKey::generate()?),
        (None, false) => None,
    }
    .filter(|_| !skip("upload-certs"));
    let admin = args.kubeconfig_dir.join(ADMIN_CONF);
    let super_admin = args.kubeconfig_dir.join(SUPER_ADMIN_CONF);
    let kubelet_conf = args.kubeconfig_dir.join("kubelet.conf");
    let control_plane = plan.control_plane(&args);
    let server_argv = control_plane.server_argv()?;
    // Checked before anything is written; where the agent keeps its certificate is needed
    // even when something else starts it (`--skip-phases kubelet-start`).
    let (agent_argv, agent) = agent_argv(&args, &plan, &kubelet_conf)?;
    if !skip("kubeconfig") || !skip("kubelet-start") {
        check_node_name(&agent, &plan)?;
    }

    if !skip("preflight") {
        println!("[preflight] Running pre-flight checks");
        let host = preflight::Host {
            advertise: plan.advertise,
            port: plan.port,
            node_name: &plan.node_name,
            files: KUBECONFIGS
                .iter()
                .map(|(file, ..)| args.kubeconfig_dir.join(file))
                .chain([kubelet_conf.clone()])
                .collect(),
            dirs: vec![args.data_dir.clone()],
        };
        let failures = preflight::run(&host, &plan.ignore_preflight_errors);
        if !failures.is_empty() {
            bail!(
                "error execution phase preflight: {}",
                preflight::report(&failures)
            );
        }
    }
    if args.dry_run {
        println!(
            "[dry-run] would write the CA to {}",
            plan.cert_dir.display()
        );
        for (file, user, _) in KUBECONFIGS {
            println!(
                "[dry-run] would write {} for {user}",
                args.kubeconfig_dir.join(file).display()
            );
        }
        println!("[dry-run] would write {}", kubelet_conf.display());
        println!("[dry-run] would run: ekube {}", shown(&server_argv));
        println!("[dry-run] would run: ekube {}", shown(&agent_argv));
        println!(
            "[dry-run] would label and taint node {:?}: {}",
            plan.node_name,
            Value::from(plan.taints.clone())
        );
        println!("[dry-run] would create bootstrap token {}", plan.token);
        return Ok(());
    }

    let mut ca = None;
    if !skip("certs") {
        println!(
            "[certs] Using certificateDir folder {:?}",
            plan.cert_dir.display().to_string()
        );
        ca = Some(ekube_apiserver::pki::Ca::load_or_create(&plan.cert_dir)?);
    }
    let kubeconfigs = ca.as_ref().filter(|_| !skip("kubeconfig"));
    if let Some(ca) = kubeconfigs {
        // admin.conf once the control plane answers (below), so whoever waits for it can use
        // it at once; here only when that wait is skipped.
        for (file, user, groups) in KUBECONFIGS {
            if *file != ADMIN_CONF || skip("wait-control-plane") {
                control_plane.write_kubeconfig(ca, file, user, groups)?;
            }
        }
        write_node_kubeconfig(ca, &plan, &agent, &kubelet_conf)?;
    }
    let started = Instant::now();
    if !skip("control-plane") {
        let started = args.dirs.spawn("server", &server_argv)?;
        println!("[control-plane] Started the control plane ({started})");
    }
    if !skip("wait-control-plane") {
        println!(
            "[wait-control-plane] Waiting for the API server at https://{}",
            plan.endpoint()
        );
        wait_healthy(&super_admin, &args.dirs).await?;
        println!(
            "[wait-control-plane] The API server is healthy after {:.1}s",
            started.elapsed().as_secs_f64()
        );
        if let Some(ca) = kubeconfigs {
            let (file, user, groups) = KUBECONFIGS
                .iter()
                .find(|(file, ..)| *file == ADMIN_CONF)
                .expect("admin.conf is one of kubeadm's kubeconfigs");
            control_plane.write_kubeconfig(ca, file, user, groups)?;
        }
    }
    let client = || ekube_api::client::from_kubeconfig(&admin);
    if !skip("upload-config") {
        println!(
            "[upload-config] Storing the configuration in ConfigMaps {KUBEADM_CONFIG:?} and {KUBELET_CONFIG:?} in namespace \"kube-system\""
        );
        upload_config(client().await?, &plan).await?;
    }
    if let Some(key) = &certificate_key {
        println!(
            "[upload-certs] Storing the certificates in Secret {:?} in the \"kube-system\" Namespace",
            certs_upload::SECRET
        );
        if !control_plane.shares_datastore() {
            eprintln!(
                "W: [upload-certs] this control plane keeps its state in sled on this host: \
                 further control planes need an etcd the servers share (etcd.external)"
            );
        }
        let files = certs_upload::files(&plan.cert_dir, &plan.etcd_files())?;
        let owner = crate::token::create_proxy(
            &admin,
            certs_upload::TTL,
            "Proxy for managing TTL for the kubeadm-certs secret",
        )
        .await?;
        certs_upload::upload(client().await?, key, &files, (&owner.0, &owner.1)).await?;
        println!("[upload-certs] Using certificate key:\n{key}");
    }
    if !skip("kubelet-start") {
        let started = args.dirs.spawn("agent", &agent_argv)?;
        println!("[kubelet-start] Started the node agent ({started})");
    }
    if !skip("mark-control-plane") {
        println!(
            "[mark-control-plane] Marking the node {} as control-plane by adding the label \"{CONTROL_PLANE_ROLE}=''\" and the taints {}",
            plan.node_name,
            Value::from(plan.taints.clone())
        );
        mark_control_plane(client().await?, &plan.node_name, &plan.taints).await?;
    }
    if !skip("bootstrap-token") {
        println!("[bootstrap-token] Using token: {}", plan.token);
        crate::token::ensure(&admin, &plan.token.to_string(), plan.token_ttl).await?;
        println!(
            "[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to post CSRs and to get them approved automatically, and the \"cluster-info\" ConfigMap in the \"kube-public\" namespace"
        );
    }
    if !skip("addons") {
        crate::addons::Dns::new(plan.service_subnet, &plan.dns_domain)?
            .install(client().await?)
            .await
            .context("installing the cluster DNS add-on")?;
        println!("[addons] Applied essential addon: CoreDNS (ekube dns)");
        crate::addons::LocalPath {
            path: plan.local_storage_path.clone(),
        }
        .install(client().await?)
        .await
        .context("installing the local-path storage add-on")?;
        println!(
            "[addons] Applied addon: local-path storage (default StorageClass local-path, volumes under {})",
            plan.local_storage_path.display()
        );
        println!("[addons] The service proxy runs in every node's agent");
    }

    if !closing {
        return Ok(());
    }
    let ca_pem = match ca {
        Some(ca) => ca.cert_pem,
        None => std::fs::read_to_string(plan.cert_dir.join("ca.crt"))
            .with_context(|| format!("reading {}/ca.crt", plan.cert_dir.display()))?,
    };
    let hash = bootstrap::ca_cert_hash(ca_pem.as_bytes()).map_err(anyhow::Error::msg)?;
    let join = format!(
        "ekube join {endpoint} --token {token} \\\n\t--discovery-token-ca-cert-hash {hash}",
        endpoint = plan.endpoint(),
        token = plan.token,
    );
    let control_plane = match &certificate_key {
        Some(key) => format!(
            "You can now join any number of control-plane hosts (the datastore must be an \
             etcd they all reach) by running the following command on each as root:\n\n\
             {join} \\\n\t--control-plane --certificate-key {key}\n\n\
             Please note that the certificate-key gives access to cluster sensitive data, keep \
             it secret!\nAs a safeguard, uploaded-certs will be deleted in two hours; if \
             necessary, you can use \"ekube init phase upload-certs --upload-certs\" (with the \
             same --config) to reload certs afterward.\n\n"
        ),
        None => String::new(),
    };
    println!(
        "\nYour Kubernetes control-plane has initialized successfully!\n\n\
         To start using your cluster, you need to run the following as a regular user:\n\n  \
         mkdir -p $HOME/.kube\n  \
         sudo cp -i {admin} $HOME/.kube/config\n  \
         sudo chown $(id -u):$(id -g) $HOME/.kube/config\n\n\
         Alternatively, if you are the root user, you can run:\n\n  \
         export KUBECONFIG={admin}\n\n\
         The pod network (a VXLAN overlay) runs in every node's agent already.\n\n\
         {control_plane}\
         Then you can join any number of worker nodes by running the following on each as root:\n\n\
         {join}",
        admin = admin.display(),
    );
    Ok(())
}

fn shown(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn os(s: impl Into<OsString>) -> OsString {
    s.into()
}

/// `kubeletExtraArgs` as the agent's `--kubelet-arg name=value` flags.
pub fn kubelet_args(pairs: &[(String, String)]) -> Vec<OsString> {
    pairs
        .iter()
        .flat_map(|(n, v)| [os("--kubelet-arg"), os(format!("{n}={v}"))])
        .collect()
}

/// This node's agent: the network settings every node shares (what joining nodes read from
/// the uploaded ConfigMaps) first, so the user's flags after `--` win.
fn agent_argv(
    args: &InitArgs,
    plan: &Plan,
    kubelet_conf: &Path,
) -> Result<(Vec<OsString>, crate::agent::Config)> {
    let mut argv = vec![
        os("agent"),
        os("--kubeconfig"),
        kubelet_conf.into(),
        os("--hostname-override"),
        os(&plan.node_name),
    ];
    if let IpAddr::V4(ip) = plan.advertise {
        argv.extend([os("--node-ip"), os(ip.to_string())]);
    }
    argv.extend(shared_agent_args(
        plan.pod_subnet,
        plan.cluster_dns()?,
        &plan.dns_domain,
    ));
    argv.extend(kubelet_args(&plan.kubelet_args));
    argv.extend(args.agent_args.iter().cloned());
    // Parsed as `ekube agent` will parse it (a flag given again wins), so bad flags stop init
    // before anything is written.
    let agent: crate::agent::Config = crate::flags::component("agent", argv[1..].to_vec(), &[])?;
    Ok((argv, agent))
}

/// The agent must register under the name the node's identity and marks are for.
fn check_node_name(agent: &crate::agent::Config, plan: &Plan) -> Result<()> {
    match agent.hostname_override.as_ref() {
        Some(name) if *name != plan.node_name => bail!(
            "the agent's --hostname-override {name:?} is not the node name {:?}: give \
             --node-name {name} (or nodeRegistration.name in --config)",
            plan.node_name
        ),
        _ => Ok(()),
    }
}

/// This node's identity, as kubeadm leaves it: the certificate and key of
/// `system:node:<name>` as the agent's `kubelet-client-current.pem` (a dated file and the
/// link to it, which the agent's certificate rotation replaces), and `kubelet.conf` naming it.
fn write_node_kubeconfig(
    ca: &ekube_apiserver::pki::Ca,
    plan: &Plan,
    agent: &crate::agent::Config,
    kubelet_conf: &Path,
) -> Result<()> {
    println!("[kubeconfig] Writing \"kubelet.conf\" kubeconfig file");
    let user = format!("system:node:{}", plan.node_name);
    let issued = ca.issue(&user, &["system:nodes"], &[], false)?;
    let pair = ekube_kubelet::bootstrap::Pair {
        cert: issued.cert_pem,
        key: issued.key_pem,
    };
    let current = ekube_kubelet::bootstrap::install(&agent.pki_dir(), &pair, SystemTime::now())?;
    ekube_apiserver::pki::write_kubeconfig_for_file(
        kubelet_conf,
        &format!("https://{}", plan.endpoint()),
        &ca.cert_pem,
        &user,
        &current,
    )?;
    Ok(())
}

/// The agent flags that carry the cluster-wide network settings.
pub fn shared_agent_args(pod_subnet: Ipv4Network, dns: Ipv4Addr, domain: &str) -> Vec<OsString> {
    [
        ("--flannel-arg", format!("cluster-cidr={pod_subnet}")),
        ("--kubelet-arg", format!("cluster-dns={dns}")),
        ("--kubelet-arg", format!("cluster-domain={domain}")),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [os(flag), os(value)])
    .collect()
}

/// Waits for the admin kubeconfig and then for `/readyz`, naming the server's log on failure.
pub async fn wait_healthy(admin: &Path, dirs: &Dirs) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    let log = dirs.log_hint("server");
    let mut last = String::from("no admin kubeconfig yet");
    while Instant::now() < deadline {
        if admin.exists()
            && let Ok(client) = ekube_api::client::from_kubeconfig(admin).await
        {
            let req = http::Request::get("/readyz").body(Vec::new())?;
            match client.request_text(req).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => last = body,
                Err(e) => last = e.to_string(),
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("the control plane did not become healthy within {START_TIMEOUT:?} ({last}); see {log}")
}

/// kubeadm's `kubeadm-config` and `kubelet-config`, and the Roles that let joining nodes (and
/// nodes) read them.
async fn upload_config(client: kube::Client, plan: &Plan) -> Result<()> {
    let cluster_configuration = serde_yaml::to_string(&cluster_configuration(plan))?;
    let kubelet = format!(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nclusterDNS:\n- {}\nclusterDomain: {}\n",
        plan.cluster_dns()?,
        plan.dns_domain,
    );
    let apply = PatchParams::apply("kubeadm").force();
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    for (name, key, text) in [
        (
            KUBEADM_CONFIG,
            "ClusterConfiguration",
            cluster_configuration,
        ),
        (KUBELET_CONFIG, "kubelet", kubelet),
    ] {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "kube-system"}, "data": {key: text}});
        configmaps
            .patch(name, &apply, &Patch::Apply(&cm))
            .await
            .with_context(|| format!("storing kube-system/{name}"))?;
        let role_name = format!("kubeadm:nodes-{name}");
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": role_name, "namespace": "kube-system"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [name], "verbs": ["get"]}]});
        let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": role_name, "namespace": "kube-system"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:bootstrappers:kubeadm:default-node-token"},
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"},
        ]});
        apply_rbac(
            &client,
            &apply,
            &[("roles", role), ("rolebindings", binding)],
        )
        .await?;
    }
    Ok(())
}

/// The `ClusterConfiguration` kubeadm stores in `kubeadm-config`: what a further control-plane
/// host needs to run as this one does (its `extraArgs`, and the external etcd as
/// `etcd.external`), and the network settings joining nodes read.
fn cluster_configuration(plan: &Plan) -> Value {
    let (etcd_endpoints, etcd_files) = etcd_external(&plan.apiserver_args);
    let is_etcd_flag = |name: &str| etcd_field(name).is_some();
    let extra_args = |pairs: &[(String, String)], skip: &dyn Fn(&str) -> bool| -> Value {
        pairs
            .iter()
            .filter(|(name, _)| !skip(name))
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect()
    };
    let mut doc = json!({
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "ClusterConfiguration",
        "certificatesDir": plan.cert_dir,
        "clusterName": "kubernetes",
        "kubernetesVersion": ekube_api::KUBE_VERSION,
        "networking": {
            "dnsDomain": plan.dns_domain,
            "podSubnet": plan.pod_subnet.to_string(),
            "serviceSubnet": plan.service_subnet.to_string(),
        },
        "apiServer": {"extraArgs": extra_args(&plan.apiserver_args, &is_etcd_flag)},
        "controllerManager": {"extraArgs": extra_args(&plan.controller_manager_args, &|_| false)},
        "scheduler": {"extraArgs": extra_args(&plan.scheduler_args, &|_| false)},
    });
    if !plan.cert_sans.is_empty() {
        doc["apiServer"]["certSANs"] = json!(plan.cert_sans);
    }
    if let Some(endpoints) = etcd_endpoints {
        let mut external = json!({"endpoints": endpoints.split(',').collect::<Vec<_>>()});
        for (field, path) in etcd_files {
            external[field] = json!(path);
        }
        doc["etcd"] = json!({"external": external});
    }
    doc
}

/// Applies namespaced RBAC objects (`(plural, object)`) in `kube-system`.
pub(crate) async fn apply_rbac(
    client: &kube::Client,
    apply: &PatchParams,
    objects: &[(&str, Value)],
) -> Result<()> {
    for (plural, obj) in objects {
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let resource = kube::api::ApiResource {
            group: "rbac.authorization.k8s.io".into(),
            version: "v1".into(),
            api_version: "rbac.authorization.k8s.io/v1".into(),
            kind: obj["kind"].as_str().unwrap_or_default().into(),
            plural: plural.to_string(),
        };
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(client.clone(), "kube-system", &resource);
        api.patch(name, apply, &Patch::Apply(obj))
            .await
            .with_context(|| format!("storing {plural} kube-system/{name}"))?;
    }
    Ok(())
}

/// Waits for the Node `node_name`, then labels it as a control-plane node and adds `taints`.
pub async fn mark_control_plane(
    client: kube::Client,
    node_name: &str,
    wanted: &[Value],
) -> Result<()> {
    let nodes: Api<Node> = Api::all(client);
    let deadline = Instant::now() + START_TIMEOUT;
    let node = loop {
        if let Some(node) = nodes.get_opt(node_name).await? {
            break node;
        }
        ensure!(
            Instant::now() < deadline,
            "node {node_name} did not register within {START_TIMEOUT:?}; see the agent's log"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut taints: Vec<Value> = node
        .spec
        .and_then(|s| s.taints)
        .into_iter()
        .flatten()
        .map(|t| serde_json::to_value(t).unwrap_or_default())
        .collect();
    for t in wanted {
        if !taints
            .iter()
            .any(|have| have["key"] == t["key"] && have["effect"] == t["effect"])
        {
            taints.push(t.clone());
        }
    }
    let patch = json!({
        "metadata": {"labels": {CONTROL_PLANE_ROLE: "", "node.kubernetes.io/exclude-from-external-load-balancers": ""}},
        "spec": {"taints": taints},
    });
    nodes
        .patch(node_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("marking node {node_name}"))?;
    Ok(())
}
