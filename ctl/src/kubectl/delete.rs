//! `delete`: by file (`-f`), by `TYPE NAME...`/`TYPE/NAME`, by label selector or `--all`, with
//! `--grace-period`, `--force` and `--ignore-not-found`; prints `pod "web" deleted`.

use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Value, json};

use super::discovery::Resource;
use super::get::query;
use super::{Ctx, Reported, format_error, is_not_found, manifest, split_type_names};

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// TYPE NAME..., TYPE/NAME..., or TYPE with -l/--all.
    pub args: Vec<String>,
    /// Files (or directories, or - for stdin) naming the resources to delete.
    #[arg(short = 'f', long = "filename")]
    pub filename: Vec<String>,
    /// Process the directory used in -f recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Delete all resources of the given type in the namespace.
    #[arg(long)]
    pub all: bool,
    /// Delete across all namespaces (with -l or --all).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Period of time in seconds given to the resource to terminate gracefully; -1 uses the default.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub grace_period: i64,
    /// Immediately remove resources from the API and bypass graceful deletion.
    #[arg(long)]
    pub force: bool,
    /// Treat "resource not found" as a successful delete.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Whether to wait for resources to be gone (accepted for compatibility; deletion is not awaited).
    #[arg(long, default_missing_value = "true", num_args = 0..=1)]
    pub wait: Option<bool>,
}

/// The DeleteOptions body for the flags.
pub fn delete_options(grace_period: i64, force: bool) -> Value {
    let mut opts =
        json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"});
    let grace = if force && grace_period < 0 {
        0
    } else {
        grace_period
    };
    if grace >= 0 {
        // --force with 0 means "immediately"; the API wants 0, kubectl sends 1 without --force.
        opts["gracePeriodSeconds"] = json!(if grace == 0 && !force { 1 } else { grace });
    }
    opts
}

pub async fn run(ctx: &Ctx, args: DeleteArgs) -> Result<()> {
    if args.force && args.grace_period <= 0 {
        eprintln!(
            "Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely."
        );
    }
    let body = delete_options(args.grace_period, args.force);
    let mut targets: Vec<(Resource, Option<String>, String)> = Vec::new();
    if !args.filename.is_empty() {
        for mut m in manifest::read_all(&args.filename, args.recursive)? {
            let t = super::apply::target(ctx, &mut m).await?;
            targets.push((t.resource, t.namespace, t.name));
        }
    } else {
        for (ty, names) in split_type_names(&args.args)? {
            let r = ctx.resolve(&ty).await?;
            let ns = if r.namespaced {
                Some(ctx.namespace.clone())
            } else {
                None
            };
            if names.is_empty() {
                if !args.all && args.selector.is_none() {
                    bail!("resource(s) were provided, but no name was specified");
                }
                let list_ns = if args.all_namespaces {
                    None
                } else {
                    ns.clone()
                };
                let list = ctx
                    .get_json(&format!(
                        "{}{}",
                        r.collection_path(list_ns.as_deref()),
                        query(&[("labelSelector", args.selector.as_deref())])
                    ))
                    .await?;
                for item in list["items"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                    let item_ns = item["metadata"]["namespace"].as_str().map(String::from);
                    targets.push((
                        r.clone(),
                        item_ns,
                        item["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    ));
                }
            } else {
                if args.all || args.selector.is_some() {
                    bail!("name cannot be provided when a selector or --all is specified");
                }
                targets.extend(names.into_iter().map(|n| (r.clone(), ns.clone(), n)));
            }
        }
        if targets.is_empty() && !args.ignore_not_found {
            println!("No resources found");
        }
    }
    let mut failed = false;
    for (r, ns, name) in targets {
        match ctx
            .request(
                http::Method::DELETE,
                &r.object_path(ns.as_deref(), &name),
                Some(&body),
                None,
            )
            .await
        {
            Ok(_) => println!("{}", deleted_message(&r, &name, args.force)),
            Err(e) if args.ignore_not_found && is_not_found(&e) => {}
            Err(e) => {
                failed = true;
                eprintln!("{}", format_error(&e.into()));
            }
        }
    }
    if failed { Err(Reported.into()) } else { Ok(()) }
}

/// `pod "web" deleted` (`force deleted` with --force).
pub fn deleted_message(r: &Resource, name: &str, force: bool) -> String {
    format!(
        "{} \"{name}\" {}deleted",
        r.kind_prefix(),
        if force { "force " } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        assert_eq!(
            delete_options(-1, false),
            json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
        );
        assert_eq!(delete_options(0, true)["gracePeriodSeconds"], 0);
        assert_eq!(delete_options(-1, true)["gracePeriodSeconds"], 0);
        assert_eq!(delete_options(0, false)["gracePeriodSeconds"], 1);
        assert_eq!(delete_options(30, false)["gracePeriodSeconds"], 30);
    }

    #[test]
    fn messages() {
        let rs = super::super::discovery::tests::sample();
        assert_eq!(
            deleted_message(rs.resolve("po").unwrap(), "web", false),
            "pod \"web\" deleted"
        );
        assert_eq!(
            deleted_message(rs.resolve("deploy").unwrap(), "web", true),
            "deployment.apps \"web\" force deleted"
        );
    }
}
