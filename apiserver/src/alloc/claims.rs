//! Allocations in the datastore, so servers sharing one (etcd) never hand out the same cluster
//! IP or node port.
//!
//! Each allocated value is a key of its own (`/registry/ranges/serviceips/10.96.0.10`,
//! `/registry/ranges/servicenodeports/30080`), created only if absent: the store's create is the
//! arbiter between servers, and each server's in-memory [`Allocator`](super::Allocator) is a
//! hint of what is free. A claim whose Service write then fails is deleted again; one left by a
//! crash in between is found by [`Claims::repair`], which also claims what stored Services hold
//! without a claim (a store written before claims existed). Upstream keeps one bitmap per range
//! instead and repairs it the same way every three minutes.
//!
//! A claim records its Service (`namespace/name`): the same Service finding its own claim (left
//! by a crash) takes it as claimed, and a release removes only the releasing Service's claims.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde_json::{Value, json};

use super::Holdings;
use crate::storage::{self, Storage};

const IPS: &str = "/registry/ranges/serviceips/";
const PORTS: &str = "/registry/ranges/servicenodeports/";

/// Why a claim failed.
#[derive(Debug)]
pub enum Refused {
    /// Other Services hold these values.
    Taken(Holdings),
    Storage(storage::Error),
}

pub struct Claims {
    store: Arc<dyn Storage>,
}

fn ip_key(ip: Ipv4Addr) -> String {
    format!("{IPS}{ip}")
}

fn port_key(port: u16) -> String {
    format!("{PORTS}{port}")
}

fn keys(h: &Holdings) -> Vec<String> {
    h.ip.map(ip_key)
        .into_iter()
        .chain(h.ports.iter().copied().map(port_key))
        .collect()
}

/// What `a` holds that `b` does not.
pub fn minus(a: &Holdings, b: &Holdings) -> Holdings {
    Holdings {
        ip: a.ip.filter(|ip| b.ip != Some(*ip)),
        ports: a
            .ports
            .iter()
            .copied()
            .filter(|p| !b.ports.contains(p))
            .collect(),
    }
}

/// A claim's stored value: the Service holding it.
fn record(owner: &str) -> Vec<u8> {
    json!({ "service": owner }).to_string().into_bytes()
}

impl Claims {
    pub fn new(store: Arc<dyn Storage>) -> Self {
        Self { store }
    }

    /// Claims every value of `wanted` for the Service `owner` (`namespace/name`), all or none.
    pub async fn claim(&self, owner: &str, wanted: &Holdings) -> Result<(), Refused> {
        let value = record(owner);
        let mut done = Vec::new();
        let mut taken = Holdings::default();
        let mut failure = None;
        for key in keys(wanted) {
            match self.store.create(&key, value.clone()).await {
                Ok(_) => done.push(key),
                Err(storage::Error::AlreadyExists { .. }) if self.owner(&key).await == owner => {}
                Err(storage::Error::AlreadyExists { .. }) => {
                    if let Some(ip) = key.strip_prefix(IPS).and_then(|s| s.parse().ok()) {
                        taken.ip = Some(ip);
                    } else if let Some(port) = key.strip_prefix(PORTS).and_then(|s| s.parse().ok())
                    {
                        taken.ports.push(port);
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_none() && taken == Holdings::default() {
            return Ok(());
        }
        for key in done {
            if let Err(e) = self.store.delete(&key, None).await {
                tracing::warn!(claim = %key, error = %e, "undoing a claim; the repair removes it later");
            }
        }
        Err(match failure {
            Some(e) => Refused::Storage(e),
            None => Refused::Taken(taken),
        })
    }

    /// The Service a claim records, or "" when there is none.
    async fn owner(&self, key: &str) -> String {
        let Ok(Some(kv)) = self.store.get(key).await else {
            return String::new();
        };
        let value: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
        value["service"].as_str().unwrap_or_default().to_string()
    }

    /// Gives back what the Service `owner` holds of `released`: a value another Service
    /// claimed since is left alone. A failure leaves a claim `repair` removes later.
    pub async fn release(&self, owner: &str, released: &Holdings) {
        for key in keys(released) {
            let kv = match self.store.get(&key).await {
                Ok(Some(kv)) => kv,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(claim = %key, error = %e, "releasing an allocation");
                    continue;
                }
            };
            let value: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
            if value["service"] != owner {
                continue;
            }
            match self.store.delete(&key, Some(kv.mod_revision)).await {
                Ok(_) | Err(storage::Error::NotFound { .. } | storage::Error::Conflict { .. }) => {}
                Err(e) => tracing::warn!(claim = %key, error = %e, "releasing an allocation"),
            }
        }
    }

    /// Claimed values, by key, with their owners and revisions.
    async fn stored(&self) -> Result<BTreeMap<String, (String, u64)>, storage::Error> {
        let mut claims = BTreeMap::new();
        for prefix in [IPS, PORTS] {
            for kv in self.store.list(prefix, None, 0).await?.items {
                let value: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
                let owner = value["service"].as_str().unwrap_or_default().to_string();
                claims.insert(kv.key, (owner, kv.mod_revision));
            }
        }
        Ok(claims)
    }

    /// Makes the claims match the stored Services: claims what a Service holds without one,
    /// and removes a claim no Service holds if the previous repair (`orphans`, updated here)
    /// found it orphaned too, unchanged: its Service write is not in flight then. Returns every
    /// claimed value afterwards, for the allocator to hold.
    pub async fn repair(&self, orphans: &mut Orphans) -> Result<Vec<Holdings>, storage::Error> {
        let services = ekube_api::resources::find("", "v1", "services").expect("served");
        let stored = self.store.list(&services.key_prefix(), None, 0).await?;
        let holdings: Vec<(String, Holdings)> = stored
            .items
            .iter()
            .map(|kv| {
                let svc = crate::registry::decode(services, kv);
                let meta = &svc["metadata"];
                let owner = format!(
                    "{}/{}",
                    meta["namespace"].as_str().unwrap_or_default(),
                    meta["name"].as_str().unwrap_or_default()
                );
                (owner, Holdings::of(&svc))
            })
            .collect();
        self.reconcile(&holdings, orphans).await
    }

    /// `repair` given the Services (`namespace/name` → what it holds).
    async fn reconcile(
        &self,
        services: &[(String, Holdings)],
        orphans: &mut Orphans,
    ) -> Result<Vec<Holdings>, storage::Error> {
        let mut claims = self.stored().await?;
        let mut held = Vec::new();
        for (owner, holdings) in services {
            for key in keys(holdings) {
                if claims.remove(&key).is_none() {
                    match self.store.create(&key, record(owner)).await {
                        Ok(_) | Err(storage::Error::AlreadyExists { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            held.push(holdings.clone());
        }
        let before = std::mem::take(&mut orphans.0);
        for (key, (owner, revision)) in claims {
            if before.get(&key) != Some(&revision) {
                orphans.0.insert(key.clone(), revision);
                held.push(parse(&key));
                continue;
            }
            tracing::info!(claim = %key, service = %owner, "removing an allocation no Service holds");
            match self.store.delete(&key, Some(revision)).await {
                Ok(_) | Err(storage::Error::NotFound { .. } | storage::Error::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(held)
    }
}

/// Claims a repair found without a Service, with their revisions.
#[derive(Debug, Default)]
pub struct Orphans(BTreeMap<String, u64>);

fn parse(key: &str) -> Holdings {
    Holdings {
        ip: key.strip_prefix(IPS).and_then(|s| s.parse().ok()),
        ports: key
            .strip_prefix(PORTS)
            .and_then(|s| s.parse().ok())
            .into_iter()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sled::SledStorage;

    fn holdings(ip: &str, ports: &[u16]) -> Holdings {
        Holdings {
            ip: Some(ip.parse().unwrap()),
            ports: ports.to_vec(),
        }
    }

    #[tokio::test]
    async fn a_value_is_claimed_once_and_all_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let claims = Claims::new(Arc::new(SledStorage::open(dir.path(), 64).unwrap()));
        claims
            .claim("a/web", &holdings("10.96.0.10", &[30080]))
            .await
            .unwrap();
        let Err(Refused::Taken(taken)) = claims
            .claim("b/web", &holdings("10.96.0.11", &[30080, 30081]))
            .await
        else {
            panic!("a claimed port was claimed again");
        };
        assert_eq!(taken.ports, [30080]);
        // Nothing of the refused claim stayed.
        claims
            .claim("c/web", &holdings("10.96.0.11", &[30081]))
            .await
            .unwrap();
        // Another Service's release leaves the claim; its own removes it.
        claims
            .release("b/web", &holdings("10.96.0.10", &[30080]))
            .await;
        assert!(matches!(
            claims.claim("b/web", &holdings("10.96.0.10", &[])).await,
            Err(Refused::Taken(_))
        ));
        claims
            .release("a/web", &holdings("10.96.0.10", &[30080]))
            .await;
        claims
            .claim("b/web", &holdings("10.96.0.10", &[30080]))
            .await
            .unwrap();
        // A claim left by the same Service (a crash between claim and write) is its own.
        claims
            .claim("b/web", &holdings("10.96.0.10", &[30080]))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn repair_claims_held_values_and_removes_orphans_seen_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Storage> = Arc::new(SledStorage::open(dir.path(), 64).unwrap());
        let claims = Claims::new(store.clone());
        let mut orphans = Orphans::default();
        claims
            .claim("gone/svc", &holdings("10.96.0.20", &[30099]))
            .await
            .unwrap();
        let services = [("a/web".to_string(), holdings("10.96.0.10", &[30080]))];
        // First seen orphaned: kept (its Service write may be in flight).
        let held = claims.reconcile(&services, &mut orphans).await.unwrap();
        assert_eq!(held.len(), 3);
        let Err(Refused::Taken(_)) = claims.claim("x/y", &holdings("10.96.0.10", &[])).await else {
            panic!("repair did not claim a stored Service's IP");
        };
        assert!(
            store
                .get(&ip_key("10.96.0.20".parse().unwrap()))
                .await
                .unwrap()
                .is_some()
        );
        // Still orphaned and unchanged a round later: removed.
        let held = claims.reconcile(&services, &mut orphans).await.unwrap();
        assert_eq!(held.len(), 1);
        assert!(
            store
                .get(&ip_key("10.96.0.20".parse().unwrap()))
                .await
                .unwrap()
                .is_none()
        );
        assert!(store.get(&port_key(30099)).await.unwrap().is_none());
    }
}
