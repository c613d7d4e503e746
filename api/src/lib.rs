//! The object model every ekube component shares.
//!
//! Objects are the `k8s-openapi` types; this crate adds what the Kubernetes libraries leave to the
//! server: the table of resources ekube serves ([`resources`]), label and field selectors
//! ([`selector`]), quantities ([`quantity`]), the one way components build a kube-rs client
//! ([`client`]) and record Events ([`events`]).

pub mod client;
pub mod events;
pub mod nodematch;
pub mod quantity;
pub mod resources;
pub mod selector;

pub use k8s_openapi;
pub use resources::{RESOURCES, ResourceInfo};
