//! `/metrics/resource`: the kubelet's resource metrics endpoint, the CPU and memory figures
//! metrics-server (here: the apiserver's own scraper) turns into `metrics.k8s.io`.
//!
//! The series, names, labels and HELP texts are upstream's: cumulative CPU in core-seconds
//! (`*_cpu_usage_seconds_total`, counters) and the working set (usage minus inactive file
//! pages, `*_memory_working_set_bytes`, gauges) of the node, of every running pod and of its
//! running containers, each sample stamped with the time it was read (milliseconds since the
//! epoch), the containers' start times, and `scrape_error`/`resource_scrape_error` (1 when the
//! runtime could not be asked). The figures come from the same readers as `/stats/summary`
//! ([`super::stats`]); families are written in name order, as the Go client sorts them.

use std::fmt::Write as _;

use ekube_api::metrics::{CONTENT_TYPE, escape_label_value, write_header};
use http::{Response, StatusCode, header};

use super::stats::{Running, pod_cgroup, read_node_cpu_ns, read_node_memory};
use super::{Body, Finish, Node, full};
use crate::cgroups::Mounts;

/// A series' labels: `container`, `namespace`, `pod` (in that order, as upstream prints them).
type Labels = Vec<(&'static str, String)>;

/// One sample: labels, value, and the time it was read (ms since the epoch) if stamped.
struct Sample {
    labels: Labels,
    value: f64,
    at_ms: Option<i64>,
}

/// One metric family.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<Sample>,
}

impl Family {
    fn new(name: &'static str, help: &'static str, kind: &'static str) -> Self {
        Self {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn push(&mut self, labels: Labels, value: f64, at_ms: Option<i64>) {
        self.samples.push(Sample {
            labels,
            value,
            at_ms,
        });
    }
}

/// The families in the text exposition format. Families without samples keep their HELP and
/// TYPE lines, as upstream's collector describes them.
fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families {
        write_header(&mut out, f.name, f.help, f.kind);
        for s in &f.samples {
            out.push_str(f.name);
            if !s.labels.is_empty() {
                let labels: Vec<String> = s
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
                    .collect();
                let _ = write!(out, "{{{}}}", labels.join(","));
            }
            let _ = write!(out, " {}", s.value);
            if let Some(at) = s.at_ms {
                let _ = write!(out, " {at}");
            }
            out.push('\n');
        }
    }
    out
}

fn now_ms() -> i64 {
    ekube_api::time::Timestamp::now().as_millisecond()
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// `/metrics/resource`.
pub async fn serve(node: &Node) -> Response<Body> {
    let mut container_cpu = Family::new(
        "container_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
        "counter",
    );
    let mut container_memory = Family::new(
        "container_memory_working_set_bytes",
        "[STABLE] Current working set of the container in bytes",
        "gauge",
    );
    let mut container_start = Family::new(
        "container_start_time_seconds",
        "[STABLE] Start time of the container since unix epoch in seconds",
        "gauge",
    );
    let mut node_cpu = Family::new(
        "node_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
        "counter",
    );
    let mut node_memory = Family::new(
        "node_memory_working_set_bytes",
        "[STABLE] Current working set of the node in bytes",
        "gauge",
    );
    let mut pod_cpu = Family::new(
        "pod_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
        "counter",
    );
    let mut pod_memory = Family::new(
        "pod_memory_working_set_bytes",
        "[STABLE] Current working set of the pod in bytes",
        "gauge",
    );
    let mut resource_scrape_error = Family::new(
        "resource_scrape_error",
        "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise",
        "gauge",
    );
    let mut scrape_error = Family::new(
        "scrape_error",
        "[ALPHA] (Deprecated since 1.29.0) 1 if there was an error while getting container metrics, 0 otherwise",
        "gauge",
    );

    if let Some(ns) = read_node_cpu_ns() {
        node_cpu.push(Vec::new(), seconds(ns), Some(now_ms()));
    }
    if let Some((_, m)) = read_node_memory() {
        node_memory.push(Vec::new(), m.working_set as f64, Some(now_ms()));
    }
    let error = match Running::list(node).await {
        Ok(running) => {
            let mounts = Mounts::read();
            for s in &running.sandboxes {
                let meta = s.metadata.clone().unwrap_or_default();
                let pod_labels = || -> Labels {
                    vec![
                        ("namespace", meta.namespace.clone()),
                        ("pod", meta.name.clone()),
                    ]
                };
                let cgroup = pod_cgroup(node, s);
                for c in running.of(s) {
                    let name = c.metadata.as_ref().map(|m| m.name.clone());
                    let labels = || -> Labels {
                        let mut l = vec![("container", name.clone().unwrap_or_default())];
                        l.extend(pod_labels());
                        l
                    };
                    let dir = format!("{cgroup}/{}", c.id);
                    if c.created_at > 0 {
                        container_start.push(labels(), c.created_at as f64 / 1e9, None);
                    }
                    if let Some(ns) = mounts.cpu_ns(&dir) {
                        container_cpu.push(labels(), seconds(ns), Some(now_ms()));
                    }
                    if let Some(m) = mounts.memory(&dir) {
                        container_memory.push(labels(), m.working_set as f64, Some(now_ms()));
                    }
                }
                if let Some(ns) = mounts.cpu_ns(&cgroup) {
                    pod_cpu.push(pod_labels(), seconds(ns), Some(now_ms()));
                }
                if let Some(m) = mounts.memory(&cgroup) {
                    pod_memory.push(pod_labels(), m.working_set as f64, Some(now_ms()));
                }
            }
            0.0
        }
        Err(e) => {
            tracing::warn!(error = %e, "collecting resource metrics");
            1.0
        }
    };
    resource_scrape_error.push(Vec::new(), error, None);
    scrape_error.push(Vec::new(), error, None);

    let body = render(&[
        container_cpu,
        container_memory,
        container_start,
        node_cpu,
        node_memory,
        pod_cpu,
        pod_memory,
        resource_scrape_error,
        scrape_error,
    ]);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, CONTENT_TYPE)
        .body(full(body))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_upstreams_text_format() {
        let mut cpu = Family::new(
            "container_cpu_usage_seconds_total",
            "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
            "counter",
        );
        cpu.push(
            vec![
                ("container", "web".into()),
                ("namespace", "default".into()),
                ("pod", "we\"b\\1\n".into()),
            ],
            4.710169,
            Some(1633253812125),
        );
        let mut error = Family::new("scrape_error", "help", "gauge");
        error.push(Vec::new(), 0.0, None);
        let empty = Family::new("pod_memory_working_set_bytes", "help", "gauge");
        assert_eq!(
            render(&[cpu, empty, error]),
            "# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds\n\
             # TYPE container_cpu_usage_seconds_total counter\n\
             container_cpu_usage_seconds_total{container=\"web\",namespace=\"default\",pod=\"we\\\"b\\\\1\\n\"} 4.710169 1633253812125\n\
             # HELP pod_memory_working_set_bytes help\n\
             # TYPE pod_memory_working_set_bytes gauge\n\
             # HELP scrape_error help\n\
             # TYPE scrape_error gauge\n\
             scrape_error 0\n"
        );
    }
}
