//! The checks behind each level, one function per upstream check id, each answering with
//! upstream's reason and detail. A level runs its checks in upstream's order (baseline ids
//! sorted, then restricted ids sorted); a restricted check may replace a weaker baseline check
//! from the version it appeared in.
//!
//! Each level's checks and their registry live in their own module (`baseline`,
//! `restricted`), as upstream's `check_*.go` files each belong to one level; this module holds
//! what they share: the registry entry, the per-container view and the wording helpers.

mod baseline;
mod restricted;

use std::collections::BTreeSet;

use k8s_openapi::{
    api::core::v1::{
        Capabilities, Container, ContainerPort, EphemeralContainer, Lifecycle, PodSecurityContext,
        PodSpec, Probe, SecurityContext,
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

/// The checks of `lv`, in the order their violations are listed.
pub fn for_level(lv: LevelVersion) -> impl Iterator<Item = CheckFn> {
    let active = move |c: &&Check| lv.version.at_least(c.since);
    let restricted: &[Check] = if lv.level == Level::Restricted {
        restricted::CHECKS
    } else {
        &[]
    };
    let baseline: &[Check] = if lv.level == Level::Privileged {
        &[]
    } else {
        baseline::CHECKS
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

/// `View::from` for each container type: they share these fields by name, not by type.
macro_rules! view_from {
    ($($container:ty),+) => {$(
        impl<'a> From<&'a $container> for View<'a> {
            fn from(c: &'a $container) -> Self {
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
    )+};
}

view_from!(Container, EphemeralContainer);

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

fn capabilities<'a>(c: &View<'a>) -> Option<&'a Capabilities> {
    c.security.and_then(|s| s.capabilities.as_ref())
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::podsecurity::{describe, evaluate};

    pub(super) fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    pub(super) fn run(level: Level, version: Version, s: &PodSpec) -> String {
        describe(&evaluate(
            LevelVersion { level, version },
            &ObjectMeta::default(),
            s,
        ))
    }

    /// A container that meets `restricted`.
    pub(super) fn good(name: &str) -> serde_json::Value {
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
}
