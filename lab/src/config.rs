//! Lab configuration and the fixed layout every lab follows: namespace names, underlay
//! addresses, per-host directories, cgroup paths and bpffs pin directories (DESIGN.md §3, §8).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Lab name used when none is given.
pub const DEFAULT_NAME: &str = "ekl";
/// Where lab state, per-host directories and registry storage live, one subdirectory per lab.
pub const DEFAULT_ROOT: &str = "/var/lib/ekube-lab";
/// The fabric bridge's address; also the registry's.
pub const FABRIC_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 64, 1);
/// The external client's address.
pub const EXT_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 64, 100);
/// Prefix length of the underlay `192.168.64.0/24`.
pub const UNDERLAY_PREFIX: u8 = 24;
/// Port of the lab's image registry.
pub const REGISTRY_PORT: u16 = 5000;
/// `host:port` of the lab's image registry, as used in image references.
pub const REGISTRY: &str = "192.168.64.1:5000";
/// `host:port` of the lab's second registry, which demands HTTP basic auth (htpasswd).
pub const AUTH_REGISTRY: &str = "192.168.64.1:5001";
/// The one account of [`AUTH_REGISTRY`].
pub const AUTH_USER: &str = "ekube";
/// The password of [`AUTH_USER`].
pub const AUTH_PASSWORD: &str = "lab-pull-secret";
/// Where nothing listens: the first, dead, mirror of [`AUTH_REGISTRY`] in every node's
/// `registries.yaml`, so pulls from it show a mirror falling through to the next.
pub const DEAD_MIRROR: &str = "192.168.64.1:5002";
/// `host:port` of the lab's third registry: HTTPS, for clients with a certificate of the lab's
/// registry CA (every node has one), serving what [`AUTH_REGISTRY`] holds.
pub const CERT_REGISTRY: &str = "192.168.64.1:5003";
/// Where bpffs is (or gets) mounted.
pub const BPFFS: &str = "/sys/fs/bpf";
/// Most nodes a lab can have: node `k` sits at `.10*k`, and `.100` is the external client.
pub const MAX_NODES: usize = 9;

/// The kubeadm configuration of [`INIT_CMD`]: the lab's bootstrap token for ever, node 1's
/// name and address, no control-plane taint (pods run on node 1 too), the PKI under `{dir}`.
/// Append component `extraArgs` to its `ClusterConfiguration` (the last document).
pub const KUBEADM_CONFIG: &str = "apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
- token: {token}
  ttl: 0s
localAPIEndpoint:
  advertiseAddress: {ip}
  bindPort: 6443
nodeRegistration:
  name: {node}
  taints: []
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
certificatesDir: {dir}/pki
";

/// `ekube server` started directly on node 1, without init (the baseline `bench init`
/// measures init against): it creates the lab's bootstrap token itself.
pub const SERVER_CMD: &str = "{ekube} server --data-dir {dir}/data/server --bind-address {ip} \
    --advertise-address {ip} --cert-dir {dir}/pki --write-kubeconfig {kubeconfig} \
    --token {token} --token-ttl 0 --default-local-storage-path {lab_dir}/storage";

/// The flags of `ekube agent` on every node: all state under the node's dir, the node's own
/// identity in `{dir}/kubelet.conf`.
macro_rules! agent_flags {
    () => {
        "--kubeconfig {dir}/kubelet.conf --hostname-override {node} \
    --node-ip {ip} --root-dir {dir}/data/kubelet --cgroup-root {cgroup} \
    --cni-conf-dir {dir}/cni/net.d --cni-data-dir {dir}/data/cni --subnet-file {dir}/run/subnet.env \
    --pod-logs-dir {dir}/logs/pods --pod-manifest-path {dir}/manifests --insecure-registry {registry} \
    --registries-config {dir}/registries.yaml --kubelet-arg resolv-conf={dir}/resolv.conf"
    };
}

/// A node's first start: `ekube join` with the lab's token and the CA pin (discovery, then
/// TLS bootstrap to `{dir}/kubelet.conf`), running the agent in the foreground.
pub const JOIN_CMD: &str = concat!(
    "{ekube} join {server_ip}:6443 --token {token} --discovery-token-ca-cert-hash {ca_hash} \
    --node-name {node} --foreground -- ",
    agent_flags!()
);
/// `ekube init` on node 1, as `lab up`, the demo and the cluster tests bring the control plane
/// up (placeholders as [`CmdTemplate`] describes; `{ekube}` comes from [`LabConfig::vars`]):
/// from the kubeadm configuration [`KUBEADM_CONFIG`] the lab writes to `{dir}/kubeadm.yaml`,
/// the control plane detached (pid file under `{dir}/run/ekube`), its kubeconfigs in `{dir}`.
/// Node 1's agent is left to the lab (`kubelet-start` skipped): it starts it as every other
/// node's, with the `kubelet.conf` init wrote (the agent's flags after `--` tell init where
/// that agent keeps its certificate), so tests can stop and restart it. Init returns once
/// that agent has registered (mark-control-plane) and the token exists.
pub const INIT_CMD: &str = concat!(
    "{ekube} init --config {dir}/kubeadm.yaml --skip-phases kubelet-start \
    --data-dir {dir}/data/server --kubeconfig-dir {dir} --run-dir {dir}/run/ekube \
    --log-dir {dir}/logs/ekube --default-local-storage-path {lab_dir}/storage -- ",
    agent_flags!()
);

/// A node that has joined, started again: `ekube agent` with the identity it was issued.
pub const AGENT_CMD: &str = concat!("{ekube} agent ", agent_flags!());

/// What a highly available lab adds to [`KUBEADM_CONFIG`]'s `ClusterConfiguration`: the
/// lab's etcd cluster as the datastore (placeholders from [`crate::etcd::vars`]).
pub const HA_CLUSTER_CONFIG: &str = "etcd:
  external:
    endpoints: [{etcd_endpoints}]
    caFile: {etcd_ca}
    certFile: {etcd_cert}
    keyFile: {etcd_key}
";

/// The agent flag every agent of a highly available lab runs with: its client-side load
/// balancer over the cluster's servers.
pub const HA_AGENT_FLAG: &str = "--apiserver-load-balancer";

/// [`INIT_CMD`] in a highly available lab: the CA and keys uploaded, sealed under the lab's
/// `{cert_key}`, for the nodes that join as control planes.
pub const HA_INIT_CMD: &str = concat!(
    "{ekube} init --config {dir}/kubeadm.yaml --upload-certs --certificate-key {cert_key} \
    --skip-phases kubelet-start --data-dir {dir}/data/server --kubeconfig-dir {dir} \
    --run-dir {dir}/run/ekube --log-dir {dir}/logs/ekube \
    --default-local-storage-path {lab_dir}/storage -- ",
    agent_flags!(),
    " --apiserver-load-balancer"
);

/// The `JoinConfiguration` of a node joining as a further control plane (written to its
/// `{dir}/join.yaml` once the CA's pin is known): its own API server on its address, no
/// taints (pods run on every node, as on node 1).
pub const CONTROL_PLANE_JOIN_CONFIG: &str = "apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: {server_ip}:6443
    token: {token}
    caCertHashes: [\"{ca_hash}\"]
nodeRegistration:
  name: {node}
  taints: []
controlPlane:
  localAPIEndpoint:
    advertiseAddress: {ip}
    bindPort: 6443
  certificateKey: {cert_key}
";

/// A node's first start in a highly available lab: `ekube join --control-plane` (through
/// [`CONTROL_PLANE_JOIN_CONFIG`]), its server detached, its agent in the foreground.
pub const CONTROL_PLANE_JOIN_CMD: &str = concat!(
    "{ekube} join --config {dir}/join.yaml --data-dir {dir}/data/server --cert-dir {dir}/pki \
    --run-dir {dir}/run/ekube --log-dir {dir}/logs/ekube --foreground -- ",
    agent_flags!(),
    " --apiserver-load-balancer"
);

/// Address of node `index` (1-based) on the underlay.
pub const fn node_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 64, (10 * index) as u8)
}

/// A command line with `{placeholder}`s filled per host by [`Host::vars`].
///
/// Placeholders: `{lab}`, `{node}` (the node's name, equal to its namespace, e.g. `ekl-n1`),
/// `{short}` (`n1`), `{index}`, `{ip}`, `{dir}`, `{pin}`, `{cgroup}` (`/ekube/<lab>/<short>`,
/// the kubelet's `--cgroup-root`), `{cgroup2}` (its absolute path in the cgroup2 mount),
/// `{server_ip}`, `{registry}`, `{kubeconfig}`, `{lab_dir}`, plus anything in
/// [`LabConfig::vars`] (e.g. `{ekube}`, the lab's bootstrap `{token}`, and once the server
/// has written its CA, `{ca_hash}`, the CA's pin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdTemplate(pub Vec<String>);

impl CmdTemplate {
    /// Splits a template on whitespace (no quoting; use the vector form for arguments with spaces).
    pub fn parse(line: &str) -> Self {
        Self(line.split_whitespace().map(str::to_owned).collect())
    }

    /// Fills every placeholder present in `vars`; unknown placeholders stay as written.
    pub fn render(&self, vars: &BTreeMap<String, String>) -> Vec<String> {
        self.0.iter().map(|arg| fill(arg, vars)).collect()
    }
}

/// `text` with every placeholder present in `vars` filled in.
pub fn fill(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// What to bring up.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Lab name: lowercase letters and digits, starting with a letter, at most 10 characters
    /// (so that `<lab>-n9` stays a valid interface and host name).
    pub name: String,
    /// Number of nodes, 1 to [`MAX_NODES`].
    pub nodes: usize,
    /// Parent directory of the lab directory (`<root>/<name>`).
    pub root: PathBuf,
    /// Run the image registry in the fabric namespace.
    pub registry: bool,
    /// OCI image layout holding the test images: built when missing, then pushed to the
    /// registry. `None` skips images.
    pub images: Option<PathBuf>,
    /// OCI layout of the Debian-based Docker Hub look-alikes ([`crate::hub`]): built when
    /// missing or stale, then pushed under their Docker Hub names. `None` skips them.
    pub hub_images: Option<PathBuf>,
    /// Run [`AUTH_REGISTRY`] too, holding `library/busybox:latest` of [`LabConfig::hub_images`]
    /// (which it needs), and [`CERT_REGISTRY`] serving the same over HTTPS to the nodes'
    /// client certificate.
    pub auth_registry: bool,
    /// Started on node 1 (the control plane), e.g. [`INIT_CMD`].
    pub server: Option<CmdTemplate>,
    /// Written to node 1's `kubeadm.yaml` (placeholders filled) before the server starts,
    /// e.g. [`KUBEADM_CONFIG`].
    pub kubeadm_config: Option<String>,
    /// Started on every node, e.g. [`JOIN_CMD`]; when a server runs too, only once the
    /// server has written `{kubeconfig}`.
    pub node: Option<CmdTemplate>,
    /// Started instead of `node` on a node that has its identity already (a
    /// `{dir}/kubelet.conf`, as `ekube init` writes on node 1), e.g. [`AGENT_CMD`].
    pub joined_node: Option<CmdTemplate>,
    /// Nodes (from node 1) that run an etcd member before the server starts (0: none); the
    /// templates get the placeholders of [`crate::etcd::vars`].
    pub etcd_members: usize,
    /// Nodes (from node 1, which runs `server`) that run the control plane: nodes 2 and up to
    /// this run `control_plane_node` instead of `node` on their first start.
    pub control_planes: usize,
    /// The first start of a further control-plane node, e.g. [`CONTROL_PLANE_JOIN_CMD`].
    pub control_plane_node: Option<CmdTemplate>,
    /// Written to each further control-plane node's `join.yaml` (placeholders filled) before it
    /// starts, e.g. [`CONTROL_PLANE_JOIN_CONFIG`].
    pub control_plane_join_config: Option<String>,
    /// How long the server gets to write `{kubeconfig}`.
    pub server_timeout: std::time::Duration,
    /// Extra placeholders for the templates.
    pub vars: BTreeMap<String, String>,
}

impl LabConfig {
    /// A lab with the given name, 3 nodes, a registry and no images or components.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            nodes: 3,
            root: PathBuf::from(DEFAULT_ROOT),
            registry: true,
            images: None,
            hub_images: None,
            auth_registry: false,
            server: None,
            kubeadm_config: None,
            node: None,
            joined_node: None,
            etcd_members: 0,
            control_planes: 1,
            control_plane_node: None,
            control_plane_join_config: None,
            server_timeout: std::time::Duration::from_secs(60),
            vars: BTreeMap::from([(
                "token".to_owned(),
                ekube_api::bootstrap::Token::generate().to_string(),
            )]),
        }
    }

    /// Checks name and node count before anything is created.
    pub fn validate(&self) -> Result<()> {
        validate_name(&self.name)?;
        if self.nodes == 0 || self.nodes > MAX_NODES {
            return Err(Error::Config(format!(
                "--nodes must be between 1 and {MAX_NODES}, got {}",
                self.nodes
            )));
        }
        if self.etcd_members > self.nodes || self.control_planes > self.nodes {
            return Err(Error::Config(format!(
                "{} etcd members and {} control planes do not fit on {} nodes",
                self.etcd_members, self.control_planes, self.nodes
            )));
        }
        if self.etcd_members == 2 {
            return Err(Error::Config(
                "two etcd members tolerate no failure: give one, or three or more".into(),
            ));
        }
        if self.control_planes > 1 && self.control_plane_node.is_none() {
            return Err(Error::Config(
                "further control planes need control_plane_node".into(),
            ));
        }
        if self.auth_registry && self.hub_images.is_none() {
            return Err(Error::Config("the auth registry needs hub_images".into()));
        }
        if (self.images.is_some() || self.hub_images.is_some()) && !self.registry {
            return Err(Error::Config("images need the registry".into()));
        }
        Ok(())
    }

    /// Makes this a highly available lab: an etcd member and a server on each of the first
    /// three nodes ([`HA_INIT_CMD`] on node 1, [`CONTROL_PLANE_JOIN_CMD`] on the others) and
    /// every agent with its API server load balancer ([`HA_AGENT_FLAG`]). Call it after
    /// setting `nodes`.
    pub fn high_availability(&mut self) {
        let with_balancer = |template: &str| {
            let mut cmd = CmdTemplate::parse(template);
            cmd.0.push(HA_AGENT_FLAG.to_owned());
            cmd
        };
        self.etcd_members = self.nodes.min(3);
        self.control_planes = self.nodes.min(3);
        self.server = Some(CmdTemplate::parse(HA_INIT_CMD));
        self.kubeadm_config = Some(format!("{KUBEADM_CONFIG}{HA_CLUSTER_CONFIG}"));
        self.control_plane_node = Some(CmdTemplate::parse(CONTROL_PLANE_JOIN_CMD));
        self.control_plane_join_config = Some(CONTROL_PLANE_JOIN_CONFIG.to_owned());
        self.node = Some(with_balancer(JOIN_CMD));
        self.joined_node = Some(with_balancer(AGENT_CMD));
    }

    /// `<root>/<name>`: state file, per-host directories, registry storage.
    pub fn lab_dir(&self) -> PathBuf {
        self.root.join(&self.name)
    }

    /// Where the control plane's admin kubeconfig is once it runs (`{kubeconfig}`): node 1's
    /// directory, where `ekube init` writes its kubeconfigs.
    pub fn kubeconfig(&self) -> PathBuf {
        self.lab_dir().join("n1/admin.conf")
    }

    /// Every host of this lab: fabric, nodes in order, external client.
    pub fn hosts(&self) -> Vec<Host> {
        let mut hosts = vec![Host::new(self, Role::Fabric)];
        hosts.extend((1..=self.nodes).map(|i| Host::new(self, Role::Node(i))));
        hosts.push(Host::new(self, Role::External));
        hosts
    }
}

/// Rejects names that would not fit in namespace, cgroup, pin and interface names.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 10
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "lab name {name:?} must be 1-10 lowercase letters or digits, starting with a letter"
        )))
    }
}

/// What a host is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Holds the bridge and the registry.
    Fabric,
    /// Cluster node `k` (1-based).
    Node(usize),
    /// The client outside the cluster.
    External,
}

/// One network-namespace host of a lab.
#[derive(Debug, Clone)]
pub struct Host {
    /// What this host is for.
    pub role: Role,
    /// Lab name.
    pub lab: String,
    /// Short name within the lab: `fab`, `n1`, `ext`.
    pub short: String,
    /// Network namespace name (`<lab>-<short>`), also the node name.
    pub netns: String,
    /// Underlay address.
    pub ip: Ipv4Addr,
    /// The host's directory: `data/`, `cni/net.d/`, `cni/bin/`, `run/`, `logs/`, `manifests/`.
    pub dir: PathBuf,
    /// Cgroup path relative to each hierarchy's root, without a leading slash
    /// (`ekube/<lab>/<short>`).
    pub cgroup: String,
}

impl Host {
    fn new(config: &LabConfig, role: Role) -> Self {
        let (short, ip) = match role {
            Role::Fabric => ("fab".to_owned(), FABRIC_IP),
            Role::Node(i) => (format!("n{i}"), node_ip(i)),
            Role::External => ("ext".to_owned(), EXT_IP),
        };
        Self {
            role,
            lab: config.name.clone(),
            netns: format!("{}-{short}", config.name),
            dir: config.lab_dir().join(&short),
            cgroup: format!("ekube/{}/{short}", config.name),
            short,
            ip,
        }
    }

    /// Whether this host is a cluster node.
    pub fn is_node(&self) -> bool {
        matches!(self.role, Role::Node(_))
    }

    /// bpffs pin directory of the node (`/sys/fs/bpf/ekube/<lab>-<short>`).
    pub fn pin_dir(&self) -> PathBuf {
        Path::new(BPFFS).join("ekube").join(&self.netns)
    }

    /// Absolute path of the host's cgroup2 subtree.
    pub fn cgroup2_dir(&self) -> PathBuf {
        crate::cgroup::v2_mount().join(&self.cgroup)
    }

    /// Directory for process logs.
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// Directory the node's `subnet.env` goes into.
    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// CNI configuration directory.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni/net.d")
    }

    /// Directories created for every host.
    /// The node's `registries.yaml` (`--registries-config`).
    pub fn registries_config(&self) -> PathBuf {
        self.dir.join("registries.yaml")
    }

    /// The node's resolver configuration (the kubelet's `--resolv-conf`).
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }

    pub(crate) fn dirs(&self) -> Vec<PathBuf> {
        ["data", "cni/net.d", "cni/bin", "run", "logs", "manifests"]
            .iter()
            .map(|d| self.dir.join(d))
            .collect()
    }

    /// Placeholder values for [`CmdTemplate::render`].
    pub fn vars(&self, config: &LabConfig) -> BTreeMap<String, String> {
        let mut vars = config.vars.clone();
        let index = match self.role {
            Role::Node(i) => i.to_string(),
            _ => String::new(),
        };
        for (k, v) in [
            ("lab", self.lab.clone()),
            ("node", self.netns.clone()),
            ("short", self.short.clone()),
            ("index", index),
            ("ip", self.ip.to_string()),
            ("dir", self.dir.display().to_string()),
            ("pin", self.pin_dir().display().to_string()),
            ("cgroup", format!("/{}", self.cgroup)),
            ("cgroup2", self.cgroup2_dir().display().to_string()),
            ("server_ip", node_ip(1).to_string()),
            ("registry", REGISTRY.to_owned()),
            ("kubeconfig", config.kubeconfig().display().to_string()),
            ("lab_dir", config.lab_dir().display().to_string()),
        ] {
            vars.insert(k.to_owned(), v);
        }
        vars
    }
}

/// Whether `netns` is one of the namespaces a lab called `lab` creates.
pub(crate) fn is_lab_netns(lab: &str, netns: &str) -> bool {
    let Some(rest) = netns.strip_prefix(lab).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    rest == "fab"
        || rest == "ext"
        || rest
            .strip_prefix('n')
            .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_a_three_node_lab() {
        let config = LabConfig::new("ekl");
        let hosts = config.hosts();
        let names: Vec<_> = hosts
            .iter()
            .map(|h| (h.netns.as_str(), h.ip.to_string()))
            .collect();
        assert_eq!(
            names,
            [
                ("ekl-fab", "192.168.64.1".to_owned()),
                ("ekl-n1", "192.168.64.10".to_owned()),
                ("ekl-n2", "192.168.64.20".to_owned()),
                ("ekl-n3", "192.168.64.30".to_owned()),
                ("ekl-ext", "192.168.64.100".to_owned()),
            ]
        );
        assert_eq!(hosts[1].pin_dir(), Path::new("/sys/fs/bpf/ekube/ekl-n1"));
        assert_eq!(hosts[1].cgroup, "ekube/ekl/n1");
        assert_eq!(hosts[1].dir, Path::new("/var/lib/ekube-lab/ekl/n1"));
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("ekl").is_ok());
        assert!(validate_name("lab42").is_ok());
        for bad in ["", "1lab", "Lab", "a-b", "muchtoolongname"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        let mut config = LabConfig::new("ekl");
        config.nodes = 10;
        assert!(config.validate().is_err());
    }

    #[test]
    fn lab_netns_matching_is_exact() {
        assert!(is_lab_netns("ekl", "ekl-n1"));
        assert!(is_lab_netns("ekl", "ekl-n12"));
        assert!(is_lab_netns("ekl", "ekl-fab"));
        assert!(is_lab_netns("ekl", "ekl-ext"));
        assert!(!is_lab_netns("ekl", "ekl2-n1"));
        assert!(!is_lab_netns("ekl", "ekl-x-n1"));
        assert!(!is_lab_netns("ekl", "ekl-n"));
        assert!(!is_lab_netns("ekl", "other"));
    }

    #[test]
    fn templates_fill_placeholders() {
        let mut config = LabConfig::new("ekl");
        config.vars.insert("ekube".into(), "/bin/ekube".into());
        let host = &config.hosts()[2];
        let cmd = CmdTemplate::parse(
            "{ekube} agent --node-ip {ip} --hostname-override {node} --cgroup-root {cgroup} {unknown}",
        );
        assert_eq!(
            cmd.render(&host.vars(&config)),
            [
                "/bin/ekube",
                "agent",
                "--node-ip",
                "192.168.64.20",
                "--hostname-override",
                "ekl-n2",
                "--cgroup-root",
                "/ekube/ekl/n2",
                "{unknown}"
            ]
        );
    }
}
