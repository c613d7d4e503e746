//! The server's Prometheus metrics, named as CoreDNS's (`coredns_dns_requests_total`,
//! `coredns_dns_responses_total`, `coredns_dns_request_duration_seconds`,
//! `coredns_cache_hits_total`/`coredns_cache_misses_total`), and its readiness.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// Upper bounds (seconds) of the request duration buckets (CoreDNS's).
const BUCKETS: [f64; 16] = [
    0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
    2.048, 4.096, 8.192,
];

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

#[derive(Default)]
struct Counts {
    /// (protocol, query type) → requests.
    requests: BTreeMap<(Protocol, String), u64>,
    /// Response code → responses.
    responses: BTreeMap<String, u64>,
    /// Observations per bucket (not cumulative), their count and sum.
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Counters shared by the server tasks and the metrics endpoint.
#[derive(Default)]
pub struct Metrics {
    counts: Mutex<Counts>,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    ready: AtomicBool,
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
        let mut c = self.counts.lock().expect("dns metrics");
        *c.requests.entry((protocol, qtype)).or_default() += 1;
        *c.responses.entry(rcode_name(code)).or_default() += 1;
        let seconds = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            c.buckets[i] += 1;
        }
        c.count += 1;
        c.sum += seconds;
    }

    /// Counts one forwarded query, answered from the cache or not.
    pub fn forwarded(&self, cached: bool) {
        let counter = if cached {
            &self.cache_hits
        } else {
            &self.cache_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
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
        let c = self.counts.lock().expect("dns metrics");
        let mut out = String::new();
        out.push_str("# HELP coredns_dns_requests_total Counter of DNS requests made per zone, protocol and family.\n# TYPE coredns_dns_requests_total counter\n");
        for ((protocol, qtype), n) in &c.requests {
            let _ = writeln!(
                out,
                "coredns_dns_requests_total{{server=\"dns://:53\",zone=\".\",proto=\"{}\",type=\"{qtype}\"}} {n}",
                protocol.label()
            );
        }
        out.push_str("# HELP coredns_dns_responses_total Counter of response status codes.\n# TYPE coredns_dns_responses_total counter\n");
        for (code, n) in &c.responses {
            let _ = writeln!(
                out,
                "coredns_dns_responses_total{{server=\"dns://:53\",zone=\".\",rcode=\"{code}\"}} {n}"
            );
        }
        out.push_str("# HELP coredns_dns_request_duration_seconds Histogram of the time (in seconds) each request took.\n# TYPE coredns_dns_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(c.buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "coredns_dns_request_duration_seconds_bucket{{server=\"dns://:53\",zone=\".\",le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "coredns_dns_request_duration_seconds_bucket{{server=\"dns://:53\",zone=\".\",le=\"+Inf\"}} {}\n\
             coredns_dns_request_duration_seconds_sum{{server=\"dns://:53\",zone=\".\"}} {}\n\
             coredns_dns_request_duration_seconds_count{{server=\"dns://:53\",zone=\".\"}} {}",
            c.count, c.sum, c.count
        );
        let _ = writeln!(
            out,
            "# HELP coredns_cache_hits_total The count of cache hits.\n# TYPE coredns_cache_hits_total counter\n\
             coredns_cache_hits_total{{server=\"dns://:53\"}} {}\n\
             # HELP coredns_cache_misses_total The count of cache misses.\n# TYPE coredns_cache_misses_total counter\n\
             coredns_cache_misses_total{{server=\"dns://:53\"}} {}",
            self.cache_hits.load(Ordering::Relaxed),
            self.cache_misses.load(Ordering::Relaxed)
        );
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
