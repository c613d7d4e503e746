//! The `kubernetes` Service's Endpoints and EndpointSlice list every live server, as
//! kube-apiserver's lease endpoint reconciler keeps them: each server renews a record under
//! `/registry/masterleases/<address>` every ten seconds, a record not renewed for fifteen is
//! dead, and each round writes the endpoints when the live set changed. With one server the
//! endpoints are that server; with several sharing one etcd, clients (and the agents' load
//! balancing) learn every server from them.
//!
//! "Not renewed" is judged on this server's clock, by how long a record has kept the same
//! revision, never by the time another server wrote into it (clocks differ). All servers serve
//! one port, as upstream requires: the endpoints carry this server's.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ekube_api::resources::find;
use serde_json::{Value, json};

use crate::errors::Result;
use crate::registry::{Registry, WriteOptions};
use crate::storage;

const PREFIX: &str = "/registry/masterleases/";
const RENEW: Duration = Duration::from_secs(10);
const TTL: Duration = Duration::from_secs(15);

/// Each record's revision and when this server first saw it.
#[derive(Default)]
pub struct Seen(HashMap<String, (u64, Instant)>);

impl Seen {
    /// How long the record `key` has kept `revision`, as far as this server has watched.
    fn unchanged_for(&mut self, key: &str, revision: u64) -> Duration {
        let (seen_revision, since) = self
            .0
            .entry(key.to_string())
            .or_insert((revision, Instant::now()));
        if *seen_revision != revision {
            *seen_revision = revision;
            *since = Instant::now();
        }
        since.elapsed()
    }
}

/// Renews this server's record and rewrites the endpoints, every ten seconds, for ever.
pub async fn run(api: Arc<crate::ApiServer>, advertise: IpAddr, port: u16) {
    let mut tick = tokio::time::interval(RENEW);
    let mut seen = Seen::default();
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = reconcile(&api.registry, advertise, port, &mut seen).await {
            tracing::warn!(error = %e, "reconciling the kubernetes endpoints");
        }
    }
}

/// One round: renew this server's record, drop expired ones, write the endpoints if the live
/// set differs from what they list.
pub async fn reconcile(
    registry: &Registry,
    advertise: IpAddr,
    port: u16,
    seen: &mut Seen,
) -> Result<()> {
    let store = &registry.store;
    let own = format!("{PREFIX}{advertise}");
    // Rewriting it unchanged still gives it a new revision: that is the renewal.
    let record = json!({"ip": advertise.to_string(), "port": port})
        .to_string()
        .into_bytes();
    match store.get(&own).await? {
        Some(kv) => match store.update(&own, record, kv.mod_revision).await {
            Ok(_) | Err(storage::Error::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        },
        None => match store.create(&own, record).await {
            Ok(_) | Err(storage::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        },
    }
    let mut live = BTreeSet::from([advertise.to_string()]);
    let records = store.list(PREFIX, None, 0).await?.items;
    seen.0
        .retain(|key, _| records.iter().any(|kv| &kv.key == key));
    for kv in records {
        let Some(ip) = server_of(&kv) else {
            continue;
        };
        if kv.key == own || seen.unchanged_for(&kv.key, kv.mod_revision) <= TTL {
            live.insert(ip);
            continue;
        }
        tracing::info!(server = %ip, "an apiserver stopped renewing its lease; removing it from the kubernetes endpoints");
        match store.delete(&kv.key, Some(kv.mod_revision)).await {
            Ok(_) | Err(storage::Error::NotFound { .. } | storage::Error::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    write_endpoints(registry, &live, port).await
}

/// Removes this server's record and, when other servers are live, this server from the
/// endpoints, as kube-apiserver's lease reconciler does on shutdown. A lone server leaves the
/// endpoints alone: there is no one to send clients to, and it is likely back soon. Bounded,
/// so a datastore that is gone does not hold up the shutdown.
pub async fn withdraw(registry: &Registry, advertise: IpAddr, port: u16) {
    let own = format!("{PREFIX}{advertise}");
    let round = async {
        match registry.store.delete(&own, None).await {
            Ok(_) | Err(storage::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let others: BTreeSet<String> = registry
            .store
            .list(PREFIX, None, 0)
            .await?
            .items
            .iter()
            .filter_map(server_of)
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        write_endpoints(registry, &others, port).await
    };
    match tokio::time::timeout(Duration::from_secs(3), round).await {
        Ok(Ok(())) => tracing::info!("withdrew from the kubernetes endpoints"),
        Ok(Err(e)) => tracing::warn!(error = %e, "withdrawing from the kubernetes endpoints"),
        Err(_) => tracing::warn!("withdrawing from the kubernetes endpoints took too long"),
    }
}

/// The address a masterlease record names.
fn server_of(kv: &storage::KeyValue) -> Option<String> {
    let value: Value = serde_json::from_slice(&kv.value).ok()?;
    value["ip"].as_str().map(str::to_string)
}

/// The `default/kubernetes` Endpoints and EndpointSlice listing `addresses`.
async fn write_endpoints(
    registry: &Registry,
    addresses: &BTreeSet<String>,
    port: u16,
) -> Result<()> {
    let opts = WriteOptions::default();
    let endpoints = json!({
        "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{
            "addresses": addresses.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }],
    });
    crate::bootstrap::upsert(
        registry,
        find("", "v1", "endpoints").expect("served"),
        endpoints,
        &opts,
    )
    .await?;
    let slice = json!({
        "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "ekube-apiserver"}},
        "addressType": "IPv4",
        "endpoints": addresses.iter().map(|ip| json!({
            "addresses": [ip],
            "conditions": {"ready": true, "serving": true, "terminating": false},
        })).collect::<Vec<_>>(),
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    crate::bootstrap::upsert(
        registry,
        find("discovery.k8s.io", "v1", "endpointslices").expect("served"),
        slice,
        &opts,
    )
    .await
}
