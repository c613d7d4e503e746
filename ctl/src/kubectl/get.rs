//! `get`: asks the server for `meta.k8s.io/v1` Tables (server-side printing) and prints them
//! like kubectl, or prints full objects for `-o yaml|json|name`; `-w` keeps watching and prints
//! each changed row.

use anyhow::{Result, bail};
use clap::Args;
use futures::{StreamExt as _, TryStreamExt as _};
use kube::core::WatchEvent;
use serde_json::{Value, json};

use super::discovery::Resource;
use super::output::{TableOptions, format_objects, format_table, table_lines};
use super::{Ctx, Reported, format_error, split_type_names};

/// The Accept header that makes the server answer with a Table.
pub const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

#[derive(Args, Debug)]
pub struct GetArgs {
    /// TYPE[,TYPE...] [NAME...] or TYPE/NAME...
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// Output format: wide, yaml, json or name.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Selector (label query) to filter on, supports '=', '==', '!=', 'in', 'notin'.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Selector (field query) to filter on, e.g. --field-selector status.phase=Running.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// List the requested object(s) across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// After listing/getting the requested object, watch for changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// When printing, show all labels as the last column.
    #[arg(long)]
    pub show_labels: bool,
    /// When using the default output format, don't print headers.
    #[arg(long)]
    pub no_headers: bool,
    /// If the requested object does not exist the command will return exit code 0.
    #[arg(long)]
    pub ignore_not_found: bool,
}

/// Builds a query string from pairs, skipping absent values.
pub fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            ser.append_pair(k, v);
        }
    }
    let q = ser.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}

/// GET with the Table Accept header.
async fn get_table(ctx: &Ctx, path: &str) -> Result<Value, kube::Error> {
    let req = http::Request::builder()
        .uri(path)
        .header(http::header::ACCEPT, TABLE_ACCEPT)
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    let v: Value = ctx.client.request(req).await?;
    Ok(if v["kind"] == "Table" {
        v
    } else {
        fallback_table(&v)
    })
}

/// A NAME/AGE table built client-side when a server does not print tables.
fn fallback_table(v: &Value) -> Value {
    let items: Vec<Value> = match v["items"].as_array() {
        Some(items) => items.clone(),
        None => vec![v.clone()],
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|o| json!({"cells": [o["metadata"]["name"], o["metadata"]["creationTimestamp"]], "object": {"metadata": o["metadata"]}}))
        .collect();
    json!({"kind": "Table", "metadata": {"resourceVersion": v["metadata"]["resourceVersion"]},
        "columnDefinitions": [{"name": "Name", "format": "name", "priority": 0}, {"name": "Created At", "format": "", "priority": 0}],
        "rows": rows})
}

pub async fn run(ctx: &Ctx, args: GetArgs) -> Result<()> {
    let slash = args.resources.iter().any(|a| a.contains('/'));
    let requests = split_type_names(&args.resources)?;
    if args.watch && requests.len() > 1 {
        bail!("you may only specify a single resource type");
    }
    let mut resolved: Vec<(Resource, Vec<String>)> = Vec::new();
    let mut category = false;
    for (ty, names) in requests {
        let resources = ctx.resources().await?;
        let members = resources.category(&ty);
        if resources.resolve(&ty).is_none() && !members.is_empty() && names.is_empty() {
            category = true;
            resolved.extend(members.into_iter().map(|r| (r.clone(), Vec::new())));
        } else {
            resolved.push((ctx.resolve(&ty).await?, names));
        }
    }
    let many = resolved.len() > 1 || slash || category;
    let format = args.output.clone().unwrap_or_default();
    let ns_for = |r: &Resource| {
        if args.all_namespaces || !r.namespaced {
            None
        } else {
            Some(ctx.namespace.clone())
        }
    };
    let selectors = |extra: Option<&str>| {
        query(&[
            ("labelSelector", args.selector.as_deref()),
            ("fieldSelector", extra.or(args.field_selector.as_deref())),
        ])
    };
    let mut failed = false;
    let mut printed_any = false;

    match format.as_str() {
        "" | "wide" => {
            let mut first_table = true;
            let mut last: Option<(Value, TableOptions)> = None;
            for (r, names) in &resolved {
                let ns = ns_for(r);
                let mut table: Option<Value> = None;
                if names.is_empty() {
                    match get_table(
                        ctx,
                        &format!("{}{}", r.collection_path(ns.as_deref()), selectors(None)),
                    )
                    .await
                    {
                        Ok(t) => table = Some(t),
                        Err(e) => {
                            failed = true;
                            eprintln!("{}", format_error(&e.into()));
                        }
                    }
                } else {
                    for name in names {
                        match get_table(ctx, &r.object_path(ns.as_deref(), name)).await {
                            Ok(t) => match &mut table {
                                None => table = Some(t),
                                Some(acc) => {
                                    let rows = t["rows"].as_array().cloned().unwrap_or_default();
                                    acc["rows"]
                                        .as_array_mut()
                                        .expect("tables have rows")
                                        .extend(rows);
                                }
                            },
                            Err(e) if args.ignore_not_found && super::is_not_found(&e) => {}
                            Err(e) => {
                                failed = true;
                                eprintln!("{}", format_error(&e.into()));
                            }
                        }
                    }
                }
                let Some(table) = table else { continue };
                if table["rows"].as_array().is_none_or(Vec::is_empty) {
                    if args.watch {
                        last = Some((table, table_options(&args, r, many)));
                    }
                    continue;
                }
                let opts = table_options(&args, r, many);
                if !first_table {
                    println!();
                }
                first_table = false;
                printed_any = true;
                print!("{}", format_table(&table, &opts));
                last = Some((table, opts));
            }
            if !printed_any && !failed && !args.ignore_not_found {
                eprintln!(
                    "{}",
                    no_resources(&resolved, args.all_namespaces, &ctx.namespace)
                );
            }
            if args.watch
                && let (Some((r, names)), Some((table, opts))) = (resolved.first(), last)
            {
                let widths = if printed_any {
                    column_widths(&table, &opts)
                } else {
                    Vec::new()
                };
                watch_table(
                    ctx,
                    r,
                    ns_for(r).as_deref(),
                    names,
                    &args,
                    table,
                    opts,
                    widths,
                    printed_any,
                )
                .await?;
            }
        }
        "yaml" | "json" | "name" => {
            let mut objects = Vec::new();
            let mut names_out = Vec::new();
            let mut listed = false;
            for (r, names) in &resolved {
                let ns = ns_for(r);
                let mut fetched: Vec<Value> = Vec::new();
                if names.is_empty() {
                    listed = true;
                    match ctx
                        .get_json(&format!(
                            "{}{}",
                            r.collection_path(ns.as_deref()),
                            selectors(None)
                        ))
                        .await
                    {
                        Ok(list) => {
                            fetched.extend(list["items"].as_array().cloned().unwrap_or_default())
                        }
                        Err(e) => {
                            failed = true;
                            eprintln!("{}", format_error(&e.into()));
                        }
                    }
                } else {
                    for name in names {
                        match ctx.get_json(&r.object_path(ns.as_deref(), name)).await {
                            Ok(o) => fetched.push(o),
                            Err(e) if args.ignore_not_found && super::is_not_found(&e) => {}
                            Err(e) => {
                                failed = true;
                                eprintln!("{}", format_error(&e.into()));
                            }
                        }
                    }
                }
                for mut o in fetched {
                    // List items carry no type meta; kubectl fills it in.
                    o["apiVersion"] = json!(r.api_version());
                    o["kind"] = json!(r.kind);
                    names_out.push(format!(
                        "{}/{}",
                        r.kind_prefix(),
                        o["metadata"]["name"].as_str().unwrap_or_default()
                    ));
                    objects.push(o);
                }
            }
            if format == "name" {
                for n in names_out {
                    println!("{n}");
                }
            } else if !objects.is_empty() || listed {
                print!(
                    "{}",
                    format_objects(&objects, &format, listed || objects.len() > 1)?
                );
            }
            if args.watch {
                let (r, names) = &resolved[0];
                watch_objects(ctx, r, ns_for(r).as_deref(), names, &args, &format).await?;
            }
        }
        other => bail!(
            "unable to match a printer suitable for the output format \"{other}\", allowed formats are: json,name,wide,yaml"
        ),
    }
    if failed { Err(Reported.into()) } else { Ok(()) }
}

fn table_options(args: &GetArgs, r: &Resource, many: bool) -> TableOptions {
    TableOptions {
        wide: args.output.as_deref() == Some("wide"),
        with_namespace: args.all_namespaces && r.namespaced,
        kind_prefix: many.then(|| r.kind_prefix()),
        show_labels: args.show_labels,
        no_headers: args.no_headers,
    }
}

/// kubectl's message for an empty result.
fn no_resources(resolved: &[(Resource, Vec<String>)], all_namespaces: bool, ns: &str) -> String {
    if all_namespaces || resolved.iter().all(|(r, _)| !r.namespaced) {
        "No resources found".into()
    } else {
        format!("No resources found in {ns} namespace.")
    }
}

/// Column widths (cell width + 3, at least 6) of a printed table, for aligning watched rows.
fn column_widths(table: &Value, opts: &TableOptions) -> Vec<usize> {
    let (header, rows) = table_lines(table, opts);
    let mut widths: Vec<usize> = Vec::new();
    for line in header.iter().chain(&rows) {
        let cells: Vec<&str> = line.split('\t').collect();
        for (i, c) in cells.iter().enumerate().take(cells.len().saturating_sub(1)) {
            if widths.len() <= i {
                widths.push(6);
            }
            widths[i] = widths[i].max(c.chars().count() + 3);
        }
    }
    widths
}

fn pad_row(line: &str, widths: &mut Vec<usize>) -> String {
    let cells: Vec<&str> = line.split('\t').collect();
    let mut out = String::new();
    for (i, c) in cells.iter().enumerate() {
        out.push_str(c);
        if i + 1 < cells.len() {
            if widths.len() <= i {
                widths.push(6);
            }
            widths[i] = widths[i].max(c.chars().count() + 3);
            out.extend(std::iter::repeat_n(' ', widths[i] - c.chars().count()));
        }
    }
    out
}

fn watch_path(
    r: &Resource,
    ns: Option<&str>,
    names: &[String],
    args: &GetArgs,
    rv: Option<&str>,
) -> String {
    let name_selector = names.first().map(|n| format!("metadata.name={n}"));
    format!(
        "{}{}",
        r.collection_path(ns),
        query(&[
            ("watch", Some("true")),
            ("resourceVersion", rv.filter(|v| !v.is_empty())),
            ("labelSelector", args.selector.as_deref()),
            (
                "fieldSelector",
                name_selector.as_deref().or(args.field_selector.as_deref())
            ),
        ])
    )
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the pieces are the printed state"
)]
async fn watch_table(
    ctx: &Ctx,
    r: &Resource,
    ns: Option<&str>,
    names: &[String],
    args: &GetArgs,
    initial: Value,
    opts: TableOptions,
    mut widths: Vec<usize>,
    mut header_printed: bool,
) -> Result<()> {
    let mut rv = initial["metadata"]["resourceVersion"]
        .as_str()
        .map(String::from);
    loop {
        let req = http::Request::builder()
            .uri(watch_path(r, ns, names, args, rv.as_deref()))
            .header(http::header::ACCEPT, TABLE_ACCEPT)
            .body(Vec::new())
            .map_err(kube::Error::HttpError)?;
        let mut events = ctx.client.request_events::<Value>(req).await?.boxed();
        while let Some(ev) = events.try_next().await? {
            let obj = match ev {
                WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o,
                WatchEvent::Bookmark(b) => {
                    rv = Some(b.metadata.resource_version);
                    continue;
                }
                WatchEvent::Error(e) if e.code == 410 => {
                    rv = None;
                    break;
                }
                WatchEvent::Error(e) => return Err(kube::Error::Api(e.boxed()).into()),
            };
            let table = if obj["kind"] == "Table" {
                obj
            } else {
                fallback_table(&obj)
            };
            if let Some(v) = table["rows"][0]["object"]["metadata"]["resourceVersion"]
                .as_str()
                .or(table["metadata"]["resourceVersion"].as_str())
            {
                rv = Some(v.to_string());
            }
            let (header, rows) = table_lines(&table, &opts);
            if !header_printed && !opts.no_headers {
                println!("{}", pad_row(&header[0], &mut widths));
            }
            header_printed = true;
            for row in rows {
                println!("{}", pad_row(&row, &mut widths));
            }
        }
    }
}

async fn watch_objects(
    ctx: &Ctx,
    r: &Resource,
    ns: Option<&str>,
    names: &[String],
    args: &GetArgs,
    format: &str,
) -> Result<()> {
    let list = ctx
        .get_json(&format!(
            "{}{}",
            r.collection_path(ns),
            query(&[("labelSelector", args.selector.as_deref())])
        ))
        .await?;
    let mut rv = list["metadata"]["resourceVersion"]
        .as_str()
        .map(String::from);
    loop {
        let req = http::Request::builder()
            .uri(watch_path(r, ns, names, args, rv.as_deref()))
            .body(Vec::new())
            .map_err(kube::Error::HttpError)?;
        let mut events = ctx.client.request_events::<Value>(req).await?.boxed();
        while let Some(ev) = events.try_next().await? {
            let mut obj = match ev {
                WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o,
                WatchEvent::Bookmark(b) => {
                    rv = Some(b.metadata.resource_version);
                    continue;
                }
                WatchEvent::Error(e) if e.code == 410 => {
                    rv = None;
                    break;
                }
                WatchEvent::Error(e) => return Err(kube::Error::Api(e.boxed()).into()),
            };
            rv = obj["metadata"]["resourceVersion"]
                .as_str()
                .map(String::from);
            obj["apiVersion"] = json!(r.api_version());
            obj["kind"] = json!(r.kind);
            match format {
                "name" => println!(
                    "{}/{}",
                    r.kind_prefix(),
                    obj["metadata"]["name"].as_str().unwrap_or_default()
                ),
                "json" => print!("{}", format_objects(&[obj], "json", false)?),
                _ => print!("---\n{}", format_objects(&[obj], "yaml", false)?),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        assert_eq!(query(&[("a", None)]), "");
        assert_eq!(
            query(&[
                ("labelSelector", Some("app=web,tier in (a,b)")),
                ("x", None)
            ]),
            "?labelSelector=app%3Dweb%2Ctier+in+%28a%2Cb%29"
        );
    }

    #[test]
    fn watched_rows_keep_alignment() {
        let mut widths = vec![6, 8];
        assert_eq!(
            pad_row("web\t1/1\tRunning", &mut widths),
            "web   1/1     Running"
        );
        assert_eq!(
            pad_row("a-much-longer-name\t0/1\tPending", &mut widths),
            "a-much-longer-name   0/1     Pending"
        );
        assert_eq!(widths[0], 21);
    }

    #[test]
    fn empty_messages() {
        let rs = super::super::discovery::tests::sample();
        let pods = (rs.resolve("po").unwrap().clone(), vec![]);
        let ns = (rs.resolve("ns").unwrap().clone(), vec![]);
        assert_eq!(
            no_resources(std::slice::from_ref(&pods), false, "dev"),
            "No resources found in dev namespace."
        );
        assert_eq!(
            no_resources(std::slice::from_ref(&pods), true, "dev"),
            "No resources found"
        );
        assert_eq!(no_resources(&[ns], false, "dev"), "No resources found");
    }

    #[test]
    fn fallback_tables() {
        let list = json!({"kind": "PodList", "metadata": {"resourceVersion": "7"}, "items": [{"metadata": {"name": "a", "creationTimestamp": "2024-01-01T00:00:00Z"}}]});
        let t = fallback_table(&list);
        assert_eq!(t["rows"][0]["cells"], json!(["a", "2024-01-01T00:00:00Z"]));
        assert_eq!(t["metadata"]["resourceVersion"], "7");
    }
}
