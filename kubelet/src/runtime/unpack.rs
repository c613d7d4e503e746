//! Unpacking image layers into directories that overlayfs stacks as lower layers.
//!
//! OCI whiteouts become what overlayfs understands: a `.wh.<name>` entry turns into a 0:0
//! character device called `<name>` (hiding that name in the layers below), and
//! `.wh..wh..opq` marks its directory opaque with the `trusted.overlay.opaque` xattr (hiding
//! everything below). See the OCI image spec, "Representing Changes".

use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Prefix of a whiteout entry.
const WHITEOUT: &str = ".wh.";
/// Name of the opaque-directory marker.
const OPAQUE: &str = ".wh..wh..opq";

/// Unpacks a (gzip-compressed or plain) tar layer into `dest`, which must exist.
pub fn unpack_layer(data: impl Read, dest: &Path) -> std::io::Result<()> {
    let mut data = std::io::BufReader::new(data);
    let gzip = {
        let head = std::io::BufRead::fill_buf(&mut data)?;
        head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b
    };
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(data))
    } else {
        Box::new(data)
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let Some(rel) = clean(&path) else {
            continue;
        };
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = dest.join(rel.parent().unwrap_or(Path::new("")));
        if name == OPAQUE {
            std::fs::create_dir_all(&parent)?;
            set_xattr(&parent, "trusted.overlay.opaque", b"y")?;
        } else if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            std::fs::create_dir_all(&parent)?;
            let target = parent.join(hidden);
            let _ = std::fs::remove_dir_all(&target);
            let _ = std::fs::remove_file(&target);
            mknod_whiteout(&target)?;
        } else {
            entry.unpack_in(dest)?;
        }
    }
    Ok(())
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

fn cstr(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let p = cstr(path)?;
    let n = CString::new(name).map_err(std::io::Error::other)?;
    // SAFETY: valid C strings and a buffer of the given length.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn mknod_whiteout(path: &Path) -> std::io::Result<()> {
    let p = cstr(path)?;
    // SAFETY: a valid C string; device 0:0 is the overlayfs whiteout.
    let rc = unsafe { libc::mknod(p.as_ptr(), libc::S_IFCHR | 0o000, libc::makedev(0, 0)) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn layer(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match data {
                Some(d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(d.len() as u64);
                    h.set_mode(0o644);
                    b.append_data(&mut h, path, *d).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, std::io::empty()).unwrap();
                }
            }
        }
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn whiteouts_become_overlay_markers() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            panic!("unpacking whiteouts needs root (mknod, trusted xattrs); CI runs as root");
        }
        let dir = tempfile::tempdir().unwrap();
        let data = layer(&[
            ("etc/", None),
            ("etc/motd", Some(b"hi")),
            ("etc/.wh.passwd", Some(b"")),
            ("var/", None),
            ("var/.wh..wh..opq", Some(b"")),
        ]);
        unpack_layer(&data[..], dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("etc/motd")).unwrap(), b"hi");
        let wh = std::fs::symlink_metadata(dir.path().join("etc/passwd")).unwrap();
        assert!(wh.file_type().is_char_device());
        assert!(!dir.path().join("etc/.wh.passwd").exists());
        let mut buf = [0u8; 4];
        let p = cstr(&dir.path().join("var")).unwrap();
        let n = CString::new("trusted.overlay.opaque").unwrap();
        // SAFETY: valid strings and buffer.
        let len =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!(&buf[..len as usize], b"y");
        assert_eq!(clean(Path::new("../a/./b")), Some(PathBuf::from("a/b")));
        assert_eq!(clean(Path::new("./")), None);
    }
}
