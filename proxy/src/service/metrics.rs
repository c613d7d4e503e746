//! The proxy's metrics and health, shared between the sync loop (which writes them) and the
//! HTTP endpoints (which render them).
//!
//! `/metrics` is the Prometheus text format (version 0.0.4); `/healthz` answers like
//! kube-proxy's: a JSON body with `lastUpdated` and `currentTime`, status 200 while the proxy has
//! completed its initial sync and a full sync within the last two sync periods, 503 otherwise.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use ekube_api::metrics::{HistogramVec, write_header, write_sample};
use k8s_openapi::jiff::Timestamp;

use super::sync::SyncTotals;
use crate::datapath::Counter;

/// Upper bounds (seconds) of the sync-duration histogram buckets.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
];

/// Which kind of sync an observation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncKind {
    /// One Service after a watch event.
    Service,
    /// Every Service plus the prune (and its commit).
    Full,
    /// Applying staged per-Service changes to a batch datapath (iptables-restore).
    Commit,
}

impl SyncKind {
    const ALL: [SyncKind; 3] = [SyncKind::Service, SyncKind::Full, SyncKind::Commit];

    fn label(self) -> &'static str {
        match self {
            SyncKind::Service => "service",
            SyncKind::Full => "full",
            SyncKind::Commit => "commit",
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    totals: SyncTotals,
    pruned: u64,
    map_writes: u64,
    events_emitted: u64,
    counters: Vec<(Counter, u64)>,
    /// Wall-clock time of the last completed sync of any kind.
    last_updated: Option<Timestamp>,
    /// Monotonic time of the last completed full sync (the initial one included).
    last_full_sync: Option<Instant>,
}

/// Metrics and health state of one proxy.
pub struct Metrics {
    inner: Mutex<Inner>,
    /// `ekube_proxy_sync_duration_seconds{kind}`.
    syncs: HistogramVec,
    /// Health turns bad when no full sync completed for twice this long.
    sync_period: Duration,
}

impl Metrics {
    pub fn new(sync_period: Duration) -> Self {
        let syncs = HistogramVec::new(
            "ekube_proxy_sync_duration_seconds",
            "Time to apply one sync.",
            &["kind"],
            BUCKETS,
        );
        for kind in SyncKind::ALL {
            syncs.ensure(&[kind.label()]);
        }
        Self {
            inner: Mutex::new(Inner::default()),
            syncs,
            sync_period,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a completed sync and the datapath's state after it.
    pub fn observe_sync(
        &self,
        kind: SyncKind,
        took: Duration,
        totals: SyncTotals,
        map_writes: u64,
    ) {
        let mut inner = self.lock();
        self.syncs.observe(&[kind.label()], took.as_secs_f64());
        if kind == SyncKind::Full {
            inner.last_full_sync = Some(Instant::now());
        }
        inner.totals = totals;
        inner.map_writes = map_writes;
        inner.last_updated = Some(Timestamp::now());
    }

    pub fn add_pruned(&self, n: usize) {
        self.lock().pruned += n as u64;
    }

    pub fn add_event(&self) {
        self.lock().events_emitted += 1;
    }

    pub fn set_counters(&self, counters: Vec<(Counter, u64)>, map_writes: u64) {
        let mut inner = self.lock();
        inner.counters = counters;
        inner.map_writes = map_writes;
    }

    /// `(healthy, body)` for `/healthz`.
    pub fn health(&self) -> (bool, String) {
        let inner = self.lock();
        let healthy = inner
            .last_full_sync
            .is_some_and(|t| t.elapsed() <= 2 * self.sync_period);
        let last = inner
            .last_updated
            .map_or_else(|| "0001-01-01T00:00:00Z".to_string(), |t| t.to_string());
        let body = serde_json::json!({
            "lastUpdated": last,
            "currentTime": Timestamp::now().to_string(),
            "nodeEligible": true,
        });
        (healthy, body.to_string())
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, String)]| {
            write_header(&mut out, name, help, kind);
            for (counter, value) in samples {
                let labels: &[(&str, &str)] = if counter.is_empty() {
                    &[]
                } else {
                    &[("counter", counter)]
                };
                write_sample(&mut out, name, labels, value);
            }
        };
        let plain = |v: u64| vec![("", v.to_string())];
        let t = inner.totals;
        metric(
            "ekube_proxy_services",
            "gauge",
            "Services with programmed frontends.",
            &plain(t.services as u64),
        );
        metric(
            "ekube_proxy_frontends",
            "gauge",
            "Programmed frontends (ClusterIP and NodePort ports).",
            &plain(t.frontends as u64),
        );
        metric(
            "ekube_proxy_backends",
            "gauge",
            "Backends summed over programmed frontends.",
            &plain(t.backends as u64),
        );
        metric(
            "ekube_proxy_sync_failures_total",
            "counter",
            "Service syncs that left a Service unprogrammed (see the Service's events).",
            &plain(t.failures),
        );
        metric(
            "ekube_proxy_map_full_errors_total",
            "counter",
            "Datapath writes refused because a map was full.",
            &plain(t.map_full_errors),
        );
        metric(
            "ekube_proxy_map_writes_total",
            "counter",
            "eBPF map updates and deletes issued by this proxy process.",
            &plain(inner.map_writes),
        );
        metric(
            "ekube_proxy_pruned_total",
            "counter",
            "Frontends removed because no Service owned them.",
            &plain(inner.pruned),
        );
        metric(
            "ekube_proxy_events_total",
            "counter",
            "Kubernetes Events emitted.",
            &plain(inner.events_emitted),
        );
        metric(
            "ekube_proxy_datapath_events_total",
            "counter",
            "eBPF datapath counters, summed over CPUs.",
            &inner
                .counters
                .iter()
                .map(|(c, n)| (c.name(), n.to_string()))
                .collect::<Vec<_>>(),
        );
        let last = inner
            .last_updated
            .map_or(0.0, |t| t.as_millisecond() as f64 / 1000.0);
        metric(
            "ekube_proxy_last_sync_timestamp_seconds",
            "gauge",
            "Unix time of the last completed sync.",
            &[("", last.to_string())],
        );
        write_header(
            &mut out,
            "ekube_proxy_syncs_total",
            "Completed syncs by kind.",
            "counter",
        );
        for kind in SyncKind::ALL {
            let label = kind.label();
            let n = self.syncs.count(&[label]);
            write_sample(&mut out, "ekube_proxy_syncs_total", &[("kind", label)], n);
        }
        self.syncs.render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_histogram_and_counters() {
        let m = Metrics::new(Duration::from_secs(30));
        assert!(!m.health().0, "unhealthy before the first full sync");
        let totals = SyncTotals {
            services: 2,
            frontends: 3,
            backends: 5,
            ..Default::default()
        };
        m.observe_sync(SyncKind::Full, Duration::from_millis(3), totals, 17);
        m.observe_sync(SyncKind::Service, Duration::from_micros(50), totals, 19);
        m.set_counters(vec![(Counter::Connect4Translated, 300)], 19);
        let text = m.render();
        for line in [
            "ekube_proxy_services 2",
            "ekube_proxy_backends 5",
            "ekube_proxy_map_writes_total 19",
            "ekube_proxy_syncs_total{kind=\"full\"} 1",
            "ekube_proxy_sync_duration_seconds_bucket{kind=\"service\",le=\"0.0001\"} 1",
            "ekube_proxy_sync_duration_seconds_bucket{kind=\"full\",le=\"0.0025\"} 0",
            "ekube_proxy_sync_duration_seconds_bucket{kind=\"full\",le=\"0.005\"} 1",
            "ekube_proxy_sync_duration_seconds_count{kind=\"full\"} 1",
            "ekube_proxy_datapath_events_total{counter=\"connect4_translated\"} 300",
            "# TYPE ekube_proxy_sync_duration_seconds histogram",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        let (healthy, body) = m.health();
        assert!(healthy);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(body["lastUpdated"].as_str().unwrap().ends_with('Z'));
        assert!(body["currentTime"].is_string());
    }
}
