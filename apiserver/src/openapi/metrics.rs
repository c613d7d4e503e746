//! The `metrics.k8s.io/v1beta1` types, for the OpenAPI documents only: the resource metrics
//! are computed as JSON ([`crate::resource_metrics`]), and `k8s-openapi` has no types for them.
//! Fields, names and descriptions are those metrics-server publishes, so `kubectl explain`
//! reads the same.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// NodeMetrics sets resource usage metrics of a node.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics")]
pub struct NodeMetrics {
    /// APIVersion defines the versioned schema of this representation of an object.
    #[serde(default)]
    pub api_version: String,
    /// Kind is a string value representing the REST resource this object represents.
    #[serde(default)]
    pub kind: String,
    /// Standard object's metadata.
    pub metadata: ObjectMeta,
    /// The following fields define time interval from which metrics were collected from the
    /// interval [Timestamp-Window, Timestamp].
    pub timestamp: Time,
    /// The length of the interval the usage was averaged over (a duration such as `15s`).
    pub window: String,
    /// The memory usage is the memory working set.
    pub usage: BTreeMap<String, Quantity>,
}

/// PodMetrics sets resource usage metrics of a pod.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics")]
pub struct PodMetrics {
    /// APIVersion defines the versioned schema of this representation of an object.
    #[serde(default)]
    pub api_version: String,
    /// Kind is a string value representing the REST resource this object represents.
    #[serde(default)]
    pub kind: String,
    /// Standard object's metadata.
    pub metadata: ObjectMeta,
    /// The following fields define time interval from which metrics were collected from the
    /// interval [Timestamp-Window, Timestamp].
    pub timestamp: Time,
    /// The length of the interval the usage was averaged over (a duration such as `15s`).
    pub window: String,
    /// Metrics for all containers are collected within the same time window.
    pub containers: Vec<ContainerMetrics>,
}

/// ContainerMetrics sets resource usage metrics of a container.
#[derive(Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "io.k8s.metrics.pkg.apis.metrics.v1beta1.ContainerMetrics")]
pub struct ContainerMetrics {
    /// Container name corresponding to the one from pod.spec.containers.
    pub name: String,
    /// The memory usage is the memory working set.
    pub usage: BTreeMap<String, Quantity>,
}
