//! The image store: content addressed by digest under `<root>/content`, unpacked layers under
//! `<root>/layers/<digest>`, and one record per image under `<root>/images/<config digest>.json`.
//!
//! Images come from registries (OCI distribution through `oci-client`; plain HTTP for
//! `--insecure-registry` hosts) or from OCI image layout archives in an import directory (the
//! air-gapped path, like k3s's images directory). Each blob is stored once, whatever number of
//! images share it. Every digest is checked ([`BlobDigest`]) before it names a file, and every
//! blob's content is checked against its digest before it is stored.
//!
//! A pull authenticates as the registry asks (basic credentials, or the bearer token they or
//! an identity token buy, see [`token`]) and presents a client certificate through [`relay`]
//! where `registries.yaml` names one.

use std::io::Read;
use std::path::{Path, PathBuf};

use oci_client::Reference;
use oci_client::client::ClientConfig;
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use serde::{Deserialize, Serialize};

use super::digest::{BlobDigest, DigestError};
use super::registries::{Attempt, Credential, Registries};
use super::{Error, Result, reference, unpack};

pub mod relay;
mod token;

/// What a container takes from its image's config.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageConfig {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

impl ImageConfig {
    /// Reads what containers need from an OCI image config blob (`config.Env`, `Entrypoint`,
    /// `Cmd`, `WorkingDir`, `User`); fields of other types are ignored, as runtimes do.
    pub fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        let config: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("invalid image config: {e}"))?;
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let c = &config["config"];
        Ok(Self {
            env: strings(&c["Env"]),
            entrypoint: strings(&c["Entrypoint"]),
            cmd: strings(&c["Cmd"]),
            working_dir: c["WorkingDir"].as_str().unwrap_or_default().to_owned(),
            user: c["User"].as_str().unwrap_or_default().to_owned(),
        })
    }
}

/// One stored image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    /// `sha256:<hex>` of the config blob: the image ID.
    pub id: BlobDigest,
    /// Normalised references, e.g. `192.168.64.1:5000/busybox:latest`.
    pub repo_tags: Vec<String>,
    /// `<repository>@<manifest digest>`.
    pub repo_digests: Vec<String>,
    /// Sum of the compressed layer sizes.
    pub size: u64,
    /// Layer digests, bottom first.
    pub layers: Vec<BlobDigest>,
    pub config: ImageConfig,
}

impl ImageRecord {
    /// The `imageID` of a container started from this image as `name`: its repo digest in
    /// `name`'s repository, else its first one, else the image ID.
    pub fn image_ref(&self, name: &str) -> String {
        reference::repo_digest_for(&self.repo_digests, name)
            .cloned()
            .unwrap_or_else(|| self.id.to_string())
    }
}

/// The image store of one runtime.
pub struct ImageStore {
    root: PathBuf,
    registries: Registries,
    /// Serialises writers (pull, import, remove); readers go to disk.
    lock: tokio::sync::Mutex<()>,
    /// Started at the first pull that presents a client certificate.
    relay: tokio::sync::OnceCell<relay::Relay>,
}

/// A layer of a manifest, its digest checked.
struct Layer {
    digest: BlobDigest,
    /// Compressed size as the manifest states it.
    size: u64,
}

/// The checked config and layer digests of `manifest`.
fn checked_digests(manifest: &OciImageManifest) -> Result<(BlobDigest, Vec<Layer>), DigestError> {
    let config = BlobDigest::parse(&manifest.config.digest)?;
    let layers = manifest
        .layers
        .iter()
        .map(|l| {
            Ok(Layer {
                digest: BlobDigest::parse(&l.digest)?,
                size: l.size.max(0) as u64,
            })
        })
        .collect::<Result<_, DigestError>>()?;
    Ok((config, layers))
}

/// Parses and normalises an image reference (`busybox` → `docker.io/library/busybox:latest`).
pub fn normalize(image: &str) -> Result<Reference> {
    reference::normalize(image).map_err(|e| Error::InvalidArgument(e.to_string()))
}

impl ImageStore {
    pub fn open(root: &Path, registries: Registries) -> Result<Self> {
        for d in ["content/sha256", "layers", "images", "tmp"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(Error::io("creating", &p))?;
        }
        Ok(Self {
            root: root.to_owned(),
            registries,
            lock: tokio::sync::Mutex::new(()),
            relay: tokio::sync::OnceCell::new(),
        })
    }

    fn blob_path(&self, digest: &BlobDigest) -> PathBuf {
        self.root.join("content/sha256").join(digest.hex())
    }

    /// Directory holding the unpacked layer `digest`.
    pub fn layer_dir(&self, digest: &BlobDigest) -> PathBuf {
        self.root.join("layers").join(digest.hex())
    }

    fn record_path(&self, id: &BlobDigest) -> PathBuf {
        self.root.join("images").join(format!("{}.json", id.hex()))
    }

    /// Every stored image.
    pub fn list(&self) -> Vec<ImageRecord> {
        let dir = self.root.join("images");
        let mut out: Vec<ImageRecord> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Finds an image by ID (`sha256:…` or its hex), tag or digest reference.
    pub fn find(&self, image: &str) -> Option<ImageRecord> {
        let images = self.list();
        if let Some(i) = images
            .iter()
            .find(|i| i.id.as_str() == image || i.id.hex() == image)
        {
            return Some(i.clone());
        }
        let r = normalize(image).ok()?;
        let whole = r.whole();
        images
            .into_iter()
            .find(|i| i.repo_tags.contains(&whole) || i.repo_digests.contains(&whole))
    }

    /// Stores `data` as the blob `digest` of `image` once it is checked to hash to it.
    fn write_blob(&self, image: &str, digest: &BlobDigest, data: &[u8]) -> Result<()> {
        digest.verify(data).map_err(|e| Error::Image {
            image: image.to_owned(),
            reason: e.to_string(),
        })?;
        let path = self.blob_path(digest);
        if !path.exists() {
            write_atomic(&path, data)?;
        }
        Ok(())
    }

    /// Pulls `image` from the first of its endpoints (mirrors, then its registry) that serves
    /// it; returns the image ID. When none does, the error names every endpoint and its fault.
    /// `secret` (from the pod's `imagePullSecrets`, or the CRI request) serves where
    /// `registries.yaml` gives the endpoint no credential.
    pub async fn pull(&self, image: &str, secret: Option<&Credential>) -> Result<String> {
        let reference = normalize(image)?;
        let _guard = self.lock.lock().await;
        let mut faults = Vec::new();
        for attempt in self.registries.attempts(&reference, secret) {
            match self.pull_from(&reference, &attempt).await {
                Ok(id) => return Ok(id),
                Err(fault) => {
                    tracing::info!(image = %reference.whole(), endpoint = %attempt.endpoint.url(), %fault, "pull attempt failed");
                    faults.push(format!("{}: {fault}", attempt.endpoint.url()));
                }
            }
        }
        Err(Error::Pull {
            image: reference.whole(),
            reason: faults.join("; "),
        })
    }

    /// One pull attempt against one endpoint.
    async fn pull_from(&self, reference: &Reference, attempt: &Attempt) -> Result<String, String> {
        let auth = match &attempt.credential {
            None => RegistryAuth::Anonymous,
            Some(Credential::Basic(user, password)) => {
                RegistryAuth::Basic(user.clone(), password.clone())
            }
            Some(Credential::RegistryToken(t)) => RegistryAuth::Bearer(t.clone()),
            Some(Credential::IdentityToken(t)) => token::exchange(attempt, t)
                .await?
                .map_or(RegistryAuth::Anonymous, RegistryAuth::Bearer),
        };
        let mut client_config = self.client_config(attempt).await?;
        let offered = PlatformChoice::default();
        client_config.platform_resolver = Some(Box::new(offered.resolver()));
        let client = oci_client::Client::new(client_config);
        let (manifest, manifest_digest, config) = client
            .pull_manifest_and_config(&attempt.reference, &auth)
            .await
            .map_err(|e| match offered.missed() {
                Some(platforms) => format!(
                    "{}: no manifest for {} in its image index (it has {platforms})",
                    reference.whole(),
                    PlatformChoice::wanted()
                ),
                None => describe_pull_error(&attempt.reference, e),
            })?;
        let manifest_digest = BlobDigest::parse(&manifest_digest)
            .map_err(|e| format!("registry answered a bad manifest digest: {e}"))?;
        let (config_digest, layers) =
            checked_digests(&manifest).map_err(|e| format!("manifest {manifest_digest}: {e}"))?;
        for layer in &layers {
            self.pull_layer(&client, &attempt.reference, &layer.digest)
                .await
                .map_err(|reason| format!("layer {}: {reason}", layer.digest))?;
        }
        let whole = reference.whole();
        self.write_blob(&whole, &config_digest, config.as_bytes())
            .map_err(|e| e.to_string())?;
        let repo_digest = reference::repo_digest(reference, manifest_digest.as_str());
        tracing::info!(image = %whole, endpoint = %attempt.endpoint.url(), digest = %manifest_digest, "pulled image");
        self.register(reference, &repo_digest, &config_digest, &layers)
            .map_err(|e| e.to_string())
    }

    /// The registry client's configuration for one attempt: an endpoint that wants a client
    /// certificate is reached in plain HTTP through the relay, which presents it.
    async fn client_config(&self, attempt: &Attempt) -> Result<ClientConfig, String> {
        let mut config = attempt.client_config();
        if attempt.tls.has_identity() && !attempt.endpoint.plain_http {
            let relay = self
                .relay
                .get_or_try_init(relay::Relay::start)
                .await
                .map_err(|e| format!("starting the client-certificate relay: {e}"))?;
            relay.admit(&attempt.endpoint.host, &attempt.tls)?;
            config.protocol = oci_client::client::ClientProtocol::Http;
            config.http_proxy = Some(relay.proxy_url());
        }
        Ok(config)
    }

    /// Downloads the blob of a layer unless it is stored, checking it before it is stored.
    async fn pull_layer(
        &self,
        client: &oci_client::Client,
        reference: &Reference,
        digest: &BlobDigest,
    ) -> Result<(), String> {
        let path = self.blob_path(digest);
        if path.exists() {
            return Ok(());
        }
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{}-{}", digest.hex(), rand::random::<u32>()));
        let pulled = async {
            let mut file = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| format!("creating {}: {e}", tmp.display()))?;
            client
                .pull_blob(reference, digest.as_str(), &mut file)
                .await
                .map_err(|e| format!("pulling: {e}"))?;
            let file =
                std::fs::File::open(&tmp).map_err(|e| format!("opening {}: {e}", tmp.display()))?;
            digest
                .verify(std::io::BufReader::new(file))
                .map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, &path).map_err(|e| format!("renaming {}: {e}", tmp.display()))
        }
        .await;
        if pulled.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        pulled
    }

    /// Unpacks the layers (once each) and writes the image record; the blobs must be stored.
    fn register(
        &self,
        reference: &Reference,
        repo_digest: &str,
        config_digest: &BlobDigest,
        layers: &[Layer],
    ) -> Result<String> {
        let config_bytes = std::fs::read(self.blob_path(config_digest))
            .map_err(Error::io("reading", self.blob_path(config_digest)))?;
        let image_config = ImageConfig::parse(&config_bytes).map_err(|reason| Error::Image {
            image: reference.whole(),
            reason,
        })?;
        // A digest reference names no tag.
        let tag = reference.tag().map(|_| reference.whole());
        let tag = tag.as_deref();
        for layer in layers {
            self.unpack(&layer.digest)?;
        }
        // A tag moves to the newest image that claims it.
        for mut other in self.list() {
            if other.id != *config_digest
                && tag.is_some_and(|tag| other.repo_tags.iter().any(|t| t == tag))
            {
                other.repo_tags.retain(|t| Some(t.as_str()) != tag);
                self.save(&other)?;
            }
        }
        let mut record = self.find(config_digest.as_str()).unwrap_or(ImageRecord {
            id: config_digest.clone(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            size: 0,
            layers: Vec::new(),
            config: image_config.clone(),
        });
        if let Some(tag) = tag.filter(|tag| !record.repo_tags.iter().any(|t| t == tag)) {
            record.repo_tags.push(tag.to_owned());
        }
        if !record.repo_digests.iter().any(|t| t == repo_digest) {
            record.repo_digests.push(repo_digest.to_owned());
        }
        record.layers = layers.iter().map(|l| l.digest.clone()).collect();
        record.size = layers.iter().map(|l| l.size).sum();
        record.config = image_config;
        self.save(&record)?;
        Ok(record.id.into())
    }

    fn save(&self, record: &ImageRecord) -> Result<()> {
        write_atomic(
            &self.record_path(&record.id),
            &serde_json::to_vec_pretty(record).expect("json"),
        )
    }

    fn unpack(&self, digest: &BlobDigest) -> Result<()> {
        let dir = self.layer_dir(digest);
        if dir.exists() {
            return Ok(());
        }
        let tmp =
            self.root
                .join("tmp")
                .join(format!("layer-{}-{}", digest.hex(), rand::random::<u32>()));
        std::fs::create_dir_all(&tmp).map_err(Error::io("creating", &tmp))?;
        let blob = self.blob_path(digest);
        let file = std::fs::File::open(&blob).map_err(Error::io("opening", &blob))?;
        if let Err(e) = unpack::unpack_layer(file, &tmp) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(Error::Image {
                image: digest.to_string(),
                reason: format!("unpacking layer: {e}"),
            });
        }
        std::fs::rename(&tmp, &dir).map_err(Error::io("renaming", &dir))
    }

    /// Forgets the image `record` (its record file), so that nothing finds it any more; its
    /// blobs and layers stay until [`ImageStore::prune`]. Synchronous, so that the runtime
    /// can check that no container uses the image and forget it in one step.
    pub fn forget(&self, record: &ImageRecord) -> Result<()> {
        let path = self.record_path(&record.id);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("removing", &path)(e))
            }
            _ => Ok(()),
        }
    }

    /// Removes the blobs and layers of the forgotten image `record` that no stored image uses.
    pub async fn prune(&self, record: &ImageRecord) {
        let _guard = self.lock.lock().await;
        let used: Vec<BlobDigest> = self.list().into_iter().flat_map(|i| i.layers).collect();
        for layer in record.layers.iter().filter(|l| !used.contains(l)) {
            let _ = std::fs::remove_dir_all(self.layer_dir(layer));
            let _ = std::fs::remove_file(self.blob_path(layer));
        }
        let _ = std::fs::remove_file(self.blob_path(&record.id));
    }

    /// Where the store lives.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Imports an image the node built itself (the add-on image): one uncompressed layer and
    /// its config, whose `rootfs` is filled in here; tags it `reference`, returns its ID.
    pub async fn import_built(
        &self,
        reference: &str,
        layer: Vec<u8>,
        mut config: serde_json::Value,
    ) -> Result<String> {
        let tagged = normalize(reference)?;
        let _guard = self.lock.lock().await;
        let layer_digest = BlobDigest::of(&layer);
        config["rootfs"] =
            serde_json::json!({"type": "layers", "diff_ids": [layer_digest.as_str()]});
        let config_bytes = config.to_string().into_bytes();
        let config_digest = BlobDigest::of(&config_bytes);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest.as_str(),
                "size": config_bytes.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest.as_str(),
                "size": layer.len(),
            }],
        })
        .to_string()
        .into_bytes();
        let manifest_digest = BlobDigest::of(&manifest);
        for (digest, data) in [
            (&layer_digest, &layer),
            (&config_digest, &config_bytes),
            (&manifest_digest, &manifest),
        ] {
            self.write_blob(reference, digest, data)?;
        }
        let repo_digest = reference::repo_digest(&tagged, manifest_digest.as_str());
        let layers = [Layer {
            digest: layer_digest,
            size: layer.len() as u64,
        }];
        self.register(&tagged, &repo_digest, &config_digest, &layers)
    }

    /// Imports every `*.tar` OCI image layout archive in `dir`; returns the imported tags.
    pub async fn import_dir(&self, dir: &Path) -> Result<Vec<String>> {
        let mut tags = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(tags);
        };
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "tar"))
            .collect();
        paths.sort();
        for p in paths {
            tags.extend(self.import_archive(&p).await?);
        }
        Ok(tags)
    }

    /// Imports the images of one OCI image layout archive (`oci-layout`, `index.json`, `blobs/`).
    pub async fn import_archive(&self, path: &Path) -> Result<Vec<String>> {
        let _guard = self.lock.lock().await;
        let import_err = |reason: String| Error::Image {
            image: path.display().to_string(),
            reason,
        };
        let file = std::fs::File::open(path).map_err(Error::io("opening", path))?;
        let mut archive = tar::Archive::new(file);
        let mut index = None;
        for entry in archive.entries().map_err(Error::io("reading", path))? {
            let mut entry = entry.map_err(Error::io("reading", path))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry
                .path()
                .map_err(Error::io("reading", path))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_owned();
            let mut data = Vec::new();
            entry
                .read_to_end(&mut data)
                .map_err(Error::io("reading", path))?;
            if name == "index.json" {
                index = Some(data);
            } else if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                let digest = BlobDigest::parse(&format!("sha256:{hex}"))
                    .map_err(|e| import_err(format!("blob {name}: {e}")))?;
                self.write_blob(&path.display().to_string(), &digest, &data)?;
            }
        }
        let index: serde_json::Value =
            serde_json::from_slice(&index.ok_or_else(|| import_err("no index.json".into()))?)
                .map_err(|e| import_err(format!("invalid index.json: {e}")))?;
        let mut tags = Vec::new();
        for desc in index["manifests"].as_array().into_iter().flatten() {
            let annotations = &desc["annotations"];
            let Some(name) = annotations["io.containerd.image.name"]
                .as_str()
                .or(annotations["org.opencontainers.image.ref.name"].as_str())
            else {
                continue;
            };
            let Ok(reference) = normalize(name) else {
                continue;
            };
            let manifest_digest = BlobDigest::parse(desc["digest"].as_str().unwrap_or_default())
                .map_err(|e| import_err(format!("index.json entry for {name}: {e}")))?;
            let manifest_path = self.blob_path(&manifest_digest);
            let manifest_bytes =
                std::fs::read(&manifest_path).map_err(Error::io("reading", &manifest_path))?;
            let manifest: OciImageManifest = serde_json::from_slice(&manifest_bytes)
                .map_err(|e| import_err(format!("manifest {manifest_digest}: {e}")))?;
            let (config_digest, layers) = checked_digests(&manifest)
                .map_err(|e| import_err(format!("manifest {manifest_digest}: {e}")))?;
            let repo_digest = reference::repo_digest(&reference, manifest_digest.as_str());
            self.register(&reference, &repo_digest, &config_digest, &layers)?;
            tags.push(reference.whole());
        }
        tracing::info!(archive = %path.display(), ?tags, "imported images");
        Ok(tags)
    }
}

/// Picks this machine's platform from an image index, remembering what the index offered when
/// it has no entry for it (so that the error can name both).
#[derive(Clone, Default)]
struct PlatformChoice(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl PlatformChoice {
    /// `os/architecture` of this machine, as image indexes name platforms.
    fn wanted() -> String {
        format!(
            "{}/{}",
            oci_spec::image::Os::default(),
            oci_spec::image::Arch::default()
        )
    }

    fn resolver(
        &self,
    ) -> impl Fn(&[oci_client::manifest::ImageIndexEntry]) -> Option<String> + Send + Sync + 'static
    {
        let missed = self.0.clone();
        move |entries| {
            let chosen = oci_client::client::current_platform_resolver(entries);
            if chosen.is_none() {
                let offered: Vec<String> = entries
                    .iter()
                    .filter_map(|e| e.platform.as_ref())
                    .map(|p| format!("{}/{}", p.os, p.architecture))
                    .collect();
                *missed.lock().expect("platform choice") = Some(offered.join(", "));
            }
            chosen
        }
    }

    /// The platforms an index offered, when none was this machine's.
    fn missed(&self) -> Option<String> {
        self.0.lock().expect("platform choice").clone()
    }
}

/// What went wrong talking to one endpoint; a refusal of credentials says so, apart from an
/// image that is not there.
fn describe_pull_error(reference: &Reference, e: OciDistributionError) -> String {
    use oci_client::errors::OciErrorCode as Code;
    const AUTH_HINT: &str = "check the credentials in imagePullSecrets or registries.yaml";
    let codes = match &e {
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().map(|e| &e.code).collect()
        }
        _ => Vec::new(),
    };
    match e {
        OciDistributionError::UnauthorizedError { url } => {
            format!("authorization failed: 401 Unauthorized from {url} ({AUTH_HINT})")
        }
        OciDistributionError::AuthenticationFailure(reason) => {
            format!("authorization failed: {reason} ({AUTH_HINT})")
        }
        _ if codes
            .iter()
            .any(|c| matches!(c, Code::Unauthorized | Code::Denied)) =>
        {
            format!("authorization failed: {e} ({AUTH_HINT})")
        }
        OciDistributionError::ImageManifestNotFoundError(_) => {
            format!("{}: not found", reference.whole())
        }
        _ if codes.iter().any(|c| {
            matches!(
                c,
                Code::ManifestUnknown | Code::NameUnknown | Code::NotFound
            )
        }) =>
        {
            format!("{}: not found", reference.whole())
        }
        other => with_causes(&other),
    }
}

/// `e` and its causes, each once: reqwest's errors keep the TLS or connection fault that
/// explains them in their sources.
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Writes through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", rand::random::<u32>()));
    std::fs::write(&tmp, data).map_err(Error::io("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::io("renaming", path))
}

/// The bytes (allocated blocks) and inodes the tree under `root` takes.
pub fn disk_usage(root: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            inodes += 1;
            bytes += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    (bytes, inodes)
}

#[cfg(test)]
mod tests;
