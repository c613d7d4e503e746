//! The strategies of the core group's kinds other than Service (which has its own file).

use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, LimitRange, Namespace, Node, PersistentVolume,
    PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota, Secret, ServiceAccount,
};
use serde_json::{Value, json};

use super::{Context, Strategy};
use crate::defaults::{self, ensure, set};
use crate::errors::Cause;
use crate::table::ColumnsOf;
use crate::table::columns::{core, networking, pod, storage};
use crate::validation::{self, config_keys, quantity_map};

impl Strategy for Pod {
    const RETURNS_DELETED_OBJECT: bool = true;
    const GENERATION: bool = true;
    const FIELD_LABELS: &'static [&'static str] = &[
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.podIPs",
        "status.nominatedNodeName",
    ];

    /// A pod on a node waits for its kubelet to stop it, `terminationGracePeriodSeconds`
    /// unless the client asks for another; an unscheduled or finished one goes at once.
    fn grace_period(obj: &Value, requested: Option<i64>) -> Option<i64> {
        let scheduled = obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let finished = matches!(
            obj.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        let default = obj
            .pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30);
        Some(if !scheduled || finished {
            0
        } else {
            requested.unwrap_or(default).max(0)
        })
    }

    fn set_defaults(obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec") {
            defaults::pod_spec(spec);
        }
        let qos = defaults::qos_class(obj);
        let status = ensure(obj, "status");
        set(status, "phase", json!("Pending"));
        set(status, "qosClass", json!(qos));
    }

    fn validate(obj: &Value, ctx: &Context<'_>, causes: &mut Vec<Cause>) {
        validation::pod::pod_spec(obj.get("spec"), "spec", causes);
        if ctx.old.is_none() {
            validation::ephemeral::create(obj, causes);
        }
    }

    /// Only images, `activeDeadlineSeconds` and added tolerations may change (and `nodeName`
    /// once, by binding); container states move only forward.
    fn validate_update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        let strip = |v: &Value| {
            let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
            for list in ["containers", "initContainers"] {
                if let Some(Value::Array(cs)) = spec.get_mut(list) {
                    for c in cs {
                        if let Some(m) = c.as_object_mut() {
                            m.remove("image");
                        }
                    }
                }
            }
            if let Some(m) = spec.as_object_mut() {
                m.remove("activeDeadlineSeconds");
                m.remove("tolerations");
                if old.pointer("/spec/nodeName").is_none() {
                    m.remove("nodeName");
                }
            }
            spec
        };
        if strip(old) != strip(new) {
            causes.push(Cause::forbidden("spec", "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"));
        }
        validation::pod::state_transitions(old, new, causes);
    }

    fn columns() -> Option<ColumnsOf> {
        Some(pod::pod_columns)
    }
}

impl Strategy for Namespace {
    const RETURNS_DELETED_OBJECT: bool = true;
    const FIELD_LABELS: &'static [&'static str] = &["status.phase"];

    fn set_defaults(obj: &mut Value) {
        set(ensure(obj, "spec"), "finalizers", json!(["kubernetes"]));
    }

    /// The namespace controller empties `spec.finalizers` once the namespace's objects are gone.
    fn finalizing(obj: &Value) -> bool {
        obj.pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
    }

    fn mark_finalizing(obj: &mut Value) {
        ensure(obj, "status")["phase"] = json!("Terminating");
    }

    fn initial_status() -> Option<Value> {
        Some(json!({"phase": "Active"}))
    }

    fn columns() -> Option<ColumnsOf> {
        Some(core::namespace_columns)
    }
}

impl Strategy for Node {
    const CREATES_WITH_STATUS: bool = true;
    const STATUS_WRITES_METADATA: bool = true;
    const FIELD_LABELS: &'static [&'static str] = &["spec.unschedulable"];
    const MERGE_KEYS: &'static [(&'static [&'static str], &'static [&'static str])] =
        &[(&["status", "addresses"], &["type"])];

    /// Upstream's `NodeStatus` fields that are not `omitempty`.
    fn initial_status() -> Option<Value> {
        Some(json!({
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
                "osImage": "", "containerRuntimeVersion": "", "kubeletVersion": "",
                "kubeProxyVersion": "", "operatingSystem": "", "architecture": "",
            },
        }))
    }

    fn columns() -> Option<ColumnsOf> {
        Some(core::node_columns)
    }
}

impl Strategy for Endpoints {
    fn columns() -> Option<ColumnsOf> {
        Some(networking::endpoints_columns)
    }
}

impl Strategy for ConfigMap {
    fn validate(obj: &Value, _: &Context<'_>, causes: &mut Vec<Cause>) {
        config_keys(obj, causes);
    }

    fn columns() -> Option<ColumnsOf> {
        Some(core::config_map_columns)
    }
}

impl Strategy for Secret {
    const FIELD_LABELS: &'static [&'static str] = &["type"];

    fn set_defaults(obj: &mut Value) {
        set(obj, "type", json!("Opaque"));
        defaults::secret_string_data(obj);
    }

    fn validate(obj: &Value, _: &Context<'_>, causes: &mut Vec<Cause>) {
        config_keys(obj, causes);
        if obj["type"] == crate::bootstrap_token::SECRET_TYPE {
            causes.extend(crate::bootstrap_token::validate(obj));
        }
    }

    fn columns() -> Option<ColumnsOf> {
        Some(core::secret_columns)
    }
}

impl Strategy for LimitRange {
    fn set_defaults(obj: &mut Value) {
        defaults::limit_range(obj);
    }

    fn validate(obj: &Value, _: &Context<'_>, causes: &mut Vec<Cause>) {
        validation::limit_range::validate(obj, causes);
    }
}

impl Strategy for ResourceQuota {
    const RETURNS_DELETED_OBJECT: bool = true;

    fn initial_status() -> Option<Value> {
        Some(json!({}))
    }

    fn validate(obj: &Value, _: &Context<'_>, causes: &mut Vec<Cause>) {
        quantity_map(obj, "spec.hard", causes);
    }

    fn columns() -> Option<ColumnsOf> {
        Some(core::resource_quota_columns)
    }
}

impl Strategy for Event {
    const FIELD_LABELS: &'static [&'static str] = &[
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ];

    fn columns() -> Option<ColumnsOf> {
        Some(core::event_columns)
    }
}

impl Strategy for ServiceAccount {
    const RETURNS_DELETED_OBJECT: bool = true;
    const MERGE_KEYS: &'static [(&'static [&'static str], &'static [&'static str])] =
        &[(&["secrets"], &["name"])];

    fn columns() -> Option<ColumnsOf> {
        Some(core::service_account_columns)
    }
}

/// Upstream's `SetDefaults_PersistentVolume`.
impl Strategy for PersistentVolume {
    const RETURNS_DELETED_OBJECT: bool = true;

    fn set_defaults(obj: &mut Value) {
        let spec = ensure(obj, "spec");
        set(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
        set(spec, "volumeMode", json!("Filesystem"));
    }

    fn initial_status() -> Option<Value> {
        Some(json!({"phase": "Pending"}))
    }

    fn validate(obj: &Value, _: &Context<'_>, causes: &mut Vec<Cause>) {
        validation::storage::volume(obj, causes);
    }

    fn validate_update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        validation::storage::volume_update(old, new, causes);
    }

    fn columns() -> Option<ColumnsOf> {
        Some(storage::persistent_volume_columns)
    }
}

/// Upstream's `SetDefaults_PersistentVolumeClaim`.
impl Strategy for PersistentVolumeClaim {
    const RETURNS_DELETED_OBJECT: bool = true;

    fn set_defaults(obj: &mut Value) {
        set(ensure(obj, "spec"), "volumeMode", json!("Filesystem"));
    }

    fn initial_status() -> Option<Value> {
        Some(json!({"phase": "Pending"}))
    }

    fn validate(obj: &Value, _: &Context<'_>, causes: &mut Vec<Cause>) {
        quantity_map(obj, "spec.resources.requests", causes);
        quantity_map(obj, "spec.resources.limits", causes);
        validation::storage::claim(obj, causes);
    }

    fn validate_update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        validation::storage::claim_update(old, new, causes);
    }

    fn columns() -> Option<ColumnsOf> {
        Some(storage::persistent_volume_claim_columns)
    }
}

impl Strategy for ReplicationController {
    const FIELD_LABELS: &'static [&'static str] = &["status.replicas"];

    fn set_defaults(obj: &mut Value) {
        defaults::replication_controller(obj);
    }

    fn initial_status() -> Option<Value> {
        Some(json!({"replicas": 0}))
    }

    fn validate(obj: &Value, _: &Context<'_>, causes: &mut Vec<Cause>) {
        validation::replication_controller::validate(obj, causes);
    }

    fn columns() -> Option<ColumnsOf> {
        Some(core::replication_controller_columns)
    }
}
