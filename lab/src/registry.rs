//! The lab's image registry: Debian's `docker-registry` serving plain HTTP on
//! `192.168.64.1:5000` inside the fabric namespace, with its storage in the lab directory, and
//! the client side that pushes images into it (OCI distribution: blob upload, then manifest).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::REGISTRY;
use crate::images::{BuiltImage, MANIFEST_TYPE, blob_path};
use crate::{Error, Result, http, io_err};

/// The registry binary shipped by Debian's `docker-registry` package.
pub(crate) const BINARY: &str = "/usr/bin/docker-registry";

/// The registry's configuration, storing blobs under `storage`.
pub(crate) fn config_yaml(storage: &Path) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: info\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: {REGISTRY}\n  secret: ekube-lab\n",
        storage.display()
    )
}

/// Every node's `registries.yaml`: the lab registry mirrors Docker Hub, over plain HTTP.
pub(crate) fn mirror_config() -> String {
    format!("mirrors:\n  docker.io:\n    endpoint:\n      - \"http://{REGISTRY}\"\n")
}

/// Writes `registry/config.yml` into the lab directory and returns the command that serves it.
pub(crate) fn prepare(lab_dir: &Path) -> Result<Vec<String>> {
    let dir = lab_dir.join("registry");
    let storage = dir.join("storage");
    std::fs::create_dir_all(&storage).map_err(io_err("creating", &storage))?;
    let config: PathBuf = dir.join("config.yml");
    std::fs::write(&config, config_yaml(&storage)).map_err(io_err("writing", &config))?;
    Ok(vec![
        BINARY.to_owned(),
        "serve".to_owned(),
        config.display().to_string(),
    ])
}

/// Polls `GET /v2/` from inside `netns` until the registry answers 200.
pub(crate) fn wait_ready(netns: &str, timeout: Duration) -> Result<()> {
    let url = format!("http://{REGISTRY}/v2/");
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        match http::request(netns, "GET", &url, &[], Vec::new(), Duration::from_secs(2)) {
            Ok(resp) if resp.status == 200 => return Ok(()),
            Ok(resp) => last = format!("status {}", resp.status),
            Err(e) => last = e.to_string(),
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("registry {url} from {netns} (last: {last})"),
                secs: timeout.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Pushes images from `layout` to the lab registry, talking from inside `netns`. Blobs the
/// registry already has are skipped.
pub fn push(netns: &str, layout: &Path, images: &[BuiltImage]) -> Result<()> {
    let timeout = Duration::from_secs(30);
    let base = format!("http://{REGISTRY}");
    for image in images {
        let fail = |reason: String| Error::Image {
            image: image.reference(),
            reason,
        };
        for blob in &image.blobs {
            let url = format!("{base}/v2/{}/blobs/{blob}", image.name);
            if http::request(netns, "HEAD", &url, &[], Vec::new(), timeout)?.status == 200 {
                continue;
            }
            let start = http::request(
                netns,
                "POST",
                &format!("{base}/v2/{}/blobs/uploads/", image.name),
                &[],
                Vec::new(),
                timeout,
            )?;
            let location = match (start.status, start.header("location")) {
                (202, Some(l)) => l.to_owned(),
                (status, _) => {
                    return Err(fail(format!(
                        "starting upload: status {status}: {}",
                        start.text()
                    )));
                }
            };
            let location = if location.starts_with("http://") {
                location
            } else {
                format!("{base}{location}")
            };
            let sep = if location.contains('?') { '&' } else { '?' };
            let data = std::fs::read(blob_path(layout, blob))
                .map_err(io_err("reading", blob_path(layout, blob)))?;
            let done = http::request(
                netns,
                "PUT",
                &format!("{location}{sep}digest={blob}"),
                &[("Content-Type", "application/octet-stream")],
                data,
                timeout,
            )?;
            if done.status != 201 {
                return Err(fail(format!(
                    "uploading {blob}: status {}: {}",
                    done.status,
                    done.text()
                )));
            }
        }
        let manifest = std::fs::read(blob_path(layout, &image.manifest_digest))
            .map_err(io_err("reading", blob_path(layout, &image.manifest_digest)))?;
        let url = format!("{base}/v2/{}/manifests/{}", image.name, image.tag);
        let resp = http::request(
            netns,
            "PUT",
            &url,
            &[("Content-Type", MANIFEST_TYPE)],
            manifest,
            timeout,
        )?;
        if resp.status != 201 {
            return Err(fail(format!(
                "putting manifest: status {}: {}",
                resp.status,
                resp.text()
            )));
        }
        tracing::info!(image = %image.reference(), digest = %image.manifest_digest, "pushed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn config_listens_on_the_fabric_address() {
        let yaml = super::config_yaml(std::path::Path::new("/x/storage"));
        assert!(yaml.contains("addr: 192.168.64.1:5000"));
        assert!(yaml.contains("rootdirectory: /x/storage"));
    }
}
