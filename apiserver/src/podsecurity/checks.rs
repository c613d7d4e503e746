//! The checks behind each level, one function per upstream check id, each answering with
//! upstream's reason and detail. A level runs its checks in upstream's order (baseline ids
//! sorted, then restricted ids sorted); a restricted check may replace a weaker baseline check
//! from the version it appeared in.

use std::collections::BTreeSet;

use k8s_openapi::{
    api::core::v1::{
        Capabilities, Container, ContainerPort, EphemeralContainer, Lifecycle, LifecycleHandler,
        PodSecurityContext, PodSpec, Probe, SecurityContext,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use super::{Level, LevelVersion, Version, Violation};

/// A check: the violation `spec` commits at `version`, if any.
pub type CheckFn = fn(&ObjectMeta, &PodSpec, Version) -> Option<Violation>;

struct Check {
    id: &'static str,
    /// The minor version the check appeared in.
    since: u32,
    /// Baseline check ids this (restricted) check replaces from `since` on.
    overrides: &'static [&'static str],
    run: CheckFn,
}

const fn check(id: &'static str, since: u32, run: CheckFn) -> Check {
    Check {
        id,
        since,
        overrides: &[],
        run,
    }
}

const BASELINE: &[Check] = &[
    check("appArmorProfile", 0, app_armor_profile),
    check("capabilities_baseline", 0, capabilities_baseline),
    check("hostNamespaces", 0, host_namespaces),
    check("hostPathVolumes", 0, host_path_volumes),
    check("hostPorts", 0, host_ports),
    check("hostProbesAndHostLifecycle", 34, host_probes_and_lifecycle),
    check("privileged", 0, privileged),
    check("procMount", 0, proc_mount_baseline),
    check("seLinuxOptions", 0, se_linux_options),
    check("seccompProfile_baseline", 0, seccomp_baseline),
    check("sysctls", 0, sysctls),
    check("windowsHostProcess", 0, windows_host_process),
];

const RESTRICTED: &[Check] = &[
    check("allowPrivilegeEscalation", 8, allow_privilege_escalation),
    Check {
        id: "capabilities_restricted",
        since: 22,
        overrides: &["capabilities_baseline"],
        run: capabilities_restricted,
    },
    Check {
        id: "procMount_restricted",
        since: 35,
        overrides: &["procMount"],
        run: proc_mount_restricted,
    },
    Check {
        id: "restrictedVolumes",
        since: 0,
        overrides: &["hostPathVolumes"],
        run: restricted_volumes,
    },
    check("runAsNonRoot", 0, run_as_non_root),
    check("runAsUser", 23, run_as_user),
    Check {
        id: "seccompProfile_restricted",
        since: 19,
        overrides: &["seccompProfile_baseline"],
        run: seccomp_restricted,
    },
];

/// The checks of `lv`, in the order their violations are listed.
pub fn for_level(lv: LevelVersion) -> impl Iterator<Item = CheckFn> {
    let active = move |c: &&Check| lv.version.at_least(c.since);
    let restricted: &[Check] = if lv.level == Level::Restricted {
        RESTRICTED
    } else {
        &[]
    };
    let baseline: &[Check] = if lv.level == Level::Privileged {
        &[]
    } else {
        BASELINE
    };
    let overridden = move |id: &str| {
        restricted
            .iter()
            .filter(active)
            .any(|c| c.overrides.contains(&id))
    };
    baseline
        .iter()
        .filter(active)
        .filter(move |c| !overridden(c.id))
        .chain(restricted.iter().filter(active))
        .map(|c| c.run)
}

/// What the checks look at in a container, init container or ephemeral container.
struct View<'a> {
    name: &'a str,
    security: Option<&'a SecurityContext>,
    ports: &'a [ContainerPort],
    probes: [Option<&'a Probe>; 3],
    lifecycle: Option<&'a Lifecycle>,
}

impl<'a> From<&'a Container> for View<'a> {
    fn from(c: &'a Container) -> Self {
        Self {
            name: &c.name,
            security: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
            probes: [
                c.liveness_probe.as_ref(),
                c.readiness_probe.as_ref(),
                c.startup_probe.as_ref(),
            ],
            lifecycle: c.lifecycle.as_ref(),
        }
    }
}

impl<'a> From<&'a EphemeralContainer> for View<'a> {
    fn from(c: &'a EphemeralContainer) -> Self {
        Self {
            name: &c.name,
            security: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
            probes: [
                c.liveness_probe.as_ref(),
                c.readiness_probe.as_ref(),
                c.startup_probe.as_ref(),
            ],
            lifecycle: c.lifecycle.as_ref(),
        }
    }
}

/// Init containers, containers, then ephemeral containers, as upstream visits them.
fn containers(spec: &PodSpec) -> Vec<View<'_>> {
    let init = spec.init_containers.iter().flatten().map(View::from);
    let main = spec.containers.iter().map(View::from);
    let ephemeral = spec.ephemeral_containers.iter().flatten().map(View::from);
    init.chain(main).chain(ephemeral).collect()
}

/// The names of the containers for which `bad` holds.
fn bad_containers<'a>(spec: &'a PodSpec, mut bad: impl FnMut(&View<'a>) -> bool) -> Vec<&'a str> {
    containers(spec)
        .into_iter()
        .filter(|c| bad(c))
        .map(|c| c.name)
        .collect()
}

fn pluralize<'a>(singular: &'a str, plural: &'a str, n: usize) -> &'a str {
    if n == 1 { singular } else { plural }
}

/// `"a", "b"`.
fn join_quote<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    items
        .into_iter()
        .map(|s| format!("\"{}\"", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `container "a"` / `containers "a", "b"`.
fn named_containers(names: &[&str]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

fn violation(reason: impl Into<String>, detail: impl Into<String>) -> Option<Violation> {
    Some(Violation {
        reason: reason.into(),
        detail: detail.into(),
    })
}

/// `<reason> (<containers> must not set securityContext.<field>=true)` for a per-container flag.
fn container_flag(
    spec: &PodSpec,
    reason: &str,
    field: &str,
    set: impl Fn(&SecurityContext) -> Option<bool>,
) -> Option<Violation> {
    let bad = bad_containers(spec, |c| c.security.and_then(&set) == Some(true));
    if bad.is_empty() {
        return None;
    }
    violation(
        reason,
        format!(
            "{} must not set securityContext.{field}=true",
            named_containers(&bad)
        ),
    )
}

/// Setters (`pod`, `containers "a", "b"`) for a per-pod-and-container field.
fn setters(pod: bool, containers: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    if pod {
        out.push("pod".to_string());
    }
    if !containers.is_empty() {
        out.push(named_containers(containers));
    }
    out
}

/// Pods that run in their own user namespace get some checks relaxed from 1.35 on.
fn user_namespaced(spec: &PodSpec, version: Version) -> bool {
    version.at_least(35) && spec.host_users == Some(false)
}

fn windows(spec: &PodSpec) -> bool {
    spec.os.as_ref().is_some_and(|os| os.name == "windows")
}

fn privileged(_: &ObjectMeta, spec: &PodSpec, _: Version) -> Option<Violation> {
    container_flag(spec, "privileged", "privileged", |s| s.privileged)
}

fn windows_host_process(_: &ObjectMeta, spec: &PodSpec, _: Version) -> Option<Violation> {
    let pod = spec
        .security_context
        .as_ref()
        .and_then(|s| s.windows_options.as_ref())
        .and_then(|w| w.host_process)
        == Some(true);
    let bad = bad_containers(spec, |c| {
        c.security
            .and_then(|s| s.windows_options.as_ref())
            .and_then(|w| w.host_process)
            == Some(true)
    });
    let setters = setters(pod, &bad);
    if setters.is_empty() {
        return None;
    }
    violation(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
    )
}

fn host_namespaces(_: &ObjectMeta, spec: &PodSpec, _: Version) -> Option<Violation> {
    let shared: Vec<&str> = [
        (spec.host_network, "hostNetwork=true"),
        (spec.host_pid, "hostPID=true"),
        (spec.host_ipc, "hostIPC=true"),
    ]
    .into_iter()
    .filter(|(on, _)| *on == Some(true))
    .map(|(_, what)| what)
    .collect();
    if shared.is_empty() {
        return None;
    }
    violation("host namespaces", shared.join(", "))
}

fn host_path_volumes(_: &ObjectMeta, spec: &PodSpec, _: Version) -> Option<Violation> {
    let bad: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.host_path.is_some())
        .map(|v| v.name.as_str())
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "hostPath volumes",
        format!(
            "{} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad)
        ),
    )
}

fn host_ports(_: &ObjectMeta, spec: &PodSpec, _: Version) -> Option<Violation> {
    let mut ports = BTreeSet::new();
    let bad = bad_containers(spec, |c| {
        let used: Vec<i32> = c
            .ports
            .iter()
            .filter_map(|p| p.host_port.filter(|&h| h != 0))
            .collect();
        ports.extend(used.iter().map(i32::to_string));
        !used.is_empty()
    });
    if bad.is_empty() {
        return None;
    }
    violation(
        "hostPort",
        format!(
            "{} {} {} {}",
            named_containers(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

fn host_probes_and_lifecycle(_: &ObjectMeta, spec: &PodSpec, _: Version) -> Option<Violation> {
    fn hosts<'a>(
        http: Option<&'a Option<String>>,
        tcp: Option<&'a Option<String>>,
    ) -> impl Iterator<Item = &'a str> {
        [http, tcp]
            .into_iter()
            .flatten()
            .filter_map(|h| h.as_deref())
            .filter(|h| !h.is_empty())
    }
    let handler = |h: &'_ LifecycleHandler| -> Vec<String> {
        hosts(
            h.http_get.as_ref().map(|g| &g.host),
            h.tcp_socket.as_ref().map(|t| &t.host),
        )
        .map(String::from)
        .collect()
    };
    let mut forbidden = BTreeSet::new();
    let mut bad = BTreeSet::new();
    for c in containers(spec) {
        let mut found: Vec<String> = Vec::new();
        for probe in c.probes.into_iter().flatten() {
            found.extend(
                hosts(
                    probe.http_get.as_ref().map(|g| &g.host),
                    probe.tcp_socket.as_ref().map(|t| &t.host),
                )
                .map(String::from),
            );
        }
        if let Some(l) = c.lifecycle {
            for h in [&l.post_start, &l.pre_stop].into_iter().flatten() {
                found.extend(handler(h));
            }
        }
        if !found.is_empty() {
            bad.insert(c.name);
            forbidden.extend(found);
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "probe or lifecycle host",
        format!(
            "{} {} {} {} {}",
            pluralize("container", "containers", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "probe or lifecycle host",
                "probe or lifecycle hosts",
                forbidden.len()
            ),
            join_quote(&forbidden)
        ),
    )
}

/// Capabilities a baseline container may add.
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn capabilities<'a>(c: &View<'a>) -> Option<&'a Capabilities> {
    c.security.and_then(|s| s.capabilities.as_ref())
}

fn capabilities_baseline(_: &ObjectMeta, spec: &PodSpec, _: Version) -> Option<Violation> {
    let mut extra = BTreeSet::new();
    let bad = bad_containers(spec, |c| {
        let added: Vec<&String> = capabilities(c)
            .and_then(|caps| caps.add.as_ref())
            .into_iter()
            .flatten()
            .filter(|cap| !BASELINE_CAPABILITIES.contains(&cap.as_str()))
            .collect();
        extra.extend(added.iter().map(|s| s.as_str().to_owned()));
        !added.is_empty()
    });
    if bad.is_empty() {
        return None;
    }
    violation(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            named_containers(&bad),
            join_quote(&extra)
        ),
    )
}

fn capabilities_restricted(_: &ObjectMeta, spec: &PodSpec, version: Version) -> Option<Violation> {
    if version.at_least(25) && windows(spec) {
        return None;
    }
    let no_drop_all = bad_containers(spec, |c| {
        !capabilities(c)
            .and_then(|caps| caps.drop.as_ref())
            .is_some_and(|d| d.iter().any(|cap| cap == "ALL"))
    });
    let mut extra = BTreeSet::new();
    let adding = bad_containers(spec, |c| {
        let added: Vec<&String> = capabilities(c)
            .and_then(|caps| caps.add.as_ref())
            .into_iter()
            .flatten()
            .filter(|cap| *cap != "NET_BIND_SERVICE")
            .collect();
        extra.extend(added.iter().map(|s| s.as_str().to_owned()));
        !added.is_empty()
    });
    let mut details = Vec::new();
    if !no_drop_all.is_empty() {
        details.push(format!(
            r#"{} must set securityContext.capabilities.drop=["ALL"]"#,
            named_containers(&no_drop_all)
        ));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            named_containers(&adding),
            join_quote(&extra)
        ));
    }
    if details.is_empty() {
        return None;
    }
    violation("unrestricted capabilities", details.join("; "))
}

fn proc_mount(spec: &PodSpec) -> Option<Violation> {
    let mut kinds = BTreeSet::new();
    let bad = bad_containers(spec, |c| {
        match c.security.and_then(|s| s.proc_mount.as_deref()) {
            Some(kind) if kind != "Default" => {
                kinds.insert(kind.to_owned());
                true
            }
            _ => false,
        }
    });
    if bad.is_empty() {
        return None;
    }
    violation(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            named_containers(&bad),
            join_quote(&kinds)
        ),
    )
}

fn proc_mount_baseline(_: &ObjectMeta, spec: &PodSpec, version: Version) -> Option<Violation> {
    if user_namespaced(spec, version) {
        return None;
    }
    proc_mount(spec)
}

fn proc_mount_restricted(_: &ObjectMeta, spec: &PodSpec, _: Version) -> Option<Violation> {
    proc_mount(spec)
}

fn se_linux_options(_: &ObjectMeta, spec: &PodSpec, version: Version) -> Option<Violation> {
    let mut allowed = vec!["", "container_t", "container_init_t", "container_kvm_t"];
    if version.at_least(31) {
        allowed.push("container_engine_t");
    }
    let mut bad_types = BTreeSet::new();
    let (mut set_user, mut set_role) = (false, false);
    let mut invalid = |o: &k8s_openapi::api::core::v1::SELinuxOptions| {
        let kind = o.type_.as_deref().unwrap_or_default();
        let mut valid = true;
        if !allowed.contains(&kind) {
            bad_types.insert(kind.to_owned());
            valid = false;
        }
        if o.user.as_deref().is_some_and(|u| !u.is_empty()) {
            set_user = true;
            valid = false;
        }
        if o.role.as_deref().is_some_and(|r| !r.is_empty()) {
            set_role = true;
            valid = false;
        }
        !valid
    };
    let pod = spec
        .security_context
        .as_ref()
        .and_then(|s| s.se_linux_options.as_ref())
        .is_some_and(&mut invalid);
    let mut bad = Vec::new();
    for c in containers(spec) {
        if c.security
            .and_then(|s| s.se_linux_options.as_ref())
            .is_some_and(&mut invalid)
        {
            bad.push(c.name);
        }
    }
    let setters = setters(pod, &bad);
    if setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !bad_types.is_empty() {
        data.push(format!(
            "{} {}",
            pluralize("type", "types", bad_types.len()),
            join_quote(&bad_types)
        ));
    }
    if set_user {
        data.push("user may not be set".to_string());
    }
    if set_role {
        data.push("role may not be set".to_string());
    }
    violation(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            data.join("; ")
        ),
    )
}

/// The seccomp and AppArmor profile types a pod may ask for explicitly.
fn valid_seccomp(kind: &str) -> bool {
    kind == "RuntimeDefault" || kind == "Localhost"
}

/// Pod- and container-level profile types (seccomp, AppArmor) other than `RuntimeDefault` or
/// `Localhost`: the setters and the values they set.
fn explicit_profiles(
    spec: &PodSpec,
    pod: impl Fn(&PodSecurityContext) -> Option<&str>,
    container: impl Fn(&SecurityContext) -> Option<&str>,
) -> (Vec<String>, BTreeSet<String>) {
    let mut values = BTreeSet::new();
    let mut bad = |t: Option<&str>| match t {
        Some(t) if !valid_seccomp(t) => {
            values.insert(t.to_owned());
            true
        }
        _ => false,
    };
    let pod_bad = bad(spec.security_context.as_ref().and_then(&pod));
    let containers = bad_containers(spec, |c| bad(c.security.and_then(&container)));
    (setters(pod_bad, &containers), values)
}

/// Explicitly bad seccomp settings: the setters and the values they set.
fn seccomp_explicit(spec: &PodSpec) -> (Vec<String>, BTreeSet<String>) {
    explicit_profiles(
        spec,
        |s| s.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        |s| s.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
    )
}

fn seccomp_explicit_violation(spec: &PodSpec) -> Option<Violation> {
    let (setters, values) = seccomp_explicit(spec);
    if setters.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            setters.join(" and "),
            join_quote(&values)
        ),
    )
}

fn seccomp_baseline(meta: &ObjectMeta, spec: &PodSpec, version: Version) -> Option<Violation> {
    if version.at_least(19) {
        return seccomp_explicit_violation(spec);
    }
    // Before 1.19 the profile was named by annotations.
    const POD: &str = "seccomp.security.alpha.kubernetes.io/pod";
    const CONTAINER: &str = "container.seccomp.security.alpha.kubernetes.io/";
    let valid =
        |v: &str| v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/");
    let annotations = meta.annotations.as_ref()?;
    let mut keys = vec![POD.to_string()];
    keys.extend(
        containers(spec)
            .iter()
            .map(|c| format!("{CONTAINER}{}", c.name)),
    );
    let forbidden: BTreeSet<String> = keys
        .iter()
        .filter_map(|k| annotations.get(k).map(|v| (k, v)))
        .filter(|(_, v)| !valid(v))
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    if forbidden.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "forbidden {} {}",
            pluralize("annotation", "annotations", forbidden.len()),
            forbidden.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

fn seccomp_restricted(_: &ObjectMeta, spec: &PodSpec, version: Version) -> Option<Violation> {
    if version.at_least(25) && windows(spec) {
        return None;
    }
    if let Some(v) = seccomp_explicit_violation(spec) {
        return Some(v);
    }
    let pod_set = spec
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref())
        .is_some();
    if pod_set {
        return None;
    }
    let unset = bad_containers(spec, |c| {
        c.security
            .and_then(|s| s.seccomp_profile.as_ref())
            .is_none()
    });
    if unset.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            r#"pod or {} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
            named_containers(&unset)
        ),
    )
}

fn app_armor_profile(meta: &ObjectMeta, spec: &PodSpec, _: Version) -> Option<Violation> {
    const ANNOTATION: &str = "container.apparmor.security.beta.kubernetes.io/";
    let (mut setters, values) = explicit_profiles(
        spec,
        |s| s.app_armor_profile.as_ref().map(|p| p.type_.as_str()),
        |s| s.app_armor_profile.as_ref().map(|p| p.type_.as_str()),
    );
    let mut listed: Vec<String> = values.into_iter().collect();
    let annotations: BTreeSet<String> = meta
        .annotations
        .iter()
        .flatten()
        .filter(|(k, v)| {
            k.starts_with(ANNOTATION)
                && !(v.is_empty() || *v == "runtime/default" || v.starts_with("localhost/"))
        })
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    if !annotations.is_empty() {
        setters.push(pluralize("annotation", "annotations", annotations.len()).to_string());
        listed.extend(annotations);
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            listed.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&listed)
        ),
    )
}

fn sysctls(_: &ObjectMeta, spec: &PodSpec, version: Version) -> Option<Violation> {
    const SINCE: &[(u32, &[&str])] = &[
        (
            0,
            &[
                "kernel.shm_rmid_forced",
                "net.ipv4.ip_local_port_range",
                "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range",
                "net.ipv4.ip_unprivileged_port_start",
            ],
        ),
        (27, &["net.ipv4.ip_local_reserved_ports"]),
        (
            29,
            &[
                "net.ipv4.tcp_keepalive_time",
                "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes",
            ],
        ),
        (32, &["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"]),
        (
            37,
            &[
                "net.ipv4.tcp_slow_start_after_idle",
                "net.ipv4.tcp_notsent_lowat",
            ],
        ),
    ];
    let allowed = |name: &str| {
        SINCE
            .iter()
            .any(|(since, names)| version.at_least(*since) && names.contains(&name))
    };
    let forbidden: Vec<&str> = spec
        .security_context
        .as_ref()
        .and_then(|s| s.sysctls.as_ref())
        .into_iter()
        .flatten()
        .map(|s| s.name.as_str())
        .filter(|name| !allowed(name))
        .collect();
    if forbidden.is_empty() {
        return None;
    }
    violation("forbidden sysctls", forbidden.join(", "))
}

fn allow_privilege_escalation(
    _: &ObjectMeta,
    spec: &PodSpec,
    version: Version,
) -> Option<Violation> {
    if version.at_least(25) && windows(spec) {
        return None;
    }
    let bad = bad_containers(spec, |c| {
        c.security.and_then(|s| s.allow_privilege_escalation) != Some(false)
    });
    if bad.is_empty() {
        return None;
    }
    violation(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            named_containers(&bad)
        ),
    )
}

/// Volume sources a restricted pod may use.
fn restricted_volumes(_: &ObjectMeta, spec: &PodSpec, _: Version) -> Option<Violation> {
    let mut kinds = BTreeSet::new();
    let mut bad = Vec::new();
    for v in spec.volumes.iter().flatten() {
        let allowed = v.config_map.is_some()
            || v.csi.is_some()
            || v.downward_api.is_some()
            || v.empty_dir.is_some()
            || v.ephemeral.is_some()
            || v.image.is_some()
            || v.persistent_volume_claim.is_some()
            || v.projected.is_some()
            || v.secret.is_some();
        if allowed {
            continue;
        }
        bad.push(v.name.as_str());
        let named = [
            (v.host_path.is_some(), "hostPath"),
            (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
            (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
            (v.git_repo.is_some(), "gitRepo"),
            (v.nfs.is_some(), "nfs"),
            (v.iscsi.is_some(), "iscsi"),
            (v.glusterfs.is_some(), "glusterfs"),
            (v.rbd.is_some(), "rbd"),
            (v.flex_volume.is_some(), "flexVolume"),
            (v.cinder.is_some(), "cinder"),
            (v.cephfs.is_some(), "cephfs"),
            (v.flocker.is_some(), "flocker"),
            (v.fc.is_some(), "fc"),
            (v.azure_file.is_some(), "azureFile"),
            (v.vsphere_volume.is_some(), "vsphereVolume"),
            (v.quobyte.is_some(), "quobyte"),
            (v.azure_disk.is_some(), "azureDisk"),
            (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
            (v.portworx_volume.is_some(), "portworxVolume"),
            (v.scale_io.is_some(), "scaleIO"),
            (v.storageos.is_some(), "storageos"),
        ];
        let kind = named
            .iter()
            .find(|(set, _)| *set)
            .map_or("unknown", |(_, name)| name);
        kinds.insert(kind);
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                kinds.len()
            ),
            join_quote(&kinds)
        ),
    )
}

fn run_as_non_root(_: &ObjectMeta, spec: &PodSpec, version: Version) -> Option<Violation> {
    if user_namespaced(spec, version) {
        return None;
    }
    let pod = spec
        .security_context
        .as_ref()
        .and_then(|s| s.run_as_non_root);
    let explicit = bad_containers(spec, |c| {
        c.security.and_then(|s| s.run_as_non_root) == Some(false)
    });
    let setters = setters(pod == Some(false), &explicit);
    if !setters.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        );
    }
    if pod == Some(true) {
        return None;
    }
    let implicit = bad_containers(spec, |c| {
        c.security.and_then(|s| s.run_as_non_root).is_none()
    });
    if implicit.is_empty() {
        return None;
    }
    violation(
        "runAsNonRoot != true",
        format!(
            "pod or {} must set securityContext.runAsNonRoot=true",
            named_containers(&implicit)
        ),
    )
}

fn run_as_user(_: &ObjectMeta, spec: &PodSpec, version: Version) -> Option<Violation> {
    if user_namespaced(spec, version) {
        return None;
    }
    let pod = spec.security_context.as_ref().and_then(|s| s.run_as_user) == Some(0);
    let bad = bad_containers(spec, |c| c.security.and_then(|s| s.run_as_user) == Some(0));
    let setters = setters(pod, &bad);
    if setters.is_empty() {
        return None;
    }
    violation(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", setters.join(" and ")),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::podsecurity::{describe, evaluate};

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    fn run(level: Level, version: Version, s: &PodSpec) -> String {
        describe(&evaluate(
            LevelVersion { level, version },
            &ObjectMeta::default(),
            s,
        ))
    }

    /// A container that meets `restricted`.
    fn good(name: &str) -> serde_json::Value {
        json!({
            "name": name, "image": "busybox",
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": { "drop": ["ALL"] },
                "runAsNonRoot": true,
                "seccompProfile": { "type": "RuntimeDefault" }
            }
        })
    }

    #[test]
    fn a_privileged_pod_breaks_restricted_as_upstream_words_it() {
        let s = spec(json!({
            "containers": [{ "name": "nginx", "image": "nginx",
                             "securityContext": { "privileged": true } }]
        }));
        assert_eq!(
            run(Level::Restricted, Version::Latest, &s),
            "privileged (container \"nginx\" must not set securityContext.privileged=true), \
             allowPrivilegeEscalation != false (container \"nginx\" must set \
             securityContext.allowPrivilegeEscalation=false), unrestricted capabilities \
             (container \"nginx\" must set securityContext.capabilities.drop=[\"ALL\"]), \
             runAsNonRoot != true (pod or container \"nginx\" must set \
             securityContext.runAsNonRoot=true), seccompProfile (pod or container \"nginx\" \
             must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
        assert_eq!(
            run(Level::Baseline, Version::Latest, &s),
            "privileged (container \"nginx\" must not set securityContext.privileged=true)"
        );
        assert_eq!(run(Level::Privileged, Version::Latest, &s), "");
    }

    #[test]
    fn a_hardened_pod_meets_restricted() {
        let s = spec(json!({
            "initContainers": [good("init")],
            "containers": [good("a"), good("b")],
            "volumes": [{ "name": "v", "emptyDir": {} }, { "name": "c", "configMap": { "name": "x" } }]
        }));
        assert_eq!(run(Level::Restricted, Version::Latest, &s), "");
    }

    #[test]
    fn baseline_host_access() {
        let s = spec(json!({
            "hostNetwork": true, "hostPID": true,
            "containers": [
                { "name": "a", "image": "x", "ports": [{ "containerPort": 80, "hostPort": 8080 }],
                  "securityContext": { "capabilities": { "add": ["NET_ADMIN", "CHOWN"] } } },
                { "name": "b", "image": "x", "ports": [{ "containerPort": 81, "hostPort": 8081 }] }
            ],
            "volumes": [{ "name": "root", "hostPath": { "path": "/" } }],
            "securityContext": { "sysctls": [{ "name": "kernel.msgmax", "value": "1" },
                                             { "name": "net.ipv4.tcp_syncookies", "value": "1" }] }
        }));
        assert_eq!(
            run(Level::Baseline, Version::Latest, &s),
            "non-default capabilities (container \"a\" must not include \"NET_ADMIN\" in \
             securityContext.capabilities.add), host namespaces (hostNetwork=true, hostPID=true), \
             hostPath volumes (volume \"root\"), hostPort (containers \"a\", \"b\" use hostPorts \
             8080, 8081), forbidden sysctls (kernel.msgmax)"
        );
    }

    #[test]
    fn restricted_replaces_weaker_baseline_checks() {
        let mut c = good("a");
        c["securityContext"]["capabilities"]["add"] = json!(["NET_ADMIN"]);
        let s = spec(json!({
            "containers": [c],
            "volumes": [{ "name": "root", "hostPath": { "path": "/" } }]
        }));
        assert_eq!(
            run(Level::Restricted, Version::Latest, &s),
            "unrestricted capabilities (container \"a\" must not include \"NET_ADMIN\" in \
             securityContext.capabilities.add), restricted volume types (volume \"root\" uses \
             restricted volume type \"hostPath\")"
        );
    }

    #[test]
    fn versions_pick_the_rules_of_their_time() {
        let mut c = good("a");
        c["securityContext"]["runAsUser"] = json!(0);
        let s = spec(json!({ "containers": [c] }));
        assert_eq!(
            run(Level::Restricted, Version::Latest, &s),
            "runAsUser=0 (container \"a\" must not set runAsUser=0)"
        );
        assert_eq!(run(Level::Restricted, Version::Minor(22), &s), "");

        let s = spec(json!({
            "containers": [{ "name": "a", "image": "x" }],
            "securityContext": { "sysctls": [{ "name": "net.ipv4.tcp_keepalive_time", "value": "60" }] }
        }));
        assert_eq!(run(Level::Baseline, Version::Latest, &s), "");
        assert_eq!(
            run(Level::Baseline, Version::Minor(28), &s),
            "forbidden sysctls (net.ipv4.tcp_keepalive_time)"
        );
    }

    #[test]
    fn explicit_bad_settings_are_named_as_such() {
        let mut a = good("a");
        a["securityContext"]["runAsNonRoot"] = json!(false);
        a["securityContext"]["seccompProfile"]["type"] = json!("Unconfined");
        let s = spec(json!({
            "securityContext": { "runAsNonRoot": false },
            "containers": [a]
        }));
        assert_eq!(
            run(Level::Restricted, Version::Latest, &s),
            "runAsNonRoot != true (pod and container \"a\" must not set \
             securityContext.runAsNonRoot=false), seccompProfile (container \"a\" must not set \
             securityContext.seccompProfile.type to \"Unconfined\")"
        );
    }
}
