//! Desired versus actual overlay entries, and the changes that turn one into the other.
//!
//! The overlay device holds three kinds of entries per peer: a route to its subnet via its
//! VTEP, a permanent neighbour for that VTEP, and an FDB entry sending its VTEP MAC to its
//! underlay address. [`Overlay`] is the kernel behind them (netlink in
//! [`super::kernel::Netlink`], a recorded fake in tests). [`plan`] is a pure set difference:
//! deletions first (route before neighbour before FDB, so nothing points at an entry that is
//! gone), then additions in the opposite order (FDB and neighbour before the route that uses
//! them). [`reconcile`] reads, plans and applies; running it twice changes nothing the second
//! time, and on start-up it prunes what an earlier run left behind.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use super::peers::Mac;

/// One kernel entry on the overlay device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entry {
    /// `<dst> via <via> dev flannel.1 onlink`.
    Route { dst: Ipv4Network, via: Ipv4Addr },
    /// Permanent neighbour `<ip> lladdr <mac> dev flannel.1`.
    Neigh { ip: Ipv4Addr, mac: Mac },
    /// `bridge fdb <mac> dev flannel.1 dst <dst> self permanent`.
    Fdb { mac: Mac, dst: Ipv4Addr },
}

impl Entry {
    /// Deletion order: routes, then neighbours, then FDB entries.
    fn rank(&self) -> u8 {
        match self {
            Entry::Route { .. } => 0,
            Entry::Neigh { .. } => 1,
            Entry::Fdb { .. } => 2,
        }
    }
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::Route { dst, via } => write!(f, "route {dst} via {via} onlink"),
            Entry::Neigh { ip, mac } => write!(f, "neigh {ip} lladdr {mac}"),
            Entry::Fdb { mac, dst } => write!(f, "fdb {mac} dst {dst}"),
        }
    }
}

/// A set of entries, ordered.
pub type Entries = BTreeSet<Entry>;

/// One step of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Add(Entry),
    Del(Entry),
}

/// The changes that turn `actual` into `desired`.
pub fn plan(desired: &Entries, actual: &Entries) -> Vec<Change> {
    let mut del: Vec<Entry> = actual.difference(desired).copied().collect();
    del.sort_by_key(|e| (e.rank(), *e));
    let mut add: Vec<Entry> = desired.difference(actual).copied().collect();
    add.sort_by_key(|e| (std::cmp::Reverse(e.rank()), *e));
    del.into_iter()
        .map(Change::Del)
        .chain(add.into_iter().map(Change::Add))
        .collect()
}

/// The kernel side of the overlay device's entries.
#[expect(
    async_fn_in_trait,
    reason = "used generically, never as a trait object; no Send bound needed on one runtime thread"
)]
pub trait Overlay {
    type Error: std::error::Error;
    /// Every route, neighbour and FDB entry currently on the overlay device.
    async fn entries(&self) -> Result<Entries, Self::Error>;
    /// Adds (replacing a same-keyed entry) or deletes one entry; deleting an absent one is fine.
    async fn apply(&self, change: Change) -> Result<(), Self::Error>;
}

/// What one reconcile did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub added: usize,
    pub deleted: usize,
    /// Changes that failed, with the error; the next run retries them.
    pub failed: Vec<(Change, String)>,
}

/// Reads the device, applies the difference to `desired`, and reports. A failing change does
/// not stop the others.
#[tracing::instrument(skip_all, fields(desired = desired.len()))]
pub async fn reconcile<O: Overlay>(overlay: &O, desired: &Entries) -> Result<Outcome, O::Error> {
    let actual = overlay.entries().await?;
    let mut out = Outcome::default();
    for change in plan(desired, &actual) {
        match overlay.apply(change).await {
            Ok(()) => match change {
                Change::Add(e) => {
                    out.added += 1;
                    tracing::info!(entry = %e, "added");
                }
                Change::Del(e) => {
                    out.deleted += 1;
                    tracing::info!(entry = %e, "deleted");
                }
            },
            Err(e) => {
                tracing::warn!(?change, error = %e, "change failed; retried on the next resync");
                out.failed.push((change, e.to_string()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
pub mod fake {
    //! A recorded in-memory [`Overlay`].

    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    pub struct FakeError(pub String);

    /// Holds entries in memory and records every change applied.
    #[derive(Debug, Default)]
    pub struct FakeOverlay {
        pub state: Mutex<Entries>,
        pub calls: Mutex<Vec<Change>>,
        /// Entries whose addition fails.
        pub refuse: Mutex<Entries>,
    }

    impl Overlay for FakeOverlay {
        type Error = FakeError;

        async fn entries(&self) -> Result<Entries, FakeError> {
            Ok(self.state.lock().unwrap().clone())
        }

        async fn apply(&self, change: Change) -> Result<(), FakeError> {
            self.calls.lock().unwrap().push(change);
            let mut s = self.state.lock().unwrap();
            match change {
                Change::Add(e) if self.refuse.lock().unwrap().contains(&e) => {
                    return Err(FakeError(format!("refused {e}")));
                }
                Change::Add(e) => {
                    // Same-keyed entries are replaced, as NLM_F_REPLACE does.
                    s.retain(|x| !same_key(x, &e));
                    s.insert(e);
                }
                Change::Del(e) => {
                    s.remove(&e);
                }
            }
            Ok(())
        }
    }

    fn same_key(a: &Entry, b: &Entry) -> bool {
        match (a, b) {
            (Entry::Route { dst: x, .. }, Entry::Route { dst: y, .. }) => x == y,
            (Entry::Neigh { ip: x, .. }, Entry::Neigh { ip: y, .. }) => x == y,
            (Entry::Fdb { mac: x, .. }, Entry::Fdb { mac: y, .. }) => x == y,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeOverlay;
    use super::*;

    fn peer(i: u8) -> [Entry; 3] {
        let dst: Ipv4Network = format!("10.244.{i}.0/24").parse().unwrap();
        let mac = Mac::for_vtep(dst.network());
        [
            Entry::Route {
                dst,
                via: dst.network(),
            },
            Entry::Neigh {
                ip: dst.network(),
                mac,
            },
            Entry::Fdb {
                mac,
                dst: Ipv4Addr::new(192, 168, 64, 10 * i),
            },
        ]
    }

    fn set(peers: &[u8]) -> Entries {
        peers.iter().flat_map(|&i| peer(i)).collect()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn plan_adds_targets_before_routes_and_deletes_routes_first() {
        let p = plan(&set(&[2]), &set(&[3]));
        let [r3, n3, f3] = peer(3);
        let [r2, n2, f2] = peer(2);
        assert_eq!(
            p,
            [
                Change::Del(r3),
                Change::Del(n3),
                Change::Del(f3),
                Change::Add(f2),
                Change::Add(n2),
                Change::Add(r2)
            ]
        );
        assert!(plan(&set(&[2, 3]), &set(&[2, 3])).is_empty());
    }

    #[test]
    fn a_changed_peer_is_replaced() {
        let [r, n, f] = peer(2);
        let Entry::Fdb { mac, .. } = f else {
            unreachable!()
        };
        let moved = Entry::Fdb {
            mac,
            dst: Ipv4Addr::new(192, 168, 64, 99),
        };
        let desired: Entries = [r, n, moved].into();
        assert_eq!(
            plan(&desired, &set(&[2])),
            [Change::Del(f), Change::Add(moved)]
        );
    }

    #[test]
    fn reconcile_converges_prunes_and_is_idempotent() {
        let fake = FakeOverlay::default();
        // Left over from an earlier run: peer 4 is gone, peer 2 is current.
        *fake.state.lock().unwrap() = set(&[2, 4]);
        let desired = set(&[2, 3]);
        let out = block_on(reconcile(&fake, &desired)).unwrap();
        assert_eq!((out.added, out.deleted, out.failed.len()), (3, 3, 0));
        assert_eq!(*fake.state.lock().unwrap(), desired);
        fake.calls.lock().unwrap().clear();
        let again = block_on(reconcile(&fake, &desired)).unwrap();
        assert_eq!(again, Outcome::default());
        assert!(fake.calls.lock().unwrap().is_empty());
    }

    #[test]
    fn a_failing_change_does_not_stop_the_rest_and_is_retried() {
        let fake = FakeOverlay::default();
        let [r2, ..] = peer(2);
        fake.refuse.lock().unwrap().insert(r2);
        let desired = set(&[2, 3]);
        let out = block_on(reconcile(&fake, &desired)).unwrap();
        assert_eq!(out.added, 5);
        assert_eq!(out.failed.len(), 1);
        fake.refuse.lock().unwrap().clear();
        let out = block_on(reconcile(&fake, &desired)).unwrap();
        assert_eq!(out.added, 1);
        assert_eq!(*fake.state.lock().unwrap(), desired);
    }

    #[test]
    fn removing_every_peer_empties_the_device() {
        let fake = FakeOverlay::default();
        *fake.state.lock().unwrap() = set(&[2, 3]);
        block_on(reconcile(&fake, &Entries::new())).unwrap();
        assert!(fake.state.lock().unwrap().is_empty());
    }
}
