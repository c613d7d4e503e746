//! The add-ons' image, `ekube.local/ekube:<version>` (DESIGN.md §11): made at runtime start
//! from the running binary and imported into the node's image store, so that the add-ons
//! (`ekube dns`, …) run as ordinary pods without pulling anything.
//!
//! Its one layer holds the binary as `/usr/bin/ekube`, the shared libraries the process has
//! mapped (from `/proc/self/maps`, where the loader found them) and the ELF interpreter at the
//! path the binary names (`PT_INTERP`). The tar is written deterministically (owner 0, time 0),
//! so the same binary gives the same image ID on every node; a stamp of the binary's identity
//! skips the work when the store already holds its image.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::image::ImageStore;
use super::{Error, Result};

/// The registry name of images the node makes itself; they cannot be pulled, so image garbage
/// collection leaves them (they are reported `pinned`).
pub const REGISTRY: &str = "ekube.local";

/// `ekube.local/ekube:<version>`.
pub fn reference() -> String {
    format!("{REGISTRY}/ekube:{}", env!("CARGO_PKG_VERSION"))
}

/// Whether an image tag is one the node makes itself.
pub fn is_local(tag: &str) -> bool {
    tag.strip_prefix(REGISTRY)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Imports the add-on image made from the running binary, unless the store holds it already.
pub async fn import(store: &ImageStore) -> Result<String> {
    let exe =
        std::fs::read_link("/proc/self/exe").map_err(Error::io("reading", "/proc/self/exe"))?;
    let meta = std::fs::metadata(&exe).map_err(Error::io("reading", &exe))?;
    let stamp = format!(
        "{} {} {} {} {}\n",
        reference(),
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime_nsec() + meta.mtime() * 1_000_000_000
    );
    let stamp_path = store.root().join("addon-image.stamp");
    if std::fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp)
        && store.find(&reference()).is_some()
    {
        return Ok(reference());
    }
    let files = contents(&exe)?;
    let layer = tokio::task::spawn_blocking(move || layer(&files))
        .await
        .map_err(|e| Error::Sandbox(format!("building the add-on image: {e}")))??;
    let env = format!("LD_LIBRARY_PATH={}", library_path(&layer.1).join(":"));
    store
        .import_built(&reference(), layer.0, image_config(&env))
        .await?;
    std::fs::write(&stamp_path, stamp).map_err(Error::io("writing", &stamp_path))?;
    tracing::info!(image = %reference(), binary = %exe.display(), "imported the add-on image");
    Ok(reference())
}

/// (path in the image, path on this host) of every file the image holds.
fn contents(exe: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let mut files = vec![(PathBuf::from("usr/bin/ekube"), exe.to_owned())];
    if let Some(interp) = interpreter(exe)? {
        files.push((strip_root(&interp), interp));
    }
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(Error::io("reading", "/proc/self/maps"))?;
    for lib in mapped_libraries(&maps) {
        files.push((strip_root(&lib), lib));
    }
    let mut seen = BTreeSet::new();
    files.retain(|(inside, _)| seen.insert(inside.clone()));
    Ok(files)
}

fn strip_root(p: &Path) -> PathBuf {
    p.strip_prefix("/").unwrap_or(p).to_owned()
}

/// The shared objects a process has mapped, from its `/proc/<pid>/maps`.
fn mapped_libraries(maps: &str) -> BTreeSet<PathBuf> {
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with('/'))
        .filter(|p| {
            let name = p.rsplit('/').next().unwrap_or_default();
            name.ends_with(".so") || name.contains(".so.")
        })
        .map(PathBuf::from)
        .collect()
}

/// The ELF interpreter (`PT_INTERP`) a 64-bit little-endian executable names; `None` for a
/// static one.
fn interpreter(exe: &Path) -> Result<Option<PathBuf>> {
    let mut head = vec![0u8; 64 * 1024];
    let mut file = std::fs::File::open(exe).map_err(Error::io("opening", exe))?;
    let n = file.read(&mut head).map_err(Error::io("reading", exe))?;
    head.truncate(n);
    Ok(elf_interpreter(&head))
}

fn elf_interpreter(head: &[u8]) -> Option<PathBuf> {
    const PT_INTERP: u32 = 3;
    if head.get(..4)? != b"\x7fELF" || head.get(4)? != &2 || head.get(5)? != &1 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(head.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(head.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| {
        let v = u64::from_le_bytes(head.get(o..o + 8)?.try_into().ok()?);
        usize::try_from(v).ok()
    };
    let (phoff, phentsize, phnum) = (u64_at(0x20)?, usize::from(u16_at(0x36)?), u16_at(0x38)?);
    (0..usize::from(phnum))
        .map(|i| phoff + i * phentsize)
        .find(|&ph| u32_at(ph) == Some(PT_INTERP))
        .and_then(|ph| {
            let (offset, size) = (u64_at(ph + 8)?, u64_at(ph + 32)?);
            let bytes = head.get(offset..offset + size)?;
            let path = bytes.split(|b| *b == 0).next()?;
            Some(PathBuf::from(std::str::from_utf8(path).ok()?))
        })
}

/// The directories the libraries went to, for `LD_LIBRARY_PATH` (the image has no
/// `ld.so.cache`).
fn library_path(files: &[PathBuf]) -> Vec<String> {
    let dirs: BTreeSet<String> = files
        .iter()
        .filter(|p| !p.ends_with("usr/bin/ekube"))
        .filter_map(|p| Some(format!("/{}", p.parent()?.display())))
        .collect();
    dirs.into_iter().collect()
}

/// The layer's tar, and the image paths it holds.
fn layer(files: &[(PathBuf, PathBuf)]) -> Result<(Vec<u8>, Vec<PathBuf>)> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut dirs = BTreeSet::new();
    for (inside, _) in files {
        for dir in inside
            .ancestors()
            .skip(1)
            .filter(|d| !d.as_os_str().is_empty())
        {
            dirs.insert(dir.to_owned());
        }
    }
    dirs.insert(PathBuf::from("tmp"));
    let io = |e| Error::io("building the add-on image layer", "tar")(e);
    for dir in &dirs {
        let mode = if dir == Path::new("tmp") {
            0o1777
        } else {
            0o755
        };
        let mut h = header(tar::EntryType::Directory, mode, 0);
        tar.append_data(&mut h, dir, std::io::empty()).map_err(io)?;
    }
    for (inside, host) in files {
        let data = std::fs::read(host).map_err(Error::io("reading", host))?;
        let mut h = header(tar::EntryType::Regular, 0o755, data.len() as u64);
        tar.append_data(&mut h, inside, data.as_slice())
            .map_err(io)?;
    }
    let bytes = tar.into_inner().map_err(io)?;
    Ok((bytes, files.iter().map(|(i, _)| i.clone()).collect()))
}

/// A header owned by root, dated the epoch.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// The image config: the binary as entrypoint.
fn image_config(env: &str) -> serde_json::Value {
    serde_json::json!({
        "architecture": oci_spec::image::Arch::default().to_string(),
        "os": "linux",
        "config": {
            "Entrypoint": ["/usr/bin/ekube"],
            "Env": ["PATH=/usr/bin:/bin", env],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_objects_of_a_maps_file() {
        let maps = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 fe:01 123 /usr/bin/ekube
7f1c00000000-7f1c00021000 r-xp 00000000 fe:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7f1c00100000-7f1c00121000 r-xp 00000000 fe:01 457 /usr/lib/x86_64-linux-gnu/libc.so.6
7f1c00200000-7f1c00221000 r-xp 00000000 fe:01 458 /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
7f1c00300000-7f1c00321000 r-xp 00000000 fe:01 459 /usr/lib/libfoo.so
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
7ffd00100000-7ffd00101000 r-xp 00000000 00:00 0 [vdso]
7ffd00200000-7ffd00201000 rw-p 00000000 00:00 0
";
        let libs: Vec<_> = mapped_libraries(maps).into_iter().collect();
        assert_eq!(
            libs,
            vec![
                PathBuf::from("/usr/lib/libfoo.so"),
                PathBuf::from("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
                PathBuf::from("/usr/lib/x86_64-linux-gnu/libc.so.6"),
            ]
        );
    }

    #[test]
    fn the_interpreter_of_this_test_binary() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        // The workspace links dynamically: a test binary names its loader, and it exists.
        let p = interpreter(&exe)
            .unwrap()
            .expect("a dynamically linked test binary names its ELF interpreter");
        assert!(p.is_absolute() && p.exists(), "{}", p.display());
        assert_eq!(elf_interpreter(b"not an elf"), None);
        assert_eq!(
            elf_interpreter(b"\x7fELF\x02\x01"),
            None,
            "truncated header"
        );
    }

    #[test]
    fn the_layer_is_deterministic_and_complete() {
        let dir = std::env::temp_dir().join(format!("addon-image-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("bin");
        std::fs::write(&bin, b"\x7fELF binary").unwrap();
        let files = vec![(PathBuf::from("usr/bin/ekube"), bin.clone())];
        let (a, paths) = layer(&files).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&bin, b"\x7fELF binary").unwrap();
        let (b, _) = layer(&files).unwrap();
        assert_eq!(a, b, "the same files give the same bytes");
        let mut names: Vec<String> = tar::Archive::new(a.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, vec!["tmp", "usr", "usr/bin", "usr/bin/ekube"]);
        // The runtime unpacks it as any pulled layer.
        let unpacked = dir.join("unpacked");
        std::fs::create_dir_all(&unpacked).unwrap();
        crate::runtime::unpack::unpack_layer(a.as_slice(), &unpacked).unwrap();
        assert_eq!(
            std::fs::read(unpacked.join("usr/bin/ekube")).unwrap(),
            b"\x7fELF binary"
        );
        assert_eq!(library_path(&paths), Vec::<String>::new());
        assert_eq!(
            library_path(&[
                PathBuf::from("usr/lib/x/libc.so.6"),
                PathBuf::from("lib64/ld.so")
            ]),
            vec!["/lib64".to_string(), "/usr/lib/x".to_string()]
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(is_local("ekube.local/ekube:0.1.0"));
        assert!(!is_local("ekube.localhost/x:1"));
    }
}
