//! Writing credentials and configuration so that a crash never leaves half a file: the
//! certificate authority, kubeconfigs and a node's client certificate all go through here.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `contents` to `path` with permissions `mode`: into a temporary file beside it,
/// synced, then renamed over it. The parent directory is created when missing.
pub fn write_atomic(path: &Path, contents: &str, mode: u32) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_replaced_whole_with_their_mode() {
        let dir = std::env::temp_dir().join(format!("ekube-files-{}", std::process::id()));
        let path = dir.join("sub/kubelet.conf");
        super::write_atomic(&path, "one", 0o600).unwrap();
        super::write_atomic(&path, "two", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!path.with_extension("tmp").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
