//! `scale`: sets `spec.replicas` through the `scale` subresource, with kubectl's
//! `--current-replicas` and `--resource-version` preconditions.

use anyhow::{Result, bail};
use clap::Args;
use serde_json::json;

use super::{Ctx, split_type_names};

#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// TYPE NAME... or TYPE/NAME...
    #[arg(required = true)]
    pub args: Vec<String>,
    /// The new desired number of replicas.
    #[arg(long)]
    pub replicas: i32,
    /// Precondition for current size: only scale if the resource has this many replicas now.
    #[arg(long, default_value_t = -1)]
    pub current_replicas: i32,
    /// Precondition for resource version: only scale if it matches.
    #[arg(long)]
    pub resource_version: Option<String>,
}

pub async fn run(ctx: &Ctx, args: ScaleArgs) -> Result<()> {
    if args.replicas < 0 {
        bail!(
            "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0"
        );
    }
    for (ty, names) in split_type_names(&args.args)? {
        let r = ctx.resolve(&ty).await?;
        if names.is_empty() {
            bail!("resource(s) were provided, but no name was specified");
        }
        for name in names {
            let path = format!("{}/scale", r.object_path(Some(&ctx.namespace), &name));
            if args.current_replicas >= 0 || args.resource_version.is_some() {
                let scale = ctx.get_json(&path).await?;
                let current = scale
                    .pointer("/spec/replicas")
                    .and_then(|v| v.as_i64())
                    .unwrap_or(0);
                if args.current_replicas >= 0 && current != i64::from(args.current_replicas) {
                    bail!(
                        "Expected replicas to be {}, was {current}",
                        args.current_replicas
                    );
                }
                let rv = scale
                    .pointer("/metadata/resourceVersion")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default();
                if let Some(want) = args.resource_version.as_deref().filter(|w| *w != rv) {
                    bail!("Expected resource version to be {want}, was {rv}");
                }
            }
            let patch = json!({"spec": {"replicas": args.replicas}});
            ctx.request(
                http::Method::PATCH,
                &path,
                Some(&patch),
                Some("application/merge-patch+json"),
            )
            .await?;
            println!("{}/{name} scaled", r.kind_prefix());
        }
    }
    Ok(())
}
