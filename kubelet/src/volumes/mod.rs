//! A pod's volumes on the node and the container mounts made of them.
//!
//! Each volume lives under the pod's directory, `<root>/pods/<uid>/volumes/<name>`, except
//! hostPath volumes, which are the host path itself. configMap, secret, downwardAPI and
//! projected volumes are written by the [`atomic_writer`] (secret and projected ones on a
//! tmpfs, as upstream, so secrets never reach a disk) and mounted read-only into containers;
//! a `subPath` is mounted through [`subpath`], never by joining paths. hostPath volumes are
//! checked against their `type` as upstream checks them, and a missing path of type `""` is
//! made as a directory, as container runtimes make a missing bind-mount source.
//! `persistentVolumeClaim` volumes are their bound PersistentVolume's data in place
//! ([`claim`]). A volume of any other kind (nfs, iscsi, csi, ephemeral, …) is accepted by the
//! apiserver, as upstream's is, and refused here by name (a FailedMount), never replaced by an
//! empty directory. Everything mounted under a pod's directory is unmounted before the
//! directory is removed.

pub mod atomic_writer;
mod claim;
mod mount;
mod subpath;
pub mod tokens;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, HostPathVolumeSource, KeyToPath, Pod,
    ServiceAccountTokenProjection, Volume as VolumeSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use self::atomic_writer::{File, Payload};
use self::tokens::TokenManager;
use super::inputs::{self, ConfigError};
use crate::cri;

/// A volume ready to be mounted into the pod's containers.
#[derive(Debug, Clone)]
pub struct Volume {
    /// Where it is on the node.
    pub path: PathBuf,
    /// Whether every mount of it is read-only (content the kubelet writes: configMap,
    /// secret, downwardAPI, projected).
    pub read_only: bool,
}

/// Why a volume could not be set up, worded as upstream's FailedMount events.
#[derive(Debug, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume \"{volume}\" : {message}")]
pub struct SetUpError {
    pub volume: String,
    pub message: String,
}

/// The directory holding one directory per pod (named by UID) under the kubelet's root.
pub fn pods_dir(root: &Path) -> PathBuf {
    root.join("pods")
}

/// The directory of pod `uid` (its volumes and subPath mounts) on the node.
pub fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    pods_dir(root).join(uid)
}

/// Directory of a pod's volumes on the node.
fn volumes_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join("volumes")
}

/// Unmounts whatever is mounted under `dir` (a pod's tmpfs volumes and subPath binds, or
/// the whole kubelet root's), then removes the directory; a directory that is gone already is
/// fine. Nothing is removed while something under it stays mounted: removal must never reach
/// through a bind mount.
pub fn remove_unmounting(dir: &Path) -> std::io::Result<()> {
    mount::unmount_all_under(dir)?;
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Prepares every volume of the pod; returns them by name. `allocatable` is the node's (for
/// downwardAPI `resourceFieldRef`s to limits a container does not set).
pub async fn prepare(
    client: &kube::Client,
    tokens: &TokenManager,
    pod: &Pod,
    pod_dir: &Path,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<BTreeMap<String, Volume>, SetUpError> {
    let mut out = BTreeMap::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let volume = prepare_one(
            client,
            tokens,
            pod,
            v,
            &volumes_dir(pod_dir).join(&v.name),
            allocatable,
        )
        .await
        .map_err(|message| SetUpError {
            volume: v.name.clone(),
            message,
        })?;
        out.insert(v.name.clone(), volume);
    }
    Ok(out)
}

async fn prepare_one(
    client: &kube::Client,
    tokens: &TokenManager,
    pod: &Pod,
    v: &VolumeSpec,
    path: &Path,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<Volume, String> {
    let io = |e: std::io::Error| e.to_string();
    let written = |path: &Path| Volume {
        path: path.to_owned(),
        read_only: true,
    };
    if let Some(h) = &v.host_path {
        return Ok(Volume {
            path: host_path(h)?,
            read_only: false,
        });
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    if let Some(cm) = &v.config_map {
        let (items, mode) = (cm.items.as_ref(), mode_of(cm.default_mode));
        let payload = keyed_payload(
            client,
            ns,
            Keyed::ConfigMap,
            &cm.name,
            items,
            cm.optional,
            mode,
        )
        .await?;
        atomic_writer::write(path, &payload).map_err(io)?;
        return Ok(written(path));
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.as_deref().unwrap_or_default();
        let (items, mode) = (s.items.as_ref(), mode_of(s.default_mode));
        let payload =
            keyed_payload(client, ns, Keyed::Secret, name, items, s.optional, mode).await?;
        ensure_tmpfs(path, "mode=0755").map_err(io)?;
        atomic_writer::write(path, &payload).map_err(io)?;
        return Ok(written(path));
    }
    if let Some(d) = &v.downward_api {
        let payload = downward_payload(
            pod,
            d.items.iter().flatten(),
            mode_of(d.default_mode),
            allocatable,
        )?;
        atomic_writer::write(path, &payload).map_err(io)?;
        return Ok(written(path));
    }
    if let Some(p) = &v.projected {
        let payload = projected_payload(client, tokens, pod, p, allocatable).await?;
        ensure_tmpfs(path, "mode=0755").map_err(io)?;
        atomic_writer::write(path, &payload).map_err(io)?;
        return Ok(written(path));
    }
    if let Some(c) = &v.persistent_volume_claim {
        return claim::prepare(client, ns, c).await;
    }
    if let Some(kind) = source_kind(v, &["name"]).filter(|k| k != "emptyDir") {
        return Err(unsupported(Some(&kind)));
    }
    // emptyDir (or no source, which upstream defaults to emptyDir): a directory everyone may
    // write, as upstream; `medium: Memory` puts it on a tmpfs bounded by `sizeLimit`.
    let medium = v.empty_dir.as_ref().and_then(|e| e.medium.as_deref());
    if medium == Some("Memory") {
        let mut options = "mode=1777".to_owned();
        if let Some(limit) = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()) {
            let bytes = ekube_api::quantity::bytes(&limit.0)
                .map_err(|_| format!("invalid sizeLimit {:?}", limit.0))?;
            options.push_str(&format!(",size={bytes}"));
        }
        ensure_tmpfs(path, &options).map_err(io)?;
    } else if !path.is_dir() {
        std::fs::create_dir_all(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).map_err(io)?;
    }
    Ok(Volume {
        path: path.to_owned(),
        read_only: false,
    })
}

/// The kind of source a volume (or a PersistentVolume's spec) names, as the API spells it
/// (`emptyDir`, `nfs`, …): its first field besides `others`.
fn source_kind(spec: &impl serde::Serialize, others: &[&str]) -> Option<String> {
    let value = serde_json::to_value(spec).ok()?;
    value
        .as_object()?
        .keys()
        .find(|k| !others.contains(&k.as_str()))
        .cloned()
}

/// Why a volume of `kind` (`None`: of no kind at all) cannot be set up.
fn unsupported(kind: Option<&str>) -> String {
    match kind {
        Some(kind) => format!("volume plugin for {kind} is not supported by ekube"),
        None => "the volume names no volume source".into(),
    }
}

/// A `defaultMode`, defaulted as the apiserver defaults it.
fn mode_of(mode: Option<i32>) -> u32 {
    mode.map_or(0o644, |m| m as u32 & 0o777)
}

/// Makes `path` a tmpfs mount point unless it is one already (a restarted container, or a
/// restarted kubelet adopting the pod, finds its volume mounted).
fn ensure_tmpfs(path: &Path, options: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    if mount::is_mount_point(path) {
        return Ok(());
    }
    mount::tmpfs(path, options)
}

/// Checks (and for the `…OrCreate` types and `""`, makes) a hostPath as upstream does.
fn host_path(h: &HostPathVolumeSource) -> Result<PathBuf, String> {
    let path = PathBuf::from(&h.path);
    let meta = std::fs::metadata(&path);
    let missing = matches!(&meta, Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    let is = |f: fn(&std::fs::Metadata) -> bool| meta.as_ref().is_ok_and(f);
    let fail = |what: &str| {
        Err(format!(
            "hostPath type check failed: {} is not {what}",
            h.path
        ))
    };
    let ty = h.type_.as_deref().unwrap_or_default();
    match ty {
        // Made as a directory, as runtimes make a missing bind-mount source.
        "" | "DirectoryOrCreate" if missing => {
            std::fs::create_dir_all(&path).map_err(|e| format!("creating {}: {e}", h.path))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("creating {}: {e}", h.path))?;
        }
        "" => {}
        "DirectoryOrCreate" | "Directory" if !is(|m| m.is_dir()) => return fail("a directory"),
        "FileOrCreate" if missing => {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| format!("creating {}: {e}", h.path))?;
        }
        "FileOrCreate" | "File" if !is(|m| m.is_file()) => return fail("a file"),
        "Socket" if !is(|m| m.file_type().is_socket()) => return fail("a socket file"),
        "CharDevice" if !is(|m| m.file_type().is_char_device()) => {
            return fail("a character device");
        }
        "BlockDevice" if !is(|m| m.file_type().is_block_device()) => {
            return fail("a block device");
        }
        "DirectoryOrCreate" | "Directory" | "FileOrCreate" | "File" | "Socket" | "CharDevice"
        | "BlockDevice" => {}
        other => return Err(format!("invalid hostPath type {other:?}")),
    }
    Ok(path)
}

/// The files `items` pick out of `data` (all keys when `items` is absent), with their modes;
/// a key `items` names that `data` lacks is the error, unless the source is `optional`.
fn key_to_paths(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    mode: u32,
    optional: bool,
) -> Result<Payload, String> {
    let Some(items) = items else {
        return Ok(data
            .into_iter()
            .map(|(k, data)| (k, File { data, mode }))
            .collect());
    };
    let mut out = Payload::new();
    for item in items {
        match data.get(&item.key) {
            Some(d) => {
                out.insert(
                    item.path.clone(),
                    File {
                        data: d.clone(),
                        mode: item.mode.map_or(mode, |m| m as u32 & 0o777),
                    },
                );
            }
            None if optional => {}
            None => return Err(item.key.clone()),
        }
    }
    Ok(out)
}

/// The kind of object a keyed source (configMap or secret) reads.
#[derive(Debug, Clone, Copy)]
enum Keyed {
    ConfigMap,
    Secret,
}

/// The files of a configMap or secret source: the object `name` in `ns`, picked by `items`.
async fn keyed_payload(
    client: &kube::Client,
    ns: &str,
    kind: Keyed,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    optional: Option<bool>,
    mode: u32,
) -> Result<Payload, String> {
    let optional = optional == Some(true);
    let data = match kind {
        Keyed::ConfigMap => inputs::get_configmap(client, ns, name)
            .await
            .map_err(|e| e.0)?
            .map(|c| inputs::configmap_data(&c)),
        Keyed::Secret => inputs::get_secret(client, ns, name)
            .await
            .map_err(|e| e.0)?
            .map(|s| inputs::secret_data(&s)),
    };
    let noun = match kind {
        Keyed::ConfigMap => "configmap",
        Keyed::Secret => "secret",
    };
    match data {
        Some(data) => key_to_paths(data, items, mode, optional).map_err(|key| match kind {
            Keyed::ConfigMap => format!("configmap references non-existent config key: {key}"),
            Keyed::Secret => format!("references non-existent secret key: {key}"),
        }),
        None if optional => Ok(Payload::new()),
        None => Err(format!("{noun} \"{name}\" not found")),
    }
}

/// The files of a downwardAPI volume (or projection) of `pod`.
fn downward_payload<'a>(
    pod: &Pod,
    items: impl Iterator<Item = &'a DownwardAPIVolumeFile>,
    mode: u32,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            match f.field_path.as_str() {
                "metadata.labels" => inputs::format_map(pod.metadata.labels.as_ref()),
                "metadata.annotations" => inputs::format_map(pod.metadata.annotations.as_ref()),
                other => inputs::field(pod, other)
                    .ok_or_else(|| format!("unsupported fieldRef {other}"))?,
            }
        } else if let Some(r) = &item.resource_field_ref {
            let spec = pod.spec.clone().unwrap_or_default();
            let wanted = r.container_name.clone().unwrap_or_default();
            let c = spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .find(|c| c.name == wanted)
                .ok_or_else(|| format!("resourceFieldRef names no container {wanted:?}"))?;
            inputs::resource_field(c, &r.resource, r.divisor.as_ref(), allocatable)
                .map_err(|e| e.0)?
        } else {
            String::new()
        };
        out.insert(
            item.path.clone(),
            File {
                data: value.into_bytes(),
                mode: item.mode.map_or(mode, |m| m as u32 & 0o777),
            },
        );
    }
    Ok(out)
}

/// The files of a projected volume: its sources' files together, under its `defaultMode`.
async fn projected_payload(
    client: &kube::Client,
    tokens: &TokenManager,
    pod: &Pod,
    p: &k8s_openapi::api::core::v1::ProjectedVolumeSource,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<Payload, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mode = mode_of(p.default_mode);
    let mut out = Payload::new();
    for source in p.sources.iter().flatten() {
        let files = if let Some(cm) = &source.config_map {
            let items = cm.items.as_ref();
            keyed_payload(
                client,
                ns,
                Keyed::ConfigMap,
                &cm.name,
                items,
                cm.optional,
                mode,
            )
            .await?
        } else if let Some(s) = &source.secret {
            let items = s.items.as_ref();
            keyed_payload(client, ns, Keyed::Secret, &s.name, items, s.optional, mode).await?
        } else if let Some(d) = &source.downward_api {
            downward_payload(pod, d.items.iter().flatten(), mode, allocatable)?
        } else if let Some(t) = &source.service_account_token {
            token_payload(client, tokens, pod, t, mode).await?
        } else {
            return Err(
                "unsupported projected volume source (clusterTrustBundle, podCertificate)".into(),
            );
        };
        out.extend(files);
    }
    Ok(out)
}

/// A service account token for `pod`, bound to it, from the [`TokenManager`].
async fn token_payload(
    client: &kube::Client,
    tokens: &TokenManager,
    pod: &Pod,
    t: &ServiceAccountTokenProjection,
    mode: u32,
) -> Result<Payload, String> {
    let token = tokens.get(client, pod, t).await?;
    Ok([(
        t.path.clone(),
        File {
            data: token.into_bytes(),
            mode,
        },
    )]
    .into())
}

/// Rewrites the projected volumes of a running pod whose ServiceAccount token is due for a
/// refresh, as upstream's volume manager does when its token manager says so. Volumes not
/// prepared yet are left to the container start.
pub async fn refresh_token_volumes(
    client: &kube::Client,
    tokens: &TokenManager,
    pod: &Pod,
    pod_dir: &Path,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<(), SetUpError> {
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let path = volumes_dir(pod_dir).join(&v.name);
        let Some(p) = &v.projected else { continue };
        let due = p
            .sources
            .iter()
            .flatten()
            .filter_map(|s| s.service_account_token.as_ref())
            .any(|t| tokens.needs_refresh(pod, t));
        if !due || !path.is_dir() {
            continue;
        }
        let written = match projected_payload(client, tokens, pod, p, allocatable).await {
            Ok(payload) => atomic_writer::write(&path, &payload).map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        written.map_err(|message| SetUpError {
            volume: v.name.clone(),
            message,
        })?;
    }
    Ok(())
}

/// Rewrites the downwardAPI volumes of a running pod from its newest version (labels and
/// annotations may change while it runs), as upstream's periodic volume resync does. Volumes
/// not prepared yet are left to the container start.
pub fn refresh_downward_volumes(
    pod: &Pod,
    pod_dir: &Path,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<(), SetUpError> {
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let path = volumes_dir(pod_dir).join(&v.name);
        if let Some(d) = &v.downward_api
            && path.is_dir()
        {
            downward_payload(
                pod,
                d.items.iter().flatten(),
                mode_of(d.default_mode),
                allocatable,
            )
            .and_then(|p| atomic_writer::write(&path, &p).map_err(|e| e.to_string()))
            .map_err(|message| SetUpError {
                volume: v.name.clone(),
                message,
            })?;
        }
    }
    Ok(())
}

/// The container's volume mounts as CRI mounts. A `subPath` (or `subPathExpr`, expanded from
/// the container's `env`) is bind-mounted under `pod_dir` first and that mount is given.
pub fn mounts(
    c: &Container,
    pod_dir: &Path,
    volumes: &BTreeMap<String, Volume>,
    env: &BTreeMap<String, String>,
) -> Result<Vec<cri::Mount>, ConfigError> {
    let mut out = Vec::new();
    for (index, m) in c.volume_mounts.iter().flatten().enumerate() {
        let volume = volumes
            .get(&m.name)
            .ok_or_else(|| ConfigError(format!("volume \"{}\" not found", m.name)))?;
        let sub = match (m.sub_path.as_deref(), m.sub_path_expr.as_deref()) {
            (_, Some(expr)) if !expr.is_empty() => Some(inputs::expand(expr, env)),
            (Some(sub), _) if !sub.is_empty() => Some(sub.to_owned()),
            _ => None,
        };
        let host = match sub {
            Some(sub) => {
                let target = subpath::target(pod_dir, &m.name, &c.name, index);
                subpath::bind(&volume.path, &sub, &target).map_err(|e| {
                    ConfigError(format!(
                        "failed to prepare subPath for volumeMount \"{}\" of container \"{}\": {e}",
                        m.name, c.name
                    ))
                })?;
                target
            }
            None => volume.path.clone(),
        };
        out.push(cri::Mount {
            container_path: m.mount_path.clone(),
            host_path: host.display().to_string(),
            readonly: volume.read_only || m.read_only == Some(true),
            ..Default::default()
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(path: &Path, ty: &str) -> Result<PathBuf, String> {
        host_path(&HostPathVolumeSource {
            path: path.display().to_string(),
            type_: Some(ty.into()),
        })
    }

    #[test]
    fn host_path_types_are_checked_as_upstream() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("opt/mysql/data");
        host(&dir, "").unwrap();
        assert!(
            dir.is_dir(),
            "a missing path of type \"\" is made as a directory"
        );
        host(&dir, "Directory").unwrap();
        let file = tmp.path().join("f");
        assert_eq!(
            host(&file, "File").unwrap_err(),
            format!(
                "hostPath type check failed: {} is not a file",
                file.display()
            )
        );
        host(&file, "FileOrCreate").unwrap();
        assert!(file.is_file());
        host(&file, "File").unwrap();
        assert!(
            host(&file, "Directory")
                .unwrap_err()
                .ends_with("is not a directory")
        );
        assert!(
            host(&file, "DirectoryOrCreate")
                .unwrap_err()
                .ends_with("is not a directory")
        );
        assert!(
            host(&file, "Socket")
                .unwrap_err()
                .ends_with("is not a socket file")
        );
        assert!(host(Path::new("/dev/null"), "CharDevice").is_ok());
        assert!(
            host(Path::new("/dev/null"), "BlockDevice")
                .unwrap_err()
                .ends_with("is not a block device")
        );
        assert!(host(&dir, "Dir").is_err());
    }

    #[test]
    fn volume_kinds_are_named_as_the_api_spells_them() {
        let kind = |v: serde_json::Value| {
            let v: VolumeSpec = serde_json::from_value(v).unwrap();
            source_kind(&v, &["name"])
        };
        assert_eq!(kind(serde_json::json!({"name": "v"})), None);
        assert_eq!(
            kind(serde_json::json!({"name": "v", "emptyDir": {}})).as_deref(),
            Some("emptyDir")
        );
        let nfs = kind(serde_json::json!({"name": "v", "nfs": {"server": "s", "path": "/"}}));
        assert_eq!(
            unsupported(nfs.as_deref()),
            "volume plugin for nfs is not supported by ekube"
        );
        let ephemeral = serde_json::json!({"name": "v",
            "ephemeral": {"volumeClaimTemplate": {"spec": {}}}});
        assert_eq!(kind(ephemeral).as_deref(), Some("ephemeral"));
    }

    #[test]
    fn a_read_only_volume_is_mounted_read_only() {
        let c: Container = serde_json::from_value(serde_json::json!({"name": "c",
            "volumeMounts": [{"name": "ro", "mountPath": "/a"},
                             {"name": "rw", "mountPath": "/b"},
                             {"name": "rw", "mountPath": "/c", "readOnly": true}]}))
        .unwrap();
        let volumes: BTreeMap<String, Volume> = [
            (
                "ro".to_owned(),
                Volume {
                    path: "/data/ro".into(),
                    read_only: true,
                },
            ),
            (
                "rw".to_owned(),
                Volume {
                    path: "/data/rw".into(),
                    read_only: false,
                },
            ),
        ]
        .into();
        let m = mounts(&c, Path::new("/pods/p"), &volumes, &BTreeMap::new()).unwrap();
        let ro: Vec<(&str, bool)> = m
            .iter()
            .map(|m| (m.container_path.as_str(), m.readonly))
            .collect();
        assert_eq!(ro, [("/a", true), ("/b", false), ("/c", true)]);
    }

    #[test]
    fn items_pick_keys_with_their_modes() {
        let data: BTreeMap<String, Vec<u8>> =
            [("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())].into();
        let items = vec![KeyToPath {
            key: "a".into(),
            path: "x/a".into(),
            mode: Some(0o400),
            ..Default::default()
        }];
        let p = key_to_paths(data.clone(), Some(&items), 0o644, false).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p["x/a"].mode, 0o400);
        let all = key_to_paths(data.clone(), None, 0o600, false).unwrap();
        assert_eq!(all["b"].mode, 0o600);
        let missing = vec![KeyToPath {
            key: "zz".into(),
            path: "z".into(),
            ..Default::default()
        }];
        assert_eq!(
            key_to_paths(data.clone(), Some(&missing), 0o644, false).unwrap_err(),
            "zz"
        );
        assert!(
            key_to_paths(data, Some(&missing), 0o644, true)
                .unwrap()
                .is_empty()
        );
    }
}
