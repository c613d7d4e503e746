//! meta/v1 messages (k8s.io/apimachinery) that every kind shares: `ObjectMeta` and its parts,
//! `LabelSelector`, `Condition`, and `DeleteOptions`, which a delete request may carry under any
//! group version.

use crate::protobuf::{Field, Message, Ty};

pub(super) static CONDITION: Message = Message::new(
    "Condition",
    &[
        Field::one(1, "type", Ty::Str).keep(),
        Field::one(2, "status", Ty::Str).keep(),
        Field::one(3, "observedGeneration", Ty::Int64),
        Field::one(4, "lastTransitionTime", Ty::Time),
        Field::one(5, "reason", Ty::Str).keep(),
        Field::one(6, "message", Ty::Str).keep(),
    ],
);
pub(in crate::protobuf) static DELETE_OPTIONS: Message = Message::new(
    "DeleteOptions",
    &[
        Field::one(1, "gracePeriodSeconds", Ty::Int64).keep(),
        Field::one(2, "preconditions", Ty::Msg(&PRECONDITIONS)),
        Field::one(3, "orphanDependents", Ty::Bool).keep(),
        Field::one(4, "propagationPolicy", Ty::Str).keep(),
        Field::rep(5, "dryRun", Ty::Str),
        Field::one(
            6,
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            Ty::Bool,
        )
        .keep(),
    ],
);
pub(super) static LABEL_SELECTOR: Message = Message::new(
    "LabelSelector",
    &[
        Field::map(1, "matchLabels", Ty::Str),
        Field::rep(2, "matchExpressions", Ty::Msg(&LABEL_SELECTOR_REQUIREMENT)),
    ],
);
pub(super) static LABEL_SELECTOR_REQUIREMENT: Message = Message::new(
    "LabelSelectorRequirement",
    &[
        Field::one(1, "key", Ty::Str).keep(),
        Field::one(2, "operator", Ty::Str).keep(),
        Field::rep(3, "values", Ty::Str),
    ],
);
pub(super) static MANAGED_FIELDS_ENTRY: Message = Message::new(
    "ManagedFieldsEntry",
    &[
        Field::one(1, "manager", Ty::Str),
        Field::one(2, "operation", Ty::Str),
        Field::one(3, "apiVersion", Ty::Str),
        Field::one(4, "time", Ty::Time),
        Field::one(6, "fieldsType", Ty::Str),
        Field::one(7, "fieldsV1", Ty::Raw),
        Field::one(8, "subresource", Ty::Str),
    ],
);
pub(super) static OBJECT_META: Message = Message::new(
    "ObjectMeta",
    &[
        Field::one(1, "name", Ty::Str),
        Field::one(2, "generateName", Ty::Str),
        Field::one(3, "namespace", Ty::Str),
        Field::one(4, "selfLink", Ty::Str),
        Field::one(5, "uid", Ty::Str),
        Field::one(6, "resourceVersion", Ty::Str),
        Field::one(7, "generation", Ty::Int64),
        Field::one(8, "creationTimestamp", Ty::Time),
        Field::one(9, "deletionTimestamp", Ty::Time),
        Field::one(10, "deletionGracePeriodSeconds", Ty::Int64).keep(),
        Field::map(11, "labels", Ty::Str),
        Field::map(12, "annotations", Ty::Str),
        Field::rep(13, "ownerReferences", Ty::Msg(&OWNER_REFERENCE)),
        Field::rep(14, "finalizers", Ty::Str),
        Field::rep(17, "managedFields", Ty::Msg(&MANAGED_FIELDS_ENTRY)),
    ],
);
pub(super) static OWNER_REFERENCE: Message = Message::new(
    "OwnerReference",
    &[
        Field::one(5, "apiVersion", Ty::Str).keep(),
        Field::one(1, "kind", Ty::Str).keep(),
        Field::one(3, "name", Ty::Str).keep(),
        Field::one(4, "uid", Ty::Str).keep(),
        Field::one(6, "controller", Ty::Bool).keep(),
        Field::one(7, "blockOwnerDeletion", Ty::Bool).keep(),
    ],
);
pub(super) static PRECONDITIONS: Message = Message::new(
    "Preconditions",
    &[
        Field::one(1, "uid", Ty::Str).keep(),
        Field::one(2, "resourceVersion", Ty::Str).keep(),
    ],
);
