//! PersistentVolumeClaimResize: a claim may ask for more storage only when it is bound and its
//! StorageClass says `allowVolumeExpansion: true`, as upstream's plugin decides.
//!
//! ekube's provisioners expand nothing, so in practice growing a claim is refused unless a
//! class opts in; shrinking (down to what the volume already has) is validation's to judge.

use ekube_api::storage::claim_class;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::Value;

use super::{Attributes, Operation};
use crate::errors::{ApiError, Result};
use crate::registry::{Registry, decode, key};

pub(super) async fn validate(
    registry: &Registry,
    attrs: &Attributes<'_>,
    object: &Value,
) -> Result<()> {
    if attrs.operation != Operation::Update
        || attrs.subresource.is_some()
        || !attrs.is("", "PersistentVolumeClaim")
    {
        return Ok(());
    }
    let Some(old) = attrs.old_object else {
        return Ok(());
    };
    let size = |v: &Value| {
        v.pointer("/spec/resources/requests/storage")
            .map(|q| match q {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .and_then(|q| ekube_api::quantity::parse_nano(&q).ok())
            .unwrap_or(0)
    };
    if size(object) <= size(old) {
        return Ok(());
    }
    if old.pointer("/status/phase").and_then(Value::as_str) != Some("Bound") {
        return Err(attrs.forbidden("Only bound persistent volume claims can be expanded"));
    }
    if !allows_resize(registry, object, old).await? {
        return Err(attrs.forbidden(
            "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
        ));
    }
    Ok(())
}

/// Whether the claim keeps one class and that class allows expansion.
async fn allows_resize(registry: &Registry, new: &Value, old: &Value) -> Result<bool> {
    let class = |v: &Value| {
        serde_json::from_value::<PersistentVolumeClaim>(v.clone())
            .map(|c| claim_class(&c).to_string())
            .unwrap_or_default()
    };
    let (now, was) = (class(new), class(old));
    if now.is_empty() || now != was {
        return Ok(false);
    }
    let r = ekube_api::resources::find("storage.k8s.io", "v1", "storageclasses")
        .ok_or_else(|| ApiError::internal("storageclasses are not in the resource table"))?;
    let Some(kv) = registry.store.get(&key(r, None, &now)).await? else {
        return Ok(false);
    };
    Ok(decode(r, &kv)
        .get("allowVolumeExpansion")
        .and_then(Value::as_bool)
        .unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::admission::tests::{attrs, registry};
    use crate::registry::encode;

    async fn store_class(reg: &Registry, name: &str, expands: Option<bool>) {
        let r = ekube_api::resources::find("storage.k8s.io", "v1", "storageclasses").unwrap();
        let mut class = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name}, "provisioner": "ekube.io/local-path"});
        if let Some(e) = expands {
            class["allowVolumeExpansion"] = json!(e);
        }
        reg.store
            .create(&key(r, None, name), encode(r, &class))
            .await
            .unwrap();
    }

    fn claim(class: &str, size: &str, phase: &str) -> Value {
        json!({"metadata": {"name": "web", "namespace": "team"},
            "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": size}}},
            "status": {"phase": phase}})
    }

    async fn resize(reg: &Registry, old: &Value, new: &Value) -> Result<()> {
        let r = ekube_api::resources::find("", "v1", "persistentvolumeclaims").unwrap();
        let mut a = attrs(r, Operation::Update);
        a.old_object = Some(old);
        validate(reg, &a, new).await
    }

    const REFUSED: &str = "persistentvolumeclaims \"web\" is forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize";

    #[tokio::test]
    async fn growing_needs_a_bound_claim_of_an_expanding_class() {
        let reg = registry().await;
        store_class(&reg, "fixed", None).await;
        store_class(&reg, "off", Some(false)).await;
        store_class(&reg, "grows", Some(true)).await;
        for class in ["fixed", "off", "missing", ""] {
            let err = resize(
                &reg,
                &claim(class, "1Gi", "Bound"),
                &claim(class, "2Gi", "Bound"),
            )
            .await
            .unwrap_err();
            assert_eq!((err.code, err.message.as_str()), (403, REFUSED), "{class}");
        }
        resize(
            &reg,
            &claim("grows", "1Gi", "Bound"),
            &claim("grows", "2Gi", "Bound"),
        )
        .await
        .unwrap();
        let err = resize(
            &reg,
            &claim("grows", "1Gi", "Pending"),
            &claim("grows", "2Gi", "Pending"),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.message,
            "persistentvolumeclaims \"web\" is forbidden: Only bound persistent volume claims can be expanded"
        );
        // The same size written differently, or less: not a resize.
        resize(
            &reg,
            &claim("fixed", "1Gi", "Bound"),
            &claim("fixed", "1073741824", "Bound"),
        )
        .await
        .unwrap();
        resize(
            &reg,
            &claim("fixed", "2Gi", "Bound"),
            &claim("fixed", "1Gi", "Bound"),
        )
        .await
        .unwrap();
    }
}
