//! The ServiceAccount admission step for new pods, as upstream's `ServiceAccount` plugin:
//! a pod without `serviceAccountName` runs as `default`; the ServiceAccount must exist; unless
//! the pod or the ServiceAccount turns `automountServiceAccountToken` off, the projected
//! volume `kube-api-access-<5 chars>` (token, `kube-root-ca.crt`'s `ca.crt`, namespace) is
//! added and mounted read-only at [`TOKEN_MOUNT_PATH`] in every container and init container;
//! the ServiceAccount's `imagePullSecrets` are copied to a pod that names none. Mirror pods
//! are left alone.
//!
//! One deliberate difference: a missing `default` ServiceAccount is created here rather than
//! refused, so a pod created right after its namespace does not race the ServiceAccount
//! controller (which would create the same object). Any other missing ServiceAccount is
//! refused as upstream refuses it.

use serde_json::{Value, json};

use super::request::WARN_ONLY_EXPIRATION_SECONDS;
use crate::errors::{ApiError, Result};
use crate::registry::{Registry, WriteOptions};

/// Where containers find their ServiceAccount's token, CA and namespace.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Prefix of the token volume's name.
const VOLUME_PREFIX: &str = "kube-api-access-";
/// The ConfigMap with the cluster CA that a controller publishes in every namespace.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Admits a pod about to be created in `ns`.
pub async fn admit(registry: &Registry, ns: &str, pod: &mut Value, dry_run: bool) -> Result<()> {
    if pod
        .pointer(&format!(
            "/metadata/annotations/{}",
            MIRROR_ANNOTATION.replace('/', "~1")
        ))
        .is_some()
    {
        return Ok(());
    }
    let spec = crate::defaults::ensure(pod, "spec");
    let sa_name = ["serviceAccountName", "serviceAccount"]
        .iter()
        .find_map(|k| {
            spec.get(*k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .unwrap_or("default")
        .to_string();
    spec["serviceAccountName"] = json!(sa_name);
    let sa = service_account(registry, ns, &sa_name, dry_run)
        .await
        .map_err(|e| {
            let pod_name = pod
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            ApiError::forbidden_object(
                "pods",
                pod_name,
                &format!(
                    "error looking up service account {ns}/{sa_name}: {}",
                    e.message
                ),
            )
        })?;
    mutate(pod, &sa);
    Ok(())
}

/// The pod's ServiceAccount; the namespace's `default` is created when missing.
async fn service_account(
    registry: &Registry,
    ns: &str,
    name: &str,
    dry_run: bool,
) -> Result<Value> {
    let r = ekube_api::resources::find("", "v1", "serviceaccounts").expect("served");
    match registry.get(r, Some(ns), name).await {
        Err(e) if e.code == 404 && name == "default" => {
            let sa = json!({"metadata": {"name": name, "namespace": ns}});
            if dry_run {
                return Ok(sa);
            }
            let opts = WriteOptions::default();
            match Box::pin(registry.create(r, Some(ns), sa, &opts)).await {
                Ok((created, _)) => Ok(created),
                // Created by the controller meanwhile.
                Err(e) if e.code == 409 => registry.get(r, Some(ns), name).await,
                Err(e) => Err(e),
            }
        }
        other => other,
    }
}

/// Sets what the ServiceAccount gives the pod: pull secrets and the token volume.
pub fn mutate(pod: &mut Value, sa: &Value) {
    let spec = crate::defaults::ensure(pod, "spec");
    let pull_secrets = sa
        .get("imagePullSecrets")
        .filter(|s| s.as_array().is_some_and(|a| !a.is_empty()));
    if let Some(secrets) = pull_secrets
        && spec
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
    {
        spec["imagePullSecrets"] = secrets.clone();
    }
    let automount = spec
        .get("automountServiceAccountToken")
        .or_else(|| sa.get("automountServiceAccountToken"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if automount {
        mount_token(spec);
    }
}

fn mount_token(spec: &mut Value) {
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .find(|n| n.starts_with(VOLUME_PREFIX))
        .map(str::to_string);
    let name = existing
        .clone()
        .unwrap_or_else(|| format!("{VOLUME_PREFIX}{}", crate::registry::random_suffix()));
    let mount = json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let mounts = crate::defaults::ensure(c, "volumeMounts");
            if !mounts.is_array() {
                *mounts = json!([]);
            }
            let list = mounts.as_array_mut().expect("an array");
            // A container with its own mount at the path keeps it.
            if !list.iter().any(|m| m["mountPath"] == TOKEN_MOUNT_PATH) {
                list.push(mount.clone());
                needed = true;
            }
        }
    }
    if needed && existing.is_none() {
        let volumes = crate::defaults::ensure(spec, "volumes");
        if !volumes.is_array() {
            *volumes = json!([]);
        }
        volumes
            .as_array_mut()
            .expect("an array")
            .push(token_volume(&name));
    }
}

/// The projected volume upstream's admission plugin writes.
fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": WARN_ONLY_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
            "defaultMode": 0o644,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": spec})
    }

    #[test]
    fn every_container_mounts_one_projected_volume_as_upstream_writes_it() {
        let mut p = pod(json!({
            "initContainers": [{"name": "init", "image": "x"}],
            "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x",
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "emptyDir": {}}],
        }));
        mutate(&mut p, &json!({"metadata": {"name": "default"}}));
        let volumes = p["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 2);
        let name = volumes[1]["name"].as_str().unwrap();
        let suffix = name.strip_prefix("kube-api-access-").unwrap();
        assert_eq!(suffix.len(), 5, "{name}");
        assert!(
            suffix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_eq!(volumes[1], token_volume(name));
        assert_eq!(
            volumes[1]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
        assert_eq!(volumes[1]["projected"]["defaultMode"], 420);
        for c in [
            "/spec/initContainers/0",
            "/spec/containers/0",
            "/spec/containers/1",
        ] {
            let mounts = p
                .pointer(&format!("{c}/volumeMounts"))
                .unwrap()
                .as_array()
                .unwrap();
            assert_eq!(
                mounts.last().unwrap(),
                &json!({"name": name, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}),
                "{c}"
            );
        }
        // Admitting again (an update) adds nothing.
        let before = p.clone();
        mutate(&mut p, &json!({}));
        assert_eq!(p, before);
    }

    #[test]
    fn automount_off_on_the_pod_or_the_service_account_mounts_nothing() {
        let containers = json!([{"name": "a", "image": "x"}]);
        let mut off = pod(json!({"containers": containers, "automountServiceAccountToken": false}));
        mutate(&mut off, &json!({}));
        assert!(off["spec"].get("volumes").is_none(), "{off}");
        let mut sa_off = pod(json!({"containers": containers}));
        mutate(&mut sa_off, &json!({"automountServiceAccountToken": false}));
        assert!(sa_off["spec"].get("volumes").is_none(), "{sa_off}");
        // The pod's choice wins over the ServiceAccount's.
        let mut on = pod(json!({"containers": containers, "automountServiceAccountToken": true}));
        mutate(&mut on, &json!({"automountServiceAccountToken": false}));
        assert_eq!(on["spec"]["volumes"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn a_container_with_its_own_mount_at_the_path_keeps_it() {
        let own = json!({"name": "mine", "mountPath": TOKEN_MOUNT_PATH});
        let mut p = pod(
            json!({"containers": [{"name": "a", "image": "x", "volumeMounts": [own]}],
            "volumes": [{"name": "mine", "secret": {"secretName": "s"}}]}),
        );
        mutate(&mut p, &json!({"imagePullSecrets": [{"name": "reg"}]}));
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"], json!([own]));
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "reg"}]));
    }
}
