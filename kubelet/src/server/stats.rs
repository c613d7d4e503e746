//! What the kubelet reports about itself and its pods: `/pods` (the pods it runs, as a v1
//! PodList), `/stats/summary` (node, pod and container CPU and memory in the upstream
//! `stats/v1alpha1` Summary shape) and `/metrics` (Prometheus text).
//!
//! Node figures come from `/proc/stat` and `/proc/meminfo`, pod and container figures from
//! their cgroups (`<cgroup-root>/pod<uid>` and `…/<container id>`; cgroup v1 `cpuacct` and
//! `memory`, else cgroup v2). `workingSetBytes` is usage minus inactive file pages, as
//! upstream computes it. `usageNanoCores` is the rate since the previous summary; the first
//! one measures over a short pause. Network, filesystem and volume stats are not reported.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ekube_api::time::{Timestamp, from_unix, now_rfc3339, rfc3339};
use http::{Response, StatusCode, header};
use serde_json::{Value, json};

use super::{Body, Finish, Node, full, text};
use crate::cgroups::{Memory, Mounts, parse_keyed};
use crate::cri::{self, ContainerState, PodSandboxState};

/// Shortest interval a CPU rate is measured over.
const MIN_RATE_INTERVAL: Duration = Duration::from_millis(100);
/// The pause taken when there is no earlier sample to measure against.
const FIRST_RATE_INTERVAL: Duration = Duration::from_millis(300);
/// Kernel clock ticks per second in `/proc/stat` (USER_HZ).
const USER_HZ: u64 = 100;

/// CPU counters (cumulative nanoseconds) of the previous summary, by cgroup or `""` for the node.
#[derive(Default, Clone)]
pub struct Samples(Arc<Mutex<Option<Sample>>>);

/// When counters were read, and their values.
type Sample = (Instant, HashMap<String, u64>);

fn json_response(value: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(value.to_string()))
        .finish()
}

/// `/pods`: the pods this kubelet runs, newest version known.
pub fn pods(node: &Node) -> Response<Body> {
    let items: Vec<Value> = {
        let pods = node
            .pods
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pods.values()
            .filter_map(|rx| rx.borrow().clone())
            .filter_map(|p| serde_json::to_value(p).ok())
            .collect()
    };
    json_response(&json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": items,
    }))
}

/// Busy CPU time of the whole machine (`/proc/stat`: all but idle and iowait) in nanoseconds.
fn node_cpu_ns(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| *t)
        .sum();
    Some(busy * (1_000_000_000 / USER_HZ))
}

/// Node memory from `/proc/meminfo` (kB values).
fn node_memory(meminfo: &str) -> Option<(u64, Memory)> {
    let m = parse_keyed(meminfo);
    let kb = |k: &str| m.get(k).map(|v| v * 1024);
    let total = kb("MemTotal")?;
    let usage = total.saturating_sub(kb("MemFree")?);
    let inactive_file = kb("Inactive(file)").unwrap_or(0);
    Some((
        total,
        Memory {
            usage,
            working_set: usage.saturating_sub(inactive_file),
            rss: kb("AnonPages").unwrap_or(0),
            page_faults: 0,
            major_page_faults: 0,
        },
    ))
}

fn from_nanos(ns: i64) -> String {
    Timestamp::from_nanosecond(i128::from(ns)).map_or_else(|_| now_rfc3339(), rfc3339)
}

/// One pod or container to report: its cgroup, and where it appears in the summary.
struct Target {
    key: String,
    cgroup: String,
}

/// The CPU counters of the node (`""`) and of every target.
fn cpu_counters(mounts: &Mounts, targets: &[Target]) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    if let Some(ns) = read_node_cpu_ns() {
        out.insert(String::new(), ns);
    }
    for t in targets {
        if let Some(ns) = mounts.cpu_ns(&t.cgroup) {
            out.insert(t.key.clone(), ns);
        }
    }
    out
}

fn cpu_json(
    time: &str,
    key: &str,
    now: &HashMap<String, u64>,
    rate: &HashMap<String, u64>,
) -> Value {
    let mut v = json!({"time": time});
    if let Some(r) = rate.get(key) {
        v["usageNanoCores"] = json!(r);
    }
    if let Some(total) = now.get(key) {
        v["usageCoreNanoSeconds"] = json!(total);
    }
    v
}

fn memory_json(time: &str, m: Option<&Memory>, available: Option<u64>) -> Value {
    let mut v = json!({"time": time});
    if let Some(m) = m {
        v["usageBytes"] = json!(m.usage);
        v["workingSetBytes"] = json!(m.working_set);
        v["rssBytes"] = json!(m.rss);
        v["pageFaults"] = json!(m.page_faults);
        v["majorPageFaults"] = json!(m.major_page_faults);
    }
    if let Some(a) = available {
        v["availableBytes"] = json!(a);
    }
    v
}

/// What the runtime runs now: the ready pod sandboxes and the running containers.
pub(super) struct Running {
    pub sandboxes: Vec<cri::PodSandbox>,
    pub containers: Vec<cri::Container>,
}

impl Running {
    /// Lists them through CRI; the error says which list failed.
    pub(super) async fn list(node: &Node) -> Result<Self, String> {
        let mut rc = node.runtime.clone();
        let sandboxes = rc
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .map_err(|e| format!("listing pod sandboxes: {}", e.message()))?
            .into_inner()
            .items;
        let containers = rc
            .list_containers(cri::ListContainersRequest { filter: None })
            .await
            .map_err(|e| format!("listing containers: {}", e.message()))?
            .into_inner()
            .containers;
        Ok(Self {
            sandboxes: sandboxes
                .into_iter()
                .filter(|s| s.state == PodSandboxState::SandboxReady as i32)
                .collect(),
            containers: containers
                .into_iter()
                .filter(|c| c.state == ContainerState::ContainerRunning as i32)
                .collect(),
        })
    }

    /// The running containers of sandbox `s`.
    pub(super) fn of<'a>(
        &'a self,
        s: &'a cri::PodSandbox,
    ) -> impl Iterator<Item = &'a cri::Container> + 'a {
        self.containers
            .iter()
            .filter(move |c| c.pod_sandbox_id == s.id)
    }
}

/// The cgroup of a pod (`<root>/pod<uid>`) under the kubelet's `--cgroup-root`.
pub(super) fn pod_cgroup(node: &Node, s: &cri::PodSandbox) -> String {
    let uid = s.metadata.as_ref().map(|m| m.uid.as_str()).unwrap_or("");
    format!("{}/pod{uid}", node.cgroup_root.trim_end_matches('/'))
}

/// The machine's busy CPU time in nanoseconds, read now.
pub(super) fn read_node_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| node_cpu_ns(&s))
}

/// The machine's total memory and its usage, read now.
pub(super) fn read_node_memory() -> Option<(u64, Memory)> {
    node_memory(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default())
}

/// `/stats/summary`.
pub async fn summary(node: &Node) -> Response<Body> {
    let running = match Running::list(node).await {
        Ok(r) => r,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let ready: Vec<&cri::PodSandbox> = running.sandboxes.iter().collect();
    let mut targets = Vec::new();
    for s in &ready {
        let pod_cgroup = pod_cgroup(node, s);
        for c in running.of(s) {
            targets.push(Target {
                key: c.id.clone(),
                cgroup: format!("{pod_cgroup}/{}", c.id),
            });
        }
        targets.push(Target {
            key: s.id.clone(),
            cgroup: pod_cgroup,
        });
    }

    let mounts = Mounts::read();
    let earlier = node
        .cpu_samples
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
        .filter(|(at, _)| at.elapsed() >= MIN_RATE_INTERVAL);
    let (then, before) = match earlier {
        Some(e) => e,
        None => {
            let first = (Instant::now(), cpu_counters(&mounts, &targets));
            tokio::time::sleep(FIRST_RATE_INTERVAL).await;
            first
        }
    };
    let at = Instant::now();
    let now = cpu_counters(&mounts, &targets);
    let elapsed = at.duration_since(then).as_nanos().max(1);
    let rate: HashMap<String, u64> = now
        .iter()
        .filter_map(|(k, v)| {
            let b = before.get(k)?;
            Some((
                k.clone(),
                (u128::from(v.saturating_sub(*b)) * 1_000_000_000 / elapsed) as u64,
            ))
        })
        .collect();
    *node
        .cpu_samples
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((at, now.clone()));

    let time = now_rfc3339();
    let (node_memory, available) = match read_node_memory() {
        Some((total, m)) => {
            let available = total.saturating_sub(m.working_set);
            (Some(m), Some(available))
        }
        None => (None, None),
    };
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<i64>().ok())
        })
        .and_then(from_unix)
        .map(rfc3339);
    let pods: Vec<Value> = ready
        .iter()
        .map(|s| {
            let meta = s.metadata.clone().unwrap_or_default();
            let pod_cgroup = pod_cgroup(node, s);
            let cs: Vec<Value> = running
                .of(s)
                .map(|c| {
                    let cgroup = format!("{pod_cgroup}/{}", c.id);
                    json!({
                        "name": c.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
                        "startTime": from_nanos(c.created_at),
                        "cpu": cpu_json(&time, &c.id, &now, &rate),
                        "memory": memory_json(&time, mounts.memory(&cgroup).as_ref(), None),
                    })
                })
                .collect();
            json!({
                "podRef": {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid},
                "startTime": from_nanos(s.created_at),
                "containers": cs,
                "cpu": cpu_json(&time, &s.id, &now, &rate),
                "memory": memory_json(&time, mounts.memory(&pod_cgroup).as_ref(), None),
            })
        })
        .collect();
    let mut node_json = json!({
        "nodeName": node.name,
        "cpu": cpu_json(&time, "", &now, &rate),
        "memory": memory_json(&time, node_memory.as_ref(), available),
    });
    if let Some(b) = boot {
        node_json["startTime"] = json!(b);
    }
    json_response(&json!({"node": node_json, "pods": pods}))
}

/// `/metrics`.
pub async fn metrics(node: &Node) -> Response<Body> {
    let mut rc = node.runtime.clone();
    let sandboxes = rc
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .map(|r| r.into_inner().items)
        .unwrap_or_default();
    let containers = rc
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .map(|r| r.into_inner().containers)
        .unwrap_or_default();
    let pods = sandboxes
        .iter()
        .filter(|s| s.state == PodSandboxState::SandboxReady as i32)
        .count();
    let count = |state: ContainerState| {
        containers
            .iter()
            .filter(|c| c.state == state as i32)
            .count()
    };
    use ekube_api::metrics::{write_header, write_sample};
    let mut out = String::new();
    write_header(
        &mut out,
        "kubelet_node_name",
        "[ALPHA] The node's name. The count is always 1.",
        "gauge",
    );
    write_sample(&mut out, "kubelet_node_name", &[("node", &node.name)], 1);
    write_header(
        &mut out,
        "kubelet_running_pods",
        "[ALPHA] Number of pods that have a running pod sandbox",
        "gauge",
    );
    write_sample(&mut out, "kubelet_running_pods", &[], pods);
    write_header(
        &mut out,
        "kubelet_running_containers",
        "[ALPHA] Number of containers currently running",
        "gauge",
    );
    for (label, state) in [
        ("created", ContainerState::ContainerCreated),
        ("exited", ContainerState::ContainerExited),
        ("running", ContainerState::ContainerRunning),
        ("unknown", ContainerState::ContainerUnknown),
    ] {
        write_sample(
            &mut out,
            "kubelet_running_containers",
            &[("container_state", label)],
            count(state),
        );
    }
    crate::metrics::POD_START_DURATION.render(&mut out);
    crate::metrics::RUNTIME_OPERATIONS.render(&mut out);
    crate::metrics::RUNTIME_OPERATION_DURATION.render(&mut out);
    crate::metrics::NETWORK_PLUGIN_DURATION.render(&mut out);
    crate::metrics::POD_STATUS_SYNC_DURATION.render(&mut out);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, ekube_api::metrics::CONTENT_TYPE)
        .body(full(out))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_figures_from_proc() {
        let stat = "cpu  100 5 50 1000 20 1 2 3 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\nbtime 1700000000\n";
        // Busy ticks: 100 + 5 + 50 + 1 + 2 + 3 = 161, at 10 ms each.
        assert_eq!(node_cpu_ns(stat), Some(161 * 10_000_000));
        let meminfo = "MemTotal:        1000 kB\nMemFree:          200 kB\nMemAvailable:     500 kB\nInactive(file):   100 kB\nAnonPages:        300 kB\n";
        let (total, m) = node_memory(meminfo).unwrap();
        assert_eq!(total, 1000 * 1024);
        assert_eq!(
            (m.usage, m.working_set, m.rss),
            (800 * 1024, 700 * 1024, 300 * 1024)
        );
    }
}
