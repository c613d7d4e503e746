//! `set image`: changes container images of a pod or of a workload's pod template with a
//! strategic merge patch (containers merge by name), printing `<type>/<name> image updated`.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{Ctx, split_type_names};

#[derive(Args, Debug)]
pub struct SetArgs {
    #[command(subcommand)]
    pub command: SetCommand,
}

#[derive(Subcommand, Debug)]
pub enum SetCommand {
    /// Update the image of a pod template: TYPE/NAME CONTAINER_NAME_1=CONTAINER_IMAGE_1 ...
    Image(ImageArgs),
}

#[derive(Args, Debug)]
pub struct ImageArgs {
    /// TYPE NAME... or TYPE/NAME..., then CONTAINER=IMAGE pairs (`*` for every container).
    #[arg(required = true)]
    pub args: Vec<String>,
}

pub async fn run(ctx: &Ctx, args: SetArgs) -> Result<()> {
    let SetCommand::Image(args) = args.command;
    let (resources, images): (Vec<String>, Vec<String>) =
        args.args.into_iter().partition(|a| !a.contains('='));
    if images.is_empty() {
        bail!("at least one image update is required");
    }
    let images: Vec<(String, String)> = images
        .iter()
        .filter_map(|a| a.split_once('='))
        .map(|(c, i)| (c.to_string(), i.to_string()))
        .collect();
    for (ty, names) in split_type_names(&resources)? {
        let r = ctx.resolve(&ty).await?;
        if names.is_empty() {
            bail!("resource(s) were provided, but no name was specified");
        }
        for name in names {
            let path = r.object_path(Some(&ctx.namespace), &name);
            let obj = ctx.get_json(&path).await?;
            let Some(patch) = image_patch(&r.kind, &obj, &images)? else {
                continue;
            };
            ctx.request(
                http::Method::PATCH,
                &path,
                Some(&patch),
                Some("application/strategic-merge-patch+json"),
            )
            .await?;
            println!("{}/{name} image updated", r.kind_prefix());
        }
    }
    Ok(())
}

/// Where a kind keeps its pod spec.
fn pod_spec_path(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &["spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => &["spec", "template", "spec"],
    }
}

/// The strategic merge patch that sets `images` (`container → image`, `*` for all) on `obj`,
/// or `None` when every image is already set.
pub fn image_patch(kind: &str, obj: &Value, images: &[(String, String)]) -> Result<Option<Value>> {
    let path = pod_spec_path(kind);
    let spec = path
        .iter()
        .try_fold(obj, |v, k| v.get(*k))
        .ok_or_else(|| anyhow::anyhow!("{kind} has no pod template"))?;
    let mut patch_spec = serde_json::Map::new();
    for list in ["initContainers", "containers"] {
        let mut changed = Vec::new();
        for c in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let cname = c.get("name").and_then(Value::as_str).unwrap_or_default();
            let want = images
                .iter()
                .find(|(n, _)| n == cname)
                .or_else(|| images.iter().find(|(n, _)| n == "*"));
            if let Some((_, image)) = want
                && c.get("image").and_then(Value::as_str) != Some(image.as_str())
            {
                changed.push(json!({"name": cname, "image": image}));
            }
        }
        if !changed.is_empty() {
            patch_spec.insert(list.into(), Value::Array(changed));
        }
    }
    for (n, _) in images.iter().filter(|(n, _)| n != "*") {
        let known = ["initContainers", "containers"]
            .iter()
            .flat_map(|l| spec.get(*l).and_then(Value::as_array).into_iter().flatten())
            .any(|c| c.get("name").and_then(Value::as_str) == Some(n));
        if !known {
            bail!("unable to find container named \"{n}\"");
        }
    }
    if patch_spec.is_empty() {
        return Ok(None);
    }
    let mut patch = Value::Object(patch_spec);
    for key in path.iter().rev() {
        patch = json!({ *key: patch });
    }
    Ok(Some(patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy() -> Value {
        json!({"spec": {"template": {"spec": {
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"name": "web", "image": "web:v1"}, {"name": "side", "image": "busybox"}]}}}})
    }

    #[test]
    fn patches_named_containers_only() {
        let p = image_patch("Deployment", &deploy(), &[("web".into(), "web:v2".into())])
            .unwrap()
            .unwrap();
        assert_eq!(
            p,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:v2"}]}}}})
        );
        let p = image_patch("Deployment", &deploy(), &[("*".into(), "x:1".into())])
            .unwrap()
            .unwrap();
        assert_eq!(
            p["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            p["spec"]["template"]["spec"]["initContainers"][0]["image"],
            "x:1"
        );
        assert!(
            image_patch("Deployment", &deploy(), &[("web".into(), "web:v1".into())])
                .unwrap()
                .is_none()
        );
        let e = image_patch("Deployment", &deploy(), &[("nope".into(), "x".into())]).unwrap_err();
        assert_eq!(e.to_string(), "unable to find container named \"nope\"");
        let pod = json!({"spec": {"containers": [{"name": "c", "image": "a"}]}});
        assert_eq!(
            image_patch("Pod", &pod, &[("c".into(), "b".into())])
                .unwrap()
                .unwrap(),
            json!({"spec": {"containers": [{"name": "c", "image": "b"}]}})
        );
    }
}
