//! Printing: a column aligner with Go `text/tabwriter` semantics (what kubectl uses), server
//! `Table`s rendered like kubectl's table printer, and `-o name|yaml|json`.

use anyhow::Result;
use ekube_api::display::format_labels;
use serde_json::{Value, json};

/// Aligns tab-separated cells like Go's `tabwriter.NewWriter(w, minwidth, 0, padding, ' ', 0)`:
/// a column block is a run of consecutive lines that have a tab-terminated cell in that column;
/// the last cell of a line is not aligned.
pub fn tabwrite(text: &str, minwidth: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<Vec<usize>> = lines.iter().map(|cells| vec![0; cells.len() - 1]).collect();
    fn block(
        lines: &[Vec<&str>],
        widths: &mut [Vec<usize>],
        start: usize,
        end: usize,
        col: usize,
        minwidth: usize,
        padding: usize,
    ) {
        let mut i = start;
        while i < end {
            if col + 1 >= lines[i].len() {
                i += 1;
                continue;
            }
            let first = i;
            let mut width = minwidth;
            while i < end && col + 1 < lines[i].len() {
                width = width.max(lines[i][col].chars().count() + padding);
                i += 1;
            }
            for w in &mut widths[first..i] {
                w[col] = width;
            }
            block(lines, widths, first, i, col + 1, minwidth, padding);
        }
    }
    block(&lines, &mut widths, 0, lines.len(), 0, minwidth, padding);
    let mut out = String::new();
    for (cells, widths) in lines.iter().zip(&widths) {
        for (cell, width) in cells.iter().zip(widths) {
            out.push_str(cell);
            out.extend(std::iter::repeat_n(
                ' ',
                width.saturating_sub(cell.chars().count()),
            ));
        }
        out.push_str(cells.last().expect("split yields one cell at least"));
        out.push('\n');
    }
    out
}

/// How to render a server Table.
#[derive(Debug, Clone, Default)]
pub struct TableOptions {
    /// `-o wide`: include columns with priority > 0.
    pub wide: bool,
    /// `-A`: a leading NAMESPACE column from each row's object metadata.
    pub with_namespace: bool,
    /// Prefix names with `kind/` (several types, or `TYPE/NAME` arguments).
    pub kind_prefix: Option<String>,
    /// `--show-labels`: a trailing LABELS column.
    pub show_labels: bool,
    pub no_headers: bool,
}

/// Renders a cell like kubectl: strings as-is, numbers and booleans in their JSON form, null as
/// empty.
pub fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        other => other.to_string(),
    }
}

/// The header and row lines (tab-separated, unaligned) of `table`.
pub fn table_lines(table: &Value, opts: &TableOptions) -> (Vec<String>, Vec<String>) {
    let columns = table["columnDefinitions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let shown: Vec<usize> = (0..columns.len())
        .filter(|&i| opts.wide || columns[i]["priority"].as_i64().unwrap_or(0) == 0)
        .collect();
    let mut header: Vec<String> = Vec::new();
    if opts.with_namespace {
        header.push("NAMESPACE".into());
    }
    header.extend(
        shown
            .iter()
            .map(|&i| columns[i]["name"].as_str().unwrap_or("").to_uppercase()),
    );
    if opts.show_labels {
        header.push("LABELS".into());
    }
    let mut rows = Vec::new();
    for row in table["rows"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let cells = row["cells"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let meta = &row["object"]["metadata"];
        let mut out: Vec<String> = Vec::new();
        if opts.with_namespace {
            out.push(meta["namespace"].as_str().unwrap_or("").to_string());
        }
        for &i in &shown {
            let mut text = cells.get(i).map(cell_text).unwrap_or_default();
            if let Some(prefix) = &opts.kind_prefix
                && columns[i]["format"] == "name"
            {
                text = format!("{prefix}/{text}");
            }
            out.push(text);
        }
        if opts.show_labels {
            out.push(format_labels(&meta["labels"]));
        }
        rows.push(out.join("\t"));
    }
    (vec![header.join("\t")], rows)
}

/// A whole table as kubectl prints it (header unless `no_headers`, aligned columns).
pub fn format_table(table: &Value, opts: &TableOptions) -> String {
    let (header, rows) = table_lines(table, opts);
    let mut text = String::new();
    if !opts.no_headers {
        text.push_str(&header.join("\n"));
        text.push('\n');
    }
    for r in rows {
        text.push_str(&r);
        text.push('\n');
    }
    tabwrite(&text, 6, 3)
}

/// Prints full objects as `yaml` or `json`; several objects become a `v1` `List`.
pub fn format_objects(objects: &[Value], format: &str, force_list: bool) -> Result<String> {
    let value = if objects.len() == 1 && !force_list {
        objects[0].clone()
    } else {
        json!({"apiVersion": "v1", "items": objects, "kind": "List", "metadata": {"resourceVersion": ""}})
    };
    Ok(match format {
        "json" => format!("{}\n", serde_json::to_string_pretty(&value)?),
        _ => serde_yaml::to_string(&value)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabwriter_like_go() {
        assert_eq!(
            tabwrite("a\tbb\tc\nccc\td\te\n", 6, 3),
            "a     bb    c\nccc   d     e\n"
        );
        assert_eq!(
            tabwrite("NAME\tREADY\nweb-12345678\t1/1\n", 6, 3),
            "NAME           READY\nweb-12345678   1/1\n"
        );
        // A line without tabs ends the column block (describe output relies on it).
        assert_eq!(
            tabwrite("Name:\tx\nLonger Key:\ty\nplain\nK:\tz\n", 0, 2),
            "Name:        x\nLonger Key:  y\nplain\nK:  z\n"
        );
    }

    fn pod_table() -> Value {
        json!({
            "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "5"},
            "columnDefinitions": [
                {"name": "Name", "type": "string", "format": "name", "priority": 0},
                {"name": "Ready", "type": "string", "format": "", "priority": 0},
                {"name": "Restarts", "type": "integer", "format": "", "priority": 0},
                {"name": "IP", "type": "string", "format": "", "priority": 1},
            ],
            "rows": [
                {"cells": ["web", "1/1", 0, "10.244.1.2"], "object": {"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "a": "b"}}}},
                {"cells": ["db-0", "0/1", 3, "<none>"], "object": {"metadata": {"name": "db-0", "namespace": "data"}}},
            ],
        })
    }

    #[test]
    fn tables() {
        let t = pod_table();
        assert_eq!(
            format_table(&t, &TableOptions::default()),
            "NAME   READY   RESTARTS\nweb    1/1     0\ndb-0   0/1     3\n"
        );
        let wide = TableOptions {
            wide: true,
            with_namespace: true,
            ..Default::default()
        };
        assert_eq!(
            format_table(&t, &wide),
            "NAMESPACE   NAME   READY   RESTARTS   IP\ndefault     web    1/1     0          10.244.1.2\ndata        db-0   0/1     3          <none>\n"
        );
        let prefixed = TableOptions {
            kind_prefix: Some("pod".into()),
            show_labels: true,
            no_headers: true,
            ..Default::default()
        };
        assert_eq!(
            format_table(&t, &prefixed),
            "pod/web    1/1   0     a=b,app=web\npod/db-0   0/1   3     <none>\n"
        );
    }

    #[test]
    fn objects() {
        let a = json!({"kind": "Pod", "metadata": {"name": "a"}});
        assert_eq!(
            format_objects(std::slice::from_ref(&a), "yaml", false).unwrap(),
            "kind: Pod\nmetadata:\n  name: a\n"
        );
        let list: Value =
            serde_json::from_str(&format_objects(&[a.clone(), a], "json", false).unwrap()).unwrap();
        assert_eq!(list["kind"], "List");
        assert_eq!(list["items"].as_array().unwrap().len(), 2);
    }
}
