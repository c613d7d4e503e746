//! PersistentVolumes and their claims: which volume may serve which claim, and the annotations
//! the PV controller, the scheduler, provisioners and the kubelet talk through (upstream's
//! names, so upstream tools read them).

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

use crate::selector::LabelSelector;

/// Set on a claim by the scheduler: the node its first consumer goes to
/// (`WaitForFirstConsumer` classes bind or provision for that node only).
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Set on a claim by the PV controller: the provisioner asked to make its volume.
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The beta form of [`STORAGE_PROVISIONER`], still written beside it as upstream does.
pub const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// Set on a volume by its provisioner.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Set on a claim once the PV controller has finished binding it.
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on a claim or volume whose half of the binding the PV controller wrote.
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// Marks the StorageClass claims without `storageClassName` get.
pub const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// The class annotation claims and volumes carried before `storageClassName` existed.
pub const BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// The provisioner of classes whose volumes are made by hand.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";
/// Keeps a claim while a pod uses it.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// Keeps a volume while it is bound.
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The class a claim asks for (`""`: none), as upstream's `GetPersistentVolumeClaimClass`.
pub fn claim_class(pvc: &PersistentVolumeClaim) -> &str {
    annotation(&pvc.metadata, BETA_CLASS)
        .or_else(|| pvc.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or_default()
}

/// The class a volume belongs to (`""`: none).
pub fn volume_class(pv: &PersistentVolume) -> &str {
    annotation(&pv.metadata, BETA_CLASS)
        .or_else(|| pv.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or_default()
}

/// Whether a class delays binding until a pod using the claim is scheduled.
pub fn waits_for_first_consumer(class: &StorageClass) -> bool {
    class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
}

/// Whether the class's volumes are made by a provisioner (not by hand).
pub fn provisions(class: &StorageClass) -> bool {
    class.provisioner != NO_PROVISIONER
}

/// Whether `class` is marked the default.
pub fn is_default(class: &StorageClass) -> bool {
    annotation(&class.metadata, DEFAULT_CLASS) == Some("true")
}

/// The storage a claim requests, in bytes.
pub fn requested_bytes(pvc: &PersistentVolumeClaim) -> Option<i64> {
    let q = pvc
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")?;
    crate::quantity::bytes(&q.0).ok()
}

/// The storage a volume holds, in bytes.
pub fn capacity_bytes(pv: &PersistentVolume) -> Option<i64> {
    let q = pv.spec.as_ref()?.capacity.as_ref()?.get("storage")?;
    crate::quantity::bytes(&q.0).ok()
}

/// The node a claim's volume must be reachable from, if the scheduler chose one.
pub fn selected_node(pvc: &PersistentVolumeClaim) -> Option<&str> {
    annotation(&pvc.metadata, SELECTED_NODE)
}

/// The volume a claim is bound to (`spec.volumeName`), if any.
pub fn bound_volume(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.spec
        .as_ref()?
        .volume_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

/// Whether a volume's `nodeAffinity` lets pods on `node` use it (no affinity: every node).
pub fn node_allows(pv: &PersistentVolume, node: &Node) -> bool {
    let required = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref());
    required.is_none_or(|sel| {
        sel.node_selector_terms
            .iter()
            .any(|t| crate::nodematch::term_matches(t, node))
    })
}

/// Whether a volume's `claimRef` names this claim (by namespace and name, and by UID when the
/// reference carries one).
pub fn claimed_by(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.namespace == pvc.metadata.namespace
        && r.name == pvc.metadata.name
        && r.uid
            .as_deref()
            .is_none_or(|uid| uid.is_empty() || Some(uid) == pvc.metadata.uid.as_deref())
}

/// Whether a volume satisfies what a claim asks: the same class and volume mode, every access
/// mode it asks, at least the storage it requests, and its selector.
pub fn satisfies(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    let (Some(spec), Some(claim)) = (pv.spec.as_ref(), pvc.spec.as_ref()) else {
        return false;
    };
    let mode = |m: Option<&String>| m.map_or("Filesystem", String::as_str).to_owned();
    let modes = spec.access_modes.as_deref().unwrap_or_default();
    let asked = claim.access_modes.as_deref().unwrap_or_default();
    let selector_ok = claim.selector.as_ref().is_none_or(|s| {
        LabelSelector::from_label_selector(s)
            .matches(&pv.metadata.labels.clone().unwrap_or_default())
    });
    volume_class(pv) == claim_class(pvc)
        && mode(spec.volume_mode.as_ref()) == mode(claim.volume_mode.as_ref())
        && asked.iter().all(|m| modes.contains(m))
        && capacity_bytes(pv).unwrap_or(0) >= requested_bytes(pvc).unwrap_or(0)
        && selector_ok
}

/// The volume to bind a claim to, as upstream's `findBestMatchForClaim`: a volume already
/// reserved for the claim (`claimRef`) wins; otherwise the smallest `Available` volume that
/// satisfies it and, when `node` is given, that pods on that node can use. Volumes being
/// deleted or reserved for another claim are never chosen.
pub fn best_match<'a>(
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    pvc: &PersistentVolumeClaim,
    node: Option<&Node>,
) -> Option<&'a PersistentVolume> {
    let mut best: Option<&PersistentVolume> = None;
    for pv in volumes {
        if pv.metadata.deletion_timestamp.is_some() || !satisfies(pv, pvc) {
            continue;
        }
        if node.is_some_and(|n| !node_allows(pv, n)) {
            continue;
        }
        let reserved = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some();
        if reserved {
            if claimed_by(pv, pvc) {
                return Some(pv);
            }
            continue;
        }
        if pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Available") {
            continue;
        }
        if best.is_none_or(|b| capacity_bytes(pv) < capacity_bytes(b)) {
            best = Some(pv);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(name: &str, size: &str, extra: serde_json::Value) -> PersistentVolume {
        let mut v = json!({
            "metadata": {"name": name, "labels": {"tier": "fast"}},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "manual", "hostPath": {"path": "/tmp/x"}},
            "status": {"phase": "Available"},
        });
        json_patch(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn pvc(extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut v = json!({
            "metadata": {"name": "data", "namespace": "default", "uid": "u1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                     "resources": {"requests": {"storage": "1Gi"}}},
        });
        json_patch(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn json_patch(target: &mut serde_json::Value, patch: serde_json::Value) {
        if let (Some(t), serde_json::Value::Object(p)) = (target.as_object_mut(), patch.clone()) {
            for (k, v) in p {
                match t.get_mut(&k) {
                    Some(inner) if v.is_object() => json_patch(inner, v),
                    _ => {
                        t.insert(k, v);
                    }
                }
            }
        }
    }

    fn node(name: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name,
            "labels": {"kubernetes.io/hostname": name}}}))
        .unwrap()
    }

    #[test]
    fn the_smallest_fitting_volume_is_chosen() {
        let vols = [
            pv("big", "10Gi", json!({})),
            pv("small", "2Gi", json!({})),
            pv("tiny", "512Mi", json!({})),
        ];
        let chosen = best_match(&vols, &pvc(json!({})), None).unwrap();
        assert_eq!(chosen.metadata.name.as_deref(), Some("small"));
    }

    #[test]
    fn class_modes_selector_and_phase_must_fit() {
        let claim = pvc(json!({"spec": {"selector": {"matchLabels": {"tier": "fast"}}}}));
        let other_class = pv("a", "5Gi", json!({"spec": {"storageClassName": "slow"}}));
        let wrong_mode = pv(
            "b",
            "5Gi",
            json!({"spec": {"accessModes": ["ReadOnlyMany"]}}),
        );
        let unlabelled = pv(
            "c",
            "5Gi",
            json!({"metadata": {"labels": {"tier": "slow"}}}),
        );
        let released = pv("d", "5Gi", json!({"status": {"phase": "Released"}}));
        let block = pv("e", "5Gi", json!({"spec": {"volumeMode": "Block"}}));
        let vols = [other_class, wrong_mode, unlabelled, released, block];
        assert!(best_match(&vols, &claim, None).is_none());
    }

    #[test]
    fn a_volume_reserved_for_the_claim_wins_and_others_reservations_are_kept() {
        let mine = pv(
            "mine",
            "100Gi",
            json!({"spec": {"claimRef": {"namespace": "default", "name": "data"}},
                   "status": {"phase": "Available"}}),
        );
        let theirs = pv(
            "theirs",
            "1Gi",
            json!({"spec": {"claimRef": {"namespace": "default", "name": "other"}}}),
        );
        let free = pv("free", "1Gi", json!({}));
        let vols = [theirs, free, mine];
        let chosen = best_match(&vols, &pvc(json!({})), None).unwrap();
        assert_eq!(chosen.metadata.name.as_deref(), Some("mine"));
        let stale_uid = pv(
            "stale",
            "1Gi",
            json!({"spec": {"claimRef": {"namespace": "default", "name": "data", "uid": "old"}}}),
        );
        assert!(best_match([&stale_uid], &pvc(json!({})), None).is_none());
    }

    #[test]
    fn node_affinity_limits_where_a_volume_serves() {
        let local = pv(
            "local",
            "1Gi",
            json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-a"]}]}]}}}}),
        );
        assert!(node_allows(&local, &node("node-a")));
        assert!(!node_allows(&local, &node("node-b")));
        assert!(best_match([&local], &pvc(json!({})), Some(&node("node-b"))).is_none());
        assert!(best_match([&local], &pvc(json!({})), Some(&node("node-a"))).is_some());
    }

    #[test]
    fn the_beta_annotation_names_the_class_first() {
        let claim = pvc(json!({"metadata": {"annotations": {BETA_CLASS: "old"}}}));
        assert_eq!(claim_class(&claim), "old");
        assert_eq!(claim_class(&pvc(json!({}))), "manual");
    }
}
