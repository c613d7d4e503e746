//! `label` and `annotate`: `key=value` to set, `key-` to remove, with kubectl's `--overwrite`
//! rule (changing an existing key's value needs it). Changes are sent as a JSON merge patch.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Map, Value, json};

use super::{Ctx, Reported, format_error, split_type_names};

#[derive(Args, Debug)]
pub struct LabelArgs {
    /// TYPE NAME... or TYPE/NAME..., then KEY_1=VAL_1 ... KEY_N=VAL_N or KEY-.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Allow existing keys to be overwritten.
    #[arg(long)]
    pub overwrite: bool,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Select all resources of the given type in the namespace.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Labels,
    Annotations,
}

impl Field {
    fn key(self) -> &'static str {
        match self {
            Field::Labels => "labels",
            Field::Annotations => "annotations",
        }
    }
    fn past(self) -> &'static str {
        match self {
            Field::Labels => "labeled",
            Field::Annotations => "annotated",
        }
    }
}

/// Requested changes: `Some(v)` sets, `None` removes.
pub type Changes = BTreeMap<String, Option<String>>;

/// Splits the arguments into resource arguments and changes.
pub fn parse_changes(args: &[String], field: Field) -> Result<(Vec<String>, Changes)> {
    let mut resources = Vec::new();
    let mut changes = Changes::new();
    for a in args {
        if let Some((k, v)) = a.split_once('=') {
            validate_key(k)?;
            if field == Field::Labels {
                validate_label_value(v)?;
            }
            changes.insert(k.to_string(), Some(v.to_string()));
        } else if let Some(k) = a.strip_suffix('-').filter(|k| !k.is_empty()) {
            validate_key(k)?;
            changes.insert(k.to_string(), None);
        } else if !changes.is_empty() {
            bail!(
                "all resources must be specified before {} changes: {a}",
                field.key().trim_end_matches('s')
            );
        } else {
            resources.push(a.clone());
        }
    }
    if changes.is_empty() {
        bail!(
            "at least one {} update is required",
            field.key().trim_end_matches('s')
        );
    }
    Ok((resources, changes))
}

/// Applies `changes` to the current map, returning the merge patch for the field (or `None`
/// when nothing changes). Errors like kubectl when a key would change without `overwrite`.
pub fn plan(
    current: &Map<String, Value>,
    changes: &Changes,
    overwrite: bool,
    field: Field,
) -> Result<Option<Value>> {
    let mut patch = Map::new();
    for (k, want) in changes {
        let have = current.get(k).and_then(Value::as_str);
        match want {
            Some(v) => {
                if let Some(old) = have
                    && old != v
                    && !overwrite
                {
                    bail!("'{k}' already has a value ({old}), and --overwrite is false");
                }
                if have != Some(v.as_str()) {
                    patch.insert(k.clone(), json!(v));
                }
            }
            None => {
                if have.is_some() {
                    patch.insert(k.clone(), Value::Null);
                } else {
                    eprintln!(
                        "{} \"{k}\" not found.",
                        if field == Field::Labels {
                            "label"
                        } else {
                            "annotation"
                        }
                    );
                }
            }
        }
    }
    Ok((!patch.is_empty()).then(|| json!({"metadata": {field.key(): patch}})))
}

pub async fn run(ctx: &Ctx, args: LabelArgs, field: Field) -> Result<()> {
    let (resource_args, changes) = parse_changes(&args.args, field)?;
    let mut failed = false;
    for (ty, names) in split_type_names(&resource_args)? {
        let r = ctx.resolve(&ty).await?;
        let ns = if r.namespaced {
            Some(ctx.namespace.clone())
        } else {
            None
        };
        if names.is_empty() && !args.all && args.selector.is_none() {
            bail!("resource(s) were provided, but no name was specified");
        }
        let (objects, missing) = ctx
            .named_or_selected(&r, ns.as_deref(), &names, args.selector.as_deref())
            .await?;
        failed |= missing;
        for o in objects {
            let name = o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let current = o["metadata"][field.key()]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let result = async {
                match plan(&current, &changes, args.overwrite, field)? {
                    Some(patch) => {
                        ctx.request(
                            http::Method::PATCH,
                            &r.object_path(ns.as_deref(), &name),
                            Some(&patch),
                            Some("application/merge-patch+json"),
                        )
                        .await?;
                        println!("{}/{name} {}", r.kind_prefix(), field.past());
                    }
                    None => println!("{}/{name} not {}", r.kind_prefix(), field.past()),
                }
                anyhow::Ok(())
            }
            .await;
            if let Err(e) = result {
                failed = true;
                eprintln!("{}", format_error(&e));
            }
        }
    }
    if failed { Err(Reported.into()) } else { Ok(()) }
}

/// A qualified name with an optional DNS-subdomain prefix (`example.com/name`).
fn validate_key(k: &str) -> Result<()> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
    });
    if !name_ok || !prefix_ok {
        bail!(
            "invalid label spec: {k}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        );
    }
    Ok(())
}

fn validate_label_value(v: &str) -> Result<()> {
    let ok = v.is_empty()
        || (v.len() <= 63
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()));
    if !ok {
        bail!(
            "invalid label value: \"{v}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_changes() {
        let (res, ch) = parse_changes(
            &s(&["pod", "web", "app=web", "old-", "example.com/tier=fe"]),
            Field::Labels,
        )
        .unwrap();
        assert_eq!(res, s(&["pod", "web"]));
        assert_eq!(ch["app"], Some("web".into()));
        assert_eq!(ch["old"], None);
        assert_eq!(ch["example.com/tier"], Some("fe".into()));
        let (res, ch) = parse_changes(&s(&["pod/web", "gone-"]), Field::Labels).unwrap();
        assert_eq!((res, ch.len()), (s(&["pod/web"]), 1));
        assert!(parse_changes(&s(&["pod", "web"]), Field::Labels).is_err());
        assert!(parse_changes(&s(&["pod", "web", "bad key=x"]), Field::Labels).is_err());
        assert!(parse_changes(&s(&["pod", "web", "k=has space"]), Field::Labels).is_err());
        // Annotation values are free-form.
        assert!(
            parse_changes(
                &s(&["pod", "web", "note=has space: ok"]),
                Field::Annotations
            )
            .is_ok()
        );
        assert!(parse_changes(&s(&["pod", "web", "a=b", "pod2"]), Field::Labels).is_err());
    }

    #[test]
    fn overwrite_rules() {
        let current: Map<String, Value> =
            serde_json::from_value(json!({"app": "web", "tier": "fe"})).unwrap();
        let ch = |pairs: &[(&str, Option<&str>)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(String::from)))
                .collect::<Changes>()
        };
        let err = plan(&current, &ch(&[("app", Some("db"))]), false, Field::Labels).unwrap_err();
        assert_eq!(
            err.to_string(),
            "'app' already has a value (web), and --overwrite is false"
        );
        assert_eq!(
            plan(&current, &ch(&[("app", Some("db"))]), true, Field::Labels).unwrap(),
            Some(json!({"metadata": {"labels": {"app": "db"}}}))
        );
        // Same value: no error, nothing to do.
        assert_eq!(
            plan(&current, &ch(&[("app", Some("web"))]), false, Field::Labels).unwrap(),
            None
        );
        assert_eq!(
            plan(
                &current,
                &ch(&[("tier", None), ("new", Some("x")), ("absent", None)]),
                false,
                Field::Annotations
            )
            .unwrap(),
            Some(json!({"metadata": {"annotations": {"tier": null, "new": "x"}}}))
        );
    }
}
