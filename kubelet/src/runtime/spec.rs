//! The OCI runtime spec (`config.json`) of a container, built with `oci-spec` from the CRI
//! container config, the image config and the pod sandbox.
//!
//! Containers join the sandbox's network, IPC and UTS namespaces by path (those the sandbox
//! keeps; the others are the node's) and get their own mount namespace and, unless the pod
//! uses the node's (`hostPID`), their own PID namespace (an ephemeral container with a target
//! joins that container's). Resources map as Kubernetes maps them (cpu shares from requests,
//! CFS quota/period and memory limit from limits), under `cgroupsPath` =
//! `<cgroup parent>/<container id>`. `oom_score_adj` is never set: hosts without
//! CAP_SYS_RESOURCE refuse negative values, and the default (inherited) is fine. The CRI
//! `devices` (what a device plugin allocated) become device nodes and cgroup allow rules, as
//! containerd adds them.

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::runtime::{
    LinuxBuilder, LinuxCpuBuilder, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount,
    MountBuilder, ProcessBuilder, RootBuilder, Spec, UserBuilder,
};

use super::image::ImageConfig;
use super::security::{self, HostSecurity};
use super::{Error, Result, sandbox};
use crate::cri;

/// The PID namespace a container gets: its own in mode `CONTAINER`, the node's (none in the
/// spec) in `NODE` (`hostPID`), another container's in `TARGET` (an ephemeral container with a
/// `targetContainerName`); a PID namespace shared by the pod (`shareProcessNamespace`) would
/// need a process holding it, which this runtime's sandboxes do not have, so it is refused.
#[derive(Debug, PartialEq, Eq)]
enum PidNamespace {
    Own,
    Node,
    Target,
}

fn pid_namespace(security: &cri::LinuxContainerSecurityContext) -> Result<PidNamespace> {
    // No options at all: the runtime's own default, a namespace per container.
    let mode = security
        .namespace_options
        .as_ref()
        .map_or(cri::NamespaceMode::Container as i32, |o| o.pid);
    match cri::NamespaceMode::try_from(mode) {
        Ok(cri::NamespaceMode::Container) => Ok(PidNamespace::Own),
        Ok(cri::NamespaceMode::Node) => Ok(PidNamespace::Node),
        Ok(cri::NamespaceMode::Target) => Ok(PidNamespace::Target),
        _ => Err(Error::InvalidArgument(format!(
            "pid namespace mode {mode} is not supported (CONTAINER, NODE or TARGET); a PID \
             namespace shared by the pod's containers is not"
        ))),
    }
}

/// Everything the spec is made from.
pub struct SpecInput<'a> {
    pub config: &'a cri::ContainerConfig,
    pub image: &'a ImageConfig,
    pub sandbox_dir: &'a Path,
    /// The sandbox's hostname, which the container gets as `HOSTNAME` too.
    pub hostname: &'a str,
    /// The namespaces the sandbox keeps (`net`, `ipc`, `uts`); the container joins those and
    /// stays in the runtime's own (the node's) for the others.
    pub sandbox_namespaces: &'a [&'a str],
    /// The PID namespace of the target container (`/proc/<pid>/ns/pid`) in mode `TARGET`.
    pub target_pid_namespace: Option<&'a Path>,
    pub cgroups_path: String,
    /// Root of the container's unpacked image (to resolve user names).
    pub rootfs: &'a Path,
    /// What the host lets the runtime grant.
    pub host: &'a HostSecurity,
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

/// The process environment as containerd builds it: `HOSTNAME` (the sandbox's hostname), then
/// the image's env, then the container's, each overriding what came before; in order of first
/// appearance.
pub fn env(config: &cri::ContainerConfig, image: &ImageConfig, hostname: &str) -> Vec<String> {
    let mut order = Vec::new();
    let mut map = BTreeMap::new();
    let pairs = std::iter::once(("HOSTNAME".to_owned(), hostname.to_owned()))
        .chain(
            image
                .env
                .iter()
                .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))),
        )
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

/// The entries (`:`-separated fields) of one of the image's account files (`etc/passwd`,
/// `etc/group`); none when the image has no such file.
fn accounts(rootfs: &Path, file: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(rootfs.join(file))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split(':').map(str::to_owned).collect())
        .collect()
}

/// The id in field 2 and the id in field 3 of the entry whose field `by` equals `key`.
fn lookup(table: &[Vec<String>], by: usize, key: &str) -> Option<(u32, Option<u32>)> {
    table
        .iter()
        .find(|f| f.get(by).is_some_and(|v| v == key))
        .and_then(|f| {
            Some((
                f.get(2)?.parse().ok()?,
                f.get(3).and_then(|g| g.parse().ok()),
            ))
        })
}

/// The primary group of `uid` in the image's `/etc/passwd` (0 when it has no entry), as
/// containerd resolves a numeric user.
fn primary_gid(rootfs: &Path, uid: u32) -> u32 {
    lookup(&accounts(rootfs, "etc/passwd"), 2, &uid.to_string())
        .and_then(|(_, gid)| gid)
        .unwrap_or(0)
}

/// Resolves `user[:group]` (names or numbers) against the image's `/etc/passwd` and
/// `/etc/group`. A name the image does not define is an error: running such a container as
/// root instead would be worse than not running it.
fn resolve_user(spec: &str, rootfs: &Path) -> Result<(u32, u32)> {
    let (user, group) = spec
        .split_once(':')
        .map_or((spec, None), |(u, g)| (u, Some(g)));
    let unknown = |what: &str, name: &str| {
        Error::InvalidArgument(format!(
            "{what} {name:?} is not defined in the image's /etc/{}",
            if what == "user" { "passwd" } else { "group" }
        ))
    };
    let (uid, mut gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, primary_gid(rootfs, uid)),
        Err(_) if user.is_empty() => (0, 0),
        Err(_) => lookup(&accounts(rootfs, "etc/passwd"), 0, user)
            .map(|(uid, gid)| (uid, gid.unwrap_or(0)))
            .ok_or_else(|| unknown("user", user))?,
    };
    if let Some(g) = group.filter(|g| !g.is_empty()) {
        gid = match g.parse() {
            Ok(gid) => gid,
            Err(_) => lookup(&accounts(rootfs, "etc/group"), 0, g)
                .map(|(gid, _)| gid)
                .ok_or_else(|| unknown("group", g))?,
        };
    }
    Ok((uid, gid))
}

/// The groups of the image's `/etc/group` that list the user named `uid` has in
/// `/etc/passwd` as a member (the `Merge` supplemental groups policy).
fn image_groups(rootfs: &Path, uid: u32) -> Vec<u32> {
    let passwd = accounts(rootfs, "etc/passwd");
    let Some(name) = passwd
        .iter()
        .find(|f| f.get(2).is_some_and(|v| *v == uid.to_string()))
        .and_then(|f| f.first())
    else {
        return Vec::new();
    };
    accounts(rootfs, "etc/group")
        .iter()
        .filter(|f| {
            f.get(3)
                .is_some_and(|members| members.split(',').any(|m| m == name))
        })
        .filter_map(|f| f.get(2)?.parse().ok())
        .collect()
}

/// The process's user: the image's `USER`, overridden by `run_as_user`/`run_as_username` and
/// `run_as_group`; supplemental groups from the image (unless the policy is `Strict`) then
/// from the context.
fn process_user(
    security: &cri::LinuxContainerSecurityContext,
    image: &ImageConfig,
    rootfs: &Path,
) -> Result<oci_spec::runtime::User> {
    let (mut uid, mut gid) = resolve_user(&image.user, rootfs)?;
    if let Some(u) = &security.run_as_user {
        uid = u32::try_from(u.value)
            .map_err(|_| Error::InvalidArgument(format!("run_as_user {} out of range", u.value)))?;
        gid = primary_gid(rootfs, uid);
    } else if !security.run_as_username.is_empty() {
        (uid, gid) = resolve_user(&security.run_as_username, rootfs)?;
    }
    if let Some(g) = &security.run_as_group {
        gid = u32::try_from(g.value).map_err(|_| {
            Error::InvalidArgument(format!("run_as_group {} out of range", g.value))
        })?;
    }
    let mut groups =
        if security.supplemental_groups_policy == cri::SupplementalGroupsPolicy::Strict as i32 {
            Vec::new()
        } else {
            image_groups(rootfs, uid)
        };
    for g in &security.supplemental_groups {
        let g = u32::try_from(*g)
            .map_err(|_| Error::InvalidArgument(format!("supplemental group {g} out of range")))?;
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    UserBuilder::default()
        .uid(uid)
        .gid(gid)
        .additional_gids(groups)
        .build()
        .map_err(Error::spec)
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

/// The CRI `devices` (a device plugin's `Allocate` answer) as containerd's `WithDevices` maps
/// them: each device node into `linux.devices` at its container path, and a cgroup rule
/// allowing it with the asked permissions into `linux.resources.devices`.
fn requested_devices(
    config: &cri::ContainerConfig,
) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>)> {
    let (mut nodes, mut rules) = (Vec::new(), Vec::new());
    for d in &config.devices {
        let name = format!("device {:?}", d.host_path);
        if d.host_path.is_empty() {
            return Err(Error::InvalidArgument(
                "a device with an empty host_path: name the device node on the host".into(),
            ));
        }
        // As containerd: no container path means the host's.
        let inside = if d.container_path.is_empty() {
            &d.host_path
        } else {
            &d.container_path
        };
        if !inside.starts_with('/') {
            return Err(Error::InvalidArgument(format!(
                "{name}: container_path {inside:?} must be an absolute path"
            )));
        }
        if d.permissions.is_empty() || !d.permissions.chars().all(|c| "rwm".contains(c)) {
            return Err(Error::InvalidArgument(format!(
                "{name}: permissions {:?} must be one or more of r (read), w (write) and m \
                 (mknod)",
                d.permissions
            )));
        }
        for node in security::requested_devices(Path::new(&d.host_path), Path::new(inside))? {
            rules.push(
                LinuxDeviceCgroupBuilder::default()
                    .allow(true)
                    .typ(node.typ())
                    .major(node.major())
                    .minor(node.minor())
                    .access(d.permissions.clone())
                    .build()
                    .map_err(Error::spec)?,
            );
            nodes.push(node);
        }
    }
    Ok((nodes, rules))
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
    let user = process_user(&security, input.image, input.rootfs)?;
    let confinement = security::confinement(&security, input.host)?;
    let cwd = if !config.working_dir.is_empty() {
        config.working_dir.clone()
    } else if !input.image.working_dir.is_empty() {
        input.image.working_dir.clone()
    } else {
        "/".to_owned()
    };

    let mut process = ProcessBuilder::default()
        .terminal(false)
        .args(args)
        .env(env(config, input.image, input.hostname))
        .cwd(cwd)
        .user(user)
        .capabilities(confinement.capabilities.clone())
        .no_new_privileges(confinement.no_new_privileges);
    if let Some(profile) = &confinement.apparmor_profile {
        process = process.apparmor_profile(profile.clone());
    }
    let process = process.build().map_err(Error::spec)?;

    let mut mounts = oci_spec::runtime::get_default_mounts();
    if confinement.privileged {
        // As containerd: a privileged container may write to /sys.
        for m in mounts
            .iter_mut()
            .filter(|m| m.destination() == Path::new("/sys"))
        {
            let options = m.options().clone().unwrap_or_default();
            m.set_options(Some(options.into_iter().filter(|o| o != "ro").collect()));
        }
    }
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
            .typ(LinuxNamespaceType::Mount)
            .build()
            .map_err(Error::spec)?,
    ];
    match pid_namespace(&security)? {
        PidNamespace::Node => {}
        PidNamespace::Own => namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Pid)
                .build()
                .map_err(Error::spec)?,
        ),
        PidNamespace::Target => {
            let path = input.target_pid_namespace.ok_or_else(|| {
                Error::InvalidArgument("the target container is not running".into())
            })?;
            namespaces.push(
                LinuxNamespaceBuilder::default()
                    .typ(LinuxNamespaceType::Pid)
                    .path(path)
                    .build()
                    .map_err(Error::spec)?,
            );
        }
    }
    for (kind, typ) in [
        ("net", LinuxNamespaceType::Network),
        ("ipc", LinuxNamespaceType::Ipc),
        ("uts", LinuxNamespaceType::Uts),
    ]
    .into_iter()
    .filter(|(kind, _)| input.sandbox_namespaces.contains(kind))
    {
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
    let (mut device_nodes, mut device_rules) = (Vec::new(), Vec::new());
    if confinement.privileged {
        device_nodes = security::host_devices();
        device_rules.push(
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .access("rwm")
                .build()
                .map_err(Error::spec)?,
        );
    }
    let (nodes, rules) = requested_devices(config)?;
    device_nodes.extend(nodes);
    device_rules.extend(rules);
    if !device_rules.is_empty() {
        resources = resources.devices(device_rules);
    }
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
    linux = linux
        .masked_paths(confinement.masked_paths.clone())
        .readonly_paths(confinement.readonly_paths.clone());
    if !device_nodes.is_empty() {
        linux = linux.devices(device_nodes);
    }
    if let Some(filter) = confinement.seccomp.clone() {
        linux = linux.seccomp(filter);
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
        let c = cri::ContainerConfig {
            envs: vec![
                cri::KeyValue {
                    key: "A".into(),
                    value: "pod".into(),
                },
                cri::KeyValue {
                    key: "B".into(),
                    value: "1".into(),
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            env(&c, &image(), "web-0"),
            ["HOSTNAME=web-0", "PATH=/bin", "A=pod", "B=1"]
        );
        let own = cri::ContainerConfig {
            envs: vec![cri::KeyValue {
                key: "HOSTNAME".into(),
                value: "mine".into(),
            }],
            ..Default::default()
        };
        assert_eq!(env(&own, &image(), "web-0")[0], "HOSTNAME=mine");
    }

    #[test]
    fn spec_joins_the_sandbox_and_maps_resources() {
        let c = cri::ContainerConfig {
            command: vec!["sh".into()],
            mounts: vec![cri::Mount {
                container_path: "/data".into(),
                host_path: "/tmp/d".into(),
                readonly: true,
                ..Default::default()
            }],
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    cpu_shares: 512,
                    cpu_quota: 50_000,
                    cpu_period: 100_000,
                    memory_limit_in_bytes: 64 << 20,
                    ..Default::default()
                }),
                security_context: None,
            }),
            ..Default::default()
        };
        let spec = build(&SpecInput {
            config: &c,
            image: &image(),
            sandbox_dir: Path::new("/sb"),
            hostname: "sb",
            sandbox_namespaces: &["net", "ipc", "uts"],
            target_pid_namespace: None,
            cgroups_path: "/k/pod1/c1".into(),
            rootfs: Path::new("/nonexistent"),
            host: &HostSecurity::default(),
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
        assert_eq!(caps.len(), security::DEFAULT_CAPS.len());
    }

    #[test]
    fn host_namespaces_are_left_out_of_the_spec() {
        let types = |pid: cri::NamespaceMode, kept: &[&str]| -> Result<Vec<String>> {
            let c = cri::ContainerConfig {
                linux: Some(cri::LinuxContainerConfig {
                    resources: None,
                    security_context: Some(cri::LinuxContainerSecurityContext {
                        namespace_options: Some(cri::NamespaceOption {
                            pid: pid as i32,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            };
            let spec = build(&SpecInput {
                config: &c,
                image: &image(),
                sandbox_dir: Path::new("/sb"),
                hostname: "sb",
                sandbox_namespaces: kept,
                target_pid_namespace: None,
                cgroups_path: "/k/pod1/c1".into(),
                rootfs: Path::new("/nonexistent"),
                host: &HostSecurity::default(),
            })?;
            let json = serde_json::to_value(&spec).unwrap();
            Ok(json["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["type"].as_str().unwrap().to_owned())
                .collect())
        };
        let host_net = types(cri::NamespaceMode::Container, &["ipc"]).unwrap();
        assert_eq!(host_net, ["mount", "pid", "ipc"]);
        let host_pid = types(cri::NamespaceMode::Node, &["net", "ipc", "uts"]).unwrap();
        assert_eq!(host_pid, ["mount", "network", "ipc", "uts"]);
        let shared = types(cri::NamespaceMode::Pod, &["net", "ipc", "uts"]).unwrap_err();
        assert!(
            shared.to_string().contains("pid namespace mode"),
            "{shared}"
        );
    }

    /// The spec of a `sh` container with security context `sc`, in an image whose root has
    /// the account files written by [`accounts_root`].
    fn secured(sc: cri::LinuxContainerSecurityContext, rootfs: &Path) -> serde_json::Value {
        let c = cri::ContainerConfig {
            command: vec!["sh".into()],
            linux: Some(cri::LinuxContainerConfig {
                resources: None,
                security_context: Some(sc),
            }),
            ..Default::default()
        };
        let host = HostSecurity {
            capabilities: ["CHOWN", "KILL", "NET_ADMIN", "SYS_ADMIN"]
                .iter()
                .map(|c| c.to_string())
                .collect(),
            apparmor: false,
        };
        let spec = build(&SpecInput {
            config: &c,
            image: &image(),
            sandbox_dir: Path::new("/sb"),
            hostname: "sb",
            sandbox_namespaces: &["net", "ipc", "uts"],
            target_pid_namespace: None,
            cgroups_path: "/k/pod1/c1".into(),
            rootfs,
            host: &host,
        })
        .unwrap();
        serde_json::to_value(&spec).unwrap()
    }

    fn accounts_root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1500::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\napp:x:1500:\nvideo:x:44:app,other\naudio:x:29:other\n",
        )
        .unwrap();
        dir
    }

    fn strings(v: &serde_json::Value) -> Vec<String> {
        let mut out: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn default_confinement_masks_proc_and_keeps_default_caps() {
        let root = accounts_root();
        let json = secured(Default::default(), root.path());
        let mut want: Vec<String> = security::DEFAULT_CAPS
            .iter()
            .map(|c| format!("CAP_{c}"))
            .collect();
        want.sort();
        assert_eq!(strings(&json["process"]["capabilities"]["effective"]), want);
        assert_eq!(strings(&json["process"]["capabilities"]["bounding"]), want);
        for set in ["inheritable", "ambient"] {
            assert_eq!(
                json["process"]["capabilities"][set],
                serde_json::json!([]),
                "{set}"
            );
        }
        assert_eq!(
            strings(&json["linux"]["maskedPaths"]),
            strings(&serde_json::json!(security::MASKED_PATHS))
        );
        assert!(strings(&json["linux"]["readonlyPaths"]).contains(&"/proc/sys".to_owned()));
        assert!(json["linux"].get("seccomp").is_none());
        assert!(json["linux"].get("devices").is_none());
        assert_eq!(json["process"]["user"]["uid"], 0);
        assert_eq!(json["root"]["readonly"], false);
    }

    #[test]
    fn runtime_default_seccomp_readonly_root_and_no_new_privs() {
        let root = accounts_root();
        let json = secured(
            cri::LinuxContainerSecurityContext {
                readonly_rootfs: true,
                no_new_privs: true,
                seccomp: Some(cri::SecurityProfile::default()),
                ..Default::default()
            },
            root.path(),
        );
        assert_eq!(json["root"]["readonly"], true);
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert_eq!(json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert!(
            !json["linux"]["seccomp"]["syscalls"]
                .as_array()
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn privileged_gets_host_caps_devices_and_writable_sys() {
        let root = accounts_root();
        let json = secured(
            cri::LinuxContainerSecurityContext {
                privileged: true,
                seccomp: Some(cri::SecurityProfile::default()),
                ..Default::default()
            },
            root.path(),
        );
        assert_eq!(
            strings(&json["process"]["capabilities"]["effective"]),
            ["CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"]
        );
        assert!(json["linux"].get("seccomp").is_none());
        assert_eq!(json["linux"]["maskedPaths"], serde_json::json!([]));
        assert_eq!(json["linux"]["readonlyPaths"], serde_json::json!([]));
        assert_eq!(
            json["linux"]["resources"]["devices"],
            serde_json::json!([{"allow": true, "access": "rwm"}])
        );
        let sys = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert!(!strings(&sys["options"]).contains(&"ro".to_owned()));
    }

    fn with_devices(devices: &[(&str, &str, &str)], privileged: bool) -> Result<serde_json::Value> {
        let root = accounts_root();
        let c = cri::ContainerConfig {
            command: vec!["sh".into()],
            devices: devices
                .iter()
                .map(|(host, inside, perms)| cri::Device {
                    host_path: host.to_string(),
                    container_path: inside.to_string(),
                    permissions: perms.to_string(),
                })
                .collect(),
            linux: Some(cri::LinuxContainerConfig {
                resources: None,
                security_context: Some(cri::LinuxContainerSecurityContext {
                    privileged,
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let spec = build(&SpecInput {
            config: &c,
            image: &image(),
            sandbox_dir: Path::new("/sb"),
            hostname: "sb",
            sandbox_namespaces: &["net", "ipc", "uts"],
            target_pid_namespace: None,
            cgroups_path: "/k/pod1/c1".into(),
            rootfs: root.path(),
            host: &HostSecurity {
                capabilities: ["CHOWN".to_string()].into(),
                apparmor: false,
            },
        })?;
        Ok(serde_json::to_value(&spec).unwrap())
    }

    #[test]
    fn cri_devices_become_device_nodes_and_cgroup_rules() {
        use std::os::unix::fs::MetadataExt;
        let null = std::fs::metadata("/dev/null").unwrap();
        let (mode, uid, gid) = (null.mode() & 0o7777, null.uid(), null.gid());
        let json = with_devices(&[("/dev/null", "/dev/example-0", "rw")], false).unwrap();
        assert_eq!(
            json["linux"]["devices"],
            serde_json::json!([{"path": "/dev/example-0", "type": "c", "major": 1, "minor": 3,
                "fileMode": mode, "uid": uid, "gid": gid}])
        );
        assert_eq!(
            json["linux"]["resources"]["devices"],
            serde_json::json!([{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}])
        );
        // A symlink to a device is the device; no container path means the host's.
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("dev-link");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        let json = with_devices(
            &[
                (link.to_str().unwrap(), "", "rwm"),
                ("/dev/zero", "/dev/example-1", "r"),
            ],
            false,
        )
        .unwrap();
        let devices = json["linux"]["devices"].as_array().unwrap();
        assert_eq!(devices[0]["path"], link.to_str().unwrap());
        assert_eq!(
            (devices[1]["major"].clone(), devices[1]["minor"].clone()),
            (1.into(), 5.into())
        );
        assert_eq!(json["linux"]["resources"]["devices"][1]["access"], "r");
        // Privileged keeps the host's devices and allow-all rule, and adds the asked ones.
        let json = with_devices(&[("/dev/null", "/dev/example-0", "rw")], true).unwrap();
        let rules = json["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(
            rules[0],
            serde_json::json!({"allow": true, "access": "rwm"})
        );
        assert_eq!(rules.last().unwrap()["access"], "rw");
        let paths: Vec<&str> = json["linux"]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["path"].as_str())
            .collect();
        assert!(
            paths.contains(&"/dev/null") && paths.contains(&"/dev/example-0"),
            "{paths:?}"
        );
    }

    #[test]
    fn a_device_directory_gives_each_node_under_the_container_path() {
        let json = with_devices(&[("/dev", "/hostdev", "rw")], false).unwrap();
        let devices = json["linux"]["devices"].as_array().unwrap();
        let null = devices
            .iter()
            .find(|d| d["path"] == "/hostdev/null")
            .expect("/dev/null under /hostdev");
        assert_eq!(
            (null["major"].clone(), null["minor"].clone()),
            (1.into(), 3.into())
        );
        assert!(
            devices
                .iter()
                .all(|d| d["path"].as_str().unwrap().starts_with("/hostdev/"))
        );
        assert!(!devices.iter().any(|d| d["path"] == "/hostdev/console"));
        assert_eq!(
            json["linux"]["resources"]["devices"]
                .as_array()
                .unwrap()
                .len(),
            devices.len()
        );
    }

    #[test]
    fn bad_devices_are_refused_with_what_is_wrong() {
        let err =
            |devices: &[(&str, &str, &str)]| with_devices(devices, false).unwrap_err().to_string();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        let got = err(&[(file.to_str().unwrap(), "/dev/x", "rw")]);
        assert!(
            got.contains("not a device node (it is a regular file)"),
            "{got}"
        );
        let got = err(&[("/nonexistent/dev0", "/dev/x", "rw")]);
        assert!(got.starts_with("stat device /nonexistent/dev0: "), "{got}");
        let got = err(&[("/dev/null", "dev/x", "rw")]);
        assert!(
            got.contains("container_path \"dev/x\" must be an absolute path"),
            "{got}"
        );
        for bad in ["", "rwx"] {
            let got = err(&[("/dev/null", "/dev/x", bad)]);
            assert!(
                got.contains("must be one or more of r (read), w (write) and m"),
                "{got}"
            );
        }
        let got = err(&[("", "/dev/x", "rw")]);
        assert!(got.contains("empty host_path"), "{got}");
    }

    #[test]
    fn users_and_groups_resolve_against_the_image() {
        let root = accounts_root();
        let user = |sc: cri::LinuxContainerSecurityContext| {
            secured(sc, root.path())["process"]["user"].clone()
        };
        // runAsUser alone takes the user's primary group; Merge adds the image's groups.
        let u = user(cri::LinuxContainerSecurityContext {
            run_as_user: Some(cri::Int64Value { value: 1000 }),
            supplemental_groups: vec![3000, 44],
            ..Default::default()
        });
        assert_eq!(
            (u["uid"].clone(), u["gid"].clone()),
            (1000.into(), 1500.into())
        );
        assert_eq!(u["additionalGids"], serde_json::json!([44, 3000]));
        let u = user(cri::LinuxContainerSecurityContext {
            run_as_user: Some(cri::Int64Value { value: 1000 }),
            run_as_group: Some(cri::Int64Value { value: 7 }),
            supplemental_groups: vec![3000],
            supplemental_groups_policy: cri::SupplementalGroupsPolicy::Strict as i32,
            ..Default::default()
        });
        assert_eq!(u["gid"], 7);
        assert_eq!(u["additionalGids"], serde_json::json!([3000]));
        let u = user(cri::LinuxContainerSecurityContext {
            run_as_username: "app".into(),
            ..Default::default()
        });
        assert_eq!(
            (u["uid"].clone(), u["gid"].clone()),
            (1000.into(), 1500.into())
        );
        assert_eq!(resolve_user("app:video", root.path()).unwrap(), (1000, 44));
        let err = resolve_user("nobody", root.path()).unwrap_err().to_string();
        assert!(err.contains("\"nobody\" is not defined"), "{err}");
    }
}
