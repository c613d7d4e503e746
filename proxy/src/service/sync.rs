//! [`Syncer`]: applies desired state to a [`ServiceDatapath`], one Service at a time.
//!
//! The syncer remembers what it programmed for each Service, so a change to one Service
//! compares only that Service's frontends and hands only the changed ones to the datapath (which
//! in turn writes only the changed map entries): O(that service). [`Syncer::full_sync`] is the
//! safety net run at start-up and periodically: every Service again (cheap when nothing changed)
//! and a prune of frontends no Service owns — left by Services deleted while the proxy was down,
//! since the datapath itself restarts from its pinned maps. A Service the datapath cannot hold
//! (invalid spec, full map) is taken out of the datapath and reported; the next full sync
//! retries it.
//!
//! Pods' hostPorts ([`super::hostport`]) go through the same bookkeeping, owned by their pod
//! instead of a Service ([`Owner`]): [`Syncer::stage_pod`] per pod event, and
//! [`Syncer::stage_all_pods`] once the pods are listed and at every full sync. Until that first
//! complete list, the prune leaves hostPort frontends alone (a restarted proxy keeps serving
//! them while it lists).
//!
//! Datapaths that apply in batches (iptables) take effect on [`ServiceDatapath::commit`]:
//! [`Syncer::sync_service`] commits after the one Service, [`Syncer::stage_service`] leaves it to
//! the caller's [`Syncer::commit`] (the watch loop batches bursts of events that way), and
//! [`Syncer::full_sync`] commits once after every Service and the prune.

use std::{
    collections::{BTreeSet, HashMap},
    fmt, io,
    net::Ipv4Addr,
};

use tracing::{debug, info, warn};

use super::{
    desired::{DesiredService, FrontendSpec, ServiceName, Unsupported},
    hostport::{PodHostPorts, PodName},
    view::ServiceView,
};
use crate::datapath::{Counter, Error as DatapathError, Frontend, ServiceDatapath};

/// A datapath the proxy can run on: the service maps plus, where there are any, kernel counters.
pub trait ProxyDatapath: ServiceDatapath {
    /// The kernel programs' counters summed over CPUs (empty for fakes).
    fn kernel_counters(&self) -> Vec<(Counter, u64)> {
        Vec::new()
    }

    /// Shows the datapath the Service behind `key` (`None` once deleted) before its frontends
    /// are programmed; for datapaths that name things after Service ports (iptables chains).
    fn describe_service(&mut self, _key: &ServiceName, _svc: Option<&ServiceView>) {}

    /// Names the pod behind hostPort `frontends` before they are programmed; for datapaths
    /// that name things after it (iptables chains and comments).
    fn describe_pod(&mut self, _key: &PodName, _frontends: &[Frontend]) {}
}

impl ProxyDatapath for crate::Datapath<crate::datapath::BpfMaps> {
    fn kernel_counters(&self) -> Vec<(Counter, u64)> {
        self.counters().unwrap_or_else(|err| {
            warn!(%err, "reading the datapath counters");
            Vec::new()
        })
    }
}

impl ProxyDatapath for crate::Datapath<crate::datapath::maps::MemMaps> {}

/// The result of syncing one Service.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// What went wrong, if anything (the Service is then not, or not fully, programmed).
    pub problem: Option<String>,
    /// `problem` differs from the last one reported for this Service: worth an Event.
    pub new_problem: bool,
}

/// What a programmed frontend belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    /// A Service's ClusterIP or NodePort.
    Service(ServiceName),
    /// A pod's hostPort.
    Pod(PodName),
}

impl Owner {
    fn service(&self) -> Option<&ServiceName> {
        match self {
            Owner::Service(name) => Some(name),
            Owner::Pod(_) => None,
        }
    }

    fn pod(&self) -> Option<&PodName> {
        match self {
            Owner::Pod(name) => Some(name),
            Owner::Service(_) => None,
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Service(name) => write!(f, "service {name}"),
            Owner::Pod(name) => write!(f, "pod {name}"),
        }
    }
}

/// Totals for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncTotals {
    /// Services with at least one programmed frontend.
    pub services: usize,
    /// Programmed frontends.
    pub frontends: usize,
    /// Backend references summed over frontends.
    pub backends: usize,
    /// Datapath writes that failed because a map was full.
    pub map_full_errors: u64,
    /// Service syncs that ended with a problem.
    pub failures: u64,
}

/// Desired-vs-programmed bookkeeping over a datapath.
pub struct Syncer<D> {
    dp: D,
    /// What each Service or pod has programmed, as last written, sorted by frontend (a slice
    /// rather than the `BTreeMap` it was staged from: one node of that is ~0.5 KiB, most of it
    /// empty for a Service of one or two ports).
    programmed: HashMap<Owner, Box<[(Frontend, FrontendSpec)]>>,
    /// Which Service or pod owns each programmed frontend (two never share one).
    owners: HashMap<Frontend, Owner>,
    /// The last problem reported per owner, so an unchanged problem is reported once.
    problems: HashMap<Owner, String>,
    /// Every pod has been staged once ([`Syncer::stage_all_pods`]): from then on the prune
    /// may remove hostPort frontends no pod owns.
    pods_listed: bool,
    totals: SyncTotals,
}

impl<D: ProxyDatapath> Syncer<D> {
    pub fn new(dp: D) -> Self {
        Self {
            dp,
            programmed: HashMap::new(),
            owners: HashMap::new(),
            problems: HashMap::new(),
            pods_listed: false,
            totals: SyncTotals::default(),
        }
    }

    pub fn datapath(&self) -> &D {
        &self.dp
    }

    pub fn totals(&self) -> SyncTotals {
        self.totals
    }

    /// Passes the Service to the datapath ([`ProxyDatapath::describe_service`]).
    pub fn describe(&mut self, key: &ServiceName, svc: Option<&ServiceView>) {
        self.dp.describe_service(key, svc);
    }

    /// Applies what was staged since the last commit. A failure is counted; the changes stay
    /// staged and the next commit retries them.
    pub fn commit(&mut self) -> Result<(), DatapathError> {
        let result = self.dp.commit();
        if result.is_err() {
            self.totals.failures += 1;
        }
        result
    }

    /// Sets the node addresses NodePorts answer on.
    pub fn set_node_addrs(&mut self, addrs: &[Ipv4Addr]) -> Result<(), DatapathError> {
        self.dp.set_node_addrs(addrs)
    }

    /// Makes the datapath hold `desired` for `key` (an empty map removes the Service) and
    /// commits. Costs O(frontends of this Service) plus the datapath's O(changed backends)
    /// writes (and, for a batch datapath, one commit).
    pub fn sync_service(
        &mut self,
        key: &ServiceName,
        desired: Result<DesiredService, Unsupported>,
    ) -> Outcome {
        let mut outcome = self.stage_service(key, desired);
        if let Err(err) = self.commit() {
            let problem = format!("applying the datapath: {err}");
            outcome.problem = Some(match outcome.problem.take() {
                Some(p) => format!("{p}; {problem}"),
                None => problem,
            });
            outcome.new_problem = true;
        }
        outcome
    }

    /// [`Syncer::sync_service`] without the commit.
    pub fn stage_service(
        &mut self,
        key: &ServiceName,
        desired: Result<DesiredService, Unsupported>,
    ) -> Outcome {
        let (desired, problems) = match desired {
            Ok(desired) => (desired, Vec::new()),
            Err(unsupported) => (DesiredService::new(), vec![unsupported.to_string()]),
        };
        self.stage(&Owner::Service(key.clone()), desired, problems)
    }

    /// Makes the datapath hold `ports` for pod `key` (no frontends removes its hostPorts),
    /// without the commit. Ports the pod asked for but cannot have are its problem, as is a
    /// hostPort another pod of this node holds already.
    pub fn stage_pod(&mut self, key: &PodName, ports: PodHostPorts) -> Outcome {
        let owner = Owner::Pod(key.clone());
        // Not the ones another pod holds: they keep that pod's name.
        let frontends: Vec<Frontend> = ports
            .frontends
            .keys()
            .filter(|f| self.owners.get(f).is_none_or(|o| *o == owner))
            .copied()
            .collect();
        self.dp.describe_pod(key, &frontends);
        self.stage(&owner, ports.frontends, ports.skipped)
    }

    /// Stages every pod of this node (pods absent from `all` lose their hostPorts) and lets
    /// the prune remove hostPort frontends from then on. Returns each pod's outcome that has a
    /// problem.
    pub fn stage_all_pods(&mut self, all: Vec<(PodName, PodHostPorts)>) -> Vec<(PodName, Outcome)> {
        let wanted: BTreeSet<&PodName> = all.iter().map(|(k, _)| k).collect();
        let mut outcomes = self.remove_absent(|k| wanted.contains(k), Owner::pod);
        for (key, ports) in all {
            let outcome = self.stage_pod(&key, ports);
            if outcome.problem.is_some() {
                outcomes.push((key, outcome));
            }
        }
        self.pods_listed = true;
        outcomes
    }

    /// Makes the datapath hold `desired` for `key`, without the commit; `problems` so far are
    /// reported with those met on the way.
    fn stage(
        &mut self,
        key: &Owner,
        desired: DesiredService,
        mut problems: Vec<String>,
    ) -> Outcome {
        let old: DesiredService = self
            .programmed
            .remove(key)
            .map(|p| p.into_vec().into_iter().collect())
            .unwrap_or_default();
        let mut now = DesiredService::new();
        // Frontends the Service no longer has go first, freeing room for the new ones.
        for (frontend, spec) in &old {
            if desired.contains_key(frontend) {
                continue;
            }
            match self.dp.delete_service(*frontend) {
                Ok(()) => {
                    self.owners.remove(frontend);
                }
                Err(err) => {
                    // Still in the map: keep owning it so the next sync retries the delete.
                    problems.push(format!("removing {frontend}: {err}"));
                    now.insert(*frontend, spec.clone());
                }
            }
        }
        for (frontend, spec) in desired {
            if let Some(owner) = self.owners.get(&frontend).filter(|o| *o != key) {
                problems.push(format!("{frontend} is already served for {owner}"));
                continue;
            }
            if old.get(&frontend) == Some(&spec) {
                now.insert(frontend, spec);
                continue;
            }
            match self
                .dp
                .upsert_service_with(frontend, &spec.backends, spec.options())
            {
                Ok(()) => {
                    self.owners.insert(frontend, key.clone());
                    now.insert(frontend, spec);
                }
                Err(err) => {
                    if is_map_full(&err) {
                        self.totals.map_full_errors += 1;
                    }
                    problems.push(format!("programming {frontend}: {err}"));
                    // Half-written is worse than absent: take the frontend out entirely and
                    // leave it to the next full sync to retry.
                    match self.dp.delete_service(frontend) {
                        Ok(()) => {
                            self.owners.remove(&frontend);
                        }
                        Err(err) => {
                            warn!(%frontend, %err, "removing a frontend that failed to program");
                            self.owners.insert(frontend, key.clone());
                        }
                    }
                }
            }
        }
        if !now.is_empty() {
            self.programmed
                .insert(key.clone(), now.into_iter().collect());
        }
        self.finish(key, problems)
    }

    fn finish(&mut self, key: &Owner, problems: Vec<String>) -> Outcome {
        if problems.is_empty() {
            if self.problems.remove(key).is_some() {
                info!(owner = %key, "programmed again");
            }
            return Outcome::default();
        }
        self.totals.failures += 1;
        let problem = problems.join("; ");
        let new_problem = self.problems.get(key) != Some(&problem);
        if new_problem {
            warn!(owner = %key, %problem, "not (fully) programmed");
            self.problems.insert(key.clone(), problem.clone());
        }
        Outcome {
            problem: Some(problem),
            new_problem,
        }
    }

    /// Syncs every Service in `all`, then prunes frontends that are in the maps but owned by no
    /// Service, then commits once. Services for which `wanted` says no are removed first, so
    /// a frontend that moved between Services is free for its new one. `all` is staged as it
    /// is produced: a caller that computes each desired state on the way never holds them all
    /// at once (at 100,000 Services that was tens of MiB, for an instant, every sync period).
    /// Returns each Service's outcome that has a problem, and how many frontends the prune
    /// removed.
    pub fn full_sync(
        &mut self,
        wanted: impl Fn(&ServiceName) -> bool,
        all: impl IntoIterator<Item = (ServiceName, Result<DesiredService, Unsupported>)>,
    ) -> (Vec<(ServiceName, Outcome)>, usize) {
        let mut outcomes = self.remove_absent(wanted, Owner::service);
        for (key, desired) in all {
            let outcome = self.stage_service(&key, desired);
            if outcome.problem.is_some() {
                outcomes.push((key, outcome));
            }
        }
        let pruned = self.prune();
        if let Err(err) = self.commit() {
            warn!(%err, "applying the full sync; the next sync retries");
        }
        (outcomes, pruned)
    }

    /// [`Syncer::full_sync`] of a list that holds every wanted Service.
    #[cfg(test)]
    pub(crate) fn full_sync_of(
        &mut self,
        all: Vec<(ServiceName, Result<DesiredService, Unsupported>)>,
    ) -> (Vec<(ServiceName, Outcome)>, usize) {
        let wanted: BTreeSet<ServiceName> = all.iter().map(|(k, _)| k.clone()).collect();
        self.full_sync(|k| wanted.contains(k), all)
    }

    /// Removes everything programmed by the owners of one kind (`kind` names them) for which
    /// `wanted` says no, and forgets their problems; returns the outcomes that have a problem
    /// (a delete that failed).
    fn remove_absent<K: Ord + Clone>(
        &mut self,
        wanted: impl Fn(&K) -> bool,
        kind: fn(&Owner) -> Option<&K>,
    ) -> Vec<(K, Outcome)> {
        let gone: BTreeSet<Owner> = self
            .programmed
            .keys()
            .chain(self.problems.keys())
            .filter(|owner| kind(owner).is_some_and(|k| !wanted(k)))
            .cloned()
            .collect();
        let mut outcomes = Vec::new();
        for owner in gone {
            let outcome = self.stage(&owner, DesiredService::new(), Vec::new());
            self.problems.remove(&owner);
            if let (Some(key), Some(_)) = (kind(&owner), &outcome.problem) {
                outcomes.push((key.clone(), outcome));
            }
        }
        outcomes
    }

    /// Removes frontends the maps hold that no Service or pod owns (hostPort frontends only
    /// once the pods have been listed).
    fn prune(&mut self) -> usize {
        let held = match self.dp.frontends() {
            Ok(held) => held,
            Err(err) => {
                warn!(%err, "reading the datapath for the prune");
                return 0;
            }
        };
        let mut pruned = 0;
        for (frontend, host_port) in held {
            if self.owners.contains_key(&frontend) || (host_port && !self.pods_listed) {
                continue;
            }
            match self.dp.delete_service(frontend) {
                Ok(()) => {
                    debug!(%frontend, "pruned a frontend nothing owns");
                    pruned += 1;
                }
                Err(err) => warn!(%frontend, %err, "pruning"),
            }
        }
        if pruned > 0 {
            info!(pruned, "pruned frontends nothing owns");
        }
        pruned
    }

    /// Recounts services, frontends and backends (O(services); for metrics after a sync).
    /// Pods' hostPorts are not counted.
    pub fn recount(&mut self) -> SyncTotals {
        let services = || {
            self.programmed
                .iter()
                .filter(|(owner, _)| matches!(owner, Owner::Service(_)))
                .map(|(_, desired)| desired)
        };
        self.totals.services = services().count();
        self.totals.frontends = services().map(|s| s.len()).sum();
        self.totals.backends = services()
            .flat_map(|s| s.iter())
            .map(|(_, f)| f.backends.len())
            .sum();
        self.totals
    }

    /// (frontends, backends) programmed for one Service.
    pub fn service_counts(&self, key: &ServiceName) -> (usize, usize) {
        self.programmed
            .get(&Owner::Service(key.clone()))
            .map_or((0, 0), |s| {
                (s.len(), s.iter().map(|(_, f)| f.backends.len()).sum())
            })
    }

    /// Applies a delta to the cached totals (used by the O(1) per-Service path).
    pub fn adjust_totals(&mut self, before: (usize, usize), after: (usize, usize)) {
        let t = &mut self.totals;
        t.services =
            (t.services + usize::from(after.0 > 0)).saturating_sub(usize::from(before.0 > 0));
        t.frontends = (t.frontends + after.0).saturating_sub(before.0);
        t.backends = (t.backends + after.1).saturating_sub(before.1);
    }
}

/// A hash map refuses new keys with E2BIG once `max_entries` is reached.
pub fn is_map_full(err: &DatapathError) -> bool {
    match err {
        DatapathError::Map { source, .. } => match source.as_ref() {
            aya::maps::MapError::SyscallError(e) => {
                e.io_error.raw_os_error() == Some(libc::E2BIG)
                    || e.io_error.kind() == io::ErrorKind::OutOfMemory
            }
            _ => false,
        },
        DatapathError::IdsExhausted { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
