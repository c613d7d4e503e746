//! [`Datapath`]: the proxy's view of the service maps and the ordered writes that change them.
//!
//! The struct mirrors what the maps hold (rebuilt from the maps when opened, so a restarted proxy
//! continues where the previous one stopped) and turns "service X now has backends B" into the
//! smallest set of map writes, in an order that never lets the kernel follow a dangling
//! reference: backends, then backend slots, then the slot-0 record that publishes them; deletes
//! go the other way. One endpoint change costs O(1) writes.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::Ipv4Addr,
};

use tracing::{debug, warn};

use super::{
    BackendAddr, DatapathState, Error, Frontend, Protocol, Result, ServiceDatapath, ServiceEntry,
    ServiceOptions,
    maps::{self, MapStore},
};

/// What the proxy programmed for one frontend.
#[derive(Clone, Debug)]
struct Service {
    /// `ServiceValue::service_id`, keys the affinity map.
    id: u32,
    /// Backend id per slot; `slots[0]` is slot 1.
    slots: Vec<u32>,
    options: ServiceOptions,
}

/// The service datapath over a [`MapStore`]: pinned BPF maps in production, [`maps::MemMaps`]
/// in tests.
pub struct Datapath<S: MapStore> {
    pub(crate) store: S,
    services: HashMap<Frontend, Service>,
    /// Backend id of each (address, protocol) programmed.
    backend_ids: HashMap<(BackendAddr, Protocol), u32>,
    /// Reverse of `backend_ids`, plus the number of services using each id.
    backend_refs: HashMap<u32, ((BackendAddr, Protocol), u32)>,
    node_addrs: BTreeSet<Ipv4Addr>,
    /// Ids are never reused while the proxy runs, so a stale affinity entry cannot point to a
    /// different backend (or service) that inherited its id.
    next_backend_id: u32,
    next_service_id: u32,
    /// Map updates and deletes issued since open.
    writes: u64,
    /// UDP frontends and the ids of backends they dropped since the last commit: their flows
    /// go at the commit ([`MapStore::forget_flows`]).
    left_flows: Vec<(Frontend, u32)>,
}

impl<S: MapStore> Datapath<S> {
    /// Takes over `store`: rebuilds the mirror from what it holds and removes entries nothing
    /// refers to (left by a crash between writes).
    pub fn from_store(store: S) -> Result<Self> {
        let mut dp = Self {
            store,
            services: HashMap::new(),
            backend_ids: HashMap::new(),
            backend_refs: HashMap::new(),
            node_addrs: BTreeSet::new(),
            next_backend_id: 1,
            next_service_id: 1,
            writes: 0,
            left_flows: Vec::new(),
        };
        dp.reload()?;
        Ok(dp)
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Re-reads the maps into the mirror and prunes orphans; returns how many entries it removed.
    pub fn reload(&mut self) -> Result<usize> {
        let raw_services = self.store.services()?;
        let raw_backends = self.store.backends()?;
        let mut records = HashMap::new();
        for (key, value) in &raw_services {
            if key.slot == 0
                && let Some(frontend) = maps::frontend_of(key)
            {
                records.insert(frontend, *value);
            }
        }
        let mut slots: HashMap<Frontend, BTreeMap<u16, u32>> = HashMap::new();
        let mut orphans = Vec::new();
        for (key, value) in &raw_services {
            if key.slot == 0 {
                if maps::frontend_of(key).is_none() {
                    orphans.push(*key);
                }
                continue;
            }
            match maps::frontend_of(key).and_then(|f| Some((f, records.get(&f)?))) {
                Some((f, record)) if key.slot <= record.count => {
                    slots
                        .entry(f)
                        .or_default()
                        .insert(key.slot, value.backend_id);
                }
                _ => orphans.push(*key),
            }
        }

        self.services.clear();
        let mut used: HashMap<u32, u32> = HashMap::new();
        let mut max_service_id = 0;
        for (frontend, record) in &records {
            let by_slot = slots.remove(frontend).unwrap_or_default();
            // A missing slot becomes id 0, which no backend has: the next upsert replaces it.
            let ids: Vec<u32> = (1..=record.count)
                .map(|s| by_slot.get(&s).copied().unwrap_or(0))
                .collect();
            for id in ids.iter().collect::<HashSet<_>>() {
                *used.entry(*id).or_default() += 1;
            }
            max_service_id = max_service_id.max(record.service_id);
            self.services.insert(
                *frontend,
                Service {
                    id: record.service_id,
                    slots: ids,
                    options: maps::options_of(record),
                },
            );
        }

        self.backend_ids.clear();
        self.backend_refs.clear();
        let mut unused = Vec::new();
        let mut max_backend_id = 0;
        for (id, raw) in &raw_backends {
            max_backend_id = max_backend_id.max(*id);
            match (maps::backend_of(raw), used.get(id)) {
                (Some(addr), Some(&refs)) if !self.backend_ids.contains_key(&addr) => {
                    self.backend_ids.insert(addr, *id);
                    self.backend_refs.insert(*id, (addr, refs));
                }
                // Still referenced but a duplicate address: keep it until the slot is rewritten.
                (Some(addr), Some(&refs)) => {
                    self.backend_refs.insert(*id, (addr, refs));
                }
                _ => unused.push(*id),
            }
        }
        self.node_addrs = self
            .store
            .node_addrs()?
            .iter()
            .map(maps::node_addr_of)
            .collect();
        self.next_backend_id = self.next_backend_id.max(max_backend_id + 1);
        self.next_service_id = self.next_service_id.max(max_service_id + 1);

        let pruned = orphans.len() + unused.len();
        for key in orphans {
            self.delete_service_entry(key)?;
        }
        for id in unused {
            self.store.delete_backend(id)?;
            self.writes += 1;
        }
        if pruned > 0 {
            warn!(pruned, "removed service map entries nothing referred to");
        }
        Ok(pruned)
    }

    fn put_service_entry(
        &mut self,
        key: ekube_ebpf_common::ServiceKey,
        value: ekube_ebpf_common::ServiceValue,
    ) -> Result<()> {
        self.writes += 1;
        self.store.put_service(key, value)
    }

    fn delete_service_entry(&mut self, key: ekube_ebpf_common::ServiceKey) -> Result<()> {
        self.writes += 1;
        self.store.delete_service(key)
    }

    /// The backend id for `addr`, writing a new backend entry if it has none yet.
    fn backend_id(&mut self, addr: BackendAddr, proto: Protocol) -> Result<u32> {
        if let Some(id) = self.backend_ids.get(&(addr, proto)) {
            return Ok(*id);
        }
        let id = self.next_backend_id;
        self.next_backend_id = id
            .checked_add(1)
            .ok_or(Error::IdsExhausted { what: "backend" })?;
        self.writes += 1;
        self.store
            .put_backend(id, maps::backend_value(addr, proto))?;
        self.backend_ids.insert((addr, proto), id);
        self.backend_refs.insert(id, ((addr, proto), 0));
        Ok(id)
    }

    /// Drops one service's reference to backend `id`, deleting the entry with the last one.
    fn release_backend(&mut self, id: u32) -> Result<()> {
        let Some((addr, refs)) = self.backend_refs.get_mut(&id) else {
            return Ok(());
        };
        *refs = refs.saturating_sub(1);
        if *refs > 0 {
            return Ok(());
        }
        let addr = *addr;
        self.backend_refs.remove(&id);
        if self.backend_ids.get(&addr) == Some(&id) {
            self.backend_ids.remove(&addr);
        }
        self.writes += 1;
        self.store.delete_backend(id)
    }

    fn upsert_inner(
        &mut self,
        frontend: Frontend,
        backends: &[BackendAddr],
        options: ServiceOptions,
    ) -> Result<()> {
        let mut seen = HashSet::new();
        let desired: Vec<BackendAddr> = backends
            .iter()
            .copied()
            .filter(|b| seen.insert(*b))
            .collect();
        if desired.len() >= usize::from(u16::MAX) {
            return Err(Error::TooManyBackends {
                frontend,
                count: desired.len(),
            });
        }
        // 1. Backends first: nothing points to a new id yet.
        let mut desired_ids = Vec::with_capacity(desired.len());
        for addr in desired {
            desired_ids.push(self.backend_id(addr, frontend.proto)?);
        }
        let old = self.services.get(&frontend).cloned();
        let old_slots = old.as_ref().map(|s| s.slots.clone()).unwrap_or_default();
        let new_slots = layout_slots(&old_slots, &desired_ids);
        let id = match &old {
            Some(s) => s.id,
            None => {
                let id = self.next_service_id;
                self.next_service_id = id
                    .checked_add(1)
                    .ok_or(Error::IdsExhausted { what: "service" })?;
                id
            }
        };
        // 2. Slots, before the record that makes them reachable.
        for (i, backend_id) in new_slots.iter().enumerate() {
            if old_slots.get(i) != Some(backend_id) {
                let key = maps::service_key(&frontend, i as u16 + 1);
                self.put_service_entry(key, maps::slot_record(id, *backend_id))?;
            }
        }
        // 3. The slot-0 record.
        let unchanged = old
            .as_ref()
            .is_some_and(|s| s.slots.len() == new_slots.len() && s.options == options);
        if !unchanged {
            let record = maps::service_record(&frontend, id, new_slots.len() as u16, options);
            self.put_service_entry(maps::service_key(&frontend, 0), record)?;
        }
        // 4. Slots beyond the new count, now unreachable.
        for slot in new_slots.len()..old_slots.len() {
            self.delete_service_entry(maps::service_key(&frontend, slot as u16 + 1))?;
        }
        // 5. Reference counts; backends no service uses any more go last.
        let old_set: HashSet<u32> = old_slots.iter().copied().collect();
        let new_set: HashSet<u32> = new_slots.iter().copied().collect();
        for added in new_set.difference(&old_set) {
            if let Some((_, refs)) = self.backend_refs.get_mut(added) {
                *refs += 1;
            }
        }
        self.services.insert(
            frontend,
            Service {
                id,
                slots: new_slots,
                options,
            },
        );
        for removed in old_set.difference(&new_set) {
            self.backend_left(frontend, options.host_port, *removed)?;
        }
        Ok(())
    }

    /// `frontend` no longer balances to backend `id`: drops its reference, and remembers the
    /// flows there for the commit if the frontend can have any: a UDP one on node addresses (a
    /// NodePort, or a pod's hostPort), the only ones the tc programs keep flows for. ClusterIP
    /// traffic is translated by the socket hooks, without a conntrack entry.
    fn backend_left(&mut self, frontend: Frontend, host_port: bool, id: u32) -> Result<()> {
        if frontend.proto == Protocol::Udp && (frontend.is_node_port() || host_port) {
            self.left_flows.push((frontend, id));
        }
        self.release_backend(id)
    }

    fn delete_inner(&mut self, frontend: Frontend) -> Result<()> {
        let Some(service) = self.services.get(&frontend).cloned() else {
            return Ok(());
        };
        self.delete_service_entry(maps::service_key(&frontend, 0))?;
        for slot in 1..=service.slots.len() {
            self.delete_service_entry(maps::service_key(&frontend, slot as u16))?;
        }
        self.services.remove(&frontend);
        for id in service.slots.iter().collect::<HashSet<_>>() {
            self.backend_left(frontend, service.options.host_port, *id)?;
        }
        Ok(())
    }

    /// Runs a change; if a map write fails midway, re-syncs the mirror from the maps so the next
    /// attempt starts from the truth.
    fn apply(&mut self, change: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        let result = change(self);
        if let Err(err) = &result {
            warn!(%err, "map write failed; re-reading the maps");
            if let Err(reload) = self.reload() {
                warn!(%reload, "re-reading the maps failed too");
            }
        }
        result
    }
}

/// New slot contents: kept backends stay in their slot (so existing choices and in-flight
/// lookups stay valid), new ones fill freed slots first, and the tail is moved into remaining
/// holes so slots stay dense.
fn layout_slots(old: &[u32], desired: &[u32]) -> Vec<u32> {
    let desired_set: HashSet<u32> = desired.iter().copied().collect();
    let old_set: HashSet<u32> = old.iter().copied().collect();
    let mut added = desired.iter().copied().filter(|id| !old_set.contains(id));
    let mut slots: Vec<Option<u32>> = old
        .iter()
        .map(|id| desired_set.contains(id).then_some(*id))
        .collect();
    for slot in slots.iter_mut().filter(|s| s.is_none()) {
        *slot = added.next();
    }
    slots.extend(added.map(Some));
    loop {
        while slots.last() == Some(&None) {
            slots.pop();
        }
        let Some(hole) = slots.iter().position(Option::is_none) else {
            break;
        };
        slots[hole] = slots.pop().flatten();
    }
    slots.into_iter().flatten().collect()
}

impl<S: MapStore> ServiceDatapath for Datapath<S> {
    fn upsert_service_with(
        &mut self,
        frontend: Frontend,
        backends: &[BackendAddr],
        options: ServiceOptions,
    ) -> Result<()> {
        debug!(%frontend, backends = backends.len(), ?options, "upsert service");
        self.apply(|dp| dp.upsert_inner(frontend, backends, options))
    }

    fn delete_service(&mut self, frontend: Frontend) -> Result<()> {
        debug!(%frontend, "delete service");
        self.apply(|dp| dp.delete_inner(frontend))
    }

    fn set_node_addrs(&mut self, addrs: &[Ipv4Addr]) -> Result<()> {
        let desired: BTreeSet<Ipv4Addr> = addrs.iter().copied().collect();
        let current = self.node_addrs.clone();
        self.apply(|dp| {
            for ip in desired.difference(&current) {
                dp.writes += 1;
                dp.store.put_node_addr(maps::node_addr_key(*ip))?;
                dp.node_addrs.insert(*ip);
            }
            for ip in current.difference(&desired) {
                dp.writes += 1;
                dp.store.delete_node_addr(maps::node_addr_key(*ip))?;
                dp.node_addrs.remove(ip);
            }
            Ok(())
        })?;
        // Also without a change: interfaces (the overlay device) may have appeared since.
        let addrs = self.node_addrs.clone();
        self.store.attach_node_interfaces(&addrs)
    }

    fn dump(&self) -> Result<DatapathState> {
        dump_store(&self.store)
    }

    /// From the mirror, not the maps: it holds what the maps held when opened (so a restarted
    /// proxy prunes what its predecessor left) and is read back after a failed write, so it
    /// misses only entries written behind the proxy's back. Reading the maps instead cost a
    /// walk of all three per full sync: at 100,000 Services, half a million lookups and their
    /// copy every sync period.
    fn frontends(&self) -> Result<Vec<(Frontend, bool)>> {
        Ok(self
            .services
            .iter()
            .map(|(frontend, service)| (*frontend, service.options.host_port))
            .collect())
    }

    fn map_writes(&self) -> u64 {
        self.writes
    }

    /// The map writes took effect as they were made; what is left is to delete the UDP flows
    /// to backends that left. A failure there is logged, not returned: the Services are
    /// programmed, and the flows end at their idle timeout at the latest (kube-proxy, too,
    /// only logs a failed conntrack cleanup).
    fn commit(&mut self) -> Result<()> {
        if self.left_flows.is_empty() {
            return Ok(());
        }
        let left = std::mem::take(&mut self.left_flows);
        match self.store.forget_flows(&left) {
            Ok(0) => {}
            Ok(removed) => debug!(removed, "deleted UDP flows to backends that left"),
            Err(err) => warn!(%err, "deleting UDP flows to backends that left"),
        }
        Ok(())
    }
}

/// Reads what `store` holds as domain types, without changing anything (unlike
/// [`Datapath::from_store`], which prunes orphans): for inspecting the pinned maps of a running
/// proxy.
pub fn dump_store<S: MapStore>(store: &S) -> Result<DatapathState> {
    let raw = store.services()?;
    let backends: HashMap<u32, BackendAddr> = store
        .backends()?
        .iter()
        .filter_map(|(id, b)| Some((*id, maps::backend_of(b)?.0)))
        .collect();
    let slot_backend: HashMap<(Frontend, u16), u32> = raw
        .iter()
        .filter(|(k, _)| k.slot > 0)
        .filter_map(|(k, v)| Some(((maps::frontend_of(k)?, k.slot), v.backend_id)))
        .collect();
    let mut services = BTreeMap::new();
    for (key, record) in raw.iter().filter(|(k, _)| k.slot == 0) {
        let Some(frontend) = maps::frontend_of(key) else {
            continue;
        };
        let backends = (1..=record.count)
            .filter_map(|slot| backends.get(slot_backend.get(&(frontend, slot))?).copied())
            .collect();
        services.insert(
            frontend,
            ServiceEntry {
                backends,
                affinity: maps::affinity_of(record),
                host_port: maps::options_of(record).host_port,
            },
        );
    }
    let node_addrs = store.node_addrs()?.iter().map(maps::node_addr_of).collect();
    Ok(DatapathState {
        services,
        node_addrs,
    })
}

/// Reads one service from `store` by point lookups (its slot-0 record, its slots, their
/// backends): O(backends of that service), whatever the size of the maps. `None` when the
/// frontend is not programmed; a slot or backend missing mid-update is left out.
pub fn lookup_service<S: MapStore>(store: &S, frontend: &Frontend) -> Result<Option<ServiceEntry>> {
    let Some(record) = store.service(maps::service_key(frontend, 0))? else {
        return Ok(None);
    };
    let mut backends = Vec::with_capacity(usize::from(record.count));
    for slot in 1..=record.count {
        let Some(value) = store.service(maps::service_key(frontend, slot))? else {
            continue;
        };
        if let Some((addr, _)) = store
            .backend(value.backend_id)?
            .as_ref()
            .and_then(maps::backend_of)
        {
            backends.push(addr);
        }
    }
    Ok(Some(ServiceEntry {
        backends,
        affinity: maps::affinity_of(&record),
        host_port: maps::options_of(&record).host_port,
    }))
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
