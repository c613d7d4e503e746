//! CPU and memory of cgroups, read the same way for the kubelet's `/stats/summary` and the
//! runtime's CRI `ContainerStats`: cgroup v1 `cpuacct` and `memory` where mounted, else
//! cgroup v2. Also the pod-level pids limit the kubelet sets (`--pod-max-pids`), and the
//! hierarchies themselves: where they are mounted, and removing a subtree from all of them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where each cgroup controller (v1) and the cgroup2 tree are mounted.
pub struct Mounts {
    cpuacct: Option<PathBuf>,
    memory: Option<PathBuf>,
    pids: Option<PathBuf>,
    unified: Option<PathBuf>,
}

impl Mounts {
    pub fn read() -> Self {
        let mut m = Mounts {
            cpuacct: None,
            memory: None,
            pids: None,
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
                        m.memory = m.memory.take().or(Some(dir.clone()));
                    }
                    if opts.contains(&"pids") {
                        m.pids = m.pids.take().or(Some(dir));
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

impl Mounts {
    /// Limits the number of tasks in cgroup `rel` (created if absent) to `max`, in the v1
    /// `pids` hierarchy or else in cgroup2 (enabling the controller down to `rel`'s parent).
    /// `Ok(false)`: this host has no pids controller.
    pub fn set_pids_max(&self, rel: &str, max: u64) -> std::io::Result<bool> {
        let rel = Path::new(rel.trim_start_matches('/'));
        let dir = if let Some(v1) = &self.pids {
            v1.join(rel)
        } else if let Some(v2) = self.unified.as_ref().filter(|u| {
            std::fs::read_to_string(u.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "pids"))
        }) {
            let mut at = v2.clone();
            for part in rel.parent().into_iter().flat_map(Path::components) {
                std::fs::create_dir_all(&at)?;
                std::fs::write(at.join("cgroup.subtree_control"), "+pids")?;
                at.push(part);
            }
            std::fs::create_dir_all(&at)?;
            std::fs::write(at.join("cgroup.subtree_control"), "+pids")?;
            v2.join(rel)
        } else {
            return Ok(false);
        };
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("pids.max"), max.to_string())?;
        Ok(true)
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

/// Cgroup hierarchies' mount points (cgroup2 and every v1 hierarchy).
pub fn hierarchies() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split(' ').next()?;
            let mount = left.split(' ').nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(mount))
        })
        .collect()
}

/// Removes the cgroup `rel` with every cgroup below it, deepest first, from every hierarchy;
/// returns the directories that could not go (a process still in them).
pub fn remove_tree(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        return Vec::new();
    }
    let mut left = Vec::new();
    for dir in hierarchies().iter().map(|m| m.join(rel)) {
        let mut dirs = Vec::new();
        let mut todo = vec![dir];
        while let Some(d) = todo.pop() {
            let Ok(children) = std::fs::read_dir(&d) else {
                continue;
            };
            todo.extend(
                children
                    .flatten()
                    .filter(|c| c.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|c| c.path()),
            );
            dirs.push(d);
        }
        // Children were pushed after their parent: remove in reverse.
        for d in dirs.into_iter().rev() {
            if let Err(e) = std::fs::remove_dir(&d)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                left.push(d);
            }
        }
    }
    left
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
