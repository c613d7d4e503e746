//! The volume controllers: the PersistentVolume binder ([`binder`]) and the claim and volume
//! protection controllers ([`protection`]).

pub mod binder;
pub mod protection;
