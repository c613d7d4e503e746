//! `ekube apiserver` flags, named as upstream names them.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use ipnetwork::Ipv4Network;

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Where the database, certificates and admin kubeconfig live.
    #[arg(long, default_value = "/var/lib/ekube/server")]
    pub data_dir: PathBuf,
    /// The address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// The HTTPS port.
    #[arg(long, default_value_t = 6443)]
    pub secure_port: u16,
    /// The address other cluster members reach this server at (kubeconfigs, the `kubernetes`
    /// Service's endpoints). Defaults to the bind address, or 127.0.0.1 if that is unspecified.
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,
    /// Certificates and keys; generated on first start when missing. Default: `<data-dir>/pki`.
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,
    /// Also write the admin kubeconfig here (it is always written to `<data-dir>/admin.conf`).
    #[arg(long)]
    pub write_kubeconfig: Option<PathBuf>,
    /// Extra names and addresses for the serving certificate.
    #[arg(long, value_delimiter = ',')]
    pub tls_san: Vec<String>,
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: Ipv4Network,
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    pub service_node_port_range: (u16, u16),
    /// Client certificate (PEM) presented to kubelets when relaying logs, exec, attach and
    /// port-forward. Default: `apiserver-kubelet-client.crt` in the cert dir, issued by the
    /// cluster CA on first start.
    #[arg(long)]
    pub kubelet_client_certificate: Option<PathBuf>,
    /// Key of `--kubelet-client-certificate` (PEM).
    #[arg(long)]
    pub kubelet_client_key: Option<PathBuf>,
    /// A CSV file of static bearer tokens: `token,user,uid,"group1,group2"`.
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// Authorizers to consult, in order: `Node`, `RBAC`, `AlwaysAllow`, `AlwaysDeny`. The first
    /// that allows or denies decides; members of `system:masters` are always allowed.
    #[arg(long, default_value = "Node,RBAC")]
    pub authorization_mode: String,
    /// Serve requests without credentials as `system:anonymous` (group
    /// `system:unauthenticated`), subject to authorization; when false they are answered 401.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub anonymous_auth: bool,
    /// PEM files of RSA keys (public, or private whose public half is used) that verify
    /// ServiceAccount tokens, besides the signing key's own. Default: `sa.pub` in the cert dir.
    #[arg(long, value_delimiter = ',')]
    pub service_account_key_file: Vec<PathBuf>,
    /// The RSA private key (PEM) that signs ServiceAccount tokens. Default: `sa.key` in the
    /// cert dir, generated with `sa.pub` on first start.
    #[arg(long)]
    pub service_account_signing_key_file: Option<PathBuf>,
    /// The `iss` of ServiceAccount tokens; the first signs, every one given is accepted.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "https://kubernetes.default.svc.cluster.local"
    )]
    pub service_account_issuer: Vec<String>,
    /// Audiences a token must name to authenticate here. Default: the issuers.
    #[arg(long, value_delimiter = ',')]
    pub api_audiences: Vec<String>,
    /// The longest life a TokenRequest may ask for (seconds); longer requests are shortened.
    #[arg(long, value_parser = ekube_api::flags::parse_interval)]
    pub service_account_max_token_expiration: Option<std::time::Duration>,
    /// Let the kubelet's 3607-second projected tokens live a year (with `warnafter` at the
    /// hour), as upstream does while clients learn to reload their token.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub service_account_extend_token_expiration: bool,
    /// An `EncryptionConfiguration` (apiserver.config.k8s.io/v1) naming the resources to
    /// encrypt at rest and the providers (`aescbc`, `aesgcm`, `secretbox`, `identity`) to use.
    #[arg(long)]
    pub encryption_provider_config: Option<PathBuf>,
    /// Storage backend: `sled` (embedded, under `<data-dir>/db`) or `etcd3` (needs
    /// `--datastore-endpoint`; implied by it).
    #[arg(long)]
    pub storage_backend: Option<String>,
    /// etcd v3 client URLs, comma-separated (`https://10.0.0.1:2379,https://10.0.0.2:2379`):
    /// store everything there instead of sled. kube-apiserver calls this `--etcd-servers`.
    #[arg(long, alias = "etcd-servers", value_parser = parse_endpoints)]
    pub datastore_endpoint: Option<String>,
    /// The CA (PEM) that signed the etcd members' serving certificates.
    #[arg(long, alias = "etcd-cafile")]
    pub datastore_cafile: Option<PathBuf>,
    /// A client certificate (PEM) for etcd.
    #[arg(long, alias = "etcd-certfile")]
    pub datastore_certfile: Option<PathBuf>,
    /// The key (PEM) of `--datastore-certfile`.
    #[arg(long, alias = "etcd-keyfile")]
    pub datastore_keyfile: Option<PathBuf>,
    /// How long one datastore call may take before the request fails with 504.
    #[arg(long, default_value = "10s", value_parser = ekube_api::flags::parse_duration)]
    pub datastore_timeout: std::time::Duration,
    /// Largest accepted request body.
    #[arg(long, default_value_t = 3 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// How often the event log is compacted.
    #[arg(long, default_value = "60", value_parser = ekube_api::flags::parse_interval)]
    pub compaction_interval: std::time::Duration,
    /// Compaction keeps at least this many of the newest revisions…
    #[arg(long, default_value_t = 1000)]
    pub compaction_retain_revisions: u64,
    /// …and every revision younger than this.
    #[arg(long, default_value = "300", value_parser = ekube_api::flags::parse_duration)]
    pub compaction_retain_age: std::time::Duration,
    /// How far a watcher may fall behind (events) before it is dropped and must re-list.
    #[arg(long, default_value_t = 10_000)]
    pub watch_buffer: usize,
    /// How long a watch response may wait for its client to read before the watcher is closed
    /// (the client re-lists); a stalled client is never buffered for without bound.
    #[arg(long, default_value = "5", value_parser = ekube_api::flags::parse_interval)]
    pub watch_stall_timeout: std::time::Duration,
    /// Non-mutating requests (get, list) served at once; more are answered 429 with
    /// `Retry-After`. Long-running requests (watch, exec, attach, port-forward, logs, proxy)
    /// do not count. 0: no limit.
    #[arg(long, default_value_t = 400)]
    pub max_requests_inflight: usize,
    /// Mutating requests (create, update, patch, delete) served at once; more are answered 429.
    /// 0: no limit.
    #[arg(long, default_value_t = 200)]
    pub max_mutating_requests_inflight: usize,
    /// Connections open at once; past that new ones wait in the listen backlog.
    #[arg(long, default_value_t = ekube_api::serve::Limits::MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// The longest certificate the CSR signers issue; a request's `spec.expirationSeconds`
    /// may only shorten it. Upstream this is kube-controller-manager's flag; ekube signs in the
    /// apiserver, so it is taken here.
    #[arg(long, default_value = "8760h", value_parser = ekube_api::flags::parse_interval)]
    pub cluster_signing_duration: std::time::Duration,
    /// How often every kubelet's `/metrics/resource` is read for the `metrics.k8s.io` API
    /// (`kubectl top`), as metrics-server's flag of that name. 0 turns the scraper off (the
    /// API then has no figures).
    #[arg(long, default_value = "15s", value_parser = ekube_api::flags::parse_duration)]
    pub metric_resolution: std::time::Duration,
}

impl Config {
    /// A configuration with every default, for tests and embedding.
    pub fn new(data_dir: PathBuf) -> Self {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        let mut c = Wrapper::parse_from(["apiserver"]).config;
        c.data_dir = data_dir;
        c
    }

    /// Where `--datastore-endpoint` and its TLS files point, when the store is etcd.
    pub fn etcd_endpoints(&self) -> Option<crate::storage::etcd::Endpoints> {
        Some(crate::storage::etcd::Endpoints {
            urls: crate::storage::etcd::Endpoints::parse(self.datastore_endpoint.as_deref()?)
                .ok()?,
            ca_file: self.datastore_cafile.clone(),
            cert_file: self.datastore_certfile.clone(),
            key_file: self.datastore_keyfile.clone(),
        })
    }

    /// The datastore, as messages name it.
    pub fn store_name(&self) -> String {
        match &self.datastore_endpoint {
            Some(urls) => format!("etcd at {urls}"),
            None => self.data_dir.join("db").display().to_string(),
        }
    }

    pub fn cert_dir(&self) -> PathBuf {
        self.cert_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("pki"))
    }

    pub fn advertise_address(&self) -> IpAddr {
        self.advertise_address
            .unwrap_or(if self.bind_address.is_unspecified() {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                self.bind_address
            })
    }

    /// Checks what can be checked before anything is bound or written.
    pub fn validate(&self) -> Result<(), String> {
        match (self.storage_backend.as_deref(), &self.datastore_endpoint) {
            (None | Some("sled"), None) | (None | Some("etcd3"), Some(_)) => {}
            (Some("sled"), Some(_)) => {
                return Err("--storage-backend=sled does not take --datastore-endpoint".into());
            }
            (Some("etcd3"), None) => {
                return Err("--storage-backend=etcd3 needs --datastore-endpoint".into());
            }
            (Some(other), _) => {
                return Err(format!(
                    "--storage-backend={other:?} is not known; use \"sled\" or \"etcd3\""
                ));
            }
        }
        if self.datastore_certfile.is_some() != self.datastore_keyfile.is_some() {
            return Err("--datastore-certfile and --datastore-keyfile go together".into());
        }
        crate::authz::Mode::parse_list(&self.authorization_mode)?;
        if self.kubelet_client_certificate.is_some() != self.kubelet_client_key.is_some() {
            return Err("--kubelet-client-certificate and --kubelet-client-key go together".into());
        }
        if self.service_account_issuer.iter().all(String::is_empty) {
            return Err("--service-account-issuer must name at least one issuer".into());
        }
        if self.service_cluster_ip_range.prefix() > 28 {
            return Err(format!(
                "--service-cluster-ip-range {} is too small",
                self.service_cluster_ip_range
            ));
        }
        if self.service_node_port_range.0 > self.service_node_port_range.1 {
            return Err(
                "--service-node-port-range: the first port must not exceed the last".into(),
            );
        }
        Ok(())
    }
}

fn parse_endpoints(s: &str) -> Result<String, String> {
    crate::storage::etcd::Endpoints::parse(s).map(|urls| urls.join(","))
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not of the form FIRST-LAST"))?;
    let a = a.trim().parse::<u16>().map_err(|e| format!("{a:?}: {e}"))?;
    let b = b.trim().parse::<u16>().map_err(|e| format!("{b:?}: {e}"))?;
    Ok((a, b))
}
