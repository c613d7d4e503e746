//! HorizontalPodAutoscaler controller (upstream's `horizontalpodautoscaling`,
//! `pkg/controller/podautoscaler`): every `--horizontal-pod-autoscaler-sync-period` each
//! autoscaler reads its target's `/scale` (any kind that has one), asks the
//! [`calculator`] what each metric proposes from the pods' `metrics.k8s.io/v1beta1` PodMetrics,
//! takes the largest proposal, [`normalize`]s it (stabilization windows, `behavior` policies,
//! min/max), writes the new scale, and reports `currentReplicas`, `desiredReplicas`,
//! `currentMetrics`, `lastScaleTime` and the `AbleToScale`, `ScalingActive` and
//! `ScalingLimited` conditions with upstream's reasons, and the events upstream records.
//!
//! Resource and ContainerResource metrics are computed; Pods, Object and External metrics need
//! a custom or external metrics API, which ekube does not serve, so they report
//! `ScalingActive=False` as upstream does when such an API is missing.

mod calculator;
mod normalize;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ekube_api::events::{EventType, Recorder};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::{
    ContainerResourceMetricStatus, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus, MetricSpec, MetricStatus,
    MetricTarget, MetricValueStatus, ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;

use calculator::{MetricsSource, PodInfo, PodMetric, PodMetrics, Target};
use normalize::{Behavior, History, Policy, Rules, SelectPolicy};

use crate::{Context as _, Result};

/// The controller's settings (its kube-controller-manager flags).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `--horizontal-pod-autoscaler-sync-period`.
    pub sync_period: Duration,
    /// `--horizontal-pod-autoscaler-downscale-stabilization`.
    pub downscale_stabilization: Duration,
}

struct Ctx {
    client: kube::Client,
    recorder: Recorder,
    settings: Settings,
    store: Store<HorizontalPodAutoscaler>,
    /// Recommendations and scale events of each autoscaler (`namespace/name`).
    history: Mutex<HashMap<String, History>>,
}

pub async fn run(
    client: kube::Client,
    recorder: Recorder,
    settings: Settings,
) -> Result<(), String> {
    let controller = Controller::new(
        Api::<HorizontalPodAutoscaler>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    let ctx = Ctx {
        client,
        recorder,
        settings,
        store,
        history: Mutex::new(HashMap::new()),
    };
    crate::runner::drive(
        "horizontalpodautoscaling",
        controller,
        reconcile,
        ctx,
        settings.sync_period,
    )
    .await;
    Ok(())
}

/// PodMetrics through the API, and the pods they belong to with their requests of `resource`.
struct ApiMetrics<'a> {
    client: &'a kube::Client,
    resource: String,
}

fn pod_metrics_resource() -> ApiResource {
    ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    }
}

fn milli(q: &str) -> Option<i64> {
    ekube_api::quantity::parse_milli(q)
        .ok()
        .and_then(|m| i64::try_from(m).ok())
}

impl MetricsSource for ApiMetrics<'_> {
    async fn pods(&self, namespace: &str, selector: &str) -> Result<Vec<PodInfo>, String> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let pods = api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| format!("unable to get pods while calculating replica count: {e}"))?;
        Ok(pods
            .items
            .iter()
            .map(|p| {
                let mut info = pod_info(p);
                info.requests = p
                    .spec
                    .iter()
                    .flat_map(|s| &s.containers)
                    .map(|c| {
                        let request = c
                            .resources
                            .as_ref()
                            .and_then(|r| r.requests.as_ref())
                            .and_then(|r| r.get(&self.resource))
                            .and_then(|q| milli(&q.0));
                        (c.name.clone(), request)
                    })
                    .collect();
                info
            })
            .collect())
    }

    async fn resource_metrics(
        &self,
        namespace: &str,
        selector: &str,
        resource: &str,
        container: Option<&str>,
    ) -> Result<PodMetrics, String> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &pod_metrics_resource());
        let list = api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| format!("unable to fetch metrics from resource metrics API: {e}"))?;
        if list.items.is_empty() {
            return Err("no metrics returned from resource metrics API".into());
        }
        let mut out = PodMetrics::new();
        for m in &list.items {
            let containers = m.data["containers"].as_array().cloned().unwrap_or_default();
            let mut sum = 0;
            let mut missing = containers.is_empty();
            let mut matched = false;
            for c in &containers {
                if container.is_some_and(|want| c["name"].as_str() != Some(want)) {
                    continue;
                }
                matched = true;
                match c["usage"][resource].as_str().and_then(milli) {
                    Some(v) => sum += v,
                    None => {
                        missing = true;
                        break;
                    }
                }
            }
            if container.is_some() && !matched {
                missing = true;
            }
            if missing {
                continue;
            }
            let timestamp = m.data["timestamp"]
                .as_str()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .unwrap_or_else(Timestamp::now);
            let window = m.data["window"]
                .as_str()
                .and_then(|w| ekube_api::flags::parse_duration(w).ok())
                .unwrap_or_default();
            out.insert(
                m.name_any(),
                PodMetric {
                    value: sum,
                    timestamp,
                    window,
                },
            );
        }
        Ok(out)
    }
}

/// What the calculator needs of a pod, requests aside.
fn pod_info(p: &Pod) -> PodInfo {
    let status = p.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| {
            (
                c.status == "True",
                c.last_transition_time
                    .as_ref()
                    .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
            )
        });
    PodInfo {
        name: p.name_any(),
        phase: status.phase.unwrap_or_default(),
        deleting: p.metadata.deletion_timestamp.is_some(),
        start_time: status.start_time.map(|t| t.0),
        ready,
        requests: Vec::new(),
    }
}

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
type MetricOutcome = (i32, String, MetricStatus, Timestamp);

/// A failed metric: the `ScalingActive` condition reason and the error.
struct MetricError {
    reason: &'static str,
    error: String,
}

async fn replicas_for_metric(
    ctx: &Ctx,
    ns: &str,
    spec: &MetricSpec,
    current: i32,
    selector: &str,
    now: Timestamp,
) -> Result<MetricOutcome, MetricError> {
    let (resource, container, target, reason) = match spec.type_.as_str() {
        "Resource" => {
            let Some(r) = &spec.resource else {
                return Err(MetricError {
                    reason: "FailedGetResourceMetric",
                    error: "resource metric source is missing".into(),
                });
            };
            (r.name.clone(), None, &r.target, "FailedGetResourceMetric")
        }
        "ContainerResource" => {
            let Some(r) = &spec.container_resource else {
                return Err(MetricError {
                    reason: "FailedGetContainerResourceMetric",
                    error: "container resource metric source is missing".into(),
                });
            };
            (
                r.name.clone(),
                Some(r.container.clone()),
                &r.target,
                "FailedGetContainerResourceMetric",
            )
        }
        "Pods" | "Object" | "External" => {
            let (reason, api, what) = match spec.type_.as_str() {
                "Pods" => ("FailedGetPodsMetric", "custom.metrics.k8s.io", "pods"),
                "Object" => ("FailedGetObjectMetric", "custom.metrics.k8s.io", "object"),
                _ => (
                    "FailedGetExternalMetric",
                    "external.metrics.k8s.io",
                    "external",
                ),
            };
            return Err(MetricError {
                reason,
                error: format!(
                    "failed to get {what} metric value: unable to get metric: the server could not find the requested resource ({api} is not served)"
                ),
            });
        }
        other => {
            return Err(MetricError {
                reason: "InvalidMetricSourceType",
                error: format!("unknown metric source type {other:?}"),
            });
        }
    };
    let kind = if container.is_some() {
        "container"
    } else {
        "resource"
    };
    let fail = |e: String| MetricError {
        reason,
        error: format!("failed to get {resource} {kind} metric value: {e}"),
    };
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

fn set_condition(
    conditions: &mut Vec<HorizontalPodAutoscalerCondition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
) {
    let status = if status { "True" } else { "False" };
    let i = match conditions.iter().position(|c| c.type_ == type_) {
        Some(i) => i,
        None => {
            conditions.push(HorizontalPodAutoscalerCondition {
                type_: type_.into(),
                ..Default::default()
            });
            conditions.len() - 1
        }
    };
    let c = &mut conditions[i];
    if c.status != status {
        c.last_transition_time = Some(Time(Timestamp::now()));
    }
    c.status = status.into();
    c.reason = Some(reason.into());
    c.message = Some(message.into());
}

fn rules_of(r: Option<&HPAScalingRules>, up: bool, downscale: Duration) -> Rules {
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

/// The target's resource (it must have a `/scale`), from `scaleTargetRef`.
fn scale_target(api_version: &str, kind: &str) -> Result<&'static ekube_api::ResourceInfo, String> {
    let (group, _) = ekube_api::resources::split_api_version(api_version);
    match ekube_api::resources::find_kind(api_version, kind) {
        Some(r) if r.scale => Ok(r),
        Some(r) => Err(format!("{} has no scale subresource", r.plural)),
        None => Err(format!("no matches for kind {kind:?} in group {group:?}")),
    }
}

async fn reconcile(hpa: Arc<HorizontalPodAutoscaler>, ctx: Arc<Ctx>) -> Result<Action> {
    let (ns, name) = (hpa.namespace().unwrap_or_default(), hpa.name_any());
    let key = format!("{ns}/{name}");
    {
        // Forget autoscalers that are gone.
        let live: std::collections::HashSet<String> = ctx
            .store
            .state()
            .iter()
            .map(|h| format!("{}/{}", h.namespace().unwrap_or_default(), h.name_any()))
            .collect();
        let mut history = ctx.history.lock().expect("history lock");
        history.retain(|k, _| live.contains(k));
    }
    if hpa.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let requeue = Action::requeue(ctx.settings.sync_period);
    let spec = hpa.spec.clone();
    let original = hpa.status.clone().unwrap_or_default();
    let mut status = original.clone();
    let mut conditions = status.conditions.take().unwrap_or_default();
    let target_ref = &spec.scale_target_ref;
    let reference = format!("{}/{}", target_ref.kind, target_ref.name);

    let target = scale_target(
        target_ref.api_version.as_deref().unwrap_or(""),
        &target_ref.kind,
    );
    let scale = match target {
        Ok(r) => {
            let api: Api<DynamicObject> =
                Api::namespaced_with(ctx.client.clone(), &ns, &crate::gc::api_resource(r));
            api.get_scale(&target_ref.name)
                .await
                .map(|s| (api, s))
                .map_err(|e| match e {
                    kube::Error::Api(s) => s.message,
                    other => other.to_string(),
                })
        }
        Err(e) => Err(e),
    };
    let (scale_api, mut scale) = match scale {
        Ok(s) => s,
        Err(e) => {
            ctx.recorder
                .record(&*hpa, EventType::Warning, "FailedGetScale", &e)
                .await;
            set_condition(
                &mut conditions,
                "AbleToScale",
                false,
                "FailedGetScale",
                &format!("the HPA controller was unable to get the target's current scale: {e}"),
            );
            status.conditions = Some(conditions);
            write_status(&ctx, &hpa, &original, status).await?;
            tracing::debug!(%reference, error = %e, "failed to query scale subresource");
            return Ok(requeue);
        }
    };
    set_condition(
        &mut conditions,
        "AbleToScale",
        true,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
    );
    let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let now = Timestamp::now();
    ctx.history
        .lock()
        .expect("history lock")
        .entry(key.clone())
        .or_default()
        .record_initial(current, now);
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;
    let mut metric_statuses: Option<Vec<MetricStatus>> = status.current_metrics.clone();
    let mut desired;
    let mut reason = String::new();
    let mut rescale = true;
    let behavior = spec.behavior.as_ref().map(|b| Behavior {
        scale_up: rules_of(
            b.scale_up.as_ref(),
            true,
            ctx.settings.downscale_stabilization,
        ),
        scale_down: rules_of(
            b.scale_down.as_ref(),
            false,
            ctx.settings.downscale_stabilization,
        ),
    });
    if current == 0 && min != 0 {
        desired = 0;
        rescale = false;
        set_condition(
            &mut conditions,
            "ScalingActive",
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
        );
    } else if current > max {
        reason = "Current number of replicas above Spec.MaxReplicas".into();
        desired = max;
    } else if current < min {
        reason = "Current number of replicas below Spec.MinReplicas".into();
        desired = min;
    } else {
        let selector = scale
            .status
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        if selector.is_empty() {
            let msg = "selector is required";
            ctx.recorder
                .record(&*hpa, EventType::Warning, "SelectorRequired", msg)
                .await;
            set_condition(
                &mut conditions,
                "ScalingActive",
                false,
                "InvalidSelector",
                "the HPA target's scale is missing a selector",
            );
            status.current_replicas = Some(current);
            status.current_metrics = None;
            status.conditions = Some(conditions);
            write_status(&ctx, &hpa, &original, status).await?;
            return Ok(requeue);
        }
        let metrics = spec.metrics.clone().unwrap_or_default();
        let mut statuses = vec![MetricStatus::default(); metrics.len()];
        let (mut proposal, mut metric_name) = (0, String::new());
        let mut invalid: Vec<MetricError> = Vec::new();
        for (i, m) in metrics.iter().enumerate() {
            match replicas_for_metric(&ctx, &ns, m, current, &selector, now).await {
                Ok((replicas, name, s, _)) => {
                    statuses[i] = s;
                    if proposal == 0 || replicas > proposal {
                        proposal = replicas;
                        metric_name = name;
                    }
                }
                Err(e) => {
                    ctx.recorder
                        .record(&*hpa, EventType::Warning, e.reason, &e.error)
                        .await;
                    invalid.push(e);
                }
            }
        }
        metric_statuses = (!statuses.is_empty()).then_some(statuses);
        if !invalid.is_empty() && (invalid.len() >= metrics.len() || proposal < current) {
            let first = &invalid[0];
            set_condition(
                &mut conditions,
                "ScalingActive",
                false,
                first.reason,
                &format!(
                    "the HPA was unable to compute the replica count: {}",
                    first.error
                ),
            );
            let msg = format!(
                "invalid metrics ({} invalid out of {}), first error is: {}",
                invalid.len(),
                metrics.len(),
                first.error
            );
            ctx.recorder
                .record(
                    &*hpa,
                    EventType::Warning,
                    "FailedComputeMetricsReplicas",
                    &msg,
                )
                .await;
            status.current_replicas = Some(current);
            status.current_metrics = metric_statuses;
            status.conditions = Some(conditions);
            write_status(&ctx, &hpa, &original, status).await?;
            return Ok(requeue);
        }
        set_condition(
            &mut conditions,
            "ScalingActive",
            true,
            "ValidMetricFound",
            &format!(
                "the HPA was able to successfully calculate a replica count from {metric_name}"
            ),
        );
        desired = proposal;
        if desired > current {
            reason = format!("{metric_name} above target");
        }
        if desired < current {
            reason = "All metrics below target".into();
        }
        let normalized = {
            let mut history = ctx.history.lock().expect("history lock");
            let h = history.entry(key.clone()).or_default();
            match &behavior {
                None => h.normalize(
                    current,
                    desired,
                    min,
                    max,
                    ctx.settings.downscale_stabilization,
                    now,
                ),
                Some(b) => h.normalize_with_behavior(b, current, desired, min, max, now),
            }
        };
        let (ok, r, m) = normalized.able_to_scale;
        set_condition(&mut conditions, "AbleToScale", ok, r, m);
        let (ok, r, m) = normalized.scaling_limited;
        set_condition(&mut conditions, "ScalingLimited", ok, r, m);
        desired = normalized.replicas;
        rescale = desired != current;
    }

    if rescale {
        if let Some(s) = scale.spec.as_mut() {
            s.replicas = Some(desired);
        } else {
            scale.spec = Some(k8s_openapi::api::autoscaling::v1::ScaleSpec {
                replicas: Some(desired),
            });
        }
        let result: Result<Scale, kube::Error> = scale_api
            .replace_scale(&target_ref.name, &PostParams::default(), &scale)
            .await;
        if let Err(e) = result {
            let e = match e {
                kube::Error::Api(s) => s.message,
                other => other.to_string(),
            };
            ctx.recorder
                .record(
                    &*hpa,
                    EventType::Warning,
                    "FailedRescale",
                    &format!("New size: {desired}; reason: {reason}; error: {e}"),
                )
                .await;
            set_condition(
                &mut conditions,
                "AbleToScale",
                false,
                "FailedUpdateScale",
                &format!("the HPA controller was unable to update the target scale: {e}"),
            );
            status.current_replicas = Some(current);
            status.current_metrics = metric_statuses;
            status.conditions = Some(conditions);
            write_status(&ctx, &hpa, &original, status).await?;
            return Ok(requeue);
        }
        set_condition(
            &mut conditions,
            "AbleToScale",
            true,
            "SucceededRescale",
            &format!("the HPA controller was able to update the target scale to {desired}"),
        );
        ctx.recorder
            .record(
                &*hpa,
                EventType::Normal,
                "SuccessfulRescale",
                &format!("New size: {desired}; reason: {reason}"),
            )
            .await;
        ctx.history
            .lock()
            .expect("history lock")
            .entry(key.clone())
            .or_default()
            .record_scale(behavior.as_ref(), current, desired, now);
        tracing::info!(hpa = %key, from = current, to = desired, %reason, "rescaled");
    } else {
        desired = current;
    }
    status.current_replicas = Some(current);
    status.desired_replicas = desired;
    status.current_metrics = metric_statuses;
    status.observed_generation = hpa.metadata.generation;
    if rescale {
        status.last_scale_time = Some(Time(Timestamp::now()));
    }
    status.conditions = Some(conditions);
    write_status(&ctx, &hpa, &original, status).await?;
    Ok(requeue)
}

/// Writes `status` when it differs from what the autoscaler had (upstream's
/// `updateStatusIfNeeded`).
async fn write_status(
    ctx: &Ctx,
    hpa: &HorizontalPodAutoscaler,
    original: &HorizontalPodAutoscalerStatus,
    status: HorizontalPodAutoscalerStatus,
) -> Result<()> {
    if &status == original {
        return Ok(());
    }
    let (ns, name) = (hpa.namespace().unwrap_or_default(), hpa.name_any());
    let mut desired = hpa.clone();
    desired.status = Some(status);
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), &ns);
    match api
        .replace_status(&name, &PostParams::default(), &desired)
        .await
    {
        Ok(_) => Ok(()),
        // Changed or gone meanwhile: the watch brings the newer object.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e).ctx(|| format!("updating status of horizontalpodautoscaler {ns}/{name}")),
    }
}
