//! Metrics the kubelet measures as it works (the gauges of running pods and containers are
//! counted from the runtime when `/metrics` is scraped, see the kubelet API).
//!
//! `kubelet_pod_start_duration_seconds`: from the kubelet first seeing a pod to all of its
//! containers running, with upstream's buckets. `kubelet_runtime_operations_total` and
//! `kubelet_runtime_operations_duration_seconds`: every CRI call the kubelet makes, by
//! operation (`run_podsandbox`, `create_container`, `pull_image`, …), as upstream's
//! instrumented runtime service counts them; they split a pod's start into its CRI steps.
//! The two steps of a start that are not CRI calls have their own:
//! `kubelet_network_plugin_operations_duration_seconds` (the CNI chain run for a sandbox, as
//! upstream's kubelet named it while it ran CNI itself) and
//! `kubelet_pod_status_sync_duration_seconds` (a changed pod status until the apiserver has it).

use std::time::Duration;

use ekube_api::metrics::{CounterVec, HistogramVec};

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

/// Upstream's buckets of `kubelet_runtime_operations_duration_seconds` (5 ms, ×2.5, 14 of
/// them).
const RUNTIME_OPERATION_BUCKETS: &[f64] = &[
    0.005,
    0.0125,
    0.03125,
    0.078125,
    0.1953125,
    0.48828125,
    1.220703125,
    3.0517578125,
    7.62939453125,
    19.073486328125,
    47.6837158203125,
    119.20928955078125,
    298.0232238769531,
    745.0580596923828,
];

/// `kubelet_runtime_operations_total`.
pub static RUNTIME_OPERATIONS: CounterVec = CounterVec::new(
    "kubelet_runtime_operations_total",
    "[ALPHA] Cumulative number of runtime operations by operation type.",
    &["operation_type"],
);

/// `kubelet_runtime_operations_duration_seconds`.
pub static RUNTIME_OPERATION_DURATION: HistogramVec = HistogramVec::new(
    "kubelet_runtime_operations_duration_seconds",
    "[ALPHA] Duration in seconds of runtime operations. Broken down by operation type.",
    &["operation_type"],
    RUNTIME_OPERATION_BUCKETS,
);

/// Prometheus' default buckets, upstream's for `kubelet_network_plugin_operations_duration_seconds`.
const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `kubelet_network_plugin_operations_duration_seconds`, by `operation_type` (`set_up_pod`,
/// `tear_down_pod`).
pub static NETWORK_PLUGIN_DURATION: HistogramVec = HistogramVec::new(
    "kubelet_network_plugin_operations_duration_seconds",
    "[ALPHA] Latency in seconds of network plugin operations. Broken down by operation type.",
    &["operation_type"],
    DEFAULT_BUCKETS,
);

/// Upstream's buckets of `kubelet_pod_status_sync_duration_seconds`.
const STATUS_SYNC_BUCKETS: &[f64] = &[
    0.010, 0.050, 0.100, 0.500, 1.0, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0,
];

/// `kubelet_pod_status_sync_duration_seconds`.
pub static POD_STATUS_SYNC_DURATION: HistogramVec = HistogramVec::new(
    "kubelet_pod_status_sync_duration_seconds",
    "[ALPHA] Duration in seconds to sync a pod status update. Measures time from detection of a change to pod status until the API is successfully updated for that pod, even if multiple intevening changes to pod status occur.",
    &[],
    STATUS_SYNC_BUCKETS,
);

/// What the network plugin was asked to do for a sandbox.
#[derive(Debug, Clone, Copy)]
pub enum NetworkOperation {
    SetUp,
    TearDown,
}

/// Records one run of the CNI chain.
pub fn network_operation(operation: NetworkOperation, took: Duration) {
    let label = match operation {
        NetworkOperation::SetUp => "set_up_pod",
        NetworkOperation::TearDown => "tear_down_pod",
    };
    NETWORK_PLUGIN_DURATION.observe(&[label], took.as_secs_f64());
}

/// Records one pod status written, `took` from seeing it changed.
pub fn pod_status_synced(took: Duration) {
    POD_STATUS_SYNC_DURATION.observe(&[], took.as_secs_f64());
}

/// Records one CRI call, named by its gRPC path (`/runtime.v1.RuntimeService/RunPodSandbox`).
pub fn runtime_operation(path: &str, took: Duration) {
    let operation = operation_type(path);
    RUNTIME_OPERATIONS.inc(&[&operation]);
    RUNTIME_OPERATION_DURATION.observe(&[&operation], took.as_secs_f64());
}

/// Upstream's operation label of a CRI method: its name in snake case, with "pod sandbox" as
/// one word (`RunPodSandbox` → `run_podsandbox`, `ImageFsInfo` → `image_fs_info`).
fn operation_type(path: &str) -> String {
    let method = path.rsplit('/').next().unwrap_or(path);
    let mut out = String::with_capacity(method.len() + 4);
    for (i, c) in method.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out.replace("pod_sandbox", "podsandbox")
}

/// Records one pod's start-up time.
pub fn pod_started(took: Duration) {
    POD_START_DURATION.observe(&[], took.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_named_as_upstream_names_them() {
        for (path, operation) in [
            ("/runtime.v1.RuntimeService/RunPodSandbox", "run_podsandbox"),
            (
                "/runtime.v1.RuntimeService/PodSandboxStatus",
                "podsandbox_status",
            ),
            (
                "/runtime.v1.RuntimeService/ListPodSandbox",
                "list_podsandbox",
            ),
            (
                "/runtime.v1.RuntimeService/CreateContainer",
                "create_container",
            ),
            ("/runtime.v1.RuntimeService/ExecSync", "exec_sync"),
            ("/runtime.v1.ImageService/PullImage", "pull_image"),
            ("/runtime.v1.ImageService/ImageFsInfo", "image_fs_info"),
        ] {
            assert_eq!(operation_type(path), operation);
        }
    }

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
