//! Metrics the kubelet measures as it works (the gauges of running pods and containers are
//! counted from the runtime when `/metrics` is scraped, see the kubelet API).
//!
//! `kubelet_pod_start_duration_seconds`: from the kubelet first seeing a pod to all of its
//! containers running, with upstream's buckets.

use std::time::Duration;

use ekube_api::metrics::HistogramVec;

/// Upstream's buckets of `kubelet_pod_start_duration_seconds`.
const POD_START_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0,
    300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];

/// `kubelet_pod_start_duration_seconds`.
pub static POD_START_DURATION: HistogramVec = pod_start_duration();

/// The family [`POD_START_DURATION`] is (a function, so a test can have one of its own).
const fn pod_start_duration() -> HistogramVec {
    HistogramVec::new(
        "kubelet_pod_start_duration_seconds",
        "[ALPHA] Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
        &[],
        POD_START_BUCKETS,
    )
}

/// Records one pod's start-up time.
pub fn pod_started(took: Duration) {
    POD_START_DURATION.observe(&[], took.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_start_duration_uses_upstreams_buckets() {
        // A family of its own: the process-wide one counts every pod the tests start.
        let family = pod_start_duration();
        family.observe(&[], Duration::from_millis(1500).as_secs_f64());
        let mut out = String::new();
        family.render(&mut out);
        assert!(out.starts_with(
            "# HELP kubelet_pod_start_duration_seconds [ALPHA] Duration in seconds from kubelet \
             seeing a pod for the first time to the pod starting to run\n\
             # TYPE kubelet_pod_start_duration_seconds histogram\n\
             kubelet_pod_start_duration_seconds_bucket{le=\"0.5\"} 0\n\
             kubelet_pod_start_duration_seconds_bucket{le=\"1\"} 0\n\
             kubelet_pod_start_duration_seconds_bucket{le=\"2\"} 1\n"
        ), "{out}");
        assert!(out.contains("kubelet_pod_start_duration_seconds_bucket{le=\"3600\"} 1\n"));
    }
}
