//! The OCI runtime spec (`config.json`) of a container, built with `oci-spec` from the CRI
//! container config, the image config and the pod sandbox.
//!
//! Containers join the sandbox's network, IPC and UTS namespaces by path and get their own
//! PID and mount namespaces. Resources map as Kubernetes maps them (cpu shares from requests,
//! CFS quota/period and memory limit from limits), under `cgroupsPath` =
//! `<cgroup parent>/<container id>`. `oom_score_adj` is never set: hosts without
//! CAP_SYS_RESOURCE refuse negative values, and the default (inherited) is fine.

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxMemoryBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder,
    ProcessBuilder, RootBuilder, Spec, UserBuilder,
};

use super::image::ImageConfig;
use super::{Error, Result, sandbox};
use crate::cri;

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

/// Every capability, for privileged containers and `add: [ALL]`.
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

/// Everything the spec is made from.
pub struct SpecInput<'a> {
    pub config: &'a cri::ContainerConfig,
    pub image: &'a ImageConfig,
    pub sandbox_dir: &'a Path,
    pub cgroups_path: String,
    /// Root of the container's unpacked image (to resolve user names).
    pub rootfs: &'a Path,
}

/// The process arguments as Kubernetes resolves them: `command` replaces the entrypoint and
/// `args` replace the image's cmd.
pub fn argv(config: &cri::ContainerConfig, image: &ImageConfig) -> Vec<String> {
    let (entry, cmd) = if !config.command.is_empty() {
        (config.command.clone(), config.args.clone())
    } else if !config.args.is_empty() {
        (image.entrypoint.clone(), config.args.clone())
    } else {
        (image.entrypoint.clone(), image.cmd.clone())
    };
    entry.into_iter().chain(cmd).collect()
}

/// Image env overridden by the container's env, in order of first appearance.
pub fn env(config: &cri::ContainerConfig, image: &ImageConfig) -> Vec<String> {
    let mut order = Vec::new();
    let mut map = BTreeMap::new();
    let pairs = image
        .env
        .iter()
        .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .chain(
            config
                .envs
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.clone())),
        );
    for (k, v) in pairs {
        if !map.contains_key(&k) {
            order.push(k.clone());
        }
        map.insert(k, v);
    }
    if !map.contains_key("PATH") {
        order.insert(0, "PATH".into());
        map.insert(
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    order
        .into_iter()
        .map(|k| format!("{k}={}", map[&k]))
        .collect()
}

/// Resolves `user[:group]` (names or numbers) against the image's `/etc/passwd` and `/etc/group`.
fn resolve_user(spec: &str, rootfs: &Path) -> (u32, u32) {
    let (user, group) = spec
        .split_once(':')
        .map_or((spec, None), |(u, g)| (u, Some(g)));
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        let text = std::fs::read_to_string(rootfs.join(file)).ok()?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.first() != Some(&name) {
                return None;
            }
            Some((
                f.get(2)?.parse().ok()?,
                f.get(3).and_then(|g| g.parse().ok()).unwrap_or(0),
            ))
        })
    };
    let (uid, mut gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, 0),
        Err(_) if user.is_empty() => (0, 0),
        Err(_) => lookup("etc/passwd", user).unwrap_or((0, 0)),
    };
    if let Some(g) = group {
        gid = g
            .parse()
            .ok()
            .or_else(|| lookup("etc/group", g).map(|(gid, _)| gid))
            .unwrap_or(gid);
    }
    (uid, gid)
}

fn caps(names: impl IntoIterator<Item = String>) -> std::collections::HashSet<Capability> {
    names
        .into_iter()
        .filter_map(|n| serde_json::from_value::<Capability>(serde_json::Value::String(n)).ok())
        .collect()
}

fn bind(dest: &str, src: &Path, readonly: bool) -> Result<Mount> {
    let mut options = vec!["rbind".to_owned(), "rprivate".to_owned()];
    if readonly {
        options.push("ro".into());
    }
    MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(src)
        .options(options)
        .build()
        .map_err(Error::spec)
}

/// Builds the spec.
pub fn build(input: &SpecInput) -> Result<Spec> {
    let config = input.config;
    let linux_cfg = config.linux.clone().unwrap_or_default();
    let security = linux_cfg.security_context.clone().unwrap_or_default();
    let args = argv(config, input.image);
    if args.is_empty() {
        return Err(Error::InvalidArgument(
            "no command: neither the container nor its image names one".into(),
        ));
    }
    let (mut uid, mut gid) = resolve_user(&input.image.user, input.rootfs);
    if let Some(u) = &security.run_as_user {
        uid = u.value as u32;
    } else if !security.run_as_username.is_empty() {
        uid = resolve_user(&security.run_as_username, input.rootfs).0;
    }
    if let Some(g) = &security.run_as_group {
        gid = g.value as u32;
    }
    let cwd = if !config.working_dir.is_empty() {
        config.working_dir.clone()
    } else if !input.image.working_dir.is_empty() {
        input.image.working_dir.clone()
    } else {
        "/".to_owned()
    };

    let all_caps: Vec<String> = if security.privileged {
        ALL_CAPS.iter().map(|s| s.to_string()).collect()
    } else {
        let cap = security.capabilities.clone().unwrap_or_default();
        let norm = |s: &String| s.to_uppercase().trim_start_matches("CAP_").to_owned();
        let drop: Vec<String> = cap.drop_capabilities.iter().map(norm).collect();
        let mut set: Vec<String> = if drop.iter().any(|d| d == "ALL") {
            Vec::new()
        } else {
            DEFAULT_CAPS
                .iter()
                .map(|s| s.to_string())
                .filter(|c| !drop.contains(c))
                .collect()
        };
        for a in cap.add_capabilities.iter().map(norm) {
            if a == "ALL" {
                set = ALL_CAPS.iter().map(|s| s.to_string()).collect();
            } else if !set.contains(&a) {
                set.push(a);
            }
        }
        set
    };
    let capset = caps(all_caps);
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(capset.clone())
        .effective(capset.clone())
        .permitted(capset)
        .build()
        .map_err(Error::spec)?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(args)
        .env(env(config, input.image))
        .cwd(cwd)
        .user(
            UserBuilder::default()
                .uid(uid)
                .gid(gid)
                .additional_gids(
                    security
                        .supplemental_groups
                        .iter()
                        .map(|g| *g as u32)
                        .collect::<Vec<_>>(),
                )
                .build()
                .map_err(Error::spec)?,
        )
        .capabilities(capabilities)
        .no_new_privileges(security.no_new_privs)
        .build()
        .map_err(Error::spec)?;

    let mut mounts = oci_spec::runtime::get_default_mounts();
    let taken: Vec<&str> = config
        .mounts
        .iter()
        .map(|m| m.container_path.as_str())
        .collect();
    for name in ["hosts", "hostname", "resolv.conf"] {
        let dest = format!("/etc/{name}");
        if !taken.contains(&dest.as_str()) {
            mounts.push(bind(&dest, &input.sandbox_dir.join(name), false)?);
        }
    }
    for m in &config.mounts {
        mounts.push(bind(
            &m.container_path,
            Path::new(&m.host_path),
            m.readonly,
        )?);
    }

    let mut namespaces = vec![
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Pid)
            .build()
            .map_err(Error::spec)?,
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Mount)
            .build()
            .map_err(Error::spec)?,
    ];
    for (kind, typ) in [
        ("net", LinuxNamespaceType::Network),
        ("ipc", LinuxNamespaceType::Ipc),
        ("uts", LinuxNamespaceType::Uts),
    ] {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(typ)
                .path(sandbox::ns_path(input.sandbox_dir, kind))
                .build()
                .map_err(Error::spec)?,
        );
    }

    let res = linux_cfg.resources.clone().unwrap_or_default();
    let mut cpu = LinuxCpuBuilder::default();
    if res.cpu_shares > 0 {
        cpu = cpu.shares(res.cpu_shares as u64);
    }
    if res.cpu_quota > 0 {
        cpu = cpu.quota(res.cpu_quota);
    }
    if res.cpu_period > 0 {
        cpu = cpu.period(res.cpu_period as u64);
    }
    let mut resources = LinuxResourcesBuilder::default().cpu(cpu.build().map_err(Error::spec)?);
    if res.memory_limit_in_bytes > 0 {
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(res.memory_limit_in_bytes)
                .build()
                .map_err(Error::spec)?,
        );
    }
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(input.cgroups_path.clone())
        .resources(resources.build().map_err(Error::spec)?);
    if security.privileged {
        linux = linux
            .masked_paths(Vec::<String>::new())
            .readonly_paths(Vec::<String>::new());
    } else {
        linux = linux
            .masked_paths(oci_spec::runtime::get_default_maskedpaths())
            .readonly_paths(oci_spec::runtime::get_default_readonly_paths());
    }
    let mut spec = Spec::default();
    spec.set_hostname(None)
        .set_process(Some(process))
        .set_root(Some(
            RootBuilder::default()
                .path("rootfs")
                .readonly(security.readonly_rootfs)
                .build()
                .map_err(Error::spec)?,
        ))
        .set_mounts(Some(mounts))
        .set_linux(Some(linux.build().map_err(Error::spec)?));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageConfig {
        ImageConfig {
            env: vec!["PATH=/bin".into(), "A=image".into()],
            entrypoint: vec!["/entry".into()],
            cmd: vec!["default".into()],
            working_dir: "/work".into(),
            user: String::new(),
        }
    }

    #[test]
    fn command_and_args_follow_kubernetes() {
        let mut c = cri::ContainerConfig::default();
        assert_eq!(argv(&c, &image()), ["/entry", "default"]);
        c.args = vec!["x".into()];
        assert_eq!(argv(&c, &image()), ["/entry", "x"]);
        c.command = vec!["/bin/sh".into()];
        assert_eq!(argv(&c, &image()), ["/bin/sh", "x"]);
    }

    #[test]
    fn container_env_overrides_image_env() {
        let mut c = cri::ContainerConfig::default();
        c.envs = vec![
            cri::KeyValue {
                key: "A".into(),
                value: "pod".into(),
            },
            cri::KeyValue {
                key: "B".into(),
                value: "1".into(),
            },
        ];
        assert_eq!(env(&c, &image()), ["PATH=/bin", "A=pod", "B=1"]);
    }

    #[test]
    fn spec_joins_the_sandbox_and_maps_resources() {
        let mut c = cri::ContainerConfig::default();
        c.command = vec!["sh".into()];
        c.mounts = vec![cri::Mount {
            container_path: "/data".into(),
            host_path: "/tmp/d".into(),
            readonly: true,
            ..Default::default()
        }];
        c.linux = Some(cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources {
                cpu_shares: 512,
                cpu_quota: 50_000,
                cpu_period: 100_000,
                memory_limit_in_bytes: 64 << 20,
                ..Default::default()
            }),
            security_context: None,
        });
        let spec = build(&SpecInput {
            config: &c,
            image: &image(),
            sandbox_dir: Path::new("/sb"),
            cgroups_path: "/k/pod1/c1".into(),
            rootfs: Path::new("/nonexistent"),
        })
        .unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        let ns = json["linux"]["namespaces"].as_array().unwrap();
        assert!(
            ns.iter()
                .any(|n| n["type"] == "network" && n["path"] == "/sb/ns/net")
        );
        assert!(
            ns.iter()
                .any(|n| n["type"] == "pid" && n.get("path").is_none())
        );
        assert_eq!(json["linux"]["cgroupsPath"], "/k/pod1/c1");
        assert_eq!(json["linux"]["resources"]["cpu"]["shares"], 512);
        assert_eq!(json["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(json["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert!(json["process"].get("oomScoreAdj").is_none());
        assert_eq!(json["process"]["cwd"], "/work");
        let mounts = json["mounts"].as_array().unwrap();
        assert!(mounts.iter().any(|m| m["destination"] == "/data"
            && m["options"].as_array().unwrap().contains(&"ro".into())));
        assert!(
            mounts
                .iter()
                .any(|m| m["destination"] == "/etc/hosts" && m["source"] == "/sb/hosts")
        );
        let caps = json["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap();
        assert_eq!(caps.len(), DEFAULT_CAPS.len());
    }
}
