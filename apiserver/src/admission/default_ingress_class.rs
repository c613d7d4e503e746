//! DefaultIngressClass: an Ingress created without a class gets the cluster's default one.
//!
//! As upstream's plugin: on create only, and only when neither `spec.ingressClassName` (even
//! empty) nor the legacy `kubernetes.io/ingress.class` annotation is set. The default is the
//! IngressClass annotated `ingressclass.kubernetes.io/is-default-class: "true"`; when several
//! are, the most recently created wins (ties go to the first name), so adding a new default
//! takes over without removing the old one first. No default, no change.

use serde_json::{Value, json};

use super::{Attributes, Operation};
use crate::errors::{ApiError, Result};
use crate::registry::Registry;
use crate::validation::INGRESS_CLASS_ANNOTATION;

/// The annotation that makes an IngressClass the default.
pub const IS_DEFAULT_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";

pub(super) async fn admit(
    registry: &Registry,
    attrs: &Attributes<'_>,
    object: &mut Value,
) -> Result<()> {
    if attrs.operation != Operation::Create
        || attrs.subresource.is_some()
        || !attrs.is("networking.k8s.io", "Ingress")
    {
        return Ok(());
    }
    if object
        .pointer("/spec/ingressClassName")
        .is_some_and(|c| !c.is_null())
        || object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(INGRESS_CLASS_ANNOTATION))
            .is_some()
    {
        return Ok(());
    }
    if let Some(class) = default_class(registry).await? {
        crate::defaults::ensure(object, "spec")["ingressClassName"] = json!(class);
    }
    Ok(())
}

/// The name of the newest IngressClass marked as the default, if any.
async fn default_class(registry: &Registry) -> Result<Option<String>> {
    let r = ekube_api::resources::find("networking.k8s.io", "v1", "ingressclasses")
        .ok_or_else(|| ApiError::internal("ingressclasses are not in the resource table"))?;
    super::newest_default(registry, r, |class| {
        class
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(IS_DEFAULT_CLASS))
            .and_then(Value::as_str)
            == Some("true")
    })
    .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::admission::tests::{attrs, registry};
    use crate::registry::{encode, key};

    fn classes() -> &'static ekube_api::ResourceInfo {
        ekube_api::resources::find("networking.k8s.io", "v1", "ingressclasses").unwrap()
    }

    fn ingresses() -> &'static ekube_api::ResourceInfo {
        ekube_api::resources::find("networking.k8s.io", "v1", "ingresses").unwrap()
    }

    /// Stores an IngressClass as created at `created`, marked default or not.
    async fn store_class(reg: &Registry, name: &str, created: &str, default: Option<&str>) {
        let mut class = json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"controller": "ekube.io/ingress"}});
        if let Some(value) = default {
            class["metadata"]["annotations"] = json!({IS_DEFAULT_CLASS: value});
        }
        reg.store
            .create(&key(classes(), None, name), encode(classes(), &class))
            .await
            .unwrap();
    }

    async fn class_given(reg: &Registry, mut ingress: Value, op: Operation) -> Value {
        admit(reg, &attrs(ingresses(), op), &mut ingress)
            .await
            .unwrap();
        ingress
            .pointer("/spec/ingressClassName")
            .cloned()
            .unwrap_or(Value::Null)
    }

    #[tokio::test]
    async fn the_newest_default_class_is_set_on_create() {
        let reg = registry().await;
        let bare = json!({"metadata": {"name": "web"}, "spec": {}});
        // No classes, or none marked "true": nothing is set.
        assert_eq!(
            class_given(&reg, bare.clone(), Operation::Create).await,
            Value::Null
        );
        store_class(&reg, "plain", "2026-01-01T00:00:00Z", None).await;
        store_class(&reg, "off", "2026-01-02T00:00:00Z", Some("false")).await;
        store_class(&reg, "empty", "2026-01-02T00:00:00Z", Some("")).await;
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
        assert_eq!(
            class_given(&reg, bare.clone(), Operation::Create).await,
            "new"
        );
        // Created in the same second: the first name.
        store_class(&reg, "also-new", "2026-03-01T00:00:00Z", Some("true")).await;
        assert_eq!(
            class_given(&reg, bare.clone(), Operation::Create).await,
            "also-new"
        );

        // A class already chosen, even empty, or the legacy annotation: left alone.
        let chosen = json!({"metadata": {"name": "web"}, "spec": {"ingressClassName": "mine"}});
        assert_eq!(class_given(&reg, chosen, Operation::Create).await, "mine");
        let empty = json!({"metadata": {"name": "web"}, "spec": {"ingressClassName": ""}});
        assert_eq!(class_given(&reg, empty, Operation::Create).await, "");
        let legacy = json!({"metadata": {"name": "web",
            "annotations": {INGRESS_CLASS_ANNOTATION: "nginx"}}, "spec": {}});
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
