//! Writes the files of configMap, secret, downwardAPI and projected volumes the way upstream's
//! atomic writer does, so a container sees either the old or the new set of files, never a mix:
//!
//! ```text
//! <volume>/..2026_12_03_06_56_29.1234567/   the payload (files, subdirectories)
//! <volume>/..data -> ..2026_12_03_06_56_29.1234567
//! <volume>/<name> -> ..data/<name>          one per top-level payload entry
//! ```
//!
//! An update writes a fresh timestamped directory, points `..data_tmp` at it and renames that
//! over `..data` (one atomic step), fixes the top-level links and removes the old directory.
//! Nothing is ever written through an existing path: the payload goes into a directory made
//! just now with exclusive creates, and old entries are removed without following links, so
//! whatever a container left in the volume cannot redirect a write to the host.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The link naming the current payload directory.
const DATA_LINK: &str = "..data";
/// The link renamed over [`DATA_LINK`].
const NEW_DATA_LINK: &str = "..data_tmp";

/// One file of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub data: Vec<u8>,
    /// Permission bits (e.g. `0o644`).
    pub mode: u32,
}

/// A volume's files by path relative to the volume.
pub type Payload = BTreeMap<String, File>;

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Refuses a payload path that would leave the volume or collide with the writer's own
/// `..`-prefixed names (the apiserver refuses them too; pods stored before it did are not).
fn check_path(path: &str) -> io::Result<()> {
    if path.is_empty() {
        return Err(invalid("empty file path".into()));
    }
    if path.starts_with('/') {
        return Err(invalid(format!("file path {path:?} must be relative")));
    }
    if path.split('/').any(|p| p == "..") {
        return Err(invalid(format!("file path {path:?} must not contain '..'")));
    }
    if path.starts_with("..") {
        return Err(invalid(format!(
            "file path {path:?} must not start with '..'"
        )));
    }
    Ok(())
}

/// The first element of a payload path: what gets a link in the volume's top directory.
fn top_level(path: &str) -> &str {
    path.split('/')
        .find(|p| !p.is_empty() && *p != ".")
        .unwrap_or(path)
}

/// Writes `payload` into `dir` (made if missing); returns whether anything changed.
pub fn write(dir: &Path, payload: &Payload) -> io::Result<bool> {
    for path in payload.keys() {
        check_path(path)?;
    }
    fs::create_dir_all(dir)?;
    let old = current_payload_dir(dir);
    if let Some(old) = &old
        && read_payload(&dir.join(old)).is_ok_and(|p| &p == payload)
    {
        link_top_level(dir, payload)?;
        return Ok(false);
    }
    let new = make_payload_dir(dir)?;
    if let Err(e) = write_payload(&dir.join(&new), payload) {
        let _ = fs::remove_dir_all(dir.join(&new));
        return Err(e);
    }
    let tmp = dir.join(NEW_DATA_LINK);
    remove_entry(&tmp)?;
    std::os::unix::fs::symlink(&new, &tmp)?;
    fs::rename(&tmp, dir.join(DATA_LINK))?;
    link_top_level(dir, payload)?;
    remove_old_payloads(dir, &new)?;
    Ok(true)
}

/// Removes every payload directory but `keep`: the one `..data` named before, and any an
/// interrupted write left.
fn remove_old_payloads(dir: &Path, keep: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if is_payload_name(Path::new(&name)) && name != keep.as_os_str() {
            remove_entry(&entry.path())?;
        }
    }
    Ok(())
}

/// Whether `name` is a payload directory's name: `..`-prefixed, not one of the two links.
fn is_payload_name(name: &Path) -> bool {
    name.to_string_lossy().starts_with("..")
        && name != Path::new(DATA_LINK)
        && name != Path::new(NEW_DATA_LINK)
}

/// The payload directory `..data` names, when it names one of ours: a directory (not a link)
/// with a single `..`-prefixed name in `dir`.
fn current_payload_dir(dir: &Path) -> Option<PathBuf> {
    let target = fs::read_link(dir.join(DATA_LINK)).ok()?;
    let single = matches!(
        target.components().collect::<Vec<_>>()[..],
        [Component::Normal(_)]
    );
    (single
        && is_payload_name(&target)
        && fs::symlink_metadata(dir.join(&target)).is_ok_and(|m| m.is_dir()))
    .then_some(target)
}

/// Makes a new, empty payload directory in `dir`; returns its name.
fn make_payload_dir(dir: &Path) -> io::Result<PathBuf> {
    let stamp = ekube_api::time::Timestamp::now().strftime("..%Y_%m_%d_%H_%M_%S.");
    loop {
        let name = PathBuf::from(format!("{stamp}{}", rand::random::<u32>()));
        match fs::create_dir(dir.join(&name)) {
            Ok(()) => {
                fs::set_permissions(dir.join(&name), fs::Permissions::from_mode(0o755))?;
                return Ok(name);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Writes every file into the fresh directory `root` with exclusive creates.
fn write_payload(root: &Path, payload: &Payload) -> io::Result<()> {
    for (path, file) in payload {
        let p = root.join(path);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file.mode)
            .open(&p)
            .map_err(|e| io::Error::new(e.kind(), format!("writing {path:?}: {e}")))?;
        f.write_all(&file.data)?;
        // The umask trimmed the creation mode.
        f.set_permissions(fs::Permissions::from_mode(file.mode))?;
    }
    Ok(())
}

/// The regular files below `root` as a payload (symlinks and other entries make it differ).
fn read_payload(root: &Path) -> io::Result<Payload> {
    let mut out = Payload::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(root.join(&rel))? {
            let entry = entry?;
            let rel = rel.join(entry.file_name());
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(rel);
            } else if meta.is_file() {
                out.insert(
                    rel.to_string_lossy().into_owned(),
                    File {
                        data: fs::read(entry.path())?,
                        mode: meta.permissions().mode() & 0o7777,
                    },
                );
            } else {
                return Err(invalid(format!("unexpected entry {}", rel.display())));
            }
        }
    }
    Ok(out)
}

/// Removes a file, link or directory at `path` without following links; absent is fine.
fn remove_entry(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Points `<dir>/<name>` at `..data/<name>` for each top-level name of the payload, and
/// removes the links of names the payload no longer has.
fn link_top_level(dir: &Path, payload: &Payload) -> io::Result<()> {
    let names: BTreeSet<&str> = payload.keys().map(|p| top_level(p)).collect();
    for name in &names {
        let link = dir.join(name);
        let want = Path::new(DATA_LINK).join(name);
        if fs::read_link(&link).is_ok_and(|t| t == want) {
            continue;
        }
        remove_entry(&link)?;
        std::os::unix::fs::symlink(&want, &link)?;
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") || names.contains(name.as_str()) {
            continue;
        }
        if fs::read_link(entry.path()).is_ok_and(|t| t.starts_with(DATA_LINK)) {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(files: &[(&str, &str, u32)]) -> Payload {
        files
            .iter()
            .map(|(p, d, m)| {
                (
                    p.to_string(),
                    File {
                        data: d.as_bytes().to_vec(),
                        mode: *m,
                    },
                )
            })
            .collect()
    }

    fn entries(dir: &Path) -> BTreeSet<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn layout_is_upstreams() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        let p = payload(&[("a", "1", 0o644), ("sub/b", "2", 0o400)]);
        assert!(write(&dir, &p).unwrap());
        let data = fs::read_link(dir.join("..data")).unwrap();
        assert!(data.to_string_lossy().starts_with("..20"), "{data:?}");
        assert_eq!(fs::read_link(dir.join("a")).unwrap(), Path::new("..data/a"));
        assert_eq!(
            fs::read_link(dir.join("sub")).unwrap(),
            Path::new("..data/sub")
        );
        assert_eq!(fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        let mode = |p: &str| fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode("a"), mode("sub/b")), (0o644, 0o400));
        assert_eq!(
            entries(&dir),
            ["..data", "a", "sub", data.to_str().unwrap()]
                .map(String::from)
                .into()
        );
        // The same payload again changes nothing.
        assert!(!write(&dir, &p).unwrap());
        assert_eq!(fs::read_link(dir.join("..data")).unwrap(), data);
    }

    #[test]
    fn update_swaps_data_and_removes_the_old_payload() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        write(&dir, &payload(&[("a", "1", 0o644), ("gone", "x", 0o644)])).unwrap();
        let old = fs::read_link(dir.join("..data")).unwrap();
        assert!(write(&dir, &payload(&[("a", "2", 0o600), ("new", "y", 0o644)])).unwrap());
        let new = fs::read_link(dir.join("..data")).unwrap();
        assert_ne!(old, new);
        assert!(!dir.join(&old).exists(), "old payload directory left");
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "2");
        assert_eq!(
            fs::metadata(dir.join("a")).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            entries(&dir),
            ["..data", "a", "new", new.to_str().unwrap()]
                .map(String::from)
                .into()
        );
    }

    #[test]
    fn planted_links_are_replaced_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        let sentinel = tmp.path().join("sentinel");
        fs::write(&sentinel, "host").unwrap();
        write(&dir, &payload(&[("labels", "a", 0o644)])).unwrap();
        // What a container with write access could leave: every name a link to the host.
        for name in ["labels", "..data", "..data_tmp"] {
            let _ = remove_entry(&dir.join(name));
            std::os::unix::fs::symlink(&sentinel, dir.join(name)).unwrap();
        }
        assert!(write(&dir, &payload(&[("labels", "b", 0o644)])).unwrap());
        assert_eq!(fs::read_to_string(&sentinel).unwrap(), "host");
        assert_eq!(fs::read_to_string(dir.join("labels")).unwrap(), "b");
        assert!(fs::symlink_metadata(&sentinel).unwrap().is_file());
    }

    #[test]
    fn paths_outside_the_volume_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for bad in ["../x", "/etc/passwd", "a/../../x", "..data", ""] {
            let err = write(&tmp.path().join("v"), &payload(&[(bad, "x", 0o644)])).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
        assert!(!tmp.path().join("x").exists());
    }
}
