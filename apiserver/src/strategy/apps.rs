//! The strategies of the `apps` group: the workloads and their revisions.

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use serde_json::{Value, json};

use super::{Context, Strategy};
use crate::defaults::{ensure, set, template};
use crate::errors::Cause;
use crate::table::ColumnsOf;
use crate::table::columns::apps;
use crate::validation::{controller_revision, workload};

/// A workload's selector is fixed at creation.
fn selector_unchanged(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    if old.pointer("/spec/selector") != new.pointer("/spec/selector") {
        causes.push(Cause::invalid("spec.selector", "", "field is immutable"));
    }
}

impl Strategy for Deployment {
    fn set_defaults(obj: &mut Value) {
        let spec = ensure(obj, "spec");
        set(spec, "replicas", json!(1));
        set(spec, "revisionHistoryLimit", json!(10));
        set(spec, "progressDeadlineSeconds", json!(600));
        let strategy = ensure(spec, "strategy");
        set(strategy, "type", json!("RollingUpdate"));
        if strategy["type"] == "RollingUpdate" {
            let ru = ensure(strategy, "rollingUpdate");
            set(ru, "maxSurge", json!("25%"));
            set(ru, "maxUnavailable", json!("25%"));
        }
        template(spec);
    }

    fn initial_status() -> Option<Value> {
        Some(json!({}))
    }

    fn validate(obj: &Value, _: &Context<'_>, causes: &mut Vec<Cause>) {
        workload(obj, causes);
    }

    fn validate_update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        selector_unchanged(old, new, causes);
    }

    fn columns() -> Option<ColumnsOf> {
        Some(apps::deployment_columns)
    }
}

impl Strategy for ReplicaSet {
    const FIELD_LABELS: &'static [&'static str] = &["status.replicas"];

    fn set_defaults(obj: &mut Value) {
        let spec = ensure(obj, "spec");
        set(spec, "replicas", json!(1));
        template(spec);
    }

    fn initial_status() -> Option<Value> {
        Some(json!({"replicas": 0}))
    }

    fn validate(obj: &Value, _: &Context<'_>, causes: &mut Vec<Cause>) {
        workload(obj, causes);
    }

    fn validate_update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        selector_unchanged(old, new, causes);
    }

    fn columns() -> Option<ColumnsOf> {
        Some(apps::replica_set_columns)
    }
}

impl Strategy for DaemonSet {
    fn set_defaults(obj: &mut Value) {
        let spec = ensure(obj, "spec");
        set(spec, "revisionHistoryLimit", json!(10));
        let strategy = ensure(spec, "updateStrategy");
        set(strategy, "type", json!("RollingUpdate"));
        if strategy["type"] == "RollingUpdate" {
            let ru = ensure(strategy, "rollingUpdate");
            set(ru, "maxUnavailable", json!(1));
            set(ru, "maxSurge", json!(0));
        }
        template(spec);
    }

    fn initial_status() -> Option<Value> {
        Some(json!({
            "currentNumberScheduled": 0, "numberMisscheduled": 0,
            "desiredNumberScheduled": 0, "numberReady": 0,
        }))
    }

    fn validate(obj: &Value, _: &Context<'_>, causes: &mut Vec<Cause>) {
        workload(obj, causes);
    }

    fn validate_update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        selector_unchanged(old, new, causes);
    }

    fn columns() -> Option<ColumnsOf> {
        Some(apps::daemon_set_columns)
    }
}

impl Strategy for StatefulSet {
    fn set_defaults(obj: &mut Value) {
        let spec = ensure(obj, "spec");
        set(spec, "replicas", json!(1));
        set(spec, "podManagementPolicy", json!("OrderedReady"));
        set(spec, "revisionHistoryLimit", json!(10));
        let strategy = ensure(spec, "updateStrategy");
        set(strategy, "type", json!("RollingUpdate"));
        if strategy["type"] == "RollingUpdate" {
            set(ensure(strategy, "rollingUpdate"), "partition", json!(0));
        }
        template(spec);
    }

    fn initial_status() -> Option<Value> {
        Some(json!({"replicas": 0, "availableReplicas": 0}))
    }

    fn validate(obj: &Value, _: &Context<'_>, causes: &mut Vec<Cause>) {
        workload(obj, causes);
    }

    fn validate_update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        selector_unchanged(old, new, causes);
    }

    fn columns() -> Option<ColumnsOf> {
        Some(apps::stateful_set_columns)
    }
}

impl Strategy for ControllerRevision {
    fn validate(obj: &Value, _: &Context<'_>, causes: &mut Vec<Cause>) {
        controller_revision(obj, causes);
    }

    /// The controllers renumber a revision (`revision` moves); what it restores never changes.
    fn validate_update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        if old.get("data") != new.get("data") {
            causes.push(Cause::invalid("data", "", "field is immutable"));
        }
    }

    fn columns() -> Option<ColumnsOf> {
        Some(apps::controller_revision_columns)
    }
}
