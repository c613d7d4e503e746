//! PersistentVolume, PersistentVolumeClaim and StorageClass validation against upstream's
//! wording, and through the registry with admission.

use serde_json::json;

use super::*;
use crate::admission::tests::registry;
use crate::registry::WriteOptions;

fn render(causes: Vec<Cause>) -> Vec<String> {
    causes
        .into_iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect()
}

fn check(f: fn(&Value, &mut Vec<Cause>), obj: Value) -> Vec<String> {
    let mut causes = Vec::new();
    f(&obj, &mut causes);
    render(causes)
}

fn check_update(f: fn(&Value, &Value, &mut Vec<Cause>), old: &Value, new: &Value) -> Vec<String> {
    let mut causes = Vec::new();
    f(old, new, &mut causes);
    render(causes)
}

fn pv(spec: Value) -> Value {
    let mut obj = json!({"metadata": {"name": "pv1"}, "spec": {
        "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": "/data/pv1"}}});
    for (k, v) in spec.as_object().unwrap() {
        obj["spec"][k] = v.clone();
    }
    obj
}

fn affinity(expr: Value) -> Value {
    json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [expr]}]}})
}

#[test]
fn a_well_formed_volume_passes() {
    assert_eq!(check(volume, pv(json!({}))), Vec::<String>::new());
    let local = pv(json!({"hostPath": null, "local": {"path": "/mnt/disk"},
        "nodeAffinity": affinity(json!({"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}))}));
    assert_eq!(check(volume, local), Vec::<String>::new());
}

#[test]
fn volume_capacity_modes_and_policy() {
    let bare = json!({"metadata": {"name": "pv1"}, "spec": {"hostPath": {"path": "/x"}}});
    assert_eq!(
        check(volume, bare),
        [
            "spec.accessModes: Required value",
            "spec.capacity: Required value",
            "spec.capacity: Unsupported value: null: supported values: \"storage\"",
        ]
    );
    assert_eq!(
        check(
            volume,
            pv(json!({"capacity": {"storage": "0"}, "accessModes": ["ReadWriteSometimes"]}))
        ),
        [
            "spec.accessModes: Unsupported value: \"ReadWriteSometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"",
            "spec.capacity[storage]: Invalid value: \"0\": must be greater than zero",
        ]
    );
    assert_eq!(
        check(
            volume,
            pv(json!({"capacity": {"storage": "1Gi", "cpu": "1"}}))
        ),
        [
            "spec.capacity: Unsupported value: {\"cpu\":\"1\",\"storage\":\"1Gi\"}: supported values: \"storage\""
        ]
    );
    assert_eq!(
        check(
            volume,
            pv(json!({"accessModes": ["ReadWriteOncePod", "ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Keep", "volumeMode": "Raw"}))
        ),
        [
            "spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes",
            "spec.volumeMode: Unsupported value: \"Raw\": supported values: \"Block\", \"Filesystem\"",
            "spec.persistentVolumeReclaimPolicy: Unsupported value: \"Keep\": supported values: \"Delete\", \"Recycle\", \"Retain\"",
        ]
    );
    assert_eq!(
        check(
            volume,
            pv(json!({"hostPath": {"path": "/"}, "persistentVolumeReclaimPolicy": "Recycle"}))
        ),
        [
            "spec.persistentVolumeReclaimPolicy: Forbidden: may not be 'recycle' for a hostPath mount of '/'"
        ]
    );
}

#[test]
fn exactly_one_volume_source() {
    assert_eq!(
        check(volume, pv(json!({"hostPath": null}))),
        ["spec: Required value: must specify a volume type"]
    );
    assert_eq!(
        check(
            volume,
            pv(
                json!({"nfs": {"server": "nfs.example.com", "path": "/export"},
            "csi": {"driver": "x", "volumeHandle": "h"}})
            )
        ),
        [
            "spec.nfs: Forbidden: may not specify more than 1 volume type",
            "spec.csi: Forbidden: may not specify more than 1 volume type",
        ]
    );
    // Sources the kubelet does not mount are still stored.
    assert_eq!(
        check(
            volume,
            pv(json!({"hostPath": null, "nfs": {"server": "nfs.example.com", "path": "/export"}}))
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        check(
            volume,
            pv(json!({"hostPath": {"path": "/data/../etc", "type": "Fifo"}}))
        ),
        [
            "spec.hostPath.path: Invalid value: \"/data/../etc\": must not contain '..'",
            "spec.hostPath.type: Unsupported value: \"Fifo\": supported values: \"\", \"BlockDevice\", \"CharDevice\", \"Directory\", \"DirectoryOrCreate\", \"File\", \"FileOrCreate\", \"Socket\"",
        ]
    );
}

#[test]
fn local_volumes_need_node_affinity_and_an_absolute_path() {
    assert_eq!(
        check(
            volume,
            pv(json!({"hostPath": null, "local": {"path": "mnt/disk"}}))
        ),
        [
            "spec.local: Invalid value: \"mnt/disk\": must be an absolute path",
            "spec.nodeAffinity: Required value: Local volume requires node affinity",
        ]
    );
    assert_eq!(
        check(
            volume,
            pv(json!({"hostPath": null, "local": {"path": "/mnt"}, "nodeAffinity": {}}))
        ),
        ["spec.nodeAffinity.required: Required value: must specify required node constraints"]
    );
    assert_eq!(
        check(
            volume,
            pv(json!({"hostPath": null, "local": {"path": "/mnt"},
            "nodeAffinity": affinity(json!({"key": "kubernetes.io/hostname", "operator": "Near", "values": ["n1"]}))}))
        ),
        [
            "spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].operator: Invalid value: \"Near\": not a valid selector operator"
        ]
    );
}

#[test]
fn a_volumes_source_and_mode_are_fixed_and_affinity_is_set_once() {
    let old = pv(json!({}));
    let mut claimed = old.clone();
    claimed["spec"]["claimRef"] = json!({"namespace": "default", "name": "data"});
    claimed["spec"]["persistentVolumeReclaimPolicy"] = json!("Delete");
    assert_eq!(
        check_update(volume_update, &old, &claimed),
        Vec::<String>::new()
    );
    let moved = pv(json!({"hostPath": {"path": "/elsewhere"}, "volumeMode": "Block"}));
    assert_eq!(
        check_update(volume_update, &old, &moved),
        [
            "spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation",
            "volumeMode: Invalid value: \"Block\": field is immutable",
        ]
    );
    let pinned_a = pv(json!({"nodeAffinity": affinity(json!({"key": "k", "operator": "Exists"}))}));
    assert_eq!(
        check_update(volume_update, &old, &pinned_a),
        Vec::<String>::new()
    );
    let pinned_b = pv(json!({"nodeAffinity": affinity(json!({"key": "j", "operator": "Exists"}))}));
    let causes = check_update(volume_update, &pinned_a, &pinned_b);
    assert_eq!(causes.len(), 1);
    assert!(
        causes[0].starts_with("nodeAffinity: Invalid value: {"),
        "{causes:?}"
    );
    assert!(causes[0].ends_with(": field is immutable"), "{causes:?}");
}

fn pvc(spec: Value) -> Value {
    let mut obj = json!({"metadata": {"name": "data", "namespace": "default"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
        "volumeMode": "Filesystem"}});
    for (k, v) in spec.as_object().unwrap() {
        obj["spec"][k] = v.clone();
    }
    obj
}

#[test]
fn claims_need_modes_and_storage() {
    assert_eq!(check(claim, pvc(json!({}))), Vec::<String>::new());
    let bare = json!({"metadata": {"name": "data"}, "spec": {}});
    assert_eq!(
        check(claim, bare),
        [
            "spec.accessModes: Required value: at least 1 access mode is required",
            "spec.resources[storage]: Required value",
        ]
    );
    assert_eq!(
        check(
            claim,
            pvc(json!({"resources": {"requests": {"storage": "0"}},
            "storageClassName": "Fast_SSD", "selector": {"matchExpressions": [{"key": "tier", "operator": "Near"}]}}))
        ),
        [
            "spec.selector.matchExpressions[0].operator: Invalid value: \"Near\": not a valid selector operator",
            "spec.resources[storage]: Invalid value: \"0\": must be greater than zero",
            format!("spec.storageClassName: Invalid value: \"Fast_SSD\": {DNS1123_SUBDOMAIN}")
                .as_str(),
        ]
    );
}

const IMMUTABLE: &str = "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims";

#[test]
fn a_claims_spec_is_fixed_but_for_binding_and_a_bound_claims_requests() {
    let old = pvc(json!({"storageClassName": "fast"}));
    // The binder names the volume once.
    let mut bound = old.clone();
    bound["spec"]["volumeName"] = json!("pv1");
    assert_eq!(
        check_update(claim_update, &old, &bound),
        Vec::<String>::new()
    );
    let mut rebound = bound.clone();
    rebound["spec"]["volumeName"] = json!("pv2");
    assert_eq!(check_update(claim_update, &bound, &rebound), [IMMUTABLE]);
    // Other fields never change.
    let mut modes = old.clone();
    modes["spec"]["accessModes"] = json!(["ReadWriteMany"]);
    assert_eq!(check_update(claim_update, &old, &modes), [IMMUTABLE]);
    let mut class = old.clone();
    class["spec"]["storageClassName"] = json!("slow");
    assert_eq!(check_update(claim_update, &old, &class), [IMMUTABLE]);
    // An unbound claim's request is fixed too; a bound one's may grow.
    let mut grown = old.clone();
    grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
    assert_eq!(check_update(claim_update, &old, &grown), [IMMUTABLE]);
    let mut old_bound = bound.clone();
    old_bound["status"] = json!({"phase": "Bound", "capacity": {"storage": "1Gi"}});
    let mut new_bound = old_bound.clone();
    new_bound["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
    assert_eq!(
        check_update(claim_update, &old_bound, &new_bound),
        Vec::<String>::new()
    );
    let mut attributes = old_bound.clone();
    attributes["spec"]["volumeAttributesClassName"] = json!("gold");
    assert_eq!(
        check_update(claim_update, &old_bound, &attributes),
        Vec::<String>::new()
    );
    let mut unbound_attributes = old.clone();
    unbound_attributes["spec"]["volumeAttributesClassName"] = json!("gold");
    assert_eq!(
        check_update(claim_update, &old, &unbound_attributes),
        [IMMUTABLE]
    );
    // The same size written another way is no change.
    let mut same = old.clone();
    same["spec"]["resources"]["requests"]["storage"] = json!(1073741824);
    assert_eq!(
        check_update(claim_update, &old, &same),
        Vec::<String>::new()
    );
    // Never below what the volume has.
    let mut shrunk = old_bound.clone();
    shrunk["spec"]["resources"]["requests"]["storage"] = json!("512Mi");
    assert_eq!(
        check_update(claim_update, &old_bound, &shrunk),
        ["spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"]
    );
    let mut block = old.clone();
    block["spec"]["volumeMode"] = json!("Block");
    assert_eq!(
        check_update(claim_update, &old, &block),
        [
            IMMUTABLE,
            "volumeMode: Invalid value: \"Block\": field is immutable"
        ]
    );
}

#[test]
fn a_claim_without_a_class_may_be_given_one() {
    // Stored before volumeMode was defaulted: no difference.
    let mut old = pvc(json!({}));
    old["spec"].as_object_mut().unwrap().remove("volumeMode");
    let classed = pvc(json!({"storageClassName": "standard"}));
    assert_eq!(
        check_update(claim_update, &old, &classed),
        Vec::<String>::new()
    );
    // From the beta annotation to the field, naming the same class.
    let mut annotated = pvc(json!({}));
    annotated["metadata"]["annotations"] = json!({BETA_CLASS: "standard"});
    let mut upgraded = classed.clone();
    upgraded["metadata"]["annotations"] = json!({BETA_CLASS: "standard"});
    assert_eq!(
        check_update(claim_update, &annotated, &upgraded),
        Vec::<String>::new()
    );
    let mut other = pvc(json!({"storageClassName": "other"}));
    other["metadata"]["annotations"] = json!({BETA_CLASS: "standard"});
    assert_eq!(check_update(claim_update, &annotated, &other), [IMMUTABLE]);
    let mut changed = annotated.clone();
    changed["metadata"]["annotations"] = json!({BETA_CLASS: "fast"});
    assert_eq!(
        check_update(claim_update, &annotated, &changed),
        [format!(
            "metadata.annotations.{BETA_CLASS}: Invalid value: \"fast\": field is immutable"
        )]
    );
}

fn sc(extra: Value) -> Value {
    let mut obj = json!({"metadata": {"name": "local-path"}, "provisioner": "ekube.io/local-path",
        "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"});
    for (k, v) in extra.as_object().unwrap() {
        obj[k] = v.clone();
    }
    obj
}

#[test]
fn storage_classes() {
    assert_eq!(check(class, sc(json!({}))), Vec::<String>::new());
    assert_eq!(
        check(
            class,
            sc(
                json!({"provisioner": "", "reclaimPolicy": "Recycle", "volumeBindingMode": "Later"})
            )
        ),
        [
            "provisioner: Required value",
            "reclaimPolicy: Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\"",
            "volumeBindingMode: Unsupported value: \"Later\": supported values: \"Immediate\", \"WaitForFirstConsumer\"",
        ]
    );
    let causes = check(class, sc(json!({"provisioner": "Ekube.io/local path"})));
    assert_eq!(causes.len(), 1);
    assert!(
        causes[0].starts_with(
            "provisioner: Invalid value: \"ekube.io/local path\": name part must consist of"
        ),
        "{causes:?}"
    );
    assert_eq!(
        check(
            class,
            sc(
                json!({"parameters": {"": "x"}, "allowedTopologies": [{"matchLabelExpressions": [
            {"key": "topology.kubernetes.io/zone", "values": []}]}]})
            )
        ),
        [
            "parameters: Invalid value: \"\": field can not be empty.",
            "allowedTopologies[0].matchLabelExpressions[0].values: Required value: must specify as least one value",
        ]
    );
}

#[test]
fn a_classs_provisioner_parameters_policy_and_binding_mode_are_fixed() {
    let old = sc(json!({"parameters": {"path": "/var/lib/ekube/storage"}}));
    let mut labelled = old.clone();
    labelled["metadata"]["labels"] = json!({"tier": "local"});
    labelled["allowVolumeExpansion"] = json!(true);
    assert_eq!(
        check_update(class_update, &old, &labelled),
        Vec::<String>::new()
    );
    let changed = sc(
        json!({"provisioner": "example.com/nfs", "parameters": {"path": "/srv"},
        "reclaimPolicy": "Retain", "volumeBindingMode": "Immediate"}),
    );
    assert_eq!(
        check_update(class_update, &old, &changed),
        [
            "parameters: Forbidden: updates to parameters are forbidden.",
            "provisioner: Forbidden: updates to provisioner are forbidden.",
            "reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden.",
            "volumeBindingMode: Invalid value: \"Immediate\": field is immutable",
        ]
    );
}

/// Through the registry, as a client's requests arrive: admission, defaulting, validation.
#[tokio::test]
async fn the_registry_defaults_protects_and_refuses() {
    let reg = registry().await;
    let opts = WriteOptions::default();
    let classes = ekube_api::resources::find("storage.k8s.io", "v1", "storageclasses").unwrap();
    let claims = ekube_api::resources::find("", "v1", "persistentvolumeclaims").unwrap();
    let volumes = ekube_api::resources::find("", "v1", "persistentvolumes").unwrap();

    let class = json!({"metadata": {"name": "local-path",
        "annotations": {ekube_api::storage::DEFAULT_CLASS: "true"}},
        "provisioner": "ekube.io/local-path"});
    let (stored, _) = reg.create(classes, None, class, &opts).await.unwrap();
    assert_eq!(
        (&stored["reclaimPolicy"], &stored["volumeBindingMode"]),
        (&json!("Delete"), &json!("Immediate"))
    );
    let err = reg
        .guaranteed_update(classes, None, "local-path", None, &opts, |mut c| {
            c["provisioner"] = json!("example.com/other");
            Ok(c)
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code, err.message.as_str()),
        (
            422,
            "StorageClass \"local-path\" is invalid: provisioner: Forbidden: updates to provisioner are forbidden."
        )
    );

    let claim = json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}}}});
    let (stored, _) = reg
        .create(claims, Some("team"), claim, &opts)
        .await
        .unwrap();
    assert_eq!(stored["spec"]["storageClassName"], "local-path");
    assert_eq!(stored["spec"]["volumeMode"], "Filesystem");
    assert_eq!(
        stored["metadata"]["finalizers"],
        json!([ekube_api::storage::PVC_PROTECTION])
    );
    // Growing a bound claim of a class without expansion: admission refuses.
    reg.guaranteed_update(
        claims,
        Some("team"),
        "data",
        Some("status"),
        &opts,
        |mut c| {
            c["status"] = json!({"phase": "Bound", "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"]});
            Ok(c)
        },
    )
    .await
    .unwrap();
    let err = reg
        .guaranteed_update(claims, Some("team"), "data", None, &opts, |mut c| {
            c["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
            Ok(c)
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code, err.message.as_str()),
        (
            403,
            "persistentvolumeclaims \"data\" is forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"
        )
    );

    let volume = json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "1Gi"},
        "accessModes": ["ReadWriteOnce"], "local": {"path": "/mnt/disk"},
        "nodeAffinity": affinity(json!({"key": "kubernetes.io/hostname", "operator": "Near", "values": ["n1"]}))}});
    let err = reg
        .create(volumes, None, volume.clone(), &opts)
        .await
        .unwrap_err();
    assert_eq!(
        (err.code, err.message.as_str()),
        (
            422,
            "PersistentVolume \"pv1\" is invalid: spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].operator: Invalid value: \"Near\": not a valid selector operator"
        )
    );
    let mut fine = volume;
    fine["spec"]["nodeAffinity"] =
        affinity(json!({"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}));
    let (stored, _) = reg.create(volumes, None, fine, &opts).await.unwrap();
    assert_eq!(stored["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(
        stored["metadata"]["finalizers"],
        json!([ekube_api::storage::PV_PROTECTION])
    );
}
