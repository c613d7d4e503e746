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
mod metric;
mod normalize;
mod source;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ekube_api::events::{EventType, Recorder};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
    MetricStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;

use metric::{MetricError, replicas_for_metric, rules_of, tolerances_of};
use normalize::{Behavior, History};

use crate::{Context as _, Result};

/// The controller's settings (its kube-controller-manager flags).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `--horizontal-pod-autoscaler-sync-period`.
    pub sync_period: Duration,
    /// `--horizontal-pod-autoscaler-downscale-stabilization`.
    pub downscale_stabilization: Duration,
}

/// An autoscaler (`namespace/name`), an event reason and its message.
type EventKey = (String, String, String);

struct Ctx {
    client: kube::Client,
    recorder: Recorder,
    settings: Settings,
    store: Store<HorizontalPodAutoscaler>,
    /// Recommendations and scale events of each autoscaler (`namespace/name`).
    history: Mutex<HashMap<String, History>>,
    /// When each autoscaler was last synced, at which generation: a sync is due every
    /// `sync_period` or when the spec changes, not when the controller's own status write
    /// comes back through the watch.
    last_sync: Mutex<HashMap<String, (Option<i64>, std::time::Instant)>>,
    /// The Event written for each (autoscaler, reason, message) and how often it occurred:
    /// a repeat counts on it, as upstream's event correlator aggregates.
    events: Mutex<HashMap<EventKey, (String, i32)>>,
}

impl Ctx {
    async fn event(
        &self,
        hpa: &HorizontalPodAutoscaler,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let ns = hpa.namespace().unwrap_or_default();
        let key = (
            format!("{ns}/{}", hpa.name_any()),
            reason.to_string(),
            message.to_string(),
        );
        let seen = self.events.lock().expect("events lock").get(&key).cloned();
        if let Some((name, count)) = seen
            && self.recorder.repeat(&ns, &name, count + 1).await
        {
            self.events
                .lock()
                .expect("events lock")
                .insert(key, (name, count + 1));
            return;
        }
        let involved = ekube_api::events::reference(hpa);
        if let Some(name) = self
            .recorder
            .record_named(involved, kind, reason, message)
            .await
        {
            self.events
                .lock()
                .expect("events lock")
                .insert(key, (name, 1));
        }
    }
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
        last_sync: Mutex::new(HashMap::new()),
        events: Mutex::new(HashMap::new()),
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

/// The target's resource, by group and kind as upstream's REST mapper finds it (any served
/// version); it must have a `/scale`.
fn scale_target(api_version: &str, kind: &str) -> Result<&'static ekube_api::ResourceInfo, String> {
    let (group, _) = ekube_api::resources::split_api_version(api_version);
    let found = ekube_api::resources::RESOURCES
        .iter()
        .filter(|r| r.group == group && r.kind == kind)
        .max_by_key(|r| r.scale);
    match found {
        Some(r) if r.scale => Ok(r),
        Some(r) => Err(format!(
            "the server could not find the requested resource ({}.{} has no scale subresource)",
            r.plural, r.group
        )),
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
        let mut last_sync = ctx.last_sync.lock().expect("sync lock");
        last_sync.retain(|k, _| live.contains(k));
        let mut events = ctx.events.lock().expect("events lock");
        events.retain(|(k, _, _), _| live.contains(k));
    }
    if hpa.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    {
        let mut last_sync = ctx.last_sync.lock().expect("sync lock");
        let generation = hpa.metadata.generation;
        if let Some((synced, at)) = last_sync.get(&key)
            && *synced == generation
            && at.elapsed() < ctx.settings.sync_period
        {
            return Ok(Action::requeue(ctx.settings.sync_period - at.elapsed()));
        }
        last_sync.insert(key.clone(), (generation, std::time::Instant::now()));
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
            ctx.event(&hpa, EventType::Warning, "FailedGetScale", &e)
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
    // Only a metrics computation reports current metrics; the other branches clear them.
    let mut metric_statuses: Option<Vec<MetricStatus>> = None;
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
            ctx.event(&hpa, EventType::Warning, "SelectorRequired", msg)
                .await;
            set_condition(
                &mut conditions,
                "ScalingActive",
                false,
                "InvalidSelector",
                "the HPA target's scale is missing a selector",
            );
            ctx.event(
                &hpa,
                EventType::Warning,
                "FailedComputeMetricsReplicas",
                msg,
            )
            .await;
            status.current_metrics = None;
            return stop_unscaled(&ctx, &hpa, &original, status, current, conditions).await;
        }
        let tolerances = tolerances_of(spec.behavior.as_ref());
        let metrics = spec.metrics.clone().unwrap_or_default();
        let mut statuses = vec![MetricStatus::default(); metrics.len()];
        let (mut proposal, mut metric_name) = (0, String::new());
        let mut invalid: Vec<MetricError> = Vec::new();
        for (i, m) in metrics.iter().enumerate() {
            match replicas_for_metric(&ctx, &ns, m, current, &selector, tolerances, now).await {
                Ok((replicas, name, s, _)) => {
                    statuses[i] = s;
                    if proposal == 0 || replicas > proposal {
                        proposal = replicas;
                        metric_name = name;
                    }
                }
                Err(e) => {
                    ctx.event(&hpa, EventType::Warning, e.reason, &e.cause)
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
                    first.cause
                ),
            );
            let msg = format!(
                "invalid metrics ({} invalid out of {}), first error is: {}",
                invalid.len(),
                metrics.len(),
                first.error
            );
            ctx.event(
                &hpa,
                EventType::Warning,
                "FailedComputeMetricsReplicas",
                &msg,
            )
            .await;
            status.current_metrics = metric_statuses;
            return stop_unscaled(&ctx, &hpa, &original, status, current, conditions).await;
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
            ctx.event(
                &hpa,
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
            status.current_metrics = metric_statuses;
            return stop_unscaled(&ctx, &hpa, &original, status, current, conditions).await;
        }
        set_condition(
            &mut conditions,
            "AbleToScale",
            true,
            "SucceededRescale",
            &format!("the HPA controller was able to update the target scale to {desired}"),
        );
        ctx.event(
            &hpa,
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

/// Ends a sync that stopped before scaling (missing selector, no usable metric, a failed
/// rescale): the status records the replicas seen and the conditions that explain it, and
/// the autoscaler is synced again after the period.
async fn stop_unscaled(
    ctx: &Ctx,
    hpa: &HorizontalPodAutoscaler,
    original: &HorizontalPodAutoscalerStatus,
    mut status: HorizontalPodAutoscalerStatus,
    current: i32,
    conditions: Vec<HorizontalPodAutoscalerCondition>,
) -> Result<Action> {
    status.current_replicas = Some(current);
    status.conditions = Some(conditions);
    write_status(ctx, hpa, original, status).await?;
    Ok(Action::requeue(ctx.settings.sync_period))
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
