//! DefaultStorageClass: a PersistentVolumeClaim created without a class gets the cluster's
//! default one.
//!
//! As upstream's plugin: on create only, and only when the claim names no class at all —
//! neither `spec.storageClassName` (an explicit `""` asks for no class and is kept) nor the
//! legacy `volume.beta.kubernetes.io/storage-class` annotation. The default is the StorageClass
//! annotated `storageclass.kubernetes.io/is-default-class: "true"`; when several are, the most
//! recently created wins (ties go to the first name). No default, no change: the claim waits
//! without a class until one is marked default and the PV controller assigns it.

use ekube_api::storage::{BETA_CLASS, is_default};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{Value, json};

use super::{Attributes, Operation};
use crate::errors::{ApiError, Result};
use crate::registry::Registry;

pub(super) async fn admit(
    registry: &Registry,
    attrs: &Attributes<'_>,
    object: &mut Value,
) -> Result<()> {
    if attrs.operation != Operation::Create
        || attrs.subresource.is_some()
        || !attrs.is("", "PersistentVolumeClaim")
    {
        return Ok(());
    }
    let has_class = object
        .pointer("/spec/storageClassName")
        .is_some_and(|c| !c.is_null())
        || object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(BETA_CLASS))
            .is_some();
    if has_class {
        return Ok(());
    }
    if let Some(class) = default_class(registry).await? {
        crate::defaults::ensure(object, "spec")["storageClassName"] = json!(class);
    }
    Ok(())
}

/// The name of the newest StorageClass marked as the default, if any.
async fn default_class(registry: &Registry) -> Result<Option<String>> {
    let r = ekube_api::resources::find("storage.k8s.io", "v1", "storageclasses")
        .ok_or_else(|| ApiError::internal("storageclasses are not in the resource table"))?;
    super::newest_default(registry, r, |class| {
        serde_json::from_value::<StorageClass>(class.clone()).is_ok_and(|c| is_default(&c))
    })
    .await
}

#[cfg(test)]
mod tests {
    use ekube_api::storage::DEFAULT_CLASS;
    use serde_json::json;

    use super::*;
    use crate::admission::tests::{attrs, registry};
    use crate::registry::{encode, key};

    fn classes() -> &'static ekube_api::ResourceInfo {
        ekube_api::resources::find("storage.k8s.io", "v1", "storageclasses").unwrap()
    }

    fn claims() -> &'static ekube_api::ResourceInfo {
        ekube_api::resources::find("", "v1", "persistentvolumeclaims").unwrap()
    }

    /// Stores a StorageClass as created at `created`, marked default or not.
    async fn store_class(reg: &Registry, name: &str, created: &str, default: Option<&str>) {
        let mut class = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name, "creationTimestamp": created},
            "provisioner": "ekube.io/local-path"});
        if let Some(value) = default {
            class["metadata"]["annotations"] = json!({DEFAULT_CLASS: value});
        }
        reg.store
            .create(&key(classes(), None, name), encode(classes(), &class))
            .await
            .unwrap();
    }

    async fn class_given(reg: &Registry, mut claim: Value, op: Operation) -> Value {
        admit(reg, &attrs(claims(), op), &mut claim).await.unwrap();
        claim
            .pointer("/spec/storageClassName")
            .cloned()
            .unwrap_or(Value::Null)
    }

    #[tokio::test]
    async fn the_newest_default_class_is_set_on_create() {
        let reg = registry().await;
        let bare =
            json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}});
        assert_eq!(
            class_given(&reg, bare.clone(), Operation::Create).await,
            Value::Null
        );
        store_class(&reg, "plain", "2026-01-01T00:00:00Z", None).await;
        store_class(&reg, "off", "2026-01-02T00:00:00Z", Some("false")).await;
        assert_eq!(
            class_given(&reg, bare.clone(), Operation::Create).await,
            Value::Null
        );
        store_class(&reg, "old", "2026-01-01T00:00:00Z", Some("true")).await;
        assert_eq!(
            class_given(&reg, bare.clone(), Operation::Create).await,
            "old"
        );
        store_class(&reg, "new", "2026-03-01T00:00:00Z", Some("true")).await;
        store_class(&reg, "also-new", "2026-03-01T00:00:00Z", Some("true")).await;
        assert_eq!(
            class_given(&reg, bare.clone(), Operation::Create).await,
            "also-new"
        );
        // An explicit null is no class; a spec-less claim gets one too.
        let null = json!({"metadata": {"name": "data"}, "spec": {"storageClassName": null}});
        assert_eq!(class_given(&reg, null, Operation::Create).await, "also-new");
        let no_spec = json!({"metadata": {"name": "data"}});
        assert_eq!(
            class_given(&reg, no_spec, Operation::Create).await,
            "also-new"
        );

        // A class already chosen, even "", or the legacy annotation: left alone.
        let empty = json!({"metadata": {"name": "data"}, "spec": {"storageClassName": ""}});
        assert_eq!(class_given(&reg, empty, Operation::Create).await, "");
        let chosen = json!({"metadata": {"name": "data"}, "spec": {"storageClassName": "fast"}});
        assert_eq!(class_given(&reg, chosen, Operation::Create).await, "fast");
        let legacy = json!({"metadata": {"name": "data",
            "annotations": {BETA_CLASS: "slow"}}, "spec": {}});
        assert_eq!(
            class_given(&reg, legacy, Operation::Create).await,
            Value::Null
        );
        // Updates are not defaulted.
        assert_eq!(
            class_given(&reg, bare, Operation::Update).await,
            Value::Null
        );
    }
}
