//! The baseline level: checks that stop known privilege escalations while letting common
//! workloads run unchanged (upstream's baseline `check_*.go`), and the registry that lists them.

use std::collections::BTreeSet;

use k8s_openapi::{
    api::core::v1::{LifecycleHandler, PodSpec, SecurityContext},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use super::{
    Check, Version, Violation, bad_containers, capabilities, check, containers, explicit_profiles,
    join_quote, named_containers, pluralize, proc_mount, seccomp_explicit_violation, setters,
    user_namespaced, violation,
};

/// The baseline checks, sorted by id.
pub(super) const CHECKS: &[Check] = &[
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

fn proc_mount_baseline(_: &ObjectMeta, spec: &PodSpec, version: Version) -> Option<Violation> {
    if user_namespaced(spec, version) {
        return None;
    }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{run, spec};
    use crate::podsecurity::{Level, Version};

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
}
