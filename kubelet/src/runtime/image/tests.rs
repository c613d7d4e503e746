//! Image store tests: OCI archives import, and bad digests or blobs are refused with a clear
//! error before anything is written where a digest would point.

use super::*;
use serde_json::json;

/// A tar of `files` (name, content), names written unchecked.
fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn descriptor(media_type: &str, data: &[u8]) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": BlobDigest::of(data), "size": data.len()})
}

/// The blobs of a one-layer image, manifest last; `edit` may spoil the manifest.
fn image_blobs(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<Vec<u8>> {
    let layer = tar_of(&[("hello".into(), b"world".to_vec())]);
    let config = serde_json::to_vec(&json!({"config": {"Cmd": ["sh"]}})).unwrap();
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &layer)],
    });
    edit(&mut manifest);
    vec![layer, config, serde_json::to_vec(&manifest).unwrap()]
}

/// An OCI layout archive of `blobs` (stored under their own digests unless `name` says
/// otherwise) whose index names the last blob, or `index_digest`.
fn archive(
    blobs: &[Vec<u8>],
    name: impl Fn(&[u8]) -> String,
    index_digest: Option<&str>,
) -> Vec<u8> {
    let manifest = blobs.last().unwrap();
    let digest = index_digest.map_or_else(|| BlobDigest::of(manifest).to_string(), str::to_owned);
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest,
        "size": manifest.len(),
        "annotations": {"io.containerd.image.name": "example.com/t:1"},
    }]});
    let mut files = vec![("index.json".to_owned(), serde_json::to_vec(&index).unwrap())];
    files.extend(blobs.iter().map(|b| (name(b), b.clone())));
    tar_of(&files)
}

fn own_name(blob: &[u8]) -> String {
    format!("blobs/sha256/{}", BlobDigest::of(blob).hex())
}

/// Imports `archive` into a fresh store inside a sandbox, asserting nothing appeared in the
/// sandbox beside the store; the store's answer and the sandbox.
async fn import(archive: &[u8]) -> (Result<Vec<String>>, tempfile::TempDir) {
    let sandbox = tempfile::tempdir().unwrap();
    let path = sandbox.path().join("image.tar");
    std::fs::write(&path, archive).unwrap();
    let store = ImageStore::open(&sandbox.path().join("store/root"), Vec::new()).unwrap();
    let result = store.import_archive(&path).await;
    let mut outside: Vec<_> = std::fs::read_dir(sandbox.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    outside.sort();
    assert_eq!(
        outside,
        ["image.tar", "store"],
        "files appeared beside the store"
    );
    let store_dir: Vec<_> = std::fs::read_dir(sandbox.path().join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(store_dir, ["root"], "files appeared beside the store");
    (result, sandbox)
}

#[tokio::test]
async fn archives_import_with_checked_digests() {
    let (tags, sandbox) = import(&archive(&image_blobs(|_| {}), own_name, None)).await;
    assert_eq!(tags.unwrap(), ["example.com/t:1"]);
    let store = ImageStore::open(&sandbox.path().join("store/root"), Vec::new()).unwrap();
    let record = store.find("example.com/t:1").unwrap();
    let layer = store.layer_dir(&record.layers[0]);
    assert_eq!(std::fs::read(layer.join("hello")).unwrap(), b"world");
}

#[tokio::test]
async fn blobs_that_do_not_hash_to_their_name_are_refused() {
    let blobs = image_blobs(|_| {});
    let layer_name = own_name(&blobs[0]);
    // Spoil the layer's content but keep its name.
    let mut spoiled = archive(&blobs, own_name, None);
    let at = spoiled.windows(5).position(|w| w == b"world").unwrap();
    spoiled[at] = b'W';
    let (result, _sandbox) = import(&spoiled).await;
    let e = result.unwrap_err().to_string();
    assert!(
        e.contains("hashes to") && e.contains(&layer_name[13..]),
        "{e}"
    );
}

#[tokio::test]
async fn malformed_digests_are_refused_before_they_become_paths() {
    let (result, _sandbox) = import(&archive(
        &image_blobs(|_| {}),
        own_name,
        Some("sha256:../../../../image.tar"),
    ))
    .await;
    let e = result.unwrap_err().to_string();
    assert!(
        e.contains("index.json entry for example.com/t:1") && e.contains("invalid"),
        "{e}"
    );

    let bad_layer = |m: &mut serde_json::Value| {
        let d = m["layers"][0]["digest"].as_str().unwrap().to_uppercase();
        m["layers"][0]["digest"] = json!(d.replacen("SHA256", "sha256", 1));
    };
    let (result, _sandbox) = import(&archive(&image_blobs(bad_layer), own_name, None)).await;
    let e = result.unwrap_err().to_string();
    assert!(
        e.contains("manifest sha256:") && e.contains("not lowercase hex"),
        "{e}"
    );

    let other_algorithm = |m: &mut serde_json::Value| {
        m["config"]["digest"] = json!(format!("sha512:{}", "0".repeat(128)));
    };
    let (result, _sandbox) = import(&archive(&image_blobs(other_algorithm), own_name, None)).await;
    let e = result.unwrap_err().to_string();
    assert!(e.contains("only sha256 digests are supported"), "{e}");

    let blobs = image_blobs(|_| {});
    let (result, _sandbox) = import(&archive(
        &blobs,
        |b| format!("blobs/sha256/../../{}", BlobDigest::of(b).hex()),
        None,
    ))
    .await;
    let e = result.unwrap_err().to_string();
    assert!(
        e.contains("blob blobs/sha256/../../") && e.contains("invalid"),
        "{e}"
    );
}

#[test]
fn references_are_normalised() {
    assert_eq!(
        normalize("busybox").unwrap().whole(),
        "docker.io/library/busybox:latest"
    );
    assert_eq!(
        normalize("192.168.64.1:5000/web").unwrap().whole(),
        "192.168.64.1:5000/web:latest"
    );
    assert_eq!(
        normalize("192.168.64.1:5000/web:v2").unwrap().whole(),
        "192.168.64.1:5000/web:v2"
    );
}
