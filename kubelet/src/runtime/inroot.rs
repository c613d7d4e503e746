//! A directory used as a root that paths cannot leave, for writing untrusted trees into it.
//!
//! Every lookup goes through `openat2(2)` with `RESOLVE_IN_ROOT` (absolute symlinks and `..`
//! stop at the root, as after a chroot) and `RESOLVE_NO_MAGICLINKS` (no `/proc/self/fd/N`
//! jumps). Changes are then made relative to the directory fd such a lookup returned, on a last
//! component that is never followed. Layer unpacking ([`super::unpack`]) builds on this, so
//! symlinks planted by earlier entries of a hostile layer cannot send later ones elsewhere.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// How every path below the root is resolved.
const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);
/// Opening a directory to work in (readable, so it can also be listed and get xattrs).
const DIR: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);
/// Mode of directories a tree implies but does not list.
const IMPLIED_DIR_MODE: u32 = 0o755;

/// An open directory that paths are resolved inside of.
pub struct Root {
    fd: OwnedFd,
}

impl Root {
    /// Opens `path`, which must be a directory and not a symlink.
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = rustix::fs::open(path, DIR | OFlags::NOFOLLOW, Mode::empty())?;
        Ok(Self { fd })
    }

    /// Opens the directory `rel` (`""` is the root itself).
    pub fn open_dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        Ok(rustix::fs::openat2(
            &self.fd,
            rel,
            DIR,
            Mode::empty(),
            RESOLVE,
        )?)
    }

    /// Opens the directory `rel`, making it and missing parents (mode 0755) first.
    ///
    /// A component that exists but is no directory, or a symlink whose target is missing,
    /// is an error: nothing is created through a dangling symlink.
    pub fn create_dir_all(&self, rel: &Path) -> io::Result<OwnedFd> {
        match self.open_dir(rel) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let (parent, name) = self.parent_of(rel)?;
                match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(IMPLIED_DIR_MODE)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                Ok(rustix::fs::openat(
                    &parent,
                    name,
                    DIR | OFlags::NOFOLLOW,
                    Mode::empty(),
                )?)
            }
            opened => opened,
        }
    }

    /// The directory holding `rel` (made where missing) and `rel`'s last component, which
    /// must be a plain name.
    pub fn parent_of<'p>(&self, rel: &'p Path) -> io::Result<(OwnedFd, &'p OsStr)> {
        let name = plain_name(rel)?;
        let dir = self.create_dir_all(rel.parent().unwrap_or(Path::new("")))?;
        Ok((dir, name))
    }

    /// The existing directory holding `rel` and `rel`'s last component.
    pub fn existing_parent_of<'p>(&self, rel: &'p Path) -> io::Result<(OwnedFd, &'p OsStr)> {
        let name = plain_name(rel)?;
        let dir = self.open_dir(rel.parent().unwrap_or(Path::new("")))?;
        Ok((dir, name))
    }
}

/// The last component of `rel` if it is a name (not `.`, `..` or empty).
fn plain_name(rel: &Path) -> io::Result<&OsStr> {
    rel.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not end in a file name", rel.display()),
        )
    })
}

/// What `name` in `dir` is, without following a symlink; `None` if it does not exist.
pub fn file_type_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<FileType>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Removes `name` in `dir`, a directory with everything below it; a missing name is fine.
/// Symlinks are removed, never followed.
pub fn remove_all(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match file_type_at(dir, name)? {
        None => Ok(()),
        Some(FileType::Directory) => {
            let sub = rustix::fs::openat(dir, name, DIR | OFlags::NOFOLLOW, Mode::empty())?;
            // Names first, then removal: the listing does not race its own deletions.
            let mut names = Vec::new();
            for entry in rustix::fs::Dir::read_from(&sub)? {
                let entry = entry?;
                let n = entry.file_name().to_bytes();
                if n != b"." && n != b".." {
                    names.push(OsString::from_vec(n.to_vec()));
                }
            }
            for n in &names {
                remove_all(sub.as_fd(), n)?;
            }
            Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
        }
        Some(_) => Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?),
    }
}
