//! The ekube apiserver: the Kubernetes REST API over an embedded store.
//!
//! Requests arrive over HTTPS ([`server`]), are authenticated ([`auth`]), authorized
//! ([`authz`]), routed ([`route`])
//! and handled per verb ([`handler`], [`watch`], [`subresources`]) by the generic object store
//! ([`registry`]), which defaults ([`defaults`]), validates ([`validation`]), type-checks
//! ([`typed`]) and patches ([`patch`], [`apply`]) objects before they reach [`storage`].
//! Discovery and OpenAPI documents are generated from the resource table and the typed model.
//! `metrics.k8s.io` is served from kubelet scrapes ([`resource_metrics`]).

pub mod admission;
pub mod alloc;
pub mod apply;
pub mod auth;
pub mod authz;
pub mod bootstrap;
pub mod bootstrap_token;
pub mod certificates;
pub mod config;
pub mod convert;
pub mod defaults;
pub mod delete;
pub mod discovery;
pub mod encryption;
pub mod errors;
pub mod eviction;
pub mod handler;
pub mod health;
pub mod inflight;
pub mod kubelet_proxy;
pub mod metrics;
pub mod openapi;
pub mod patch;
pub mod peers;
pub mod pki;
pub mod podsecurity;
pub mod protobuf;
pub mod proxy;
pub mod registry;
pub mod resource_metrics;
pub mod route;
pub mod server;
pub mod serviceaccount;
pub mod storage;
pub(crate) mod strategy;
pub mod subresources;
pub mod table;
pub mod tokenreview;
pub mod typed;
pub mod validation;
pub mod watch;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use config::Config;

use crate::alloc::Allocator;
use crate::registry::Registry;
use crate::storage::Storage;

/// The Kubernetes version this server speaks.
pub use ekube_api::KUBE_VERSION;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    /// `store` names the datastore: sled's directory or etcd's endpoints.
    #[error("storage in {store}: {source}")]
    Storage {
        store: String,
        source: storage::Error,
    },
    #[error("datastore: {0}")]
    Datastore(storage::Error),
    #[error("certificates: {0}")]
    Pki(#[from] pki::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    ServiceAccount(#[from] serviceaccount::Error),
    #[error("start-up: {0}")]
    Startup(#[from] errors::ApiError),
}

/// Shared state of a running server.
pub struct ApiServer {
    pub config: Config,
    pub registry: Registry,
    /// Who is asking: certificates, bearer tokens (static, bootstrap, ServiceAccount),
    /// anonymous.
    pub authn: auth::Authenticator,
    /// What they may do: the `--authorization-mode` chain.
    pub authz: authz::Authorization,
    /// The RBAC objects in memory, for the RBAC authorizer and escalation checks.
    pub rbac: Arc<authz::cache::RbacCache>,
    /// The cluster CA, which signs approved CertificateSigningRequests.
    pub ca: pki::Ca,
    /// Signs ServiceAccount tokens (TokenRequest) and authenticates them (in `authn`).
    pub service_accounts: Arc<serviceaccount::ServiceAccounts>,
    /// `host:port` clients are told to use.
    pub server_address: String,
    /// TLS towards kubelets, with the apiserver's kubelet client certificate.
    pub kubelet_tls: Arc<rustls::ClientConfig>,
    /// Slots of `--max-requests-inflight` and `--max-mutating-requests-inflight`.
    pub inflight: inflight::Inflight,
    /// The kubelets' latest CPU and memory readings, for `metrics.k8s.io`.
    pub resource_metrics: resource_metrics::Store,
    /// What `/readyz` reads that is not read from elsewhere (shutdown).
    pub health: health::State,
    /// The last count of stored objects per resource, for `/metrics`.
    pub storage_objects: metrics::StorageObjects,
}

/// A started server: where it listens and where its kubeconfigs are.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_kubeconfig: PathBuf,
    /// `system:kube-controller-manager`'s kubeconfig (kubeadm's `controller-manager.conf`).
    pub controller_manager_kubeconfig: PathBuf,
    /// `system:kube-scheduler`'s kubeconfig (kubeadm's `scheduler.conf`).
    pub scheduler_kubeconfig: PathBuf,
    pub api: Arc<ApiServer>,
}

/// Prepares storage and certificates, binds, and serves until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let (running, serve) = start(config, shutdown).await?;
    tracing::info!(addr = %running.addr, kubeconfig = %running.admin_kubeconfig.display(), "apiserver ready");
    serve.await;
    Ok(())
}

/// Like [`run`] but returns once listening, with the serving future to drive.
pub async fn start(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(Running, impl std::future::Future<Output = ()>), Error> {
    config.validate().map_err(Error::Config)?;
    let modes = authz::Mode::parse_list(&config.authorization_mode).map_err(Error::Config)?;
    let mut authn = auth::Authenticator::new(config.anonymous_auth);
    if let Some(path) = &config.token_auth_file {
        authn = authn.with_tokens(Arc::new(
            auth::TokenFile::load(path).map_err(Error::Config)?,
        ));
    }
    let encryption = config
        .encryption_provider_config
        .as_deref()
        .map(encryption::Encryption::load)
        .transpose()
        .map_err(|e| Error::Config(e.to_string()))?;
    pki::create_private_dir(&config.data_dir)?;
    let backend = open_store(&config).await?;
    let store: Arc<dyn Storage> = match encryption {
        Some(encryption) => Arc::new(storage::encrypted::EncryptedStorage::new(
            backend, encryption,
        )),
        None => backend,
    };

    let addr = SocketAddr::new(config.bind_address, config.secure_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| Error::Bind { addr, source })?;
    let advertise = config.advertise_address();
    let server_address = format!("{advertise}:{}", addr.port());

    // Certificates: CA, serving certificate, client certificates and kubeconfigs of the admin,
    // the controller-manager and the scheduler (next to each other, kubeadm's layout).
    let pki_dir = config.cert_dir();
    let ca = pki::Ca::load_or_create(&pki_dir)?;
    let mut hosts: Vec<String> = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "127.0.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    hosts.push(advertise.to_string());
    hosts.push(
        Allocator::new(
            config.service_cluster_ip_range,
            config.service_node_port_range,
        )
        .first_ip()
        .to_string(),
    );
    if !config.bind_address.is_unspecified() {
        hosts.push(config.bind_address.to_string());
    }
    hosts.extend(config.tls_san.iter().cloned());
    hosts.sort();
    hosts.dedup();
    let serving = pki::Issued::load_or_issue(&pki_dir, "apiserver", || {
        ca.issue("kube-apiserver", &[], &hosts, true)
    })?;
    let admin = pki::Issued::load_or_issue(&pki_dir, "admin", || {
        ca.issue("kubernetes-admin", &["system:masters"], &[], false)
    })?;
    let kubelet_client = match (
        &config.kubelet_client_certificate,
        &config.kubelet_client_key,
    ) {
        (Some(crt), Some(key)) => {
            let read = |p: &PathBuf| {
                std::fs::read_to_string(p)
                    .map_err(|e| Error::Config(format!("reading {}: {e}", p.display())))
            };
            pki::Issued {
                cert_pem: read(crt)?,
                key_pem: read(key)?,
            }
        }
        _ => pki::Issued::load_or_issue(&pki_dir, "apiserver-kubelet-client", || {
            // No privileged group: the bootstrap policy binds this user to
            // `system:kubelet-api-admin`, which is all kubelets let it do.
            ca.issue(authz::policy::KUBELET_CLIENT_USER, &[], &[], false)
        })?,
    };
    let kubelet_tls = kubelet_proxy::kubelet_tls(&kubelet_client).map_err(Error::Config)?;
    let admin_kubeconfig = config.data_dir.join("admin.conf");
    pki::write_kubeconfig(
        &admin_kubeconfig,
        &format!("https://{server_address}"),
        &ca.cert_pem,
        "admin",
        &admin,
    )?;
    let component_kubeconfig = |file: &str, user: &str| {
        let path = config.data_dir.join(file);
        pki::write_component_kubeconfig(
            &ca,
            &pki_dir,
            &path,
            &format!("https://{server_address}"),
            user,
        )
        .map(|()| path)
    };
    let controller_manager_kubeconfig =
        component_kubeconfig("controller-manager.conf", "system:kube-controller-manager")?;
    let scheduler_kubeconfig = component_kubeconfig("scheduler.conf", "system:kube-scheduler")?;
    if let Some(extra) = &config.write_kubeconfig {
        pki::write_kubeconfig(
            extra,
            &format!("https://{server_address}"),
            &ca.cert_pem,
            "admin",
            &admin,
        )?;
    }
    let tls = server::tls_config(&ca.cert_pem, &serving.cert_pem, &serving.key_pem)
        .map_err(Error::Tls)?;

    // Allocations held by stored Services.
    let mut allocator = Allocator::new(
        config.service_cluster_ip_range,
        config.service_node_port_range,
    );
    let claimed = alloc::claims::Claims::new(store.clone())
        .repair(&mut alloc::claims::Orphans::default())
        .await
        .map_err(|source| Error::Storage {
            store: config.store_name(),
            source,
        })?;
    allocator.reset(&claimed);

    let mut service_accounts = serviceaccount::ServiceAccounts::new(
        serviceaccount::keys::Keys::load_or_create(
            &pki_dir,
            config.service_account_signing_key_file.as_deref(),
            &config.service_account_key_file,
        )?,
        config.service_account_issuer.clone(),
        config.api_audiences.clone(),
        store.clone(),
    );
    service_accounts.max_expiration = config
        .service_account_max_token_expiration
        .map(|d| d.as_secs() as i64);
    service_accounts.extend_expiration = config.service_account_extend_token_expiration;
    let service_accounts = Arc::new(service_accounts);
    // After `--token-auth-file`, as upstream orders its token authenticators.
    let authn = authn
        .with_tokens(Arc::new(bootstrap_token::BootstrapTokens::new(
            store.clone(),
        )))
        .with_tokens(service_accounts.clone());

    let registry = Registry::new(store.clone(), allocator);
    bootstrap::run(&registry, advertise, addr.port(), &ca.cert_pem).await?;
    authz::reconcile::run(&registry).await?;
    let rbac = authz::cache::RbacCache::start(store.clone())
        .await
        .map_err(|source| Error::Storage {
            store: config.store_name(),
            source,
        })?;
    // The graph follows every pod; only a chain with the Node authorizer needs it.
    let nodes = if modes.contains(&authz::Mode::Node) {
        authz::node::NodeGraph::start(store.clone())
            .await
            .map_err(|source| Error::Storage {
                store: config.store_name(),
                source,
            })?
    } else {
        Arc::default()
    };
    let api = Arc::new(ApiServer {
        registry,
        authn,
        authz: authz::Authorization::new(&modes, &rbac, &nodes),
        rbac,
        ca,
        service_accounts,
        server_address,
        inflight: inflight::Inflight::new(
            config.max_requests_inflight,
            config.max_mutating_requests_inflight,
        ),
        config,
        kubelet_tls,
        resource_metrics: resource_metrics::Store::default(),
        health: health::State::default(),
        storage_objects: metrics::StorageObjects::default(),
    });
    if !api.config.metric_resolution.is_zero() {
        tokio::spawn(resource_metrics::scrape::run(
            api.clone(),
            api.config.metric_resolution,
        ));
    }
    tokio::spawn(authz::aggregate::run(api.clone()));
    tokio::spawn(repair_allocations(api.clone()));
    let renewing = tokio::spawn(peers::run(api.clone(), advertise, addr.port()));
    tokio::spawn(compactor(
        store,
        api.config.compaction_interval,
        api.config.compaction_retain_revisions,
        api.config.compaction_retain_age,
    ));

    let running = Running {
        addr,
        admin_kubeconfig,
        controller_manager_kubeconfig,
        scheduler_kubeconfig,
        api: api.clone(),
    };
    // On the way down, the other servers take over this one's place in the endpoints at once
    // rather than after its record expires.
    let withdrawing = api.clone();
    let port = addr.port();
    let shutdown = async move {
        shutdown.await;
        // Renewing no more first, or the next round would put this server back.
        renewing.abort();
        peers::withdraw(&withdrawing.registry, advertise, port).await;
    };
    Ok((running, server::serve(api, listener, tls, shutdown)))
}

/// Every three minutes (upstream's repair interval), makes the stored allocation claims match
/// the stored Services and this server's allocator match the claims, so values other servers
/// released become free here too.
async fn repair_allocations(api: Arc<ApiServer>) {
    let mut tick = tokio::time::interval(Duration::from_secs(180));
    let mut orphans = alloc::claims::Orphans::default();
    tick.tick().await;
    loop {
        tick.tick().await;
        match api.registry.claims.repair(&mut orphans).await {
            Ok(claimed) => api.registry.alloc.lock().await.reset(&claimed),
            Err(e) => tracing::warn!(error = %e, "repairing service allocations"),
        }
    }
}

/// The datastore the configuration names: etcd when `--datastore-endpoint` is given, else sled
/// under `<data-dir>/db`.
async fn open_store(config: &Config) -> Result<Arc<dyn Storage>, Error> {
    if let Some(endpoints) = config.etcd_endpoints() {
        let etcd = storage::etcd::EtcdStorage::connect(
            &endpoints,
            config.datastore_timeout,
            config.watch_buffer,
        )
        .await
        .map_err(Error::Datastore)?;
        return Ok(Arc::new(etcd));
    }
    let db_dir = config.data_dir.join("db");
    pki::create_private_dir(&db_dir)?;
    let sled =
        storage::sled::SledStorage::open(&db_dir, config.watch_buffer).map_err(|source| {
            Error::Storage {
                store: db_dir.display().to_string(),
                source,
            }
        })?;
    pki::make_private(&db_dir)?;
    Ok(Arc::new(sled))
}

/// Compacts the event log like kine: keep at least the newest `retain` revisions and every
/// revision younger than `age`.
async fn compactor(store: Arc<dyn Storage>, interval: Duration, retain: u64, age: Duration) {
    let mut samples: VecDeque<(Instant, u64)> = VecDeque::new();
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
    loop {
        tick.tick().await;
        let now = Instant::now();
        let current = store.current_revision();
        samples.push_back((now, current));
        // The newest revision that is older than `age`.
        let mut old_enough = 0;
        while let Some(&(t, rev)) = samples.front() {
            if now.duration_since(t) >= age {
                old_enough = rev;
                samples.pop_front();
            } else {
                break;
            }
        }
        if old_enough > 0 {
            samples.push_front((now - age, old_enough));
        }
        let target =
            current
                .saturating_sub(retain)
                .min(if age.is_zero() { current } else { old_enough });
        if target > store.compacted_revision() {
            if let Err(e) = store.compact(target).await {
                tracing::warn!(error = %e, "compaction failed");
            } else {
                tracing::debug!(revision = target, "compacted");
            }
        }
    }
}
