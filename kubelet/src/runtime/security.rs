//! The CRI `LinuxContainerSecurityContext` as OCI confinement, with containerd's defaults:
//! its default capability set, masked and read-only `/proc` paths, the `RuntimeDefault`
//! seccomp profile when asked for, and for privileged containers every capability the
//! runtime holds, no masks, no seccomp, the host's devices and a writable `/sys`.
//!
//! What this runtime cannot honour (SELinux labels, AppArmor without AppArmor, a capability
//! it does not hold itself, an unknown capability name) is refused with an error naming the
//! field, never dropped.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxCapabilitiesBuilder, LinuxDevice, LinuxDeviceBuilder,
    LinuxDeviceType, LinuxSeccomp,
};

use super::{Error, Result, seccomp};
use crate::cri;
use cri::security_profile::ProfileType;

/// Capabilities a container gets unless it adds or drops some (containerd's default set).
pub const DEFAULT_CAPS: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability, in the order of their bit numbers (`CAP_CHOWN` is bit 0).
const ALL_CAPS: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Paths hidden from unprivileged containers (containerd's and the kubelet's default list):
/// kernel memory, keys, timers and hardware a container has no business reading.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths unprivileged containers see read-only: the kernel's tunables.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// What the host lets this runtime grant, probed once at start-up.
#[derive(Debug, Clone, Default)]
pub struct HostSecurity {
    /// Capabilities the runtime itself holds (its effective set): the most it can hand on.
    pub capabilities: HashSet<String>,
    /// Whether the kernel enforces AppArmor.
    pub apparmor: bool,
}

impl HostSecurity {
    pub fn probe() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0);
        let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|v| v.trim() == "Y");
        Self {
            capabilities: caps_of_mask(eff),
            apparmor,
        }
    }
}

fn caps_of_mask(mask: u64) -> HashSet<String> {
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .map(|(_, name)| name.to_string())
        .collect()
}

/// The OCI confinement of one container.
#[derive(Debug)]
pub struct Confinement {
    pub capabilities: LinuxCapabilities,
    /// Capability names (without `CAP_`), as the seccomp profile needs them.
    pub capability_names: HashSet<String>,
    pub no_new_privileges: bool,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub seccomp: Option<LinuxSeccomp>,
    pub apparmor_profile: Option<String>,
    /// Privileged: the host's devices, every device allowed, `/sys` writable.
    pub privileged: bool,
}

/// A capability name as Kubernetes and CRI clients write it (`net_admin`, `CAP_NET_ADMIN`)
/// in the runtime's form (`NET_ADMIN`).
fn normalize_cap(name: &str) -> String {
    let upper = name.to_uppercase();
    upper.strip_prefix("CAP_").unwrap_or(&upper).to_owned()
}

/// The capability set: the default set, minus drops, plus adds (`ALL` in either), or for a
/// privileged container everything the runtime holds.
fn capability_names(
    sc: &cri::LinuxContainerSecurityContext,
    host: &HostSecurity,
) -> Result<HashSet<String>> {
    if sc.privileged {
        return Ok(host.capabilities.clone());
    }
    let cap = sc.capabilities.clone().unwrap_or_default();
    if !cap.add_ambient_capabilities.is_empty() {
        return Err(Error::InvalidArgument(
            "ambient capabilities are not supported by this runtime".into(),
        ));
    }
    let drop: Vec<String> = cap
        .drop_capabilities
        .iter()
        .map(|c| normalize_cap(c))
        .collect();
    let add: Vec<String> = cap
        .add_capabilities
        .iter()
        .map(|c| normalize_cap(c))
        .collect();
    for name in drop.iter().chain(&add) {
        if name != "ALL" && !ALL_CAPS.contains(&name.as_str()) {
            return Err(Error::InvalidArgument(format!(
                "unknown capability {name:?}"
            )));
        }
    }
    let mut set: HashSet<String> = if drop.iter().any(|d| d == "ALL") {
        HashSet::new()
    } else {
        DEFAULT_CAPS
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    for a in add {
        if a == "ALL" {
            set.extend(host.capabilities.iter().cloned());
        } else if host.capabilities.contains(&a) {
            set.insert(a);
        } else {
            return Err(Error::InvalidArgument(format!(
                "capability {a} cannot be granted: the runtime does not hold it on this node"
            )));
        }
    }
    Ok(set)
}

fn oci_caps(names: &HashSet<String>) -> Result<LinuxCapabilities> {
    let set: HashSet<Capability> = names
        .iter()
        .map(|n| {
            serde_json::from_value(serde_json::Value::String(format!("CAP_{n}")))
                .map_err(Error::spec)
        })
        .collect::<Result<_>>()?;
    // Inheritable and ambient stay empty (as containerd since CVE-2022-24769): the builder's
    // defaults would hand capabilities on across execve, even to a non-root user.
    LinuxCapabilitiesBuilder::default()
        .bounding(set.clone())
        .effective(set.clone())
        .permitted(set)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .map_err(Error::spec)
}

fn paths(given: &[String], default: &[&str]) -> Vec<String> {
    if given.is_empty() {
        default.iter().map(|p| p.to_string()).collect()
    } else {
        given.to_vec()
    }
}

/// The seccomp filter the profile asks for; none for privileged containers and when no
/// profile is named (as containerd: the kubelet names one when it wants one).
fn seccomp_filter(
    sc: &cri::LinuxContainerSecurityContext,
    caps: &HashSet<String>,
) -> Result<Option<LinuxSeccomp>> {
    let Some(profile) = sc.seccomp.as_ref().filter(|_| !sc.privileged) else {
        return Ok(None);
    };
    let kind = ProfileType::try_from(profile.profile_type).map_err(|_| {
        Error::InvalidArgument(format!(
            "unknown seccomp profile type {}",
            profile.profile_type
        ))
    })?;
    if kind != ProfileType::Localhost && !profile.localhost_ref.is_empty() {
        return Err(Error::InvalidArgument(
            "seccomp localhost_ref is only valid with the Localhost profile type".into(),
        ));
    }
    match kind {
        ProfileType::Unconfined => Ok(None),
        ProfileType::RuntimeDefault => seccomp::runtime_default(caps).map(Some),
        ProfileType::Localhost => seccomp::localhost(Path::new(
            profile
                .localhost_ref
                .strip_prefix("localhost/")
                .unwrap_or(&profile.localhost_ref),
        ))
        .map(Some),
    }
}

/// The AppArmor profile the container runs under: only what the kernel enforces, and only
/// profiles already loaded on the node (this runtime ships no default AppArmor profile).
fn apparmor_profile(
    sc: &cri::LinuxContainerSecurityContext,
    host: &HostSecurity,
) -> Result<Option<String>> {
    let Some(profile) = &sc.apparmor else {
        return Ok(None);
    };
    match ProfileType::try_from(profile.profile_type) {
        Ok(ProfileType::Unconfined) => Ok(None),
        Ok(ProfileType::Localhost) if host.apparmor && !sc.privileged => Ok(Some(
            profile
                .localhost_ref
                .strip_prefix("localhost/")
                .unwrap_or(&profile.localhost_ref)
                .to_owned(),
        )),
        Ok(ProfileType::Localhost) if host.apparmor => Ok(None),
        Ok(ProfileType::RuntimeDefault) if host.apparmor => Err(Error::InvalidArgument(
            "this runtime has no RuntimeDefault AppArmor profile; use Unconfined or a \
             Localhost profile loaded on the node"
                .into(),
        )),
        _ => Err(Error::InvalidArgument(
            "AppArmor is not enabled on this node; only the Unconfined AppArmor profile can \
             be honoured"
                .into(),
        )),
    }
}

/// Maps the CRI security context to OCI confinement, refusing what cannot be honoured.
pub fn confinement(
    sc: &cri::LinuxContainerSecurityContext,
    host: &HostSecurity,
) -> Result<Confinement> {
    if let Some(se) = &sc.selinux_options
        && [&se.user, &se.role, &se.r#type, &se.level]
            .iter()
            .any(|f| !f.is_empty())
    {
        return Err(Error::InvalidArgument(
            "SELinux options are not supported by this runtime (SELinux is not in use)".into(),
        ));
    }
    let names = capability_names(sc, host)?;
    let (masked_paths, readonly_paths) = if sc.privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            paths(&sc.masked_paths, &MASKED_PATHS),
            paths(&sc.readonly_paths, &READONLY_PATHS),
        )
    };
    Ok(Confinement {
        capabilities: oci_caps(&names)?,
        seccomp: seccomp_filter(sc, &names)?,
        apparmor_profile: apparmor_profile(sc, host)?,
        capability_names: names,
        no_new_privileges: sc.no_new_privs,
        masked_paths,
        readonly_paths,
        privileged: sc.privileged,
    })
}

/// Directories under `/dev` that hold no device nodes of the host's own, or that the
/// container gets its own instance of.
const SKIPPED_DEV_DIRS: [&str; 5] = ["pts", "shm", "mqueue", "fd", ".udev"];

/// The host's device nodes under `/dev`, for privileged containers (as containerd's
/// `WithHostDevices`).
pub fn host_devices() -> Vec<LinuxDevice> {
    let mut out = Vec::new();
    walk_devices(Path::new("/dev"), Path::new("/dev"), &mut out);
    out
}

/// The device nodes a CRI `Device` names, seen at `container_path` (containerd's
/// `WithDevices`): `host_path` resolved through symlinks must be a character or block device,
/// or a directory whose device nodes are all given, each at its place under `container_path`.
pub fn requested_devices(host_path: &Path, container_path: &Path) -> Result<Vec<LinuxDevice>> {
    let stat_error = |source| Error::Io {
        action: "stat device",
        path: host_path.to_owned(),
        source,
    };
    let resolved = std::fs::canonicalize(host_path).map_err(stat_error)?;
    let meta = std::fs::metadata(&resolved).map_err(stat_error)?;
    if meta.is_dir() {
        let mut out = Vec::new();
        walk_devices(&resolved, container_path, &mut out);
        return Ok(out);
    }
    match device(&meta, container_path.to_owned()) {
        Some(dev) => Ok(vec![dev]),
        None => Err(Error::InvalidArgument(format!(
            "device {}{}: not a device node (it is {}); only character and block devices, or \
             directories of them, can be given to a container",
            host_path.display(),
            if resolved == host_path {
                String::new()
            } else {
                format!(" ({})", resolved.display())
            },
            kind_of(&meta)
        ))),
    }
}

/// What a non-device file is, for the error that refuses it.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let ft = meta.file_type();
    match () {
        _ if ft.is_file() => "a regular file",
        _ if ft.is_fifo() => "a FIFO",
        _ if ft.is_socket() => "a socket",
        _ => "not a device",
    }
}

/// The device node `meta` describes, at `path` in the container (containerd's
/// `DeviceFromPath`: type, major, minor, permission bits and owner as on the host); `None` when
/// it is not a character or block device.
fn device(meta: &std::fs::Metadata, path: PathBuf) -> Option<LinuxDevice> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return None;
    };
    let rdev = meta.rdev();
    LinuxDeviceBuilder::default()
        .path(path)
        .typ(typ)
        .major(libc::major(rdev) as i64)
        .minor(libc::minor(rdev) as i64)
        .file_mode(meta.mode() & 0o7777)
        .uid(meta.uid())
        .gid(meta.gid())
        .build()
        .ok()
}

/// The device nodes under `dir`, each at its place under `container_dir`.
fn walk_devices(dir: &Path, container_dir: &Path, out: &mut Vec<LinuxDevice>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path: PathBuf = entry.path();
        let inside = container_dir.join(entry.file_name());
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            let name = entry.file_name();
            if !SKIPPED_DEV_DIRS.iter().any(|s| name == *s) {
                walk_devices(&path, &inside, out);
            }
            continue;
        }
        // A console belongs to the container's own terminal, if any.
        if entry.file_name() == "console" {
            continue;
        }
        out.extend(device(&meta, inside));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostSecurity {
        HostSecurity {
            // A host like the test machines: everything but SYS_RESOURCE.
            capabilities: ALL_CAPS
                .iter()
                .filter(|c| **c != "SYS_RESOURCE")
                .map(|c| c.to_string())
                .collect(),
            apparmor: false,
        }
    }

    fn with_caps(add: &[&str], drop: &[&str]) -> cri::LinuxContainerSecurityContext {
        cri::LinuxContainerSecurityContext {
            capabilities: Some(cri::Capability {
                add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
                add_ambient_capabilities: Vec::new(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn capability_masks_name_bits_in_order() {
        let caps = caps_of_mask(0b1 | 1 << 21);
        assert_eq!(caps, HashSet::from(["CHOWN".into(), "SYS_ADMIN".into()]));
        assert_eq!(caps_of_mask(0x1ff_ffff_ffff).len(), ALL_CAPS.len());
    }

    #[test]
    fn adds_and_drops_change_the_default_set() {
        let sc = with_caps(&["net_admin", "CAP_SYS_TIME"], &["KILL", "cap_chown"]);
        let names = capability_names(&sc, &host()).unwrap();
        assert!(names.contains("NET_ADMIN") && names.contains("SYS_TIME"));
        assert!(!names.contains("KILL") && !names.contains("CHOWN"));
        assert_eq!(names.len(), DEFAULT_CAPS.len());
        let none = capability_names(&with_caps(&["NET_BIND_SERVICE"], &["ALL"]), &host()).unwrap();
        assert_eq!(none, HashSet::from(["NET_BIND_SERVICE".into()]));
    }

    #[test]
    fn capabilities_that_cannot_be_granted_are_refused() {
        let err = capability_names(&with_caps(&["SYS_RESOURCE"], &[]), &host())
            .unwrap_err()
            .to_string();
        assert!(err.contains("SYS_RESOURCE cannot be granted"), "{err}");
        let err = capability_names(&with_caps(&["NET_ADMN"], &[]), &host())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown capability"), "{err}");
    }

    #[test]
    fn privileged_gets_what_the_runtime_holds_and_no_masks() {
        let sc = cri::LinuxContainerSecurityContext {
            privileged: true,
            seccomp: Some(cri::SecurityProfile::default()),
            ..Default::default()
        };
        let c = confinement(&sc, &host()).unwrap();
        assert_eq!(c.capability_names, host().capabilities);
        assert!(c.masked_paths.is_empty() && c.readonly_paths.is_empty());
        assert!(c.seccomp.is_none());
        assert!(c.privileged);
    }

    #[test]
    fn unprivileged_defaults_mask_proc() {
        let c = confinement(&Default::default(), &host()).unwrap();
        assert_eq!(c.masked_paths, MASKED_PATHS);
        assert_eq!(c.readonly_paths, READONLY_PATHS);
        assert!(c.seccomp.is_none(), "no profile named: unconfined");
        assert!(!c.no_new_privileges);
    }

    #[test]
    fn unsupported_confinement_is_refused() {
        let selinux = cri::LinuxContainerSecurityContext {
            selinux_options: Some(cri::SeLinuxOption {
                level: "s0:c1".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(confinement(&selinux, &host()).is_err());
        let apparmor = |t: ProfileType| cri::LinuxContainerSecurityContext {
            apparmor: Some(cri::SecurityProfile {
                profile_type: t as i32,
                localhost_ref: String::new(),
            }),
            ..Default::default()
        };
        assert!(confinement(&apparmor(ProfileType::Unconfined), &host()).is_ok());
        let err = confinement(&apparmor(ProfileType::RuntimeDefault), &host())
            .unwrap_err()
            .to_string();
        assert!(err.contains("AppArmor is not enabled"), "{err}");
        let bad_ref = cri::LinuxContainerSecurityContext {
            seccomp: Some(cri::SecurityProfile {
                profile_type: ProfileType::RuntimeDefault as i32,
                localhost_ref: "/x.json".into(),
            }),
            ..Default::default()
        };
        assert!(confinement(&bad_ref, &host()).is_err());
    }
}
