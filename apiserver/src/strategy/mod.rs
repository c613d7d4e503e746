//! What the apiserver knows of each kind, in one place per kind.
//!
//! Upstream keeps this in `pkg/registry/<group>/<resource>/strategy.go`: one strategy per
//! resource, which the generic registry calls to default, validate and prepare objects. Here
//! [`Strategy`] is implemented once per kind on its `k8s-openapi` type, and [`KINDS`] registers
//! each type once. The registry, the table printer and the typed round trip look a kind up here;
//! none of them branches on a kind's name.
//!
//! The rules themselves work on the JSON form (`serde_json::Value`) the registry holds between
//! decoding and storing, so a rule shared by several kinds (a pod template inside every workload)
//! is written once.

mod apps;
mod core;
mod groups;
mod service;

use std::marker::PhantomData;

use ekube_api::resources::ResourceInfo;
use ekube_api::selector::FieldSelector;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::errors::Cause;
use crate::table::ColumnsOf;
use crate::typed::{DecodeError, roundtrip};

use k8s_openapi::api::{
    apps::v1 as apps_v1, authentication::v1 as authn, autoscaling::v1 as autoscaling_v1,
    autoscaling::v2 as autoscaling_v2, batch::v1 as batch, certificates::v1 as certs,
    coordination::v1 as coord, core::v1 as core_v1, discovery::v1 as disco, events::v1 as events,
    networking::v1 as net, policy::v1 as policy, rbac::v1 as rbac, storage::v1 as storage,
};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as aggregator;

/// What validation needs besides the object.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The stored object, on update.
    pub old: Option<&'a Value>,
    /// The node port range (`--service-node-port-range`).
    pub node_ports: (u16, u16),
}

/// One kind's rules, implemented on its `k8s-openapi` type. Every method has the answer of a
/// kind with no rules of its own, so an implementation says only what is particular to it.
pub trait Strategy:
    k8s_openapi::Resource + DeserializeOwned + Serialize + schemars::JsonSchema + 'static
{
    /// Whether the registry allocates a cluster IP and node ports for objects of this kind
    /// (and frees them when the object goes).
    const ALLOCATES: bool = false;

    /// Whether DELETE answers with the deleted object rather than a `Status`: upstream's
    /// `ReturnDeletedObject` (`pkg/registry/core/<resource>/storage`).
    const RETURNS_DELETED_OBJECT: bool = false;

    /// Whether `metadata.generation` starts at 1 although the kind has no status subresource
    /// (which is what otherwise marks a kind whose spec changes are counted).
    const GENERATION: bool = false;

    /// Whether a create keeps the `status` it is given although the kind has a status
    /// subresource (a Node's kubelet reports it on create); otherwise status is the system's
    /// to write and a create drops it.
    const CREATES_WITH_STATUS: bool = false;

    /// The fields a field selector may name besides `metadata.name` and `metadata.namespace`
    /// (upstream's `SelectableFields` and field label conversion).
    const FIELD_LABELS: &'static [&'static str] = &[];

    /// The lists of this kind's own fields that merge by key rather than whole (their
    /// `patchMergeKey` and `listMapKeys`), by path from the object's root; the lists every
    /// kind shares (containers, conditions, ...) are [`crate::patch::list_strategy`]'s.
    const MERGE_KEYS: &'static [(&'static [&'static str], &'static [&'static str])] = &[];

    /// Whether a status write may also change labels and annotations (a Node's status writers,
    /// kubelets and the overlay agent, set them there); otherwise it changes only `status`.
    const STATUS_WRITES_METADATA: bool = false;

    /// How long a deletion waits for whoever runs the object to let it go (upstream's
    /// `CheckGracefulDelete`), given the client's `gracePeriodSeconds`; `None` for a kind that
    /// is deleted at once (or held only by finalizers).
    fn grace_period(_obj: &Value, _requested: Option<i64>) -> Option<i64> {
        None
    }

    /// Whether the kind's own finalizers (a Namespace's `spec.finalizers`, which its
    /// controller empties) still hold `obj` in storage once it is being deleted.
    fn finalizing(_obj: &Value) -> bool {
        false
    }

    /// Marks an object its own finalizers hold on deletion (a Namespace's `Terminating`).
    fn mark_finalizing(_obj: &mut Value) {}

    /// Fills in what the user left unset (upstream's `SetDefaults_<Kind>`), on create and update,
    /// before validation.
    fn set_defaults(_obj: &mut Value) {}

    /// The status an object has before any controller reported one, as upstream serves it: its
    /// status struct is never left out (a Service's is `{"loadBalancer": {}}`), fields that are
    /// not `omitempty` are there as zero values. Filled in where unset, after the defaults.
    fn initial_status() -> Option<Value> {
        None
    }

    /// Checks the whole object, on create and on update (upstream's `Validate` and the shared
    /// part of `ValidateUpdate`); the object's metadata is checked for every kind elsewhere.
    fn validate(_obj: &Value, _ctx: &Context<'_>, _causes: &mut Vec<Cause>) {}

    /// Checks what an update may not change (the rest of upstream's `ValidateUpdate`).
    fn validate_update(_old: &Value, _new: &Value, _causes: &mut Vec<Cause>) {}

    /// How `kubectl get` prints the kind; `None` prints name and age.
    fn columns() -> Option<ColumnsOf> {
        None
    }
}

/// A registered kind, as the generic code holds it: [`Strategy`] without its type.
pub trait Kind: Sync {
    fn group(&self) -> &'static str;
    fn version(&self) -> &'static str;
    fn kind(&self) -> &'static str;
    fn allocates(&self) -> bool;
    fn returns_deleted_object(&self) -> bool;
    fn generation(&self) -> bool;
    fn creates_with_status(&self) -> bool;
    fn field_labels(&self) -> &'static [&'static str];
    fn merge_keys(&self) -> &'static [(&'static [&'static str], &'static [&'static str])];
    /// The keys the list at `path` of the kind's objects merges by, when the kind names them.
    fn merge_keys_at(&self, path: &[String]) -> Option<&'static [&'static str]> {
        self.merge_keys()
            .iter()
            .find(|(at, _)| at.len() == path.len() && at.iter().zip(path).all(|(a, p)| a == p))
            .map(|(_, keys)| *keys)
    }
    fn status_writes_metadata(&self) -> bool;
    fn grace_period(&self, obj: &Value, requested: Option<i64>) -> Option<i64>;
    fn finalizing(&self, obj: &Value) -> bool;
    fn mark_finalizing(&self, obj: &mut Value);
    fn set_defaults(&self, obj: &mut Value);
    fn initial_status(&self) -> Option<Value>;
    fn validate(&self, obj: &Value, ctx: &Context<'_>, causes: &mut Vec<Cause>);
    fn validate_update(&self, old: &Value, new: &Value, causes: &mut Vec<Cause>);
    fn columns(&self) -> Option<ColumnsOf>;
    /// Decodes `value` as the kind's type and encodes it again; returns the result and the
    /// paths of fields the type does not have.
    fn roundtrip(&self, value: Value) -> Result<(Value, Vec<String>), DecodeError>;
}

/// The [`Kind`] of the type `T`.
struct Of<T>(PhantomData<fn() -> T>);

impl<T: Strategy> Kind for Of<T> {
    fn group(&self) -> &'static str {
        T::GROUP
    }
    fn version(&self) -> &'static str {
        T::VERSION
    }
    fn kind(&self) -> &'static str {
        T::KIND
    }
    fn allocates(&self) -> bool {
        T::ALLOCATES
    }
    fn returns_deleted_object(&self) -> bool {
        T::RETURNS_DELETED_OBJECT
    }
    fn generation(&self) -> bool {
        T::GENERATION
    }
    fn creates_with_status(&self) -> bool {
        T::CREATES_WITH_STATUS
    }
    fn field_labels(&self) -> &'static [&'static str] {
        T::FIELD_LABELS
    }
    fn merge_keys(&self) -> &'static [(&'static [&'static str], &'static [&'static str])] {
        T::MERGE_KEYS
    }
    fn status_writes_metadata(&self) -> bool {
        T::STATUS_WRITES_METADATA
    }
    fn grace_period(&self, obj: &Value, requested: Option<i64>) -> Option<i64> {
        T::grace_period(obj, requested)
    }
    fn finalizing(&self, obj: &Value) -> bool {
        T::finalizing(obj)
    }
    fn mark_finalizing(&self, obj: &mut Value) {
        T::mark_finalizing(obj)
    }
    fn set_defaults(&self, obj: &mut Value) {
        T::set_defaults(obj)
    }
    fn initial_status(&self) -> Option<Value> {
        T::initial_status()
    }
    fn validate(&self, obj: &Value, ctx: &Context<'_>, causes: &mut Vec<Cause>) {
        T::validate(obj, ctx, causes)
    }
    fn validate_update(&self, old: &Value, new: &Value, causes: &mut Vec<Cause>) {
        T::validate_update(old, new, causes)
    }
    fn columns(&self) -> Option<ColumnsOf> {
        T::columns()
    }
    fn roundtrip(&self, value: Value) -> Result<(Value, Vec<String>), DecodeError> {
        roundtrip::<T>(value)
    }
}

/// Something to do with the concrete type of a kind, for [`with_kind`].
pub trait KindVisitor {
    type Output;
    fn visit<T: DeserializeOwned + Serialize + schemars::JsonSchema>(self) -> Self::Output;
}

macro_rules! register {
    ($($t:ty),* $(,)?) => {
        /// Every stored kind, by its `k8s-openapi` type. A kind served in two versions of one
        /// group (HorizontalPodAutoscaler) is listed storage version first.
        pub static KINDS: &[&dyn Kind] = &[$(&Of::<$t>(PhantomData)),*];

        /// Calls `visitor` with the type registered for `group`/`version`/`kind` (the storage
        /// version's when `version` is not one of the kind's).
        pub fn with_kind<V: KindVisitor>(
            group: &str,
            version: &str,
            kind: &str,
            visitor: V,
        ) -> Option<V::Output> {
            let found = find_kind(group, version, kind)?;
            $(
                if (found.group(), found.version(), found.kind())
                    == (<$t as k8s_openapi::Resource>::GROUP,
                        <$t as k8s_openapi::Resource>::VERSION,
                        <$t as k8s_openapi::Resource>::KIND)
                {
                    return Some(visitor.visit::<$t>());
                }
            )*
            None
        }
    };
}

register! {
    core_v1::Namespace,
    core_v1::Pod,
    core_v1::Service,
    core_v1::Endpoints,
    core_v1::Node,
    core_v1::ConfigMap,
    core_v1::Secret,
    core_v1::LimitRange,
    core_v1::ResourceQuota,
    core_v1::Event,
    core_v1::ServiceAccount,
    core_v1::PersistentVolume,
    core_v1::PersistentVolumeClaim,
    core_v1::ReplicationController,
    apps_v1::Deployment,
    apps_v1::ReplicaSet,
    apps_v1::DaemonSet,
    apps_v1::StatefulSet,
    apps_v1::ControllerRevision,
    batch::Job,
    batch::CronJob,
    disco::EndpointSlice,
    coord::Lease,
    net::Ingress,
    net::IngressClass,
    policy::PodDisruptionBudget,
    storage::StorageClass,
    rbac::Role,
    rbac::RoleBinding,
    rbac::ClusterRole,
    rbac::ClusterRoleBinding,
    certs::CertificateSigningRequest,
    authn::TokenReview,
    events::Event,
    autoscaling_v2::HorizontalPodAutoscaler,
    autoscaling_v1::HorizontalPodAutoscaler,
    aggregator::APIService,
}

/// The registered kind `group`/`kind`, in `version` when it is served in several.
pub(crate) fn find_kind(group: &str, version: &str, kind: &str) -> Option<&'static dyn Kind> {
    let mut same = KINDS
        .iter()
        .copied()
        .filter(|k| k.group() == group && k.kind() == kind);
    let first = same.next()?;
    Some(
        std::iter::once(first)
            .chain(same)
            .find(|k| k.version() == version)
            .unwrap_or(first),
    )
}

/// The strategy of the resource `r`; `None` for a kind with no type (a custom resource).
pub fn of(r: &ResourceInfo) -> Option<&'static dyn Kind> {
    find_kind(r.group, r.version, r.kind)
}

/// The strategy of `group`/`kind` in its storage version.
#[cfg(test)]
pub fn of_kind(group: &str, kind: &str) -> Option<&'static dyn Kind> {
    find_kind(group, "", kind)
}

/// Checks that `fields` names only fields `kind` can be selected by. The message is upstream's:
/// a kind with field labels of its own answers as its conversion function does, the others
/// as the generic one.
pub fn selectable(kind: &dyn Kind, fields: &FieldSelector) -> Result<(), String> {
    const META: [&str; 2] = ["metadata.name", "metadata.namespace"];
    let own = kind.field_labels();
    let unknown = fields
        .requirements
        .iter()
        .map(|r| r.key.as_str())
        .find(|key| !META.contains(key) && !own.contains(key));
    match unknown {
        None => Ok(()),
        Some(key) if own.is_empty() => Err(format!(
            "\"{key}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        )),
        Some(key) => Err(format!("field label not supported: {key}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kind served in several versions prints with columns in each, not only in the
    /// version a printer was written for (a v1 HorizontalPodAutoscaler prints as the v2 one).
    #[test]
    fn every_version_of_a_kind_has_its_columns() {
        for k in KINDS {
            let versions = KINDS
                .iter()
                .filter(|o| o.group() == k.group() && o.kind() == k.kind());
            for other in versions {
                assert_eq!(
                    k.columns().is_some(),
                    other.columns().is_some(),
                    "{} in {} and {}",
                    k.kind(),
                    k.version(),
                    other.version()
                );
            }
        }
    }

    #[test]
    fn every_kind_is_registered_once() {
        let mut seen = std::collections::HashSet::new();
        for k in KINDS {
            assert!(
                seen.insert((k.group(), k.version(), k.kind())),
                "{}/{} {} is registered twice",
                k.group(),
                k.version(),
                k.kind()
            );
        }
    }

    #[test]
    fn every_stored_resource_has_a_strategy_of_its_version() {
        for r in ekube_api::resources::RESOURCES.iter().filter(|r| !r.review) {
            let Some(k) = of(r) else {
                panic!("{} {} has no strategy", r.group, r.kind);
            };
            assert_eq!(
                (k.group(), k.version(), k.kind()),
                (r.group, r.version, r.kind)
            );
        }
    }

    #[test]
    fn field_selectors_name_only_what_the_kind_offers() {
        let check = |group: &str, kind: &str, selector: &str| {
            selectable(
                of_kind(group, kind).unwrap(),
                &FieldSelector::parse(selector).unwrap(),
            )
        };
        assert_eq!(
            check("", "Pod", "spec.nodeName=n1,status.phase!=Running"),
            Ok(())
        );
        assert_eq!(
            check("", "ConfigMap", "metadata.name=a,metadata.namespace=b"),
            Ok(())
        );
        assert_eq!(
            check("", "Pod", "status.hostIP=10.0.0.1"),
            Err("field label not supported: status.hostIP".to_string())
        );
        assert_eq!(
            check("networking.k8s.io", "Ingress", "foo.bar=baz"),
            Err(r#""foo.bar" is not a known field selector: only "metadata.name", "metadata.namespace""#.to_string())
        );
        assert_eq!(check("", "Secret", "type=Opaque"), Ok(()));
        assert!(check("", "ConfigMap", "type=Opaque").is_err());
    }

    #[test]
    fn pods_on_a_node_go_gracefully_and_other_objects_at_once() {
        use serde_json::json;
        let pod = of_kind("", "Pod").unwrap();
        let on_node = json!({"spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 5}});
        assert_eq!(pod.grace_period(&on_node, None), Some(5));
        assert_eq!(pod.grace_period(&on_node, Some(0)), Some(0));
        assert_eq!(pod.grace_period(&json!({"spec": {}}), Some(10)), Some(0));
        let done = json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Succeeded"}});
        assert_eq!(pod.grace_period(&done, None), Some(0));
        let config_map = of_kind("", "ConfigMap").unwrap();
        assert_eq!(config_map.grace_period(&on_node, None), None);
        let namespace = of_kind("", "Namespace").unwrap();
        assert!(namespace.finalizing(&json!({"spec": {"finalizers": ["kubernetes"]}})));
        assert!(!namespace.finalizing(&json!({"spec": {"finalizers": []}})));
        assert!(!config_map.finalizing(&json!({"spec": {"finalizers": ["kubernetes"]}})));
    }

    #[test]
    fn a_kind_in_two_versions_is_found_in_each_and_defaults_to_its_storage_version() {
        let v1 = find_kind("autoscaling", "v1", "HorizontalPodAutoscaler").unwrap();
        assert_eq!(v1.version(), "v1");
        let v2 = of_kind("autoscaling", "HorizontalPodAutoscaler").unwrap();
        assert_eq!(v2.version(), "v2");
    }
}
