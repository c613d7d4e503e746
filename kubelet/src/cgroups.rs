//! CPU and memory of cgroups, read the same way for the kubelet's `/stats/summary` and the
//! runtime's CRI `ContainerStats`: cgroup v1 `cpuacct` and `memory` where mounted, else
//! cgroup v2.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where each cgroup controller (v1) and the cgroup2 tree are mounted.
pub struct Mounts {
    cpuacct: Option<PathBuf>,
    memory: Option<PathBuf>,
    unified: Option<PathBuf>,
}

impl Mounts {
    pub fn read() -> Self {
        let mut m = Mounts {
            cpuacct: None,
            memory: None,
            unified: None,
        };
        let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [_, dir, fstype, opts, ..] = f[..] else {
                continue;
            };
            let dir = PathBuf::from(dir);
            match fstype {
                "cgroup2" => m.unified = m.unified.take().or(Some(dir)),
                "cgroup" => {
                    let opts: Vec<&str> = opts.split(',').collect();
                    if opts.contains(&"cpuacct") {
                        m.cpuacct = m.cpuacct.take().or(Some(dir.clone()));
                    }
                    if opts.contains(&"memory") {
                        m.memory = m.memory.take().or(Some(dir));
                    }
                }
                _ => {}
            }
        }
        m
    }

    /// Cumulative CPU time of cgroup `rel` in nanoseconds.
    pub fn cpu_ns(&self, rel: &str) -> Option<u64> {
        let rel = rel.trim_start_matches('/');
        if let Some(v1) = &self.cpuacct
            && let Some(ns) = read_u64(&v1.join(rel).join("cpuacct.usage"))
        {
            return Some(ns);
        }
        let stat = read_keyed(&self.unified.as_ref()?.join(rel).join("cpu.stat"));
        stat.get("usage_usec").map(|us| us * 1000)
    }

    /// Memory of cgroup `rel`.
    pub fn memory(&self, rel: &str) -> Option<Memory> {
        let rel = rel.trim_start_matches('/');
        if let Some(v1) = &self.memory {
            let dir = v1.join(rel);
            if let Some(usage) = read_u64(&dir.join("memory.usage_in_bytes")) {
                let stat = read_keyed(&dir.join("memory.stat"));
                let get = |k: &str| stat.get(k).copied().unwrap_or(0);
                return Some(Memory {
                    usage,
                    working_set: usage.saturating_sub(get("total_inactive_file")),
                    rss: get("total_rss"),
                    page_faults: get("total_pgfault"),
                    major_page_faults: get("total_pgmajfault"),
                });
            }
        }
        let dir = self.unified.as_ref()?.join(rel);
        let usage = read_u64(&dir.join("memory.current"))?;
        let stat = read_keyed(&dir.join("memory.stat"));
        let get = |k: &str| stat.get(k).copied().unwrap_or(0);
        Some(Memory {
            usage,
            working_set: usage.saturating_sub(get("inactive_file")),
            rss: get("anon"),
            page_faults: get("pgfault"),
            major_page_faults: get("pgmajfault"),
        })
    }
}

/// Memory of a cgroup, in bytes and page-fault counts.
pub struct Memory {
    pub usage: u64,
    /// Usage minus inactive file pages, as upstream computes `workingSetBytes`.
    pub working_set: u64,
    pub rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A `key value` per line file (`memory.stat`, `cpu.stat`, `/proc/meminfo` without units).
fn read_keyed(path: &Path) -> HashMap<String, u64> {
    parse_keyed(&std::fs::read_to_string(path).unwrap_or_default())
}

pub fn parse_keyed(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let k = f.next()?.trim_end_matches(':');
            Some((k.to_owned(), f.next()?.parse().ok()?))
        })
        .collect()
}
