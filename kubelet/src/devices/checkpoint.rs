//! The device manager's checkpoint, `<root-dir>/device-plugins/kubelet_internal_checkpoint`:
//! which devices each container holds (with the plugin's `Allocate` answer) and which devices
//! each resource had, in upstream's layout (`Data.PodDeviceEntries`, `Data.RegisteredDevices`,
//! `Checksum`). The checksum is FNV-1a (32 bit) over the JSON of `Data`; a file whose checksum
//! does not match is refused rather than trusted.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use prost::Message;
use serde::{Deserialize, Serialize};

use super::{Allocation, api};

/// The checkpoint's file name in the device-plugins directory.
pub const FILE: &str = "kubelet_internal_checkpoint";

/// What the checkpoint keeps.
#[derive(Debug, Default, PartialEq)]
pub struct Saved {
    /// Resource name → every device ID its plugin reported.
    pub registered: BTreeMap<String, Vec<String>>,
    /// Pod UID → container → resource → allocation.
    pub allocations: BTreeMap<String, BTreeMap<String, BTreeMap<String, Allocation>>>,
}

#[derive(Serialize, Deserialize)]
struct File {
    #[serde(rename = "Data")]
    data: Data,
    #[serde(rename = "Checksum")]
    checksum: u32,
}

#[derive(Serialize, Deserialize)]
struct Data {
    #[serde(rename = "PodDeviceEntries", default)]
    entries: Vec<Entry>,
    #[serde(rename = "RegisteredDevices", default)]
    registered: BTreeMap<String, Vec<String>>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    #[serde(rename = "PodUID")]
    pod_uid: String,
    #[serde(rename = "ContainerName")]
    container: String,
    #[serde(rename = "ResourceName")]
    resource: String,
    /// Device IDs by NUMA node; ekube keeps no topology, so all are under `-1`.
    #[serde(rename = "DeviceIDs")]
    device_ids: BTreeMap<String, Vec<String>>,
    /// The plugin's `ContainerAllocateResponse`, protobuf-encoded (base64 in JSON).
    #[serde(rename = "AllocResp")]
    response: String,
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

fn checksum(data: &Data) -> u32 {
    fnv1a(&serde_json::to_vec(data).unwrap_or_default())
}

/// Reads the checkpoint of `dir`; `None` when there is none yet.
pub fn read(dir: &Path) -> Result<Option<Saved>, String> {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let file: File =
        serde_json::from_slice(&bytes).map_err(|e| format!("parsing {}: {e}", path.display()))?;
    if checksum(&file.data) != file.checksum {
        return Err(format!(
            "{}: checksum does not match; the file is corrupt",
            path.display()
        ));
    }
    let mut saved = Saved {
        registered: file.data.registered,
        ..Default::default()
    };
    for e in file.data.entries {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&e.response)
            .map_err(|err| format!("{}: AllocResp of pod {}: {err}", path.display(), e.pod_uid))?;
        let response = api::ContainerAllocateResponse::decode(raw.as_slice())
            .map_err(|err| format!("{}: AllocResp of pod {}: {err}", path.display(), e.pod_uid))?;
        let device_ids = e.device_ids.into_values().flatten().collect();
        saved
            .allocations
            .entry(e.pod_uid)
            .or_default()
            .entry(e.container)
            .or_default()
            .insert(
                e.resource,
                Allocation {
                    device_ids,
                    response,
                },
            );
    }
    Ok(Some(saved))
}

/// Writes the checkpoint of `dir` (whole, through a temporary file and a rename).
pub fn write(dir: &Path, saved: &Saved) -> Result<(), String> {
    let mut entries = Vec::new();
    for (uid, containers) in &saved.allocations {
        for (container, by_resource) in containers {
            for (resource, a) in by_resource {
                entries.push(Entry {
                    pod_uid: uid.clone(),
                    container: container.clone(),
                    resource: resource.clone(),
                    device_ids: [("-1".to_owned(), a.device_ids.clone())].into(),
                    response: base64::engine::general_purpose::STANDARD
                        .encode(a.response.encode_to_vec()),
                });
            }
        }
    }
    let data = Data {
        entries,
        registered: saved.registered.clone(),
    };
    let file = File {
        checksum: checksum(&data),
        data,
    };
    let path = dir.join(FILE);
    let tmp = dir.join(format!(".{FILE}.tmp"));
    let bytes = serde_json::to_vec(&file).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let response = api::ContainerAllocateResponse {
            envs: [("EXAMPLE_DEVICES".to_owned(), "dev-1".to_owned())].into(),
            devices: vec![api::DeviceSpec {
                container_path: "/dev/example/dev-1".into(),
                host_path: "/dev/null".into(),
                permissions: "rw".into(),
            }],
            ..Default::default()
        };
        let mut saved = Saved::default();
        saved.registered.insert(
            "vendor.example/dev".into(),
            vec!["dev-0".into(), "dev-1".into()],
        );
        saved
            .allocations
            .entry("uid-1".into())
            .or_default()
            .entry("main".into())
            .or_default()
            .insert(
                "vendor.example/dev".into(),
                Allocation {
                    device_ids: vec!["dev-1".into()],
                    response,
                },
            );
        write(dir.path(), &saved).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(saved));
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(text.contains(r#""DeviceIDs":{"-1":["dev-1"]}"#), "{text}");
        std::fs::write(dir.path().join(FILE), text.replace("dev-1", "dev-0")).unwrap();
        let err = read(dir.path()).unwrap_err();
        assert!(err.contains("checksum does not match"), "{err}");
    }
}
