//! Conversions for authentication, authorization, certificates and RBAC: token requests, access
//! reviews, certificate signing requests, roles and bindings.

use crate::protobuf::convert::convert;

convert! { api::authentication::v1 =>
    // The status is the server's answer. A request's is dropped: its `expirationTimestamp` is the
    // zero time, which JSON shows as `null` and the JSON type cannot hold.
    TokenRequest { metadata, spec, status: none }
    TokenRequestSpec { attestations: none, audiences, bound_object_ref, expiration_seconds: keep }
    BoundObjectReference { api_version, kind, name, uid <- u_id }
    SelfSubjectReview { metadata, status }
    SelfSubjectReviewStatus { user_info }
    UserInfo { extra, groups, uid, username }
}

convert! { api::authorization::v1 =>
    SubjectAccessReview { metadata, spec, status }
    SubjectAccessReviewSpec {
        extra, groups, non_resource_attributes, resource_attributes, uid, user
    }
    NonResourceAttributes { path, verb }
    ResourceAttributes {
        field_selector, group, label_selector, name, namespace, resource, subresource, verb,
        version
    }
    FieldSelectorAttributes { raw_selector, requirements }
    LabelSelectorAttributes { raw_selector, requirements }
    SubjectAccessReviewStatus { allowed, denied: keep, evaluation_error, reason }
    LocalSubjectAccessReview { metadata, spec, status }
    SelfSubjectAccessReview { metadata, spec, status }
    SelfSubjectAccessReviewSpec { non_resource_attributes, resource_attributes }
    SelfSubjectRulesReview { metadata, spec, status }
    SelfSubjectRulesReviewSpec { namespace }
    SubjectRulesReviewStatus { evaluation_error, incomplete, non_resource_rules, resource_rules }
    NonResourceRule { non_resource_urls <- non_resource_ur_ls, verbs }
    ResourceRule { api_groups, resource_names, resources, verbs }
}

convert! { api::certificates::v1 =>
    CertificateSigningRequest { metadata, spec, status }
    CertificateSigningRequestSpec {
        expiration_seconds: keep, extra, groups, request, signer_name, uid, usages, username
    }
    CertificateSigningRequestStatus { certificate, conditions }
    CertificateSigningRequestCondition {
        last_transition_time, last_update_time, message, reason, status, type_ <- r#type
    }
}

convert! { api::rbac::v1 =>
    Role { metadata, rules }
    PolicyRule {
        api_groups, non_resource_urls <- non_resource_ur_ls, resource_names, resources, verbs
    }
    ClusterRole { aggregation_rule, metadata, rules }
    AggregationRule { cluster_role_selectors }
    RoleBinding { metadata, role_ref, subjects }
    RoleRef { api_group: keep, kind, name }
    Subject { api_group, kind, name, namespace }
    ClusterRoleBinding { metadata, role_ref, subjects }
}
