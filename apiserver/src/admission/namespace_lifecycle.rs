//! NamespaceLifecycle: nothing is created in a namespace that does not exist or is being
//! deleted, and the namespaces the system lives in are never deleted.

use serde_json::Value;

use super::{Attributes, Operation};
use crate::errors::{ApiError, Result};
use crate::registry::{Registry, decode, key};

/// Upstream's immortal namespaces (`default`, `kube-system`, `kube-public`) and
/// `kube-node-lease`: upstream lets that one go because a controller of its apiserver recreates
/// it at once; ekube has no such controller, and kubelets without it lose their Leases.
const IMMORTAL: &[&str] = crate::bootstrap::NAMESPACES;

pub(super) async fn admit(registry: &Registry, attrs: &Attributes<'_>) -> Result<()> {
    if attrs.operation == Operation::Delete
        && attrs.subresource.is_none()
        && attrs.is("", "Namespace")
        && IMMORTAL.contains(&attrs.name)
    {
        return Err(attrs.forbidden("this namespace may not be deleted"));
    }
    // Subresource creates (evictions, bindings, token requests) act on objects already in the
    // namespace, which keep running while it terminates: a pod still needs its token renewed.
    match (attrs.operation, attrs.namespace, attrs.subresource) {
        (Operation::Create, Some(ns), None) if attrs.resource.namespaced => {
            must_be_active(registry, attrs, ns).await
        }
        _ => Ok(()),
    }
}

async fn must_be_active(registry: &Registry, attrs: &Attributes<'_>, ns: &str) -> Result<()> {
    let nsr = ekube_api::resources::find("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces are not in the resource table"))?;
    let Some(kv) = registry.store.get(&key(nsr, None, ns)).await? else {
        return Err(ApiError::not_found("", "namespaces", ns));
    };
    let namespace = decode(nsr, &kv);
    if namespace
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
        || namespace.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating")
    {
        return Err(attrs.forbidden(&format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::tests::{attrs, registry};
    use serde_json::json;

    #[tokio::test]
    async fn creates_need_an_active_namespace() {
        let reg = registry().await;
        let ns = ekube_api::resources::find("", "v1", "namespaces").unwrap();
        let opts = Default::default();
        reg.create(ns, None, json!({"metadata": {"name": "live"}}), &opts)
            .await
            .unwrap();
        reg.create(ns, None, json!({"metadata": {"name": "dying"}}), &opts)
            .await
            .unwrap();
        reg.delete(ns, None, "dying", &Default::default())
            .await
            .unwrap();

        let pods = ekube_api::resources::find("", "v1", "pods").unwrap();
        let mut a = attrs(pods, Operation::Create);
        a.namespace = Some("live");
        admit(&reg, &a).await.unwrap();
        a.namespace = Some("dying");
        let err = admit(&reg, &a).await.unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "pods \"web\" is forbidden: unable to create new content in namespace dying because it is being terminated"
        );
        a.namespace = Some("missing");
        assert_eq!(admit(&reg, &a).await.unwrap_err().code, 404);
    }

    #[tokio::test]
    async fn immortal_namespaces_are_not_deleted() {
        let reg = registry().await;
        let ns = ekube_api::resources::find("", "v1", "namespaces").unwrap();
        let mut a = attrs(ns, Operation::Delete);
        for name in IMMORTAL {
            a.name = name;
            let err = admit(&reg, &a).await.unwrap_err();
            assert_eq!(
                err.message,
                format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted")
            );
        }
        a.name = "team";
        admit(&reg, &a).await.unwrap();
    }
}
