//! The device plugin API, `deviceplugin/v1beta1`, generated from `proto/deviceplugin.proto`,
//! and the constants upstream's package defines beside it.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("v1beta1");

/// The API version this kubelet speaks; a plugin registering with another is refused.
pub const VERSION: &str = "v1beta1";
/// The kubelet's registration socket, in the device-plugins directory.
pub const KUBELET_SOCKET: &str = "kubelet.sock";
/// A device's health in `ListAndWatch`.
pub const HEALTHY: &str = "Healthy";
pub const UNHEALTHY: &str = "Unhealthy";
