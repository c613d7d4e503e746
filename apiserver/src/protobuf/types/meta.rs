//! Conversions for apimachinery meta/v1: object metadata, label selectors, conditions and delete
//! options.

use crate::protobuf::convert::convert;

convert! { apimachinery::pkg::apis::meta::v1 =>
    ObjectMeta {
        annotations, creation_timestamp, deletion_grace_period_seconds: keep, deletion_timestamp,
        finalizers, generate_name, generation, labels, managed_fields, name, namespace,
        owner_references, resource_version, self_link, uid
    }
    ManagedFieldsEntry { api_version, fields_type, fields_v1, manager, operation, subresource, time }
    OwnerReference { api_version, block_owner_deletion: keep, controller: keep, kind, name, uid }
    Condition { last_transition_time, message, observed_generation, reason, status, type_ <- r#type }
    LabelSelector { match_expressions, match_labels }
    LabelSelectorRequirement { key, operator, values }
    DeleteOptions {
        api_version: none, dry_run, grace_period_seconds: keep,
        ignore_store_read_error_with_cluster_breaking_potential, kind: none, orphan_dependents:
        keep, preconditions, propagation_policy: keep
    }
    Preconditions { resource_version: keep, uid: keep }
    FieldSelectorRequirement { key, operator, values }
}
