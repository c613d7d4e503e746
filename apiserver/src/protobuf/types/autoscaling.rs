//! Conversions for autoscaling/v1 and v2: scale subresources and horizontal pod autoscalers.

use crate::protobuf::convert::convert;

convert! { api::autoscaling::v1 =>
    Scale { metadata, spec, status }
    ScaleSpec { replicas: keep }
    ScaleStatus { replicas, selector }
    HorizontalPodAutoscaler { metadata, spec, status }
    HorizontalPodAutoscalerSpec {
        max_replicas, min_replicas: keep, scale_target_ref, target_cpu_utilization_percentage: keep
    }
    CrossVersionObjectReference { api_version, kind, name }
    HorizontalPodAutoscalerStatus {
        current_cpu_utilization_percentage: keep, current_replicas, desired_replicas,
        last_scale_time, observed_generation: keep
    }
}

convert! { api::autoscaling::v2 =>
    HorizontalPodAutoscaler { metadata, spec, status }
    HorizontalPodAutoscalerSpec {
        behavior, max_replicas, metrics, min_replicas: keep, scale_target_ref
    }
    HorizontalPodAutoscalerBehavior { scale_down, scale_up }
    HPAScalingRules as HpaScalingRules {
        policies, select_policy: keep, stabilization_window_seconds: keep, tolerance
    }
    HPAScalingPolicy as HpaScalingPolicy { period_seconds, type_ <- r#type, value }
    MetricSpec { container_resource, external, object, pods, resource, type_ <- r#type }
    ContainerResourceMetricSource { container, name, target }
    MetricTarget { average_utilization: keep, average_value, type_ <- r#type, value }
    ExternalMetricSource { metric, target }
    MetricIdentifier { name, selector }
    ObjectMetricSource { described_object, metric, target }
    CrossVersionObjectReference { api_version, kind, name }
    PodsMetricSource { metric, target }
    ResourceMetricSource { name, target }
    HorizontalPodAutoscalerStatus {
        conditions, current_metrics, current_replicas, desired_replicas, last_scale_time,
        observed_generation: keep
    }
    HorizontalPodAutoscalerCondition {
        last_transition_time, message, observed_generation: none, reason, status, type_ <- r#type
    }
    MetricStatus { container_resource, external, object, pods, resource, type_ <- r#type }
    ContainerResourceMetricStatus { container, current, name }
    MetricValueStatus { average_utilization: keep, average_value, value }
    ExternalMetricStatus { current, metric }
    ObjectMetricStatus { current, described_object, metric }
    PodsMetricStatus { current, metric }
    ResourceMetricStatus { current, name }
}
