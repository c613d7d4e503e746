//! The restricted level: checks that enforce current pod hardening practice on top of baseline
//! (upstream's restricted `check_*.go`), and the registry that lists them with the baseline
//! checks each one replaces.

use std::collections::BTreeSet;

use k8s_openapi::{api::core::v1::PodSpec, apimachinery::pkg::apis::meta::v1::ObjectMeta};

use super::{
    Check, Version, Violation, bad_containers, capabilities, check, join_quote, named_containers,
    pluralize, proc_mount, seccomp_explicit_violation, setters, user_namespaced, violation,
};

/// The restricted checks, sorted by id, each with the baseline checks it replaces.
pub(super) const CHECKS: &[Check] = &[
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

fn windows(spec: &PodSpec) -> bool {
    spec.os.as_ref().is_some_and(|os| os.name == "windows")
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

fn proc_mount_restricted(_: &ObjectMeta, spec: &PodSpec, _: Version) -> Option<Violation> {
    proc_mount(spec)
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

    use super::super::tests::{good, run, spec};
    use crate::podsecurity::{Level, Version};

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
