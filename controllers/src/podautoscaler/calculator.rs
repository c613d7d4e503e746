//! The replica calculator (upstream's `replica_calculator.go`): from the pods a target selects
//! and their resource metrics, the replica count that brings the metric to its target.
//!
//! `desired = ceil(ready pods × usage / target)`, unless the ratio is within the tolerance
//! (±10 %). Pods that are pending, or (for CPU) not ready yet within their initialization
//! period, are left out; pods without metrics are left out too, and then the ratio is
//! recomputed with them counted at 100 % of their request (or the target when it is higher)
//! when scaling down and at 0 % when scaling up, and unready pods at 0 % when scaling up, so
//! that pods the controller cannot see never push the scale further in the direction it was
//! going. Metrics come through [`MetricsSource`], so all of this is tested without a cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

/// Upstream's default tolerance (`--horizontal-pod-autoscaler-tolerance`): no scaling while
/// `|1 - usage/target| <= 0.1`.
pub const TOLERANCE: f64 = 0.1;

/// How far below and above 1 the usage ratio may be without a change: the default, or each
/// direction's `behavior.scaleDown.tolerance` / `behavior.scaleUp.tolerance`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    pub down: f64,
    pub up: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self {
            down: TOLERANCE,
            up: TOLERANCE,
        }
    }
}

impl Tolerances {
    fn within(&self, ratio: f64) -> bool {
        1.0 - self.down <= ratio && ratio <= 1.0 + self.up
    }
}
/// `--horizontal-pod-autoscaler-cpu-initialization-period`.
pub const CPU_INITIALIZATION_PERIOD: Duration = Duration::from_secs(300);
/// `--horizontal-pod-autoscaler-initial-readiness-delay`.
pub const INITIAL_READINESS_DELAY: Duration = Duration::from_secs(30);

/// One pod's usage of a resource, in milli-units, and when and over what window it was
/// measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodMetric {
    pub value: i64,
    pub timestamp: Timestamp,
    pub window: Duration,
}

/// Usage by pod name.
pub type PodMetrics = BTreeMap<String, PodMetric>;

/// What the calculator needs to know about a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    pub name: String,
    pub phase: String,
    pub deleting: bool,
    pub start_time: Option<Timestamp>,
    /// The Ready condition: whether it is `True`, and when it last changed.
    pub ready: Option<(bool, Timestamp)>,
    /// Each container's request of the resource in question, in milli-units (`None`: no
    /// request), by container name.
    pub requests: Vec<(String, Option<i64>)>,
}

/// Where pods and their metrics come from: the API in the controller, fixed data in tests.
pub trait MetricsSource {
    /// The pods of `namespace` that `selector` selects.
    async fn pods(&self, namespace: &str, selector: &str) -> Result<Vec<PodInfo>, String>;
    /// The usage of `resource` (summed over the pod's containers, or only `container`'s) of
    /// each selected pod that reports it.
    async fn resource_metrics(
        &self,
        namespace: &str,
        selector: &str,
        resource: &str,
        container: Option<&str>,
    ) -> Result<PodMetrics, String>;
}

/// A resource metric's target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Percent of the pods' requests.
    Utilization(i32),
    /// Milli-units per pod.
    AverageValue(i64),
}

/// What a resource metric proposes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proposal {
    pub replicas: i32,
    /// Utilization in percent of the requests (for a utilization target).
    pub utilization: Option<i32>,
    /// Average usage per pod, in milli-units.
    pub raw: i64,
    pub timestamp: Timestamp,
}

/// The replicas for a resource metric of the pods `selector` selects (upstream's
/// `GetResourceReplicas` and `GetRawResourceReplicas`).
#[expect(
    clippy::too_many_arguments,
    reason = "the inputs of upstream's calculation, each plain data"
)]
pub async fn resource_replicas<M: MetricsSource>(
    source: &M,
    namespace: &str,
    selector: &str,
    resource: &str,
    container: Option<&str>,
    current: i32,
    target: Target,
    tolerances: Tolerances,
    now: Timestamp,
) -> Result<Proposal, String> {
    let metrics = source
        .resource_metrics(namespace, selector, resource, container)
        .await
        .map_err(|e| format!("unable to get metrics for resource {resource}: {e}"))?;
    let pods = source.pods(namespace, selector).await?;
    calculate(
        &pods, metrics, resource, container, current, target, tolerances, now,
    )
}

/// The calculation itself, on fetched pods and metrics.
#[expect(
    clippy::too_many_arguments,
    reason = "the inputs of upstream's calculation, each plain data"
)]
pub fn calculate(
    pods: &[PodInfo],
    mut metrics: PodMetrics,
    resource: &str,
    container: Option<&str>,
    current: i32,
    target: Target,
    tolerances: Tolerances,
    now: Timestamp,
) -> Result<Proposal, String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let timestamp = metrics.values().map(|m| m.timestamp).next().unwrap_or(now);
    let groups = group_pods(pods, &metrics, resource, now);
    for name in groups.ignored.iter().chain(&groups.unready) {
        metrics.remove(name);
    }
    if metrics.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let requests = match target {
        Target::Utilization(_) => Some(pod_requests(pods, container, resource)?),
        Target::AverageValue(_) => None,
    };
    let ratio_of = |metrics: &PodMetrics| -> Result<(f64, Option<i32>, i64), String> {
        match (target, &requests) {
            (Target::Utilization(goal), Some(requests)) => {
                utilization_ratio(metrics, requests, goal).map(|(r, u, raw)| (r, Some(u), raw))
            }
            (Target::AverageValue(goal), _) => {
                let total: i64 = metrics.values().map(|m| m.value).sum();
                let usage = total / metrics.len() as i64;
                Ok((usage as f64 / goal as f64, None, usage))
            }
            (Target::Utilization(_), None) => unreachable!("requests are read for utilization"),
        }
    };
    let (ratio, utilization, raw) = ratio_of(&metrics)?;
    let proposal = |replicas| Proposal {
        replicas,
        utilization,
        raw,
        timestamp,
    };
    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if tolerances.within(ratio) {
            return Ok(proposal(current));
        }
        return Ok(proposal((ratio * groups.ready as f64).ceil() as i32));
    }
    if !groups.missing.is_empty() {
        for name in &groups.missing {
            let value = if ratio < 1.0 {
                // On a scale-down a pod without metrics counts as using all it asked for (or
                // the target when that is higher); on a scale-up as using nothing.
                match (target, &requests) {
                    (Target::Utilization(goal), Some(requests)) => {
                        requests.get(name).copied().unwrap_or(0) * i64::from(goal.max(100)) / 100
                    }
                    (Target::AverageValue(goal), _) => goal,
                    _ => 0,
                }
            } else {
                0
            };
            metrics.insert(
                name.clone(),
                PodMetric {
                    value,
                    timestamp,
                    window: Duration::ZERO,
                },
            );
        }
    }
    if scale_up_with_unready {
        for name in &groups.unready {
            metrics.insert(
                name.clone(),
                PodMetric {
                    value: 0,
                    timestamp,
                    window: Duration::ZERO,
                },
            );
        }
    }
    let (new_ratio, _, _) = ratio_of(&metrics)?;
    // No change when it is too small, or when the pods added back would flip the direction.
    if tolerances.within(new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(proposal(current));
    }
    let replicas = (new_ratio * metrics.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(proposal(current));
    }
    Ok(proposal(replicas))
}

#[derive(Debug, Default)]
struct Groups {
    ready: usize,
    unready: BTreeSet<String>,
    missing: BTreeSet<String>,
    ignored: BTreeSet<String>,
}

/// Upstream's `groupPods`.
fn group_pods(pods: &[PodInfo], metrics: &PodMetrics, resource: &str, now: Timestamp) -> Groups {
    let mut g = Groups::default();
    for pod in pods {
        if pod.deleting || pod.phase == "Failed" {
            g.ignored.insert(pod.name.clone());
            continue;
        }
        if pod.phase == "Pending" {
            g.unready.insert(pod.name.clone());
            continue;
        }
        let Some(metric) = metrics.get(&pod.name) else {
            g.missing.insert(pod.name.clone());
            continue;
        };
        if resource == "cpu" {
            let unready = match (pod.ready, pod.start_time) {
                (Some((ready, changed)), Some(started)) => {
                    if started + CPU_INITIALIZATION_PERIOD > now {
                        // Still initializing: unready, or no full metric window since it
                        // became ready.
                        !ready || metric.timestamp < changed + metric.window
                    } else {
                        // Unready and never ready since it started.
                        !ready && started + INITIAL_READINESS_DELAY > changed
                    }
                }
                _ => true,
            };
            if unready {
                g.unready.insert(pod.name.clone());
                continue;
            }
        }
        g.ready += 1;
    }
    g
}

/// Each pod's request of `resource` (summed over its containers, or `container`'s).
fn pod_requests(
    pods: &[PodInfo],
    container: Option<&str>,
    resource: &str,
) -> Result<BTreeMap<String, i64>, String> {
    let mut out = BTreeMap::new();
    for pod in pods {
        let mut sum = 0;
        for (name, request) in &pod.requests {
            if container.is_some_and(|c| c != name) {
                continue;
            }
            match request {
                Some(r) => sum += r,
                None => {
                    return Err(format!(
                        "missing request for {resource} in container {name} of Pod {}",
                        pod.name
                    ));
                }
            }
        }
        out.insert(pod.name.clone(), sum);
    }
    Ok(out)
}

/// Upstream's `GetResourceUtilizationRatio`: (usage / target, utilization in percent, average
/// usage per pod).
fn utilization_ratio(
    metrics: &PodMetrics,
    requests: &BTreeMap<String, i64>,
    target: i32,
) -> Result<(f64, i32, i64), String> {
    let (mut usage, mut requested, mut n) = (0i64, 0i64, 0i64);
    for (name, m) in metrics {
        // Metrics of pods without a known request are extraneous.
        let Some(r) = requests.get(name) else {
            continue;
        };
        usage += m.value;
        requested += r;
        n += 1;
    }
    if requested == 0 {
        return Err("no metrics returned matched known pods".into());
    }
    let utilization = (usage * 100 / requested) as i32;
    Ok((
        f64::from(utilization) / f64::from(target),
        utilization,
        usage / n,
    ))
}

#[cfg(test)]
mod tests;
