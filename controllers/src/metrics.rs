//! The controller-manager's series: how long each controller's reconciles take, as upstream's
//! work queues report the time to process one item (`workqueue_work_duration_seconds{name}`,
//! with its buckets), for the controllers that run on the shared loop ([`crate::runner`]).

use std::time::Duration;

use ekube_api::metrics::HistogramVec;

/// Upstream's `ExponentialBuckets(10e-9, 10, 10)`.
const WORK_BUCKETS: &[f64] = &[1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0];

pub static WORK_DURATION: HistogramVec = HistogramVec::new(
    "workqueue_work_duration_seconds",
    "[ALPHA] How long in seconds processing an item from workqueue takes.",
    &["name"],
    WORK_BUCKETS,
);

/// Records one reconcile of controller `name`.
pub fn worked(name: &str, took: Duration) {
    WORK_DURATION.observe(&[name], took.as_secs_f64());
}

/// The text exposition of every controller-manager series.
pub fn render() -> String {
    let mut out = String::new();
    WORK_DURATION.render(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_are_timed_per_controller() {
        worked("metrics-test", Duration::from_millis(5));
        let text = render();
        for line in [
            "workqueue_work_duration_seconds_bucket{name=\"metrics-test\",le=\"0.001\"} 0",
            "workqueue_work_duration_seconds_bucket{name=\"metrics-test\",le=\"0.01\"} 1",
            "workqueue_work_duration_seconds_count{name=\"metrics-test\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
