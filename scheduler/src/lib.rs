//! `ekube scheduler`: places pods on nodes.
//!
//! Nodes are reflected into a local store; of the pods, the scheduler keeps what it reads
//! ([`pods`]: the waiting ones, and what each placed pod takes of its node). Whenever either
//! changes (and once a second for back-off expiry) a scheduling pass takes the pods waiting
//! for this scheduler (no `nodeName`, matching `schedulerName`), highest priority and oldest
//! first, filters and scores
//! the nodes for each ([`framework`], [`volumes`], [`interpod`]), and binds it with
//! `POST pods/<name>/binding` (after annotating its delayed claims with the node). As in
//! upstream, binding runs apart from scheduling (up to [`MAX_BINDING`] at once): a placed pod is
//! "assumed" on its node at once and stays so until the pod cache shows the binding, so two
//! pods in a row never both take the last free slot; a binding that fails forgets the
//! assumption, and the pod is tried again. A pod that fits nowhere gets a `FailedScheduling` Event
//! and a `PodScheduled=False` condition, and backs off (1 s doubling to `--pod-max-backoff`)
//! until a node, a bound pod, a claim, a volume or a storage class changes, which retries it at
//! once. A `Scheduled` Event is queued and written in the background, as upstream's event
//! broadcaster takes it, so a binding does not wait for its write.

pub mod framework;
pub mod interpod;
pub mod metrics;
pub mod pods;
pub mod volumes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Binding, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use ekube_api::events::{Emitter, EventType, Recorder};
use ekube_api::storage;
use framework::NodeInfo;
use pods::{Bound, Pods, Waiting};

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Kubeconfig of the apiserver to talk to.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// Pods naming this `spec.schedulerName` are ours.
    #[arg(long, default_value = "default-scheduler")]
    pub scheduler_name: String,
    /// First back-off of an unschedulable pod, in seconds.
    #[arg(long, default_value_t = 1)]
    pub pod_initial_backoff_seconds: u64,
    /// Longest back-off of an unschedulable pod, in seconds.
    #[arg(long, default_value_t = 10)]
    pub pod_max_backoff_seconds: u64,
    /// Port of the HTTPS server for `/metrics` and the health endpoints; 0 disables it.
    #[arg(long, default_value_t = 10259)]
    pub secure_port: u16,
    /// Address the secure port listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: std::net::IpAddr,
    /// One scheduler of several acts: the holder of the Lease `kube-system/kube-scheduler`.
    #[command(flatten)]
    pub leader: ekube_api::leader::Flags,
}

impl Config {
    /// The configuration `ekube server` runs this component with.
    pub fn for_server(kubeconfig: PathBuf) -> Self {
        Self {
            kubeconfig,
            scheduler_name: "default-scheduler".into(),
            pod_initial_backoff_seconds: 1,
            pod_max_backoff_seconds: 10,
            secure_port: 10259,
            bind_address: std::net::Ipv4Addr::UNSPECIFIED.into(),
            leader: ekube_api::leader::Flags::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] ekube_api::client::Error),
    #[error("the {0} watch ended")]
    WatchEnded(&'static str),
    #[error(transparent)]
    SecurePort(#[from] ekube_api::secure_port::Error),
}

/// Bindings (with their pre-bind) in flight at once.
pub const MAX_BINDING: usize = 32;

/// A change this soon after a pass that placed pods is taken as part of a burst.
const BURST: Duration = Duration::from_millis(100);

/// How the binding of a placed pod ended.
enum BindingEnd {
    Bound,
    /// The pre-bind (claim annotation) failed: back off as after a failed scheduling cycle.
    PreBindFailed,
    /// The binding request failed: forget the assumption; the next pass tries again.
    Failed,
}

/// A finished binding: the pod's uid, the cluster generation it was scheduled at, the end.
type Finished = (String, u64, BindingEnd);

/// Back-off bookkeeping of one unschedulable pod.
struct Backoff {
    attempts: u32,
    next_try: Instant,
    /// The cluster generation when it last failed: any later change retries it.
    generation: u64,
}

struct Scheduler {
    config: Config,
    client: kube::Client,
    /// Writes `FailedScheduling` Events, waited for: a pass that finds pods unschedulable
    /// goes at the pace their Events are written, so a mass of them is not dropped.
    recorder: Recorder,
    /// Queues `Scheduled` Events: a binding's slot is free once the binding is made (unless
    /// the queue is full).
    events: Emitter,
    nodes: Store<Node>,
    pods: Arc<Mutex<Pods>>,
    storage: volumes::Stores,
    /// Bumped on every change of a node, a bound pod, a claim, a volume or a storage class.
    generation: Arc<AtomicU64>,
    /// Pods bound by us that the pod cache does not show as bound yet, by uid.
    assumed: HashMap<String, Bound>,
    backoff: HashMap<String, Backoff>,
    /// Bindings in flight.
    binding: tokio::task::JoinSet<Finished>,
}

pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let secure_port =
        ekube_api::secure_port::SecurePort::bind(config.bind_address, config.secure_port).await?;
    let client = ekube_api::client::from_kubeconfig(&config.kubeconfig).await?;
    let serving = {
        let client = client.clone();
        async move {
            match secure_port {
                Some(port) => port.serve(client, metrics::render).await,
                None => std::future::pending().await,
            }
        }
    };
    let recorder = Recorder::new(client.clone(), &config.scheduler_name);
    let events = Emitter::spawn(recorder.clone());
    let notify = Arc::new(tokio::sync::Notify::new());
    let generation = Arc::new(AtomicU64::new(0));
    let (nodes, node_writer) = reflector::store::<Node>();
    let node_watch = {
        let (notify, generation) = (notify.clone(), generation.clone());
        reflector::reflector(
            node_writer,
            watcher(Api::<Node>::all(client.clone()), watcher::Config::default()),
        )
        .default_backoff()
        .for_each(move |_| {
            generation.fetch_add(1, Ordering::SeqCst);
            notify.notify_one();
            futures::future::ready(())
        })
    };
    let (claims, claim_writer) = reflector::store::<PersistentVolumeClaim>();
    let (pvs, pv_writer) = reflector::store::<PersistentVolume>();
    let (classes, class_writer) = reflector::store::<StorageClass>();
    let storage = volumes::Stores {
        claims,
        volumes: pvs,
        classes,
    };
    // A claim, volume or class appearing (or changing) may make a waiting pod schedulable.
    let storage_watch = futures::future::join3(
        reflector::reflector(
            claim_writer,
            watcher(Api::all(client.clone()), watcher::Config::default()),
        )
        .default_backoff()
        .for_each(bump(generation.clone(), notify.clone())),
        reflector::reflector(
            pv_writer,
            watcher(Api::all(client.clone()), watcher::Config::default()),
        )
        .default_backoff()
        .for_each(bump(generation.clone(), notify.clone())),
        reflector::reflector(
            class_writer,
            watcher(Api::all(client.clone()), watcher::Config::default()),
        )
        .default_backoff()
        .for_each(bump(generation.clone(), notify.clone())),
    );
    let pods = Arc::new(Mutex::new(Pods::new(&config.scheduler_name)));
    let pod_watch = {
        let (notify, generation, pods) = (notify.clone(), generation.clone(), pods.clone());
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .for_each(move |ev| {
                if let Ok(ev) = ev
                    && pods.lock().expect("pod cache lock").follow(ev)
                {
                    generation.fetch_add(1, Ordering::SeqCst);
                }
                notify.notify_one();
                futures::future::ready(())
            })
    };
    // The caches fill whether or not this copy leads, so a new leader starts warm; only the
    // scheduling loop waits for the Lease, and starts afresh after each election.
    let elector = config.leader.elector(client.clone(), "kube-scheduler");
    let scheduling = ekube_api::leader::run_elected(elector, shutdown, || {
        Scheduler {
            config: config.clone(),
            client: client.clone(),
            recorder: recorder.clone(),
            events: events.clone(),
            nodes: nodes.clone(),
            pods: pods.clone(),
            storage: storage.clone(),
            generation: generation.clone(),
            assumed: HashMap::new(),
            backoff: HashMap::new(),
            binding: tokio::task::JoinSet::new(),
        }
        .schedule(notify.clone())
    });
    tokio::select! {
        _ = scheduling => Ok(()),
        _ = node_watch => Err(Error::WatchEnded("node")),
        _ = pod_watch => Err(Error::WatchEnded("pod")),
        _ = storage_watch => Err(Error::WatchEnded("storage")),
        _ = serving => Ok(()),
    }
}

/// A watch event handler that bumps `generation` and wakes the scheduling loop when the cache
/// changed (not on a failed watch, which retries on its own and would otherwise end every
/// back-off while it does).
fn bump<K, E>(
    generation: Arc<AtomicU64>,
    notify: Arc<tokio::sync::Notify>,
) -> impl FnMut(Result<watcher::Event<K>, E>) -> futures::future::Ready<()> {
    move |ev| {
        if let Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone) =
            ev
        {
            generation.fetch_add(1, Ordering::SeqCst);
            notify.notify_one();
        }
        futures::future::ready(())
    }
}

impl Scheduler {
    /// Schedules whenever the caches change (and every second, for back-offs), for ever.
    async fn schedule(mut self, notify: Arc<tokio::sync::Notify>) {
        // The pod cache needs no wait: until its first list is complete it shows no pod
        // waiting, so a pass does nothing.
        let _ = self.nodes.wait_until_ready().await;
        tracing::info!(name = %self.config.scheduler_name, "scheduler running");
        // When the last pass that had pods to place ended.
        let mut busy = Instant::now() - BURST;
        loop {
            tokio::select! {
                _ = notify.notified() => {
                    // A pod arriving alone is looked at at once; in a burst, let more of it
                    // land first, so that one pass places many.
                    if busy.elapsed() < BURST {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if self.pass().await {
                busy = Instant::now();
            }
        }
    }

    /// One look at the pending pods; whether there were any.
    async fn pass(&mut self) -> bool {
        while let Some(finished) = self.binding.try_join_next() {
            self.finished(finished);
        }
        // Read before the caches: a change that lands while the pass works on what it read
        // then counts as after it, and retries the pods it finds unschedulable.
        let generation = self.generation.load(Ordering::SeqCst);
        let nodes = self.nodes.state();
        let (pending, mut infos) = {
            let pods = self.pods.lock().expect("pod cache lock");
            if pods.none_waiting() {
                // No pod of ours is unbound: every assumption has been seen bound (or its pod
                // is gone), and no pod backs off.
                self.assumed.clear();
                self.backoff.clear();
                metrics::pending(0, 0);
                return false;
            }
            // Forget assumptions the cache has caught up with: their pods show bound, or are
            // gone.
            self.assumed.retain(|uid, _| pods.is_waiting(uid));
            let mut pending: Vec<Arc<Waiting>> = pods
                .waiting()
                .filter(|w| {
                    !self
                        .assumed
                        .contains_key(w.pod.metadata.uid.as_deref().unwrap_or_default())
                })
                .cloned()
                .collect();
            pending.sort_by_cached_key(|w| {
                let p = &w.pod;
                let prio = p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
                (
                    std::cmp::Reverse(prio),
                    p.metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.as_second()),
                    p.name_any(),
                )
            });
            let pending_uids: HashSet<&str> = pending
                .iter()
                .filter_map(|w| w.pod.metadata.uid.as_deref())
                .collect();
            self.backoff
                .retain(|uid, _| pending_uids.contains(uid.as_str()));
            if pending.is_empty() {
                metrics::pending(0, 0);
                return false;
            }
            // The bound pods, and those bound by us that the cache does not show bound yet.
            let infos = node_infos(&nodes, pods.bound().chain(self.assumed.values()));
            (pending, infos)
        };
        let now = Instant::now();
        let backoff = pending
            .iter()
            .filter(|w| self.backing_off(&w.pod.uid().unwrap_or_default(), generation, now))
            .count();
        metrics::pending(pending.len() - backoff, backoff);
        // Until the storage caches have listed, a pod with claims would be judged against
        // none: such pods wait for them (pods without claims do not).
        let storage_ready = self.storage.ready();
        let storage = if storage_ready {
            self.storage.snapshot()
        } else {
            volumes::Snapshot::default()
        };
        for waiting in pending {
            let pod = &waiting.pod;
            let uid = pod.uid().unwrap_or_default();
            if self.backing_off(&uid, generation, now) {
                continue;
            }
            if !storage_ready && volumes::claim_names(pod).next().is_some() {
                continue;
            }
            let started = Instant::now();
            match self.schedule_one(&waiting, &infos, &storage) {
                Ok((i, claims)) => {
                    let node = infos[i].node.name_any();
                    infos[i].add_footprint(&waiting.footprint);
                    let placed = Bound {
                        node: node.clone(),
                        footprint: waiting.footprint.clone(),
                    };
                    self.assumed.insert(uid, placed);
                    self.start_binding(waiting, node, claims, generation, started)
                        .await;
                }
                Err(message) => {
                    self.unschedulable(pod, message, generation).await;
                    metrics::attempt(
                        &self.config.scheduler_name,
                        metrics::Outcome::Unschedulable,
                        started.elapsed().as_secs_f64(),
                    );
                }
            }
        }
        true
    }

    /// Whether the pod `uid` backs off at `now`: its time has not come and nothing changed
    /// since it failed at `generation`.
    fn backing_off(&self, uid: &str, generation: u64, now: Instant) -> bool {
        self.backoff
            .get(uid)
            .is_some_and(|b| b.generation == generation && b.next_try > now)
    }

    /// Binds `pod` to `node` apart from the scheduling loop (after its pre-bind), waiting for
    /// a slot when [`MAX_BINDING`] are in flight.
    async fn start_binding(
        &mut self,
        waiting: Arc<Waiting>,
        node: String,
        claims: volumes::PodClaims,
        generation: u64,
        started: Instant,
    ) {
        while self.binding.len() >= MAX_BINDING {
            match self.binding.join_next().await {
                Some(finished) => self.finished(finished),
                None => break,
            }
        }
        let (client, events) = (self.client.clone(), self.events.clone());
        let profile = self.config.scheduler_name.clone();
        self.binding.spawn(async move {
            let pod = &waiting.pod;
            let uid = pod.uid().unwrap_or_default();
            let (binding, outcome) = match select_node(&client, &claims, &node).await {
                Err(error) => {
                    tracing::warn!(pod = %pod.name_any(), error, "volume binding failed");
                    let message = format!("running PreBind plugin \"VolumeBinding\": {error}");
                    events
                        .emit(pod, EventType::Warning, "FailedScheduling", message)
                        .await;
                    (BindingEnd::PreBindFailed, metrics::Outcome::Error)
                }
                Ok(()) if bind(&client, &events, pod, &node).await => {
                    (BindingEnd::Bound, metrics::Outcome::Scheduled)
                }
                Ok(()) => (BindingEnd::Failed, metrics::Outcome::Error),
            };
            metrics::attempt(&profile, outcome, started.elapsed().as_secs_f64());
            (uid, generation, binding)
        });
    }

    /// Takes note of a finished binding.
    fn finished(&mut self, finished: Result<Finished, tokio::task::JoinError>) {
        let (uid, generation, binding) = match finished {
            Ok(finished) => finished,
            Err(e) => {
                tracing::error!(error = %e, "a binding task failed");
                return;
            }
        };
        match binding {
            BindingEnd::Bound => {
                self.backoff.remove(&uid);
            }
            BindingEnd::PreBindFailed => {
                self.assumed.remove(&uid);
                self.back_off(uid, generation);
            }
            BindingEnd::Failed => {
                self.assumed.remove(&uid);
            }
        }
    }

    /// Picks the best feasible node (with the pod's claims, for the pre-bind), or says why
    /// none fits.
    fn schedule_one(
        &self,
        waiting: &Waiting,
        infos: &[NodeInfo],
        storage: &volumes::Snapshot,
    ) -> Result<(usize, volumes::PodClaims), String> {
        let claims = volumes::pod_claims(&waiting.pod, storage)
            .map_err(|m| framework::pre_filter_error(infos.len(), &m))?;
        let incoming = framework::Incoming::with_footprint(&waiting.pod, waiting.footprint.clone());
        let guarded: Vec<usize> = (0..infos.len())
            .filter(|&i| infos[i].has_anti_affinity)
            .collect();
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut feasible = Vec::new();
        for (i, ni) in infos.iter().enumerate() {
            // In upstream's filter order: node filters, VolumeBinding, InterPodAffinity.
            let fits = framework::filter(&incoming, ni)
                .and_then(|()| volumes::filter(&claims, storage, &ni.node))
                .and_then(|()| {
                    interpod::filter(&incoming, i, infos, &guarded).map_err(|r| vec![r.to_owned()])
                });
            match fits {
                Ok(()) => feasible.push(i),
                Err(rs) => {
                    for r in rs {
                        *reasons.entry(r).or_default() += 1;
                    }
                }
            }
        }
        if feasible.is_empty() {
            return Err(framework::fit_error(infos.len(), &reasons));
        }
        let max_owner = incoming
            .footprint
            .owner
            .as_ref()
            .map(|u| {
                feasible
                    .iter()
                    .map(|i| infos[*i].owners.get(u).copied().unwrap_or(0))
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        // InterPodAffinity weighs 2, as in upstream's default profile.
        let interpod = interpod::scores(&incoming, &feasible, infos);
        let scored: Vec<(i64, usize)> = feasible
            .iter()
            .zip(interpod)
            .map(|(i, ip)| {
                (
                    framework::score(&incoming, &infos[*i], max_owner) + 2 * ip,
                    *i,
                )
            })
            .collect();
        let best = scored.iter().map(|(s, _)| *s).max().unwrap_or(0);
        let top: Vec<usize> = scored
            .iter()
            .filter(|(s, _)| *s == best)
            .map(|(_, i)| *i)
            .collect();
        Ok((top[rand::random_range(0..top.len())], claims))
    }

    /// Starts or lengthens a pod's back-off (1 s doubling to `--pod-max-backoff`); a change
    /// after `generation` ends it early.
    fn back_off(&mut self, uid: String, generation: u64) {
        let initial = Duration::from_secs(self.config.pod_initial_backoff_seconds.max(1));
        let max = Duration::from_secs(self.config.pod_max_backoff_seconds.max(1));
        let entry = self.backoff.entry(uid).or_insert(Backoff {
            attempts: 0,
            next_try: Instant::now(),
            generation,
        });
        entry.attempts += 1;
        let delay = initial
            .saturating_mul(1 << entry.attempts.min(10).saturating_sub(1))
            .min(max);
        entry.next_try = Instant::now() + delay;
        entry.generation = generation;
    }

    async fn unschedulable(&mut self, pod: &Pod, message: String, generation: u64) {
        self.back_off(pod.uid().unwrap_or_default(), generation);
        let condition = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
            .filter(|c| c.status == "False");
        // The pod says so already (this scheduler, or the one that led before it, wrote it).
        if condition.and_then(|c| c.message.as_deref()) == Some(message.as_str()) {
            return;
        }
        // As upstream: the transition time moves only when the status does.
        let since = condition
            .and_then(|c| c.last_transition_time.as_ref())
            .map_or_else(k8s_openapi::jiff::Timestamp::now, |t| t.0);
        tracing::info!(pod = %pod.name_any(), %message, "unschedulable");
        self.recorder
            .record(pod, EventType::Warning, "FailedScheduling", &message)
            .await;
        let ns = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let patch = json!({"status": {"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
            "lastProbeTime": null, "lastTransitionTime": since,
        }]}});
        if let Err(e) = api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(patch),
            )
            .await
        {
            tracing::debug!(error = %e, "recording PodScheduled=False failed");
        }
    }
}

/// Each node with what is placed on it.
fn node_infos<'a>(nodes: &[Arc<Node>], placed: impl Iterator<Item = &'a Bound>) -> Vec<NodeInfo> {
    let mut infos: Vec<NodeInfo> = nodes.iter().map(|n| NodeInfo::new(n.clone())).collect();
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| Some((n.metadata.name.as_deref()?, i)))
        .collect();
    for placed in placed {
        if let Some(&i) = index.get(placed.node.as_str()) {
            infos[i].add_footprint(&placed.footprint);
        }
    }
    infos
}

/// Upstream's VolumeBinding pre-bind: tells the PV controller, through the `selected-node`
/// annotation, where each delayed claim of the pod is needed.
async fn select_node(
    client: &kube::Client,
    claims: &volumes::PodClaims,
    node: &str,
) -> Result<(), String> {
    for (ns, name) in volumes::to_select(claims, node) {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let patch = json!({"metadata": {"annotations": {storage::SELECTED_NODE: node}}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|e| format!("annotating persistentvolumeclaim \"{ns}/{name}\": {e}"))?;
        tracing::info!(claim = %format!("{ns}/{name}"), node, "selected node for claim");
    }
    Ok(())
}

/// `POST pods/<name>/binding`, then the `Scheduled` Event; whether the binding was made.
async fn bind(client: &kube::Client, events: &Emitter, pod: &Pod, node: &str) -> bool {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            uid: pod.uid(),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.into()),
            ..Default::default()
        },
    };
    match api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => {
            tracing::info!(pod = %format!("{ns}/{name}"), node, "bound");
            let msg = format!("Successfully assigned {ns}/{name} to {node}");
            events.emit(pod, EventType::Normal, "Scheduled", msg).await;
            true
        }
        Err(e) => {
            tracing::debug!(error = %e, pod = %name, "binding failed");
            false
        }
    }
}
