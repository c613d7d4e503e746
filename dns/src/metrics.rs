//! The server's Prometheus metrics, named as CoreDNS's (`coredns_dns_requests_total`,
//! `coredns_dns_responses_total`, `coredns_dns_request_duration_seconds`,
//! `coredns_cache_hits_total`/`coredns_cache_misses_total`), and its readiness.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ekube_api::metrics::{CounterVec, HistogramVec};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// Upper bounds (seconds) of the request duration buckets (CoreDNS's).
const BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
    2.048, 4.096, 8.192,
];

/// The `server` and `zone` labels of every series: one server block for the root zone.
const SERVER: &str = "dns://:53";
const ZONE: &str = ".";

/// The transport a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Udp,
    Tcp,
}

impl Protocol {
    fn label(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        }
    }
}

/// Counters shared by the server tasks and the metrics endpoint.
pub struct Metrics {
    requests: CounterVec,
    responses: CounterVec,
    durations: HistogramVec,
    cache_hits: CounterVec,
    cache_misses: CounterVec,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Self {
            requests: CounterVec::new(
                "coredns_dns_requests_total",
                "Counter of DNS requests made per zone, protocol and family.",
                &["server", "zone", "proto", "type"],
            ),
            responses: CounterVec::new(
                "coredns_dns_responses_total",
                "Counter of response status codes.",
                &["server", "zone", "rcode"],
            ),
            durations: HistogramVec::new(
                "coredns_dns_request_duration_seconds",
                "Histogram of the time (in seconds) each request took.",
                &["server", "zone"],
                BUCKETS,
            ),
            cache_hits: CounterVec::new(
                "coredns_cache_hits_total",
                "The count of cache hits.",
                &["server"],
            ),
            cache_misses: CounterVec::new(
                "coredns_cache_misses_total",
                "The count of cache misses.",
                &["server"],
            ),
            ready: AtomicBool::new(false),
        };
        // The histogram and cache counters render from the start, as CoreDNS registers them.
        metrics.durations.ensure(&[SERVER, ZONE]);
        metrics.cache_hits.ensure(&[SERVER]);
        metrics.cache_misses.ensure(&[SERVER]);
        metrics
    }
}

impl Metrics {
    /// Counts one answered query.
    pub fn observe(
        &self,
        protocol: Protocol,
        qtype: Option<RecordType>,
        code: ResponseCode,
        took: Duration,
    ) {
        let qtype = qtype.map_or_else(|| "other".to_owned(), |t| t.to_string());
        self.requests.inc(&[SERVER, ZONE, protocol.label(), &qtype]);
        self.responses.inc(&[SERVER, ZONE, &rcode_name(code)]);
        self.durations.observe(&[SERVER, ZONE], took.as_secs_f64());
    }

    /// Counts one forwarded query, answered from the cache or not.
    pub fn forwarded(&self, cached: bool) {
        let counter = if cached {
            &self.cache_hits
        } else {
            &self.cache_misses
        };
        counter.inc(&[SERVER]);
    }

    /// Marks the server ready (its caches synced).
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
        self.responses.render(&mut out);
        self.durations.render(&mut out);
        self.cache_hits.render(&mut out);
        self.cache_misses.render(&mut out);
        out
    }
}

/// A response code as CoreDNS labels it (`NOERROR`, `NXDOMAIN`, …; others by number).
fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => u16::from(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_cumulatively() {
        let m = Metrics::default();
        m.observe(
            Protocol::Udp,
            Some(RecordType::A),
            ResponseCode::NoError,
            Duration::from_micros(100),
        );
        m.observe(
            Protocol::Udp,
            Some(RecordType::A),
            ResponseCode::NXDomain,
            Duration::from_millis(3),
        );
        m.observe(
            Protocol::Tcp,
            None,
            ResponseCode::FormErr,
            Duration::from_secs(20),
        );
        m.forwarded(true);
        let text = m.render();
        assert!(text.contains("proto=\"udp\",type=\"A\"} 2"), "{text}");
        assert!(text.contains("proto=\"tcp\",type=\"other\"} 1"), "{text}");
        assert!(text.contains("rcode=\"NXDOMAIN\"} 1"), "{text}");
        assert!(text.contains("le=\"0.00025\"} 1\n"), "{text}");
        assert!(text.contains("le=\"0.004\"} 2\n"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 3\n"), "{text}");
        assert!(
            text.contains("coredns_cache_hits_total{server=\"dns://:53\"} 1"),
            "{text}"
        );
    }
}
