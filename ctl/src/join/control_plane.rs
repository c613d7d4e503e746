//! `ekube join --control-plane`: the host runs a further `ekube server` of the cluster, as
//! `kubeadm join --control-plane` adds one.
//!
//! control-plane-prepare: the cluster's `ClusterConfiguration` (`kube-system/kubeadm-config`)
//! says how its servers run; it must name an external etcd (a cluster on sled has its state
//! on one host, and a second server there would be a second cluster). The CA and keys come
//! from `kube-system/kubeadm-certs`, opened with the certificate key
//! ([`crate::init::certs_upload`]); the CA must be the one discovery pinned. The host's
//! kubeconfigs are issued by that CA, and its server starts (detached) on its own address →
//! the node's TLS bootstrap and agent, against this host's server → mark-control-plane.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::daemon::Dirs;
use crate::init::{self, ControlPlane, certs_upload};

/// What the host joins as, besides a node.
#[derive(Debug, Clone)]
pub struct Joining {
    pub certificate_key: certs_upload::CertificateKey,
    pub advertise: Option<IpAddr>,
    pub port: Option<u16>,
    pub data_dir: PathBuf,
    pub cert_dir: Option<PathBuf>,
    /// The node's taints (default: kubeadm's control-plane taint).
    pub taints: Option<Vec<Value>>,
}

/// Flags of the cluster's API servers that are each host's own, not the cluster's.
const HOST_FLAGS: &[&str] = &["advertise-address", "bind-address", "secure-port"];

/// A host prepared as a control plane: its server's settings, and what preparing it wrote, to
/// take back if the join fails later.
pub struct Prepared {
    pub control_plane: ControlPlane,
    written: Vec<PathBuf>,
}

impl Prepared {
    /// Stops the server the join started and removes the files it wrote.
    pub async fn undo(&self, dirs: &Dirs) {
        if let Err(e) = dirs.stop("server", Duration::from_secs(10)).await {
            eprintln!("error: stopping the server this join started: {e:#}");
        }
        for path in &self.written {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Joining {
    /// Fetches the certificates and runs this host's server; returns its settings once it
    /// answers, or takes back what it did and fails. `bootstrap` is a client authenticated
    /// with the bootstrap token, `cluster` the stored `ClusterConfiguration`, `ca_pem` the CA
    /// discovery pinned, `cluster_port` the port of the server discovery asked (every server
    /// of a cluster serves on one port).
    pub async fn prepare(
        &self,
        bootstrap: kube::Client,
        cluster: &Value,
        ca_pem: &[u8],
        cluster_port: u16,
        kubeconfig_dir: &Path,
        dirs: &Dirs,
    ) -> Result<Prepared> {
        let control_plane = self.control_plane(cluster, cluster_port, kubeconfig_dir)?;
        preflight(&control_plane)?;
        ensure!(
            control_plane.shares_datastore(),
            "this cluster keeps its state in the sled store of its first control-plane host \
             (its ClusterConfiguration names no etcd.external): a further control plane \
             needs a datastore the servers share. Move the cluster onto an etcd with `ekube \
             datastore migrate` and run its servers with --datastore-endpoint (or \
             etcd.external in the kubeadm configuration) first"
        );
        println!(
            "[download-certs] Downloading the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace"
        );
        let files = certs_upload::download(bootstrap, &self.certificate_key).await?;
        ensure!(
            files.get("ca.crt").map(Vec::as_slice) == Some(ca_pem),
            "the uploaded ca.crt is not the CA discovery pinned: refusing to run a server \
             with it"
        );
        let mut prepared = Prepared {
            control_plane,
            written: Vec::new(),
        };
        if let Err(e) = start(&mut prepared, &files, kubeconfig_dir, dirs).await {
            prepared.undo(dirs).await;
            return Err(e);
        }
        Ok(prepared)
    }

    /// This host's server: the cluster's settings with this host's address and directories.
    fn control_plane(
        &self,
        cluster: &Value,
        cluster_port: u16,
        kubeconfig_dir: &Path,
    ) -> Result<ControlPlane> {
        let port = self.port.unwrap_or(cluster_port);
        ensure!(
            port == cluster_port,
            "--apiserver-bind-port {port}: this cluster's servers serve on {cluster_port}, and \
             every server of a cluster serves on one port (the kubernetes Service's endpoints \
             carry one)"
        );
        let text = serde_yaml::to_string(cluster)?;
        let file = init::config::parse(&text, &["ClusterConfiguration"])
            .context("the cluster's ClusterConfiguration (kube-system/kubeadm-config)")?;
        let subnet = |given: Option<String>, what: &str| -> Result<ipnetwork::Ipv4Network> {
            given
                .with_context(|| format!("the cluster's ClusterConfiguration has no {what}"))?
                .parse()
                .with_context(|| format!("the cluster's {what}"))
        };
        let advertise = match self.advertise {
            Some(ip) => ip,
            None => init::default_address()?,
        };
        let cert_dir = self
            .cert_dir
            .clone()
            .or(file.cert_dir.map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/etc/kubernetes/pki"));
        Ok(ControlPlane {
            advertise,
            port,
            pod_subnet: subnet(file.pod_subnet, "networking.podSubnet")?,
            service_subnet: subnet(file.service_subnet, "networking.serviceSubnet")?,
            cert_dir,
            cert_sans: file.cert_sans,
            apiserver_args: file
                .apiserver_args
                .into_iter()
                .filter(|(name, _)| !HOST_FLAGS.contains(&name.as_str()))
                .collect(),
            controller_manager_args: file.controller_manager_args,
            scheduler_args: file.scheduler_args,
            data_dir: self.data_dir.clone(),
            kubeconfig_dir: kubeconfig_dir.to_path_buf(),
        })
    }

    /// The taints the node gets.
    pub fn taints(&self) -> Vec<Value> {
        self.taints.clone().unwrap_or_else(init::default_taints)
    }
}

/// Refuses a host that holds a control plane's files already, or whose API server port is
/// taken, before anything is written.
fn preflight(control_plane: &ControlPlane) -> Result<()> {
    for (file, ..) in init::KUBECONFIGS {
        let path = control_plane.kubeconfig_dir.join(file);
        ensure!(
            !path.exists(),
            "[preflight] {} already exists: this host is a control plane already (run `ekube \
             reset` first)",
            path.display()
        );
    }
    let address = std::net::SocketAddr::new(control_plane.advertise, control_plane.port);
    std::net::TcpListener::bind(address).with_context(|| {
        format!("[preflight] this host's API server cannot listen on {address}")
    })?;
    Ok(())
}

/// Writes the certificates and kubeconfigs (recording each in `prepared`), starts the server
/// and waits until it answers.
async fn start(
    prepared: &mut Prepared,
    files: &BTreeMap<String, Vec<u8>>,
    kubeconfig_dir: &Path,
    dirs: &Dirs,
) -> Result<()> {
    let control_plane = prepared.control_plane.clone();
    write_files(files, &control_plane, &mut prepared.written)?;
    println!(
        "[certs] Using certificateDir folder {:?}",
        control_plane.cert_dir.display().to_string()
    );
    let ca = ekube_apiserver::pki::Ca::load(&control_plane.cert_dir)?;
    // As kubeadm's join: no break-glass `super-admin.conf` on further hosts.
    for (file, user, groups) in init::KUBECONFIGS {
        if *file != init::SUPER_ADMIN_CONF {
            prepared.written.push(kubeconfig_dir.join(file));
            control_plane.write_kubeconfig(&ca, file, user, groups)?;
        }
    }
    let argv = control_plane.server_argv()?;
    let started = dirs.spawn("server", &argv)?;
    println!("[control-plane] Started the control plane ({started})");
    println!(
        "[wait-control-plane] Waiting for the API server at https://{}",
        control_plane.endpoint()
    );
    init::wait_healthy(&kubeconfig_dir.join(init::ADMIN_CONF), dirs).await
}

/// Writes the downloaded files: the CA and keys into the certificate directory, an external
/// etcd's client files where the cluster's `etcd.external` says, each recorded in `written`.
/// A file already there with the same contents is left as it is; one with other contents is
/// not replaced: it belongs to another cluster, or to someone else.
fn write_files(
    files: &BTreeMap<String, Vec<u8>>,
    control_plane: &ControlPlane,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    let (_, etcd_paths) = init::etcd_external(&control_plane.apiserver_args);
    let mut targets: Vec<(&str, PathBuf)> = certs_upload::CERT_DIR_FILES
        .iter()
        .map(|name| (*name, control_plane.cert_dir.join(name)))
        .collect();
    for (name, field) in certs_upload::EXTERNAL_ETCD_FILES {
        if let Some(path) = etcd_paths.get(*field) {
            ensure!(
                files.contains_key(*name),
                "the uploaded certificates have no {name}, which etcd.external.{field} names"
            );
            targets.push((name, path.clone()));
        }
    }
    ekube_apiserver::pki::create_private_dir(&control_plane.cert_dir)?;
    for (name, path) in targets {
        let data = &files[name];
        match std::fs::read(&path) {
            Ok(have) if have == *data => continue,
            Ok(_) => bail!(
                "{} exists with other contents than the cluster's {name}: this host holds \
                 another cluster's certificates (run `ekube reset` first)",
                path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        let text = std::str::from_utf8(data)
            .with_context(|| format!("the uploaded {name} is not PEM text"))?;
        ekube_api::files::write_atomic(&path, text, 0o600)
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(())
}
