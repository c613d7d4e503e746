//! The CRI v1 protocol: messages, server traits and client stubs, as the `k8s-cri` crate
//! generates them from upstream's `api.proto`.
pub use k8s_cri::v1::*;
