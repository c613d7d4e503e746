//! Unpacking image layers into directories that overlayfs stacks as lower layers.
//!
//! Layers are untrusted: an entry may be named `../../x`, a symlink `a -> /` may be followed by
//! `a/etc/passwd`, a hard link may name `/etc/shadow`. So no path is followed by the kernel
//! outside the layer directory: each entry's parent is resolved inside it ([`inroot::Root`]) and
//! the entry itself is created, replaced or changed relative to that parent without following
//! its last component.
//!
//! OCI whiteouts become what overlayfs understands: a `.wh.<name>` entry turns into a 0:0
//! character device called `<name>` (hiding that name in the layers below), and
//! `.wh..wh..opq` marks its directory opaque with the `trusted.overlay.opaque` xattr (hiding
//! everything below). See the OCI image spec, "Representing Changes".

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};

use super::inroot::{self, Root};

/// Prefix of a whiteout entry.
const WHITEOUT: &[u8] = b".wh.";
/// Name of the opaque-directory marker.
const OPAQUE: &[u8] = b".wh..wh..opq";
/// The xattr overlayfs reads to treat a directory as opaque.
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// xattrs overlayfs interprets; only the unpacker sets them, never a layer's own entries.
const OVERLAY_XATTRS: &str = "trusted.overlay.";
/// PAX key prefix of an entry's xattrs.
const PAX_XATTR: &str = "SCHILY.xattr.";

/// Unpacks a (gzip-compressed or plain) tar layer into `dest`, which must exist.
pub fn unpack_layer(data: impl Read, dest: &Path) -> io::Result<()> {
    let root = Root::open(dest)?;
    let mut archive = tar::Archive::new(decompressed(data)?);
    // Entries added below a directory change its mtime, so directories get theirs at the end.
    let mut dir_times = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let Some(rel) = clean(&path) else {
            continue;
        };
        unpack_entry(&root, &rel, &mut entry, &mut dir_times).map_err(|e| {
            io::Error::new(e.kind(), format!("layer entry {}: {e}", path.display()))
        })?;
    }
    for (rel, times) in dir_times {
        // A later entry may have removed or replaced it; whatever is there now stays inside.
        if let Ok(dir) = root.open_dir(&rel) {
            rustix::fs::futimens(&dir, &times)?;
        }
    }
    Ok(())
}

/// The layer stream, gunzipped if it starts with the gzip magic.
fn decompressed<'a>(data: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut data = io::BufReader::new(data);
    let head = io::BufRead::fill_buf(&mut data)?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(data))
    } else {
        Box::new(data)
    })
}

/// The entry path made relative and free of `..`, `None` for the root itself.
fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn unpack_entry(
    root: &Root,
    rel: &Path,
    entry: &mut tar::Entry<'_, impl Read>,
    dir_times: &mut Vec<(PathBuf, Timestamps)>,
) -> io::Result<()> {
    let (dir, name) = root.parent_of(rel)?;
    let dir = dir.as_fd();
    if name.as_bytes() == OPAQUE {
        return Ok(rustix::fs::fsetxattr(
            dir,
            OPAQUE_XATTR,
            b"y",
            XattrFlags::empty(),
        )?);
    }
    if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT) {
        let hidden = OsStr::from_bytes(hidden);
        if Path::new(hidden).file_name() != Some(hidden) {
            return Err(invalid("whiteout of no plain name"));
        }
        inroot::remove_all(dir, hidden)?;
        return Ok(rustix::fs::mknodat(
            dir,
            hidden,
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        )?);
    }
    let meta = Meta::of(entry)?;
    let kind = entry.header().entry_type();
    match kind {
        tar::EntryType::Directory => {
            if inroot::file_type_at(dir, name)? != Some(FileType::Directory) {
                inroot::remove_all(dir, name)?;
                rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))?;
            }
            let fd = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            meta.apply_fd(fd.as_fd())?;
            dir_times.push((rel.to_owned(), meta.times()));
        }
        // Sparse entries read as their expanded content.
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            inroot::remove_all(dir, name)?;
            let mut file = File::from(rustix::fs::openat(
                dir,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?);
            io::copy(entry, &mut file)?;
            meta.apply_fd(file.as_fd())?;
            rustix::fs::futimens(&file, &meta.times())?;
        }
        tar::EntryType::Symlink => {
            let target = entry
                .link_name()?
                .ok_or_else(|| invalid("symlink without a target"))?;
            inroot::remove_all(dir, name)?;
            // The target is kept as written: it is resolved in the container's root, later.
            rustix::fs::symlinkat(&*target, dir, name)?;
            meta.apply_at(dir, name, false)?;
        }
        tar::EntryType::Link => {
            let target = entry
                .link_name()?
                .and_then(|t| clean(&t))
                .ok_or_else(|| invalid("hard link without a target"))?;
            // `/etc/passwd` and `d/x` with `d -> /` both name a file of this layer.
            let (target_dir, target_name) = root.existing_parent_of(&target)?;
            inroot::remove_all(dir, name)?;
            // No AT_SYMLINK_FOLLOW: a link to a symlink is a link to the symlink itself.
            rustix::fs::linkat(&target_dir, target_name, dir, name, AtFlags::empty())?;
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            let (file_type, dev) = match kind {
                tar::EntryType::Char => (FileType::CharacterDevice, device(entry.header())?),
                tar::EntryType::Block => (FileType::BlockDevice, device(entry.header())?),
                _ => (FileType::Fifo, 0),
            };
            inroot::remove_all(dir, name)?;
            rustix::fs::mknodat(dir, name, file_type, Mode::empty(), dev)?;
            meta.apply_at(dir, name, true)?;
        }
        other => tracing::debug!(path = %rel.display(), ?other, "skipping layer entry"),
    }
    Ok(())
}

/// The device number of a device entry.
fn device(header: &tar::Header) -> io::Result<rustix::fs::Dev> {
    let number = |n: Option<u32>| n.ok_or_else(|| invalid("device entry without a number"));
    Ok(rustix::fs::makedev(
        number(header.device_major()?)?,
        number(header.device_minor()?)?,
    ))
}

fn invalid(reason: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason)
}

/// Ownership, mode, modification time and xattrs of an entry.
struct Meta {
    uid: Uid,
    gid: Gid,
    /// Permission bits with setuid, setgid and sticky.
    mode: Mode,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Meta {
    fn of(entry: &mut tar::Entry<'_, impl Read>) -> io::Result<Self> {
        let header = entry.header();
        let id = |v: u64| {
            // u32::MAX is -1, "leave unchanged", to chown.
            u32::try_from(v)
                .ok()
                .filter(|v| *v != u32::MAX)
                .ok_or_else(|| invalid("owner id out of range"))
        };
        let uid = Uid::from_raw(id(header.uid()?)?);
        let gid = Gid::from_raw(id(header.gid()?)?);
        let mode = Mode::from_raw_mode(header.mode()? & 0o7777);
        let mtime = i64::try_from(header.mtime()?).map_err(|_| invalid("mtime out of range"))?;
        let mut xattrs = Vec::new();
        for ext in entry.pax_extensions()?.into_iter().flatten() {
            let ext = ext?;
            let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix(PAX_XATTR)) else {
                continue;
            };
            if !name.starts_with(OVERLAY_XATTRS) {
                xattrs.push((name.to_owned(), ext.value_bytes().to_vec()));
            }
        }
        Ok(Self {
            uid,
            gid,
            mode,
            mtime,
            xattrs,
        })
    }

    fn times(&self) -> Timestamps {
        let t = Timespec {
            tv_sec: self.mtime,
            tv_nsec: 0,
        };
        Timestamps {
            last_access: t,
            last_modification: t,
        }
    }

    /// Owner, then mode (a chown clears setuid bits), then xattrs (a chown also clears
    /// `security.capability`) of an open file or directory; times are the caller's.
    fn apply_fd(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        rustix::fs::fchown(fd, Some(self.uid), Some(self.gid))?;
        rustix::fs::fchmod(fd, self.mode)?;
        for (name, value) in &self.xattrs {
            rustix::fs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty())?;
        }
        Ok(())
    }

    /// Owner, mode (`chmod`, unless a symlink) and times of `name` in `dir`, a node that
    /// cannot be opened safely (symlinks, devices, fifos); its xattrs are not kept.
    fn apply_at(&self, dir: BorrowedFd<'_>, name: &OsStr, chmod: bool) -> io::Result<()> {
        let nofollow = AtFlags::SYMLINK_NOFOLLOW;
        rustix::fs::chownat(dir, name, Some(self.uid), Some(self.gid), nofollow)?;
        if chmod {
            // Linux has no chmod without following; `name` was just made by mknodat in a
            // directory only this unpacker writes to, so it is no symlink.
            rustix::fs::chmodat(dir, name, self.mode, AtFlags::empty())?;
        }
        Ok(rustix::fs::utimensat(dir, name, &self.times(), nofollow)?)
    }
}

#[cfg(test)]
mod tests;
