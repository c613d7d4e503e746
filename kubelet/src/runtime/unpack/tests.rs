//! Ordinary layers unpack with everything real images carry; hostile ones change nothing
//! outside the layer directory. These need root (mknod, chown, trusted xattrs); CI runs as root.

use super::*;
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "unpacking layers needs root (mknod, chown, trusted xattrs)"
    );
}

/// What a test layer entry is.
enum Kind<'a> {
    Dir,
    File(&'a [u8]),
    Symlink(&'a str),
    Link(&'a str),
    Char(u32, u32),
    Fifo,
}

/// One test layer entry; its name is written as given, `..` and leading `/` included.
struct Entry<'a> {
    path: String,
    kind: Kind<'a>,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    xattrs: Vec<(&'a str, &'a [u8])>,
}

fn entry<'a>(path: impl Into<String>, kind: Kind<'a>) -> Entry<'a> {
    let mode = if matches!(kind, Kind::Dir) {
        0o755
    } else {
        0o644
    };
    Entry {
        path: path.into(),
        kind,
        mode,
        uid: 0,
        gid: 0,
        mtime: 1_000_000,
        xattrs: Vec::new(),
    }
}

/// A plain tar stream of `entries`, names and link targets written unchecked.
fn layer(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        if !e.xattrs.is_empty() {
            let keys: Vec<String> = e
                .xattrs
                .iter()
                .map(|(k, _)| format!("SCHILY.xattr.{k}"))
                .collect();
            b.append_pax_extensions(
                keys.iter()
                    .map(String::as_str)
                    .zip(e.xattrs.iter().map(|(_, v)| *v)),
            )
            .unwrap();
        }
        let mut h = tar::Header::new_ustar();
        let name = e.path.as_bytes();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        h.set_size(0);
        let mut data: &[u8] = &[];
        match e.kind {
            Kind::Dir => h.set_entry_type(tar::EntryType::Directory),
            Kind::File(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(d.len() as u64);
                data = d;
            }
            Kind::Symlink(t) | Kind::Link(t) => {
                let kind = match e.kind {
                    Kind::Symlink(_) => tar::EntryType::Symlink,
                    _ => tar::EntryType::Link,
                };
                h.set_entry_type(kind);
                h.set_link_name_literal(t).unwrap();
            }
            Kind::Char(major, minor) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_device_major(major).unwrap();
                h.set_device_minor(minor).unwrap();
            }
            Kind::Fifo => h.set_entry_type(tar::EntryType::Fifo),
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    io::Write::write_all(&mut gz, data).unwrap();
    gz.finish().unwrap()
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = [0u8; 64];
    let n = rustix::fs::lgetxattr(path, name, &mut buf).ok()?;
    Some(buf[..n].to_vec())
}

/// Everything under `dir` but `skip`, symlinks not followed: what any write would change.
fn snapshot(dir: &Path, skip: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(p) = todo.pop() {
        if p == skip {
            continue;
        }
        let m = std::fs::symlink_metadata(&p).unwrap();
        let content = if m.is_file() {
            String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned()
        } else if m.is_symlink() {
            std::fs::read_link(&p).unwrap().display().to_string()
        } else {
            String::new()
        };
        let state = format!(
            "{:?} mode={:o} uid={} nlink={} mtime={}.{} opaque={:?} {content}",
            m.file_type(),
            m.mode(),
            m.uid(),
            m.nlink(),
            m.mtime(),
            m.mtime_nsec(),
            xattr(&p, OPAQUE_XATTR),
        );
        out.insert(p.clone(), state);
        if m.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out
}

/// A sandbox with sentinels and an empty layer root two levels down, so `../..` from the root
/// lands in the sandbox where a wrong write would show.
struct Sandbox {
    dir: tempfile::TempDir,
    root: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("layers/root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(dir.path().join("x"), "keep").unwrap();
        std::fs::write(dir.path().join("layers/sentinel"), "keep").unwrap();
        Self { dir, root }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn outside(&self) -> BTreeMap<PathBuf, String> {
        snapshot(self.path(), &self.root)
    }
}

fn inode(p: &Path) -> (u64, u64) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.dev(), m.ino())
}

#[test]
fn hostile_entries_stay_inside_the_root() {
    require_root();
    let sb = Sandbox::new();
    let before = sb.outside();
    // Names under the real `/` that only an escape through `a -> /` would create.
    let unique = format!("ekube-unpack-escape-{}", std::process::id());
    let sandbox = sb.path().display().to_string();
    let data = layer(&[
        entry("etc/passwd", Kind::File(b"inside")),
        entry("a", Kind::Symlink("/")),
        entry(format!("a/.wh.{unique}"), Kind::File(b"")),
        entry(format!("a/{unique}"), Kind::File(b"through a")),
        entry("../../x", Kind::File(b"dotdot")),
        entry("../y", Kind::File(b"dotdot")),
        entry("/abs", Kind::File(b"absolute")),
        entry("b", Kind::Symlink("c")),
        entry("c", Kind::Symlink("../..")),
        entry("b/chain", Kind::File(b"through b")),
        entry("o", Kind::Symlink("../..")),
        entry("o/.wh..wh..opq", Kind::File(b"")),
        entry("o/.wh.x", Kind::File(b"")),
        entry("hl-abs", Kind::Link("/etc/passwd")),
        entry("d", Kind::Symlink("/")),
        entry("hl-sym", Kind::Link("d/etc/passwd")),
        entry("hl-up", Kind::Link("../../../etc/passwd")),
        // The sandbox's own path exists in the layer too, so `s` is no dangling symlink.
        entry(format!("{}/marker", &sandbox[1..]), Kind::File(b"")),
        entry("s", Kind::Symlink(&sandbox)),
        entry("s/evil", Kind::File(b"through s")),
        entry("s/layers/evil", Kind::Dir),
        // A file replaces the symlink of the same name instead of writing through it.
        entry("up", Kind::Symlink("../../x")),
        entry("up", Kind::File(b"replaced")),
    ]);
    unpack_layer(&data[..], &sb.root).unwrap();

    assert_eq!(
        sb.outside(),
        before,
        "something outside the layer root changed"
    );
    assert!(
        !Path::new("/").join(&unique).exists(),
        "/{unique} was created"
    );
    let r = &sb.root;
    let whiteout = std::fs::symlink_metadata(r.join("x")).unwrap();
    assert!(
        whiteout.file_type().is_char_device() && whiteout.rdev() == 0,
        "o/.wh.x"
    );
    assert!(
        std::fs::symlink_metadata(r.join(&unique))
            .unwrap()
            .is_file()
    );
    assert_eq!(std::fs::read(r.join("y")).unwrap(), b"dotdot");
    assert_eq!(std::fs::read(r.join("abs")).unwrap(), b"absolute");
    assert_eq!(std::fs::read(r.join("chain")).unwrap(), b"through b");
    assert_eq!(xattr(r, OPAQUE_XATTR).as_deref(), Some(&b"y"[..]));
    for link in ["hl-abs", "hl-sym", "hl-up"] {
        assert_eq!(inode(&r.join(link)), inode(&r.join("etc/passwd")), "{link}");
    }
    let evil = r.join(&sandbox[1..]).join("evil");
    assert_eq!(std::fs::read(evil).unwrap(), b"through s");
    assert!(r.join(&sandbox[1..]).join("layers/evil").is_dir());
    assert_eq!(std::fs::read_link(r.join("s")).unwrap(), sb.path());
    assert_eq!(std::fs::read(r.join("up")).unwrap(), b"replaced");
}

#[test]
fn entries_that_would_need_to_leave_the_root_fail() {
    require_root();
    let sb = Sandbox::new();
    let before = sb.outside();
    let sentinel = sb.path().join("x").display().to_string();
    let sandbox = sb.path().display().to_string();
    let layers = [
        // The target exists only outside: in the root it is missing.
        vec![entry("hl", Kind::Link(&sentinel))],
        // A symlink whose in-root target is missing is not followed to create it.
        vec![
            entry("s", Kind::Symlink(&sandbox)),
            entry("s/evil", Kind::File(b"")),
        ],
        // Whiteouts of `.` or `..` name no entry.
        vec![entry("etc/.wh..", Kind::File(b""))],
    ];
    for entries in &layers {
        let e = unpack_layer(&layer(entries)[..], &sb.root).unwrap_err();
        assert!(e.to_string().starts_with("layer entry "), "{e}");
        assert_eq!(sb.outside(), before, "something outside changed: {e}");
    }
}

#[test]
fn ordinary_layers_unpack_with_metadata_links_and_whiteouts() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut busybox = entry("bin/busybox", Kind::File(b"\x7fELF"));
    busybox.mode = 0o4755;
    busybox.xattrs = vec![
        ("user.origin", b"layer"),
        ("trusted.overlay.redirect", b"/x"),
    ];
    let mut motd = entry("etc/motd", Kind::File(b"hi"));
    (motd.mode, motd.uid, motd.gid, motd.mtime) = (0o640, 1000, 1001, 1234);
    let mut etc = entry("etc/", Kind::Dir);
    etc.mtime = 1000;
    let mut null = entry("dev/null", Kind::Char(1, 3));
    null.mode = 0o666;
    let data = gzip(&layer(&[
        etc,
        motd,
        entry("etc/.wh.passwd", Kind::File(b"")),
        entry("bin/", Kind::Dir),
        busybox,
        entry("bin/sh", Kind::Symlink("/bin/busybox")),
        entry("bin/ln", Kind::Link("bin/busybox")),
        null,
        entry("run/initctl", Kind::Fifo),
        entry("var/", Kind::Dir),
        entry("var/.wh..wh..opq", Kind::File(b"")),
        entry("./", Kind::Dir),
    ]));
    unpack_layer(&data[..], dir.path()).unwrap();
    let p = |rel: &str| dir.path().join(rel);
    let meta = |rel: &str| std::fs::symlink_metadata(p(rel)).unwrap();

    assert_eq!(std::fs::read(p("etc/motd")).unwrap(), b"hi");
    let m = meta("etc/motd");
    assert_eq!(
        (m.mode() & 0o7777, m.uid(), m.gid(), m.mtime()),
        (0o640, 1000, 1001, 1234)
    );
    assert_eq!(
        meta("etc").mtime(),
        1000,
        "directory times are set after their entries"
    );
    assert_eq!(meta("bin/busybox").mode() & 0o7777, 0o4755);
    assert_eq!(
        xattr(&p("bin/busybox"), "user.origin").as_deref(),
        Some(&b"layer"[..])
    );
    assert_eq!(xattr(&p("bin/busybox"), "trusted.overlay.redirect"), None);
    assert!(meta("bin/sh").is_symlink());
    assert_eq!(
        std::fs::read_link(p("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(inode(&p("bin/ln")), inode(&p("bin/busybox")));
    let null = meta("dev/null");
    assert!(null.file_type().is_char_device());
    assert_eq!(
        (null.rdev(), null.mode() & 0o7777),
        (libc::makedev(1, 3), 0o666)
    );
    assert!(meta("run/initctl").file_type().is_fifo());
    let wh = meta("etc/passwd");
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert!(!p("etc/.wh.passwd").exists());
    assert_eq!(xattr(&p("var"), OPAQUE_XATTR).as_deref(), Some(&b"y"[..]));
    assert!(!p("var/.wh..wh..opq").exists());
}

#[test]
fn entry_paths_are_cleaned_lexically() {
    assert_eq!(clean(Path::new("../a/./b")), Some(PathBuf::from("a/b")));
    assert_eq!(clean(Path::new("/a/../../b")), Some(PathBuf::from("b")));
    assert_eq!(clean(Path::new("./")), None);
    assert_eq!(clean(Path::new("../..")), None);
}
