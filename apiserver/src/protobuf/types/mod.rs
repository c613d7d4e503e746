//! The `k8s-pb` → `k8s-openapi` conversion of every message the covered kinds reach, one file
//! per API group. Each entry lists the JSON type's fields; see [`convert!`](super::convert) for
//! the notation.

mod auth;
mod autoscaling;
mod core;
mod meta;
mod networking;
mod workloads;
