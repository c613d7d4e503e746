//! The Node authorizer's graph, as upstream's `plugin/pkg/auth/authorizer/node/graph.go` keeps
//! it: which objects each node may read because a pod bound to it (`spec.nodeName`) uses them.
//!
//! Edges run `secret|configmap|pvc|serviceaccount → pod → node`, `pvc → pv` is inverted from the
//! PV's `claimRef` (`pv → pvc → pod → node`), and `secret → pv` for the secrets a PV hands the
//! kubelet. Rather than a general graph walked per request, the pod hop is folded in: each
//! object a pod uses carries a count per node of the pods on that node using it, so the
//! questions asked ("does node n reach secret s?") are a few hash lookups whatever the number
//! of pods. A pod is indexed when it is bound, re-indexed on every update (its references or
//! node may change) and forgotten when deleted or unbound.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

/// The kinds of object a node may reach through its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VertexKind {
    Pod,
    Secret,
    ConfigMap,
    PersistentVolumeClaim,
    PersistentVolume,
    ServiceAccount,
}

/// One object: namespace (empty for a PersistentVolume) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vertex {
    pub kind: VertexKind,
    pub namespace: String,
    pub name: String,
}

impl Vertex {
    pub fn new(kind: VertexKind, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// A namespace and name.
type Id = (String, String);

/// What is held of a bound pod, to undo its counts when it changes or goes.
struct BoundPod {
    node: String,
    /// The pod itself and everything it uses, without repeats.
    uses: Vec<Vertex>,
}

/// What is held of a PersistentVolume.
#[derive(Debug, Default, PartialEq, Eq)]
struct Volume {
    /// `spec.claimRef`: the claim it is bound to.
    claim: Option<Id>,
    /// Secrets the kubelet reads to mount it.
    secrets: Vec<Id>,
}

#[derive(Default)]
pub struct Graph {
    /// Bound pods by namespace and name.
    pods: HashMap<Id, BoundPod>,
    /// For each object a bound pod uses: how many pods on each node use it.
    used_by: HashMap<Vertex, HashMap<String, u32>>,
    volumes: HashMap<String, Volume>,
    /// The PersistentVolumes whose mount secrets include a secret.
    volumes_by_secret: HashMap<Id, BTreeSet<String>>,
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn items<'a>(v: &'a Value, ptr: &str) -> impl Iterator<Item = &'a Value> {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Everything the pod `pod` in `namespace` uses that a kubelet reads on its behalf, as
/// upstream's `VisitPodSecretNames`, `VisitPodConfigmapNames`, its claims and its
/// ServiceAccount: image pull secrets, `env`/`envFrom` of every container, secret, configMap,
/// projected and claim volumes (an ephemeral volume's claim is `<pod>-<volume>`), and the
/// secret references of in-tree and CSI volume sources.
pub fn pod_uses(namespace: &str, pod: &Value) -> Vec<Vertex> {
    use VertexKind::*;
    let mut uses = Vec::new();
    let mut add = |kind, name: &str| {
        if !name.is_empty() {
            uses.push(Vertex::new(kind, namespace, name));
        }
    };
    for s in items(pod, "/spec/imagePullSecrets") {
        add(Secret, str_at(s, "/name"));
    }
    // Places naming a Secret or a ConfigMap: (object, where the secret is, where the map is).
    let mut either: Vec<(&Value, &str, &str)> = Vec::new();
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in items(pod, &format!("/spec/{list}")) {
            for from in items(c, "/envFrom") {
                either.push((from, "/secretRef/name", "/configMapRef/name"));
            }
            for env in items(c, "/env") {
                either.push((
                    env,
                    "/valueFrom/secretKeyRef/name",
                    "/valueFrom/configMapKeyRef/name",
                ));
            }
        }
    }
    let pod_name = str_at(pod, "/metadata/name");
    for volume in items(pod, "/spec/volumes") {
        either.push((volume, "/secret/secretName", "/configMap/name"));
        for source in items(volume, "/projected/sources") {
            either.push((source, "/secret/name", "/configMap/name"));
        }
        add(
            PersistentVolumeClaim,
            str_at(volume, "/persistentVolumeClaim/claimName"),
        );
        if volume.get("ephemeral").is_some() {
            let claim = format!("{pod_name}-{}", str_at(volume, "/name"));
            add(PersistentVolumeClaim, &claim);
        }
        add(Secret, str_at(volume, "/azureFile/secretName"));
        add(Secret, str_at(volume, "/csi/nodePublishSecretRef/name"));
        // cephfs, cinder, flexVolume, iscsi, rbd, scaleIO, storageos.
        if let Some(sources) = volume.as_object() {
            for source in sources.values() {
                add(Secret, str_at(source, "/secretRef/name"));
            }
        }
    }
    for (obj, secret, config_map) in either {
        add(Secret, str_at(obj, secret));
        add(ConfigMap, str_at(obj, config_map));
    }
    add(ServiceAccount, str_at(pod, "/spec/serviceAccountName"));
    uses.sort();
    uses.dedup();
    uses
}

/// A PersistentVolume's claim and the secrets the kubelet reads to mount it, as upstream's
/// `VisitPVSecretNames` with `kubeletVisible`: CSI's node publish, stage and expand secrets,
/// Azure File's, and the `secretRef` of in-tree sources; a reference without a namespace is
/// in the claim's. Like upstream, an unclaimed volume grants nothing.
fn volume_of(pv: &Value) -> Volume {
    let claim_ns = str_at(pv, "/spec/claimRef/namespace");
    let claim_name = str_at(pv, "/spec/claimRef/name");
    if claim_name.is_empty() {
        return Volume::default();
    }
    let mut secrets = Vec::new();
    let mut add = |ns: &str, name: &str| {
        if !name.is_empty() {
            let ns = if ns.is_empty() { claim_ns } else { ns };
            secrets.push((ns.to_string(), name.to_string()));
        }
    };
    for field in [
        "nodePublishSecretRef",
        "nodeStageSecretRef",
        "nodeExpandSecretRef",
    ] {
        let r = pv.pointer(&format!("/spec/csi/{field}"));
        let r = r.unwrap_or(&Value::Null);
        add(str_at(r, "/namespace"), str_at(r, "/name"));
    }
    add(
        str_at(pv, "/spec/azureFile/secretNamespace"),
        str_at(pv, "/spec/azureFile/secretName"),
    );
    if let Some(spec) = pv.get("spec").and_then(Value::as_object) {
        for source in spec.values() {
            add(
                str_at(source, "/secretRef/namespace"),
                str_at(source, "/secretRef/name"),
            );
        }
    }
    secrets.sort();
    secrets.dedup();
    Volume {
        claim: Some((claim_ns.to_string(), claim_name.to_string())),
        secrets,
    }
}

impl Graph {
    /// Indexes the stored pod `namespace/name` (`pod`), replacing what was held of it. A pod
    /// not bound to a node is not held.
    pub fn set_pod(&mut self, namespace: &str, name: &str, pod: &Value) {
        self.remove_pod(namespace, name);
        let node = str_at(pod, "/spec/nodeName");
        if node.is_empty() {
            return;
        }
        let mut uses = pod_uses(namespace, pod);
        uses.push(Vertex::new(VertexKind::Pod, namespace, name));
        for v in &uses {
            *self
                .used_by
                .entry(v.clone())
                .or_default()
                .entry(node.to_string())
                .or_default() += 1;
        }
        let bound = BoundPod {
            node: node.to_string(),
            uses,
        };
        self.pods
            .insert((namespace.to_string(), name.to_string()), bound);
    }

    /// Forgets the pod `namespace/name` and what it granted its node.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) {
        let Some(pod) = self.pods.remove(&(namespace.to_string(), name.to_string())) else {
            return;
        };
        for v in pod.uses {
            let Some(nodes) = self.used_by.get_mut(&v) else {
                continue;
            };
            if let Some(count) = nodes.get_mut(&pod.node) {
                *count -= 1;
                if *count == 0 {
                    nodes.remove(&pod.node);
                }
            }
            if nodes.is_empty() {
                self.used_by.remove(&v);
            }
        }
    }

    /// Indexes the stored PersistentVolume `name` (`pv`), replacing what was held of it.
    pub fn set_volume(&mut self, name: &str, pv: &Value) {
        self.remove_volume(name);
        let volume = volume_of(pv);
        for secret in &volume.secrets {
            self.volumes_by_secret
                .entry(secret.clone())
                .or_default()
                .insert(name.to_string());
        }
        self.volumes.insert(name.to_string(), volume);
    }

    pub fn remove_volume(&mut self, name: &str) {
        let Some(volume) = self.volumes.remove(name) else {
            return;
        };
        for secret in volume.secrets {
            if let Some(names) = self.volumes_by_secret.get_mut(&secret) {
                names.remove(name);
                if names.is_empty() {
                    self.volumes_by_secret.remove(&secret);
                }
            }
        }
    }

    pub fn clear_pods(&mut self) {
        self.pods.clear();
        self.used_by.clear();
    }

    pub fn clear_volumes(&mut self) {
        self.volumes.clear();
        self.volumes_by_secret.clear();
    }

    /// Whether a pod bound to `node` uses `v` directly.
    fn used_on(&self, node: &str, v: &Vertex) -> bool {
        self.used_by.get(v).is_some_and(|n| n.contains_key(node))
    }

    /// Whether the PersistentVolume `name` is bound to a claim a pod on `node` uses.
    fn volume_on(&self, node: &str, name: &str) -> bool {
        let claim = self.volumes.get(name).and_then(|v| v.claim.as_ref());
        claim.is_some_and(|(ns, claim)| {
            let v = Vertex::new(VertexKind::PersistentVolumeClaim, ns, claim);
            self.used_on(node, &v)
        })
    }

    /// Whether there is a path from `v` to `node`: a pod bound to it uses `v`, or `v` is a
    /// volume (or a volume's secret) bound to a claim such a pod uses.
    pub fn reaches(&self, node: &str, v: &Vertex) -> bool {
        match v.kind {
            VertexKind::PersistentVolume => self.volume_on(node, &v.name),
            VertexKind::Secret => {
                self.used_on(node, v)
                    || self
                        .volumes_by_secret
                        .get(&(v.namespace.clone(), v.name.clone()))
                        .is_some_and(|pvs| pvs.iter().any(|pv| self.volume_on(node, pv)))
            }
            _ => self.used_on(node, v),
        }
    }

    /// How many bound pods are held.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }
}

#[cfg(test)]
#[path = "graph_tests.rs"]
mod tests;
