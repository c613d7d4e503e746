//! `ekube`: one multi-call binary for every ekube component (like k3s).
//!
//! `ekube server` runs the control plane, `ekube agent` everything a worker node runs, each
//! component also runs alone under its own name, and `ekube kubectl …` (or the binary invoked
//! as `ekubectl`) is the command-line client.

mod addons;
mod agent;
mod certs;
mod daemon;
mod datastore;
mod flags;
mod init;
mod join;
mod kubectl;
mod reset;
mod token;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ekube",
    version,
    about = "A small Kubernetes-compatible cluster with an eBPF service datapath"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Flags of `ekube server`: the apiserver's, plus pass-through flags for the embedded
/// controller-manager and scheduler (`name=value`, as k3s takes them).
#[derive(clap::Args)]
struct ServerArgs {
    #[command(flatten)]
    apiserver: ekube_apiserver::Config,
    /// Extra controller-manager flag, `name=value` (repeatable).
    #[arg(
        long = "kube-controller-manager-arg",
        value_name = "NAME=VALUE",
        allow_hyphen_values = true
    )]
    controller_manager_args: Vec<String>,
    /// Extra scheduler flag, `name=value` (repeatable).
    #[arg(
        long = "kube-scheduler-arg",
        value_name = "NAME=VALUE",
        allow_hyphen_values = true
    )]
    scheduler_args: Vec<String>,
    /// A bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`) to create at start, with which nodes
    /// join (`ekube join`), as `kubeadm init --token` creates one.
    #[arg(long)]
    token: Option<String>,
    /// How long the `--token` is valid; `0` for ever.
    #[arg(long, default_value = "24h0m0s", value_parser = ekube_api::flags::parse_duration)]
    token_ttl: std::time::Duration,
    /// The controller-manager's kubeconfig (as `ekube init` writes it; default: one the server
    /// issues under its data directory, as `system:kube-controller-manager`).
    #[arg(long)]
    controller_manager_kubeconfig: Option<std::path::PathBuf>,
    /// The scheduler's kubeconfig (default: one the server issues, as `system:kube-scheduler`).
    #[arg(long)]
    scheduler_kubeconfig: Option<std::path::PathBuf>,
    /// An add-on not to install (repeatable, as k3s's `--disable`): `coredns`,
    /// `local-storage`.
    #[arg(long, value_enum)]
    disable: Vec<Addon>,
    /// The directory on every node that holds the `local-path` class's volumes (k3s's flag).
    #[arg(long, default_value = addons::LocalPath::DEFAULT_PATH)]
    default_local_storage_path: std::path::PathBuf,
    /// The cluster's DNS domain, which the DNS add-on serves.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
}

/// The add-ons `ekube server` installs.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Addon {
    Coredns,
    LocalStorage,
}

impl ServerArgs {
    /// Moves the controller-manager flags whose work the apiserver does in ekube to the
    /// apiserver: the CSR signer runs there, so `cluster-signing-duration` (as kubeadm's
    /// `controllerManager.extraArgs` or k3s's `--kube-controller-manager-arg` set it) is the
    /// apiserver's `--cluster-signing-duration`.
    fn route(&mut self) -> Result<()> {
        let mut kept = Vec::new();
        for arg in std::mem::take(&mut self.controller_manager_args) {
            match arg
                .trim_start_matches('-')
                .strip_prefix("cluster-signing-duration=")
            {
                Some(value) => {
                    self.apiserver.cluster_signing_duration =
                        ekube_api::flags::parse_interval(value).map_err(|e| {
                            anyhow::anyhow!("controller-manager cluster-signing-duration: {e}")
                        })?;
                }
                None => kept.push(arg),
            }
        }
        self.controller_manager_args = kept;
        Ok(())
    }

    /// Checks what the server would only find wrong after the apiserver started: the token
    /// and the embedded components' pass-through flags.
    fn check(&mut self) -> Result<()> {
        self.route()?;
        if let Some(token) = &self.token {
            ekube_api::bootstrap::Token::parse(token)
                .map_err(anyhow::Error::msg)
                .context("--token")?;
        }
        let placeholder = || vec!["--kubeconfig".into(), "admin.conf".into()];
        flags::component::<ekube_controllers::Config>(
            "controller-manager",
            placeholder(),
            &self.controller_manager_args,
        )?;
        flags::component::<ekube_scheduler::Config>(
            "scheduler",
            placeholder(),
            &self.scheduler_args,
        )?;
        Ok(())
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane: apiserver, controller-manager and scheduler in one process.
    Server(ServerArgs),
    /// Run a node: kubelet (with its container runtime), overlay agent and service proxy.
    /// A flag given twice takes its last value (as `init` and `join` pass on flags after
    /// theirs), a repeatable one collects them all.
    #[command(args_override_self = true)]
    Agent(agent::Config),
    /// Bring up a control plane and this host's node agent (as `kubeadm init`).
    Init(init::InitCommand),
    /// Join this host to a cluster as a node, with a bootstrap token (as `kubeadm join`).
    Join(join::JoinArgs),
    /// Undo what init or join did on this host (as `kubeadm reset`).
    Reset(reset::ResetArgs),
    /// kubeadm's configuration documents.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Run the apiserver alone.
    Apiserver(ekube_apiserver::Config),
    /// Run the controller-manager alone.
    ControllerManager(ekube_controllers::Config),
    /// Run the scheduler alone.
    Scheduler(ekube_scheduler::Config),
    /// Run the kubelet alone.
    Kubelet(ekube_kubelet::Config),
    /// Run the CRI runtime alone.
    Runtime(ekube_kubelet::runtime::Config),
    /// Run the service proxy alone.
    Proxy(ekube_proxy::service::Config),
    /// Run the VXLAN overlay agent alone.
    Flannel(ekube_flannel::Config),
    /// Run the cluster DNS server (the `coredns` add-on's container runs this).
    Dns(ekube_dns::Config),
    /// Run the Ingress controller and proxy (the `ekube-ingress` add-on's container runs this).
    Ingress(ekube_ingress::Config),
    /// Run the local-path provisioner (the `local-path-provisioner` add-on's container runs
    /// this).
    LocalPathProvisioner(ekube_controllers::localpath::Config),
    /// Make or remove one volume directory (what the local-path provisioner's helper pods run).
    #[command(hide = true)]
    LocalPathHelper(ekube_controllers::localpath::HelperArgs),
    /// Run the web UI (the `kubernetes-dashboard` add-on's container runs this).
    Dashboard(ekube_dashboard::Config),
    /// Install optional add-ons into a running cluster (as minikube's `addons`).
    Addons(AddonsArgs),
    /// Device plugins that ship with ekube.
    DevicePlugin {
        #[command(subcommand)]
        command: DevicePluginCommand,
    },
    /// The kubectl-style client (also reachable by invoking this binary as `ekubectl`).
    Kubectl(kubectl::KubectlArgs),
    /// Manage bootstrap tokens, with which nodes join (kubeadm's `token`).
    Token(token::TokenArgs),
    /// Check and renew the cluster's certificates (kubeadm's `certs`).
    Certs(certs::CertsArgs),
    /// Move the cluster's objects between datastores (sled and etcd).
    Datastore(datastore::DatastoreArgs),
}

#[derive(clap::Args)]
struct AddonsArgs {
    /// The kubeconfig of a cluster administrator.
    #[arg(long, global = true, default_value = "/etc/kubernetes/admin.conf")]
    kubeconfig: std::path::PathBuf,
    #[command(subcommand)]
    command: AddonsCommand,
}

#[derive(Subcommand)]
enum AddonsCommand {
    /// Install an add-on, or bring its objects back to what this version installs.
    Enable {
        #[command(subcommand)]
        addon: OptionalAddon,
    },
}

#[derive(Subcommand)]
enum OptionalAddon {
    /// The Ingress controller: DaemonSet `ekube-ingress` on every node's ports, and the
    /// default IngressClass `ekube`.
    Ingress {
        /// The port plain HTTP is served on, on every node.
        #[arg(long, default_value_t = 80)]
        http_port: u16,
        /// The port HTTPS is served on, on every node.
        #[arg(long, default_value_t = 443)]
        https_port: u16,
    },
    /// The web UI: Deployment and Service `kubernetes-dashboard` in namespace
    /// `kubernetes-dashboard`, reached through `kubectl proxy`.
    Dashboard,
}

#[derive(Subcommand)]
enum DevicePluginCommand {
    /// Serve fake devices backed by `/dev/null`: the template for writing a plugin.
    Example(ekube_kubelet::devices::example::Config),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a configuration file of the defaults, to edit and pass to `ekube init --config`
    /// or `ekube join --config`.
    Print {
        #[arg(value_enum)]
        what: PrintWhat,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PrintWhat {
    InitDefaults,
    JoinDefaults,
}

fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let invoked_as = std::env::args_os().next().map(std::path::PathBuf::from);
    if invoked_as
        .as_deref()
        .and_then(|p| p.file_name())
        .is_some_and(|n| n == "ekubectl")
    {
        return exit_on_error(kubectl::run(kubectl::KubectlArgs::parse()).await);
    }
    let cli = Cli::parse();
    if let Command::Kubectl(args) = cli.command {
        return exit_on_error(kubectl::run(args).await);
    }
    init_tracing();
    match cli.command {
        Command::Server(config) => server(config).await,
        Command::Agent(config) => agent::run(config, shutdown_signal()).await.context("agent"),
        Command::Init(args) => init::run(args).await,
        Command::Join(args) => join::run(args).await.context("join"),
        Command::Reset(args) => reset::run(args).await.context("reset"),
        Command::Config {
            command: ConfigCommand::Print { what },
        } => {
            match what {
                PrintWhat::InitDefaults => print!("{}", init::init_defaults()),
                PrintWhat::JoinDefaults => print!("{}", init::join_defaults()),
            }
            Ok(())
        }
        Command::Apiserver(config) => ekube_apiserver::run(config, shutdown_signal())
            .await
            .context("apiserver"),
        Command::ControllerManager(c) => ekube_controllers::run(c, shutdown_signal())
            .await
            .context("controller-manager"),
        Command::Scheduler(c) => ekube_scheduler::run(c, shutdown_signal())
            .await
            .context("scheduler"),
        Command::Kubelet(c) => ekube_kubelet::run(c, shutdown_signal())
            .await
            .context("kubelet"),
        Command::Runtime(c) => ekube_kubelet::runtime::run(c, shutdown_signal())
            .await
            .context("runtime"),
        Command::Proxy(c) => ekube_proxy::service::run(c, shutdown_signal())
            .await
            .context("proxy"),
        Command::Flannel(c) => ekube_flannel::run(c, shutdown_signal())
            .await
            .context("flannel"),
        Command::Dns(c) => ekube_dns::run(c, shutdown_signal()).await.context("dns"),
        Command::Ingress(c) => ekube_ingress::run(c, shutdown_signal())
            .await
            .context("ingress"),
        Command::Dashboard(c) => ekube_dashboard::run(c, shutdown_signal())
            .await
            .context("dashboard"),
        Command::LocalPathProvisioner(c) => ekube_controllers::localpath::run(c, shutdown_signal())
            .await
            .map_err(anyhow::Error::msg)
            .context("local-path provisioner"),
        Command::LocalPathHelper(args) => ekube_controllers::localpath::helper(&args)
            .with_context(|| format!("local-path helper {:?}", args.action)),
        Command::Addons(args) => addons_command(args).await,
        Command::DevicePlugin {
            command: DevicePluginCommand::Example(c),
        } => ekube_kubelet::devices::example::run(c, shutdown_signal())
            .await
            .map_err(anyhow::Error::msg)
            .context("device plugin"),
        Command::Token(args) => exit_on_error(token::run(args).await),
        Command::Certs(args) => certs::run(args),
        Command::Datastore(args) => datastore::run(args).await,
        Command::Kubectl(_) => unreachable!("handled above"),
    }
}

async fn addons_command(args: AddonsArgs) -> Result<()> {
    let AddonsCommand::Enable { addon } = args.command;
    let client = ekube_api::client::from_kubeconfig(&args.kubeconfig).await?;
    match addon {
        OptionalAddon::Ingress {
            http_port,
            https_port,
        } => {
            addons::Ingress {
                http_port,
                https_port,
            }
            .install(client)
            .await
            .context("installing the ingress add-on")?;
            println!(
                "[addons] Applied addon: ingress (DaemonSet kube-system/ekube-ingress on ports {http_port} and {https_port}, IngressClass ekube)"
            );
        }
        OptionalAddon::Dashboard => {
            addons::Dashboard
                .install(client)
                .await
                .context("installing the dashboard add-on")?;
            println!(
                "[addons] Applied addon: dashboard (kubectl proxy, then open http://localhost:8001{})",
                addons::DASHBOARD_PATH
            );
        }
    }
    Ok(())
}

fn report<E: std::fmt::Display>(what: &str, r: Result<Result<(), E>, tokio::task::JoinError>) {
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(component = what, error = %e, "component stopped"),
        Err(e) => tracing::error!(component = what, error = %e, "component panicked"),
    }
}

/// kubectl (and `ekube token`) print their own errors; only the exit status is left to set.
fn exit_on_error(result: Result<()>) -> Result<()> {
    if result.is_err() {
        std::process::exit(1);
    }
    Ok(())
}

/// The control plane in one process: the apiserver, then the controller-manager and the
/// scheduler as its clients, each with its own kubeconfig as kubeadm writes them.
async fn server(mut args: ServerArgs) -> Result<()> {
    let embedded = |kubeconfig: &std::path::Path| {
        vec!["--kubeconfig".into(), kubeconfig.as_os_str().to_owned()]
    };
    // Checked before anything starts, so a bad flag never leaves a half-started control plane.
    args.check()?;
    let dns = (!args.disable.contains(&Addon::Coredns))
        .then(|| {
            addons::Dns::new(
                args.apiserver.service_cluster_ip_range,
                &args.cluster_domain,
            )
        })
        .transpose()?;
    let local_storage = (!args.disable.contains(&Addon::LocalStorage)).then(|| addons::LocalPath {
        path: args.default_local_storage_path.clone(),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let (running, serve) = ekube_apiserver::start(args.apiserver, stopped(stop_rx.clone()))
        .await
        .context("apiserver")?;
    tracing::info!(addr = %running.addr, kubeconfig = %running.admin_kubeconfig.display(), "apiserver ready");
    // As kubeadm runs it: as `system:kube-controller-manager`, each controller as its own
    // ServiceAccount, the bootstrap-token controllers on unless `controllers=` says otherwise
    // (a repeated `--controllers` would add to this list, not replace it).
    let mut cm_argv = embedded(
        args.controller_manager_kubeconfig
            .as_deref()
            .unwrap_or(&running.controller_manager_kubeconfig),
    );
    cm_argv.extend(["--use-service-account-credentials".into(), "true".into()]);
    let own_controllers = args
        .controller_manager_args
        .iter()
        .any(|a| a.trim_start_matches('-').starts_with("controllers="));
    if !own_controllers {
        cm_argv.extend([
            "--controllers".into(),
            ekube_controllers::SERVER_CONTROLLERS.into(),
        ]);
    }
    // The secure ports listen on loopback, as kubeadm's manifests run both components, unless
    // `bind-address=` says otherwise.
    let loopback = |argv: &mut Vec<std::ffi::OsString>, extra: &[String]| {
        if !extra
            .iter()
            .any(|a| a.trim_start_matches('-').starts_with("bind-address="))
        {
            argv.extend(["--bind-address".into(), "127.0.0.1".into()]);
        }
    };
    loopback(&mut cm_argv, &args.controller_manager_args);
    // Several servers may share one etcd: each embedded component stands for its Lease as
    // this host and server address, stable across restarts (so a restarted server takes its
    // own Lease back at once, instead of waiting for it to expire).
    let host = ekube_api::flags::node_name(None).context("finding the host name")?;
    let identity = format!(
        "{host}_{}:{}",
        running.api.config.advertise_address(),
        running.addr.port()
    );
    let elect_as = |argv: &mut Vec<std::ffi::OsString>, extra: &[String]| {
        if !extra.iter().any(|a| {
            a.trim_start_matches('-')
                .starts_with("leader-elect-identity=")
        }) {
            argv.extend(["--leader-elect-identity".into(), identity.clone().into()]);
        }
    };
    elect_as(&mut cm_argv, &args.controller_manager_args);
    let controllers =
        flags::component("controller-manager", cm_argv, &args.controller_manager_args)?;
    // The scheduler runs as itself (kubeadm's `scheduler.conf`), bound by RBAC to
    // `system:kube-scheduler`.
    let mut scheduler_argv = embedded(
        args.scheduler_kubeconfig
            .as_deref()
            .unwrap_or(&running.scheduler_kubeconfig),
    );
    loopback(&mut scheduler_argv, &args.scheduler_args);
    elect_as(&mut scheduler_argv, &args.scheduler_args);
    let scheduler = flags::component("scheduler", scheduler_argv, &args.scheduler_args)?;
    let cm = tokio::spawn(ekube_controllers::run(
        controllers,
        stopped(stop_rx.clone()),
    ));
    let sched = tokio::spawn(ekube_scheduler::run(scheduler, stopped(stop_rx.clone())));
    if let Some(token) = args.token {
        // Stored once the apiserver serves (the future below drives it); nodes joining before
        // that find no signature for the token yet and wait for one.
        let (kubeconfig, ttl) = (running.admin_kubeconfig.clone(), args.token_ttl);
        tokio::spawn(async move {
            match token::ensure(&kubeconfig, &token, ttl).await {
                Ok(()) => tracing::info!("bootstrap token stored"),
                Err(e) => tracing::error!(error = format!("{e:#}"), "storing the bootstrap token"),
            }
        });
    }
    if let Some(dns) = dns {
        let kubeconfig = running.admin_kubeconfig.clone();
        tokio::spawn(install_retrying("cluster DNS", kubeconfig, move |client| {
            dns.objects_installer(client)
        }));
    }
    if let Some(storage) = local_storage {
        let kubeconfig = running.admin_kubeconfig.clone();
        tokio::spawn(install_retrying(
            "local-path storage",
            kubeconfig,
            move |client| storage.objects_installer(client),
        ));
    }
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    serve.await;
    report("controller-manager", cm.await);
    report("scheduler", sched.await);
    Ok(())
}

/// Installs an add-on with the admin kubeconfig, retried until it lands: a server that comes
/// up slowly must not end without its add-ons.
async fn install_retrying<F>(what: &'static str, kubeconfig: std::path::PathBuf, install: F)
where
    F: Fn(kube::Client) -> futures::future::BoxFuture<'static, Result<()>>,
{
    let mut wait = std::time::Duration::from_millis(500);
    loop {
        let installed =
            async { install(ekube_api::client::from_kubeconfig(&kubeconfig).await?).await };
        match installed.await {
            Ok(()) => break tracing::info!("{what} add-on applied"),
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                retry_in = ?wait,
                "installing the {what} add-on"
            ),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_signing_duration_reaches_the_signer_in_the_apiserver() {
        let mut server: ServerArgs = flags::component(
            "server",
            vec![],
            &[
                "kube-controller-manager-arg=cluster-signing-duration=60s".into(),
                "kube-controller-manager-arg=node-monitor-grace-period=20s".into(),
            ],
        )
        .unwrap();
        server.check().unwrap();
        assert_eq!(
            server.apiserver.cluster_signing_duration,
            std::time::Duration::from_secs(60)
        );
        assert_eq!(
            server.controller_manager_args,
            ["node-monitor-grace-period=20s"]
        );
    }

    #[test]
    fn init_takes_a_phase_or_its_own_flags() {
        let phase = Cli::try_parse_from([
            "ekube",
            "init",
            "phase",
            "bootstrap-token",
            "--token",
            "abcdef.0123456789abcdef",
        ]);
        assert!(phase.is_ok());
        let whole =
            Cli::try_parse_from(["ekube", "init", "--dry-run", "--", "--node-ip", "10.0.0.1"]);
        assert!(whole.is_ok());
        assert!(Cli::try_parse_from(["ekube", "init", "phase", "nonsense"]).is_err());
    }
}
