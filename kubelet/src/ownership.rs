//! Volume ownership for `fsGroup`, as upstream's `SetVolumeOwnership`: every file and
//! directory of a volume the kubelet creates (emptyDir, configMap, secret, downwardAPI,
//! projected) gets the group `fsGroup`, group read (and write, for emptyDir) permission, and
//! directories get the setgid bit so that files created later inherit the group. hostPath
//! volumes are the node's own files and are left alone, as upstream does.
//!
//! `fsGroupChangePolicy: OnRootMismatch` skips the walk when the volume's root already has
//! the group and permissions.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Pod, Volume};

/// Group read and write, for volumes containers write to.
const RW_MASK: u32 = 0o660;
/// Group read, for volumes the kubelet fills.
const RO_MASK: u32 = 0o440;
/// Group search permission on directories.
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// Which mask applies to a volume; `None`: its ownership is not managed.
fn mask_of(v: &Volume) -> Option<u32> {
    if v.empty_dir.is_some() {
        Some(RW_MASK)
    } else if v.config_map.is_some()
        || v.secret.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
    {
        Some(RO_MASK)
    } else {
        None
    }
}

/// Applies the pod's `fsGroup` to its volumes (prepared at `paths`, by volume name).
pub fn apply_fs_group(pod: &Pod, paths: &BTreeMap<String, PathBuf>) -> Result<(), String> {
    let Some(spec) = &pod.spec else {
        return Ok(());
    };
    let psc = spec.security_context.clone().unwrap_or_default();
    let Some(group) = psc.fs_group else {
        return Ok(());
    };
    let gid = u32::try_from(group)
        .map_err(|_| format!("spec.securityContext.fsGroup {group} is out of range"))?;
    let on_root_mismatch = psc.fs_group_change_policy.as_deref() == Some("OnRootMismatch");
    for v in spec.volumes.iter().flatten() {
        let (Some(mask), Some(path)) = (mask_of(v), paths.get(&v.name)) else {
            continue;
        };
        if on_root_mismatch && root_matches(path, gid, mask) {
            continue;
        }
        walk(path, gid, mask)
            .map_err(|e| format!("volume {}: setting fsGroup {gid}: {e}", v.name))?;
    }
    Ok(())
}

/// Whether the volume's root directory already has the group and permissions.
fn root_matches(path: &Path, gid: u32, mask: u32) -> bool {
    let want = mask | EXEC_MASK | SETGID;
    std::fs::metadata(path).is_ok_and(|m| m.gid() == gid && m.mode() & want == want)
}

/// Sets group and permissions on `path` and everything below it, never following a symbolic
/// link: each entry is opened relative to its directory's descriptor with `O_NOFOLLOW`, and
/// changed through that descriptor, so a container that swaps a directory for a link while the
/// walk runs (an emptyDir is theirs to write) cannot point it at the node's files.
fn walk(path: &Path, gid: u32, mask: u32) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let root = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    walk_dir(root, gid, mask)
}

fn walk_dir(dir: std::os::fd::OwnedFd, gid: u32, mask: u32) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    set_group_and_mode(&dir, gid, mask | EXEC_MASK | SETGID)?;
    for entry in rustix::fs::Dir::read_from(&dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        match FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) {
            FileType::Symlink => {
                rustix::fs::chownat(
                    &dir,
                    name,
                    None,
                    Some(gid_of(gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
            FileType::Directory => {
                let sub = rustix::fs::openat(
                    &dir,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                walk_dir(sub, gid, mask)?;
            }
            _ => set_group_and_mode(&fd, gid, mask)?,
        }
    }
    Ok(())
}

/// Adds `bits` to the mode of the file `fd` refers to and sets its group. Through
/// `/proc/self/fd`, which names exactly the opened inode, because an `O_PATH` descriptor
/// cannot be `fchmod`ed.
fn set_group_and_mode(fd: &std::os::fd::OwnedFd, gid: u32, bits: u32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let stat = rustix::fs::fstat(fd)?;
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    rustix::fs::chown(&by_fd, None, Some(gid_of(gid)))?;
    let mode = (stat.st_mode | bits) & 0o7777;
    std::fs::set_permissions(&by_fd, std::fs::Permissions::from_mode(mode))
}

fn gid_of(gid: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(policy: Option<&str>) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "securityContext": {"fsGroup": 4321, "fsGroupChangePolicy": policy},
                "containers": [{"name": "c"}],
                "volumes": [
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "cm", "configMap": {"name": "x"}},
                    {"name": "host", "hostPath": {"path": "/h"}},
                ],
            },
        }))
        .unwrap()
    }

    #[test]
    fn volumes_get_the_group_and_setgid() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = BTreeMap::new();
        for name in ["scratch", "cm", "host"] {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.join("sub")).unwrap();
            std::fs::write(p.join("sub/f"), "x").unwrap();
            std::fs::set_permissions(p.join("sub/f"), PermissionsExt::from_mode(0o600)).unwrap();
            paths.insert(name.to_owned(), p);
        }
        apply_fs_group(&pod(None), &paths).unwrap();
        let meta = |p: &Path| std::fs::metadata(p).unwrap();
        let scratch = &paths["scratch"];
        assert_eq!(meta(scratch).gid(), 4321);
        assert_eq!(meta(scratch).mode() & SETGID, SETGID);
        assert_eq!(meta(&scratch.join("sub/f")).mode() & 0o777, 0o660);
        assert_eq!(meta(&paths["cm"].join("sub/f")).mode() & 0o777, 0o640);
        assert_eq!(meta(&paths["cm"].join("sub/f")).gid(), 4321);
        // hostPath is the node's own: untouched.
        assert_ne!(meta(&paths["host"]).gid(), 4321);
    }

    #[test]
    fn on_root_mismatch_skips_matching_volumes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("scratch");
        std::fs::create_dir_all(&p).unwrap();
        let paths = BTreeMap::from([("scratch".to_owned(), p.clone())]);
        apply_fs_group(&pod(Some("OnRootMismatch")), &paths).unwrap();
        // A file added afterwards keeps its group: the root already matches.
        std::fs::write(p.join("late"), "x").unwrap();
        std::os::unix::fs::lchown(p.join("late"), None, Some(0)).unwrap();
        apply_fs_group(&pod(Some("OnRootMismatch")), &paths).unwrap();
        assert_eq!(std::fs::metadata(p.join("late")).unwrap().gid(), 0);
        apply_fs_group(&pod(None), &paths).unwrap();
        assert_eq!(std::fs::metadata(p.join("late")).unwrap().gid(), 4321);
    }

    #[test]
    fn links_planted_in_a_volume_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("node-file");
        std::fs::write(&outside, "x").unwrap();
        std::fs::set_permissions(&outside, PermissionsExt::from_mode(0o600)).unwrap();
        std::fs::create_dir(dir.path().join("node-dir")).unwrap();
        let p = dir.path().join("scratch");
        std::fs::create_dir_all(&p).unwrap();
        std::os::unix::fs::symlink(&outside, p.join("file-link")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("node-dir"), p.join("dir-link")).unwrap();
        let paths = BTreeMap::from([("scratch".to_owned(), p.clone())]);
        apply_fs_group(&pod(None), &paths).unwrap();
        let meta = |p: &Path| std::fs::metadata(p).unwrap();
        assert_eq!(meta(&outside).mode() & 0o7777, 0o600);
        assert_ne!(meta(&outside).gid(), 4321);
        assert_eq!(meta(&dir.path().join("node-dir")).mode() & SETGID, 0);
        // The links themselves get the group.
        assert_eq!(
            std::fs::symlink_metadata(p.join("file-link"))
                .unwrap()
                .gid(),
            4321
        );
    }
}
