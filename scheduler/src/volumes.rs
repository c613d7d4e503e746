//! VolumeBinding, as upstream's plugin of that name, simplified: which nodes a pod's
//! PersistentVolumeClaims let it run on, and the `selected-node` annotation that tells the PV
//! controller where a delayed claim's first consumer went.
//!
//! - Pre-filter ([`pod_claims`]): every claim the pod names must exist and not be being
//!   deleted, and an unbound claim must be of a `WaitForFirstConsumer` class (a claim of no
//!   class, of an `Immediate` class or of a class that does not exist waits for the PV
//!   controller instead). A failure here fails every node with one message, which upstream
//!   prints without a node count ([`crate::framework::pre_filter_error`]).
//! - Filter ([`filter`]): a bound claim's volume must exist and its `nodeAffinity` must allow
//!   the node; a delayed claim needs an available volume usable from the node
//!   ([`storage::best_match`]) or a class that provisions and whose `allowedTopologies` admit
//!   the node.
//! - Pre-bind ([`to_select`]): before the pod's Binding is posted, each delayed claim is
//!   annotated with the chosen node; the PV controller then binds it to a volume there or asks
//!   the provisioner for one, and the kubelet waits for the claim to be Bound.
//!
//! The scheduler never binds claims itself and keeps no assumed bindings: two pods sharing one
//! delayed claim scheduled in the same pass may both annotate it (the later wins) and the
//! claim's volume then narrows where the other may run on its next attempt. Accepted: such
//! pods normally carry affinity to each other already.

use std::collections::HashMap;
use std::sync::Arc;

use ekube_api::storage;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::runtime::reflector::Store;

pub const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
pub const NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
pub const PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";

/// The reflected claims, volumes and classes.
#[derive(Clone)]
pub struct Stores {
    pub claims: Store<PersistentVolumeClaim>,
    pub volumes: Store<PersistentVolume>,
    pub classes: Store<StorageClass>,
}

impl Stores {
    /// Whether all three caches have had their initial list.
    pub fn ready(&self) -> bool {
        let ready = |f: futures::future::BoxFuture<'_, _>| matches!(f.now_or_never(), Some(Ok(())));
        ready(self.claims.wait_until_ready().boxed())
            && ready(self.volumes.wait_until_ready().boxed())
            && ready(self.classes.wait_until_ready().boxed())
    }

    /// What the caches hold now, indexed for one scheduling pass.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(
            self.claims.state(),
            self.volumes.state(),
            self.classes.state(),
        )
    }
}

/// Claims (by namespace and name), volumes and classes (by name) as one pass sees them.
#[derive(Default)]
pub struct Snapshot {
    claims: HashMap<(String, String), Arc<PersistentVolumeClaim>>,
    volumes: HashMap<String, Arc<PersistentVolume>>,
    classes: HashMap<String, Arc<StorageClass>>,
}

impl Snapshot {
    pub fn new(
        claims: impl IntoIterator<Item = Arc<PersistentVolumeClaim>>,
        volumes: impl IntoIterator<Item = Arc<PersistentVolume>>,
        classes: impl IntoIterator<Item = Arc<StorageClass>>,
    ) -> Self {
        Self {
            claims: claims
                .into_iter()
                .map(|c| ((c.namespace().unwrap_or_default(), c.name_any()), c))
                .collect(),
            volumes: volumes.into_iter().map(|v| (v.name_any(), v)).collect(),
            classes: classes.into_iter().map(|c| (c.name_any(), c)).collect(),
        }
    }
}

/// The claim names of a pod's `persistentVolumeClaim` volumes.
pub fn claim_names(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
}

/// What a pod's claims ask of a node, found once per pod.
#[derive(Debug, Default)]
pub struct PodClaims {
    /// Bound claims' volume names.
    bound: Vec<String>,
    /// Unbound claims of `WaitForFirstConsumer` classes, with their class.
    delayed: Vec<(Arc<PersistentVolumeClaim>, Arc<StorageClass>)>,
}

/// Upstream's pre-filter: sorts the pod's claims into bound and delayed ones, or says why no
/// node can take the pod.
pub fn pod_claims(pod: &Pod, snap: &Snapshot) -> Result<PodClaims, String> {
    let ns = pod.namespace().unwrap_or_default();
    let mut out = PodClaims::default();
    for name in claim_names(pod) {
        let Some(claim) = snap.claims.get(&(ns.clone(), name.to_owned())) else {
            return Err(format!("persistentvolumeclaim \"{name}\" not found"));
        };
        if claim.metadata.deletion_timestamp.is_some() {
            return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
        }
        if let Some(volume) = storage::bound_volume(claim) {
            out.bound.push(volume.to_owned());
            continue;
        }
        // As upstream's `IsDelayBindingMode`: no class, or a class that does not exist, is
        // immediate binding, left to the PV controller.
        let class = snap.classes.get(storage::claim_class(claim));
        match class {
            Some(class) if storage::waits_for_first_consumer(class) => {
                out.delayed.push((claim.clone(), class.clone()));
            }
            _ => return Err(UNBOUND_IMMEDIATE.to_owned()),
        }
    }
    Ok(out)
}

impl PodClaims {
    /// Whether the pod has no claims to check.
    pub fn is_empty(&self) -> bool {
        self.bound.is_empty() && self.delayed.is_empty()
    }
}

/// Upstream's filter: whether `node` can reach every volume the pod's claims are bound to and
/// can get one for each delayed claim. `Err` carries each distinct reason once.
pub fn filter(claims: &PodClaims, snap: &Snapshot, node: &Node) -> Result<(), Vec<String>> {
    let mut reasons: Vec<String> = Vec::new();
    let mut add = |r: &str| {
        if !reasons.iter().any(|x| x == r) {
            reasons.push(r.to_owned());
        }
    };
    for name in &claims.bound {
        match snap.volumes.get(name) {
            None => add(PV_NOT_EXIST),
            Some(pv) if !storage::node_allows(pv, node) => add(NODE_CONFLICT),
            Some(_) => {}
        }
    }
    for (claim, class) in &claims.delayed {
        let found = storage::best_match(snap.volumes.values().map(|v| &**v), claim, Some(node));
        if found.is_none() && !(storage::provisions(class) && topology_allows(class, node)) {
            add(BIND_CONFLICT);
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

/// Whether a class's `allowedTopologies` admit the node, as upstream's
/// `MatchTopologySelectorTerms`: no terms admit every node; an empty term admits none.
fn topology_allows(class: &StorageClass, node: &Node) -> bool {
    let terms = class.allowed_topologies.as_deref().unwrap_or_default();
    if terms.is_empty() {
        return true;
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    terms.iter().any(|t| {
        let reqs = t.match_label_expressions.as_deref().unwrap_or_default();
        !reqs.is_empty()
            && reqs
                .iter()
                .all(|r| labels.get(&r.key).is_some_and(|v| r.values.contains(v)))
    })
}

/// The delayed claims to annotate with `node` before the pod is bound there, as
/// `(namespace, name)`: those not carrying that node already.
pub fn to_select(claims: &PodClaims, node: &str) -> Vec<(String, String)> {
    claims
        .delayed
        .iter()
        .filter(|(c, _)| storage::selected_node(c) != Some(node))
        .map(|(c, _)| (c.namespace().unwrap_or_default(), c.name_any()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name,
            "labels": {"kubernetes.io/hostname": name, "zone": format!("z-{name}")}}}))
        .unwrap()
    }

    fn pod(claims: &[&str]) -> Pod {
        let volumes: Vec<_> = claims
            .iter()
            .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c"}], "volumes": volumes}}))
        .unwrap()
    }

    fn claim(name: &str, class: Option<&str>, volume: Option<&str>) -> Arc<PersistentVolumeClaim> {
        let v = json!({"metadata": {"name": name, "namespace": "default", "uid": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                     "volumeName": volume, "resources": {"requests": {"storage": "1Gi"}}}});
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn class(name: &str, mode: &str, provisioner: &str) -> Arc<StorageClass> {
        let v = json!({"metadata": {"name": name}, "provisioner": provisioner,
            "volumeBindingMode": mode});
        Arc::new(serde_json::from_value(v).unwrap())
    }

    /// An available 1Gi volume of class `local` that only `on` can use.
    fn local_pv(name: &str, on: &str) -> Arc<PersistentVolume> {
        let v = json!({"metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "local", "local": {"path": "/mnt/disk"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": [on]}]}]}}},
            "status": {"phase": "Available"}});
        Arc::new(serde_json::from_value(v).unwrap())
    }

    /// A volume of `on` bound to claim `claim`.
    fn bound_pv(name: &str, on: &str, claim: &str) -> Arc<PersistentVolume> {
        let mut pv = (*local_pv(name, on)).clone();
        pv.spec.as_mut().unwrap().claim_ref = Some(
            serde_json::from_value(json!({"namespace": "default", "name": claim, "uid": claim}))
                .unwrap(),
        );
        pv.status.as_mut().unwrap().phase = Some("Bound".into());
        Arc::new(pv)
    }

    fn snapshot(
        claims: Vec<Arc<PersistentVolumeClaim>>,
        volumes: Vec<Arc<PersistentVolume>>,
    ) -> Snapshot {
        let classes = vec![
            class("local", "WaitForFirstConsumer", storage::NO_PROVISIONER),
            class("dynamic", "WaitForFirstConsumer", "example.com/hostpath"),
            class("now", "Immediate", "example.com/hostpath"),
        ];
        Snapshot::new(claims, volumes, classes)
    }

    /// The reasons each of nodes a, b and c gives (`""`: feasible).
    fn verdicts(pod: &Pod, snap: &Snapshot) -> Result<Vec<String>, String> {
        let claims = pod_claims(pod, snap)?;
        Ok(["a", "b", "c"]
            .iter()
            .map(|n| match filter(&claims, snap, &node(n)) {
                Ok(()) => String::new(),
                Err(r) => r.join("; "),
            })
            .collect())
    }

    #[test]
    fn missing_deleted_and_immediate_claims_fail_every_node() {
        let snap = snapshot(vec![], vec![]);
        assert_eq!(
            verdicts(&pod(&["data"]), &snap),
            Err("persistentvolumeclaim \"data\" not found".into())
        );
        let mut deleted = (*claim("data", Some("local"), None)).clone();
        deleted.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        let snap = snapshot(vec![Arc::new(deleted)], vec![]);
        assert_eq!(
            verdicts(&pod(&["data"]), &snap),
            Err("persistentvolumeclaim \"data\" is being deleted".into())
        );
        for class in [Some("now"), Some(""), None, Some("missing")] {
            let snap = snapshot(vec![claim("data", class, None)], vec![]);
            assert_eq!(
                verdicts(&pod(&["data"]), &snap),
                Err(UNBOUND_IMMEDIATE.into()),
                "class {class:?}"
            );
        }
    }

    #[test]
    fn a_bound_volumes_node_affinity_narrows_the_nodes() {
        let snap = snapshot(
            vec![claim("data", Some("local"), Some("pv-b"))],
            vec![local_pv("pv-b", "b")],
        );
        assert_eq!(
            verdicts(&pod(&["data"]), &snap).unwrap(),
            [NODE_CONFLICT, "", NODE_CONFLICT]
        );
        let gone = snapshot(vec![claim("data", Some("local"), Some("pv-b"))], vec![]);
        assert_eq!(verdicts(&pod(&["data"]), &gone).unwrap(), [PV_NOT_EXIST; 3]);
        // A claim of no class bound to a volume is bound, not immediate.
        let classless = snapshot(
            vec![claim("data", Some(""), Some("pv-b"))],
            vec![local_pv("pv-b", "b")],
        );
        assert_eq!(
            verdicts(&pod(&["data"]), &classless).unwrap(),
            [NODE_CONFLICT, "", NODE_CONFLICT]
        );
    }

    #[test]
    fn a_delayed_claim_goes_where_a_volume_is_free_or_where_one_can_be_made() {
        let snap = snapshot(
            vec![claim("data", Some("local"), None)],
            vec![local_pv("pv-a", "a"), local_pv("pv-c", "c")],
        );
        assert_eq!(
            verdicts(&pod(&["data"]), &snap).unwrap(),
            ["", BIND_CONFLICT, ""]
        );
        // A volume reserved for another claim is not free.
        let mut taken = (*local_pv("pv-b", "b")).clone();
        taken.spec.as_mut().unwrap().claim_ref =
            Some(serde_json::from_value(json!({"namespace": "default", "name": "other"})).unwrap());
        let snap = snapshot(
            vec![claim("data", Some("local"), None)],
            vec![Arc::new(taken)],
        );
        assert_eq!(
            verdicts(&pod(&["data"]), &snap).unwrap(),
            [BIND_CONFLICT; 3]
        );
        let snap = snapshot(vec![claim("data", Some("dynamic"), None)], vec![]);
        assert_eq!(verdicts(&pod(&["data"]), &snap).unwrap(), ["", "", ""]);
    }

    #[test]
    fn allowed_topologies_limit_where_a_class_provisions() {
        let mut zoned = (*class("dynamic", "WaitForFirstConsumer", "example.com/hostpath")).clone();
        zoned.allowed_topologies = Some(
            serde_json::from_value(json!([{"matchLabelExpressions": [
                {"key": "zone", "values": ["z-b", "z-c"]}]}]))
            .unwrap(),
        );
        let snap = Snapshot::new(
            vec![claim("data", Some("dynamic"), None)],
            vec![],
            vec![Arc::new(zoned)],
        );
        assert_eq!(
            verdicts(&pod(&["data"]), &snap).unwrap(),
            [BIND_CONFLICT, "", ""]
        );
    }

    #[test]
    fn each_reason_is_given_once_per_node_and_several_can_be() {
        let snap = snapshot(
            vec![
                claim("one", Some("local"), Some("pv-a")),
                claim("two", Some("local"), Some("pv-a")),
                claim("three", Some("local"), None),
            ],
            vec![bound_pv("pv-a", "a", "one")],
        );
        let got = verdicts(&pod(&["one", "two", "three"]), &snap).unwrap();
        let both = format!("{NODE_CONFLICT}; {BIND_CONFLICT}");
        assert_eq!(got, [BIND_CONFLICT, both.as_str(), both.as_str()]);
    }

    #[test]
    fn only_delayed_claims_not_carrying_the_node_are_annotated() {
        let mut chosen = (*claim("chosen", Some("local"), None)).clone();
        chosen.metadata.annotations =
            Some([(storage::SELECTED_NODE.to_owned(), "a".to_owned())].into());
        let snap = snapshot(
            vec![
                Arc::new(chosen),
                claim("fresh", Some("dynamic"), None),
                claim("bound", Some("local"), Some("pv-a")),
            ],
            vec![local_pv("pv-a", "a")],
        );
        let claims = pod_claims(&pod(&["chosen", "fresh", "bound"]), &snap).unwrap();
        let key = |n: &str| ("default".to_owned(), n.to_owned());
        assert_eq!(to_select(&claims, "a"), [key("fresh")]);
        assert_eq!(to_select(&claims, "b"), [key("chosen"), key("fresh")]);
        assert!(pod_claims(&pod(&[]), &snap).unwrap().is_empty());
    }
}
