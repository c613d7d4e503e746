//! Static pods from `--pod-manifest-path`: every manifest file (one Pod, YAML or JSON) runs on
//! this node as pod `<name>-<node>` whose UID is the hash of the manifest, annotated as
//! upstream does (`kubernetes.io/config.source: file`, `kubernetes.io/config.hash`). The
//! kubelet runs it without the apiserver and keeps a mirror pod there (annotation
//! `kubernetes.io/config.mirror`, owned by the Node) that shows its status; a mirror deleted
//! through the API is recreated, and removing the file stops the pod and deletes the mirror.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use sha2::Digest;

use super::Ctx;

pub const SOURCE: &str = "kubernetes.io/config.source";
pub const HASH: &str = "kubernetes.io/config.hash";
pub const MIRROR: &str = "kubernetes.io/config.mirror";
pub const SEEN: &str = "kubernetes.io/config.seen";

/// Whether `pod` is a mirror pod (the API's reflection of a static pod).
pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR))
}

/// Whether `pod` came from a manifest file.
pub fn is_static(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SOURCE))
        .is_some_and(|s| s == "file")
}

/// The static pod a manifest describes, named and annotated for `node`.
pub fn from_manifest(text: &str, node: &str) -> Result<Pod, String> {
    let mut pod: Pod = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    let name = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or("metadata.name: Required value")?;
    let mut hasher = sha2::Sha256::new();
    hasher.update(node.as_bytes());
    hasher.update(serde_json::to_vec(&pod).unwrap_or_default());
    let hash: String = hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    let m = &mut pod.metadata;
    m.name = Some(format!("{name}-{node}"));
    m.namespace = Some(
        m.namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into()),
    );
    m.uid = Some(hash.clone());
    let annotations = m.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(SOURCE.into(), "file".into());
    annotations.insert(HASH.into(), hash);
    annotations.insert(
        SEEN.into(),
        ekube_api::time::rfc3339_nanos(ekube_api::time::Timestamp::now()),
    );
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node.to_owned());
    Ok(pod)
}

/// The static pods of `dir`, by UID; unreadable manifests are logged and skipped.
pub fn read_dir(dir: &Path, node: &str) -> BTreeMap<String, Pod> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.')
            || !path.is_file()
            || !["yaml", "yml", "json"]
                .iter()
                .any(|x| name.ends_with(&format!(".{x}")))
        {
            continue;
        }
        match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| from_manifest(&t, node))
        {
            Ok(pod) => {
                out.insert(pod.metadata.uid.clone().unwrap_or_default(), pod);
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "invalid static pod manifest")
            }
        }
    }
    out
}

/// The mirror of a static pod, owned by the node.
fn mirror(pod: &Pod, node: &Node) -> Pod {
    let mut m = Pod {
        metadata: pod.metadata.clone(),
        spec: pod.spec.clone(),
        status: None,
    };
    m.metadata.uid = None;
    let hash = m
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HASH))
        .cloned()
        .unwrap_or_default();
    m.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(MIRROR.into(), hash);
    m.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.metadata.name.clone().unwrap_or_default(),
        uid: node.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        ..Default::default()
    }]);
    m
}

/// Makes the mirror of `pod` exist and match it: creates it when missing, replaces one that
/// is being deleted or reflects another version of the manifest.
pub async fn ensure_mirror(ctx: &Ctx, pod: &Pod) -> Result<(), kube::Error> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let hash = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HASH))
        .cloned();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = match api.get_opt(&name).await {
        Ok(existing) => existing,
        // The Node authorizer refuses a pod not bound to this node, one that does not exist
        // yet among them: go on as if absent (a create over another's pod fails as taken).
        Err(kube::Error::Api(e)) if e.code == 403 => None,
        Err(e) => return Err(e),
    };
    if let Some(existing) = existing {
        let current = existing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(MIRROR))
            .cloned();
        if current.is_some() && current == hash && existing.metadata.deletion_timestamp.is_none() {
            return Ok(());
        }
        if current.is_none() {
            tracing::warn!(pod = %name, "a pod that is not a mirror holds the static pod's name");
            return Ok(());
        }
        delete_mirror(ctx, &ns, &name, existing.metadata.uid.clone()).await?;
    }
    let node = Api::<Node>::all(ctx.client.clone()).get(&ctx.node).await?;
    api.create(&PostParams::default(), &mirror(pod, &node))
        .await?;
    tracing::info!(pod = %name, "mirror pod created");
    Ok(())
}

/// Deletes a mirror pod at once (`uid` guards against deleting a newer one).
pub async fn delete_mirror(
    ctx: &Ctx,
    ns: &str,
    name: &str,
    uid: Option<String>,
) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: web, image: web:latest}]\n";

    #[test]
    fn manifests_become_node_scoped_pods_with_a_stable_hash() {
        let a = from_manifest(MANIFEST, "n1").unwrap();
        assert_eq!(a.metadata.name.as_deref(), Some("web-n1"));
        assert_eq!(a.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(a.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
        let ann = a.metadata.annotations.clone().unwrap();
        assert_eq!(ann[SOURCE], "file");
        assert_eq!(Some(&ann[HASH]), a.metadata.uid.as_ref());
        assert!(is_static(&a) && !is_mirror(&a));
        assert_eq!(
            from_manifest(MANIFEST, "n1").unwrap().metadata.uid,
            a.metadata.uid,
            "same manifest, same hash"
        );
        assert_ne!(
            from_manifest(&MANIFEST.replace("web:latest", "web:v2"), "n1")
                .unwrap()
                .metadata
                .uid,
            a.metadata.uid
        );
        let node = Node {
            metadata: kube::api::ObjectMeta {
                name: Some("n1".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let m = mirror(&a, &node);
        assert!(is_mirror(&m) && m.metadata.uid.is_none());
        assert_eq!(m.metadata.owner_references.unwrap()[0].kind, "Node");
        assert!(from_manifest("metadata: {}\n", "n1").is_err());
    }
}
