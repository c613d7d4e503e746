//! Prometheus metrics, named after ingress-nginx's (`nginx_ingress_controller_requests`,
//! `…_request_duration_seconds`) under the `ekube_ingress_` prefix, and the readiness flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ekube_api::metrics::{CounterVec, HistogramVec};

/// Upper bounds (seconds) of the request duration buckets (Prometheus' defaults).
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The labels of one request: the Ingress's namespace and name, the upstream and the status.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Labels {
    pub namespace: String,
    pub ingress: String,
    pub upstream: String,
    pub status: u16,
}

pub struct Metrics {
    requests: CounterVec,
    durations: HistogramVec,
    reloads: CounterVec,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: CounterVec::new(
                "ekube_ingress_requests_total",
                "Requests answered, by Ingress, upstream and status.",
                &["namespace", "ingress", "upstream", "status"],
            ),
            durations: HistogramVec::new(
                "ekube_ingress_request_duration_seconds",
                "Time from the request's head to the response's head.",
                &[],
                BUCKETS,
            ),
            reloads: CounterVec::new(
                "ekube_ingress_config_reloads_total",
                "Routing tables built from the API's objects.",
                &[],
            ),
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    pub fn observe(&self, labels: Labels, took: Duration) {
        let status = labels.status.to_string();
        self.requests.inc(&[
            &labels.namespace,
            &labels.ingress,
            &labels.upstream,
            &status,
        ]);
        self.durations.observe(&[], took.as_secs_f64());
    }

    /// Counts a new routing table.
    pub fn reloaded(&self) {
        self.reloads.inc(&[]);
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.requests.render(&mut out);
        self.durations.render(&mut out);
        self.reloads.render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_label_and_bucketed() {
        let m = Metrics::default();
        let labels = Labels {
            namespace: "default".into(),
            ingress: "web".into(),
            upstream: "default-web-80".into(),
            status: 200,
        };
        m.observe(labels.clone(), Duration::from_millis(3));
        m.observe(labels, Duration::from_millis(30));
        m.reloaded();
        let text = m.render();
        assert!(text.contains("ekube_ingress_requests_total{namespace=\"default\",ingress=\"web\",upstream=\"default-web-80\",status=\"200\"} 2"), "{text}");
        assert!(text.contains("ekube_ingress_request_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("ekube_ingress_request_duration_seconds_bucket{le=\"0.05\"} 2"));
        assert!(text.contains("ekube_ingress_config_reloads_total 1"));
    }
}
