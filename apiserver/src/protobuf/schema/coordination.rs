//! coordination.k8s.io/v1 Lease.

use super::meta::OBJECT_META;
use crate::protobuf::{Field, Message, Ty};

pub(super) static LEASE: Message = Message::new(
    "Lease",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&LEASE_SPEC)),
    ],
);
pub(super) static LEASE_SPEC: Message = Message::new(
    "LeaseSpec",
    &[
        Field::one(1, "holderIdentity", Ty::Str).keep(),
        Field::one(2, "leaseDurationSeconds", Ty::Int32).keep(),
        Field::one(3, "acquireTime", Ty::MicroTime),
        Field::one(4, "renewTime", Ty::MicroTime),
        Field::one(5, "leaseTransitions", Ty::Int32).keep(),
        Field::one(6, "strategy", Ty::Str).keep(),
        Field::one(7, "preferredHolder", Ty::Str).keep(),
    ],
);
