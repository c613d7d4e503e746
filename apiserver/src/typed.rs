//! Decoding through the typed model: every object is checked against its `k8s-openapi` type
//! before it is stored.
//!
//! The round trip JSON → typed struct → JSON catches wrong types (with the field path), and
//! whatever does not survive it was a field the type does not have: an unknown field, which
//! `fieldValidation=Strict` rejects, `Warn` reports, and `Ignore` drops silently. What is stored
//! is the round-tripped form, so unknown fields never reach storage.

use k8s_openapi::api::{
    apps::v1 as apps, authentication::v1 as authn, autoscaling::v1 as autoscaling_v1,
    autoscaling::v2 as autoscaling_v2, batch::v1 as batch, certificates::v1 as certs,
    coordination::v1 as coord, core::v1 as core, discovery::v1 as disco, events::v1 as events,
    networking::v1 as net, policy::v1 as policy, rbac::v1 as rbac, storage::v1 as storage,
};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as aggregator;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A decoding failure with the path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub path: String,
    pub message: String,
}

/// Something to do with the concrete type of a kind, for [`with_kind`].
pub trait KindVisitor {
    type Output;
    fn visit<T: DeserializeOwned + Serialize + schemars::JsonSchema>(self) -> Self::Output;
}

/// Calls `visitor` with the `k8s-openapi` type registered for `group`/`version`/`kind`. Only
/// kinds served in several versions of one group look at the version.
pub fn with_kind<V: KindVisitor>(
    group: &str,
    version: &str,
    kind: &str,
    visitor: V,
) -> Option<V::Output> {
    if (group, kind) == ("autoscaling", "HorizontalPodAutoscaler") {
        return Some(match version {
            "v1" => visitor.visit::<autoscaling_v1::HorizontalPodAutoscaler>(),
            _ => visitor.visit::<autoscaling_v2::HorizontalPodAutoscaler>(),
        });
    }
    macro_rules! table {
        ($( ($g:literal, $k:literal) => $t:ty ),* $(,)?) => {
            match (group, kind) {
                $( ($g, $k) => Some(visitor.visit::<$t>()), )*
                _ => None,
            }
        };
    }
    table! {
        ("", "Namespace") => core::Namespace,
        ("", "Pod") => core::Pod,
        ("", "Service") => core::Service,
        ("", "Endpoints") => core::Endpoints,
        ("", "Node") => core::Node,
        ("", "ConfigMap") => core::ConfigMap,
        ("", "Secret") => core::Secret,
        ("", "LimitRange") => core::LimitRange,
        ("", "ResourceQuota") => core::ResourceQuota,
        ("", "Event") => core::Event,
        ("", "ServiceAccount") => core::ServiceAccount,
        ("", "PersistentVolume") => core::PersistentVolume,
        ("", "PersistentVolumeClaim") => core::PersistentVolumeClaim,
        ("", "ReplicationController") => core::ReplicationController,
        ("apps", "Deployment") => apps::Deployment,
        ("apps", "ReplicaSet") => apps::ReplicaSet,
        ("apps", "DaemonSet") => apps::DaemonSet,
        ("apps", "StatefulSet") => apps::StatefulSet,
        ("apps", "ControllerRevision") => apps::ControllerRevision,
        ("batch", "Job") => batch::Job,
        ("batch", "CronJob") => batch::CronJob,
        ("discovery.k8s.io", "EndpointSlice") => disco::EndpointSlice,
        ("coordination.k8s.io", "Lease") => coord::Lease,
        ("networking.k8s.io", "Ingress") => net::Ingress,
        ("networking.k8s.io", "IngressClass") => net::IngressClass,
        ("policy", "PodDisruptionBudget") => policy::PodDisruptionBudget,
        ("storage.k8s.io", "StorageClass") => storage::StorageClass,
        ("rbac.authorization.k8s.io", "Role") => rbac::Role,
        ("rbac.authorization.k8s.io", "RoleBinding") => rbac::RoleBinding,
        ("rbac.authorization.k8s.io", "ClusterRole") => rbac::ClusterRole,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => rbac::ClusterRoleBinding,
        ("certificates.k8s.io", "CertificateSigningRequest") => certs::CertificateSigningRequest,
        ("authentication.k8s.io", "TokenReview") => authn::TokenReview,
        ("events.k8s.io", "Event") => events::Event,
        ("apiregistration.k8s.io", "APIService") => aggregator::APIService,
    }
}

/// Round-trips `value` through the type registered for `group`/`version`/`kind`. Returns the
/// normalised object and the paths of fields the type does not know.
pub fn normalize(
    group: &str,
    version: &str,
    kind: &str,
    value: Value,
) -> Result<(Value, Vec<String>), DecodeError> {
    struct Roundtrip(Value);
    impl KindVisitor for Roundtrip {
        type Output = Result<(Value, Vec<String>), DecodeError>;
        fn visit<T: DeserializeOwned + Serialize + schemars::JsonSchema>(self) -> Self::Output {
            roundtrip::<T>(self.0)
        }
    }
    match with_kind(group, version, kind, Roundtrip(value.clone())) {
        Some(result) => result,
        None => Ok((value, Vec::new())),
    }
}

fn roundtrip<T: DeserializeOwned + Serialize>(
    value: Value,
) -> Result<(Value, Vec<String>), DecodeError> {
    let typed: T = serde_path_to_error::deserialize(&value).map_err(|e| DecodeError {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })?;
    let back = serde_json::to_value(&typed).map_err(|e| DecodeError {
        path: String::new(),
        message: e.to_string(),
    })?;
    let mut unknown = Vec::new();
    diff_unknown(&value, &back, String::new(), &mut unknown);
    Ok((back, unknown))
}

/// Collects the paths present (and non-null) in `input` but absent from `output`.
fn diff_unknown(input: &Value, output: &Value, path: String, out: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(w) => diff_unknown(v, w, child, out),
                    None if v.is_null() => {}
                    None => out.push(child),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                diff_unknown(v, w, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_reported_and_dropped() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i", "bogus": 1}], "alsoBogus": true},
            "status": null});
        let (out, unknown) = normalize("", "v1", "Pod", pod).unwrap();
        assert_eq!(unknown, ["spec.alsoBogus", "spec.containers[0].bogus"]);
        assert!(out["spec"]["containers"][0].get("bogus").is_none());
    }

    #[test]
    fn wrong_types_name_the_path() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": "eighty"}]}]}});
        let e = normalize("", "v1", "Pod", pod).unwrap_err();
        assert_eq!(e.path, "spec.containers[0].ports[0].containerPort");
    }

    #[test]
    fn quantities_accept_numbers() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": 1}}}]}});
        let (out, unknown) = normalize("", "v1", "Pod", pod).unwrap();
        assert!(unknown.is_empty());
        assert_eq!(
            out["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "1"
        );
    }
}
