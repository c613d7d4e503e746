//! Shared by the table tests: a fixed clock and readers of a built table.

use ekube_api::time::Timestamp;
use serde_json::Value;

use super::{IncludeObject, to_table};

/// The instant every test measures ages at.
pub(super) fn now() -> Timestamp {
    ekube_api::time::parse("2024-05-10T12:00:00Z").unwrap()
}

/// The registered kind named `name` (the first, for a name two groups share); `None` for a
/// name no type has, as for a custom resource.
pub(super) fn kind(name: &str) -> Option<&'static dyn crate::strategy::Kind> {
    crate::strategy::KINDS
        .iter()
        .find(|k| k.kind() == name)
        .copied()
}

/// The cells of the one row `obj` prints as, for `kind`.
pub(super) fn cells(name: &str, obj: Value) -> Vec<Value> {
    let t = to_table(kind(name), &[obj], IncludeObject::Metadata, now());
    t["rows"][0]["cells"].as_array().unwrap().clone()
}

/// Name and priority of each column of a table.
pub(super) fn names(t: &Value) -> Vec<(String, u64)> {
    t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["priority"].as_u64().unwrap(),
            )
        })
        .collect()
}
