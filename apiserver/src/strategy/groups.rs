//! The strategies of the kinds outside the core and `apps` groups, a section per group.

use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::autoscaling::{v1 as autoscaling_v1, v2 as autoscaling_v2};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1 as events;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use serde_json::{Value, json};

use super::{Context, Strategy};
use crate::defaults::{self, ensure, set};
use crate::errors::Cause;
use crate::table::ColumnsOf;
use crate::table::columns;
use crate::validation;

// batch

impl Strategy for Job {
    const FIELD_LABELS: &'static [&'static str] = &["status.successful"];

    fn set_defaults(obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec") {
            defaults::job_spec(spec);
        }
    }

    fn initial_status() -> Option<Value> {
        Some(json!({}))
    }

    fn validate(obj: &Value, _: &Context<'_>, causes: &mut Vec<Cause>) {
        validation::job::job(obj, causes);
    }

    fn validate_update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        validation::job::immutable(old, new, causes);
    }

    fn columns() -> Option<ColumnsOf> {
        Some(columns::batch::job_columns)
    }
}

impl Strategy for CronJob {
    fn set_defaults(obj: &mut Value) {
        let spec = ensure(obj, "spec");
        set(spec, "concurrencyPolicy", json!("Allow"));
        set(spec, "suspend", json!(false));
        set(spec, "successfulJobsHistoryLimit", json!(3));
        set(spec, "failedJobsHistoryLimit", json!(1));
        if let Some(job) = spec.get_mut("jobTemplate").and_then(|t| t.get_mut("spec")) {
            defaults::job_spec(job);
        }
    }

    fn initial_status() -> Option<Value> {
        Some(json!({}))
    }

    fn validate(obj: &Value, _: &Context<'_>, causes: &mut Vec<Cause>) {
        validation::job::cron_job(obj, causes);
    }

    fn columns() -> Option<ColumnsOf> {
        Some(columns::batch::cron_job_columns)
    }
}

// autoscaling: v2 is the storage version, in which objects of both versions are defaulted and
// validated; v1 is registered for its type.

impl Strategy for autoscaling_v2::HorizontalPodAutoscaler {
    fn set_defaults(obj: &mut Value) {
        defaults::horizontal_pod_autoscaler(obj);
    }

    fn initial_status() -> Option<Value> {
        Some(json!({"desiredReplicas": 0}))
    }

    fn validate(obj: &Value, _: &Context<'_>, causes: &mut Vec<Cause>) {
        validation::hpa::validate(obj, causes);
    }

    fn columns() -> Option<ColumnsOf> {
        Some(columns::autoscaling::horizontal_pod_autoscaler_columns)
    }
}

impl Strategy for autoscaling_v1::HorizontalPodAutoscaler {
    /// The v2 printer, which reads a v1 object by converting it.
    fn columns() -> Option<ColumnsOf> {
        Some(columns::autoscaling::horizontal_pod_autoscaler_columns)
    }
}

// networking.k8s.io

impl Strategy for Ingress {
    fn initial_status() -> Option<Value> {
        Some(json!({"loadBalancer": {}}))
    }

    fn validate(obj: &Value, ctx: &Context<'_>, causes: &mut Vec<Cause>) {
        validation::ingress::ingress(obj, ctx.old, causes);
    }

    fn columns() -> Option<ColumnsOf> {
        Some(columns::networking::ingress_columns)
    }
}

impl Strategy for IngressClass {
    /// Upstream's `SetDefaults_IngressClass`: parameters are cluster-scoped unless told.
    fn set_defaults(obj: &mut Value) {
        if let Some(params) = obj
            .pointer_mut("/spec/parameters")
            .filter(|p| p.is_object())
        {
            set(params, "scope", json!("Cluster"));
        }
    }

    fn validate(obj: &Value, _: &Context<'_>, causes: &mut Vec<Cause>) {
        validation::ingress::ingress_class(obj, causes);
    }

    fn validate_update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        validation::ingress::ingress_class_immutable(old, new, causes);
    }

    fn columns() -> Option<ColumnsOf> {
        Some(columns::networking::ingress_class_columns)
    }
}

// discovery.k8s.io, coordination.k8s.io, events.k8s.io

impl Strategy for EndpointSlice {
    fn columns() -> Option<ColumnsOf> {
        Some(columns::networking::endpoint_slice_columns)
    }
}

impl Strategy for Lease {
    fn columns() -> Option<ColumnsOf> {
        Some(columns::coordination::lease_columns)
    }
}

/// Another version of the core Event, stored with it.
impl Strategy for events::Event {
    const FIELD_LABELS: &'static [&'static str] = &[
        "regarding.kind",
        "regarding.namespace",
        "regarding.name",
        "regarding.uid",
        "regarding.apiVersion",
        "regarding.resourceVersion",
        "regarding.fieldPath",
        "reason",
        "reportingController",
        "type",
    ];

    /// Printed as the core Event it is stored as.
    fn columns() -> Option<ColumnsOf> {
        Some(columns::core::event_columns)
    }
}

// policy

impl Strategy for PodDisruptionBudget {
    /// Upstream's `PodDisruptionBudgetStatus` counts are not `omitempty`.
    fn initial_status() -> Option<Value> {
        Some(json!({
            "disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0,
        }))
    }

    fn validate(obj: &Value, _: &Context<'_>, causes: &mut Vec<Cause>) {
        validation::pdb::validate(obj, causes);
    }

    fn columns() -> Option<ColumnsOf> {
        Some(columns::policy::pod_disruption_budget_columns)
    }
}

// storage.k8s.io

/// Upstream's `SetDefaults_StorageClass`.
impl Strategy for StorageClass {
    fn set_defaults(obj: &mut Value) {
        set(obj, "reclaimPolicy", json!("Delete"));
        set(obj, "volumeBindingMode", json!("Immediate"));
    }

    fn validate(obj: &Value, _: &Context<'_>, causes: &mut Vec<Cause>) {
        validation::storage::class(obj, causes);
    }

    fn validate_update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        validation::storage::class_update(old, new, causes);
    }

    fn columns() -> Option<ColumnsOf> {
        Some(columns::storage::storage_class_columns)
    }
}

// rbac.authorization.k8s.io: the rules live with the authorizer that reads them.

macro_rules! rbac {
    ($($t:ty => $columns:expr),* $(,)?) => {$(
        impl Strategy for $t {
            fn validate(obj: &Value, _: &Context<'_>, causes: &mut Vec<Cause>) {
                crate::authz::validation::validate(<$t as k8s_openapi::Resource>::KIND, obj, causes);
            }

            fn validate_update(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
                crate::authz::validation::immutable(
                    <$t as k8s_openapi::Resource>::KIND,
                    old,
                    new,
                    causes,
                );
            }

            fn columns() -> Option<ColumnsOf> {
                $columns
            }
        }
    )*};
}

rbac! {
    Role => None,
    ClusterRole => None,
    RoleBinding => Some(columns::rbac::role_binding_columns),
    ClusterRoleBinding => Some(columns::rbac::role_binding_columns),
}

// certificates.k8s.io, authentication.k8s.io, apiregistration.k8s.io

impl Strategy for CertificateSigningRequest {
    const FIELD_LABELS: &'static [&'static str] = &["spec.signerName"];

    fn initial_status() -> Option<Value> {
        Some(json!({}))
    }

    fn validate(obj: &Value, _: &Context<'_>, causes: &mut Vec<Cause>) {
        causes.extend(crate::certificates::validate(obj));
    }

    fn columns() -> Option<ColumnsOf> {
        Some(columns::certificates::certificate_signing_request_columns)
    }
}

/// A review: answered, never stored (see [`crate::tokenreview`]).
impl Strategy for TokenReview {}

impl Strategy for APIService {
    fn set_defaults(obj: &mut Value) {
        defaults::api_service(obj);
    }

    fn validate(obj: &Value, _: &Context<'_>, causes: &mut Vec<Cause>) {
        validation::api_service(obj, causes);
    }

    fn columns() -> Option<ColumnsOf> {
        Some(columns::apiregistration::api_service_columns)
    }
}
