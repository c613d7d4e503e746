//! `persistentVolumeClaim` volumes. The claim (in the pod's namespace) must be Bound — the
//! scheduler and the PV controller bind it, and until they have the pod's sync reports the
//! FailedMount and retries — and its PersistentVolume must be bound back to it. The volume's
//! data is then used where it is on the node: a `hostPath` volume is checked (and made) as a
//! pod's own hostPath volume is, a `local` volume must be an existing directory. ekube has no
//! other volume plugins; a volume of any other kind is refused by name.

use std::path::PathBuf;

use ekube_api::storage;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimVolumeSource,
};
use kube::api::Api;

use super::Volume;

/// The fields of a PersistentVolume's spec that are not its volume source.
const NOT_SOURCES: [&str; 9] = [
    "accessModes",
    "capacity",
    "claimRef",
    "mountOptions",
    "nodeAffinity",
    "persistentVolumeReclaimPolicy",
    "storageClassName",
    "volumeAttributesClassName",
    "volumeMode",
];

/// Where a bound volume's data is on the node.
#[derive(Debug, PartialEq)]
enum Source<'a> {
    HostPath(&'a HostPathVolumeSource),
    Local(&'a str),
}

/// Makes the volume of claim `source` (in namespace `ns`) ready to mount.
pub(super) async fn prepare(
    client: &kube::Client,
    ns: &str,
    source: &PersistentVolumeClaimVolumeSource,
) -> Result<Volume, String> {
    let name = &source.claim_name;
    let claim = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| format!("persistentvolumeclaim \"{name}\": {e}"))?
        .ok_or_else(|| format!("persistentvolumeclaim \"{name}\" not found"))?;
    let pv_name = bound_volume(&claim, ns)?;
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get_opt(pv_name)
        .await
        .map_err(|e| format!("persistentvolume \"{pv_name}\": {e}"))?
        .ok_or_else(|| format!("persistentvolume \"{pv_name}\" not found"))?;
    if !storage::claimed_by(&pv, &claim) {
        return Err(format!(
            "persistentvolume \"{pv_name}\" is not bound to PVC {ns}/{name}"
        ));
    }
    volume(&pv, source.read_only == Some(true))
}

/// The volume a Bound claim is bound to.
fn bound_volume<'a>(claim: &'a PersistentVolumeClaim, ns: &str) -> Result<&'a str, String> {
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    match storage::bound_volume(claim) {
        Some(pv) if phase == Some("Bound") => Ok(pv),
        _ => Err(format!(
            "PVC {ns}/{} is not bound",
            claim.metadata.name.as_deref().unwrap_or_default()
        )),
    }
}

/// A PersistentVolume's data on the node, checked (and made, for hostPath types that say so),
/// mounted read-only when the pod's claim source says `readOnly`.
fn volume(pv: &PersistentVolume, read_only: bool) -> Result<Volume, String> {
    let path = match source(pv)? {
        Source::HostPath(h) => super::host_path(h)?,
        Source::Local(path) => local_dir(path)?,
    };
    Ok(Volume { path, read_only })
}

/// The source of a PersistentVolume, if ekube can use it.
fn source(pv: &PersistentVolume) -> Result<Source<'_>, String> {
    let Some(spec) = pv.spec.as_ref() else {
        return Err(super::unsupported(None));
    };
    if let Some(h) = &spec.host_path {
        return Ok(Source::HostPath(h));
    }
    if let Some(l) = &spec.local {
        return Ok(Source::Local(&l.path));
    }
    Err(super::unsupported(
        super::source_kind(spec, &NOT_SOURCES).as_deref(),
    ))
}

/// A `local` volume's path: it must be an existing directory (ekube mounts filesystem
/// volumes only).
fn local_dir(path: &str) -> Result<PathBuf, String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(PathBuf::from(path)),
        Ok(_) => Err(format!("path \"{path}\" is not a directory")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("path \"{path}\" does not exist"))
        }
        Err(e) => Err(format!("path \"{path}\": {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(source: serde_json::Value) -> PersistentVolume {
        let mut spec = json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": "local", "persistentVolumeReclaimPolicy": "Retain",
            "nodeAffinity": {"required": {"nodeSelectorTerms": []}}});
        spec.as_object_mut()
            .unwrap()
            .extend(source.as_object().unwrap().clone());
        serde_json::from_value(json!({"metadata": {"name": "pv"}, "spec": spec})).unwrap()
    }

    fn claim(volume: Option<&str>, phase: Option<&str>) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": "data", "namespace": "ns"},
            "spec": {"volumeName": volume}, "status": {"phase": phase}}))
        .unwrap()
    }

    #[test]
    fn only_a_bound_claim_names_its_volume() {
        assert_eq!(
            bound_volume(&claim(Some("pv"), Some("Bound")), "ns"),
            Ok("pv")
        );
        let not_bound = Err("PVC ns/data is not bound".to_owned());
        assert_eq!(bound_volume(&claim(None, Some("Pending")), "ns"), not_bound);
        assert_eq!(
            bound_volume(&claim(Some("pv"), Some("Pending")), "ns"),
            not_bound
        );
        assert_eq!(
            bound_volume(&claim(Some(""), Some("Bound")), "ns"),
            not_bound
        );
        assert_eq!(bound_volume(&claim(Some("pv"), None), "ns"), not_bound);
    }

    #[test]
    fn host_path_and_local_volumes_are_used_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let made = tmp.path().join("made/here");
        let v = volume(&pv(json!({"hostPath": {"path": made}})), false).unwrap();
        assert_eq!(v.path, made);
        assert!(!v.read_only);
        assert!(
            made.is_dir(),
            "a missing hostPath of type \"\" is made as a directory"
        );
        let file = tmp.path().join("f");
        std::fs::write(&file, "").unwrap();
        let typed = pv(json!({"hostPath": {"path": file, "type": "Directory"}}));
        assert!(
            volume(&typed, false)
                .unwrap_err()
                .ends_with("is not a directory")
        );

        let dir = tmp.path().display().to_string();
        let v = volume(&pv(json!({"local": {"path": dir}})), true).unwrap();
        assert_eq!(v.path, tmp.path());
        assert!(
            v.read_only,
            "the claim source's readOnly makes the volume read-only"
        );
        let gone = tmp.path().join("gone").display().to_string();
        assert_eq!(
            volume(&pv(json!({"local": {"path": gone}})), false).unwrap_err(),
            format!("path \"{gone}\" does not exist")
        );
        assert!(
            !tmp.path().join("gone").exists(),
            "a local path is never made"
        );
        let file = file.display().to_string();
        assert_eq!(
            volume(&pv(json!({"local": {"path": file}})), false).unwrap_err(),
            format!("path \"{file}\" is not a directory")
        );
    }

    #[test]
    fn other_volume_plugins_are_refused_by_name() {
        let nfs = pv(json!({"nfs": {"server": "10.0.0.1", "path": "/export"}}));
        assert_eq!(
            source(&nfs).unwrap_err(),
            "volume plugin for nfs is not supported by ekube"
        );
        let csi = pv(json!({"csi": {"driver": "example.com/disk", "volumeHandle": "v1"}}));
        assert_eq!(
            source(&csi).unwrap_err(),
            "volume plugin for csi is not supported by ekube"
        );
        assert_eq!(
            source(&pv(json!({}))).unwrap_err(),
            "the volume names no volume source"
        );
    }
}
