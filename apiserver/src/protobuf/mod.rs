//! Decoding of Kubernetes protobuf request bodies into the JSON objects the apiserver works with.
//!
//! `kubectl` and other client-go typed clients send built-in objects as
//! `application/vnd.kubernetes.protobuf`: the four magic bytes `k8s\0`, then a `runtime.Unknown`
//! envelope (`typeMeta` {apiVersion, kind}, `raw`, `contentEncoding`, `contentType`) whose `raw`
//! bytes are the object encoded per the `generated.proto` schemas of k8s.io/api. The rest of the
//! server speaks JSON only, so [`decode`] turns such a body into the `serde_json::Value` that the
//! same client would have sent as JSON.
//!
//! Nothing here knows a field number or a JSON name: the envelope and the object are read by the
//! prost-generated messages of `k8s-pb`, converted field by field ([`convert`]) into the
//! `k8s-openapi` type of the same kind, and serialized by its generated serde code. The
//! conversions live in [`types`], one file per API group.
//!
//! Covered kinds (see [`KINDS`]): core/v1 ConfigMap, Secret, Namespace, ServiceAccount, Service,
//! Pod, ResourceQuota; apps/v1 Deployment; batch/v1 Job, CronJob; policy/v1 Eviction,
//! PodDisruptionBudget; certificates.k8s.io/v1 CertificateSigningRequest; authentication.k8s.io/v1
//! TokenRequest, SelfSubjectReview; authorization.k8s.io/v1 SubjectAccessReview,
//! LocalSubjectAccessReview, SelfSubjectAccessReview, SelfSubjectRulesReview;
//! rbac.authorization.k8s.io/v1 Role, ClusterRole, RoleBinding, ClusterRoleBinding;
//! autoscaling/v1 Scale; autoscaling/v1 and v2 HorizontalPodAutoscaler; scheduling.k8s.io/v1
//! PriorityClass; networking.k8s.io/v1 Ingress; coordination.k8s.io/v1 Lease; and DeleteOptions
//! under any group version. Every field of these kinds that `k8s-pb`'s protobuf schemas carry is
//! read; the few newer fields that only the JSON schema has yet are marked `none` in [`types`].
//! Any other kind fails with [`DecodeError::UnsupportedKind`], which tells the client to send JSON
//! instead.

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        authentication::v1::{SelfSubjectReview, TokenRequest},
        authorization::v1::{
            LocalSubjectAccessReview, SelfSubjectAccessReview, SelfSubjectRulesReview,
            SubjectAccessReview,
        },
        autoscaling::{self, v1::Scale},
        batch::v1::{CronJob, Job},
        certificates::v1::CertificateSigningRequest,
        coordination::v1::Lease,
        core::v1::{ConfigMap, Namespace, Pod, ResourceQuota, Secret, Service, ServiceAccount},
        networking::v1::Ingress,
        policy::v1::{Eviction, PodDisruptionBudget},
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
        scheduling::v1::PriorityClass,
    },
    apimachinery::pkg::apis::meta::v1::DeleteOptions,
};
use prost::Message as _;
use serde_json::Value;

use self::convert::FromPb;

mod convert;
mod types;

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Prefix of every Kubernetes protobuf body.
const MAGIC: &[u8; 4] = b"k8s\0";

/// Why a protobuf body could not be turned into JSON.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("protobuf body does not start with the Kubernetes magic prefix \"k8s\\0\"")]
    BadMagic,
    /// The bytes are not the message they claim to be; prost names the message and field.
    #[error("malformed protobuf: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// The message is well formed but holds a value JSON cannot carry.
    #[error("invalid protobuf value: {0}")]
    Invalid(String),
    #[error(
        "unsupported kind {kind:?} (apiVersion {api_version:?}) in protobuf; send it as application/json instead"
    )]
    UnsupportedKind { api_version: String, kind: String },
    #[error(
        "unsupported protobuf content encoding {0:?}; send the object as application/json instead"
    )]
    UnsupportedEncoding(String),
}

type Result<T, E = DecodeError> = std::result::Result<T, E>;

/// Whether a `Content-Type` header value names the Kubernetes protobuf media type.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(CONTENT_TYPE))
}

/// Whether [`decode`] knows the schema of `kind` in `api_version`.
pub fn supports(api_version: &str, kind: &str) -> bool {
    decoder_for(api_version, kind).is_some()
}

/// Decodes a full Kubernetes protobuf request body (magic prefix included) into the JSON object
/// the client would have sent as `application/json`, with `apiVersion` and `kind` taken from the
/// envelope's type meta.
pub fn decode(body: &[u8]) -> Result<Value> {
    let envelope = body.strip_prefix(MAGIC).ok_or(DecodeError::BadMagic)?;
    let envelope = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(envelope)?;
    let type_meta = envelope.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    let content_encoding = envelope.content_encoding.unwrap_or_default();
    if !content_encoding.is_empty() {
        return Err(DecodeError::UnsupportedEncoding(content_encoding));
    }
    let Some(decode_kind) = decoder_for(&api_version, &kind) else {
        return Err(DecodeError::UnsupportedKind { api_version, kind });
    };
    let mut object = decode_kind(&envelope.raw.unwrap_or_default())?;
    if let Value::Object(fields) = &mut object {
        fields.insert("apiVersion".to_owned(), Value::String(api_version));
        fields.insert("kind".to_owned(), Value::String(kind));
    }
    Ok(object)
}

/// Reads one object's message into its `k8s-openapi` type, then writes that as JSON.
type DecodeKind = fn(&[u8]) -> Result<Value>;

fn decode_as<T, P>(raw: &[u8]) -> Result<Value>
where
    T: FromPb<P> + serde::Serialize,
    P: prost::Message + Default,
{
    let object = T::from_pb(P::decode(raw)?)?;
    serde_json::to_value(object).map_err(|e| DecodeError::Invalid(e.to_string()))
}

/// The top-level kinds [`decode`] accepts, by apiVersion and kind.
static KINDS: &[(&str, &str, DecodeKind)] = {
    use k8s_pb::api as pb;
    &[
        (
            "v1",
            "ConfigMap",
            decode_as::<ConfigMap, pb::core::v1::ConfigMap>,
        ),
        ("v1", "Secret", decode_as::<Secret, pb::core::v1::Secret>),
        (
            "v1",
            "Namespace",
            decode_as::<Namespace, pb::core::v1::Namespace>,
        ),
        (
            "v1",
            "ServiceAccount",
            decode_as::<ServiceAccount, pb::core::v1::ServiceAccount>,
        ),
        ("v1", "Service", decode_as::<Service, pb::core::v1::Service>),
        ("v1", "Pod", decode_as::<Pod, pb::core::v1::Pod>),
        (
            "v1",
            "ResourceQuota",
            decode_as::<ResourceQuota, pb::core::v1::ResourceQuota>,
        ),
        (
            "apps/v1",
            "Deployment",
            decode_as::<Deployment, pb::apps::v1::Deployment>,
        ),
        ("batch/v1", "Job", decode_as::<Job, pb::batch::v1::Job>),
        (
            "batch/v1",
            "CronJob",
            decode_as::<CronJob, pb::batch::v1::CronJob>,
        ),
        (
            "policy/v1",
            "Eviction",
            decode_as::<Eviction, pb::policy::v1::Eviction>,
        ),
        (
            "policy/v1",
            "PodDisruptionBudget",
            decode_as::<PodDisruptionBudget, pb::policy::v1::PodDisruptionBudget>,
        ),
        (
            "certificates.k8s.io/v1",
            "CertificateSigningRequest",
            decode_as::<CertificateSigningRequest, pb::certificates::v1::CertificateSigningRequest>,
        ),
        (
            "authentication.k8s.io/v1",
            "TokenRequest",
            decode_as::<TokenRequest, pb::authentication::v1::TokenRequest>,
        ),
        (
            "authentication.k8s.io/v1",
            "SelfSubjectReview",
            decode_as::<SelfSubjectReview, pb::authentication::v1::SelfSubjectReview>,
        ),
        (
            "authorization.k8s.io/v1",
            "SubjectAccessReview",
            decode_as::<SubjectAccessReview, pb::authorization::v1::SubjectAccessReview>,
        ),
        (
            "authorization.k8s.io/v1",
            "LocalSubjectAccessReview",
            decode_as::<LocalSubjectAccessReview, pb::authorization::v1::LocalSubjectAccessReview>,
        ),
        (
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            decode_as::<SelfSubjectAccessReview, pb::authorization::v1::SelfSubjectAccessReview>,
        ),
        (
            "authorization.k8s.io/v1",
            "SelfSubjectRulesReview",
            decode_as::<SelfSubjectRulesReview, pb::authorization::v1::SelfSubjectRulesReview>,
        ),
        (
            "rbac.authorization.k8s.io/v1",
            "Role",
            decode_as::<Role, pb::rbac::v1::Role>,
        ),
        (
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            decode_as::<ClusterRole, pb::rbac::v1::ClusterRole>,
        ),
        (
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            decode_as::<RoleBinding, pb::rbac::v1::RoleBinding>,
        ),
        (
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            decode_as::<ClusterRoleBinding, pb::rbac::v1::ClusterRoleBinding>,
        ),
        (
            "autoscaling/v1",
            "Scale",
            decode_as::<Scale, pb::autoscaling::v1::Scale>,
        ),
        (
            "autoscaling/v1",
            "HorizontalPodAutoscaler",
            decode_as::<
                autoscaling::v1::HorizontalPodAutoscaler,
                pb::autoscaling::v1::HorizontalPodAutoscaler,
            >,
        ),
        (
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            decode_as::<
                autoscaling::v2::HorizontalPodAutoscaler,
                pb::autoscaling::v2::HorizontalPodAutoscaler,
            >,
        ),
        (
            "scheduling.k8s.io/v1",
            "PriorityClass",
            decode_as::<PriorityClass, pb::scheduling::v1::PriorityClass>,
        ),
        (
            "networking.k8s.io/v1",
            "Ingress",
            decode_as::<Ingress, pb::networking::v1::Ingress>,
        ),
        (
            "coordination.k8s.io/v1",
            "Lease",
            decode_as::<Lease, pb::coordination::v1::Lease>,
        ),
    ]
};

fn decoder_for(api_version: &str, kind: &str) -> Option<DecodeKind> {
    if kind == "DeleteOptions" {
        // client-go encodes DeleteOptions in the group version of the resource being deleted.
        return Some(
            decode_as::<DeleteOptions, k8s_pb::apimachinery::pkg::apis::meta::v1::DeleteOptions>,
        );
    }
    KINDS
        .iter()
        .find(|(v, k, _)| *v == api_version && *k == kind)
        .map(|(_, _, decode)| *decode)
}

#[cfg(test)]
mod tests;
