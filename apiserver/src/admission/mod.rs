//! The admission chain: the plugins every write passes after authorization and before storage,
//! in upstream's order.
//!
//! Mutating plugins run first, on the object as the client sent it (after the registry set its
//! system metadata); then the registry defaults, validates and normalises it; then the
//! validating plugins see the final object. A refusal from any plugin ends the request before
//! anything is stored. The order, as `kube-apiserver`'s recommended plugin order:
//!
//! | plugin                       | mutating | validating |
//! |------------------------------|----------|------------|
//! | NamespaceLifecycle           | ✓        |            |
//! | LimitRanger                  | ✓        | ✓          |
//! | ServiceAccount               | ✓        |            |
//! | NodeRestriction              | ✓        |            |
//! | PodSecurity                  |          | ✓          |
//! | DefaultStorageClass          | ✓        |            |
//! | StorageObjectInUseProtection | ✓        |            |
//! | PersistentVolumeClaimResize  |          | ✓          |
//! | DefaultIngressClass          | ✓        |            |
//! | ResourceQuota                |          | ✓          |
//!
//! Deletes and connections (`exec`, `attach`, `portforward`) carry no object: they pass the
//! mutating phase's checks (NamespaceLifecycle's immortal namespaces, NodeRestriction) only.
//! Plugins read what they need (namespaces, LimitRanges, quotas, IngressClasses,
//! StorageClasses) from storage directly; each touches only the few keys of the request's
//! namespace (IngressClasses and StorageClasses are cluster-wide, and few), and only for the
//! kinds it cares about.

mod default_ingress_class;
mod default_storage_class;
mod limit_ranger;
mod namespace_lifecycle;
mod node_restriction;
mod pod_security;
mod pvc_resize;
mod resource_quota;
mod storage_protection;

use ekube_api::ResourceInfo;
use serde_json::Value;

use crate::auth::User;
use crate::errors::{ApiError, Result};
use crate::registry::{Registry, Warnings};

/// The verb of an admitted request, as upstream's `admission.Operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

/// What a plugin knows about a request, as upstream's `admission.Attributes`. The object being
/// written travels beside it (`&mut` to mutating plugins, `&` to validating ones) so a mutation
/// never has to copy it.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    pub operation: Operation,
    pub resource: &'a ResourceInfo,
    /// `status`, `binding`, `eviction`, `token`, …; `None` for the object itself.
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    /// The object's name (on create, the name the object carries once the registry set it).
    pub name: &'a str,
    /// The stored object, on update and delete.
    pub old_object: Option<&'a Value>,
    pub user: &'a User,
    pub dry_run: bool,
}

impl Attributes<'_> {
    /// Whether this request is about `kind` in the core group (`""`) or `group`.
    fn is(&self, group: &str, kind: &str) -> bool {
        self.resource.group == group && self.resource.kind == kind
    }

    /// Upstream's `admission.NewForbidden`: `<resource> "<name>" is forbidden: <why>`.
    fn forbidden(&self, why: &str) -> ApiError {
        let resource = match self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource.plural),
            None => self.resource.plural.to_string(),
        };
        ApiError::forbidden_object(&resource, self.name, why)
    }
}

/// The mutating phase. `object` is the object to be written (none on delete and connect).
pub async fn mutate(
    registry: &Registry,
    attrs: &Attributes<'_>,
    object: Option<&mut Value>,
) -> Result<()> {
    namespace_lifecycle::admit(registry, attrs).await?;
    let Some(object) = object else {
        return node_restriction::admit(registry, attrs, None).await;
    };
    limit_ranger::admit(registry, attrs, object).await?;
    if attrs.operation == Operation::Create
        && attrs.subresource.is_none()
        && attrs.is("", "Pod")
        && let Some(ns) = attrs.namespace
    {
        crate::serviceaccount::admission::admit(registry, ns, object, attrs.dry_run).await?;
    }
    node_restriction::admit(registry, attrs, Some(object)).await?;
    default_storage_class::admit(registry, attrs, object).await?;
    storage_protection::admit(attrs, object);
    default_ingress_class::admit(registry, attrs, object).await
}

/// The validating phase, on the object as it will be stored; warnings for the client (a
/// PodSecurity `warn` level) are added to `warnings`.
pub async fn validate(
    registry: &Registry,
    attrs: &Attributes<'_>,
    object: Option<&Value>,
    warnings: &mut Warnings,
) -> Result<()> {
    let Some(object) = object else {
        return Ok(());
    };
    limit_ranger::validate(registry, attrs, object).await?;
    // After the ServiceAccount and NodeRestriction decisions, before ResourceQuota, so a pod
    // the namespace's security level refuses is never charged to quota.
    pod_security::validate(registry, attrs, object, warnings).await?;
    pvc_resize::validate(registry, attrs, object).await?;
    resource_quota::validate(registry, attrs, object).await
}

/// The stored objects of core `plural` in `ns` with their revisions (LimitRanges, quotas).
async fn list_in(registry: &Registry, plural: &str, ns: &str) -> Result<Vec<(Value, u64)>> {
    let r = ekube_api::resources::find("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not in the resource table")))?;
    let page = registry
        .store
        .list(&crate::registry::collection_prefix(r, Some(ns)), None, 0)
        .await?;
    Ok(page
        .items
        .iter()
        .map(|kv| (crate::registry::decode(r, kv), kv.mod_revision))
        .collect())
}

/// The name of the newest object of the cluster-scoped resource `r` that `is_default`
/// accepts, as upstream's default-class plugins choose: newest `creationTimestamp` first,
/// equal times by name, so a new default takes over without the old one being unmarked first.
async fn newest_default(
    registry: &Registry,
    r: &ResourceInfo,
    is_default: impl Fn(&Value) -> bool,
) -> Result<Option<String>> {
    use ekube_api::time::Timestamp;
    let page = registry
        .store
        .list(&crate::registry::collection_prefix(r, None), None, 0)
        .await?;
    let mut defaults: Vec<(Option<Timestamp>, String)> = page
        .items
        .iter()
        .map(|kv| crate::registry::decode(r, kv))
        .filter(|obj| is_default(obj))
        .map(|obj| {
            let created = obj
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .and_then(ekube_api::time::parse);
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            (created, name)
        })
        .collect();
    defaults.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    if defaults.len() > 1 {
        tracing::debug!(
            kind = r.kind,
            count = defaults.len(),
            chosen = %defaults[0].1,
            "several defaults; choosing the newest"
        );
    }
    Ok(defaults.into_iter().next().map(|(_, name)| name))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, LazyLock};

    use serde_json::json;

    use super::*;
    use crate::alloc::Allocator;
    use crate::storage::sled::SledStorage;

    /// A registry over a temporary database, removed on drop.
    pub struct TestRegistry {
        registry: Registry,
        _dir: tempfile::TempDir,
    }

    impl std::ops::Deref for TestRegistry {
        type Target = Registry;
        fn deref(&self) -> &Registry {
            &self.registry
        }
    }

    /// A registry with the namespaces `default` and `team`.
    pub async fn registry() -> TestRegistry {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStorage::open(dir.path(), 64).unwrap());
        let alloc = Allocator::new("10.96.0.0/12".parse().unwrap(), (30000, 32767));
        let registry = Registry::new(store, alloc);
        let ns = ekube_api::resources::find("", "v1", "namespaces").unwrap();
        for name in ["default", "team"] {
            let obj = json!({"metadata": {"name": name}});
            registry
                .create(ns, None, obj, &Default::default())
                .await
                .unwrap();
        }
        TestRegistry {
            registry,
            _dir: dir,
        }
    }

    static NOBODY: LazyLock<User> = LazyLock::new(User::default);

    /// Attributes of `op` on `r` named `web` in namespace `team`, by an ordinary user.
    pub fn attrs(r: &'static ResourceInfo, op: Operation) -> Attributes<'static> {
        Attributes {
            operation: op,
            resource: r,
            subresource: None,
            namespace: r.namespaced.then_some("team"),
            name: "web",
            old_object: None,
            user: &NOBODY,
            dry_run: false,
        }
    }
}
