//! The controller side: watches of IngressClasses, Ingresses, Services, EndpointSlices,
//! Secrets and the controller's own pods, turned into a new routing table and certificate set
//! on every change (swapped under the running server, so no connection notices), events for
//! what cannot be served, and `status.loadBalancer` of every Ingress of ours.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::{mpsc, watch as signal};

use crate::proxy::Proxy;
use crate::routes::{Origin, Problem, Snapshot};
use crate::tls::{self, Certificates, Resolver};
use crate::{Config, Error};

/// The annotation marking the cluster's default IngressClass.
pub const DEFAULT_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";
/// The annotation that named a class before `ingressClassName`.
const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

type Key = (String, String);

fn key<K: Resource>(k: &K) -> Key {
    (
        k.meta().namespace.clone().unwrap_or_default(),
        k.meta().name.clone().unwrap_or_default(),
    )
}

/// One kind's objects, kept whole through relists.
struct Cache<K> {
    items: BTreeMap<Key, K>,
    relist: Option<BTreeMap<Key, K>>,
    listed: bool,
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Self {
            items: BTreeMap::new(),
            relist: None,
            listed: false,
        }
    }
}

impl<K: Resource> Cache<K> {
    /// Takes one event; whether the objects changed.
    fn take(&mut self, event: Event<K>) -> bool {
        match event {
            Event::Init => {
                self.relist = Some(BTreeMap::new());
                false
            }
            Event::InitApply(k) => {
                self.relist.get_or_insert_default().insert(key(&k), k);
                false
            }
            Event::InitDone => {
                self.items = self.relist.take().unwrap_or_default();
                self.listed = true;
                true
            }
            Event::Apply(k) => {
                self.items.insert(key(&k), k);
                true
            }
            Event::Delete(k) => {
                self.items.remove(&key(&k));
                true
            }
        }
    }
}

/// One event of any watch (boxed: the kinds differ much in size).
enum Change {
    Class(Box<Event<IngressClass>>),
    Ingress(Box<Event<Ingress>>),
    Service(Box<Event<Service>>),
    Slice(Box<Event<EndpointSlice>>),
    Secret(Box<Event<Secret>>),
    Pod(Box<Event<Pod>>),
}

#[derive(Default)]
struct Store {
    classes: Cache<IngressClass>,
    ingresses: Cache<Ingress>,
    services: Cache<Service>,
    slices: Cache<EndpointSlice>,
    secrets: Cache<Secret>,
    pods: Cache<Pod>,
}

impl Store {
    fn take(&mut self, change: Change) -> bool {
        match change {
            Change::Class(e) => self.classes.take(*e),
            Change::Ingress(e) => self.ingresses.take(*e),
            Change::Service(e) => self.services.take(*e),
            Change::Slice(e) => self.slices.take(*e),
            Change::Secret(e) => self.secrets.take(*e),
            Change::Pod(e) => self.pods.take(*e),
        }
    }

    fn listed(&self, with_pods: bool) -> bool {
        self.classes.listed
            && self.ingresses.listed
            && self.services.listed
            && self.slices.listed
            && self.secrets.listed
            && (self.pods.listed || !with_pods)
    }

    /// The names of our IngressClasses, and whether one of them is the cluster's default.
    fn our_classes(&self, controller: &str) -> (HashSet<String>, bool) {
        let ours: Vec<&IngressClass> = self
            .classes
            .items
            .values()
            .filter(|c| c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(controller))
            .collect();
        let default = ours
            .iter()
            .any(|c| c.annotations().get(DEFAULT_CLASS).map(String::as_str) == Some("true"));
        (ours.iter().map(|c| c.name_any()).collect(), default)
    }

    /// The Ingresses our classes take: by `ingressClassName`, by the older annotation, or
    /// with neither when our class is the default.
    fn ours(&self, controller: &str) -> Vec<Ingress> {
        let (names, default) = self.our_classes(controller);
        self.ingresses
            .items
            .values()
            .filter(|i| {
                let by_name = i
                    .spec
                    .as_ref()
                    .and_then(|s| s.ingress_class_name.as_deref());
                let by_annotation = i.annotations().get(CLASS_ANNOTATION).map(String::as_str);
                match by_name.or(by_annotation) {
                    Some(class) => names.contains(class),
                    None => default,
                }
            })
            .cloned()
            .collect()
    }

    fn snapshot<'a>(&'a self, ingresses: &'a [Ingress]) -> Snapshot<'a> {
        let mut slices: BTreeMap<Key, Vec<&EndpointSlice>> = BTreeMap::new();
        for slice in self.slices.items.values() {
            if let Some(service) = slice.labels().get("kubernetes.io/service-name") {
                slices
                    .entry((slice.namespace().unwrap_or_default(), service.clone()))
                    .or_default()
                    .push(slice);
            }
        }
        Snapshot {
            ingresses,
            services: &self.services.items,
            slices,
        }
    }

    /// Certificates for the TLS sections of `ingresses`, with what could not be used.
    fn certificates(&self, ingresses: &[Ingress], problems: &mut Vec<Problem>) -> Certificates {
        let mut certs = Certificates::default();
        for ingress in ingresses {
            let namespace = ingress.namespace().unwrap_or_default();
            let spec = ingress.spec.clone().unwrap_or_default();
            for section in spec.tls.iter().flatten() {
                let Some(secret_name) = &section.secret_name else {
                    continue;
                };
                let origin = Origin {
                    namespace: namespace.clone(),
                    name: ingress.name_any(),
                };
                let parsed = match self.secrets.items.get(&(namespace.clone(), secret_name.clone())) {
                    None => Err((
                        "SecretNotFound",
                        format!("secret \"{namespace}/{secret_name}\" not found: the default certificate is served"),
                    )),
                    Some(secret) => tls::from_secret(secret).map_err(|e| {
                        (
                            "InvalidSecret",
                            format!("secret \"{namespace}/{secret_name}\" is not a usable TLS pair ({e}): the default certificate is served"),
                        )
                    }),
                };
                let key = match parsed {
                    Ok(k) => Arc::new(k),
                    Err((reason, message)) => {
                        problems.push(Problem {
                            origin,
                            reason,
                            message,
                        });
                        continue;
                    }
                };
                // A section without hosts covers the hosts of the Ingress's rules.
                let rule_hosts: Vec<String> = spec
                    .rules
                    .iter()
                    .flatten()
                    .filter_map(|r| r.host.clone())
                    .collect();
                let hosts = match &section.hosts {
                    Some(h) if !h.is_empty() => h.clone(),
                    _ => rule_hosts,
                };
                for host in hosts {
                    certs.insert(&host, key.clone());
                }
            }
        }
        certs
    }

    /// The addresses Ingresses are reachable at: the flag's, else the host addresses of the
    /// controller's running pods.
    fn addresses(&self, config: &Config) -> Vec<String> {
        if !config.publish_status_address.is_empty() {
            return config.publish_status_address.clone();
        }
        let mut ips: Vec<String> = self
            .pods
            .items
            .values()
            .filter_map(|p| p.status.as_ref())
            .filter(|s| s.phase.as_deref() == Some("Running"))
            .filter_map(|s| s.host_ip.clone())
            .collect();
        ips.sort();
        ips.dedup();
        ips
    }
}

/// Runs the watches until one ends for good; `ready` is sent once the first table is in place.
pub async fn run(
    client: Client,
    config: Config,
    proxy: Arc<Proxy>,
    resolver: Arc<Resolver>,
    ready: signal::Sender<bool>,
) -> Result<(), Error> {
    let own_namespace = config.namespace.clone();
    let with_pods = own_namespace.is_some() && config.publish_status_address.is_empty();
    let all = || watcher::Config::default();
    let classes = watcher::watcher(Api::<IngressClass>::all(client.clone()), all())
        .default_backoff()
        .map_ok(|e| Change::Class(Box::new(e)))
        .boxed();
    let ingresses = watcher::watcher(Api::<Ingress>::all(client.clone()), all())
        .default_backoff()
        .map_ok(|e| Change::Ingress(Box::new(e)))
        .boxed();
    let services = watcher::watcher(Api::<Service>::all(client.clone()), all())
        .default_backoff()
        .map_ok(|e| Change::Service(Box::new(e)))
        .boxed();
    let slices = watcher::watcher(
        Api::<EndpointSlice>::all(client.clone()),
        all().labels("kubernetes.io/service-name"),
    )
    .default_backoff()
    .map_ok(|e| Change::Slice(Box::new(e)))
    .boxed();
    let secrets = watcher::watcher(
        Api::<Secret>::all(client.clone()),
        all().fields("type=kubernetes.io/tls"),
    )
    .default_backoff()
    .map_ok(|e| Change::Secret(Box::new(e)))
    .boxed();
    let mut streams = vec![classes, ingresses, services, slices, secrets];
    if let (true, Some(namespace)) = (with_pods, &own_namespace) {
        streams.push(
            watcher::watcher(
                Api::<Pod>::namespaced(client.clone(), namespace),
                all().labels(&config.publish_selector),
            )
            .default_backoff()
            .map_ok(|e| Change::Pod(Box::new(e)))
            .boxed(),
        );
    }
    let mut changes = futures::stream::select_all(streams);

    let (events_tx, events_rx) = mpsc::unbounded_channel();
    tokio::spawn(record_events(client.clone(), events_rx));
    let (status_tx, status_rx) = signal::channel((Vec::new(), Vec::new()));
    tokio::spawn(write_status(client.clone(), status_rx));

    let mut store = Store::default();
    let mut reported: HashSet<Problem> = HashSet::new();
    while let Some(change) = changes.next().await {
        let change = match change {
            Ok(c) => c,
            Err(e) => {
                // The backoff retries; the proxy keeps serving the table it has.
                tracing::warn!(error = %e, "watching the cluster");
                continue;
            }
        };
        if !store.take(change) || !store.listed(with_pods) {
            continue;
        }
        let ours = store.ours(&config.controller_class);
        let (table, mut problems) = store.snapshot(&ours).build();
        let certificates = store.certificates(&ours, &mut problems);
        *resolver.certificates.write().expect("certificates") = Arc::new(certificates);
        if let Some(name) = &config.default_ssl_certificate {
            let found = name
                .split_once('/')
                .and_then(|(ns, n)| store.secrets.items.get(&(ns.to_string(), n.to_string())));
            match found.map(tls::from_secret) {
                Some(Ok(key)) => {
                    *resolver.default.write().expect("default certificate") = Arc::new(key)
                }
                Some(Err(e)) => {
                    tracing::warn!(secret = %name, error = %e, "--default-ssl-certificate is not usable")
                }
                None => tracing::warn!(secret = %name, "--default-ssl-certificate not found"),
            }
        }
        *proxy.table.write().expect("routing table") = Arc::new(table);
        proxy.metrics.reloaded();
        if !proxy.metrics.ready() {
            tracing::info!(ingresses = ours.len(), "cluster listed: serving");
            proxy.metrics.set_ready();
            let _ = ready.send(true);
        }
        // Each problem is reported once while it lasts.
        let now: HashSet<Problem> = problems.into_iter().collect();
        for problem in now.difference(&reported) {
            tracing::warn!(ingress = %problem.origin, reason = problem.reason, "{}", problem.message);
            if let Some(ingress) = store.ingresses.items.get(&(
                problem.origin.namespace.clone(),
                problem.origin.name.clone(),
            )) {
                let _ = events_tx.send((ingress.clone(), problem.clone()));
            }
        }
        reported = now;
        if with_pods || !config.publish_status_address.is_empty() {
            let _ = status_tx.send((ours, store.addresses(&config)));
        }
    }
    Err(Error::Watch("the watches of the cluster ended".into()))
}

async fn record_events(client: Client, mut rx: mpsc::UnboundedReceiver<(Ingress, Problem)>) {
    let recorder = ekube_api::events::Recorder::new(client, "ekube-ingress");
    while let Some((ingress, problem)) = rx.recv().await {
        recorder
            .record(
                &ingress,
                ekube_api::events::EventType::Warning,
                problem.reason,
                &problem.message,
            )
            .await;
    }
}

/// Keeps `status.loadBalancer.ingress` of our Ingresses at the current addresses.
async fn write_status(client: Client, mut rx: signal::Receiver<(Vec<Ingress>, Vec<String>)>) {
    while rx.changed().await.is_ok() {
        let (ingresses, addresses) = rx.borrow_and_update().clone();
        let want: Vec<serde_json::Value> = addresses.iter().map(|ip| json!({"ip": ip})).collect();
        for ingress in ingresses {
            let have: Vec<serde_json::Value> = ingress
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .map(|list| list.iter().map(|i| json!({"ip": i.ip})).collect())
                .unwrap_or_default();
            if have == want {
                continue;
            }
            let api: Api<Ingress> =
                Api::namespaced(client.clone(), &ingress.namespace().unwrap_or_default());
            let patch = json!({"status": {"loadBalancer": {"ingress": want}}});
            if let Err(e) = api
                .patch_status(
                    &ingress.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                tracing::warn!(ingress = %ingress.name_any(), error = %e, "writing the Ingress status");
            }
        }
    }
}
