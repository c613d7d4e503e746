//! Who may do what: certificates.k8s.io/v1 CertificateSigningRequest, authentication.k8s.io/v1
//! TokenRequest and SelfSubjectReview, authorization.k8s.io/v1 access reviews and
//! rbac.authorization.k8s.io/v1 roles and bindings.

use super::meta::{LABEL_SELECTOR, OBJECT_META};
use crate::protobuf::{Field, Message, Ty};

// ---- certificates.k8s.io/v1 ----

pub(super) static CERTIFICATE_SIGNING_REQUEST: Message = Message::new(
    "CertificateSigningRequest",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&CERTIFICATE_SIGNING_REQUEST_SPEC)),
        Field::one(3, "status", Ty::Msg(&CERTIFICATE_SIGNING_REQUEST_STATUS)),
    ],
);
pub(super) static CERTIFICATE_SIGNING_REQUEST_CONDITION: Message = Message::new(
    "CertificateSigningRequestCondition",
    &[
        Field::one(1, "type", Ty::Str).keep(),
        Field::one(6, "status", Ty::Str).keep(),
        Field::one(2, "reason", Ty::Str),
        Field::one(3, "message", Ty::Str),
        Field::one(4, "lastUpdateTime", Ty::Time),
        Field::one(5, "lastTransitionTime", Ty::Time),
    ],
);
pub(super) static CERTIFICATE_SIGNING_REQUEST_SPEC: Message = Message::new(
    "CertificateSigningRequestSpec",
    &[
        Field::one(1, "request", Ty::Bytes).keep(),
        Field::one(7, "signerName", Ty::Str).keep(),
        Field::one(8, "expirationSeconds", Ty::Int32).keep(),
        Field::rep(5, "usages", Ty::Str),
        Field::one(2, "username", Ty::Str),
        Field::one(3, "uid", Ty::Str),
        Field::rep(4, "groups", Ty::Str),
        Field::map(6, "extra", Ty::StrList),
    ],
);
pub(super) static CERTIFICATE_SIGNING_REQUEST_STATUS: Message = Message::new(
    "CertificateSigningRequestStatus",
    &[
        Field::rep(
            1,
            "conditions",
            Ty::Msg(&CERTIFICATE_SIGNING_REQUEST_CONDITION),
        ),
        Field::one(2, "certificate", Ty::Bytes),
    ],
);

// ---- authentication.k8s.io/v1 ----

pub(super) static BOUND_OBJECT_REFERENCE: Message = Message::new(
    "BoundObjectReference",
    &[
        Field::one(1, "kind", Ty::Str),
        Field::one(2, "apiVersion", Ty::Str),
        Field::one(3, "name", Ty::Str),
        Field::one(4, "uid", Ty::Str),
    ],
);
pub(super) static TOKEN_REQUEST: Message = Message::new(
    "TokenRequest",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&TOKEN_REQUEST_SPEC)),
        Field::one(3, "status", Ty::Msg(&TOKEN_REQUEST_STATUS)),
    ],
);
pub(super) static TOKEN_REQUEST_SPEC: Message = Message::new(
    "TokenRequestSpec",
    &[
        Field::rep(1, "audiences", Ty::Str).keep(),
        Field::one(4, "expirationSeconds", Ty::Int64).keep(),
        Field::one(3, "boundObjectRef", Ty::Msg(&BOUND_OBJECT_REFERENCE)),
        Field::map(5, "attestations", Ty::StrList),
    ],
);
pub(super) static TOKEN_REQUEST_STATUS: Message = Message::new(
    "TokenRequestStatus",
    &[
        Field::one(1, "token", Ty::Str).keep(),
        Field::one(2, "expirationTimestamp", Ty::Time),
    ],
);
/// Requests carry no status; only `userInfo` comes back, in the answer.
pub(super) static SELF_SUBJECT_REVIEW: Message = Message::new(
    "SelfSubjectReview",
    &[Field::one(1, "metadata", Ty::Msg(&OBJECT_META))],
);

// ---- authorization.k8s.io/v1 (request fields only: status is the server's answer) ----

pub(super) static RESOURCE_ATTRIBUTES: Message = Message::new(
    "ResourceAttributes",
    &[
        Field::one(1, "namespace", Ty::Str),
        Field::one(2, "verb", Ty::Str),
        Field::one(3, "group", Ty::Str),
        Field::one(4, "version", Ty::Str),
        Field::one(5, "resource", Ty::Str),
        Field::one(6, "subresource", Ty::Str),
        Field::one(7, "name", Ty::Str),
        // Not covered: fieldSelector (8) and labelSelector (9) attributes.
    ],
);
pub(super) static NON_RESOURCE_ATTRIBUTES: Message = Message::new(
    "NonResourceAttributes",
    &[
        Field::one(1, "path", Ty::Str),
        Field::one(2, "verb", Ty::Str),
    ],
);
pub(super) static SUBJECT_ACCESS_REVIEW_SPEC: Message = Message::new(
    "SubjectAccessReviewSpec",
    &[
        Field::one(1, "resourceAttributes", Ty::Msg(&RESOURCE_ATTRIBUTES)),
        Field::one(
            2,
            "nonResourceAttributes",
            Ty::Msg(&NON_RESOURCE_ATTRIBUTES),
        ),
        Field::one(3, "user", Ty::Str),
        Field::rep(4, "groups", Ty::Str),
        Field::map(5, "extra", Ty::StrList),
        Field::one(6, "uid", Ty::Str),
    ],
);
pub(super) static SUBJECT_ACCESS_REVIEW: Message = Message::new(
    "SubjectAccessReview",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&SUBJECT_ACCESS_REVIEW_SPEC)),
    ],
);
pub(super) static LOCAL_SUBJECT_ACCESS_REVIEW: Message = Message::new(
    "LocalSubjectAccessReview",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&SUBJECT_ACCESS_REVIEW_SPEC)),
    ],
);
pub(super) static SELF_SUBJECT_ACCESS_REVIEW_SPEC: Message = Message::new(
    "SelfSubjectAccessReviewSpec",
    &[
        Field::one(1, "resourceAttributes", Ty::Msg(&RESOURCE_ATTRIBUTES)),
        Field::one(
            2,
            "nonResourceAttributes",
            Ty::Msg(&NON_RESOURCE_ATTRIBUTES),
        ),
    ],
);
pub(super) static SELF_SUBJECT_ACCESS_REVIEW: Message = Message::new(
    "SelfSubjectAccessReview",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&SELF_SUBJECT_ACCESS_REVIEW_SPEC)),
    ],
);
pub(super) static SELF_SUBJECT_RULES_REVIEW_SPEC: Message = Message::new(
    "SelfSubjectRulesReviewSpec",
    &[Field::one(1, "namespace", Ty::Str)],
);
pub(super) static SELF_SUBJECT_RULES_REVIEW: Message = Message::new(
    "SelfSubjectRulesReview",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&SELF_SUBJECT_RULES_REVIEW_SPEC)),
    ],
);

// ---- rbac.authorization.k8s.io/v1 ----

pub(super) static AGGREGATION_RULE: Message = Message::new(
    "AggregationRule",
    &[Field::rep(
        1,
        "clusterRoleSelectors",
        Ty::Msg(&LABEL_SELECTOR),
    )],
);
pub(super) static CLUSTER_ROLE: Message = Message::new(
    "ClusterRole",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::rep(2, "rules", Ty::Msg(&POLICY_RULE)).keep(),
        Field::one(3, "aggregationRule", Ty::Msg(&AGGREGATION_RULE)),
    ],
);
pub(super) static CLUSTER_ROLE_BINDING: Message = Message::new(
    "ClusterRoleBinding",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::rep(2, "subjects", Ty::Msg(&SUBJECT)),
        Field::one(3, "roleRef", Ty::Msg(&ROLE_REF)),
    ],
);
pub(super) static POLICY_RULE: Message = Message::new(
    "PolicyRule",
    &[
        Field::rep(1, "verbs", Ty::Str).keep(),
        Field::rep(2, "apiGroups", Ty::Str),
        Field::rep(3, "resources", Ty::Str),
        Field::rep(4, "resourceNames", Ty::Str),
        Field::rep(5, "nonResourceURLs", Ty::Str),
    ],
);
pub(super) static ROLE: Message = Message::new(
    "Role",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::rep(2, "rules", Ty::Msg(&POLICY_RULE)).keep(),
    ],
);
pub(super) static ROLE_BINDING: Message = Message::new(
    "RoleBinding",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::rep(2, "subjects", Ty::Msg(&SUBJECT)),
        Field::one(3, "roleRef", Ty::Msg(&ROLE_REF)),
    ],
);
pub(super) static ROLE_REF: Message = Message::new(
    "RoleRef",
    &[
        Field::one(1, "apiGroup", Ty::Str).keep(),
        Field::one(2, "kind", Ty::Str).keep(),
        Field::one(3, "name", Ty::Str).keep(),
    ],
);
pub(super) static SUBJECT: Message = Message::new(
    "Subject",
    &[
        Field::one(1, "kind", Ty::Str).keep(),
        Field::one(2, "apiGroup", Ty::Str),
        Field::one(3, "name", Ty::Str).keep(),
        Field::one(4, "namespace", Ty::Str),
    ],
);
