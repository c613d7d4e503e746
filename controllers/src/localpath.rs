//! `ekube local-path-provisioner`: the `local-path` add-on's provisioner, as k3s ships
//! rancher's (same provisioner name, `rancher.io/local-path`, and the same layout on the node).
//!
//! A claim the PV controller hands to this provisioner (`volume.kubernetes.io/
//! storage-provisioner`) gets a directory `<path>/pvc-<uid>_<namespace>_<name>` on the node the
//! scheduler selected for its first pod, and a `local` PersistentVolume `pvc-<uid>` reserved for
//! the claim, with node affinity to that node and the class's reclaim policy. A `Released`
//! volume of policy `Delete` gets its directory removed and is then deleted.
//!
//! The provisioner runs as a pod and never touches a node's disk itself: a short-lived helper
//! pod on the node (the add-on image running `ekube local-path-helper`) makes or removes the
//! directory, with the storage directory mounted from the node. The helper only ever acts on
//! one direct child of that directory.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ekube_api::storage::{self, PROVISIONED_BY};
use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;

use crate::events::{EventType, Recorder};
use crate::util::get_listed;
use crate::{Context as _, ReconcileError, Result};

/// The provisioner name k3s's `local-path` class names.
pub const PROVISIONER: &str = "rancher.io/local-path";
/// The node a volume's directory is on (rancher's annotation).
pub const SELECTED_NODE: &str = "local.path.provisioner/selected-node";

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Kubeconfig of the apiserver; in a pod, the pod's ServiceAccount is used.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The directory on every node that holds the volumes' directories.
    #[arg(long, default_value = "/var/lib/ekube/storage")]
    pub path: PathBuf,
    /// The image of the helper pods (the add-on image, which runs `ekube local-path-helper`).
    #[arg(long)]
    pub helper_image: String,
    /// The namespace of the helper pods.
    #[arg(long, default_value = "kube-system")]
    pub namespace: String,
    /// How long a helper pod may take.
    #[arg(long, default_value = "120s", value_parser = ekube_api::flags::parse_duration)]
    pub helper_timeout: Duration,
}

/// `ekube local-path-helper`: what a helper pod runs.
#[derive(Debug, Clone, clap::Args)]
pub struct HelperArgs {
    #[arg(value_enum)]
    pub action: HelperAction,
    /// The storage directory (mounted from the node at the same path).
    #[arg(long)]
    pub root: PathBuf,
    /// The volume's directory: one path component under `--root`.
    #[arg(long)]
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HelperAction {
    /// Make the directory (mode 0777, as rancher's setup script makes it).
    Create,
    /// Remove the directory and everything in it.
    Remove,
}

impl HelperAction {
    fn as_str(self) -> &'static str {
        match self {
            HelperAction::Create => "create",
            HelperAction::Remove => "remove",
        }
    }
}

/// Whether `name` is one plain path component (no separator, not `.` or `..`).
fn is_plain_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(
        (parts.next(), parts.next()),
        (Some(Component::Normal(_)), None)
    ) && !name.contains('/')
}

/// Runs the helper's action on `<root>/<name>`.
pub fn helper(args: &HelperArgs) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if !args.root.is_absolute() || !is_plain_name(&args.name) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "refusing {}: --root must be absolute and --name one path component",
                args.root.join(&args.name).display()
            ),
        ));
    }
    let dir = args.root.join(&args.name);
    match args.action {
        HelperAction::Create => {
            std::fs::create_dir_all(&dir)?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
        }
        HelperAction::Remove => match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        },
    }
}

struct Ctx {
    client: kube::Client,
    recorder: Recorder,
    config: Config,
}

pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    if !config.path.is_absolute() {
        return Err(format!("--path {} is not absolute", config.path.display()));
    }
    let client =
        ekube_api::client::from_kubeconfig_or_in_cluster(config.kubeconfig.as_deref()).await?;
    let recorder = Recorder::new(client.clone(), PROVISIONER);
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        recorder,
        config,
    });
    let claims = Controller::new(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    );
    let volumes = Controller::new(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
    );
    let retry = Duration::from_secs(5);
    tracing::info!(path = %ctx.config.path.display(), "local-path provisioner running");
    let work = async {
        tokio::join!(
            crate::runner::drive(
                "local-path-provisioner",
                claims,
                |pvc, ctx: Arc<Arc<Ctx>>| async move { provision(&pvc, &ctx).await },
                ctx.clone(),
                retry,
            ),
            crate::runner::drive(
                "local-path-provisioner",
                volumes,
                |pv, ctx: Arc<Arc<Ctx>>| async move { reclaim(&pv, &ctx).await },
                ctx.clone(),
                retry,
            ),
        )
    };
    tokio::select! {
        _ = work => Err("the watches ended".into()),
        () = shutdown => Ok(()),
    }
}

/// The volume a claim gets: `pvc-<uid>`.
fn volume_name(pvc: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", pvc.metadata.uid.as_deref().unwrap_or_default())
}

async fn provision(pvc: &PersistentVolumeClaim, ctx: &Ctx) -> Result<Action> {
    let asked = pvc
        .annotations()
        .get(storage::STORAGE_PROVISIONER)
        .is_some_and(|p| p == PROVISIONER);
    if !asked || storage::bound_volume(pvc).is_some() || pvc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let (ns, name) = (pvc.namespace().unwrap_or_default(), pvc.name_any());
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let pv_name = volume_name(pvc);
    if get_listed(&volumes, &pv_name)
        .await
        .ctx(|| format!("reading volume {pv_name}"))?
        .is_some()
    {
        return Ok(Action::await_change());
    }
    let class_name = storage::claim_class(pvc);
    let classes: Api<StorageClass> = Api::all(ctx.client.clone());
    let Some(class) = get_listed(&classes, class_name)
        .await
        .ctx(|| format!("reading storage class {class_name}"))?
        .filter(|c| c.provisioner == PROVISIONER)
    else {
        return Ok(Action::await_change());
    };
    let failed = |message: String| async move {
        ctx.recorder
            .record(pvc, EventType::Warning, "ProvisioningFailed", &message)
            .await;
        Ok(Action::requeue(Duration::from_secs(15)))
    };
    let Some(node_name) = storage::selected_node(pvc) else {
        return failed(format!(
            "failed to provision volume with StorageClass \"{class_name}\": configuration error, no node was specified (the class must have volumeBindingMode WaitForFirstConsumer)"
        ))
        .await;
    };
    let modes = pvc
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_default();
    if modes
        .iter()
        .any(|m| m != "ReadWriteOnce" && m != "ReadWriteOncePod")
    {
        return failed(format!(
            "failed to provision volume with StorageClass \"{class_name}\": NodePath only supports ReadWriteOnce and ReadWriteOncePod access modes"
        ))
        .await;
    }
    if pvc.spec.as_ref().and_then(|s| s.volume_mode.as_deref()) == Some("Block") {
        return failed(format!(
            "failed to provision volume with StorageClass \"{class_name}\": block volumes are not supported"
        ))
        .await;
    }
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let Some(node) = get_listed(&nodes, node_name)
        .await
        .ctx(|| format!("reading node {node_name}"))?
    else {
        return failed(format!(
            "failed to provision volume with StorageClass \"{class_name}\": node \"{node_name}\" not found"
        ))
        .await;
    };
    ctx.recorder
        .record(
            pvc,
            EventType::Normal,
            "Provisioning",
            &format!("External provisioner is provisioning volume for claim \"{ns}/{name}\""),
        )
        .await;
    let dir_name = format!("{pv_name}_{ns}_{name}");
    if let Err(e) = run_helper(ctx, node_name, HelperAction::Create, &dir_name).await {
        return failed(format!(
            "failed to provision volume with StorageClass \"{class_name}\": {e}"
        ))
        .await;
    }
    let hostname = node
        .labels()
        .get("kubernetes.io/hostname")
        .cloned()
        .unwrap_or_else(|| node_name.to_owned());
    let storage = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned();
    let path = ctx.config.path.join(&dir_name);
    let claim_ref = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: Some(ns.clone()),
        name: Some(name.clone()),
        uid: pvc.metadata.uid.clone(),
        resource_version: pvc.metadata.resource_version.clone(),
        ..Default::default()
    };
    let pv: PersistentVolume = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": pv_name,
            "annotations": {PROVISIONED_BY: PROVISIONER, SELECTED_NODE: node_name},
        },
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": modes,
            "persistentVolumeReclaimPolicy": class.reclaim_policy.as_deref().unwrap_or("Delete"),
            "storageClassName": class_name,
            "volumeMode": "Filesystem",
            "claimRef": claim_ref,
            "local": {"path": path.display().to_string()},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [hostname]},
            ]}]}},
        },
    }))
    .map_err(|e| ReconcileError::Other(format!("building volume {pv_name}: {e}")))?;
    match volumes.create(&PostParams::default(), &pv).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => return Ok(Action::await_change()),
        Err(e) => {
            // Nothing refers to the directory: take it back before trying again.
            let _ = run_helper(ctx, node_name, HelperAction::Remove, &dir_name).await;
            return Err(e).ctx(|| format!("creating volume {pv_name}"));
        }
    }
    tracing::info!(claim = %format!("{ns}/{name}"), volume = %pv_name, node = %node_name, "provisioned");
    ctx.recorder
        .record(
            pvc,
            EventType::Normal,
            "ProvisioningSucceeded",
            &format!("Successfully provisioned volume {pv_name}"),
        )
        .await;
    Ok(Action::await_change())
}

async fn reclaim(pv: &PersistentVolume, ctx: &Ctx) -> Result<Action> {
    let ours = pv
        .annotations()
        .get(PROVISIONED_BY)
        .is_some_and(|p| p == PROVISIONER);
    let spec = pv.spec.clone().unwrap_or_default();
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let deletes = spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete");
    if !ours || !released || !deletes || pv.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = pv.name_any();
    let failed = |message: String| async move {
        ctx.recorder
            .record(pv, EventType::Warning, "VolumeFailedDelete", &message)
            .await;
        Ok(Action::requeue(Duration::from_secs(30)))
    };
    let path = spec
        .local
        .as_ref()
        .map(|l| PathBuf::from(&l.path))
        .or_else(|| spec.host_path.as_ref().map(|h| PathBuf::from(&h.path)));
    let (Some(path), Some(node)) = (path, pv.annotations().get(SELECTED_NODE)) else {
        return failed(format!("volume {name} names no path or node to remove")).await;
    };
    // Only a direct child of the storage directory is ever removed.
    let dir_name = match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        (Some(parent), Some(dir)) if parent == ctx.config.path && is_plain_name(dir) => {
            dir.to_owned()
        }
        _ => {
            return failed(format!(
                "path {} of volume {name} is not in {}; not removing it",
                path.display(),
                ctx.config.path.display()
            ))
            .await;
        }
    };
    if let Err(e) = run_helper(ctx, node, HelperAction::Remove, &dir_name).await {
        return failed(format!("removing {}: {e}", path.display())).await;
    }
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    match volumes.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e).ctx(|| format!("deleting volume {name}")),
    }
    tracing::info!(volume = %name, path = %path.display(), "removed");
    Ok(Action::await_change())
}

/// The helper pod that does `action` on `<path>/<dir>` on `node`.
fn helper_pod(config: &Config, pod_name: &str, node: &str, action: HelperAction, dir: &str) -> Pod {
    let root = config.path.display().to_string();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": config.namespace,
                     "labels": {"app": "local-path-provisioner-helper"}},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{
                "name": "helper",
                "image": config.helper_image,
                "imagePullPolicy": "IfNotPresent",
                "args": ["local-path-helper", action.as_str(), "--root", root, "--name", dir],
                "volumeMounts": [{"name": "data", "mountPath": root}],
            }],
            "volumes": [{"name": "data", "hostPath": {"path": root, "type": "DirectoryOrCreate"}}],
        },
    }))
    .expect("the helper pod is a valid Pod")
}

/// Runs a helper pod to completion and deletes it; an error says why it did not succeed.
async fn run_helper(ctx: &Ctx, node: &str, action: HelperAction, dir: &str) -> Result<(), String> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
    // `pvc-<uid>` is 40 characters: the name stays under 63.
    let uid = dir.split('_').next().unwrap_or(dir);
    let pod_name = format!("helper-{}-{uid}", action.as_str());
    let pod = helper_pod(&ctx.config, &pod_name, node, action, dir);
    let gone = |pods: Api<Pod>, name: String| async move {
        let _ = pods
            .delete(&name, &DeleteParams::default().grace_period(0))
            .await;
        for _ in 0..120 {
            if matches!(pods.get_opt(&name).await, Ok(None)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    // A helper left by an earlier attempt goes first.
    gone(pods.clone(), pod_name.clone()).await;
    pods.create(&PostParams::default(), &pod)
        .await
        .map_err(|e| format!("creating helper pod {pod_name}: {e}"))?;
    let deadline = tokio::time::Instant::now() + ctx.config.helper_timeout;
    let outcome = loop {
        let phase = pods
            .get_opt(&pod_name)
            .await
            .ok()
            .flatten()
            .and_then(|p| p.status.and_then(|s| s.phase));
        match phase.as_deref() {
            Some("Succeeded") => break Ok(()),
            Some("Failed") => break Err(format!("helper pod {pod_name} failed")),
            _ if tokio::time::Instant::now() > deadline => {
                break Err(format!(
                    "helper pod {pod_name} did not finish within {:?}",
                    ctx.config.helper_timeout
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    gone(pods, pod_name).await;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helper_acts_on_one_child_of_the_root_only() {
        let root = tempfile::tempdir().unwrap();
        let args = |action, name: &str| HelperArgs {
            action,
            root: root.path().to_owned(),
            name: name.into(),
        };
        helper(&args(HelperAction::Create, "pvc-1_default_data")).unwrap();
        let dir = root.path().join("pvc-1_default_data");
        assert!(dir.is_dir());
        std::fs::write(dir.join("file"), "x").unwrap();
        for bad in ["..", ".", "a/b", "../etc", ""] {
            assert!(helper(&args(HelperAction::Remove, bad)).is_err(), "{bad}");
        }
        helper(&args(HelperAction::Remove, "pvc-1_default_data")).unwrap();
        assert!(!dir.exists());
        // Removing what is gone already is done.
        helper(&args(HelperAction::Remove, "pvc-1_default_data")).unwrap();
        assert!(root.path().is_dir());
    }
}
