//! The column catalogue: for each kind with a dedicated printer, the columns kube-apiserver's
//! printers (`pkg/printers/internalversion/printers.go`) declare and the function that fills a
//! row's cells. One file per API group holds its kinds; this module holds the lookup, the
//! column helpers and the cell helpers more than one group uses. Every kind without an entry
//! prints the generic `Name` / `Created At` pair, as upstream's default table convertor does.

pub(crate) mod apiregistration;
pub(crate) mod apps;
pub(crate) mod autoscaling;
pub(crate) mod batch;
pub(crate) mod certificates;
pub(crate) mod coordination;
pub(crate) mod core;
pub(crate) mod networking;
pub(crate) mod pod;
pub(crate) mod policy;
pub(crate) mod rbac;
pub(crate) mod storage;

use ekube_api::display::human_duration;
use ekube_api::time::Timestamp;
use serde_json::{Value, json};

const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.";
const CONTAINERS_DOC: &str = "Names of each container in the template.";
const IMAGES_DOC: &str = "Images referenced by each container in the template.";

/// One `TableColumnDefinition`.
pub(super) struct Column {
    pub(super) name: &'static str,
    /// The OpenAPI type of the cells: `string`, `integer`, `boolean` or `date`.
    pub(super) ty: &'static str,
    /// The OpenAPI format; `name` marks the column holding the object's name.
    pub(super) format: &'static str,
    /// 0 for the default view, 1 for columns only `-o wide` shows.
    pub(super) priority: u8,
    pub(super) doc: &'static str,
}

fn name_col() -> Column {
    Column {
        format: "name",
        ..string_col("Name", 0, NAME_DOC)
    }
}

fn age_col() -> Column {
    string_col("Age", 0, AGE_DOC)
}

fn string_col(name: &'static str, priority: u8, doc: &'static str) -> Column {
    Column {
        name,
        ty: "string",
        format: "",
        priority,
        doc,
    }
}

fn integer_col(name: &'static str, priority: u8, doc: &'static str) -> Column {
    Column {
        ty: "integer",
        ..string_col(name, priority, doc)
    }
}

/// Formats the cells of one row, in the order of the kind's columns.
pub(super) type CellPrinter = fn(&Printer, &Value) -> Vec<Value>;

/// Extra `conditions` for one row, `None` when the row carries none.
pub(super) type RowConditions = fn(&Value) -> Option<Value>;

/// How one kind prints: its columns and the functions filling each row.
pub(crate) struct KindColumns {
    pub(super) columns: Vec<Column>,
    pub(super) cells: CellPrinter,
    pub(super) conditions: Option<RowConditions>,
}

/// Declares the columns of one kind; each lives in its API group's file, and the kind's
/// strategy names it ([`crate::strategy::Strategy::columns`]).
pub(crate) type ColumnsOf = fn() -> KindColumns;

/// The columns of `kind`; the generic pair for kinds without a dedicated printer (Role,
/// ClusterRole, LimitRange, custom resources, ...).
pub(super) fn for_kind(kind: Option<&dyn crate::strategy::Kind>) -> KindColumns {
    kind.and_then(|k| k.columns())
        .map_or_else(generic_columns, |columns| columns())
}

fn generic_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            Column {
                ty: "date",
                ..string_col("Created At", 0, AGE_DOC)
            },
        ],
        cells: Printer::generic,
        conditions: None,
    }
}

/// Fills cells, measuring ages at one instant so every row of a table agrees. Each group's
/// file adds the cell functions of its kinds as further `impl Printer` blocks.
pub(super) struct Printer {
    now: Timestamp,
}

impl Printer {
    pub(super) fn new(now: Timestamp) -> Self {
        Self { now }
    }

    /// Age of an RFC 3339 timestamp, `<unknown>` when unset (`translateTimestampSince`).
    fn since(&self, ts: &str) -> String {
        match parse_time(ts) {
            Some(t) => human_duration(self.now.duration_since(t).as_secs()),
            None => "<unknown>".into(),
        }
    }

    fn age(&self, o: &Value) -> Value {
        json!(self.since(str_at(o, &["metadata", "creationTimestamp"])))
    }

    fn name(o: &Value) -> Value {
        json!(str_at(o, &["metadata", "name"]))
    }

    fn generic(&self, o: &Value) -> Vec<Value> {
        vec![
            Self::name(o),
            at(o, &["metadata", "creationTimestamp"]).clone(),
        ]
    }
}

/// The field at `path`, `null` when absent; the `*_at` readers below give their type's zero
/// value instead.
fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| v.get(k).unwrap_or(&Value::Null))
}
fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).as_str().unwrap_or("")
}
fn int_at(v: &Value, path: &[&str]) -> i64 {
    at(v, path).as_i64().unwrap_or(0)
}
fn arr_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path).as_array().map(Vec::as_slice).unwrap_or(&[])
}
fn len_at(v: &Value, path: &[&str]) -> usize {
    match at(v, path) {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    }
}

/// `s`, or `placeholder` when `s` is empty.
fn or<'a>(s: &'a str, placeholder: &'a str) -> &'a str {
    if s.is_empty() { placeholder } else { s }
}

/// An RFC 3339 timestamp, `None` when absent or malformed.
fn parse_time(s: &str) -> Option<Timestamp> {
    ekube_api::time::parse(s)
}

/// A `metav1.LabelSelector` in selector syntax (`app=web,tier in (a,b)`), "" when it selects
/// everything or is absent (`LabelSelectorAsSelector(...).String()`).
fn selector_string(sel: &Value) -> String {
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let key = str_at(e, &["key"]);
        let mut values: Vec<&str> = arr_at(e, &["values"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        values.sort();
        values.dedup();
        let text = match str_at(e, &["operator"]) {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other} ({})", values.join(",")),
        };
        reqs.push((key.to_string(), text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    reqs.into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// Like [`selector_string`] but `<none>` when empty (`metav1.FormatLabelSelector`).
fn format_label_selector(sel: &Value) -> String {
    let s = selector_string(sel);
    if s.is_empty() { "<none>".into() } else { s }
}

/// Container names and images of a pod spec, comma-joined (`layoutContainerCells`).
fn containers_cells(pod_spec: &Value) -> (Value, Value) {
    let containers = arr_at(pod_spec, &["containers"]);
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, &["image"])).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::table::test_support::{kind, names, now};
    use crate::table::{IncludeObject, to_table};

    #[test]
    fn generic_fallback() {
        let role =
            json!({"metadata": {"name": "reader", "creationTimestamp": "2024-05-10T11:00:00Z"}});
        let t = to_table(
            kind("Role"),
            std::slice::from_ref(&role),
            IncludeObject::Metadata,
            now(),
        );
        assert_eq!(
            names(&t),
            vec![("Name".to_string(), 0), ("Created At".to_string(), 0)]
        );
        assert_eq!(t["columnDefinitions"][1]["type"], "date");
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["reader", "2024-05-10T11:00:00Z"])
        );
        let t = to_table(kind("Widget"), &[], IncludeObject::Metadata, now());
        assert_eq!(t["rows"], json!([]));
    }
}
