//! Test images, built from Debian's `busybox-static` without any container tooling, and pushed to
//! the lab registry.
//!
//! Each image is an OCI image (gzip tar layers, config and manifest, all addressed by sha256)
//! written into one OCI image layout directory; a tar of that directory sits next to it for
//! air-gapped import. Builds are reproducible (fixed timestamps and owners, sorted entries), so
//! the same busybox binary always yields the same digests. Images:
//!
//! - `busybox:latest`: busybox with a symlink per applet, `/etc/passwd`, `/etc/group`, and
//!   placeholders for `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`;
//! - `web:latest`: busybox plus `/www`; its command writes the pod's hostname into
//!   `/www/index.html` and runs `httpd` on port 80, so each answer names the pod that served it;
//! - `web:v2`: the same, answering `<hostname> v2` (for rolling updates).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::REGISTRY;
use crate::{Error, Result, io_err};

/// The busybox binary the images are made of (Debian `busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";
/// Default location of the OCI layout holding the test images.
pub const DEFAULT_LAYOUT: &str = "/var/lib/ekube-lab/images/oci";

pub(crate) const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub(crate) const CONTAINERD_NAME: &str = "io.containerd.image.name";
pub(crate) const PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An image in the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    pub name: String,
    pub tag: String,
    /// `sha256:<hex>` of the manifest.
    pub manifest_digest: String,
    /// Config and layer digests, all in the layout's blob store.
    pub blobs: Vec<String>,
}

impl BuiltImage {
    /// Reference in the lab registry, e.g. `192.168.64.1:5000/web:latest`.
    pub fn reference(&self) -> String {
        format!("{REGISTRY}/{}:{}", self.name, self.tag)
    }
}

/// The images every lab has: `(name, tag, command)`.
fn catalog() -> Vec<(&'static str, &'static str, Option<&'static str>)> {
    vec![
        ("busybox", "latest", None),
        (
            "web",
            "latest",
            Some("hostname > /www/index.html; exec httpd -f -p 80 -h /www"),
        ),
        (
            "web",
            "v2",
            Some("echo \"$(hostname) v2\" > /www/index.html; exec httpd -f -p 80 -h /www"),
        ),
    ]
}

/// `sha256:<hex>` of `data`.
pub fn digest(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// Path of a blob in an OCI layout.
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The tar archive of the layout, for air-gapped import.
pub fn archive_path(layout: &Path) -> PathBuf {
    layout.with_extension("tar")
}

/// Writes `data` to `path` through a temporary file and a rename, so concurrent builders never
/// see half a file.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = path.with_extension(format!(
        "tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&tmp, data).map_err(io_err("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err("renaming", path))
}

/// Reproducible tar layer.
pub(crate) struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    pub(crate) fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    pub(crate) fn dir(&mut self, path: &str, mode: u32) -> std::io::Result<()> {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.0
            .append_data(&mut h, format!("{path}/"), std::io::empty())
    }

    pub(crate) fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.0.append_data(&mut h, path, data)
    }

    pub(crate) fn symlink(&mut self, path: &str, target: &str) -> std::io::Result<()> {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.0.append_link(&mut h, path, target)
    }

    /// Adds everything under `root` (sorted, owners and times fixed; hard links as copies).
    pub(crate) fn tree(&mut self, root: &Path) -> std::io::Result<()> {
        self.tree_under(root, Path::new(""))
    }

    fn tree_under(&mut self, root: &Path, rel: &Path) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        entries.sort();
        for name in entries {
            let rel = rel.join(name);
            let path = root.join(&rel);
            let shown = rel.to_string_lossy();
            let meta = std::fs::symlink_metadata(&path)?;
            let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
            if meta.is_symlink() {
                let target = std::fs::read_link(&path)?;
                self.symlink(&shown, &target.to_string_lossy())?;
            } else if meta.is_dir() {
                self.dir(&shown, mode)?;
                self.tree_under(root, &rel)?;
            } else if meta.is_file() {
                self.file(&shown, mode, &std::fs::read(&path)?)?;
            }
        }
        Ok(())
    }

    /// Uncompressed tar bytes.
    pub(crate) fn finish(self) -> std::io::Result<Vec<u8>> {
        self.0.into_inner()
    }
}

/// The busybox root file system layer.
fn busybox_layer(busybox: &Path) -> std::io::Result<Vec<u8>> {
    let binary = std::fs::read(busybox)?;
    let list = std::process::Command::new(busybox)
        .arg("--list-full")
        .output()?;
    if !list.status.success() {
        return Err(std::io::Error::other("busybox --list-full failed"));
    }
    let mut applets: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_owned())
        .filter(|l| !l.is_empty() && l != "bin/busybox" && l.contains('/'))
        .collect();
    applets.sort();
    applets.dedup();

    let mut layer = Layer::new();
    for (dir, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("run", 0o755),
        ("sbin", 0o755),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("var", 0o755),
        ("var/www", 0o755),
        ("www", 0o755),
    ] {
        layer.dir(dir, mode)?;
    }
    layer.file("bin/busybox", 0o755, &binary)?;
    for applet in &applets {
        layer.symlink(applet, "/bin/busybox")?;
    }
    layer.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    layer.file("etc/group", 0o644, b"root:x:0:\nnobody:x:65534:\n")?;
    layer.file(
        "etc/hosts",
        0o644,
        b"127.0.0.1\tlocalhost\n::1\tlocalhost\n",
    )?;
    layer.file("etc/hostname", 0o644, b"")?;
    layer.file("etc/resolv.conf", 0o644, b"")?;
    layer.file("etc/nsswitch.conf", 0o644, b"hosts: files dns\n")?;
    layer.finish()
}

/// The small layer that makes a `web` variant.
fn web_layer(tag: &str) -> std::io::Result<Vec<u8>> {
    let mut layer = Layer::new();
    layer.dir("etc", 0o755)?;
    layer.file("etc/web-version", 0o644, format!("{tag}\n").as_bytes())?;
    layer.dir("www", 0o755)?;
    layer.finish()
}

/// Writes a blob into the layout and returns its descriptor.
pub(crate) fn put_blob(layout: &Path, media_type: &str, data: &[u8]) -> Result<Value> {
    let d = digest(data);
    let path = blob_path(layout, &d);
    if !path.exists() {
        write_atomic(&path, data)?;
    }
    Ok(json!({ "mediaType": media_type, "digest": d, "size": data.len() }))
}

pub(crate) fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    gzip_with(data, Compression::best())
}

/// gzip at `level` (the larger Debian-based layers trade size for build time).
pub(crate) fn gzip_with(data: &[u8], level: Compression) -> std::io::Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::new(), level);
    enc.write_all(data)?;
    enc.finish()
}

pub(crate) fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Builds every test image from `busybox` into the OCI layout `layout`, plus its tar archive.
pub fn build(layout: &Path, busybox: &Path) -> Result<Vec<BuiltImage>> {
    let image_err = |image: &str| {
        let image = image.to_owned();
        move |e: std::io::Error| Error::Image {
            image,
            reason: e.to_string(),
        }
    };
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(io_err("creating", &blobs))?;
    write_atomic(
        &layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;

    let base_tar = busybox_layer(busybox).map_err(|e| Error::Image {
        image: "busybox".into(),
        reason: format!(
            "reading {}: {e} (is busybox-static installed?)",
            busybox.display()
        ),
    })?;
    let base_gz = gzip(&base_tar).map_err(image_err("busybox"))?;
    let base = (digest(&base_tar), put_blob(layout, LAYER_TYPE, &base_gz)?);

    let mut built = Vec::new();
    let mut index = Vec::new();
    for (name, tag, script) in catalog() {
        let mut layers = vec![base.clone()];
        let mut cmd = vec!["/bin/sh".to_owned()];
        let mut exposed = json!({});
        if let Some(script) = script {
            let tar = web_layer(tag).map_err(image_err(name))?;
            let gz = gzip(&tar).map_err(image_err(name))?;
            layers.push((digest(&tar), put_blob(layout, LAYER_TYPE, &gz)?));
            cmd = vec!["/bin/sh".into(), "-c".into(), script.into()];
            exposed = json!({ "80/tcp": {} });
        }
        let (image, desc) = assemble(
            layout,
            name,
            tag,
            &layers,
            json!({
                "Env": [PATH_ENV],
                "Cmd": cmd,
                "WorkingDir": "/",
                "ExposedPorts": exposed,
            }),
        )?;
        index.push(desc);
        built.push(image);
    }
    let index = json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": index });
    write_atomic(
        &layout.join("index.json"),
        &serde_json::to_vec_pretty(&index).expect("json"),
    )?;
    write_archive(layout)?;
    tracing::info!(layout = %layout.display(), "built test images");
    Ok(built)
}

/// Writes the config and manifest of image `name:tag` made of `layers` (uncompressed digest,
/// descriptor) with the container settings `config` into `layout`; returns the image and its
/// index entry, named by its lab registry reference.
pub(crate) fn assemble(
    layout: &Path,
    name: &str,
    tag: &str,
    layers: &[(String, Value)],
    config: Value,
) -> Result<(BuiltImage, Value)> {
    let config = json!({
        "architecture": oci_arch(),
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": config,
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|(diff, _)| diff.clone()).collect::<Vec<_>>(),
        },
        "history": layers.iter().map(|_| json!({ "created": "1970-01-01T00:00:00Z", "created_by": "ekube-lab" })).collect::<Vec<_>>(),
    });
    let config_desc = put_blob(
        layout,
        CONFIG_TYPE,
        &serde_json::to_vec(&config).expect("json"),
    )?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": config_desc,
        "layers": layers.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("json");
    let mut desc = put_blob(layout, MANIFEST_TYPE, &manifest_bytes)?;
    let image = BuiltImage {
        name: name.into(),
        tag: tag.into(),
        manifest_digest: digest(&manifest_bytes),
        blobs: std::iter::once(&config_desc)
            .chain(layers.iter().map(|(_, d)| d))
            .map(|d| d["digest"].as_str().expect("digest").to_owned())
            .collect(),
    };
    desc["annotations"] =
        json!({ REF_NAME: image.reference(), CONTAINERD_NAME: image.reference() });
    Ok((image, desc))
}

/// Tars the layout (`oci-layout`, `index.json`, `blobs/`) next to it.
pub(crate) fn write_archive(layout: &Path) -> Result<()> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.mode(tar::HeaderMode::Deterministic);
    let add = |tar: &mut tar::Builder<Vec<u8>>, rel: &str| {
        tar.append_path_with_name(layout.join(rel), rel)
            .map_err(io_err("archiving", layout.join(rel)))
    };
    add(&mut tar, "oci-layout")?;
    add(&mut tar, "index.json")?;
    let blobs = layout.join("blobs/sha256");
    let mut names: Vec<String> = std::fs::read_dir(&blobs)
        .map_err(io_err("reading", &blobs))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.contains('.'))
        .collect();
    names.sort();
    for n in names {
        add(&mut tar, &format!("blobs/sha256/{n}"))?;
    }
    let data = tar.into_inner().map_err(io_err("archiving", layout))?;
    write_atomic(&archive_path(layout), &data)
}

/// The index of an existing layout.
pub(crate) fn read_index(layout: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(layout.join("index.json")).ok()?).ok()
}

/// Image `name:tag` of `index`, when its entry satisfies `accept` and all its blobs are there.
pub(crate) fn find_image(
    layout: &Path,
    index: &Value,
    name: &str,
    tag: &str,
    accept: impl Fn(&Value) -> bool,
) -> Option<BuiltImage> {
    let reference = format!("{REGISTRY}/{name}:{tag}");
    let desc = index["manifests"]
        .as_array()?
        .iter()
        .find(|d| d["annotations"][REF_NAME] == reference.as_str())
        .filter(|d| accept(d))?;
    let manifest_digest = desc["digest"].as_str()?.to_owned();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(blob_path(layout, &manifest_digest)).ok()?).ok()?;
    let blobs: Vec<String> = std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array()?)
        .map(|d| d["digest"].as_str().map(str::to_owned))
        .collect::<Option<_>>()?;
    if !blobs.iter().all(|b| blob_path(layout, b).exists()) {
        return None;
    }
    Some(BuiltImage {
        name: name.into(),
        tag: tag.into(),
        manifest_digest,
        blobs,
    })
}

/// Reads the images of an existing layout, `None` when it lacks any image or blob.
pub fn load(layout: &Path) -> Option<Vec<BuiltImage>> {
    let index = read_index(layout)?;
    if !archive_path(layout).exists() {
        return None;
    }
    catalog()
        .into_iter()
        .map(|(name, tag, _)| find_image(layout, &index, name, tag, |_| true))
        .collect()
}

/// The layout's images, built from [`BUSYBOX`] first when missing.
pub fn ensure(layout: &Path) -> Result<Vec<BuiltImage>> {
    match load(layout) {
        Some(images) => Ok(images),
        None => build(layout, Path::new(BUSYBOX)),
    }
}

pub use crate::registry::push;

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_layout(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ekube-lab-images-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("oci")
    }

    #[test]
    fn builds_are_reproducible_and_loadable() {
        if !Path::new(BUSYBOX).exists() {
            panic!("{BUSYBOX} missing: install Debian busybox-static");
        }
        let (a, b) = (tmp_layout("a"), tmp_layout("b"));
        let built_a = build(&a, Path::new(BUSYBOX)).unwrap();
        let built_b = build(&b, Path::new(BUSYBOX)).unwrap();
        assert_eq!(built_a, built_b, "same input, same digests");
        assert_eq!(load(&a).unwrap(), built_a);
        let refs: Vec<_> = built_a.iter().map(BuiltImage::reference).collect();
        assert_eq!(
            refs,
            [
                "192.168.64.1:5000/busybox:latest",
                "192.168.64.1:5000/web:latest",
                "192.168.64.1:5000/web:v2"
            ]
        );
        // web images share the busybox layer and differ in their own.
        assert_eq!(built_a[1].blobs[1], built_a[0].blobs[1]);
        assert_ne!(built_a[1].manifest_digest, built_a[2].manifest_digest);
        // The busybox layer holds the binary and an applet symlink.
        let layer = std::fs::read(blob_path(&a, &built_a[0].blobs[1])).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&layer[..]));
        let mut found = (false, false);
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            found.0 |= path == "bin/busybox";
            found.1 |= path == "bin/sh"
                && entry.link_name().unwrap().unwrap() == Path::new("/bin/busybox");
        }
        assert_eq!(found, (true, true));
        assert!(archive_path(&a).exists());
        for l in [a, b] {
            std::fs::remove_dir_all(l.parent().unwrap()).unwrap();
        }
    }
}
