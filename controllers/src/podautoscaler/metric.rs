//! One metric of an autoscaler: its spec read into the calculator's terms (target,
//! tolerances, behavior rules), the proposal computed, and its status or its failure with
//! upstream's condition reason and wording.

use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::{
    ContainerResourceMetricStatus, HPAScalingRules, HorizontalPodAutoscalerBehavior, MetricSpec,
    MetricStatus, MetricTarget, MetricValueStatus, ResourceMetricStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;

use super::Ctx;
use super::calculator::{self, Target, Tolerances};
use super::normalize::{Policy, Rules, SelectPolicy};
use super::source::{ApiMetrics, milli};

fn target_of(t: &MetricTarget) -> Result<Target, String> {
    if let Some(v) = &t.average_value {
        return milli(&v.0)
            .map(Target::AverageValue)
            .ok_or_else(|| format!("invalid target averageValue {:?}", v.0));
    }
    t.average_utilization.map(Target::Utilization).ok_or_else(|| {
        "invalid resource metric source: neither an average utilization target nor an average value (usage) target was set".to_string()
    })
}

/// One metric's outcome: (replicas, metric name for messages, status, timestamp).
pub(super) type MetricOutcome = (i32, String, MetricStatus, Timestamp);

/// A failed metric: the `ScalingActive` condition reason, the cause (the condition's message
/// and the event's), and the error as the metric's (`failed to get cpu resource metric value:
/// <cause>`).
pub(super) struct MetricError {
    pub(super) reason: &'static str,
    pub(super) cause: String,
    pub(super) error: String,
}

impl MetricError {
    fn new(reason: &'static str, what: &str, cause: String) -> Self {
        Self {
            reason,
            error: format!("failed to get {what} metric value: {cause}"),
            cause,
        }
    }
}

pub(super) async fn replicas_for_metric(
    ctx: &Ctx,
    ns: &str,
    spec: &MetricSpec,
    current: i32,
    selector: &str,
    tolerances: Tolerances,
    now: Timestamp,
) -> Result<MetricOutcome, MetricError> {
    let missing = |reason, what: &str| {
        MetricError::new(reason, what, format!("the {what} metric source is missing"))
    };
    let (resource, container, target, reason) = match spec.type_.as_str() {
        "Resource" => {
            let Some(r) = &spec.resource else {
                return Err(missing("FailedGetResourceMetric", "resource"));
            };
            (r.name.clone(), None, &r.target, "FailedGetResourceMetric")
        }
        "ContainerResource" => {
            let Some(r) = &spec.container_resource else {
                return Err(missing("FailedGetContainerResourceMetric", "container"));
            };
            (
                r.name.clone(),
                Some(r.container.clone()),
                &r.target,
                "FailedGetContainerResourceMetric",
            )
        }
        // ekube serves no custom or external metrics API: these fail as they do upstream
        // when the adapter is missing.
        "Pods" | "Object" | "External" => {
            let (reason, group, what, name) = match spec.type_.as_str() {
                "Pods" => (
                    "FailedGetPodsMetric",
                    "custom.metrics.k8s.io",
                    "pods",
                    spec.pods.as_ref().map(|p| p.metric.name.clone()),
                ),
                "Object" => (
                    "FailedGetObjectMetric",
                    "custom.metrics.k8s.io",
                    "object",
                    spec.object.as_ref().map(|o| o.metric.name.clone()),
                ),
                _ => (
                    "FailedGetExternalMetric",
                    "external.metrics.k8s.io",
                    "external",
                    spec.external.as_ref().map(|e| e.metric.name.clone()),
                ),
            };
            let api = if group == "external.metrics.k8s.io" {
                "external"
            } else {
                "custom"
            };
            return Err(MetricError::new(
                reason,
                what,
                format!(
                    "unable to get metric {}: unable to fetch metrics from {api} metrics API: the server could not find the requested resource ({group} is not served)",
                    name.unwrap_or_default()
                ),
            ));
        }
        other => {
            return Err(MetricError {
                reason: "InvalidMetricSourceType",
                cause: format!("unknown metric source type {other:?}"),
                error: format!("unknown metric source type {other:?}"),
            });
        }
    };
    let what = if container.is_some() {
        format!("{resource} container")
    } else {
        format!("{resource} resource")
    };
    let fail = |e: String| MetricError::new(reason, &what, e);
    let goal = target_of(target).map_err(&fail)?;
    let source = ApiMetrics {
        client: &ctx.client,
        resource: resource.clone(),
    };
    let p = calculator::resource_replicas(
        &source,
        ns,
        selector,
        &resource,
        container.as_deref(),
        current,
        goal,
        tolerances,
        now,
    )
    .await
    .map_err(|e| {
        let what = match goal {
            Target::Utilization(_) => "utilization",
            Target::AverageValue(_) => "usage",
        };
        fail(format!("failed to get {resource} {what}: {e}"))
    })?;
    let value = MetricValueStatus {
        average_utilization: p.utilization,
        average_value: Some(Quantity(ekube_api::quantity::render(
            i128::from(p.raw) * 1_000_000,
            ekube_api::quantity::Format::DecimalSi,
        ))),
        value: None,
    };
    let name = match (goal, container.is_some()) {
        (Target::AverageValue(_), _) => format!("{resource} resource"),
        (Target::Utilization(_), false) => {
            format!("{resource} resource utilization (percentage of request)")
        }
        (Target::Utilization(_), true) => {
            format!("{resource} container resource utilization (percentage of request)")
        }
    };
    let status = match container {
        None => MetricStatus {
            type_: "Resource".into(),
            resource: Some(ResourceMetricStatus {
                name: resource,
                current: value,
            }),
            ..Default::default()
        },
        Some(c) => MetricStatus {
            type_: "ContainerResource".into(),
            container_resource: Some(ContainerResourceMetricStatus {
                name: resource,
                container: c,
                current: value,
            }),
            ..Default::default()
        },
    };
    Ok((p.replicas, name, status, p.timestamp))
}

pub(super) fn rules_of(r: Option<&HPAScalingRules>, up: bool, downscale: Duration) -> Rules {
    let policies = r
        .and_then(|r| r.policies.clone())
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let period = Duration::from_secs(p.period_seconds.max(0) as u64);
                    if p.type_ == "Pods" {
                        Policy::Pods {
                            value: p.value,
                            period,
                        }
                    } else {
                        Policy::Percent {
                            value: p.value,
                            period,
                        }
                    }
                })
                .collect()
        })
        .unwrap_or_else(|| {
            let period = Duration::from_secs(15);
            if up {
                vec![
                    Policy::Pods { value: 4, period },
                    Policy::Percent { value: 100, period },
                ]
            } else {
                vec![Policy::Percent { value: 100, period }]
            }
        });
    let select_policy = match r.and_then(|r| r.select_policy.as_deref()) {
        Some("Min") => SelectPolicy::Min,
        Some("Disabled") => SelectPolicy::Disabled,
        _ => SelectPolicy::Max,
    };
    // An unset scale-down window is the controller's flag, as upstream's
    // `maybeInitScaleDownStabilizationWindow`.
    let stabilization_window = r
        .and_then(|r| r.stabilization_window_seconds)
        .map(|s| Duration::from_secs(s.max(0) as u64))
        .unwrap_or(if up { Duration::ZERO } else { downscale });
    Rules {
        stabilization_window,
        select_policy,
        policies,
    }
}

/// Each direction's `tolerance`, the default where unset.
pub(super) fn tolerances_of(behavior: Option<&HorizontalPodAutoscalerBehavior>) -> Tolerances {
    let of = |rules: Option<&HPAScalingRules>| {
        rules
            .and_then(|r| r.tolerance.as_ref())
            .and_then(|q| milli(&q.0))
            .map(|m| m as f64 / 1000.0)
    };
    let default = Tolerances::default();
    Tolerances {
        down: of(behavior.and_then(|b| b.scale_down.as_ref())).unwrap_or(default.down),
        up: of(behavior.and_then(|b| b.scale_up.as_ref())).unwrap_or(default.up),
    }
}
