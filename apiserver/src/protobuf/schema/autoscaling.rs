//! autoscaling/v1 and autoscaling/v2 HorizontalPodAutoscaler (the Scale subresource is in
//! `workloads`). Go pointer fields (`minReplicas`, targets, `selectPolicy`, windows) are `keep`:
//! an explicit zero must reach validation.

use super::meta::{LABEL_SELECTOR, OBJECT_META};
use crate::protobuf::{Field, Message, Ty};

// ---- shared shapes ----

pub(super) static CROSS_VERSION_OBJECT_REFERENCE: Message = Message::new(
    "CrossVersionObjectReference",
    &[
        Field::one(1, "kind", Ty::Str).keep(),
        Field::one(2, "name", Ty::Str).keep(),
        Field::one(3, "apiVersion", Ty::Str),
    ],
);

// ---- autoscaling/v1 ----

pub(super) static HORIZONTAL_POD_AUTOSCALER_V1: Message = Message::new(
    "HorizontalPodAutoscaler",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&HPA_SPEC_V1)),
        Field::one(3, "status", Ty::Msg(&HPA_STATUS_V1)),
    ],
);
pub(super) static HPA_SPEC_V1: Message = Message::new(
    "HorizontalPodAutoscalerSpec",
    &[
        Field::one(
            1,
            "scaleTargetRef",
            Ty::Msg(&CROSS_VERSION_OBJECT_REFERENCE),
        ),
        Field::one(2, "minReplicas", Ty::Int32).keep(),
        Field::one(3, "maxReplicas", Ty::Int32).keep(),
        Field::one(4, "targetCPUUtilizationPercentage", Ty::Int32).keep(),
    ],
);
pub(super) static HPA_STATUS_V1: Message = Message::new(
    "HorizontalPodAutoscalerStatus",
    &[
        Field::one(1, "observedGeneration", Ty::Int64).keep(),
        Field::one(2, "lastScaleTime", Ty::Time),
        Field::one(3, "currentReplicas", Ty::Int32).keep(),
        Field::one(4, "desiredReplicas", Ty::Int32).keep(),
        Field::one(5, "currentCPUUtilizationPercentage", Ty::Int32).keep(),
    ],
);

// ---- autoscaling/v2 ----

pub(super) static HORIZONTAL_POD_AUTOSCALER_V2: Message = Message::new(
    "HorizontalPodAutoscaler",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&HPA_SPEC)),
        Field::one(3, "status", Ty::Msg(&HPA_STATUS)),
    ],
);
pub(super) static HPA_SPEC: Message = Message::new(
    "HorizontalPodAutoscalerSpec",
    &[
        Field::one(
            1,
            "scaleTargetRef",
            Ty::Msg(&CROSS_VERSION_OBJECT_REFERENCE),
        ),
        Field::one(2, "minReplicas", Ty::Int32).keep(),
        Field::one(3, "maxReplicas", Ty::Int32).keep(),
        Field::rep(4, "metrics", Ty::Msg(&METRIC_SPEC)),
        Field::one(5, "behavior", Ty::Msg(&HPA_BEHAVIOR)),
    ],
);
pub(super) static HPA_BEHAVIOR: Message = Message::new(
    "HorizontalPodAutoscalerBehavior",
    &[
        Field::one(1, "scaleUp", Ty::Msg(&HPA_SCALING_RULES)),
        Field::one(2, "scaleDown", Ty::Msg(&HPA_SCALING_RULES)),
    ],
);
pub(super) static HPA_SCALING_RULES: Message = Message::new(
    "HPAScalingRules",
    &[
        Field::one(3, "stabilizationWindowSeconds", Ty::Int32).keep(),
        Field::one(1, "selectPolicy", Ty::Str).keep(),
        Field::rep(2, "policies", Ty::Msg(&HPA_SCALING_POLICY)),
        Field::one(4, "tolerance", Ty::Quantity),
    ],
);
pub(super) static HPA_SCALING_POLICY: Message = Message::new(
    "HPAScalingPolicy",
    &[
        Field::one(1, "type", Ty::Str).keep(),
        Field::one(2, "value", Ty::Int32).keep(),
        Field::one(3, "periodSeconds", Ty::Int32).keep(),
    ],
);
pub(super) static METRIC_SPEC: Message = Message::new(
    "MetricSpec",
    &[
        Field::one(1, "type", Ty::Str).keep(),
        Field::one(2, "object", Ty::Msg(&OBJECT_METRIC_SOURCE)),
        Field::one(3, "pods", Ty::Msg(&PODS_METRIC_SOURCE)),
        Field::one(4, "resource", Ty::Msg(&RESOURCE_METRIC_SOURCE)),
        Field::one(
            7,
            "containerResource",
            Ty::Msg(&CONTAINER_RESOURCE_METRIC_SOURCE),
        ),
        Field::one(5, "external", Ty::Msg(&EXTERNAL_METRIC_SOURCE)),
    ],
);
pub(super) static METRIC_TARGET: Message = Message::new(
    "MetricTarget",
    &[
        Field::one(1, "type", Ty::Str).keep(),
        Field::one(2, "value", Ty::Quantity),
        Field::one(3, "averageValue", Ty::Quantity),
        Field::one(4, "averageUtilization", Ty::Int32).keep(),
    ],
);
pub(super) static METRIC_IDENTIFIER: Message = Message::new(
    "MetricIdentifier",
    &[
        Field::one(1, "name", Ty::Str).keep(),
        Field::one(2, "selector", Ty::Msg(&LABEL_SELECTOR)),
    ],
);
pub(super) static RESOURCE_METRIC_SOURCE: Message = Message::new(
    "ResourceMetricSource",
    &[
        Field::one(1, "name", Ty::Str).keep(),
        Field::one(2, "target", Ty::Msg(&METRIC_TARGET)),
    ],
);
pub(super) static CONTAINER_RESOURCE_METRIC_SOURCE: Message = Message::new(
    "ContainerResourceMetricSource",
    &[
        Field::one(1, "name", Ty::Str).keep(),
        Field::one(2, "target", Ty::Msg(&METRIC_TARGET)),
        Field::one(3, "container", Ty::Str).keep(),
    ],
);
pub(super) static PODS_METRIC_SOURCE: Message = Message::new(
    "PodsMetricSource",
    &[
        Field::one(1, "metric", Ty::Msg(&METRIC_IDENTIFIER)),
        Field::one(2, "target", Ty::Msg(&METRIC_TARGET)),
    ],
);
pub(super) static OBJECT_METRIC_SOURCE: Message = Message::new(
    "ObjectMetricSource",
    &[
        Field::one(
            1,
            "describedObject",
            Ty::Msg(&CROSS_VERSION_OBJECT_REFERENCE),
        ),
        Field::one(2, "target", Ty::Msg(&METRIC_TARGET)),
        Field::one(3, "metric", Ty::Msg(&METRIC_IDENTIFIER)),
    ],
);
pub(super) static EXTERNAL_METRIC_SOURCE: Message = Message::new(
    "ExternalMetricSource",
    &[
        Field::one(1, "metric", Ty::Msg(&METRIC_IDENTIFIER)),
        Field::one(2, "target", Ty::Msg(&METRIC_TARGET)),
    ],
);
pub(super) static HPA_STATUS: Message = Message::new(
    "HorizontalPodAutoscalerStatus",
    &[
        Field::one(1, "observedGeneration", Ty::Int64).keep(),
        Field::one(2, "lastScaleTime", Ty::Time),
        Field::one(3, "currentReplicas", Ty::Int32),
        Field::one(4, "desiredReplicas", Ty::Int32).keep(),
        Field::rep(5, "currentMetrics", Ty::Msg(&METRIC_STATUS)),
        Field::rep(6, "conditions", Ty::Msg(&HPA_CONDITION)),
    ],
);
pub(super) static HPA_CONDITION: Message = Message::new(
    "HorizontalPodAutoscalerCondition",
    &[
        Field::one(1, "type", Ty::Str).keep(),
        Field::one(2, "status", Ty::Str).keep(),
        Field::one(3, "lastTransitionTime", Ty::Time),
        Field::one(4, "reason", Ty::Str),
        Field::one(5, "message", Ty::Str),
        Field::one(6, "observedGeneration", Ty::Int64),
    ],
);
pub(super) static METRIC_STATUS: Message = Message::new(
    "MetricStatus",
    &[
        Field::one(1, "type", Ty::Str).keep(),
        Field::one(2, "object", Ty::Msg(&OBJECT_METRIC_STATUS)),
        Field::one(3, "pods", Ty::Msg(&PODS_METRIC_STATUS)),
        Field::one(4, "resource", Ty::Msg(&RESOURCE_METRIC_STATUS)),
        Field::one(
            7,
            "containerResource",
            Ty::Msg(&CONTAINER_RESOURCE_METRIC_STATUS),
        ),
        Field::one(5, "external", Ty::Msg(&EXTERNAL_METRIC_STATUS)),
    ],
);
pub(super) static METRIC_VALUE_STATUS: Message = Message::new(
    "MetricValueStatus",
    &[
        Field::one(1, "value", Ty::Quantity),
        Field::one(2, "averageValue", Ty::Quantity),
        Field::one(3, "averageUtilization", Ty::Int32).keep(),
    ],
);
pub(super) static RESOURCE_METRIC_STATUS: Message = Message::new(
    "ResourceMetricStatus",
    &[
        Field::one(1, "name", Ty::Str).keep(),
        Field::one(2, "current", Ty::Msg(&METRIC_VALUE_STATUS)),
    ],
);
pub(super) static CONTAINER_RESOURCE_METRIC_STATUS: Message = Message::new(
    "ContainerResourceMetricStatus",
    &[
        Field::one(1, "name", Ty::Str).keep(),
        Field::one(2, "current", Ty::Msg(&METRIC_VALUE_STATUS)),
        Field::one(3, "container", Ty::Str).keep(),
    ],
);
pub(super) static PODS_METRIC_STATUS: Message = Message::new(
    "PodsMetricStatus",
    &[
        Field::one(1, "metric", Ty::Msg(&METRIC_IDENTIFIER)),
        Field::one(2, "current", Ty::Msg(&METRIC_VALUE_STATUS)),
    ],
);
pub(super) static OBJECT_METRIC_STATUS: Message = Message::new(
    "ObjectMetricStatus",
    &[
        Field::one(1, "metric", Ty::Msg(&METRIC_IDENTIFIER)),
        Field::one(2, "current", Ty::Msg(&METRIC_VALUE_STATUS)),
        Field::one(
            3,
            "describedObject",
            Ty::Msg(&CROSS_VERSION_OBJECT_REFERENCE),
        ),
    ],
);
pub(super) static EXTERNAL_METRIC_STATUS: Message = Message::new(
    "ExternalMetricStatus",
    &[
        Field::one(1, "metric", Ty::Msg(&METRIC_IDENTIFIER)),
        Field::one(2, "current", Ty::Msg(&METRIC_VALUE_STATUS)),
    ],
);
