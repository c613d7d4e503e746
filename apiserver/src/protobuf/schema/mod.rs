//! The message tables: field numbers and JSON names from the upstream `generated.proto` files.
//!
//! Field numbers follow k8s.io/api and k8s.io/apimachinery `generated.proto`; JSON names and
//! `keep` follow the Go struct tags. The tables are grouped by API group, core/v1 by part (pods,
//! containers, volumes, the rest); [`KINDS`] names the top-level kinds among them.

mod auth;
mod autoscaling;
mod container;
mod coordination;
mod core;
mod meta;
mod networking;
mod pod;
mod volume;
mod workloads;

pub(super) use self::meta::DELETE_OPTIONS;
use self::{
    auth::{
        CERTIFICATE_SIGNING_REQUEST, CLUSTER_ROLE, CLUSTER_ROLE_BINDING,
        LOCAL_SUBJECT_ACCESS_REVIEW, ROLE, ROLE_BINDING, SELF_SUBJECT_ACCESS_REVIEW,
        SELF_SUBJECT_REVIEW, SELF_SUBJECT_RULES_REVIEW, SUBJECT_ACCESS_REVIEW, TOKEN_REQUEST,
    },
    autoscaling::{HORIZONTAL_POD_AUTOSCALER_V1, HORIZONTAL_POD_AUTOSCALER_V2},
    coordination::LEASE,
    core::{CONFIG_MAP, NAMESPACE, RESOURCE_QUOTA, SECRET, SERVICE, SERVICE_ACCOUNT},
    networking::INGRESS,
    pod::POD,
    workloads::{
        CRON_JOB, DEPLOYMENT, EVICTION, JOB, POD_DISRUPTION_BUDGET, PRIORITY_CLASS, SCALE,
    },
};
use super::Message;

/// The top-level kinds [`decode`] accepts, by apiVersion and kind.
pub(super) static KINDS: &[(&str, &str, &Message)] = &[
    ("v1", "ConfigMap", &CONFIG_MAP),
    ("v1", "Secret", &SECRET),
    ("v1", "Namespace", &NAMESPACE),
    ("v1", "ServiceAccount", &SERVICE_ACCOUNT),
    ("v1", "Service", &SERVICE),
    ("v1", "Pod", &POD),
    ("v1", "ResourceQuota", &RESOURCE_QUOTA),
    ("apps/v1", "Deployment", &DEPLOYMENT),
    ("batch/v1", "Job", &JOB),
    ("batch/v1", "CronJob", &CRON_JOB),
    ("policy/v1", "Eviction", &EVICTION),
    ("policy/v1", "PodDisruptionBudget", &POD_DISRUPTION_BUDGET),
    (
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        &CERTIFICATE_SIGNING_REQUEST,
    ),
    ("authentication.k8s.io/v1", "TokenRequest", &TOKEN_REQUEST),
    (
        "authentication.k8s.io/v1",
        "SelfSubjectReview",
        &SELF_SUBJECT_REVIEW,
    ),
    (
        "authorization.k8s.io/v1",
        "SubjectAccessReview",
        &SUBJECT_ACCESS_REVIEW,
    ),
    (
        "authorization.k8s.io/v1",
        "LocalSubjectAccessReview",
        &LOCAL_SUBJECT_ACCESS_REVIEW,
    ),
    (
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        &SELF_SUBJECT_ACCESS_REVIEW,
    ),
    (
        "authorization.k8s.io/v1",
        "SelfSubjectRulesReview",
        &SELF_SUBJECT_RULES_REVIEW,
    ),
    ("rbac.authorization.k8s.io/v1", "Role", &ROLE),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", &CLUSTER_ROLE),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", &ROLE_BINDING),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        &CLUSTER_ROLE_BINDING,
    ),
    ("autoscaling/v1", "Scale", &SCALE),
    (
        "autoscaling/v1",
        "HorizontalPodAutoscaler",
        &HORIZONTAL_POD_AUTOSCALER_V1,
    ),
    (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        &HORIZONTAL_POD_AUTOSCALER_V2,
    ),
    ("scheduling.k8s.io/v1", "PriorityClass", &PRIORITY_CLASS),
    ("networking.k8s.io/v1", "Ingress", &INGRESS),
    ("coordination.k8s.io/v1", "Lease", &LEASE),
];
