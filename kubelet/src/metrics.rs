//! Metrics the kubelet measures as it works (the gauges of running pods and containers are
//! counted from the runtime when `/metrics` is scraped, see the kubelet API).
//!
//! `kubelet_pod_start_duration_seconds`: from the kubelet first seeing a pod to all of its
//! containers running, with upstream's buckets.

use std::sync::Mutex;
use std::time::Duration;

/// Upstream's buckets of `kubelet_pod_start_duration_seconds`.
const POD_START_BUCKETS: [f64; 25] = [
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0,
    300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];

/// A cumulative histogram with fixed buckets.
pub struct Histogram<const N: usize> {
    bounds: [f64; N],
    state: Mutex<HistogramState<N>>,
}

struct HistogramState<const N: usize> {
    /// Observations at or below each bound (not cumulative; summed when rendered).
    counts: [u64; N],
    sum: f64,
    count: u64,
}

impl<const N: usize> Histogram<N> {
    pub const fn new(bounds: [f64; N]) -> Self {
        Self {
            bounds,
            state: Mutex::new(HistogramState {
                counts: [0; N],
                sum: 0.0,
                count: 0,
            }),
        }
    }

    pub fn observe(&self, value: f64) {
        let mut s = self.state.lock().expect("histogram lock");
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            s.counts[i] += 1;
        }
        s.sum += value;
        s.count += 1;
    }

    /// The histogram in the Prometheus text format under `name`.
    pub fn render(&self, name: &str, help: &str) -> String {
        let s = self.state.lock().expect("histogram lock");
        let mut out = format!("# HELP {name} {help}\n# TYPE {name} histogram\n");
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(s.counts) {
            cumulative += n;
            out.push_str(&format!("{name}_bucket{{le=\"{bound}\"}} {cumulative}\n"));
        }
        out.push_str(&format!("{name}_bucket{{le=\"+Inf\"}} {}\n", s.count));
        out.push_str(&format!("{name}_sum {}\n{name}_count {}\n", s.sum, s.count));
        out
    }
}

/// `kubelet_pod_start_duration_seconds`.
pub static POD_START_DURATION: Histogram<25> = Histogram::new(POD_START_BUCKETS);

/// Records one pod's start-up time.
pub fn pod_started(took: Duration) {
    POD_START_DURATION.observe(took.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_renders_cumulative_buckets() {
        let h = Histogram::new([1.0, 2.5]);
        h.observe(0.5);
        h.observe(2.0);
        h.observe(9.0);
        assert_eq!(
            h.render("x_seconds", "X."),
            "# HELP x_seconds X.\n# TYPE x_seconds histogram\n\
             x_seconds_bucket{le=\"1\"} 1\nx_seconds_bucket{le=\"2.5\"} 2\n\
             x_seconds_bucket{le=\"+Inf\"} 3\nx_seconds_sum 11.5\nx_seconds_count 3\n"
        );
    }
}
