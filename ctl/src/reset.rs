//! `ekube reset`: undoes on this host what `ekube init` or `ekube join` did, as `kubeadm
//! reset` does.
//!
//! It stops the components they started (found by the pid and argv records under
//! `--run-dir`), then removes, with the agent's own flags telling where: every pod (through
//! the runtime's CRI, networks released through CNI), the kubelet's and runtime's state, the
//! pods' logs and cgroups, the overlay device and the pod bridge, the proxy's eBPF pins (which
//! detaches its programs), the `KUBE-*`/`EKUBE-*` iptables chains and the proxy's nftables
//! table, the CNI configuration and IPAM state, the node's certificates and kubeconfig; on a
//! control-plane host also the control plane's database, PKI and kubeconfig files. What it leaves is said at the end.

use std::ffi::OsString;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::agent;
use crate::daemon::Dirs;
use crate::flags::component;

/// How long a component gets to stop on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// The kubeconfig files kubeadm (and so init and join) write.
const KUBECONFIGS: &[&str] = &[
    "admin.conf",
    "super-admin.conf",
    "kubelet.conf",
    "bootstrap-kubelet.conf",
    "controller-manager.conf",
    "scheduler.conf",
];
/// Chains of ekube's iptables rules: the proxy's (kube-proxy's names) and the overlay's and
/// CNI plugin's.
const CHAIN_PREFIXES: &[&str] = &["KUBE-", "EKUBE-"];

/// Flags of `ekube reset`.
#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    /// Do not ask for confirmation.
    #[arg(short, long)]
    force: bool,
    /// Where init or join wrote the kubeconfig files.
    #[arg(long, default_value = "/etc/kubernetes")]
    kubeconfig_dir: PathBuf,
    /// The control plane's certificates (default: as the control plane was started, else
    /// `/etc/kubernetes/pki`).
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    #[command(flatten)]
    dirs: Dirs,
    /// The node agent's flags (after `--`), for an agent `--run-dir` has no record of.
    #[arg(last = true, allow_hyphen_values = true)]
    agent_args: Vec<OsString>,
}

/// What reset did and did not do, printed at the end.
#[derive(Default)]
struct Report {
    left: Vec<String>,
}

impl Report {
    fn removed(&mut self, what: &str, path: &Path) {
        match remove_path(path) {
            Ok(true) => println!("[reset] Deleted {what} {}", path.display()),
            Ok(false) => {}
            Err(e) => self.left.push(format!("{what} {}: {e:#}", path.display())),
        }
    }
}

pub async fn run(args: ResetArgs) -> Result<()> {
    if !args.force && !confirmed()? {
        bail!("aborted reset operation");
    }
    let server = match args.dirs.recorded("server")? {
        Some(argv) => Some(component::<crate::ServerArgs>(
            "server",
            argv[1..].to_vec(),
            &[],
        )?),
        None => None,
    };
    let agent = agent_config(&args)?;
    let mut report = Report::default();

    for name in ["agent", "server"] {
        if let Some(what) = args.dirs.stop(name, STOP_GRACE).await? {
            println!("[reset] Stopped the {name} ({what})");
        }
    }
    if let Some(agent) = &agent {
        reset_node(agent, &mut report).await?;
    }
    if let Some(server) = &server {
        let config = &server.apiserver;
        report.removed("the control plane's data in", &config.data_dir);
        if let Some(extra) = &config.write_kubeconfig {
            report.removed("the kubeconfig", extra);
        }
    }
    let cert_dir = args
        .cert_dir
        .clone()
        .or_else(|| server.as_ref().map(|s| s.apiserver.cert_dir()))
        .unwrap_or_else(|| PathBuf::from("/etc/kubernetes/pki"));
    report.removed("the certificates in", &cert_dir);
    for file in KUBECONFIGS {
        report.removed("the kubeconfig", &args.kubeconfig_dir.join(file));
    }
    for name in ["agent", "server"] {
        for path in args.dirs.forget(name) {
            println!("[reset] Deleted {}", path.display());
        }
    }
    for dir in [&args.dirs.run_dir, &args.dirs.log_dir] {
        let _ = std::fs::remove_dir(dir);
    }

    println!(
        "\nThe reset process does not clean up:\n\
         * the Node object: delete it on the control plane (`kubectl delete node <name>`);\n\
         * kubeconfig files elsewhere, such as $HOME/.kube/config;\n\
         * the bpffs mount and net.ipv4.ip_forward, which other programs may use;\n\
         * iptables rules of other programs."
    );
    if report.left.is_empty() {
        return Ok(());
    }
    for left in &report.left {
        eprintln!("[reset] Could not remove {left}");
    }
    bail!(
        "{} things were left behind (listed above); remove them by hand",
        report.left.len()
    )
}

/// Asks as kubeadm does; anything but `y` declines.
fn confirmed() -> Result<bool> {
    println!(
        "[reset] WARNING: Changes made to this host by 'ekube init' or 'ekube join' will be reverted."
    );
    print!("[reset] Are you sure you want to proceed? [y/N]: ");
    std::io::Write::flush(&mut std::io::stdout())?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim().eq_ignore_ascii_case("y"))
}

/// The node agent's flags: recorded when init or join started it, else given after `--`;
/// `None` when neither (no agent ran here, or not one reset knows of).
fn agent_config(args: &ResetArgs) -> Result<Option<agent::Config>> {
    let argv = match args.dirs.recorded("agent")? {
        Some(argv) => argv[1..].to_vec(),
        None if !args.agent_args.is_empty() => {
            let kubeconfig = args.kubeconfig_dir.join("kubelet.conf");
            let mut argv = vec!["--kubeconfig".into(), kubeconfig.into()];
            argv.extend(args.agent_args.iter().cloned());
            argv
        }
        None => {
            println!(
                "[reset] No node agent was started here by init or join ({} has no record); \
                 pass its flags after `--` to clean up after it",
                args.dirs.run_dir.display()
            );
            return Ok(None);
        }
    };
    component("agent", argv, &[]).map(Some)
}

/// Removes what the node agent made: pods first (they use everything else), then the
/// network, the datapath and the files.
async fn reset_node(agent: &agent::Config, report: &mut Report) -> Result<()> {
    let kubelet = agent.kubelet()?;
    let flannel = agent.flannel()?;
    let proxy = agent.proxy()?;
    let conflist = agent.conflist();

    println!("[reset] Removing the pods of this node");
    let pods = ekube_kubelet::reset::reset(&kubelet)
        .await
        .context("removing the node's pods")?;
    for pod in &pods.pods {
        println!("[reset] Removed pod {pod}");
    }
    for path in &pods.removed {
        println!("[reset] Deleted {}", path.display());
    }
    report.left.extend(pods.left);

    let links = [format!("flannel.{}", flannel.vni), conflist.bridge.clone()];
    let deleted = tokio::task::spawn_blocking(move || {
        ekube_cni::netlink::with_handle(|h| async move {
            let mut deleted = Vec::new();
            for link in links {
                if ekube_cni::netlink::delete_link(&h, &link).await? {
                    deleted.push(link);
                }
            }
            Ok(deleted)
        })
    })
    .await?
    .context("deleting the overlay device and the pod bridge")?;
    for link in deleted {
        println!("[reset] Deleted link {link} (and its routes)");
    }

    let node_name = ekube_api::flags::node_name(proxy.hostname_override.as_deref())?;
    let datapath = ekube_proxy::datapath::DatapathConfig {
        cgroup: proxy.cgroup_path.clone(),
        bpffs: proxy.bpffs_path.clone(),
        ..ekube_proxy::datapath::DatapathConfig::new(node_name)
    };
    if datapath.pin_dir().exists() {
        ekube_proxy::datapath::remove_pins(&datapath).context("removing the eBPF pins")?;
        println!(
            "[reset] Deleted the eBPF pins in {} (the service programs are detached)",
            datapath.pin_dir().display()
        );
    }
    for variant in [
        ekube_proxy::iptables::Variant::Legacy,
        ekube_proxy::iptables::Variant::Nft,
    ] {
        let mut binary = ekube_proxy::iptables::Binary::new(variant);
        match ekube_proxy::iptables::cleanup::cleanup(&mut binary, CHAIN_PREFIXES) {
            Ok(chains) => {
                for chain in chains {
                    println!("[reset] Deleted iptables chain {chain} ({variant:?})");
                }
            }
            Err(e) => report
                .left
                .push(format!("iptables rules ({variant:?}): {e}")),
        }
    }
    match ekube_proxy::nftables::remove_table() {
        Ok(true) => println!(
            "[reset] Deleted the nftables table ip {}",
            ekube_proxy::nftables::render::TABLE
        ),
        Ok(false) => {}
        Err(e) => report.left.push(format!("nftables rules: {e}")),
    }

    for (what, path) in [
        (
            "the CNI configuration",
            agent.cni_conf_dir.join(ekube_cni::config::CONFLIST_FILE),
        ),
        ("the CNI IPAM state in", agent.cni_data_dir.clone()),
        ("the overlay's subnet file", flannel.subnet_file.clone()),
        ("the node's kubeconfig", agent.kubeconfig.clone()),
    ] {
        report.removed(what, &path);
    }
    if let Some(dir) = &agent.cert_dir {
        report.removed("the node's certificates in", dir);
    }
    Ok(())
}

/// Removes a file or a directory tree; `false` when it was not there.
fn remove_path(path: &Path) -> Result<bool> {
    let removed = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => Err(e),
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
    };
    removed.map(|()| true).map_err(Into::into)
}
