//! subPath mounts, made as upstream makes them so a container cannot trade a path inside its
//! volume for one on the host: the subPath is resolved (symlinks and all) and must stay inside
//! the volume; the result is then opened one element at a time without following links, and
//! the opened file is bind-mounted through `/proc/self/fd` onto a per-container path under the
//! pod's directory (`volume-subpaths/<volume>/<container>/<index>`), which is what the
//! runtime mounts into the container. A link swapped in between resolving and opening makes
//! the open fail; it never redirects the mount.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::mount;

/// Why a subPath cannot be mounted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("subPath {0:?} must be a relative path without '..'")]
    Escapes(String),
    #[error("subPath {sub:?} resolves to {resolved}, outside the volume {volume}")]
    Outside {
        sub: String,
        resolved: PathBuf,
        volume: PathBuf,
    },
    #[error("subPath {sub:?}: {what}: {source}")]
    Io {
        sub: String,
        what: String,
        source: io::Error,
    },
}

/// Where the bind mount of mount `index` of `container` from `volume` goes.
pub fn target(pod_dir: &Path, volume: &str, container: &str, index: usize) -> PathBuf {
    pod_dir
        .join("volume-subpaths")
        .join(volume)
        .join(container)
        .join(index.to_string())
}

/// Bind-mounts `sub` of the volume at `base` onto `target` (made, or re-made, here). A
/// missing subPath is made as a directory, as upstream does.
pub fn bind(base: &Path, sub: &str, target: &Path) -> Result<(), Error> {
    let io_err = |what: String| {
        let sub = sub.to_owned();
        move |source| Error::Io { sub, what, source }
    };
    let fd = open_beneath(base, sub)?;
    let meta = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(io_err("inspecting the opened path".into()))?;
    // A restarted container gets a fresh mount: the old one may name a file since replaced.
    mount::unmount(target).map_err(io_err(format!("unmounting {}", target.display())))?;
    let parent = target.parent().unwrap_or(target);
    std::fs::create_dir_all(parent).map_err(io_err(format!("creating {}", parent.display())))?;
    let made = if meta.is_dir() {
        std::fs::create_dir_all(target)
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(target)
            .map(drop)
    };
    made.map_err(io_err(format!("creating {}", target.display())))?;
    mount::bind_fd(fd.as_fd(), target)
        .map_err(io_err(format!("bind-mounting onto {}", target.display())))
}

/// Opens `sub` below `base` as an `O_PATH` descriptor: the path with its links resolved must
/// stay below `base`, and the resolved path is then opened without following any link.
pub fn open_beneath(base: &Path, sub: &str) -> Result<OwnedFd, Error> {
    let io_err = |what: String| {
        let sub = sub.to_owned();
        move |source| Error::Io { sub, what, source }
    };
    let parts: Vec<&std::ffi::OsStr> = Path::new(sub)
        .components()
        .map(|c| match c {
            Component::Normal(p) => Ok(Some(p)),
            Component::CurDir => Ok(None),
            _ => Err(Error::Escapes(sub.to_owned())),
        })
        .filter_map(Result::transpose)
        .collect::<Result<_, _>>()?;
    let root = base
        .canonicalize()
        .map_err(io_err(format!("resolving the volume {}", base.display())))?;
    // The part that exists, resolved as the host would resolve it; the rest is made below.
    let existing = parts
        .iter()
        .take_while({
            let mut p = root.clone();
            move |part| {
                p.push(part);
                std::fs::symlink_metadata(&p).is_ok()
            }
        })
        .count();
    let resolved = parts[..existing]
        .iter()
        .fold(root.clone(), |p, part| p.join(part))
        .canonicalize()
        .map_err(io_err("resolving".into()))?;
    let Ok(inside) = resolved.strip_prefix(&root) else {
        return Err(Error::Outside {
            sub: sub.to_owned(),
            resolved,
            volume: root,
        });
    };
    let mode = std::fs::metadata(&root)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o755);
    let mut fd =
        open_at(None, &root, true).map_err(io_err(format!("opening {}", root.display())))?;
    let names: Vec<&std::ffi::OsStr> = inside
        .components()
        .map(Component::as_os_str)
        .chain(parts[existing..].iter().copied())
        .collect();
    for (i, name) in names.iter().enumerate() {
        let last = i + 1 == names.len();
        let at = |fd: &OwnedFd| open_at(Some(fd), Path::new(name), !last);
        fd = match at(&fd) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                make_dir_at(&fd, name, mode).map_err(io_err(format!("creating {name:?}")))?;
                open_at(Some(&fd), Path::new(name), true)
            }
            other => other,
        }
        .map_err(io_err(format!("opening {name:?} without following links")))?;
        // An O_PATH|O_NOFOLLOW open of a link gives the link itself.
        if fd_is_link(&fd) {
            return Err(io_err(format!("{name:?} is a symbolic link"))(
                io::Error::from(io::ErrorKind::InvalidInput),
            ));
        }
    }
    Ok(fd)
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with a NUL byte"))
}

/// `openat(dir, name, O_PATH|O_NOFOLLOW|O_CLOEXEC)`, with `O_DIRECTORY` when `directory`.
fn open_at(dir: Option<&OwnedFd>, name: &Path, directory: bool) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    let mut flags = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    if directory {
        flags |= libc::O_DIRECTORY;
    }
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: openat(2) with a valid string; the returned descriptor is owned below.
    let fd = unsafe { libc::openat(dirfd, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `mkdirat(dir, name, mode)`; an existing entry is left for the open that follows to judge.
fn make_dir_at(dir: &OwnedFd, name: &std::ffi::OsStr, mode: u32) -> io::Result<()> {
    let c = cstr(Path::new(name))?;
    // SAFETY: mkdirat(2) with a valid descriptor and string.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) } != 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(e);
        }
    }
    Ok(())
}

/// Whether an `O_PATH` descriptor refers to a symbolic link.
fn fd_is_link(fd: &OwnedFd) -> bool {
    // SAFETY: fstat(2) on a valid descriptor into a zeroed stat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }) == 0
        && st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()
    }

    #[test]
    fn links_inside_resolve_links_outside_fail() {
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().join("vol");
        std::fs::create_dir_all(vol.join("data/sub")).unwrap();
        std::os::unix::fs::symlink("data", vol.join("inner")).unwrap();
        std::os::unix::fs::symlink("/", vol.join("root")).unwrap();
        std::os::unix::fs::symlink("/etc", vol.join("etc")).unwrap();
        std::os::unix::fs::symlink("../..", vol.join("data/up")).unwrap();

        let fd = open_beneath(&vol, "inner/sub").unwrap();
        assert_eq!(real(&fd), vol.canonicalize().unwrap().join("data/sub"));
        for bad in ["root", "etc", "data/up", "etc/passwd"] {
            assert!(
                matches!(open_beneath(&vol, bad), Err(Error::Outside { .. })),
                "{bad}"
            );
        }
        for bad in ["../x", "/abs", "a/../../b"] {
            assert!(
                matches!(open_beneath(&vol, bad), Err(Error::Escapes(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn missing_sub_paths_are_made() {
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().join("vol");
        std::fs::create_dir_all(&vol).unwrap();
        let fd = open_beneath(&vol, "a/./b").unwrap();
        assert_eq!(real(&fd), vol.canonicalize().unwrap().join("a/b"));
        assert!(vol.join("a/b").is_dir());
    }
}
