//! `rollout status|history|undo|restart|pause|resume`, as kubectl does them on the client:
//! `status` watches the object and prints kubectl's progress lines until the rollout is done;
//! `history` and `undo` read a Deployment's ReplicaSets (one per revision) and `undo` copies
//! the chosen revision's pod template back into the Deployment; `restart` stamps the template
//! with `kubectl.kubernetes.io/restartedAt`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use super::discovery::Resource;
use super::{Ctx, split_type_names};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
const HASH_LABEL: &str = "pod-template-hash";

#[derive(Args, Debug)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub command: RolloutCommand,
}

#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Show the status of the rollout.
    Status(StatusArgs),
    /// View rollout history.
    History(HistoryArgs),
    /// Undo a previous rollout.
    Undo(UndoArgs),
    /// Restart a resource.
    Restart(TargetArgs),
    /// Mark the provided resource as paused.
    Pause(TargetArgs),
    /// Resume a paused resource.
    Resume(TargetArgs),
}

#[derive(Args, Debug)]
pub struct TargetArgs {
    /// TYPE NAME... or TYPE/NAME...
    #[arg(required = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Watch the status of the rollout until it's done.
    #[arg(short = 'w', long, default_value_t = true, action = clap::ArgAction::Set)]
    pub watch: bool,
    /// Pin to a specific revision (Deployments); 0 means the latest.
    #[arg(long, default_value_t = 0)]
    pub revision: i64,
    /// The length of time to wait before ending watch, zero means never (e.g. 1s, 2m, 3h).
    #[arg(long, default_value = "0s", value_parser = ekube_api::flags::parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// See the details, including the pod template, of the revision specified.
    #[arg(long, default_value_t = 0)]
    pub revision: i64,
}

#[derive(Args, Debug)]
pub struct UndoArgs {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// The revision to roll back to; 0 means the previous one.
    #[arg(long, default_value_t = 0)]
    pub to_revision: i64,
}

pub async fn run(ctx: &Ctx, args: RolloutArgs) -> Result<()> {
    match args.command {
        RolloutCommand::Status(a) => {
            for (r, name) in targets(ctx, &a.args).await? {
                status(ctx, &r, &name, &a).await?;
            }
        }
        RolloutCommand::History(a) => {
            for (r, name) in targets(ctx, &a.args).await? {
                history(ctx, &r, &name, a.revision).await?;
            }
        }
        RolloutCommand::Undo(a) => {
            for (r, name) in targets(ctx, &a.args).await? {
                undo(ctx, &r, &name, a.to_revision).await?;
            }
        }
        RolloutCommand::Restart(a) => {
            for (r, name) in targets(ctx, &a.args).await? {
                let obj = ctx
                    .get_json(&r.object_path(Some(&ctx.namespace), &name))
                    .await?;
                if obj.pointer("/spec/paused") == Some(&Value::Bool(true)) {
                    bail!(
                        "can't restart paused {} (run rollout resume first)",
                        r.kind.to_lowercase()
                    );
                }
                let now = ekube_api::time::now_rfc3339();
                let patch = json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}});
                patch_object(ctx, &r, &name, &patch).await?;
                println!("{}/{name} restarted", r.kind_prefix());
            }
        }
        RolloutCommand::Pause(a) => set_paused(ctx, &a, true).await?,
        RolloutCommand::Resume(a) => set_paused(ctx, &a, false).await?,
    }
    Ok(())
}

/// `pause` and `resume` (set `spec.paused`).
async fn set_paused(ctx: &Ctx, args: &TargetArgs, paused: bool) -> Result<()> {
    for (r, name) in targets(ctx, &args.args).await? {
        if r.kind != "Deployment" {
            bail!(
                "{}/{name} is not supported: only deployments can be {}",
                r.kind_prefix(),
                if paused { "paused" } else { "resumed" }
            );
        }
        let obj = ctx
            .get_json(&r.object_path(Some(&ctx.namespace), &name))
            .await?;
        let now = obj
            .pointer("/spec/paused")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let verb = if paused { "paused" } else { "resumed" };
        if now == paused {
            bail!(
                "{} \"{name}\" is {}",
                r.plural_prefix(),
                if paused {
                    "already paused"
                } else {
                    "not paused"
                }
            );
        }
        patch_object(ctx, &r, &name, &json!({"spec": {"paused": paused}})).await?;
        println!("{}/{name} {verb}", r.kind_prefix());
    }
    Ok(())
}

async fn targets(ctx: &Ctx, args: &[String]) -> Result<Vec<(Resource, String)>> {
    let mut out = Vec::new();
    for (ty, names) in split_type_names(args)? {
        let r = ctx.resolve(&ty).await?;
        if names.is_empty() {
            bail!("required resource not specified");
        }
        out.extend(names.into_iter().map(|n| (r.clone(), n)));
    }
    Ok(out)
}

async fn patch_object(ctx: &Ctx, r: &Resource, name: &str, patch: &Value) -> Result<()> {
    let path = r.object_path(Some(&ctx.namespace), name);
    ctx.request(
        http::Method::PATCH,
        &path,
        Some(patch),
        Some("application/strategic-merge-patch+json"),
    )
    .await?;
    Ok(())
}

fn int(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// kubectl's status line for `obj` and whether the rollout is done.
pub fn status_line(kind: &str, obj: &Value, revision: i64) -> Result<(String, bool)> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let generation = int(obj, "/metadata/generation");
    let observed = int(obj, "/status/observedGeneration");
    match kind {
        "Deployment" => {
            if revision > 0 {
                let current: i64 = obj
                    .pointer(&format!(
                        "/metadata/annotations/{}",
                        REVISION.replace('/', "~1")
                    ))
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                if current != revision {
                    bail!(
                        "desired revision ({revision}) is different from the running revision ({current})"
                    );
                }
            }
            if generation > observed {
                return Ok((
                    "Waiting for deployment spec update to be observed...\n".into(),
                    false,
                ));
            }
            let timed_out = obj
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded");
            if timed_out {
                bail!("deployment {name:?} exceeded its progress deadline");
            }
            let replicas = obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let updated = int(obj, "/status/updatedReplicas");
            let total = int(obj, "/status/replicas");
            let available = int(obj, "/status/availableReplicas");
            if updated < replicas {
                return Ok((
                    format!(
                        "Waiting for deployment {name:?} rollout to finish: {updated} out of {replicas} new replicas have been updated...\n"
                    ),
                    false,
                ));
            }
            if total > updated {
                return Ok((
                    format!(
                        "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...\n",
                        total - updated
                    ),
                    false,
                ));
            }
            if available < updated {
                return Ok((
                    format!(
                        "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available...\n"
                    ),
                    false,
                ));
            }
            Ok((
                format!("deployment {name:?} successfully rolled out\n"),
                true,
            ))
        }
        "DaemonSet" => {
            if obj
                .pointer("/spec/updateStrategy/type")
                .and_then(Value::as_str)
                .unwrap_or("RollingUpdate")
                != "RollingUpdate"
            {
                bail!("rollout status is only available for RollingUpdate strategy type");
            }
            if generation > observed {
                return Ok((
                    "Waiting for daemon set spec update to be observed...\n".into(),
                    false,
                ));
            }
            let desired = int(obj, "/status/desiredNumberScheduled");
            let updated = int(obj, "/status/updatedNumberScheduled");
            let available = int(obj, "/status/numberAvailable");
            if updated < desired {
                return Ok((
                    format!(
                        "Waiting for daemon set {name:?} rollout to finish: {updated} out of {desired} new pods have been updated...\n"
                    ),
                    false,
                ));
            }
            if available < desired {
                return Ok((
                    format!(
                        "Waiting for daemon set {name:?} rollout to finish: {available} of {desired} updated pods are available...\n"
                    ),
                    false,
                ));
            }
            Ok((
                format!("daemon set {name:?} successfully rolled out\n"),
                true,
            ))
        }
        "StatefulSet" => {
            let strategy = obj
                .pointer("/spec/updateStrategy/type")
                .and_then(Value::as_str)
                .unwrap_or("RollingUpdate");
            if strategy != "RollingUpdate" {
                bail!("rollout status is only available for RollingUpdate strategy type");
            }
            if observed == 0 || generation > observed {
                return Ok((
                    "Waiting for statefulset spec update to be observed...\n".into(),
                    false,
                ));
            }
            let replicas = obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let ready = int(obj, "/status/readyReplicas");
            let updated = int(obj, "/status/updatedReplicas");
            if ready < replicas {
                return Ok((
                    format!("Waiting for {} pods to be ready...\n", replicas - ready),
                    false,
                ));
            }
            if let Some(partition) = obj
                .pointer("/spec/updateStrategy/rollingUpdate/partition")
                .and_then(Value::as_i64)
            {
                if updated < replicas - partition {
                    return Ok((
                        format!(
                            "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...\n",
                            replicas - partition
                        ),
                        false,
                    ));
                }
                return Ok((
                    format!(
                        "partitioned roll out complete: {updated} new pods have been updated...\n"
                    ),
                    true,
                ));
            }
            let update_rev = obj
                .pointer("/status/updateRevision")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let current_rev = obj
                .pointer("/status/currentRevision")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if update_rev != current_rev {
                return Ok((
                    format!(
                        "waiting for statefulset rolling update to complete {updated} pods at revision {update_rev}...\n"
                    ),
                    false,
                ));
            }
            Ok((
                format!(
                    "statefulset rolling update complete {} pods at revision {current_rev}...\n",
                    int(obj, "/status/currentReplicas")
                ),
                true,
            ))
        }
        other => bail!("no status viewer has been implemented for {other}"),
    }
}

async fn status(ctx: &Ctx, r: &Resource, name: &str, args: &StatusArgs) -> Result<()> {
    let path = r.object_path(Some(&ctx.namespace), name);
    let obj = ctx.get_json(&path).await?;
    let (line, done) = status_line(&r.kind, &obj, args.revision)?;
    print!("{line}");
    if done || !args.watch {
        return Ok(());
    }
    let ar = ApiResource {
        group: r.group.clone(),
        version: r.version.clone(),
        api_version: r.api_version(),
        kind: r.kind.clone(),
        plural: r.plural.clone(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ctx.namespace, &ar);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(api, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut last = line;
    let follow = async {
        while let Some(ev) = stream.next().await {
            let Ok(obj) = ev else { continue };
            let obj = serde_json::to_value(&obj)?;
            let (line, done) = status_line(&r.kind, &obj, args.revision)?;
            if line != last {
                print!("{line}");
                last = line;
            }
            if done {
                return Ok(());
            }
        }
        bail!("watch closed before the rollout finished")
    };
    if args.timeout.is_zero() {
        follow.await
    } else {
        match tokio::time::timeout(args.timeout, follow).await {
            Ok(result) => result,
            Err(_) => bail!("timed out waiting for the condition"),
        }
    }
}

/// A Deployment's ReplicaSets by revision.
async fn revisions(ctx: &Ctx, deployment: &Value) -> Result<BTreeMap<i64, Value>> {
    let uid = deployment
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let rs = ctx.resolve("replicasets.apps").await?;
    let list = ctx
        .get_json(&rs.collection_path(Some(&ctx.namespace)))
        .await?;
    let mut out = BTreeMap::new();
    for item in list
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let owned = item
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|o| o["uid"] == uid && o["controller"] == true);
        let rev = item
            .pointer(&format!(
                "/metadata/annotations/{}",
                REVISION.replace('/', "~1")
            ))
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok());
        if let (true, Some(rev)) = (owned, rev) {
            out.insert(rev, item.clone());
        }
    }
    Ok(out)
}

fn deployment_only(r: &Resource, what: &str) -> Result<()> {
    if r.kind != "Deployment" {
        // DaemonSet and StatefulSet history lives in ControllerRevisions: the apiserver serves
        // them and the real kubectl reads them, this client does not yet.
        bail!(
            "no {what} has been implemented for {:?} in ekube kubectl (kubectl rollout works)",
            r.kind
        );
    }
    Ok(())
}

async fn history(ctx: &Ctx, r: &Resource, name: &str, revision: i64) -> Result<()> {
    deployment_only(r, "history viewer")?;
    let d = ctx
        .get_json(&r.object_path(Some(&ctx.namespace), name))
        .await?;
    let revs = revisions(ctx, &d).await?;
    if revision > 0 {
        let Some(rs) = revs.get(&revision) else {
            bail!("unable to find the specified revision")
        };
        println!("{}/{name} with revision #{revision}", r.kind_prefix());
        print!(
            "{}",
            describe_template(rs.pointer("/spec/template").unwrap_or(&Value::Null))
        );
        return Ok(());
    }
    println!("{}/{name} ", r.kind_prefix());
    let mut table = String::from("REVISION\tCHANGE-CAUSE\n");
    for (rev, rs) in &revs {
        let cause = rs
            .pointer(&format!(
                "/metadata/annotations/{}",
                CHANGE_CAUSE.replace('/', "~1")
            ))
            .and_then(Value::as_str)
            .unwrap_or("<none>");
        table.push_str(&format!("{rev}\t{cause}\n"));
    }
    println!("{}", super::output::tabwrite(&table, 0, 2));
    Ok(())
}

fn describe_template(t: &Value) -> String {
    let mut out = String::from("Pod Template:\n");
    let labels: Vec<String> = t
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    out.push_str(&format!(
        "  Labels:\t{}\n",
        if labels.is_empty() {
            "<none>".into()
        } else {
            labels.join("\n\t")
        }
    ));
    let annotations: Vec<String> = t
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default()))
        .collect();
    if !annotations.is_empty() {
        out.push_str(&format!("  Annotations:\t{}\n", annotations.join("\n\t")));
    }
    out.push_str("  Containers:\n");
    for c in t
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push_str(&format!("   {}:\n", c["name"].as_str().unwrap_or_default()));
        out.push_str(&format!(
            "    Image:\t{}\n",
            c["image"].as_str().unwrap_or_default()
        ));
        out.push_str(&format!(
            "    Port:\t{}\n",
            super::describe::container_ports(c)
        ));
    }
    out
}

/// The template without the `pod-template-hash` label, for comparing revisions.
fn strip_hash(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
    }
    t
}

/// The JSON patch `rollout undo` sends: the revision's template, and the ReplicaSet's
/// annotations except the ones the Deployment keeps for itself.
pub fn undo_patch(deployment: &Value, rs: &Value) -> Value {
    const SKIP: &[&str] = &[
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "kubectl.kubernetes.io/last-applied-configuration",
    ];
    let mut annotations = serde_json::Map::new();
    let current = deployment
        .pointer("/metadata/annotations")
        .and_then(Value::as_object);
    for k in SKIP {
        if let Some(v) = current.and_then(|c| c.get(*k)) {
            annotations.insert(k.to_string(), v.clone());
        }
    }
    for (k, v) in rs
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if !SKIP.contains(&k.as_str()) {
            annotations.insert(k.clone(), v.clone());
        }
    }
    let template = strip_hash(rs.pointer("/spec/template").unwrap_or(&Value::Null));
    json!([
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ])
}

async fn undo(ctx: &Ctx, r: &Resource, name: &str, to_revision: i64) -> Result<()> {
    deployment_only(r, "rollbacker")?;
    let path = r.object_path(Some(&ctx.namespace), name);
    let d = ctx.get_json(&path).await?;
    if d.pointer("/spec/paused") == Some(&Value::Bool(true)) {
        bail!(
            "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume deployment/{name}' and try again"
        );
    }
    let revs = revisions(ctx, &d).await?;
    let target = if to_revision > 0 {
        revs.get(&to_revision).ok_or_else(|| {
            anyhow::anyhow!("unable to find specified revision {to_revision} in history")
        })?
    } else {
        // The newest revision is the current one: go to the one before it.
        let mut newest_first = revs.iter().rev();
        newest_first.next();
        match newest_first.next() {
            Some((_, rs)) => rs,
            None => bail!("no rollout history found for deployment {name:?}"),
        }
    };
    let rev = target
        .pointer(&format!(
            "/metadata/annotations/{}",
            REVISION.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if strip_hash(target.pointer("/spec/template").unwrap_or(&Value::Null))
        == strip_hash(d.pointer("/spec/template").unwrap_or(&Value::Null))
    {
        println!(
            "{}/{name} skipped rollback (current template already matches revision {rev})",
            r.kind_prefix()
        );
        return Ok(());
    }
    ctx.request(
        http::Method::PATCH,
        &path,
        Some(&undo_patch(&d, target)),
        Some("application/json-patch+json"),
    )
    .await?;
    println!("{}/{name} rolled back", r.kind_prefix());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(status: Value) -> Value {
        json!({"metadata": {"name": "web", "generation": 2}, "spec": {"replicas": 3}, "status": status})
    }

    #[test]
    fn deployment_lines_match_kubectl() {
        let (l, done) = status_line(
            "Deployment",
            &deployment(json!({"observedGeneration": 1})),
            0,
        )
        .unwrap();
        assert_eq!(
            (l.as_str(), done),
            (
                "Waiting for deployment spec update to be observed...\n",
                false
            )
        );
        let s = json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3});
        assert_eq!(
            status_line("Deployment", &deployment(s), 0).unwrap().0,
            "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...\n"
        );
        let s = json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3});
        assert_eq!(
            status_line("Deployment", &deployment(s), 0).unwrap().0,
            "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...\n"
        );
        let s = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2});
        assert_eq!(
            status_line("Deployment", &deployment(s), 0).unwrap().0,
            "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available...\n"
        );
        let s = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3});
        assert_eq!(
            status_line("Deployment", &deployment(s), 0).unwrap(),
            ("deployment \"web\" successfully rolled out\n".into(), true)
        );
    }

    #[test]
    fn statefulset_and_daemonset_lines() {
        let sts = json!({"metadata": {"name": "db", "generation": 1}, "spec": {"replicas": 3, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}},
            "status": {"observedGeneration": 1, "readyReplicas": 3, "updatedReplicas": 3, "currentReplicas": 3}});
        assert_eq!(
            status_line("StatefulSet", &sts, 0).unwrap(),
            (
                "partitioned roll out complete: 3 new pods have been updated...\n".into(),
                true
            )
        );
        let ds = json!({"metadata": {"name": "agent", "generation": 1}, "spec": {"updateStrategy": {"type": "RollingUpdate"}},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": 2, "updatedNumberScheduled": 1, "numberAvailable": 1}});
        assert_eq!(
            status_line("DaemonSet", &ds, 0).unwrap().0,
            "Waiting for daemon set \"agent\" rollout to finish: 1 out of 2 new pods have been updated...\n"
        );
    }

    #[test]
    fn undo_copies_template_and_annotations() {
        let d = json!({"metadata": {"annotations": {REVISION: "2", "team": "a"}}, "spec": {"template": {}}});
        let rs = json!({"metadata": {"annotations": {REVISION: "1", "team": "b", "deployment.kubernetes.io/desired-replicas": "3"}},
            "spec": {"template": {"metadata": {"labels": {"app": "web", HASH_LABEL: "abc"}}, "spec": {"containers": []}}}});
        let p = undo_patch(&d, &rs);
        assert_eq!(
            p[0]["value"],
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}})
        );
        assert_eq!(p[1]["value"], json!({REVISION: "2", "team": "b"}));
    }
}
