//! Prometheus metrics, named after ingress-nginx's (`nginx_ingress_controller_requests`,
//! `…_request_duration_seconds`) under the `ekube_ingress_` prefix, and the readiness flag.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the request duration buckets (Prometheus' defaults).
const BUCKETS: [f64; 11] = [
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

#[derive(Default)]
struct Counts {
    requests: BTreeMap<Labels, u64>,
    /// Observations per bucket (not cumulative), their count and sum.
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    counts: Mutex<Counts>,
    reloads: AtomicU64,
    ready: AtomicBool,
}

impl Metrics {
    pub fn observe(&self, labels: Labels, took: Duration) {
        let seconds = took.as_secs_f64();
        let mut c = self.counts.lock().expect("ingress metrics");
        *c.requests.entry(labels).or_default() += 1;
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            c.buckets[i] += 1;
        }
        c.count += 1;
        c.sum += seconds;
    }

    /// Counts a new routing table.
    pub fn reloaded(&self) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let c = self.counts.lock().expect("ingress metrics");
        let mut out = String::from(
            "# HELP ekube_ingress_requests_total Requests answered, by Ingress, upstream and status.\n# TYPE ekube_ingress_requests_total counter\n",
        );
        for (l, n) in &c.requests {
            let _ = writeln!(
                out,
                "ekube_ingress_requests_total{{namespace=\"{}\",ingress=\"{}\",upstream=\"{}\",status=\"{}\"}} {n}",
                l.namespace, l.ingress, l.upstream, l.status
            );
        }
        out.push_str("# HELP ekube_ingress_request_duration_seconds Time from the request's head to the response's head.\n# TYPE ekube_ingress_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(c.buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "ekube_ingress_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "ekube_ingress_request_duration_seconds_bucket{{le=\"+Inf\"}} {}\n\
             ekube_ingress_request_duration_seconds_sum {}\n\
             ekube_ingress_request_duration_seconds_count {}\n\
             # HELP ekube_ingress_config_reloads_total Routing tables built from the API's objects.\n\
             # TYPE ekube_ingress_config_reloads_total counter\n\
             ekube_ingress_config_reloads_total {}",
            c.count,
            c.sum,
            c.count,
            self.reloads.load(Ordering::Relaxed)
        );
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
