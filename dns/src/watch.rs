//! List-then-watch of Services and EndpointSlices into [`Records`]. A watch that restarts
//! (after an error or a too-old resource version) lists again, and the fresh list replaces
//! what the records held of its kind. The server is ready once both have listed.

use std::sync::{Arc, RwLock};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};

use crate::Error;
use crate::metrics::Metrics;
use crate::records::Records;

/// One event of either watch.
enum Change {
    Service(Box<Event<Service>>),
    Slice(Box<Event<EndpointSlice>>),
}

/// A kind's fresh list, gathered until the watch says it is complete.
struct Relist<K> {
    items: Vec<K>,
    listed: bool,
}

impl<K> Default for Relist<K> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            listed: false,
        }
    }
}

impl<K: Clone> Relist<K> {
    /// Takes one event; returns the whole list when it is complete.
    fn take(&mut self, event: &Event<K>) -> Option<Vec<K>> {
        match event {
            Event::Init => self.items.clear(),
            Event::InitApply(k) => self.items.push(k.clone()),
            Event::InitDone => {
                self.listed = true;
                return Some(std::mem::take(&mut self.items));
            }
            Event::Apply(_) | Event::Delete(_) => {}
        }
        None
    }
}

/// Runs until a watch ends for good.
pub async fn run(
    client: Client,
    records: Arc<RwLock<Records>>,
    metrics: Arc<Metrics>,
) -> Result<(), Error> {
    let services = watcher::watcher(Api::<Service>::all(client.clone()), Default::default())
        .default_backoff()
        .map_ok(|e| Change::Service(Box::new(e)));
    let slices = watcher::watcher(
        Api::<EndpointSlice>::all(client),
        watcher::Config::default().labels("kubernetes.io/service-name"),
    )
    .default_backoff()
    .map_ok(|e| Change::Slice(Box::new(e)));
    let mut changes = std::pin::pin!(futures::stream::select(services, slices));
    let (mut svc_list, mut slice_list) = (Relist::default(), Relist::default());
    while let Some(change) = changes.next().await {
        let change = match change {
            Ok(c) => c,
            Err(e) => {
                // The backoff retries; the records keep serving what they hold.
                tracing::warn!(error = %e, "watching services and endpoint slices");
                continue;
            }
        };
        let mut r = records.write().expect("dns records");
        match change {
            Change::Service(event) => {
                if let Some(all) = svc_list.take(&event) {
                    r.replace_services(&all);
                }
                match *event {
                    Event::Apply(s) => r.apply_service(&s),
                    Event::Delete(s) => {
                        r.delete_service(&s.namespace().unwrap_or_default(), &s.name_any())
                    }
                    _ => {}
                }
            }
            Change::Slice(event) => {
                if let Some(all) = slice_list.take(&event) {
                    r.replace_slices(&all);
                }
                match *event {
                    Event::Apply(s) => r.apply_slice(&s),
                    Event::Delete(s) => {
                        r.delete_slice(&s.namespace().unwrap_or_default(), &s.name_any())
                    }
                    _ => {}
                }
            }
        }
        if svc_list.listed && slice_list.listed && !metrics.ready() {
            tracing::info!("services and endpoint slices listed: ready");
            metrics.set_ready();
        }
    }
    Err(Error::Watch(
        "the service and endpoint slice watches ended".into(),
    ))
}
