//! Cgroup subtrees of lab hosts, in cgroup2 and in every cgroup v1 hierarchy.
//!
//! runc on a hybrid-cgroup host puts a container at the same `cgroupsPath` in every v1 hierarchy
//! and in cgroup2, so a node's subtree `ekube/<lab>/<node>` exists in all of them: created here
//! at start, and removed here (deepest first, after the processes in it are gone) at teardown.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{Result, io_err};

/// Mount points of cgroup file systems, read from `/proc/self/mountinfo`: `(fstype, mount point)`.
fn cgroup_mounts() -> Vec<(String, PathBuf)> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let fstype = right.split(' ').next()?;
            (fstype == "cgroup" || fstype == "cgroup2")
                .then(|| (fstype.to_owned(), PathBuf::from(mount_point)))
        })
        .collect()
}

/// The cgroup2 mount (`/sys/fs/cgroup/unified` on a hybrid host, `/sys/fs/cgroup` on a pure
/// cgroup2 host).
pub(crate) fn v2_mount() -> PathBuf {
    cgroup_mounts()
        .into_iter()
        .find(|(t, _)| t == "cgroup2")
        .map(|(_, p)| p)
        .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup/unified"))
}

/// Mount points of the v1 hierarchies.
pub(crate) fn v1_mounts() -> Vec<PathBuf> {
    cgroup_mounts()
        .into_iter()
        .filter(|(t, _)| t == "cgroup")
        .map(|(_, p)| p)
        .collect()
}

/// Every hierarchy: cgroup2 first, then v1.
fn all_mounts() -> Vec<PathBuf> {
    let mut all = vec![v2_mount()];
    all.extend(v1_mounts());
    all
}

/// Creates `rel` in every hierarchy. In a v1 cpuset hierarchy each new level inherits its
/// parent's `cpus` and `mems`, without which nothing could join it.
pub(crate) fn create(rel: &str) -> Result<()> {
    for mount in all_mounts() {
        let mut dir = mount.clone();
        for part in rel.split('/') {
            dir.push(part);
            if dir.is_dir() {
                continue;
            }
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("creating cgroup", &dir)(e)),
            }
            if dir.join("cpuset.cpus").exists() {
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let own = fs::read_to_string(dir.join(file)).unwrap_or_default();
                    if own.trim().is_empty() {
                        let parent = dir.parent().expect("cgroup dir has a parent").join(file);
                        let value =
                            fs::read_to_string(&parent).map_err(io_err("reading", &parent))?;
                        fs::write(dir.join(file), value.trim())
                            .map_err(io_err("writing", dir.join(file)))?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Directories of the subtree `rel` in every hierarchy, deepest first.
pub(crate) fn subtree_dirs(rel: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&entry.path(), out);
                }
            }
        }
        out.push(dir.to_owned());
    }
    let mut out = Vec::new();
    for mount in all_mounts() {
        let top = mount.join(rel);
        if top.is_dir() {
            walk(&top, &mut out);
        }
    }
    out
}

/// PIDs of every process in the subtree `rel` of any hierarchy.
pub(crate) fn pids_in(rel: &str) -> Vec<u32> {
    let mut pids: Vec<u32> = subtree_dirs(rel)
        .iter()
        .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|s| {
            s.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<_>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Removes the subtree `rel` from every hierarchy, deepest first. Directories that are still
/// busy are returned rather than failing the whole removal.
pub(crate) fn remove(rel: &str) -> Vec<PathBuf> {
    let mut left = Vec::new();
    for dir in subtree_dirs(rel) {
        if let Err(e) = fs::remove_dir(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove cgroup");
            left.push(dir);
        }
    }
    left
}

/// Removes the shared parent `top` (e.g. `ekube`) from every hierarchy where no lab or cluster
/// uses it any more; a busy or absent one is left alone.
pub(crate) fn remove_if_empty(top: &str) {
    for mount in all_mounts() {
        let _ = fs::remove_dir(mount.join(top));
    }
}

/// Opens the cgroup2 `cgroup.procs` of `rel` for writing, so a child can move itself in with
/// one `write` between fork and exec.
pub(crate) fn open_procs(rel: &str) -> Result<fs::File> {
    let path = v2_mount().join(rel).join("cgroup.procs");
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(io_err("opening", path))
}
