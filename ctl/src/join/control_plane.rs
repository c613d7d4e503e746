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
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::daemon::Dirs;
use crate::init::{self, ControlPlane, certs_upload};

/// What the host joins as, besides a node.
#[derive(Debug, Clone)]
pub struct Joining {
    pub certificate_key: String,
    pub advertise: Option<IpAddr>,
    pub port: Option<u16>,
    pub data_dir: PathBuf,
    pub cert_dir: Option<PathBuf>,
    /// The node's taints (default: kubeadm's control-plane taint).
    pub taints: Option<Vec<Value>>,
}

/// Flags of the cluster's API servers that are each host's own, not the cluster's.
const HOST_FLAGS: &[&str] = &["advertise-address", "bind-address", "secure-port"];

impl Joining {
    /// Fetches the certificates and runs this host's server; returns its settings once it
    /// answers. `bootstrap` is a client authenticated with the bootstrap token, `cluster`
    /// the stored `ClusterConfiguration`, `ca_pem` the CA discovery pinned.
    pub async fn prepare(
        &self,
        bootstrap: kube::Client,
        cluster: &Value,
        ca_pem: &[u8],
        kubeconfig_dir: &Path,
        dirs: &Dirs,
    ) -> Result<ControlPlane> {
        let key = certs_upload::CertificateKey::parse(&self.certificate_key)
            .context("--certificate-key")?;
        let control_plane = self.control_plane(cluster, kubeconfig_dir)?;
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
        let files = certs_upload::download(bootstrap, &key).await?;
        ensure!(
            files.get("ca.crt").map(Vec::as_slice) == Some(ca_pem),
            "the uploaded ca.crt is not the CA discovery pinned: refusing to run a server \
             with it"
        );
        write_files(&files, &control_plane)?;

        println!(
            "[certs] Using certificateDir folder {:?}",
            control_plane.cert_dir.display().to_string()
        );
        let ca = ekube_apiserver::pki::Ca::load(&control_plane.cert_dir)?;
        // As kubeadm's join: no break-glass `super-admin.conf` on further hosts.
        for (file, user, groups) in init::KUBECONFIGS {
            if *file != init::SUPER_ADMIN_CONF {
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
        init::wait_healthy(&kubeconfig_dir.join(init::ADMIN_CONF), dirs).await?;
        Ok(control_plane)
    }

    /// This host's server: the cluster's settings with this host's address and directories.
    fn control_plane(&self, cluster: &Value, kubeconfig_dir: &Path) -> Result<ControlPlane> {
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
            port: self.port.unwrap_or(6443),
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

/// Writes the downloaded files: the CA and keys into the certificate directory, an external
/// etcd's client files where the cluster's `etcd.external` says. A file already there with
/// other contents is not replaced: it belongs to another cluster, or to someone else.
fn write_files(files: &BTreeMap<String, Vec<u8>>, control_plane: &ControlPlane) -> Result<()> {
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
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(data))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
