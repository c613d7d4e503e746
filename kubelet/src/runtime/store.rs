//! The runtime's records on disk, so a restarted runtime knows its sandboxes and containers:
//! next to each sandbox and container directory, the CRI message describing it (protobuf, as
//! on the wire) and the few fields the runtime adds. Files are replaced atomically.

use std::path::Path;

use prost::Message;

use crate::cri;

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

/// A sandbox's persisted record.
pub struct SandboxRecord {
    pub config: cri::PodSandboxConfig,
    pub created_at: i64,
    pub ready: bool,
}

/// Saves a sandbox's record in its directory.
pub fn save_sandbox(dir: &Path, r: &SandboxRecord) -> std::io::Result<()> {
    write_atomic(&dir.join("config.pb"), &r.config.encode_to_vec())?;
    write_atomic(
        &dir.join("record.json"),
        serde_json::json!({"createdAt": r.created_at, "ready": r.ready})
            .to_string()
            .as_bytes(),
    )
}

/// Loads a sandbox's record, `None` when it is missing or unreadable.
pub fn load_sandbox(dir: &Path) -> Option<SandboxRecord> {
    let config =
        cri::PodSandboxConfig::decode(std::fs::read(dir.join("config.pb")).ok()?.as_slice())
            .ok()?;
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("record.json")).ok()?).ok()?;
    Some(SandboxRecord {
        config,
        created_at: meta["createdAt"].as_i64()?,
        ready: meta["ready"].as_bool()?,
    })
}

/// A container's persisted record.
pub struct ContainerRecord {
    pub status: cri::ContainerStatus,
    pub sandbox_id: String,
    pub cgroups_path: String,
}

/// Saves a container's record in its directory.
pub fn save_container(dir: &Path, r: &ContainerRecord) -> std::io::Result<()> {
    write_atomic(&dir.join("status.pb"), &r.status.encode_to_vec())?;
    write_atomic(
        &dir.join("record.json"),
        serde_json::json!({"sandboxId": r.sandbox_id, "cgroupsPath": r.cgroups_path})
            .to_string()
            .as_bytes(),
    )
}

/// Loads a container's record, `None` when it is missing or unreadable.
pub fn load_container(dir: &Path) -> Option<ContainerRecord> {
    let status =
        cri::ContainerStatus::decode(std::fs::read(dir.join("status.pb")).ok()?.as_slice()).ok()?;
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("record.json")).ok()?).ok()?;
    Some(ContainerRecord {
        status,
        sandbox_id: meta["sandboxId"].as_str()?.to_owned(),
        cgroups_path: meta["cgroupsPath"].as_str()?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let config = cri::PodSandboxConfig {
            hostname: "web".into(),
            ..Default::default()
        };
        save_sandbox(
            dir.path(),
            &SandboxRecord {
                config: config.clone(),
                created_at: 7,
                ready: true,
            },
        )
        .unwrap();
        let s = load_sandbox(dir.path()).unwrap();
        assert_eq!((s.config, s.created_at, s.ready), (config, 7, true));
        let status = cri::ContainerStatus {
            id: "c1".into(),
            exit_code: 3,
            ..Default::default()
        };
        save_container(
            dir.path(),
            &ContainerRecord {
                status: status.clone(),
                sandbox_id: "s1".into(),
                cgroups_path: "/p/c1".into(),
            },
        )
        .unwrap();
        let c = load_container(dir.path()).unwrap();
        assert_eq!(
            (c.status, c.sandbox_id.as_str(), c.cgroups_path.as_str()),
            (status, "s1", "/p/c1")
        );
    }
}
