//! The mount syscalls volumes need: tmpfs for secret-like volumes, bind mounts of
//! safely-opened subPaths, unmounting, and the mount table under a pod's directory.
//!
//! Mounts are made in the kubelet's mount namespace, which runc (a child of the runtime in the
//! same namespace) sees when it builds a container's root; a pod's mounts are undone before its
//! directory is removed, so removal never reaches into a host directory through a bind mount.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with a NUL byte"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Mounts a tmpfs at `target` (nosuid, nodev) with `options` (e.g. `mode=0755,size=64m`).
pub fn tmpfs(target: &Path, options: &str) -> io::Result<()> {
    let (src, tgt, fs) = (cstr(Path::new("tmpfs"))?, cstr(target)?, c"tmpfs");
    let data = CString::new(options)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "options with a NUL byte"))?;
    // SAFETY: mount(2) with valid NUL-terminated strings.
    check(unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fs.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    })
}

/// Bind-mounts what `fd` refers to onto `target` through `/proc/self/fd/<fd>`, so the mount is
/// of the very file the fd was opened on, whatever happened to its path since.
pub fn bind_fd(fd: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    let src = cstr(&PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())))?;
    let tgt = cstr(target)?;
    // SAFETY: mount(2) with valid NUL-terminated strings and no data.
    check(unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    })
}

/// Detaches the mount at `path`; a path that is no mount point (or is gone) is fine.
pub fn unmount(path: &Path) -> io::Result<()> {
    let c = cstr(path)?;
    // SAFETY: umount2(2) with a valid NUL-terminated string.
    match check(unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) }) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => Ok(()),
        other => other,
    }
}

/// Mount points at or below `dir`, deepest first.
pub fn mount_points_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|m| m.starts_with(dir))
        .collect();
    points.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    points.dedup();
    points
}

/// Whether `path` is itself a mount point.
pub fn is_mount_point(path: &Path) -> bool {
    mount_points_under(path).iter().any(|m| m == path)
}

/// Unmounts everything at or below `dir`, deepest first; fails naming what stays mounted.
pub fn unmount_all_under(dir: &Path) -> io::Result<()> {
    for point in mount_points_under(dir) {
        unmount(&point)?;
    }
    let left = mount_points_under(dir);
    if left.is_empty() {
        Ok(())
    } else {
        Err(io::Error::other(format!("still mounted: {left:?}")))
    }
}

/// A mountinfo path field with its octal escapes (`\040` for a space) decoded.
fn unescape(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_decode() {
        assert_eq!(unescape("/a\\040b/c"), PathBuf::from("/a b/c"));
        assert_eq!(unescape("/plain"), PathBuf::from("/plain"));
    }
}
