//! Server-side printing: the `meta.k8s.io/v1` `Table` returned when a client asks for
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! This module builds the table: its column definitions, one row per object and each row's
//! `object` as `?includeObject=` asks. What the columns of a kind are and how its cells are
//! filled is the catalogue in [`columns`], which follows the Kubernetes apiserver's printers so
//! `kubectl get` output looks the same as against a real cluster. Like the real server, every
//! row carries all columns, wide ones included; the client hides columns with `priority > 0`
//! unless asked for `-o wide`. Objects are read as JSON (`serde_json::Value`), so missing
//! fields simply print their Kubernetes placeholder.

pub(crate) mod columns;
#[cfg(test)]
mod test_support;

use ekube_api::time::Timestamp;
use serde_json::{Value, json};

pub(crate) use columns::ColumnsOf;
use columns::{Column, KindColumns, Printer};

/// What each row's `object` holds (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// `object` is null.
    None,
    /// `object` is a `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// `object` is the whole object.
    Object,
}

/// Builds a complete `Table` for `items` of `kind` (`None` for a kind with no type: a custom
/// resource), with ages measured at `now`.
pub(crate) fn to_table(
    kind: Option<&dyn crate::strategy::Kind>,
    items: &[Value],
    include_object: IncludeObject,
    now: Timestamp,
) -> Value {
    let kind_columns = columns::for_kind(kind);
    let printer = Printer::new(now);
    let column_definitions: Vec<Value> =
        kind_columns.columns.iter().map(column_definition).collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|item| row(&kind_columns, &printer, item, include_object))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

/// A `TableColumnDefinition`.
fn column_definition(column: &Column) -> Value {
    let Column {
        name,
        ty,
        format,
        priority,
        doc,
    } = column;
    json!({"name": name, "type": ty, "format": format, "description": doc, "priority": priority})
}

/// A `TableRow`: the cells of `item`, the `object` asked for, and the kind's row conditions.
fn row(
    kind_columns: &KindColumns,
    printer: &Printer,
    item: &Value,
    include_object: IncludeObject,
) -> Value {
    let mut row = json!({
        "cells": (kind_columns.cells)(printer, item),
        "object": row_object(item, include_object),
    });
    if let Some(conditions) = kind_columns
        .conditions
        .and_then(|conditions| conditions(item))
    {
        row["conditions"] = conditions;
    }
    row
}

/// What a row's `object` holds for `include_object`.
fn row_object(item: &Value, include_object: IncludeObject) -> Value {
    match include_object {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": item.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
        IncludeObject::Object => item.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::test_support::{kind, names, now};
    use super::{IncludeObject, to_table};

    #[test]
    fn table_shape_and_partial_metadata() {
        let pod = json!({"metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2024-05-10T11:59:55Z"}});
        let t = to_table(
            kind("Pod"),
            std::slice::from_ref(&pod),
            IncludeObject::Metadata,
            now(),
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"], json!({}));
        assert_eq!(
            names(&t),
            [
                ("Name", 0),
                ("Ready", 0),
                ("Status", 0),
                ("Restarts", 0),
                ("Age", 0),
                ("IP", 1),
                ("Node", 1),
                ("Nominated Node", 1),
                ("Readiness Gates", 1)
            ]
            .map(|(n, p)| (n.to_string(), p))
        );
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        let row = &t["rows"][0];
        assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(row["object"]["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(row["object"]["metadata"]["name"], "web");
        assert_eq!(row["cells"].as_array().unwrap().len(), 9);
        let t = to_table(
            kind("Pod"),
            std::slice::from_ref(&pod),
            IncludeObject::Object,
            now(),
        );
        assert_eq!(t["rows"][0]["object"], pod);
        let t = to_table(kind("Pod"), &[pod], IncludeObject::None, now());
        assert!(t["rows"][0]["object"].is_null());
    }
}
