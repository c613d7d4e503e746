//! The lab's image registries: Debian's `docker-registry` serving plain HTTP on
//! `192.168.64.1:5000` inside the fabric namespace, with its storage in the lab directory,
//! optionally a second one on `:5001` demanding basic auth from an htpasswd file (bcrypt, as
//! written by `htpasswd -B` of Debian's `apache2-utils`) and a third on `:5003` serving the
//! second's storage over HTTPS to clients with a certificate of the lab's registry CA, and
//! the client side that pushes images into them (OCI distribution: blob upload, then
//! manifest).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::{
    AUTH_PASSWORD, AUTH_REGISTRY, AUTH_USER, CERT_REGISTRY, DEAD_MIRROR, FABRIC_IP, REGISTRY,
};
use crate::images::{BuiltImage, MANIFEST_TYPE, blob_path};
use crate::{Error, Result, http, io_err};

/// The registry binary shipped by Debian's `docker-registry` package.
pub(crate) const BINARY: &str = "/usr/bin/docker-registry";

/// The `htpasswd` binary of Debian's `apache2-utils`.
pub(crate) const HTPASSWD: &str = "/usr/bin/htpasswd";

/// A registry's configuration: serving `addr`, storing blobs under `storage`, demanding the
/// accounts of `htpasswd` when given, and serving HTTPS to holders of client certificates
/// when given the directory of [`pki::issue`](crate::pki::issue)'s files.
pub(crate) fn config_yaml(
    addr: &str,
    storage: &Path,
    htpasswd: Option<&Path>,
    pki: Option<&Path>,
) -> String {
    let auth = htpasswd
        .map(|p| {
            format!(
                "auth:\n  htpasswd:\n    realm: ekube-lab\n    path: {}\n",
                p.display()
            )
        })
        .unwrap_or_default();
    let tls = pki
        .map(|dir| {
            format!(
                "  tls:\n    certificate: {}\n    key: {}\n    clientcas:\n      - {}\n",
                dir.join("server.crt").display(),
                dir.join("server.key").display(),
                dir.join("ca.crt").display()
            )
        })
        .unwrap_or_default();
    format!(
        "version: 0.1\n\
         log:\n  level: info\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: {addr}\n  secret: ekube-lab\n{tls}{auth}",
        storage.display()
    )
}

/// Where the lab keeps the certificate registry's CA, its serving certificate and the nodes'
/// client certificate.
pub fn cert_pki_dir(lab_dir: &Path) -> PathBuf {
    lab_dir.join("registry-cert").join("pki")
}

/// Every node's `registries.yaml`: the lab registry mirrors Docker Hub, over plain HTTP. With
/// the auth registry, that one is reached through a dead mirror first (pulls fall through to
/// it) and `team/<name>` is rewritten to `library/<name>` there.
pub fn mirror_config(auth_registry: bool) -> String {
    let mut yaml =
        format!("mirrors:\n  docker.io:\n    endpoint:\n      - \"http://{REGISTRY}\"\n");
    if auth_registry {
        yaml.push_str(&format!(
            "  \"{AUTH_REGISTRY}\":\n    endpoint:\n      - \"http://{DEAD_MIRROR}\"\n      \
             - \"http://{AUTH_REGISTRY}\"\n    rewrite:\n      \"^team/(.*)$\": \"library/$1\"\n"
        ));
    }
    yaml
}

/// The `configs` section that lets a node reach [`CERT_REGISTRY`]: the lab's registry CA and
/// the client certificate it issued.
pub fn cert_config(lab_dir: &Path) -> String {
    let pki = cert_pki_dir(lab_dir);
    let file = |name: &str| pki.join(name).display().to_string();
    format!(
        "configs:\n  \"{CERT_REGISTRY}\":\n    tls:\n      ca_file: {}\n      cert_file: {}\n      \
         key_file: {}\n",
        file("ca.crt"),
        file("client.crt"),
        file("client.key")
    )
}

/// Writes `<name>/config.yml` (and the htpasswd file, with `auth`) into the lab directory and
/// returns the command that serves it.
fn prepare_one(lab_dir: &Path, name: &str, addr: &str, auth: bool) -> Result<Vec<String>> {
    let dir = lab_dir.join(name);
    let storage = dir.join("storage");
    std::fs::create_dir_all(&storage).map_err(io_err("creating", &storage))?;
    let htpasswd = dir.join("htpasswd");
    if auth {
        let out = std::process::Command::new(HTPASSWD)
            .args(["-Bbn", AUTH_USER, AUTH_PASSWORD])
            .output()
            .map_err(io_err("running", HTPASSWD))?;
        if !out.status.success() {
            return Err(Error::Command {
                command: format!("{HTPASSWD} -Bbn {AUTH_USER} …"),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        std::fs::write(&htpasswd, out.stdout).map_err(io_err("writing", &htpasswd))?;
    }
    let config: PathBuf = dir.join("config.yml");
    let yaml = config_yaml(addr, &storage, auth.then_some(htpasswd.as_path()), None);
    std::fs::write(&config, yaml).map_err(io_err("writing", &config))?;
    Ok(vec![
        BINARY.to_owned(),
        "serve".to_owned(),
        config.display().to_string(),
    ])
}

/// The command serving the lab registry, its config written.
pub(crate) fn prepare(lab_dir: &Path) -> Result<Vec<String>> {
    prepare_one(lab_dir, "registry", REGISTRY, false)
}

/// The command serving the auth registry, its config and htpasswd written.
pub(crate) fn prepare_auth(lab_dir: &Path) -> Result<Vec<String>> {
    prepare_one(lab_dir, "registry-auth", AUTH_REGISTRY, true)
}

/// The command serving the certificate registry: the auth registry's storage over HTTPS, for
/// clients with a certificate of a CA issued here.
pub(crate) fn prepare_cert(lab_dir: &Path) -> Result<Vec<String>> {
    let pki = cert_pki_dir(lab_dir);
    crate::pki::issue(
        &pki,
        "registry-ca",
        [
            ("server".to_owned(), vec![FABRIC_IP.to_string()]),
            ("client".to_owned(), Vec::new()),
        ],
    )?;
    let storage = lab_dir.join("registry-auth").join("storage");
    std::fs::create_dir_all(&storage).map_err(io_err("creating", &storage))?;
    let config = lab_dir.join("registry-cert").join("config.yml");
    let yaml = config_yaml(CERT_REGISTRY, &storage, None, Some(&pki));
    std::fs::write(&config, yaml).map_err(io_err("writing", &config))?;
    Ok(vec![
        BINARY.to_owned(),
        "serve".to_owned(),
        config.display().to_string(),
    ])
}

/// Polls `GET /v2/` of `addr` in plain HTTP from inside `netns` until the registry answers
/// (200, or 401 when it demands credentials; an HTTPS registry answers a plain request 400,
/// which is enough to know that it listens).
pub(crate) fn wait_ready(netns: &str, addr: &str, timeout: Duration) -> Result<()> {
    let url = format!("http://{addr}/v2/");
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        match http::request(netns, "GET", &url, &[], Vec::new(), Duration::from_secs(2)) {
            Ok(resp) if matches!(resp.status, 200 | 401 | 400) => return Ok(()),
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
    push_to(netns, REGISTRY, None, layout, images)
}

/// Pushes images to the auth registry with its account.
pub(crate) fn push_auth(netns: &str, layout: &Path, images: &[BuiltImage]) -> Result<()> {
    use base64::Engine;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{AUTH_USER}:{AUTH_PASSWORD}"));
    push_to(
        netns,
        AUTH_REGISTRY,
        Some(&format!("Basic {basic}")),
        layout,
        images,
    )
}

/// Pushes images to the registry at `addr`, sending `authorization` with every request.
fn push_to(
    netns: &str,
    addr: &str,
    authorization: Option<&str>,
    layout: &Path,
    images: &[BuiltImage],
) -> Result<()> {
    let timeout = Duration::from_secs(30);
    let base = format!("http://{addr}");
    let headers = |extra: &[(&'static str, &'static str)]| {
        let mut h: Vec<(&str, &str)> = extra.to_vec();
        if let Some(a) = authorization {
            h.push(("Authorization", a));
        }
        h
    };
    for image in images {
        let fail = |reason: String| Error::Image {
            image: image.reference(),
            reason,
        };
        for blob in &image.blobs {
            let url = format!("{base}/v2/{}/blobs/{blob}", image.name);
            if http::request(netns, "HEAD", &url, &headers(&[]), Vec::new(), timeout)?.status == 200
            {
                continue;
            }
            let start = http::request(
                netns,
                "POST",
                &format!("{base}/v2/{}/blobs/uploads/", image.name),
                &headers(&[]),
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
                &headers(&[("Content-Type", "application/octet-stream")]),
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
            &headers(&[("Content-Type", MANIFEST_TYPE)]),
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
        let yaml = super::config_yaml(
            "192.168.64.1:5000",
            std::path::Path::new("/x/storage"),
            None,
            None,
        );
        assert!(yaml.contains("addr: 192.168.64.1:5000"));
        assert!(yaml.contains("rootdirectory: /x/storage"));
        assert!(!yaml.contains("htpasswd"));
        let yaml = super::config_yaml(
            "192.168.64.1:5001",
            std::path::Path::new("/x/storage"),
            Some(std::path::Path::new("/x/htpasswd")),
            None,
        );
        assert!(
            yaml.ends_with("auth:\n  htpasswd:\n    realm: ekube-lab\n    path: /x/htpasswd\n")
        );
        assert!(!yaml.contains("tls:"));
        let yaml = super::config_yaml(
            "192.168.64.1:5003",
            std::path::Path::new("/x/storage"),
            None,
            Some(std::path::Path::new("/x/pki")),
        );
        assert!(yaml.ends_with(
            "  secret: ekube-lab\n  tls:\n    certificate: /x/pki/server.crt\n    \
             key: /x/pki/server.key\n    clientcas:\n      - /x/pki/ca.crt\n"
        ));
    }
}
