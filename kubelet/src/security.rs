//! The pod's and container's `securityContext` as the CRI security context, as upstream's
//! kubelet builds it: container fields override pod fields, `fsGroup` and
//! `supplementalGroups` become supplemental groups, the default masked and read-only `/proc`
//! paths are asked for, and the seccomp profile is the container's, else the pod's, else
//! `RuntimeDefault` when `--seccomp-default` is on. `runAsNonRoot` is checked here against
//! the user the container would run as.
//!
//! Fields that cannot be carried to this runtime or honoured by it (Windows options,
//! `procMount: Unmasked` and `hostUsers: false`, which need user namespaces, pod sysctls)
//! are refused, so the container is not started instead of running less confined than asked.
//! What CRI carries (SELinux, AppArmor) the runtime accepts or refuses itself.

use std::path::{Component, Path};

use k8s_openapi::api::core::v1::{
    Container, Pod, PodSecurityContext, SeccompProfile, SecurityContext,
};

use crate::cri;
use crate::runtime::security::{MASKED_PATHS, READONLY_PATHS};

/// How the kubelet fills in what a pod leaves out.
#[derive(Debug, Clone)]
pub struct Defaults<'a> {
    /// `--seccomp-default`: `RuntimeDefault` for containers that name no seccomp profile.
    pub seccomp_default: bool,
    /// Where `Localhost` seccomp profiles live (`<root-dir>/seccomp`).
    pub seccomp_root: &'a Path,
}

/// The pod and container security contexts of one container, and the pod it belongs to.
struct Effective<'a> {
    pod: &'a Pod,
    psc: PodSecurityContext,
    sc: SecurityContext,
}

impl<'a> Effective<'a> {
    fn new(pod: &'a Pod, c: &Container) -> Self {
        Self {
            pod,
            psc: pod
                .spec
                .as_ref()
                .and_then(|s| s.security_context.clone())
                .unwrap_or_default(),
            sc: c.security_context.clone().unwrap_or_default(),
        }
    }

    fn run_as_user(&self) -> Option<i64> {
        self.sc.run_as_user.or(self.psc.run_as_user)
    }

    fn run_as_non_root(&self) -> bool {
        self.sc
            .run_as_non_root
            .or(self.psc.run_as_non_root)
            .unwrap_or(false)
    }

    fn seccomp(&self) -> Option<&SeccompProfile> {
        self.sc
            .seccomp_profile
            .as_ref()
            .or(self.psc.seccomp_profile.as_ref())
    }

    fn privileged(&self) -> bool {
        self.sc.privileged.unwrap_or(false)
    }

    /// Whether the process may gain privileges (setuid binaries, file capabilities).
    ///
    /// This kubelet sets `no_new_privs` unless `allowPrivilegeEscalation` is `true`, where
    /// upstream sets it only when that field is `false`: the point is that a hostile image's
    /// setuid binaries get nothing by default. Privileged containers and those adding
    /// `SYS_ADMIN` may escalate anyway (upstream validation forbids
    /// `allowPrivilegeEscalation: false` for them), so they are left without the flag.
    fn allows_escalation(&self) -> bool {
        let adds_sys_admin = self
            .sc
            .capabilities
            .as_ref()
            .and_then(|c| c.add.as_ref())
            .is_some_and(|add| {
                add.iter().any(|a| {
                    let a = a.to_uppercase();
                    a == "SYS_ADMIN" || a == "CAP_SYS_ADMIN" || a == "ALL"
                })
            });
        self.sc.allow_privilege_escalation == Some(true) || self.privileged() || adds_sys_admin
    }

    /// `name_namespace(uid)`, as upstream names pods in its messages.
    fn pod_name(&self) -> String {
        format!(
            "{}_{}({})",
            self.pod.metadata.name.as_deref().unwrap_or_default(),
            self.pod.metadata.namespace.as_deref().unwrap_or("default"),
            self.pod.metadata.uid.as_deref().unwrap_or_default()
        )
    }
}

/// Refuses the fields that cannot be honoured on this node.
fn refuse_unsupported(e: &Effective, c: &Container) -> Result<(), String> {
    let spec = e.pod.spec.clone().unwrap_or_default();
    if e.sc.windows_options.is_some() || e.psc.windows_options.is_some() {
        return Err(format!(
            "container {}: securityContext.windowsOptions cannot be honoured on a Linux node",
            c.name
        ));
    }
    if spec.host_users == Some(false) {
        return Err(
            "spec.hostUsers: false (user namespaces) is not supported by this kubelet; \
                    remove the field to run the pod"
                .into(),
        );
    }
    if e.sc.proc_mount.as_deref().is_some_and(|m| m != "Default") {
        return Err(format!(
            "container {}: securityContext.procMount {:?} needs a user namespace, which this \
             kubelet does not support; use procMount: Default",
            c.name,
            e.sc.proc_mount.as_deref().unwrap_or_default()
        ));
    }
    if spec.share_process_namespace == Some(true) {
        // The runtime's sandboxes have no process holding a pod-wide PID namespace.
        return Err(
            "spec.shareProcessNamespace: true (one PID namespace for the pod's containers) is \
             not supported by this kubelet; remove it"
                .into(),
        );
    }
    if e.psc.sysctls.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(
            "spec.securityContext.sysctls are not supported by this kubelet; remove them".into(),
        );
    }
    Ok(())
}

/// The CRI form of a seccomp (or AppArmor) profile.
fn profile(
    kind: &str,
    localhost: Option<&str>,
    root: &Path,
    field: &str,
) -> Result<cri::SecurityProfile, String> {
    use cri::security_profile::ProfileType;
    let (profile_type, localhost_ref) = match kind {
        "RuntimeDefault" => (ProfileType::RuntimeDefault, String::new()),
        "Unconfined" => (ProfileType::Unconfined, String::new()),
        "Localhost" => {
            let name = localhost.unwrap_or_default();
            let relative = Path::new(name);
            if name.is_empty()
                || !relative
                    .components()
                    .all(|c| matches!(c, Component::Normal(_)))
            {
                return Err(format!(
                    "{field}.localhostProfile {name:?} must be a relative path without \"..\" \
                     (under {})",
                    root.display()
                ));
            }
            (
                ProfileType::Localhost,
                root.join(relative).display().to_string(),
            )
        }
        other => return Err(format!("{field}.type {other:?} is not supported")),
    };
    Ok(cri::SecurityProfile {
        profile_type: profile_type as i32,
        localhost_ref,
    })
}

/// The container's CRI security context, or why it cannot be run.
pub fn container_context(
    pod: &Pod,
    c: &Container,
    defaults: &Defaults,
) -> Result<cri::LinuxContainerSecurityContext, String> {
    let e = Effective::new(pod, c);
    refuse_unsupported(&e, c)?;
    let seccomp = match e.seccomp() {
        Some(p) => Some(profile(
            &p.type_,
            p.localhost_profile.as_deref(),
            defaults.seccomp_root,
            "securityContext.seccompProfile",
        )?),
        None if defaults.seccomp_default => Some(cri::SecurityProfile::default()),
        None => Some(cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        }),
    };
    let apparmor = match e
        .sc
        .app_armor_profile
        .as_ref()
        .or(e.psc.app_armor_profile.as_ref())
    {
        // The runtime resolves AppArmor profile names itself: no root directory.
        Some(p) => Some(profile(
            &p.type_,
            p.localhost_profile.as_deref(),
            Path::new(""),
            "securityContext.appArmorProfile",
        )?),
        None => None,
    };
    let selinux =
        e.sc.se_linux_options
            .as_ref()
            .or(e.psc.se_linux_options.as_ref())
            .map(|o| cri::SeLinuxOption {
                user: o.user.clone().unwrap_or_default(),
                role: o.role.clone().unwrap_or_default(),
                r#type: o.type_.clone().unwrap_or_default(),
                level: o.level.clone().unwrap_or_default(),
            });
    let mut groups: Vec<i64> = e.psc.fs_group.into_iter().collect();
    groups.extend(e.psc.supplemental_groups.iter().flatten());
    let policy = match e.psc.supplemental_groups_policy.as_deref() {
        None | Some("Merge") => cri::SupplementalGroupsPolicy::Merge,
        Some("Strict") => cri::SupplementalGroupsPolicy::Strict,
        Some(other) => {
            return Err(format!(
                "spec.securityContext.supplementalGroupsPolicy {other:?} is not supported"
            ));
        }
    };
    let (masked_paths, readonly_paths) = if e.privileged() {
        (Vec::new(), Vec::new())
    } else {
        (
            MASKED_PATHS.iter().map(|p| p.to_string()).collect(),
            READONLY_PATHS.iter().map(|p| p.to_string()).collect(),
        )
    };
    Ok(cri::LinuxContainerSecurityContext {
        capabilities: e.sc.capabilities.as_ref().map(|caps| cri::Capability {
            add_capabilities: caps.add.clone().unwrap_or_default(),
            drop_capabilities: caps.drop.clone().unwrap_or_default(),
            add_ambient_capabilities: Vec::new(),
        }),
        privileged: e.privileged(),
        run_as_user: e.run_as_user().map(|value| cri::Int64Value { value }),
        run_as_group: e
            .sc
            .run_as_group
            .or(e.psc.run_as_group)
            .map(|value| cri::Int64Value { value }),
        readonly_rootfs: e.sc.read_only_root_filesystem.unwrap_or(false),
        no_new_privs: !e.allows_escalation(),
        supplemental_groups: groups,
        supplemental_groups_policy: policy as i32,
        masked_paths,
        readonly_paths,
        seccomp,
        apparmor,
        selinux_options: selinux,
        ..Default::default()
    })
}

/// Upstream's `runAsNonRoot` check: with `runAsNonRoot: true` the container must not run as
/// uid 0, and a user name in the image (no uid to check) is refused too. `image_uid` and
/// `image_user` are what the runtime reports for the image (neither: it runs as root).
pub fn verify_run_as_non_root(
    pod: &Pod,
    c: &Container,
    image_uid: Option<i64>,
    image_user: &str,
) -> Result<(), String> {
    let e = Effective::new(pod, c);
    if !e.run_as_non_root() {
        return Ok(());
    }
    let pod_name = e.pod_name();
    match e.run_as_user() {
        Some(0) => Err(format!(
            "container's runAsUser breaks non-root policy (pod: \"{pod_name}\", container: {})",
            c.name
        )),
        Some(_) => Ok(()),
        None => match image_uid {
            Some(0) => Err(format!(
                "container has runAsNonRoot and image will run as root (pod: \"{pod_name}\", \
                 container: {})",
                c.name
            )),
            None if !image_user.is_empty() => Err(format!(
                "container has runAsNonRoot and image has non-numeric user ({image_user}), \
                 cannot verify user is non-root (pod: \"{pod_name}\", container: {})",
                c.name
            )),
            None => Err(format!(
                "container has runAsNonRoot and image will run as root (pod: \"{pod_name}\", \
                 container: {})",
                c.name
            )),
            Some(_) => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> (Pod, Container) {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": json,
        }))
        .unwrap();
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        (pod, c)
    }

    fn defaults(seccomp_default: bool) -> Defaults<'static> {
        Defaults {
            seccomp_default,
            seccomp_root: Path::new("/var/lib/kubelet/seccomp"),
        }
    }

    #[test]
    fn container_fields_override_pod_fields() {
        let (p, c) = pod(serde_json::json!({
            "securityContext": {"runAsUser": 1000, "runAsGroup": 2000, "fsGroup": 3000,
                                "supplementalGroups": [4000],
                                "seccompProfile": {"type": "Unconfined"}},
            "containers": [{"name": "c", "securityContext": {
                "runAsUser": 1001, "readOnlyRootFilesystem": true,
                "capabilities": {"add": ["NET_ADMIN"], "drop": ["KILL"]},
                "seccompProfile": {"type": "Localhost", "localhostProfile": "prof/a.json"}}}],
        }));
        let sc = container_context(&p, &c, &defaults(true)).unwrap();
        assert_eq!(sc.run_as_user.unwrap().value, 1001);
        assert_eq!(sc.run_as_group.unwrap().value, 2000);
        assert_eq!(sc.supplemental_groups, [3000, 4000]);
        assert!(sc.readonly_rootfs);
        assert!(sc.no_new_privs);
        assert_eq!(sc.capabilities.unwrap().add_capabilities, ["NET_ADMIN"]);
        let seccomp = sc.seccomp.unwrap();
        assert_eq!(
            seccomp.profile_type,
            cri::security_profile::ProfileType::Localhost as i32
        );
        assert_eq!(
            seccomp.localhost_ref,
            "/var/lib/kubelet/seccomp/prof/a.json"
        );
        assert_eq!(sc.masked_paths.len(), MASKED_PATHS.len());
    }

    #[test]
    fn seccomp_default_flag_decides_unnamed_profiles() {
        let (p, c) = pod(serde_json::json!({"containers": [{"name": "c"}]}));
        let on = container_context(&p, &c, &defaults(true)).unwrap();
        assert_eq!(
            on.seccomp.unwrap().profile_type,
            cri::security_profile::ProfileType::RuntimeDefault as i32
        );
        let off = container_context(&p, &c, &defaults(false)).unwrap();
        assert_eq!(
            off.seccomp.unwrap().profile_type,
            cri::security_profile::ProfileType::Unconfined as i32
        );
    }

    #[test]
    fn escalation_is_off_unless_allowed() {
        let nnp = |sc: serde_json::Value| {
            let (p, c) =
                pod(serde_json::json!({"containers": [{"name": "c", "securityContext": sc}]}));
            container_context(&p, &c, &defaults(true))
                .unwrap()
                .no_new_privs
        };
        assert!(nnp(serde_json::json!({})));
        assert!(!nnp(serde_json::json!({"allowPrivilegeEscalation": true})));
        assert!(!nnp(serde_json::json!({"privileged": true})));
        assert!(!nnp(
            serde_json::json!({"capabilities": {"add": ["SYS_ADMIN"]}})
        ));
    }

    #[test]
    fn privileged_asks_for_no_masks() {
        let (p, c) = pod(serde_json::json!({"containers": [{"name": "c",
            "securityContext": {"privileged": true}}]}));
        let sc = container_context(&p, &c, &defaults(true)).unwrap();
        assert!(sc.privileged && sc.masked_paths.is_empty() && sc.readonly_paths.is_empty());
    }

    #[test]
    fn unsupported_fields_are_refused() {
        for spec in [
            serde_json::json!({"hostUsers": false, "containers": [{"name": "c"}]}),
            serde_json::json!({"shareProcessNamespace": true, "containers": [{"name": "c"}]}),
            serde_json::json!({"containers": [{"name": "c",
                "securityContext": {"procMount": "Unmasked"}}]}),
            serde_json::json!({"containers": [{"name": "c",
                "securityContext": {"windowsOptions": {"runAsUserName": "x"}}}]}),
            serde_json::json!({"securityContext": {"sysctls": [{"name": "net.core.somaxconn", "value": "1"}]},
                "containers": [{"name": "c"}]}),
            serde_json::json!({"containers": [{"name": "c", "securityContext":
                {"seccompProfile": {"type": "Localhost", "localhostProfile": "../etc/x"}}}]}),
        ] {
            let (p, c) = pod(spec.clone());
            assert!(
                container_context(&p, &c, &defaults(true)).is_err(),
                "{spec}"
            );
        }
    }

    #[test]
    fn run_as_non_root_follows_upstream() {
        let (p, c) = pod(
            serde_json::json!({"securityContext": {"runAsNonRoot": true},
            "containers": [{"name": "c"}]}),
        );
        let err = verify_run_as_non_root(&p, &c, Some(0), "").unwrap_err();
        assert_eq!(
            err,
            "container has runAsNonRoot and image will run as root (pod: \"p_ns(u1)\", \
             container: c)"
        );
        assert!(verify_run_as_non_root(&p, &c, None, "").is_err());
        assert!(verify_run_as_non_root(&p, &c, Some(1000), "").is_ok());
        let err = verify_run_as_non_root(&p, &c, None, "nobody").unwrap_err();
        assert!(err.contains("non-numeric user (nobody)"), "{err}");
        let (p, c) = pod(
            serde_json::json!({"securityContext": {"runAsNonRoot": true},
            "containers": [{"name": "c", "securityContext": {"runAsUser": 0}}]}),
        );
        let err = verify_run_as_non_root(&p, &c, Some(1000), "").unwrap_err();
        assert!(
            err.starts_with("container's runAsUser breaks non-root policy"),
            "{err}"
        );
        let (p, c) = pod(serde_json::json!({"containers": [{"name": "c"}]}));
        assert!(verify_run_as_non_root(&p, &c, Some(0), "").is_ok());
    }
}
