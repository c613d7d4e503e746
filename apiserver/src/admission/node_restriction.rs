//! NodeRestriction: a kubelet (user `system:node:<name>` in `system:nodes`) may only touch
//! what belongs to its own node: its Node object (without changing its taints, its config
//! source, or labels outside the kubelet's own), mirror pods bound to it that reference no other
//! API object, the status of its pods, deletions and evictions of its pods, its Lease, and
//! tokens for its pods. Everyone else passes untouched; the messages are upstream's.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::{Attributes, Operation};
use crate::errors::{ApiError, Result};
use crate::registry::Registry;

const NODE_USER_PREFIX: &str = "system:node:";
const NODES_GROUP: &str = "system:nodes";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Labels only an administrator may set on a node (they steer privileged workloads).
const RESTRICTED_LABEL_DOMAIN: &str = "node-restriction.kubernetes.io";
/// Labels of the `kubernetes.io` and `k8s.io` domains a kubelet may set on its node.
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
];
/// Label domains (and their subdomains) a kubelet may set freely.
const KUBELET_LABEL_DOMAINS: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        })
    }
}

/// The node a user speaks for: `Some(name)` for `system:node:<name>` in `system:nodes`.
fn node_identity(user: &crate::auth::User) -> Option<&str> {
    let name = user.name.strip_prefix(NODE_USER_PREFIX)?;
    user.in_group(NODES_GROUP).then_some(name)
}

pub(super) async fn admit(
    registry: &Registry,
    attrs: &Attributes<'_>,
    obj: Option<&Value>,
) -> Result<()> {
    let Some(node) = node_identity(attrs.user) else {
        return Ok(());
    };
    if node.is_empty() {
        return Err(attrs.forbidden(&format!(
            "could not determine node from user \"{}\"",
            attrs.user.name
        )));
    }
    let check = Check { node, attrs, obj };
    let r = attrs.resource;
    match (r.group, r.plural) {
        ("", "pods") => check.pod(registry).await,
        ("", "nodes") => check.node(),
        ("", "persistentvolumeclaims") if attrs.subresource != Some("status") => {
            Err(attrs.forbidden("may only update PVC status"))
        }
        ("", "serviceaccounts") => check.token(registry).await,
        ("coordination.k8s.io", "leases") => check.lease(),
        _ => Ok(()),
    }
}

struct Check<'a> {
    node: &'a str,
    attrs: &'a Attributes<'a>,
    obj: Option<&'a Value>,
}

fn str_at<'v>(v: Option<&'v Value>, pointer: &str) -> &'v str {
    v.and_then(|v| v.pointer(pointer))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl Check<'_> {
    fn deny(&self, why: String) -> ApiError {
        self.attrs.forbidden(&why)
    }

    /// The pod a request on a pod subresource or a deletion is about.
    async fn existing_pod(&self, registry: &Registry) -> Result<Value> {
        if let Some(old) = self.attrs.old_object {
            return Ok(old.clone());
        }
        registry
            .get(self.attrs.resource, self.attrs.namespace, self.attrs.name)
            .await
    }

    async fn pod(&self, registry: &Registry) -> Result<()> {
        let (node, op) = (self.node, self.attrs.operation);
        match (self.attrs.subresource, op) {
            (None, Operation::Create) => self.mirror_pod(registry).await,
            (None, Operation::Delete) => {
                let pod = self.existing_pod(registry).await?;
                if str_at(Some(&pod), "/spec/nodeName") != node {
                    return Err(self.deny(format!(
                        "node \"{node}\" can only delete pods with spec.nodeName set to itself"
                    )));
                }
                Ok(())
            }
            (None, _) => Err(self.deny(format!(
                "unexpected operation \"{op}\", node \"{node}\" can only create and delete mirror pods"
            ))),
            (Some("status"), Operation::Update) => {
                let old = self.attrs.old_object;
                if str_at(old, "/spec/nodeName") != node {
                    return Err(self.deny(format!("node \"{node}\" can only update pod status for pods with spec.nodeName set to itself")));
                }
                let labels = |v: Option<&Value>| v.and_then(|v| v.pointer("/metadata/labels")).filter(|l| l.as_object().is_some_and(|m| !m.is_empty())).cloned();
                if labels(old) != labels(self.obj) {
                    return Err(self.deny(format!(
                        "node \"{node}\" cannot update labels through pod status"
                    )));
                }
                Ok(())
            }
            (Some("status"), _) => Err(self.deny(format!("unexpected operation \"{op}\""))),
            (Some("eviction"), Operation::Create) => {
                let pod = self.existing_pod(registry).await?;
                if str_at(Some(&pod), "/spec/nodeName") != node {
                    return Err(self.deny(format!(
                        "node {node} can only evict pods with spec.nodeName set to itself"
                    )));
                }
                Ok(())
            }
            (Some("eviction"), _) => Err(self.deny(format!("unexpected operation {op}"))),
            (Some(sub), _) => Err(self.deny(format!(
                "unexpected pod subresource \"{sub}\", only 'status' and 'eviction' are allowed"
            ))),
        }
    }

    async fn mirror_pod(&self, registry: &Registry) -> Result<()> {
        let node = self.node;
        let pod = self.obj.unwrap_or(&Value::Null);
        let annotations = pod
            .pointer("/metadata/annotations")
            .and_then(Value::as_object);
        if !annotations.is_some_and(|a| a.contains_key(MIRROR_ANNOTATION)) {
            return Err(self.deny(format!("pod does not have \"{MIRROR_ANNOTATION}\" annotation, node \"{node}\" can only create mirror pods")));
        }
        if str_at(Some(pod), "/spec/nodeName") != node {
            return Err(self.deny(format!(
                "node \"{node}\" can only create pods with spec.nodeName set to itself"
            )));
        }
        let owners = pod
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        match owners {
            [] => {
                return Err(self.deny(format!(
                    "node \"{node}\" can only create pods with an owner reference set to itself"
                )));
            }
            [owner] => self.owner_is_node(registry, owner).await?,
            _ => {
                return Err(self.deny(format!("node \"{node}\" can only create pods with a single owner reference set to itself")));
            }
        }
        let refs = references(pod);
        for (what, found) in [
            ("a service account", refs.service_account),
            ("secrets", refs.secrets),
            ("configmaps", refs.config_maps),
            ("persistentvolumeclaims", refs.claims),
            ("clustertrustbundles", refs.trust_bundles),
        ] {
            if found {
                return Err(self.deny(format!(
                    "node \"{node}\" can not create pods that reference {what}"
                )));
            }
        }
        Ok(())
    }

    async fn owner_is_node(&self, registry: &Registry, owner: &Value) -> Result<()> {
        let node = self.node;
        if owner["apiVersion"] != "v1" || owner["kind"] != "Node" || owner["name"] != node {
            return Err(self.deny(format!(
                "node \"{node}\" can only create pods with an owner reference set to itself"
            )));
        }
        if owner["controller"] != true {
            return Err(self.deny(format!("node \"{node}\" can only create pods with a controller owner reference set to itself")));
        }
        if owner["blockOwnerDeletion"] == true {
            return Err(self.deny(format!(
                "node \"{node}\" must not set blockOwnerDeletion on an owner reference"
            )));
        }
        let nodes = ekube_api::resources::find("", "v1", "nodes")
            .ok_or_else(|| ApiError::internal("nodes are not in the resource table"))?;
        let stored = registry.get(nodes, None, node).await?;
        let (want, got) = (
            str_at(Some(&stored), "/metadata/uid"),
            str_at(Some(owner), "/uid"),
        );
        if want != got {
            return Err(self.deny(format!(
                "node {node} UID mismatch: expected {got} got {want}"
            )));
        }
        Ok(())
    }

    fn node(&self) -> Result<()> {
        let node = self.node;
        if self.attrs.name != node {
            return Err(self.deny(format!(
                "node \"{node}\" is not allowed to modify node \"{}\"",
                self.attrs.name
            )));
        }
        let new = self.obj;
        let old = self.attrs.old_object;
        let spec = |v: Option<&Value>, field: &str| {
            v.and_then(|v| v.pointer(&format!("/spec/{field}")))
                .filter(|s| !s.is_null())
                .cloned()
        };
        match self.attrs.operation {
            Operation::Create => {
                if spec(new, "configSource").is_some() {
                    return Err(self.deny(format!(
                        "node \"{node}\" is not allowed to create pods with a non-nil configSource"
                    )));
                }
                let forbidden = forbidden_labels(&modified_labels(labels(new), labels(None)));
                if !forbidden.is_empty() {
                    return Err(self.deny(format!(
                        "node \"{node}\" is not allowed to set the following labels: {}",
                        join(&forbidden)
                    )));
                }
            }
            Operation::Update => {
                let source = spec(new, "configSource");
                if source.is_some() && source != spec(old, "configSource") {
                    return Err(self.deny(format!("node \"{node}\" is not allowed to update configSource to a new non-nil configSource")));
                }
                let taints =
                    |v| spec(v, "taints").filter(|t| t.as_array().is_some_and(|a| !a.is_empty()));
                if taints(new) != taints(old) {
                    return Err(
                        self.deny(format!("node \"{node}\" is not allowed to modify taints"))
                    );
                }
                let forbidden = forbidden_labels(&modified_labels(labels(new), labels(old)));
                if !forbidden.is_empty() {
                    return Err(self.deny(format!(
                        "is not allowed to modify labels: {}",
                        join(&forbidden)
                    )));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn lease(&self) -> Result<()> {
        if self.attrs.namespace != Some(NODE_LEASE_NAMESPACE) {
            return Err(self.deny(format!(
                "can only access leases in the \"{NODE_LEASE_NAMESPACE}\" system namespace"
            )));
        }
        if self.attrs.name != self.node {
            return Err(self.deny(
                "can only access node lease with the same name as the requesting node".into(),
            ));
        }
        Ok(())
    }

    async fn token(&self, registry: &Registry) -> Result<()> {
        if self.attrs.operation != Operation::Create || self.attrs.subresource != Some("token") {
            return Ok(());
        }
        let r = self.obj.and_then(|o| o.pointer("/spec/boundObjectRef"));
        let field = |f: &str| str_at(r, &format!("/{f}"));
        if r.is_none()
            || field("apiVersion") != "v1"
            || field("kind") != "Pod"
            || field("name").is_empty()
        {
            return Err(self.deny("node requested token not bound to a pod".into()));
        }
        if field("uid").is_empty() {
            return Err(self.deny("node requested token with a pod binding without a uid".into()));
        }
        let pods = ekube_api::resources::find("", "v1", "pods")
            .ok_or_else(|| ApiError::internal("pods are not in the resource table"))?;
        let pod = registry
            .get(pods, self.attrs.namespace, field("name"))
            .await?;
        if str_at(Some(&pod), "/metadata/uid") != field("uid") {
            return Err(self.deny(format!("the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated", field("uid"))));
        }
        if str_at(Some(&pod), "/spec/nodeName") != self.node {
            return Err(self
                .deny("node requested token bound to a pod scheduled on a different node".into()));
        }
        Ok(())
    }
}

fn labels(v: Option<&Value>) -> Option<&Map<String, Value>> {
    v?.pointer("/metadata/labels")?.as_object()
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// The label keys added, removed or changed between `a` and `b`.
fn modified_labels(
    a: Option<&Map<String, Value>>,
    b: Option<&Map<String, Value>>,
) -> BTreeSet<String> {
    let empty = Map::new();
    let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .chain(b.iter().filter(|(k, v)| a.get(*k) != Some(*v)))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Whether the domain of `key` (the part before `/`) is `domain` or a subdomain of it.
fn in_domain(key: &str, domain: &str) -> bool {
    key.split_once('/').is_some_and(|(d, _)| {
        d == domain
            || d.strip_suffix(domain)
                .is_some_and(|rest| rest.ends_with('.'))
    })
}

/// The keys a kubelet may not add, remove or change on its node.
fn forbidden_labels(modified: &BTreeSet<String>) -> BTreeSet<String> {
    let kubelet_label = |k: &str| {
        KUBELET_LABELS.contains(&k) || KUBELET_LABEL_DOMAINS.iter().any(|d| in_domain(k, d))
    };
    modified
        .iter()
        .filter(|k| {
            in_domain(k, RESTRICTED_LABEL_DOMAIN)
                || ((in_domain(k, "kubernetes.io") || in_domain(k, "k8s.io")) && !kubelet_label(k))
        })
        .cloned()
        .collect()
}

/// Which other API objects a pod refers to.
#[derive(Default)]
struct References {
    service_account: bool,
    secrets: bool,
    config_maps: bool,
    claims: bool,
    trust_bundles: bool,
}

fn references(pod: &Value) -> References {
    let mut refs = References::default();
    let spec = &pod["spec"];
    refs.service_account = ["serviceAccountName", "serviceAccount"]
        .iter()
        .any(|k| spec[*k].as_str().is_some_and(|s| !s.is_empty()));
    refs.secrets = spec["imagePullSecrets"]
        .as_array()
        .is_some_and(|a| !a.is_empty());
    let containers = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .filter_map(|l| spec[*l].as_array())
        .flatten();
    for c in containers {
        for env in c["env"].as_array().into_iter().flatten() {
            refs.secrets |= env.pointer("/valueFrom/secretKeyRef").is_some();
            refs.config_maps |= env.pointer("/valueFrom/configMapKeyRef").is_some();
        }
        for from in c["envFrom"].as_array().into_iter().flatten() {
            refs.secrets |= from.get("secretRef").is_some();
            refs.config_maps |= from.get("configMapRef").is_some();
        }
    }
    for v in spec["volumes"].as_array().into_iter().flatten() {
        let Some(source) = v.as_object() else {
            continue;
        };
        refs.claims |=
            source.contains_key("persistentVolumeClaim") || source.contains_key("ephemeral");
        refs.config_maps |= source.contains_key("configMap");
        // Every volume plugin that takes credentials names them in a `secret` or `secretRef`.
        refs.secrets |= source.contains_key("secret")
            || source
                .values()
                .any(|s| s.get("secretRef").is_some_and(|r| !r.is_null()));
        for p in v
            .pointer("/projected/sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            refs.secrets |= p.get("secret").is_some();
            refs.config_maps |= p.get("configMap").is_some();
            refs.service_account |= p.get("serviceAccountToken").is_some();
            refs.trust_bundles |= p.get("clusterTrustBundle").is_some();
        }
    }
    refs
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::admission::tests::{attrs, registry};
    use crate::auth::User;
    use crate::registry::WriteOptions;

    fn core(plural: &str) -> &'static ekube_api::ResourceInfo {
        ekube_api::resources::find("", "v1", plural).unwrap()
    }

    fn kubelet(node: &str) -> User {
        User {
            name: format!("system:node:{node}"),
            groups: vec!["system:nodes".into(), "system:authenticated".into()],
            ..User::default()
        }
    }

    #[tokio::test]
    async fn a_node_writes_only_its_own_node_and_labels() {
        let reg = registry().await;
        let n1 = kubelet("n1");
        let mut a = attrs(core("nodes"), Operation::Update);
        a.user = &n1;
        a.name = "n2";
        let err = admit(&reg, &a, Some(&json!({}))).await.unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (
                403,
                "nodes \"n2\" is forbidden: node \"n1\" is not allowed to modify node \"n2\""
            )
        );
        a.name = "n1";
        let old = json!({"metadata": {"labels": {"kubernetes.io/hostname": "n1"}}});
        a.old_object = Some(&old);
        let label =
            |k: &str| json!({"metadata": {"labels": {"kubernetes.io/hostname": "n1", k: "x"}}});
        for allowed in [
            "team",
            "node.kubernetes.io/pool",
            "sub.kubelet.kubernetes.io/y",
            "topology.kubernetes.io/zone",
        ] {
            admit(&reg, &a, Some(&label(allowed))).await.unwrap();
        }
        let err = admit(&reg, &a, Some(&label("node-restriction.kubernetes.io/x")))
            .await
            .unwrap_err();
        assert_eq!(
            err.message,
            "nodes \"n1\" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/x"
        );
        let err = admit(
            &reg,
            &a,
            Some(&label("node-role.kubernetes.io/control-plane")),
        )
        .await
        .unwrap_err();
        assert!(
            err.message
                .ends_with("node-role.kubernetes.io/control-plane"),
            "{}",
            err.message
        );
        let tainted = json!({"metadata": old["metadata"], "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}});
        let err = admit(&reg, &a, Some(&tainted)).await.unwrap_err();
        assert!(
            err.message
                .ends_with("node \"n1\" is not allowed to modify taints")
        );

        a.operation = Operation::Create;
        a.old_object = None;
        let err = admit(&reg, &a, Some(&label("example.k8s.io/a")))
            .await
            .unwrap_err();
        assert!(
            err.message.ends_with(
                "node \"n1\" is not allowed to set the following labels: example.k8s.io/a"
            ),
            "{}",
            err.message
        );
        // Other users are not restricted.
        let admin = User {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
            ..User::default()
        };
        a.user = &admin;
        a.name = "n2";
        admit(&reg, &a, Some(&label("node-restriction.kubernetes.io/x")))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn mirror_pods_are_bound_to_the_node_and_reference_nothing() {
        let reg = registry().await;
        let node = reg
            .create(
                core("nodes"),
                None,
                json!({"metadata": {"name": "n1"}}),
                &WriteOptions::default(),
            )
            .await
            .unwrap()
            .0;
        let uid = node["metadata"]["uid"].as_str().unwrap();
        let n1 = kubelet("n1");
        let mut a = attrs(core("pods"), Operation::Create);
        a.user = &n1;
        let mirror = |spec: Value| {
            json!({
                "metadata": {"name": "web", "annotations": {MIRROR_ANNOTATION: "h"},
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": uid, "controller": true}]},
                "spec": spec,
            })
        };
        admit(
            &reg,
            &a,
            Some(&mirror(
                json!({"nodeName": "n1", "containers": [{"name": "c"}]}),
            )),
        )
        .await
        .unwrap();
        let err = admit(&reg, &a, Some(&mirror(json!({"nodeName": "n2"}))))
            .await
            .unwrap_err();
        assert!(
            err.message
                .ends_with("node \"n1\" can only create pods with spec.nodeName set to itself")
        );
        for (spec, what) in [
            (
                json!({"nodeName": "n1", "volumes": [{"name": "s", "secret": {"secretName": "s"}}]}),
                "secrets",
            ),
            (
                json!({"nodeName": "n1", "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "c"}}]}]}),
                "configmaps",
            ),
            (
                json!({"nodeName": "n1", "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "d"}}]}),
                "persistentvolumeclaims",
            ),
            (
                json!({"nodeName": "n1", "volumes": [{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}]}),
                "a service account",
            ),
        ] {
            let err = admit(&reg, &a, Some(&mirror(spec))).await.unwrap_err();
            assert!(
                err.message.ends_with(&format!(
                    "node \"n1\" can not create pods that reference {what}"
                )),
                "{}",
                err.message
            );
        }
        let plain = json!({"metadata": {"name": "web"}, "spec": {"nodeName": "n1"}});
        let err = admit(&reg, &a, Some(&plain)).await.unwrap_err();
        assert!(
            err.message
                .ends_with("node \"n1\" can only create mirror pods")
        );
    }

    #[tokio::test]
    async fn pods_status_deletes_evictions_and_leases_of_its_own() {
        let reg = registry().await;
        let n1 = kubelet("n1");
        let mine = json!({"metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {"nodeName": "n1"}});
        let theirs = json!({"metadata": {"name": "web"}, "spec": {"nodeName": "n2"}});
        let mut a = attrs(core("pods"), Operation::Update);
        a.user = &n1;
        a.subresource = Some("status");
        a.old_object = Some(&mine);
        admit(&reg, &a, Some(&mine)).await.unwrap();
        let relabelled = json!({"metadata": {"name": "web", "labels": {"app": "db"}}, "spec": {"nodeName": "n1"}});
        assert!(
            admit(&reg, &a, Some(&relabelled))
                .await
                .unwrap_err()
                .message
                .ends_with("cannot update labels through pod status")
        );
        a.old_object = Some(&theirs);
        assert!(admit(&reg, &a, Some(&theirs)).await.is_err());

        a.subresource = None;
        a.operation = Operation::Delete;
        let err = admit(&reg, &a, None).await.unwrap_err();
        assert!(
            err.message
                .ends_with("node \"n1\" can only delete pods with spec.nodeName set to itself")
        );
        a.old_object = Some(&mine);
        admit(&reg, &a, None).await.unwrap();
        a.operation = Operation::Update;
        assert!(
            admit(&reg, &a, Some(&mine))
                .await
                .unwrap_err()
                .message
                .contains("unexpected operation \"UPDATE\"")
        );

        a.operation = Operation::Connect;
        a.subresource = Some("exec");
        assert!(
            admit(&reg, &a, None)
                .await
                .unwrap_err()
                .message
                .contains("unexpected pod subresource \"exec\"")
        );

        let leases = ekube_api::resources::find("coordination.k8s.io", "v1", "leases").unwrap();
        let mut l = attrs(leases, Operation::Update);
        l.user = &n1;
        l.namespace = Some(NODE_LEASE_NAMESPACE);
        l.name = "n1";
        admit(&reg, &l, Some(&json!({}))).await.unwrap();
        l.name = "n2";
        assert!(admit(&reg, &l, Some(&json!({}))).await.is_err());
        l.name = "n1";
        l.namespace = Some("team");
        assert!(admit(&reg, &l, Some(&json!({}))).await.is_err());
    }
}
