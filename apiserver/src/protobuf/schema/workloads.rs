//! Kinds that run and manage pods: apps/v1 Deployment, batch/v1 Job and CronJob, policy/v1
//! Eviction and PodDisruptionBudget, the autoscaling/v1 Scale subresource and scheduling.k8s.io/v1
//! PriorityClass.

use super::{
    core::OBJECT_REFERENCE,
    meta::{CONDITION, DELETE_OPTIONS, LABEL_SELECTOR, OBJECT_META},
    pod::POD_TEMPLATE_SPEC,
};
use crate::protobuf::{Field, Message, Ty};

// ---- apps/v1 ----

pub(super) static DEPLOYMENT: Message = Message::new(
    "Deployment",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&DEPLOYMENT_SPEC)),
        Field::one(3, "status", Ty::Msg(&DEPLOYMENT_STATUS)),
    ],
);
pub(super) static DEPLOYMENT_CONDITION: Message = Message::new(
    "DeploymentCondition",
    &[
        Field::one(1, "type", Ty::Str).keep(),
        Field::one(2, "status", Ty::Str).keep(),
        Field::one(6, "lastUpdateTime", Ty::Time),
        Field::one(7, "lastTransitionTime", Ty::Time),
        Field::one(4, "reason", Ty::Str),
        Field::one(5, "message", Ty::Str),
    ],
);
pub(super) static DEPLOYMENT_SPEC: Message = Message::new(
    "DeploymentSpec",
    &[
        Field::one(1, "replicas", Ty::Int32).keep(),
        Field::one(2, "selector", Ty::Msg(&LABEL_SELECTOR)),
        Field::one(3, "template", Ty::Msg(&POD_TEMPLATE_SPEC)),
        Field::one(4, "strategy", Ty::Msg(&DEPLOYMENT_STRATEGY)),
        Field::one(5, "minReadySeconds", Ty::Int32),
        Field::one(6, "revisionHistoryLimit", Ty::Int32).keep(),
        Field::one(7, "paused", Ty::Bool),
        Field::one(9, "progressDeadlineSeconds", Ty::Int32).keep(),
    ],
);
pub(super) static DEPLOYMENT_STATUS: Message = Message::new(
    "DeploymentStatus",
    &[
        Field::one(1, "observedGeneration", Ty::Int64),
        Field::one(2, "replicas", Ty::Int32),
        Field::one(3, "updatedReplicas", Ty::Int32),
        Field::one(7, "readyReplicas", Ty::Int32),
        Field::one(4, "availableReplicas", Ty::Int32),
        Field::one(5, "unavailableReplicas", Ty::Int32),
        Field::one(9, "terminatingReplicas", Ty::Int32).keep(),
        Field::rep(6, "conditions", Ty::Msg(&DEPLOYMENT_CONDITION)),
        Field::one(8, "collisionCount", Ty::Int32).keep(),
    ],
);
pub(super) static DEPLOYMENT_STRATEGY: Message = Message::new(
    "DeploymentStrategy",
    &[
        Field::one(1, "type", Ty::Str),
        Field::one(2, "rollingUpdate", Ty::Msg(&ROLLING_UPDATE_DEPLOYMENT)),
    ],
);
pub(super) static ROLLING_UPDATE_DEPLOYMENT: Message = Message::new(
    "RollingUpdateDeployment",
    &[
        Field::one(1, "maxUnavailable", Ty::IntOrString),
        Field::one(2, "maxSurge", Ty::IntOrString),
    ],
);

// ---- batch/v1 ----

pub(super) static CRON_JOB: Message = Message::new(
    "CronJob",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&CRON_JOB_SPEC)),
        Field::one(3, "status", Ty::Msg(&CRON_JOB_STATUS)),
    ],
);
pub(super) static CRON_JOB_SPEC: Message = Message::new(
    "CronJobSpec",
    &[
        Field::one(1, "schedule", Ty::Str).keep(),
        Field::one(8, "timeZone", Ty::Str).keep(),
        Field::one(2, "startingDeadlineSeconds", Ty::Int64).keep(),
        Field::one(3, "concurrencyPolicy", Ty::Str),
        Field::one(4, "suspend", Ty::Bool).keep(),
        Field::one(5, "jobTemplate", Ty::Msg(&JOB_TEMPLATE_SPEC)),
        Field::one(6, "successfulJobsHistoryLimit", Ty::Int32).keep(),
        Field::one(7, "failedJobsHistoryLimit", Ty::Int32).keep(),
    ],
);
pub(super) static CRON_JOB_STATUS: Message = Message::new(
    "CronJobStatus",
    &[
        Field::rep(1, "active", Ty::Msg(&OBJECT_REFERENCE)),
        Field::one(4, "lastScheduleTime", Ty::Time),
        Field::one(5, "lastSuccessfulTime", Ty::Time),
    ],
);
pub(super) static JOB: Message = Message::new(
    "Job",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&JOB_SPEC)),
        Field::one(3, "status", Ty::Msg(&JOB_STATUS)),
    ],
);
pub(super) static JOB_CONDITION: Message = Message::new(
    "JobCondition",
    &[
        Field::one(1, "type", Ty::Str).keep(),
        Field::one(2, "status", Ty::Str).keep(),
        Field::one(3, "lastProbeTime", Ty::Time),
        Field::one(4, "lastTransitionTime", Ty::Time),
        Field::one(5, "reason", Ty::Str),
        Field::one(6, "message", Ty::Str),
    ],
);
// Not covered: podFailurePolicy, successPolicy, scheduling.
pub(super) static JOB_SPEC: Message = Message::new(
    "JobSpec",
    &[
        Field::one(1, "parallelism", Ty::Int32).keep(),
        Field::one(2, "completions", Ty::Int32).keep(),
        Field::one(3, "activeDeadlineSeconds", Ty::Int64).keep(),
        Field::one(7, "backoffLimit", Ty::Int32).keep(),
        Field::one(12, "backoffLimitPerIndex", Ty::Int32).keep(),
        Field::one(13, "maxFailedIndexes", Ty::Int32).keep(),
        Field::one(4, "selector", Ty::Msg(&LABEL_SELECTOR)),
        Field::one(5, "manualSelector", Ty::Bool).keep(),
        Field::one(6, "template", Ty::Msg(&POD_TEMPLATE_SPEC)),
        Field::one(8, "ttlSecondsAfterFinished", Ty::Int32).keep(),
        Field::one(9, "completionMode", Ty::Str).keep(),
        Field::one(10, "suspend", Ty::Bool).keep(),
        Field::one(14, "podReplacementPolicy", Ty::Str).keep(),
        Field::one(15, "managedBy", Ty::Str).keep(),
    ],
);
// Not covered: uncountedTerminatedPods.
pub(super) static JOB_STATUS: Message = Message::new(
    "JobStatus",
    &[
        Field::rep(1, "conditions", Ty::Msg(&JOB_CONDITION)),
        Field::one(2, "startTime", Ty::Time),
        Field::one(3, "completionTime", Ty::Time),
        Field::one(4, "active", Ty::Int32),
        Field::one(5, "succeeded", Ty::Int32),
        Field::one(6, "failed", Ty::Int32),
        Field::one(11, "terminating", Ty::Int32).keep(),
        Field::one(7, "completedIndexes", Ty::Str),
        Field::one(10, "failedIndexes", Ty::Str).keep(),
        Field::one(9, "ready", Ty::Int32).keep(),
    ],
);
pub(super) static JOB_TEMPLATE_SPEC: Message = Message::new(
    "JobTemplateSpec",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&JOB_SPEC)),
    ],
);

// ---- policy/v1 ----

pub(super) static EVICTION: Message = Message::new(
    "Eviction",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "deleteOptions", Ty::Msg(&DELETE_OPTIONS)),
    ],
);
pub(super) static POD_DISRUPTION_BUDGET: Message = Message::new(
    "PodDisruptionBudget",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&POD_DISRUPTION_BUDGET_SPEC)),
        Field::one(3, "status", Ty::Msg(&POD_DISRUPTION_BUDGET_STATUS)),
    ],
);
pub(super) static POD_DISRUPTION_BUDGET_SPEC: Message = Message::new(
    "PodDisruptionBudgetSpec",
    &[
        Field::one(1, "minAvailable", Ty::IntOrString),
        Field::one(2, "selector", Ty::Msg(&LABEL_SELECTOR)),
        Field::one(3, "maxUnavailable", Ty::IntOrString),
        Field::one(4, "unhealthyPodEvictionPolicy", Ty::Str).keep(),
    ],
);
pub(super) static POD_DISRUPTION_BUDGET_STATUS: Message = Message::new(
    "PodDisruptionBudgetStatus",
    &[
        Field::one(1, "observedGeneration", Ty::Int64),
        Field::map(2, "disruptedPods", Ty::Time),
        Field::one(3, "disruptionsAllowed", Ty::Int32).keep(),
        Field::one(4, "currentHealthy", Ty::Int32).keep(),
        Field::one(5, "desiredHealthy", Ty::Int32).keep(),
        Field::one(6, "expectedPods", Ty::Int32).keep(),
        Field::rep(7, "conditions", Ty::Msg(&CONDITION)),
    ],
);

// ---- autoscaling/v1 ----

pub(super) static SCALE: Message = Message::new(
    "Scale",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&SCALE_SPEC)),
        Field::one(3, "status", Ty::Msg(&SCALE_STATUS)),
    ],
);
// `replicas` is `omitempty` in Go, but a JSON-reading server must see an explicit scale to 0.
pub(super) static SCALE_SPEC: Message =
    Message::new("ScaleSpec", &[Field::one(1, "replicas", Ty::Int32).keep()]);
pub(super) static SCALE_STATUS: Message = Message::new(
    "ScaleStatus",
    &[
        Field::one(1, "replicas", Ty::Int32).keep(),
        Field::one(2, "selector", Ty::Str),
    ],
);

// ---- scheduling.k8s.io/v1 ----

pub(super) static PRIORITY_CLASS: Message = Message::new(
    "PriorityClass",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "value", Ty::Int32).keep(),
        Field::one(3, "globalDefault", Ty::Bool),
        Field::one(4, "description", Ty::Str),
        Field::one(5, "preemptionPolicy", Ty::Str).keep(),
    ],
);
