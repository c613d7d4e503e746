//! `apply -f` (server-side apply, reporting `created|configured|unchanged` like kubectl's
//! client-side apply) and `create -f` (plain POST).

use anyhow::Result;
use clap::Args;
use serde_json::Value;

use super::manifest::{self, Manifest};
use super::{Ctx, Reported, is_not_found, server_error};

/// Field manager recorded in `managedFields` for everything this CLI applies.
pub const FIELD_MANAGER: &str = "ekubectl";

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// The files that contain the configurations to apply (file, directory, or - for stdin).
    #[arg(short = 'f', long = "filename", required = true)]
    pub filename: Vec<String>,
    /// Process the directory used in -f recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
}

/// Where a manifest goes: its resource, namespace and name.
pub struct Target {
    pub resource: super::discovery::Resource,
    pub namespace: Option<String>,
    pub name: String,
}

/// Resolves a manifest's resource and fills in the namespace in effect.
pub async fn target(ctx: &Ctx, m: &mut Manifest) -> Result<Target> {
    let api_version = m.object["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let kind = m.object["kind"].as_str().unwrap_or_default().to_string();
    let resource = ctx.resolve_kind(&api_version, &kind).await?;
    let namespace = if resource.namespaced {
        let ns = m.object["metadata"]["namespace"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| ctx.namespace.clone());
        m.object["metadata"]["namespace"] = Value::String(ns.clone());
        Some(ns)
    } else {
        None
    };
    let name = m.object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok(Target {
        resource,
        namespace,
        name,
    })
}

pub async fn apply(ctx: &Ctx, args: ApplyArgs) -> Result<()> {
    let manifests = manifest::read_all(&args.filename, args.recursive)?;
    let mut failed = false;
    for mut m in manifests {
        if let Err(e) = apply_one(ctx, &mut m).await {
            failed = true;
            eprintln!("{}", describe_failure(&e, "applying", &m.source));
        }
    }
    if failed { Err(Reported.into()) } else { Ok(()) }
}

async fn apply_one(ctx: &Ctx, m: &mut Manifest) -> Result<()> {
    let t = target(ctx, m).await?;
    if t.name.is_empty() {
        anyhow::bail!(
            "error when retrieving current configuration of {}: resource name may not be empty",
            m.source
        );
    }
    let path = t.resource.object_path(t.namespace.as_deref(), &t.name);
    let before = match ctx.get_json(&path).await {
        Ok(v) => Some(v),
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(e.into()),
    };
    let query = format!("{path}?fieldManager={FIELD_MANAGER}&force=true");
    let after = ctx
        .request(
            http::Method::PATCH,
            &query,
            Some(&m.object),
            Some("application/apply-patch+yaml"),
        )
        .await?;
    let verb = match before {
        None => "created",
        Some(b) if b["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"] => {
            "unchanged"
        }
        Some(_) => "configured",
    };
    println!("{}/{} {verb}", t.resource.kind_prefix(), t.name);
    Ok(())
}

/// `create -f`.
pub async fn create_from_files(ctx: &Ctx, files: &[String], recursive: bool) -> Result<()> {
    let manifests = manifest::read_all(files, recursive)?;
    let mut failed = false;
    for mut m in manifests {
        let result = async {
            let t = target(ctx, &mut m).await?;
            let created = ctx
                .request(
                    http::Method::POST,
                    &t.resource.collection_path(t.namespace.as_deref()),
                    Some(&m.object),
                    None,
                )
                .await?;
            println!(
                "{}/{} created",
                t.resource.kind_prefix(),
                created["metadata"]["name"].as_str().unwrap_or(&t.name)
            );
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = result {
            failed = true;
            eprintln!("{}", describe_failure(&e, "creating", &m.source));
        }
    }
    if failed { Err(Reported.into()) } else { Ok(()) }
}

/// kubectl's `Error from server (AlreadyExists): error when creating "pod.yaml": …`.
fn describe_failure(e: &anyhow::Error, verb: &str, source: &str) -> String {
    if let Some(kube::Error::Api(s)) = e.downcast_ref::<kube::Error>() {
        return server_error(
            &s.reason,
            &format!("error when {verb} \"{source}\": {}", s.message),
        );
    }
    super::format_error(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_messages() {
        let status = kube::core::Status::failure("pods \"web\" already exists", "AlreadyExists")
            .with_code(409);
        let e = anyhow::Error::from(kube::Error::Api(status.boxed()));
        assert_eq!(
            describe_failure(&e, "creating", "pod.yaml"),
            "Error from server (AlreadyExists): error when creating \"pod.yaml\": pods \"web\" already exists"
        );
        assert_eq!(
            describe_failure(&anyhow::anyhow!("nope"), "applying", "x"),
            "error: nope"
        );
    }
}
