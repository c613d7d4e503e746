//! Reading the JSON form of an object, as the validation rules walk it.

use serde_json::Value;

/// The array at `key` (empty when absent or not an array).
pub(super) fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The value at `key`, unless absent or null.
pub(super) fn present<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|v| !v.is_null())
}

/// The string at `key` (empty when absent or not a string).
pub(super) fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A string value as upstream prints it in a cause (Go's `%q`).
pub(super) fn quoted(s: &str) -> String {
    format!("{s:?}")
}
