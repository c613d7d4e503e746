//! The scheduler's view of the pods, kept from the pod watch.
//!
//! A pass reads two things of the pods: of the ones waiting for this scheduler, what the filters
//! and scores read, to place them; and of every pod on a node, only what it takes of that node
//! and what inter-pod affinity reads of it ([`Footprint`]). So [`Pods`] keeps a placed pod as
//! its footprint, worked out once per change of the pod, and a waiting one as a [`Waiting`]: its
//! footprint and the pod without what the footprint has taken from it (its containers) and
//! without what nothing reads ([`slim`]). `k8s-openapi`'s structs hold every optional field
//! inline, so a `Pod` is ~2.5 KB before any of its contents and a `Container` ~2.3 KB, where a
//! footprint is its requests, host ports, owner, namespace and labels.
//!
//! Pods of another scheduler that are not placed, pods being deleted before they were placed and
//! finished pods are not kept: nothing reads them.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::runtime::watcher;

use crate::framework::Footprint;

/// A pod waiting to be placed.
pub struct Waiting {
    /// Slimmed: no containers ([`slim`]).
    pub pod: Pod,
    /// Worked out from the whole pod.
    pub footprint: Arc<Footprint>,
}

impl Waiting {
    pub fn of(mut pod: Pod) -> Self {
        let footprint = Arc::new(Footprint::of(&pod));
        slim(&mut pod);
        Self { pod, footprint }
    }
}

/// A pod on a node: which node, and what it takes of it.
pub struct Bound {
    pub node: String,
    pub footprint: Arc<Footprint>,
}

/// The pods as the pod watch last showed them, by uid.
pub struct Pods {
    /// The scheduler whose waiting pods are kept whole.
    scheduler: String,
    current: View,
    /// While the watch lists anew: what the new list has shown so far. What was known stands
    /// until the list is complete, as in kube-runtime's reflector.
    relist: Option<View>,
}

#[derive(Default)]
struct View {
    waiting: HashMap<String, Arc<Waiting>>,
    bound: HashMap<String, Bound>,
}

impl View {
    /// Files `pod` under its uid as what it is now.
    fn apply(&mut self, scheduler: &str, pod: Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        self.remove(&uid);
        if waits_for(&pod, scheduler) {
            self.waiting.insert(uid, Arc::new(Waiting::of(pod)));
        } else if let Some(node) = node_of(&pod)
            && !terminal(&pod)
        {
            let node = node.to_owned();
            let footprint = Arc::new(Footprint::of(&pod));
            self.bound.insert(uid, Bound { node, footprint });
        }
    }

    fn remove(&mut self, uid: &str) {
        self.waiting.remove(uid);
        self.bound.remove(uid);
    }
}

impl Pods {
    pub fn new(scheduler: &str) -> Self {
        Self {
            scheduler: scheduler.to_owned(),
            current: View::default(),
            relist: None,
        }
    }

    /// Takes in one event of the pod watch; whether what is placed on the nodes may have
    /// changed (so that pods backing off are tried again).
    pub fn follow(&mut self, event: watcher::Event<Pod>) -> bool {
        match event {
            watcher::Event::Apply(pod) => {
                let placed = node_of(&pod).is_some();
                self.current.apply(&self.scheduler, pod);
                placed
            }
            watcher::Event::Delete(pod) => {
                self.current
                    .remove(pod.metadata.uid.as_deref().unwrap_or_default());
                node_of(&pod).is_some()
            }
            watcher::Event::Init => {
                self.relist = Some(View::default());
                false
            }
            watcher::Event::InitApply(pod) => {
                self.relist
                    .get_or_insert_default()
                    .apply(&self.scheduler, pod);
                false
            }
            watcher::Event::InitDone => {
                self.current = self.relist.take().unwrap_or_default();
                true
            }
        }
    }

    /// The pods waiting for this scheduler: not placed, not being deleted, not finished.
    pub fn waiting(&self) -> impl Iterator<Item = &Arc<Waiting>> {
        self.current.waiting.values()
    }

    pub fn is_waiting(&self, uid: &str) -> bool {
        self.current.waiting.contains_key(uid)
    }

    pub fn none_waiting(&self) -> bool {
        self.current.waiting.is_empty()
    }

    /// The pods placed on a node and not finished.
    pub fn bound(&self) -> impl Iterator<Item = &Bound> {
        self.current.bound.values()
    }
}

/// Drops from a waiting pod what its footprint has taken from it and what the scheduler never
/// reads, as upstream's informers drop `managedFields`: here also the annotations (an applied
/// object's `last-applied-configuration` is a copy of the whole pod), the containers (their
/// requests and host ports are in the footprint; nothing else of them is read), the volumes
/// that name no claim (only claims are read; the service-account token's projected volume alone
/// takes kilobytes in `k8s-openapi`'s form), and the status beyond its phase and conditions.
/// Nothing is written back from the cache: the scheduler's writes are patches and bindings.
fn slim(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers = Vec::new();
        spec.init_containers = None;
        spec.ephemeral_containers = None;
        if let Some(volumes) = spec.volumes.as_mut() {
            volumes.retain(|v| v.persistent_volume_claim.is_some());
            volumes.shrink_to_fit();
        }
    }
    if let Some(status) = pod.status.take() {
        pod.status = Some(PodStatus {
            phase: status.phase,
            conditions: status.conditions,
            ..PodStatus::default()
        });
    }
}

fn node_of(p: &Pod) -> Option<&str> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Whether `p` waits for the scheduler named `name`: not bound, not being deleted, not
/// finished, and naming it (`default-scheduler` when it names none).
fn waits_for(p: &Pod, name: &str) -> bool {
    let scheduler = p
        .spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or("default-scheduler");
    scheduler == name
        && node_of(p).is_none()
        && p.metadata.deletion_timestamp.is_none()
        && !terminal(p)
}

fn terminal(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{framework, volumes};
    use serde_json::json;

    fn pod(uid: &str, scheduler: Option<&str>, node: Option<&str>) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": uid, "namespace": "ns", "uid": uid, "labels": {"app": uid}},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}],
                     "schedulerName": scheduler, "nodeName": node},
        }))
        .unwrap()
    }

    /// The waiting and the placed pods follow the watch: ours and unbound wait, bound ones are
    /// placed on their node; deleted, finished and another scheduler's unbound pods are not
    /// kept; a new list replaces what was known once it is complete.
    #[test]
    fn the_cache_follows_the_watch() {
        use watcher::Event::{Apply, Delete, Init, InitApply, InitDone};
        let mut pods = Pods::new("default-scheduler");
        // (waiting uids, placed uid@node), sorted; and whether the event may change placements.
        let mut follow = |ev: watcher::Event<Pod>| {
            let changed = pods.follow(ev);
            let mut waiting: Vec<String> = pods
                .waiting()
                .map(|w| w.pod.metadata.uid.clone().unwrap())
                .collect();
            waiting.sort();
            let mut placed: Vec<String> = pods
                .current
                .bound
                .iter()
                .map(|(uid, b)| format!("{uid}@{}", b.node))
                .collect();
            placed.sort();
            (waiting, placed, changed)
        };
        let none: Vec<String> = Vec::new();
        assert_eq!(
            follow(Apply(pod("a", None, None))),
            (vec!["a".into()], none.clone(), false)
        );
        let (waiting, _, _) = follow(Apply(pod("b", Some("default-scheduler"), None)));
        assert_eq!(waiting, ["a", "b"]);
        let (waiting, placed, _) = follow(Apply(pod("c", Some("other"), None)));
        assert_eq!(
            (waiting, placed),
            (vec!["a".into(), "b".into()], none.clone())
        );
        // Bound: no longer waiting, placed on its node.
        assert_eq!(
            follow(Apply(pod("a", None, Some("n1")))),
            (vec!["b".into()], vec!["a@n1".into()], true)
        );
        // Another scheduler's pod, once bound, takes room on its node too.
        let (_, placed, _) = follow(Apply(pod("c", Some("other"), Some("n2"))));
        assert_eq!(placed, ["a@n1", "c@n2"]);
        let mut deleting = pod("b", None, None);
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        assert!(follow(Apply(deleting)).0.is_empty());
        assert_eq!(follow(Apply(pod("d", None, None))).0, ["d"]);
        assert!(follow(Delete(pod("d", None, None))).0.is_empty());
        // A finished pod takes no room, bound or not.
        let mut done = pod("a", None, Some("n1"));
        done.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
        assert_eq!(
            follow(Apply(done)),
            (none.clone(), vec!["c@n2".into()], true)
        );
        assert_eq!(
            follow(Delete(pod("c", Some("other"), Some("n2")))),
            (none.clone(), none.clone(), true)
        );

        // A relist: until it is complete, what was known stands.
        assert_eq!(follow(Apply(pod("f", None, None))).0, ["f"]);
        assert_eq!(follow(Init).0, ["f"]);
        assert_eq!(follow(InitApply(pod("g", None, None))).0, ["f"]);
        assert_eq!(
            follow(InitApply(pod("h", None, Some("n1")))),
            (vec!["f".into()], none.clone(), false)
        );
        assert_eq!(
            follow(InitDone),
            (vec!["g".into()], vec!["h@n1".into()], true)
        );
        // A list with no pod empties it.
        assert_eq!(follow(Init).0, ["g"]);
        assert_eq!(follow(InitDone), (none.clone(), none, true));
    }

    /// A placed pod is kept as what it takes of its node, the same as worked out from the
    /// whole pod.
    #[test]
    fn a_placed_pod_keeps_its_footprint() {
        let mut pods = Pods::new("default-scheduler");
        let mut placed = pod("a", None, Some("n1"));
        placed.spec.as_mut().unwrap().containers[0].ports = Some(vec![
            serde_json::from_value(json!({"containerPort": 80, "hostPort": 8080})).unwrap(),
        ]);
        pods.follow(watcher::Event::Apply(placed.clone()));
        let kept = pods.bound().next().unwrap();
        let mut from_pod = framework::NodeInfo::new(k8s_openapi::api::core::v1::Node::default());
        from_pod.add(&placed);
        let mut from_cache = framework::NodeInfo::new(k8s_openapi::api::core::v1::Node::default());
        from_cache.add_footprint(&kept.footprint);
        assert_eq!(from_cache.requested, from_pod.requested);
        assert_eq!(from_cache.requested.cpu, 100);
        assert_eq!(from_cache.ports, [("TCP".into(), "0.0.0.0".into(), 8080)]);
        assert_eq!(from_cache.placed[0].labels, from_pod.placed[0].labels);
    }

    /// The cached waiting pod keeps everything the filters, scores and status updates read.
    #[test]
    fn a_slim_pod_reads_the_same() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {
                "name": "p", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                "labels": {"app": "web"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                     "name": "rs", "uid": "o1", "controller": true}],
            },
            "spec": {
                "schedulerName": "default-scheduler",
                "nodeSelector": {"disk": "ssd"},
                "tolerations": [{"key": "k", "operator": "Exists"}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "web"}},
                     "topologyKey": "kubernetes.io/hostname"}]}},
                "overhead": {"cpu": "10m"},
                "containers": [{"name": "c", "image": "i", "command": ["sh"],
                    "env": [{"name": "A", "value": "1"}],
                    "readinessProbe": {"httpGet": {"port": 80}},
                    "resources": {"requests": {"cpu": "250m", "memory": "64Mi",
                                               "vendor.example/dev": "1"}},
                    "ports": [{"containerPort": 80, "hostPort": 8080}]}],
                "ephemeralContainers": [{"name": "debug", "image": "busybox"}],
                "initContainers": [{"name": "i", "image": "i",
                    "resources": {"requests": {"cpu": "1"}}}],
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "token", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "token"}}]}},
                    {"name": "scratch", "emptyDir": {}},
                ],
            },
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False"}],
                "hostIP": "10.0.0.1",
                "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false,
                                       "restartCount": 0}],
            },
        }))
        .unwrap();
        let waiting = Waiting::of(pod.clone());
        let slim_pod = &waiting.pod;

        // The footprint is the whole pod's: requests (with init containers and overhead), host
        // ports, owner, namespace, labels and anti-affinity.
        assert_eq!(*waiting.footprint, framework::Footprint::of(&pod));
        assert_eq!(waiting.footprint.owner.as_deref(), Some("o1"));
        assert_eq!(
            volumes::claim_names(slim_pod).collect::<Vec<_>>(),
            volumes::claim_names(&pod).collect::<Vec<_>>()
        );
        assert_eq!(slim_pod.metadata.labels, pod.metadata.labels);
        assert_eq!(slim_pod.metadata.uid, pod.metadata.uid);
        assert_eq!(
            slim_pod.metadata.resource_version,
            pod.metadata.resource_version
        );
        let (spec, slim_spec) = (pod.spec.as_ref().unwrap(), slim_pod.spec.as_ref().unwrap());
        assert_eq!(slim_spec.affinity, spec.affinity);
        assert_eq!(slim_spec.tolerations, spec.tolerations);
        assert_eq!(slim_spec.node_selector, spec.node_selector);
        let (status, slim_status) = (
            pod.status.as_ref().unwrap(),
            slim_pod.status.as_ref().unwrap(),
        );
        assert_eq!(slim_status.phase, status.phase);
        assert_eq!(slim_status.conditions, status.conditions);

        // What goes.
        assert_eq!(slim_pod.metadata.annotations, None);
        assert_eq!(slim_pod.metadata.managed_fields, None);
        let kept: Vec<&str> = slim_spec
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(kept, ["data"]);
        assert_eq!(slim_status.container_statuses, None);
        assert_eq!(slim_status.host_ip, None);
        assert!(slim_spec.containers.is_empty());
        assert_eq!(slim_spec.init_containers, None);
        assert_eq!(slim_spec.ephemeral_containers, None);
    }
}
