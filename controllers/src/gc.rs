//! Garbage collector: deletes dependents whose owners are gone, and carries out the
//! `foregroundDeletion` and `orphan` finalizers the apiserver puts on owners deleted with
//! `propagationPolicy` Foreground or Orphan.
//!
//! It keeps a graph of every object's uid and ownerReferences, fed by one watcher per resource
//! (events excepted). It acts only once every watcher has listed, and confirms an owner's
//! absence with a live read before deleting anything: watch streams of different resources
//! are not ordered, so a dependent can be seen before its owner.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams, Preconditions, PropagationPolicy};
use kube::discovery::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;

use ekube_api::ResourceInfo;

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

pub(crate) fn api_resource(r: &ResourceInfo) -> ApiResource {
    ApiResource {
        group: r.group.into(),
        version: r.version.into(),
        api_version: r.api_version(),
        kind: r.kind.into(),
        plural: r.plural.into(),
    }
}

pub(crate) fn dynamic_api(
    client: &kube::Client,
    r: &ResourceInfo,
    ns: Option<&str>,
) -> Api<DynamicObject> {
    let ar = api_resource(r);
    match (r.namespaced, ns) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    }
}

/// One object as the collector sees it.
#[derive(Debug, Clone)]
struct Node {
    res: &'static ResourceInfo,
    ns: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
    deleting: bool,
    finalizers: Vec<String>,
}

#[derive(Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    /// uids seen in the current initial list of each resource.
    listing: HashMap<usize, HashSet<String>>,
    synced: HashSet<usize>,
}

/// Resources are statics: their address names them.
fn key(r: &'static ResourceInfo) -> usize {
    r as *const ResourceInfo as usize
}

impl Graph {
    fn node(res: &'static ResourceInfo, obj: &DynamicObject) -> Node {
        Node {
            res,
            ns: obj.namespace(),
            name: obj.name_any(),
            owners: obj.owner_references().to_vec(),
            deleting: obj.metadata.deletion_timestamp.is_some(),
            finalizers: obj.finalizers().to_vec(),
        }
    }

    fn apply(&mut self, res: &'static ResourceInfo, k: usize, ev: watcher::Event<DynamicObject>) {
        match ev {
            watcher::Event::Init => {
                self.listing.insert(k, HashSet::new());
            }
            watcher::Event::InitApply(obj) => {
                let uid = obj.uid().unwrap_or_default();
                self.listing.entry(k).or_default().insert(uid.clone());
                self.nodes.insert(uid, Self::node(res, &obj));
            }
            watcher::Event::InitDone => {
                let seen = self.listing.remove(&k).unwrap_or_default();
                self.nodes
                    .retain(|uid, n| !std::ptr::eq(n.res, res) || seen.contains(uid));
                self.synced.insert(k);
            }
            watcher::Event::Apply(obj) => {
                self.nodes
                    .insert(obj.uid().unwrap_or_default(), Self::node(res, &obj));
            }
            watcher::Event::Delete(obj) => {
                self.nodes.remove(&obj.uid().unwrap_or_default());
            }
        }
    }
}

/// An action and the object it is about, for rate limiting repeats.
type Issued = HashMap<(String, &'static str), Instant>;

pub async fn run(client: kube::Client) -> Result<(), String> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let watched: Vec<&'static ResourceInfo> = ekube_api::RESOURCES
        .iter()
        .filter(|r| r.kind != "Event")
        .collect();
    for r in &watched {
        let r: &'static ResourceInfo = r;
        let k = key(r);
        let api = dynamic_api(&client, r, None);
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(ev) => {
                        if tx.send((r, k, ev)).is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, resource = r.plural, "gc watch"),
                }
            }
        });
    }
    drop(tx);
    let mut graph = Graph::default();
    let mut issued = Issued::new();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some((r, k, ev)) = ev else { return Err("all watches ended".into()) };
                graph.apply(r, k, ev);
                // Drain the burst before acting once.
                tokio::time::sleep(Duration::from_millis(50)).await;
                while let Ok((r, k, ev)) = rx.try_recv() {
                    graph.apply(r, k, ev);
                }
            }
            _ = tick.tick() => {}
        }
        if graph.synced.len() == watched.len() {
            issued.retain(|_, at| at.elapsed() < Duration::from_secs(5));
            scan(&client, &graph, &mut issued).await;
        }
    }
}

fn once(issued: &mut Issued, uid: &str, what: &'static str) -> bool {
    let k = (uid.to_string(), what);
    if issued.contains_key(&k) {
        return false;
    }
    issued.insert(k, Instant::now());
    true
}

async fn scan(client: &kube::Client, graph: &Graph, issued: &mut Issued) {
    let mut dependents: HashMap<&str, Vec<(&str, &Node)>> = HashMap::new();
    for (uid, n) in &graph.nodes {
        for o in &n.owners {
            dependents
                .entry(o.uid.as_str())
                .or_default()
                .push((uid.as_str(), n));
        }
    }
    for (uid, owner) in &graph.nodes {
        if !owner.deleting {
            continue;
        }
        let deps = dependents.get(uid.as_str()).cloned().unwrap_or_default();
        if owner.finalizers.iter().any(|f| f == ORPHAN) {
            for (dep_uid, dep) in &deps {
                if once(issued, dep_uid, "orphan") {
                    let owner_uid = uid.clone();
                    update_meta(client, dep, dep_uid, |m| {
                        if let Some(refs) = m.owner_references.as_mut() {
                            refs.retain(|r| r.uid != owner_uid);
                        }
                    })
                    .await;
                }
            }
            if deps.is_empty() && once(issued, uid, "unorphan") {
                update_meta(client, owner, uid, |m| {
                    if let Some(f) = m.finalizers.as_mut() {
                        f.retain(|f| f != ORPHAN);
                    }
                })
                .await;
            }
        } else if owner.finalizers.iter().any(|f| f == FOREGROUND) {
            for (dep_uid, dep) in &deps {
                if !dep.deleting && once(issued, dep_uid, "delete") {
                    delete(client, dep, dep_uid, PropagationPolicy::Foreground).await;
                }
            }
            let blocking = deps.iter().any(|(_, d)| {
                d.owners
                    .iter()
                    .any(|r| r.uid == *uid && r.block_owner_deletion == Some(true))
            });
            if !blocking && once(issued, uid, "unforeground") {
                update_meta(client, owner, uid, |m| {
                    if let Some(f) = m.finalizers.as_mut() {
                        f.retain(|f| f != FOREGROUND);
                    }
                })
                .await;
            }
        }
    }
    for (uid, dep) in &graph.nodes {
        if dep.owners.is_empty() || dep.deleting {
            continue;
        }
        let missing: Vec<&OwnerReference> = dep
            .owners
            .iter()
            .filter(|o| !graph.nodes.contains_key(&o.uid))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let mut gone = Vec::new();
        for o in missing {
            if owner_absent(client, dep, o).await {
                gone.push(o.uid.clone());
            }
        }
        if gone.is_empty() {
            continue;
        }
        if gone.len() == dep.owners.len() {
            if once(issued, uid, "delete") {
                tracing::info!(kind = dep.res.kind, name = %dep.name, ns = ?dep.ns, "deleting dependent of a deleted owner");
                delete(client, dep, uid, PropagationPolicy::Background).await;
            }
        } else if once(issued, uid, "unown") {
            update_meta(client, dep, uid, |m| {
                if let Some(refs) = m.owner_references.as_mut() {
                    refs.retain(|r| !gone.contains(&r.uid));
                }
            })
            .await;
        }
    }
}

/// Confirms with a live read that the owner `o` of `dep` no longer exists (by name and uid).
async fn owner_absent(client: &kube::Client, dep: &Node, o: &OwnerReference) -> bool {
    let Some(r) = ekube_api::resources::find_kind(&o.api_version, &o.kind) else {
        return false;
    };
    let api = dynamic_api(client, r, dep.ns.as_deref());
    match api.get_opt(&o.name).await {
        Ok(None) => true,
        Ok(Some(obj)) => obj.uid().as_deref() != Some(o.uid.as_str()),
        Err(_) => false,
    }
}

async fn delete(client: &kube::Client, n: &Node, uid: &str, policy: PropagationPolicy) {
    let api = dynamic_api(client, n.res, n.ns.as_deref());
    let params = DeleteParams {
        propagation_policy: Some(policy),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&n.name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::warn!(error = %e, name = %n.name, "garbage collector could not delete"),
    }
}

/// Read-modify-write of an object's metadata, retried on conflicts.
async fn update_meta(
    client: &kube::Client,
    n: &Node,
    uid: &str,
    f: impl Fn(&mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta),
) {
    let api = dynamic_api(client, n.res, n.ns.as_deref());
    for _ in 0..5 {
        let mut obj = match api.get_opt(&n.name).await {
            Ok(Some(obj)) if obj.uid().as_deref() == Some(uid) => obj,
            _ => return,
        };
        f(&mut obj.metadata);
        match api.replace(&n.name, &PostParams::default(), &obj).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(kube::Error::Api(e)) if e.code == 404 => return,
            Err(e) => {
                tracing::warn!(error = %e, name = %n.name, "garbage collector could not update");
                return;
            }
        }
    }
}
