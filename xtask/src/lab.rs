//! `cargo xtask lab up|down`: the lab of network-namespace hosts (DESIGN.md §8).
//!
//! `up` clears leftovers of an earlier run with the same name, builds the underlay, starts the
//! registry, makes the test images available in it, starts the cluster components when an
//! `ekube` binary that knows them is found, and leaves everything running. `down` ends it all.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use clap::Subcommand;
use ekube_lab::{
    AGENT_CMD, CmdTemplate, DEFAULT_NAME, DEFAULT_ROOT, INIT_CMD, JOIN_CMD, KUBEADM_CONFIG, Lab,
    LabConfig,
};

#[derive(clap::Args)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Subcommand)]
enum LabCommand {
    /// Bring a lab up (after clearing leftovers of a crashed run with the same name).
    Up(UpArgs),
    /// End every process of a lab and remove its namespaces, cgroups, pins and files.
    Down(DownArgs),
}

#[derive(clap::Args)]
pub(crate) struct UpArgs {
    /// Number of nodes (1-9).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Lab name: namespaces are `<name>-fab`, `<name>-n1`, …, `<name>-ext`.
    #[arg(long, default_value = DEFAULT_NAME)]
    name: String,
    /// The `ekube` binary to run on the nodes (default: target/debug/ekube when present).
    #[arg(long)]
    ekube: Option<PathBuf>,
    /// OCI layout of the test images (built when missing).
    #[arg(long, default_value = ekube_lab::images::DEFAULT_LAYOUT)]
    images: PathBuf,
    /// Do not build or push the test images.
    #[arg(long)]
    no_images: bool,
    /// Also push the Debian-based Docker Hub look-alikes (`nginx:alpine`, `busybox`; built
    /// once, about 2 minutes) and run the auth registry on `:5001`.
    #[arg(long)]
    hub: bool,
    /// Command line of the control plane on node 1 (placeholders like `{ip}`, `{dir}`); the
    /// default reads the kubeadm configuration the lab writes to node 1's `kubeadm.yaml`.
    #[arg(long, default_value = INIT_CMD)]
    server_cmd: String,
    /// Command line that starts each node (joins it to the cluster and runs its agent); node 1,
    /// whose identity init wrote, runs `ekube agent` with it instead.
    #[arg(long, default_value = JOIN_CMD)]
    node_cmd: String,
    /// Bring up only the network, registry and images, not the cluster components.
    #[arg(long)]
    no_cluster: bool,
    /// A highly available control plane: an etcd member (TLS, the lab's etcd CA) and an
    /// `ekube server` on each of the first three nodes (`ekube init --upload-certs` on node
    /// 1, `ekube join --control-plane` on the others), every agent with its API server load
    /// balancer.
    #[arg(long, conflicts_with_all = ["server_cmd", "node_cmd"])]
    ha: bool,
}

#[derive(clap::Args)]
struct DownArgs {
    /// Lab name.
    #[arg(long, default_value = DEFAULT_NAME)]
    name: String,
}

pub fn run(args: LabArgs) -> Result<()> {
    init_tracing();
    match args.command {
        LabCommand::Up(args) => up(args),
        LabCommand::Down(args) => {
            Lab::teardown(Path::new(DEFAULT_ROOT), &args.name)
                .with_context(|| format!("tearing down lab {}", args.name))?;
            Lab::remove_shared_dirs();
            println!("lab {} is down", args.name);
            Ok(())
        }
    }
}

/// Logs to stderr at `info` unless `RUST_LOG` says otherwise.
pub(crate) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The `ekube` binary to use: the given one, or the workspace's debug build.
pub(crate) fn find_ekube(given: Option<PathBuf>) -> Option<PathBuf> {
    if let Some(path) = given {
        return Some(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("debug/ekube");
    path.exists().then_some(path)
}

/// Whether `ekube <subcommand> --help` succeeds, i.e. the binary has that component yet.
fn supports(ekube: &Path, subcommand: &str) -> bool {
    Command::new(ekube)
        .args([subcommand, "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl UpArgs {
    /// A lab of `nodes` nodes named `name` running the cluster with the default commands.
    pub(crate) fn cluster(name: &str, nodes: usize) -> Self {
        Self {
            nodes,
            name: name.to_owned(),
            ekube: None,
            images: PathBuf::from(ekube_lab::images::DEFAULT_LAYOUT),
            no_images: false,
            hub: false,
            server_cmd: INIT_CMD.to_owned(),
            node_cmd: JOIN_CMD.to_owned(),
            no_cluster: false,
            ha: false,
        }
    }
}

fn up(args: UpArgs) -> Result<()> {
    let (lab, ekube) = start(&args)?;
    print_summary(&lab, ekube.as_deref());
    lab.detach();
    Ok(())
}

/// Brings the lab up and returns it (torn down when dropped) with the `ekube` binary it runs.
pub(crate) fn start(args: &UpArgs) -> Result<(Lab, Option<PathBuf>)> {
    let mut config = LabConfig::new(&args.name);
    config.nodes = args.nodes;
    config.images = (!args.no_images).then(|| args.images.clone());
    if args.hub {
        config.hub_images = Some(PathBuf::from(ekube_lab::hub::DEFAULT_LAYOUT));
        config.auth_registry = true;
    }
    config
        .vars
        .insert("images".into(), args.images.display().to_string());
    let ekube = if args.no_cluster {
        None
    } else {
        find_ekube(args.ekube.clone())
    };
    let ekube = match ekube {
        Some(ekube) => {
            anyhow::ensure!(ekube.exists(), "--ekube {}: no such file", ekube.display());
            Some(
                std::fs::canonicalize(&ekube)
                    .with_context(|| format!("resolving {}", ekube.display()))?,
            )
        }
        None => None,
    };
    if let Some(ekube) = &ekube {
        config
            .vars
            .insert("ekube".into(), ekube.display().to_string());
        if supports(ekube, "init") {
            config.server = Some(CmdTemplate::parse(&args.server_cmd));
            config.kubeadm_config = Some(KUBEADM_CONFIG.to_owned());
        }
        if supports(ekube, "agent") {
            config.node = Some(CmdTemplate::parse(&args.node_cmd));
            config.joined_node = Some(CmdTemplate::parse(AGENT_CMD));
        }
        if args.ha {
            config.high_availability();
        }
    }
    let lab = Lab::up(config).with_context(|| format!("bringing lab {} up", args.name))?;
    Ok((lab, ekube))
}

fn print_summary(lab: &Lab, ekube: Option<&Path>) {
    let name = lab.name();
    let config = lab.config();
    println!("lab {name} is up: {} node(s)", config.nodes);
    for h in lab.hosts() {
        println!("  {:<10} {:<15} {}", h.netns, h.ip, h.dir.display());
    }
    println!("registry: http://{}", lab.registry());
    for image in lab.images() {
        println!("  {}  {}", image.reference(), image.manifest_digest);
    }
    match (ekube, config.server.is_some(), config.node.is_some()) {
        (None, ..) => {
            println!("no ekube binary found (build it, or pass --ekube PATH): no cluster started")
        }
        (Some(e), false, false) => println!(
            "{} has no `server`/`agent` yet: no cluster started",
            e.display()
        ),
        (Some(_), server, node) => {
            println!(
                "started: control plane on {name}-n1 (ekube init): {server}, agent on every node: {node}"
            );
            if config.control_planes > 1 {
                println!(
                    "highly available: etcd on the first {} nodes ({}), a server on the first {} \
                     (n2 and up joined with `ekube join --control-plane`)",
                    config.etcd_members,
                    ekube_lab::etcd::endpoints(&lab.etcd_members()),
                    config.control_planes
                );
            }
            println!("logs: {}/<host>/logs/", config.lab_dir().display());
        }
    }
    println!();
    println!("reach it:");
    if config.server.is_some() {
        println!(
            "  nsenter --net=/run/netns/{name}-n1 kubectl --kubeconfig {} get nodes",
            lab.kubeconfig().display()
        );
    }
    println!(
        "  ip netns exec {name}-ext curl http://192.168.64.10:<nodePort>/   # as an external client"
    );
    println!("  nsenter --net=/run/netns/{name}-n1 <command>                    # on node 1");
    println!("  cargo xtask lab down --name {name}");
}
