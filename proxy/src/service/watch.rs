//! The sync loop: list-then-watch Services and EndpointSlices into reflector stores and keep
//! the datapath in step, one Service per event.
//!
//! Each watch event names the one Service it concerns (an EndpointSlice by its
//! `kubernetes.io/service-name` label), and only that Service is rebuilt and synced. A small
//! index from Service to slice names finds a Service's slices without scanning the store.
//! Nothing is programmed or pruned until both initial lists are complete (a restarted proxy
//! must not delete what it has not seen yet); then, and after every re-list and every
//! `--sync-period`, a full sync re-checks everything and prunes what no Service owns.
//!
//! Pods of this node (`fieldSelector=spec.nodeName=<node>`, as the kubelet watches them) are
//! watched too, for their hostPorts ([`super::hostport`]): each pod event re-stages that pod,
//! and once they are listed every full sync re-stages them all. Services do not wait for that
//! list (a proxy whose credentials may not list pods still serves Services), and the prune
//! keeps hostPort frontends until it is complete.

use std::{
    collections::{BTreeSet, HashMap},
    future::Future,
    net::Ipv4Addr,
    sync::Arc,
    time::{Duration, Instant},
};

use ekube_api::events::{EventType, Recorder, reference};
use futures::{Stream, StreamExt};
use k8s_openapi::api::{
    core::v1::{Node, ObjectReference, Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client,
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tracing::{debug, info, warn};

use super::{
    RunError,
    desired::{
        DesiredService, SERVICE_NAME_LABEL, ServiceName, Unsupported, desired_state_on_node,
    },
    healthcheck::HealthChecks,
    hostport::{PodHostPorts, PodName, desired_host_ports},
    metrics::{Metrics, SyncKind},
    sync::{ProxyDatapath, Syncer},
};

/// Component name on the Events the proxy writes.
pub const COMPONENT: &str = "ekube-proxy";
/// Reason of the Event on a Service the datapath cannot hold.
pub const FAILED_REASON: &str = "FailedToProgram";
/// How often the kernel counters are copied into the metrics.
const COUNTERS_PERIOD: Duration = Duration::from_secs(2);
/// How often the interfaces holding the node addresses are looked at again, so the NodePort
/// programs reach a device (the overlay's) that appears after start-up within moments.
const INTERFACES_PERIOD: Duration = Duration::from_secs(2);

/// Settings of the loop that do not come from the API.
pub struct LoopConfig {
    pub node_name: String,
    /// `--node-ip`; when empty, the Node object's InternalIPs are used.
    pub node_ips: Vec<Ipv4Addr>,
    pub sync_period: Duration,
    /// Shortest time between two datapath commits (zero: commit after every event). Events
    /// arriving faster are committed together, like kube-proxy's `--iptables-min-sync-period`.
    pub min_commit_interval: Duration,
}

/// The loop's state: the stores, the slice index and the syncer.
struct Proxy<D> {
    client: Client,
    config: LoopConfig,
    syncer: Syncer<D>,
    metrics: Arc<Metrics>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    /// This node's pods (for their hostPorts).
    pods: Store<Pod>,
    /// Names of the EndpointSlices of each Service.
    index: HashMap<ServiceName, BTreeSet<String>>,
    /// The Service each slice (namespace, name) was last indexed under, to follow relabels.
    slice_owner: HashMap<(String, String), ServiceName>,
    services_listed: bool,
    slices_listed: bool,
    pods_listed: bool,
    /// healthCheckNodePort servers of this node's externalTrafficPolicy: Local Services.
    health: HealthChecks,
    /// When staged changes are due to be committed (`None`: nothing staged).
    commit_at: Option<tokio::time::Instant>,
    /// When the last commit ran.
    last_commit: Option<tokio::time::Instant>,
}

/// Runs until `shutdown` completes; an error only if a watch stream ends for good.
pub async fn run_loop<D: ProxyDatapath>(
    client: Client,
    syncer: Syncer<D>,
    metrics: Arc<Metrics>,
    config: LoopConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let (services, svc_writer) = reflector::store();
    let svc_events = reflector::reflector(
        svc_writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    );
    let (slices, slice_writer) = reflector::store();
    let slice_events = reflector::reflector(
        slice_writer,
        watcher(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default().labels(SERVICE_NAME_LABEL),
        )
        .default_backoff(),
    );
    let (pods, pod_writer) = reflector::store();
    let pod_events = reflector::reflector(
        pod_writer,
        watcher(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default().fields(&format!("spec.nodeName={}", config.node_name)),
        )
        .default_backoff(),
    );
    let mut proxy = Proxy {
        health: HealthChecks::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        client,
        syncer,
        metrics,
        services,
        slices,
        pods,
        index: HashMap::new(),
        slice_owner: HashMap::new(),
        services_listed: false,
        slices_listed: false,
        pods_listed: false,
        commit_at: None,
        last_commit: None,
        config,
    };
    if !proxy.config.node_ips.is_empty() {
        let ips = proxy.config.node_ips.clone();
        if let Err(err) = proxy.syncer.set_node_addrs(&ips) {
            warn!(%err, "programming the node addresses");
        }
    }
    proxy
        .run(svc_events, slice_events, pod_events, shutdown)
        .await
}

impl<D: ProxyDatapath> Proxy<D> {
    async fn run(
        &mut self,
        svc_events: impl Stream<Item = Result<watcher::Event<Service>, watcher::Error>>,
        slice_events: impl Stream<Item = Result<watcher::Event<EndpointSlice>, watcher::Error>>,
        pod_events: impl Stream<Item = Result<watcher::Event<Pod>, watcher::Error>>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), RunError> {
        let mut svc_events = std::pin::pin!(svc_events);
        let mut slice_events = std::pin::pin!(slice_events);
        let mut pod_events = std::pin::pin!(pod_events);
        let mut shutdown = std::pin::pin!(shutdown);
        let mut resync = tokio::time::interval(self.config.sync_period);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await;
        let mut counters = tokio::time::interval(COUNTERS_PERIOD);
        let mut interfaces = tokio::time::interval(INTERFACES_PERIOD);
        loop {
            let commit_at = self.commit_at;
            tokio::select! {
                // Events first: a burst already received is staged before the commit.
                biased;
                _ = &mut shutdown => {
                    info!("proxy stopping; the datapath keeps serving from its pinned maps");
                    return Ok(());
                }
                event = svc_events.next() => match event {
                    Some(Ok(event)) => self.on_service(event).await,
                    Some(Err(err)) => warn!(%err, "watching services"),
                    None => return Err(RunError::WatchEnded { what: "services" }),
                },
                event = slice_events.next() => match event {
                    Some(Ok(event)) => self.on_slice(event).await,
                    Some(Err(err)) => warn!(%err, "watching endpointslices"),
                    None => return Err(RunError::WatchEnded { what: "endpointslices" }),
                },
                event = pod_events.next() => match event {
                    Some(Ok(event)) => self.on_pod(event).await,
                    Some(Err(err)) => warn!(%err, "watching this node's pods (for hostPorts)"),
                    None => return Err(RunError::WatchEnded { what: "pods" }),
                },
                _ = resync.tick() => {
                    if self.listed() {
                        self.full_sync().await;
                    }
                }
                _ = counters.tick() => {
                    let dp = self.syncer.datapath();
                    self.metrics.set_counters(dp.kernel_counters(), dp.map_writes());
                }
                _ = interfaces.tick(), if !self.config.node_ips.is_empty() => {
                    let ips = self.config.node_ips.clone();
                    if let Err(err) = self.syncer.set_node_addrs(&ips) {
                        warn!(%err, "programming the node addresses");
                    }
                }
                _ = tokio::time::sleep_until(commit_at.unwrap_or_else(tokio::time::Instant::now)),
                    if commit_at.is_some() => self.commit(),
            }
        }
    }

    fn listed(&self) -> bool {
        self.services_listed && self.slices_listed
    }

    async fn on_service(&mut self, event: watcher::Event<Service>) {
        match event {
            watcher::Event::Apply(svc) | watcher::Event::Delete(svc) => {
                if let Some(key) = ServiceName::of_service(&svc)
                    && self.listed()
                {
                    self.sync_one(&key);
                }
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
            watcher::Event::InitDone => {
                info!(services = self.services.len(), "services listed");
                self.services_listed = true;
                if self.listed() {
                    self.full_sync().await;
                }
            }
        }
    }

    async fn on_slice(&mut self, event: watcher::Event<EndpointSlice>) {
        match event {
            watcher::Event::Apply(slice) => {
                let (previous, current) = self.index_slice(&slice);
                if self.listed() {
                    if let Some(previous) = previous.filter(|p| Some(p) != current.as_ref()) {
                        self.sync_one(&previous);
                    }
                    if let Some(current) = current {
                        self.sync_one(&current);
                    }
                }
            }
            watcher::Event::Delete(slice) => {
                let id = slice_id(&slice);
                if let Some(owner) = self.slice_owner.remove(&id) {
                    self.unindex(&owner, &id.1);
                    if self.listed() {
                        self.sync_one(&owner);
                    }
                }
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
            watcher::Event::InitDone => {
                self.index.clear();
                self.slice_owner.clear();
                for slice in self.slices.state() {
                    self.index_slice(&slice);
                }
                info!(endpointslices = self.slices.len(), "endpointslices listed");
                self.slices_listed = true;
                if self.listed() {
                    self.full_sync().await;
                }
            }
        }
    }

    async fn on_pod(&mut self, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Apply(pod) => {
                if let Some(key) = PodName::of_pod(&pod)
                    && self.pods_listed
                {
                    self.sync_pod(&key, &pod, desired_host_ports(&pod));
                }
            }
            watcher::Event::Delete(pod) => {
                if let Some(key) = PodName::of_pod(&pod)
                    && self.pods_listed
                {
                    self.sync_pod(&key, &pod, PodHostPorts::default());
                }
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
            watcher::Event::InitDone => {
                info!(pods = self.pods.len(), "this node's pods listed");
                self.pods_listed = true;
                if self.listed() {
                    self.full_sync().await;
                } else {
                    self.stage_pods();
                }
            }
        }
    }

    /// Stages one pod's hostPorts after an event; the commit follows as for Services.
    fn sync_pod(&mut self, key: &PodName, pod: &Pod, ports: PodHostPorts) {
        let outcome = self.syncer.stage_pod(key, ports);
        self.schedule_commit();
        debug!(pod = %key, "hostPorts synced");
        if let (Some(problem), true) = (outcome.problem, outcome.new_problem) {
            self.emit_event(reference(pod), problem);
        }
    }

    /// Stages every pod of the store (pods gone from it lose their hostPorts).
    fn stage_pods(&mut self) {
        let pods = self.pods.state();
        let all = pods
            .iter()
            .filter_map(|pod| Some((PodName::of_pod(pod)?, desired_host_ports(pod))))
            .collect();
        for (key, outcome) in self.syncer.stage_all_pods(all) {
            let pod = pods
                .iter()
                .find(|p| PodName::of_pod(p).as_ref() == Some(&key));
            if let (Some(problem), true, Some(pod)) = (outcome.problem, outcome.new_problem, pod) {
                self.emit_event(reference(pod.as_ref()), problem);
            }
        }
    }

    /// Files `slice` under its Service; returns the Service it was under before and now.
    fn index_slice(&mut self, slice: &EndpointSlice) -> (Option<ServiceName>, Option<ServiceName>) {
        let id = slice_id(slice);
        let current = ServiceName::of_slice(slice);
        let previous = match &current {
            Some(owner) => self.slice_owner.insert(id.clone(), owner.clone()),
            None => self.slice_owner.remove(&id),
        };
        if let Some(previous) = previous.as_ref().filter(|p| Some(*p) != current.as_ref()) {
            self.unindex(previous, &id.1);
        }
        if let Some(owner) = &current {
            self.index.entry(owner.clone()).or_default().insert(id.1);
        }
        (previous, current)
    }

    fn unindex(&mut self, owner: &ServiceName, slice: &str) {
        if let Some(names) = self.index.get_mut(owner) {
            names.remove(slice);
            if names.is_empty() {
                self.index.remove(owner);
            }
        }
    }

    /// The desired state of one Service from the stores: O(its slices).
    fn desired_of(
        &self,
        key: &ServiceName,
        svc: Option<&Service>,
    ) -> Result<DesiredService, Unsupported> {
        let Some(svc) = svc else {
            return Ok(DesiredService::new());
        };
        let slices = self.slices_of(key);
        let refs: Vec<&EndpointSlice> = slices.iter().map(|s| s.as_ref()).collect();
        desired_state_on_node(svc, &refs, &self.config.node_name)
    }

    fn slices_of(&self, key: &ServiceName) -> Vec<Arc<EndpointSlice>> {
        self.index
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|name| {
                self.slices
                    .get(&ObjectRef::new(name).within(&key.namespace))
            })
            .collect()
    }

    /// Opens, updates or closes `key`'s healthCheckNodePort server.
    fn sync_health(&mut self, key: &ServiceName, svc: Option<&Service>) {
        let slices = self.slices_of(key);
        let refs: Vec<&EndpointSlice> = slices.iter().map(|s| s.as_ref()).collect();
        if let Err(err) = self.health.sync(key, svc, &refs, &self.config.node_name) {
            warn!(%err, "health check");
        }
    }

    fn service(&self, key: &ServiceName) -> Option<Arc<Service>> {
        self.services
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
    }

    /// Syncs one Service after an event; the commit follows once no event is waiting (and
    /// `min_commit_interval` has passed since the last one).
    fn sync_one(&mut self, key: &ServiceName) {
        let started = Instant::now();
        let svc = self.service(key);
        let desired = self.desired_of(key, svc.as_deref());
        let before = self.syncer.service_counts(key);
        self.syncer.describe(key, svc.as_deref());
        let outcome = self.syncer.stage_service(key, desired);
        self.sync_health(key, svc.as_deref());
        self.schedule_commit();
        let after = self.syncer.service_counts(key);
        self.syncer.adjust_totals(before, after);
        debug!(service = %key, frontends = after.0, backends = after.1, "service synced");
        self.metrics.observe_sync(
            SyncKind::Service,
            started.elapsed(),
            self.syncer.totals(),
            self.syncer.datapath().map_writes(),
        );
        if let (Some(problem), true, Some(svc)) = (outcome.problem, outcome.new_problem, svc) {
            self.emit_event(reference(svc.as_ref()), problem);
        }
    }

    /// Sets the commit of what is staged for once no event is waiting (and
    /// `min_commit_interval` has passed since the last one), unless one is set already. Before
    /// the first full sync nothing is committed (that sync commits what was staged): the rule
    /// modes start from an empty model, and writing it would take every Service a restarted
    /// proxy left in place away until then.
    fn schedule_commit(&mut self) {
        if self.listed() && self.commit_at.is_none() {
            let now = tokio::time::Instant::now();
            let earliest = self
                .last_commit
                .map_or(now, |last| last + self.config.min_commit_interval);
            self.commit_at = Some(earliest.max(now));
        }
    }

    /// Commits what the per-event syncs staged.
    fn commit(&mut self) {
        self.commit_at = None;
        let started = Instant::now();
        let result = self.syncer.commit();
        self.last_commit = Some(tokio::time::Instant::now());
        match result {
            Ok(()) => debug!(took = ?started.elapsed(), "datapath committed"),
            Err(err) => {
                warn!(%err, "committing the datapath; retrying in a second");
                let retry = self.config.min_commit_interval.max(Duration::from_secs(1));
                self.commit_at = Some(tokio::time::Instant::now() + retry);
            }
        }
        self.metrics.observe_sync(
            SyncKind::Commit,
            started.elapsed(),
            self.syncer.totals(),
            self.syncer.datapath().map_writes(),
        );
    }

    /// Syncs every Service (and, once listed, every pod's hostPorts), prunes and commits; the
    /// node addresses too when they come from the API.
    async fn full_sync(&mut self) {
        if self.config.node_ips.is_empty() {
            self.refresh_node_addrs().await;
        } else {
            // Again each time: re-attaches the NodePort programs to interfaces that appeared.
            let ips = self.config.node_ips.clone();
            if let Err(err) = self.syncer.set_node_addrs(&ips) {
                warn!(%err, "programming the node addresses");
            }
        }
        let started = Instant::now();
        let services = self.services.state();
        let mut all = Vec::with_capacity(services.len());
        for svc in &services {
            let Some(key) = ServiceName::of_service(svc) else {
                continue;
            };
            let desired = self.desired_of(&key, Some(svc));
            self.syncer.describe(&key, Some(svc));
            all.push((key, desired));
        }
        if self.pods_listed {
            self.stage_pods();
        }
        // The full sync commits everything staged so far.
        self.commit_at = None;
        let (outcomes, pruned) = self.syncer.full_sync(all);
        let live: BTreeSet<ServiceName> = services
            .iter()
            .filter_map(|svc| ServiceName::of_service(svc))
            .collect();
        self.health.retain(|key| live.contains(key));
        for svc in &services {
            if let Some(key) = ServiceName::of_service(svc) {
                self.sync_health(&key, Some(svc));
            }
        }
        self.last_commit = Some(tokio::time::Instant::now());
        let totals = self.syncer.recount();
        let took = started.elapsed();
        self.metrics.add_pruned(pruned);
        self.metrics.observe_sync(
            SyncKind::Full,
            took,
            totals,
            self.syncer.datapath().map_writes(),
        );
        info!(
            services = totals.services,
            frontends = totals.frontends,
            backends = totals.backends,
            pruned,
            ?took,
            "full sync"
        );
        for (key, outcome) in outcomes {
            if let (Some(problem), true, Some(svc)) =
                (outcome.problem, outcome.new_problem, self.service(&key))
            {
                self.emit_event(reference(svc.as_ref()), problem);
            }
        }
    }

    /// Takes NodePort addresses from the Node object's InternalIPs (best effort).
    async fn refresh_node_addrs(&mut self) {
        let nodes = Api::<Node>::all(self.client.clone());
        let node = match nodes.get_opt(&self.config.node_name).await {
            Ok(Some(node)) => node,
            Ok(None) => return,
            Err(err) => {
                debug!(%err, "reading this node's addresses");
                return;
            }
        };
        let ips: Vec<Ipv4Addr> = node
            .status
            .iter()
            .flat_map(|s| s.addresses.iter().flatten())
            .filter(|a| a.type_ == "InternalIP")
            .filter_map(|a| a.address.parse().ok())
            .collect();
        if let Err(err) = self.syncer.set_node_addrs(&ips) {
            warn!(%err, "programming the node addresses");
        }
    }

    /// Writes a core/v1 Warning Event on a Service or Pod (in the background; failures are
    /// only logged).
    fn emit_event(&self, involved: ObjectReference, message: String) {
        let recorder = Recorder::on_node(self.client.clone(), COMPONENT, &self.config.node_name);
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            if recorder
                .record_ref(involved, EventType::Warning, FAILED_REASON, &message)
                .await
            {
                metrics.add_event();
            }
        });
    }
}

fn slice_id(slice: &EndpointSlice) -> (String, String) {
    (
        slice.metadata.namespace.clone().unwrap_or_default(),
        slice.metadata.name.clone().unwrap_or_default(),
    )
}
