//! The scheduler's series, named, labelled and bucketed as upstream's
//! (`pkg/scheduler/metrics`): one attempt is one pod taken through filtering, scoring and
//! binding, with its result (`scheduled`, `unschedulable` when no node fits, `error` when the
//! binding failed); the pending pods are counted by queue at every pass.

use ekube_api::metrics::{CounterVec, GaugeVec, HistogramVec};

/// Upstream's `ExponentialBuckets(0.001, 2, 15)`.
const ATTEMPT_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384,
];

pub static SCHEDULE_ATTEMPTS: CounterVec = CounterVec::new(
    "scheduler_schedule_attempts_total",
    "[STABLE] Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.",
    &["profile", "result"],
);

pub static ATTEMPT_DURATION: HistogramVec = HistogramVec::new(
    "scheduler_scheduling_attempt_duration_seconds",
    "[STABLE] Scheduling attempt latency in seconds (scheduling algorithm + binding)",
    &["profile", "result"],
    ATTEMPT_BUCKETS,
);

pub static PENDING_PODS: GaugeVec = GaugeVec::new(
    "scheduler_pending_pods",
    "[STABLE] Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods that the scheduler attempted to schedule and failed; 'gated' is the number of unschedulable pods that the scheduler never attempted to schedule because they are gated.",
    &["queue"],
);

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Scheduled,
    Unschedulable,
    Error,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Scheduled => "scheduled",
            Outcome::Unschedulable => "unschedulable",
            Outcome::Error => "error",
        }
    }
}

/// Records one attempt of `profile` (the scheduler's name) that took `seconds`.
pub fn attempt(profile: &str, result: Outcome, seconds: f64) {
    let labels = [profile, result.label()];
    SCHEDULE_ATTEMPTS.inc(&labels);
    ATTEMPT_DURATION.observe(&labels, seconds);
}

/// The pending pods of this pass: tried now (`active`), and waiting out a back-off after
/// failing (`backoff`).
pub fn pending(active: usize, backoff: usize) {
    PENDING_PODS.set(&["active"], active as f64);
    PENDING_PODS.set(&["backoff"], backoff as f64);
}

/// The text exposition of every scheduler series.
pub fn render() -> String {
    let mut out = String::new();
    SCHEDULE_ATTEMPTS.render(&mut out);
    ATTEMPT_DURATION.render(&mut out);
    PENDING_PODS.render(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_counted_and_timed_by_profile_and_result() {
        attempt("metrics-test", Outcome::Scheduled, 0.003);
        attempt("metrics-test", Outcome::Unschedulable, 0.0005);
        pending(2, 1);
        let text = render();
        for line in [
            "scheduler_schedule_attempts_total{profile=\"metrics-test\",result=\"scheduled\"} 1",
            "scheduler_schedule_attempts_total{profile=\"metrics-test\",result=\"unschedulable\"} 1",
            "scheduler_scheduling_attempt_duration_seconds_bucket{profile=\"metrics-test\",result=\"scheduled\",le=\"0.002\"} 0",
            "scheduler_scheduling_attempt_duration_seconds_bucket{profile=\"metrics-test\",result=\"scheduled\",le=\"0.004\"} 1",
            "scheduler_scheduling_attempt_duration_seconds_bucket{profile=\"metrics-test\",result=\"scheduled\",le=\"16.384\"} 1",
            "scheduler_pending_pods{queue=\"active\"} 2",
            "scheduler_pending_pods{queue=\"backoff\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
