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

/// `(apiVersion, kind) => path` rows as a table of decoders: the path names both the
/// `k8s-openapi` type and the `k8s-pb` message, whose module paths mirror each other.
macro_rules! kinds {
    ($(($api_version:literal, $kind:literal) => $($path:ident)::+,)*) => {
        &[$(($api_version, $kind, decode_as::<k8s_openapi::$($path)::+, k8s_pb::$($path)::+>)),*]
    };
}

/// The top-level kinds [`decode`] accepts, by apiVersion and kind.
static KINDS: &[(&str, &str, DecodeKind)] = kinds! {
    ("v1", "ConfigMap") => api::core::v1::ConfigMap,
    ("v1", "Secret") => api::core::v1::Secret,
    ("v1", "Namespace") => api::core::v1::Namespace,
    ("v1", "ServiceAccount") => api::core::v1::ServiceAccount,
    ("v1", "Service") => api::core::v1::Service,
    ("v1", "Pod") => api::core::v1::Pod,
    ("v1", "ResourceQuota") => api::core::v1::ResourceQuota,
    ("apps/v1", "Deployment") => api::apps::v1::Deployment,
    ("batch/v1", "Job") => api::batch::v1::Job,
    ("batch/v1", "CronJob") => api::batch::v1::CronJob,
    ("policy/v1", "Eviction") => api::policy::v1::Eviction,
    ("policy/v1", "PodDisruptionBudget") => api::policy::v1::PodDisruptionBudget,
    ("certificates.k8s.io/v1", "CertificateSigningRequest") =>
        api::certificates::v1::CertificateSigningRequest,
    ("authentication.k8s.io/v1", "TokenRequest") => api::authentication::v1::TokenRequest,
    ("authentication.k8s.io/v1", "SelfSubjectReview") => api::authentication::v1::SelfSubjectReview,
    ("authorization.k8s.io/v1", "SubjectAccessReview") =>
        api::authorization::v1::SubjectAccessReview,
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview") =>
        api::authorization::v1::LocalSubjectAccessReview,
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview") =>
        api::authorization::v1::SelfSubjectAccessReview,
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview") =>
        api::authorization::v1::SelfSubjectRulesReview,
    ("rbac.authorization.k8s.io/v1", "Role") => api::rbac::v1::Role,
    ("rbac.authorization.k8s.io/v1", "ClusterRole") => api::rbac::v1::ClusterRole,
    ("rbac.authorization.k8s.io/v1", "RoleBinding") => api::rbac::v1::RoleBinding,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => api::rbac::v1::ClusterRoleBinding,
    ("autoscaling/v1", "Scale") => api::autoscaling::v1::Scale,
    ("autoscaling/v1", "HorizontalPodAutoscaler") => api::autoscaling::v1::HorizontalPodAutoscaler,
    ("autoscaling/v2", "HorizontalPodAutoscaler") => api::autoscaling::v2::HorizontalPodAutoscaler,
    ("scheduling.k8s.io/v1", "PriorityClass") => api::scheduling::v1::PriorityClass,
    ("networking.k8s.io/v1", "Ingress") => api::networking::v1::Ingress,
    ("coordination.k8s.io/v1", "Lease") => api::coordination::v1::Lease,
};

fn decoder_for(api_version: &str, kind: &str) -> Option<DecodeKind> {
    if kind == "DeleteOptions" {
        // client-go encodes DeleteOptions in the group version of the resource being deleted.
        return Some(
            decode_as::<
                k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions,
                k8s_pb::apimachinery::pkg::apis::meta::v1::DeleteOptions,
            >,
        );
    }
    KINDS
        .iter()
        .find(|(v, k, _)| *v == api_version && *k == kind)
        .map(|(_, _, decode)| *decode)
}

#[cfg(test)]
mod tests;
