//! The sync loop: list-then-watch Services and EndpointSlices and keep the datapath in step,
//! one Service per event.
//!
//! Each object is reduced to the proxy's view of it ([`super::view`]) as it arrives; the loop
//! keeps the views, not the objects, with each Service's slices filed under it. Each watch
//! event names the one Service it concerns (an EndpointSlice by its
//! `kubernetes.io/service-name` label), and only that Service is rebuilt and synced. A re-list
//! is collected aside and replaces the views when it is complete. Nothing is programmed or
//! pruned until both initial lists are complete (a restarted proxy must not delete what it has
//! not seen yet); then, and after every re-list and every `--sync-period`, a full sync
//! re-checks everything and prunes what no Service owns.
//!
//! Pods of this node (`fieldSelector=spec.nodeName=<node>`, as the kubelet watches them) are
//! watched too, for their hostPorts ([`super::hostport`]): each pod event re-stages that pod,
//! and once they are listed every full sync re-stages them all. Services do not wait for that
//! list (a proxy whose credentials may not list pods still serves Services), and the prune
//! keeps hostPort frontends until it is complete.

use std::{
    collections::HashMap,
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
        reflector::{self, Store},
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
    view::{ServiceView, SliceView},
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
    services: HashMap<ServiceName, Arc<ServiceView>>,
    /// The EndpointSlices of each Service.
    slices: HashMap<ServiceName, Vec<SliceView>>,
    /// The Service each slice is filed under, to follow relabels.
    slice_owner: HashMap<SliceId, ServiceName>,
    /// A re-list of the Services or slices in progress: what it has brought so far.
    relisted_services: Option<HashMap<ServiceName, Arc<ServiceView>>>,
    relisted_slices: Option<Vec<(SliceId, ServiceName, SliceView)>>,
    /// This node's pods (for their hostPorts).
    pods: Store<Pod>,
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
    let svc_events = watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff();
    let slice_events = watcher(
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default().labels(SERVICE_NAME_LABEL),
    )
    .default_backoff();
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
        services: HashMap::new(),
        slices: HashMap::new(),
        slice_owner: HashMap::new(),
        relisted_services: None,
        relisted_slices: None,
        pods,
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
            watcher::Event::Apply(svc) => {
                if let Some(mut view) = ServiceView::of(&svc) {
                    // An update keeps the name the maps already share.
                    if let Some((known, _)) = self.services.get_key_value(&view.name) {
                        view.name = known.clone();
                    }
                    let key = view.name.clone();
                    self.services.insert(key.clone(), Arc::new(view));
                    if self.listed() {
                        self.sync_one(&key);
                    }
                }
            }
            watcher::Event::Delete(svc) => {
                if let Some(key) = ServiceName::of_service(&svc) {
                    self.services.remove(&key);
                    if self.listed() {
                        self.sync_one(&key);
                    }
                }
            }
            watcher::Event::Init => self.relisted_services = Some(HashMap::new()),
            watcher::Event::InitApply(svc) => {
                if let (Some(relisted), Some(view)) =
                    (&mut self.relisted_services, ServiceView::of(&svc))
                {
                    relisted.insert(view.name.clone(), Arc::new(view));
                }
            }
            watcher::Event::InitDone => {
                if let Some(relisted) = self.relisted_services.take() {
                    self.services = relisted;
                }
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
                let id = slice_id(&slice);
                let previous = self.unfile_slice(&id);
                let current = SliceView::of(&slice).map(|(owner, view)| {
                    self.file_slice(id, owner.clone(), view);
                    owner
                });
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
                if let Some(owner) = self.unfile_slice(&slice_id(&slice))
                    && self.listed()
                {
                    self.sync_one(&owner);
                }
            }
            watcher::Event::Init => self.relisted_slices = Some(Vec::new()),
            watcher::Event::InitApply(slice) => {
                if let (Some(relisted), Some((owner, view))) =
                    (&mut self.relisted_slices, SliceView::of(&slice))
                {
                    relisted.push((slice_id(&slice), owner, view));
                }
            }
            watcher::Event::InitDone => {
                if let Some(relisted) = self.relisted_slices.take() {
                    self.slices.clear();
                    self.slice_owner.clear();
                    for (id, owner, view) in relisted {
                        self.file_slice(id, owner, view);
                    }
                }
                let count = self.slice_owner.len();
                info!(endpointslices = count, "endpointslices listed");
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

    /// Files slice `id` under `owner` (its namespace is the slice's).
    fn file_slice(&mut self, id: SliceId, owner: ServiceName, view: SliceView) {
        // The Service's own name where it is known, so the maps share its strings.
        let owner = match self.services.get_key_value(&owner) {
            Some((known, _)) => known.clone(),
            None => owner,
        };
        self.slice_owner
            .insert((owner.namespace.clone(), id.1), owner.clone());
        // Most Services have one slice: room for one (a first push reserves four).
        self.slices
            .entry(owner)
            .or_insert_with(|| Vec::with_capacity(1))
            .push(view);
    }

    /// Takes slice `id` from under its Service: that Service, if it was filed.
    fn unfile_slice(&mut self, id: &SliceId) -> Option<ServiceName> {
        let owner = self.slice_owner.remove(id)?;
        if let Some(views) = self.slices.get_mut(&owner) {
            views.retain(|v| v.name != id.1);
            if views.is_empty() {
                self.slices.remove(&owner);
            }
        }
        Some(owner)
    }

    /// The desired state of one Service from the views: O(its slices).
    fn desired_of(
        &self,
        key: &ServiceName,
        svc: Option<&ServiceView>,
    ) -> Result<DesiredService, Unsupported> {
        let Some(svc) = svc else {
            return Ok(DesiredService::new());
        };
        desired_state_on_node(svc, slices_of(&self.slices, key), &self.config.node_name)
    }

    /// Opens, updates or closes `key`'s healthCheckNodePort server.
    fn sync_health(&mut self, key: &ServiceName, svc: Option<&ServiceView>) {
        let slices = slices_of(&self.slices, key);
        if let Err(err) = self.health.sync(key, svc, slices, &self.config.node_name) {
            warn!(%err, "health check");
        }
    }

    /// Syncs one Service after an event; the commit follows once no event is waiting (and
    /// `min_commit_interval` has passed since the last one).
    fn sync_one(&mut self, key: &ServiceName) {
        let started = Instant::now();
        let svc = self.services.get(key).cloned();
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
            self.emit_event(svc.reference(), problem);
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
        for svc in self.services.values() {
            self.syncer.describe(&svc.name, Some(svc));
        }
        if self.pods_listed {
            self.stage_pods();
        }
        // The full sync commits everything staged so far.
        self.commit_at = None;
        // Each desired state is computed as the syncer takes it, not all of them first.
        let (services, slices, node) = (&self.services, &self.slices, &self.config.node_name);
        let all = services.values().map(|svc| {
            let slices = slices_of(slices, &svc.name);
            (svc.name.clone(), desired_state_on_node(svc, slices, node))
        });
        let (outcomes, pruned) = self.syncer.full_sync(|key| services.contains_key(key), all);
        let live = &self.services;
        self.health.retain(|key| live.contains_key(key));
        let services: Vec<Arc<ServiceView>> = self.services.values().cloned().collect();
        for svc in &services {
            self.sync_health(&svc.name, Some(svc));
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
            if let (Some(problem), true, Some(svc)) = (
                outcome.problem,
                outcome.new_problem,
                self.services.get(&key),
            ) {
                self.emit_event(svc.reference(), problem);
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

/// An EndpointSlice's namespace and name.
type SliceId = (Arc<str>, String);

/// The EndpointSlices filed under `key` in `slices` (a free function, so a caller can borrow
/// the map beside the syncer).
fn slices_of<'a>(
    slices: &'a HashMap<ServiceName, Vec<SliceView>>,
    key: &ServiceName,
) -> &'a [SliceView] {
    slices.get(key).map_or(&[], Vec::as_slice)
}

fn slice_id(slice: &EndpointSlice) -> SliceId {
    (
        slice
            .metadata
            .namespace
            .as_deref()
            .unwrap_or_default()
            .into(),
        slice.metadata.name.clone().unwrap_or_default(),
    )
}
