//! The scraper: every `--metric-resolution` it reads each node's kubelet `/metrics/resource`
//! (through [`crate::kubelet_proxy::dial`], with the apiserver's kubelet client certificate),
//! parses the text exposition, and keeps the last two readings of every node and container.
//! A node whose scrape fails, or that is gone, loses its figures until the next good scrape,
//! as metrics-server drops a node missing from its latest batch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::ApiServer;
use crate::registry::ListOptions;

/// How long one kubelet may take to answer (metrics-server's `--kubelet-request-timeout`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest exposition read from a kubelet.
const MAX_BODY: usize = 16 << 20;

/// One reading of a cumulative CPU counter and a working set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Cumulative CPU time in nanoseconds.
    pub cpu_ns: u64,
    /// Working set in bytes.
    pub memory: u64,
    /// When the CPU counter was read, milliseconds since the epoch.
    pub at_ms: i64,
    /// A container's start time (seconds since the epoch); a new one means a restart.
    pub start: Option<f64>,
}

/// CPU as a rate and memory as the working set, over `window_ms` ending at `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub nanocores: u64,
    pub memory: u64,
    pub at_ms: i64,
    pub window_ms: i64,
}

/// The last two readings of one node or container.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Series {
    prev: Option<Point>,
    last: Point,
}

impl Series {
    pub fn new(p: Point) -> Self {
        Self {
            prev: None,
            last: p,
        }
    }

    /// Adds a reading. The same reading again is ignored; a restart (another start time, or a
    /// counter that went back) starts the series over, since no rate spans it.
    pub fn record(&mut self, p: Point) {
        if p.at_ms <= self.last.at_ms {
            return;
        }
        if p.start != self.last.start || p.cpu_ns < self.last.cpu_ns {
            *self = Self::new(p);
            return;
        }
        self.prev = Some(self.last);
        self.last = p;
    }

    /// The CPU rate between the two readings (nanocores) and the latest working set; none
    /// until there are two readings.
    pub fn usage(&self) -> Option<Usage> {
        let prev = self.prev?;
        let window_ms = self.last.at_ms - prev.at_ms;
        if window_ms <= 0 {
            return None;
        }
        let used = u128::from(self.last.cpu_ns - prev.cpu_ns);
        let nanocores = used * 1000 / window_ms as u128;
        Some(Usage {
            nanocores: u64::try_from(nanocores).unwrap_or(u64::MAX),
            memory: self.last.memory,
            at_ms: self.last.at_ms,
            window_ms,
        })
    }
}

/// A container's place: namespace, pod, container.
pub type ContainerKey = (String, String, String);

/// What one `/metrics/resource` says.
#[derive(Debug, Default, PartialEq)]
pub struct Scrape {
    pub node: Option<Point>,
    pub containers: BTreeMap<ContainerKey, Point>,
}

/// One sample line: name, labels, value, timestamp.
type Line<'a> = (&'a str, Vec<(String, String)>, f64, Option<i64>);

/// Parses `name{label="value",…} value [timestamp]`.
fn parse_line(line: &str) -> Result<Line<'_>, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("a sample has no value")?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let end;
        loop {
            while chars
                .next_if(|(_, c)| *c == ',' || c.is_whitespace())
                .is_some()
            {}
            match chars.peek() {
                Some((i, '}')) => {
                    end = *i;
                    break;
                }
                None => return Err("a label set is not closed".into()),
                _ => {}
            }
            let mut key = String::new();
            while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=') {
                key.push(c);
            }
            if chars.next().is_none() || chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {:?} has no quoted value", key.trim()));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => return Err("a label value is not closed".into()),
                    },
                    Some((_, c)) => value.push(c),
                    None => return Err("a label value is not closed".into()),
                }
            }
            labels.push((key.trim().to_owned(), value));
        }
        rest = &body[end + 1..];
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("a sample has no value")?;
    let value: f64 = value
        .parse()
        .map_err(|_| format!("sample value {value:?} is not a number"))?;
    let at = match fields.next() {
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|_| format!("timestamp {t:?} is not an integer"))?,
        ),
        None => None,
    };
    Ok((name, labels, value, at))
}

/// Reads the series metrics-server uses from a kubelet's exposition. Samples without a
/// timestamp are taken as read at `now_ms`. A node or container missing its CPU or its memory
/// is left out.
pub fn parse(text: &str, now_ms: i64) -> Result<Scrape, String> {
    #[derive(Default)]
    struct Partial {
        cpu: Option<(f64, i64)>,
        memory: Option<f64>,
        start: Option<f64>,
    }
    let mut node = Partial::default();
    let mut containers: BTreeMap<ContainerKey, Partial> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, labels, value, at) =
            parse_line(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        let at = at.unwrap_or(now_ms);
        let label = |k: &str| {
            labels
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        if !value.is_finite() || value < 0.0 {
            continue;
        }
        let key = || (label("namespace"), label("pod"), label("container"));
        match name {
            "node_cpu_usage_seconds_total" => node.cpu = Some((value, at)),
            "node_memory_working_set_bytes" => node.memory = Some(value),
            "container_cpu_usage_seconds_total" => {
                containers.entry(key()).or_default().cpu = Some((value, at));
            }
            "container_memory_working_set_bytes" => {
                containers.entry(key()).or_default().memory = Some(value);
            }
            "container_start_time_seconds" => {
                containers.entry(key()).or_default().start = Some(value);
            }
            _ => {}
        }
    }
    let point = |p: &Partial| {
        let ((cpu, at_ms), memory) = (p.cpu?, p.memory?);
        Some(Point {
            cpu_ns: (cpu * 1e9).round() as u64,
            memory: memory.round() as u64,
            at_ms,
            start: p.start,
        })
    };
    Ok(Scrape {
        node: point(&node),
        containers: containers
            .iter()
            .filter(|((ns, pod, c), _)| !ns.is_empty() && !pod.is_empty() && !c.is_empty())
            .filter_map(|(k, p)| Some((k.clone(), point(p)?)))
            .collect(),
    })
}

/// Everything known of one node: its own series and its pods' containers'.
#[derive(Debug, Default)]
struct NodeEntry {
    node: Option<Series>,
    /// By (namespace, pod), then container name.
    pods: HashMap<(String, String), BTreeMap<String, Series>>,
}

/// The figures of every node, fed by the scraper, read by the API.
#[derive(Debug, Default)]
pub struct Store {
    nodes: Mutex<HashMap<String, NodeEntry>>,
}

impl Store {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, NodeEntry>> {
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a node's scrape. Pods and containers it no longer reports are forgotten.
    pub fn record(&self, node: &str, scrape: Scrape) {
        let mut nodes = self.lock();
        let entry = nodes.entry(node.to_owned()).or_default();
        entry.node = match (entry.node.take(), scrape.node) {
            (Some(mut s), Some(p)) => {
                s.record(p);
                Some(s)
            }
            (_, p) => p.map(Series::new),
        };
        let mut old = std::mem::take(&mut entry.pods);
        for ((ns, pod, container), p) in scrape.containers {
            let series = old
                .get_mut(&(ns.clone(), pod.clone()))
                .and_then(|cs| cs.remove(&container))
                .map(|mut s| {
                    s.record(p);
                    s
                })
                .unwrap_or_else(|| Series::new(p));
            entry
                .pods
                .entry((ns, pod))
                .or_default()
                .insert(container, series);
        }
    }

    /// Drops a node's figures (its scrape failed).
    pub fn forget(&self, node: &str) {
        self.lock().remove(node);
    }

    /// Keeps only the nodes named.
    pub fn retain(&self, names: &HashSet<String>) {
        self.lock().retain(|n, _| names.contains(n));
    }

    /// A node's usage, once it has two readings.
    pub fn node(&self, node: &str) -> Option<Usage> {
        self.lock().get(node)?.node.as_ref()?.usage()
    }

    /// The usage of a pod's containers (by name) on `node`; none until some container has two
    /// readings.
    pub fn pod(&self, node: &str, namespace: &str, pod: &str) -> Option<Vec<(String, Usage)>> {
        let nodes = self.lock();
        let containers = nodes
            .get(node)?
            .pods
            .get(&(namespace.to_owned(), pod.to_owned()))?;
        let out: Vec<(String, Usage)> = containers
            .iter()
            .filter_map(|(name, s)| Some((name.clone(), s.usage()?)))
            .collect();
        (!out.is_empty()).then_some(out)
    }
}

/// The node's first InternalIP or ExternalIP; the scraper dials nothing else (no name look-ups).
fn has_ip(node: &Value) -> bool {
    node.pointer("/status/addresses")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter().any(|a| {
                matches!(a["type"].as_str(), Some("InternalIP" | "ExternalIP"))
                    && a["address"]
                        .as_str()
                        .is_some_and(|ip| ip.parse::<std::net::IpAddr>().is_ok())
            })
        })
}

/// Reads one kubelet's `/metrics/resource`.
async fn scrape_node(api: &ApiServer, node: &Value) -> Result<Scrape, String> {
    let mut kubelet = crate::kubelet_proxy::dial(api, node)
        .await
        .map_err(|e| e.message)?;
    let req = Request::get("/metrics/resource")
        .header(header::HOST, format!("{}:{}", kubelet.host, kubelet.port))
        .header(header::ACCEPT, "text/plain")
        .body(crate::handler::full(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = kubelet
        .sender
        .send_request(req)
        .await
        .map_err(|e| format!("GET /metrics/resource: {e}"))?;
    let status = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("reading /metrics/resource: {e}"))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "GET /metrics/resource: {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    parse(
        &String::from_utf8_lossy(&body),
        ekube_api::time::Timestamp::now().as_millisecond(),
    )
}

/// Scrapes every node once, all at a time.
async fn scrape_all(api: &Arc<ApiServer>) {
    let Some(nodes) = ekube_api::resources::find("", "v1", "nodes") else {
        return;
    };
    let listed = api
        .registry
        .list(nodes, None, &ListOptions::default())
        .await;
    let nodes = match listed {
        Ok((nodes, _, _)) => nodes,
        Err(e) => {
            tracing::warn!(error = %e.message, "listing nodes to scrape");
            return;
        }
    };
    let mut names = HashSet::new();
    let mut scrapes = tokio::task::JoinSet::new();
    for node in nodes {
        let Some(name) = node.pointer("/metadata/name").and_then(Value::as_str) else {
            continue;
        };
        let name = name.to_owned();
        names.insert(name.clone());
        if !has_ip(&node) {
            continue;
        }
        let api = api.clone();
        scrapes.spawn(async move {
            let result = tokio::time::timeout(REQUEST_TIMEOUT, scrape_node(&api, &node))
                .await
                .unwrap_or_else(|_| Err(format!("no answer in {REQUEST_TIMEOUT:?}")));
            (name, result)
        });
    }
    while let Some(done) = scrapes.join_next().await {
        let Ok((name, result)) = done else { continue };
        match result {
            Ok(scrape) => api.resource_metrics.record(&name, scrape),
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "scraping the kubelet's resource metrics");
                api.resource_metrics.forget(&name);
            }
        }
    }
    api.resource_metrics.retain(&names);
}

/// Scrapes every `resolution` until the server stops.
pub async fn run(api: Arc<ApiServer>, resolution: Duration) {
    let mut tick = tokio::time::interval(resolution);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        scrape_all(&api).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(cpu_ns: u64, memory: u64, at_ms: i64) -> Point {
        Point {
            cpu_ns,
            memory,
            at_ms,
            start: Some(100.0),
        }
    }

    #[test]
    fn cpu_is_the_rate_between_the_last_two_readings() {
        let mut s = Series::new(point(1_000_000_000, 10, 10_000));
        assert_eq!(s.usage(), None, "one reading has no rate");
        // 1.5 s of CPU in 15 s: a tenth of a core.
        s.record(point(2_500_000_000, 20, 25_000));
        assert_eq!(
            s.usage(),
            Some(Usage {
                nanocores: 100_000_000,
                memory: 20,
                at_ms: 25_000,
                window_ms: 15_000
            })
        );
        // The same reading again changes nothing; the next one uses only the last two.
        s.record(point(2_500_000_000, 20, 25_000));
        s.record(point(17_500_000_000, 30, 40_000));
        assert_eq!(
            s.usage().map(|u| (u.nanocores, u.window_ms)),
            Some((1_000_000_000, 15_000))
        );
        // A counter that goes back is a restart: no rate until the next reading.
        s.record(point(1_000, 5, 55_000));
        assert_eq!(s.usage(), None);
        s.record(point(1_000_001_000, 6, 57_000));
        assert_eq!(s.usage().map(|u| u.nanocores), Some(500_000_000));
        // So is another start time.
        s.record(Point {
            start: Some(200.0),
            ..point(2_000_000_000, 7, 60_000)
        });
        assert_eq!(s.usage(), None);
    }

    const EXPOSITION: &str = r#"# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="coredns",namespace="kube-system",pod="coredns-558bd4d5db-4dpjz"} 4.710169 1633253812125
container_cpu_usage_seconds_total{container="we\"ird",namespace="default",pod="p\\1"} 1.5 1633253812000
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="coredns",namespace="kube-system",pod="coredns-558bd4d5db-4dpjz"} 1.253376e+07 1633253812125
container_memory_working_set_bytes{container="we\"ird",namespace="default",pod="p\\1"} 4096 1633253812000
container_memory_working_set_bytes{container="nocpu",namespace="default",pod="p"} 4096 1633253812000
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container="coredns",namespace="kube-system",pod="coredns-558bd4d5db-4dpjz"} 1.633252712e+9 1633253812125
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 357.35491 1633253809720
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1.616273408e+09 1633253809720
# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds
# TYPE pod_cpu_usage_seconds_total counter
pod_cpu_usage_seconds_total{namespace="kube-system",pod="coredns-558bd4d5db-4dpjz"} 4.67812 1633253803935
# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE scrape_error gauge
scrape_error 0
"#;

    #[test]
    fn parses_the_kubelets_exposition() {
        let s = parse(EXPOSITION, 1).unwrap();
        assert_eq!(
            s.node,
            Some(Point {
                cpu_ns: 357_354_910_000,
                memory: 1_616_273_408,
                at_ms: 1633253809720,
                start: None
            })
        );
        let key = |ns: &str, pod: &str, c: &str| (ns.to_owned(), pod.to_owned(), c.to_owned());
        assert_eq!(
            s.containers
                .get(&key("kube-system", "coredns-558bd4d5db-4dpjz", "coredns")),
            Some(&Point {
                cpu_ns: 4_710_169_000,
                memory: 12_533_760,
                at_ms: 1633253812125,
                start: Some(1_633_252_712.0)
            })
        );
        assert_eq!(
            s.containers
                .get(&key("default", "p\\1", "we\"ird"))
                .map(|p| (p.cpu_ns, p.memory)),
            Some((1_500_000_000, 4096))
        );
        assert_eq!(s.containers.len(), 2, "a container without CPU is left out");

        let untimed = parse(
            "node_cpu_usage_seconds_total 2\nnode_memory_working_set_bytes 3\n",
            77,
        )
        .unwrap();
        assert_eq!(untimed.node.map(|p| p.at_ms), Some(77));
        assert_eq!(
            parse("node_cpu_usage_seconds_total{x=\"1} 2\n", 0).unwrap_err(),
            "line 1: a label value is not closed"
        );
        assert_eq!(
            parse("ok 1\nnode_cpu_usage_seconds_total two\n", 0).unwrap_err(),
            "line 2: sample value \"two\" is not a number"
        );
    }

    #[test]
    fn the_store_follows_each_nodes_latest_scrape() {
        let store = Store::default();
        let scrape = |cpu: u64, at: i64, pods: &[(&str, &str)]| Scrape {
            node: Some(point(cpu * 2, 1 << 20, at)),
            containers: pods
                .iter()
                .map(|(pod, c)| {
                    (
                        ("default".to_owned(), pod.to_string(), c.to_string()),
                        point(cpu, 1024, at),
                    )
                })
                .collect(),
        };
        store.record("n1", scrape(0, 0, &[("web", "main"), ("web", "side")]));
        assert_eq!(store.node("n1"), None);
        assert_eq!(store.pod("n1", "default", "web"), None);
        store.record(
            "n1",
            scrape(1_000_000_000, 1000, &[("web", "main"), ("db", "main")]),
        );
        assert_eq!(store.node("n1").map(|u| u.nanocores), Some(2_000_000_000));
        let web = store.pod("n1", "default", "web").unwrap();
        assert_eq!(
            web.iter()
                .map(|(c, u)| (c.as_str(), u.nanocores))
                .collect::<Vec<_>>(),
            [("main", 1_000_000_000)],
            "side is gone, main has its rate"
        );
        assert_eq!(store.pod("n1", "default", "db"), None, "db is new");
        assert_eq!(store.pod("n2", "default", "web"), None);
        store.retain(&HashSet::from(["n2".to_owned()]));
        assert_eq!(store.node("n1"), None);
    }
}
