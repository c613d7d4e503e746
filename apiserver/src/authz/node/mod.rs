//! The Node authorizer, as upstream's `plugin/pkg/auth/authorizer/node` (with
//! `AuthorizeNodeWithSelectors`): a kubelet, authenticated as `system:node:<name>` in group
//! `system:nodes`, may read a Secret, ConfigMap, PersistentVolumeClaim, PersistentVolume or pod
//! and request a ServiceAccount token only when a pod bound to its node uses it ([`graph`]);
//! it may read only its own Node, touch only its own Lease in `kube-node-lease` and its own
//! CSINode, and list or watch pods only with `fieldSelector=spec.nodeName=<name>`. Everything
//! else a node asks is held against the `system:node` ClusterRole's rules, which this
//! authorizer applies itself: the bootstrap `system:node` binding has no subjects, so RBAC
//! grants nodes nothing by that role and cannot widen what the graph confines.
//!
//! Which objects a node creates or updates (its Node, its pods' status, mirror pods, evictions,
//! a Lease on create) is, as upstream, left to NodeRestriction admission: on create the
//! authorizer does not see the object. When this authorizer does not allow, it has no opinion
//! (with its reason), so the next authorizer may still grant through an explicit binding.

pub mod graph;

use std::sync::Arc;

use ekube_api::ResourceInfo;
use ekube_api::resources::find;
use ekube_api::selector::FieldSelector;
use parking_lot::RwLock;
use serde_json::Value;

use self::graph::{Graph, Vertex, VertexKind};
use super::reflect::{self, Reflect};
use super::rules::Rule;
use super::{Attributes, Authorizer, Decision, RuleSet, policy};
use crate::auth::User;
use crate::storage::Storage;

/// The group every node identity is in.
pub const NODES_GROUP: &str = "system:nodes";
/// The prefix of a node's user name.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// Where nodes' heartbeat Leases live.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// The ClusterRole whose rules every node holds.
const NODE_ROLE: &str = "system:node";

/// The node a user speaks for: `Some("")` for a member of `system:nodes` named
/// `system:node:` with nothing after it, `None` for anyone else (upstream's `NodeIdentity`).
pub fn node_identity(user: &User) -> Option<&str> {
    let name = user.name.strip_prefix(NODE_USER_PREFIX)?;
    user.in_group(NODES_GROUP).then_some(name)
}

/// The stored objects [`graph`] is built from.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Pods,
    PersistentVolumes,
}

/// The graph, kept current from storage watches (see [`reflect`]).
#[derive(Default)]
pub struct NodeGraph {
    graph: RwLock<Graph>,
}

impl NodeGraph {
    /// Lists pods and PersistentVolumes and follows their changes until the process ends.
    pub async fn start(store: Arc<dyn Storage>) -> crate::storage::Result<Arc<Self>> {
        let graph = Arc::new(Self::default());
        reflect::start(&store, &graph, &[Kind::Pods, Kind::PersistentVolumes]).await?;
        Ok(graph)
    }

    /// A graph of fixed objects (tests): `(resource plural, object)` pairs.
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = (&'a str, Value)>) -> Arc<Self> {
        let graph = Self::default();
        for (plural, obj) in objects {
            let kind = match plural {
                "pods" => Kind::Pods,
                _ => Kind::PersistentVolumes,
            };
            let key = crate::registry::key(
                Self::info(kind),
                obj.pointer("/metadata/namespace").and_then(Value::as_str),
                obj.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            );
            graph.apply(kind, &key, Some(&obj));
        }
        Arc::new(graph)
    }

    fn reaches(&self, node: &str, v: &Vertex) -> bool {
        self.graph.read().reaches(node, v)
    }
}

impl Reflect for NodeGraph {
    type Kind = Kind;

    fn info(kind: Kind) -> &'static ResourceInfo {
        let plural = match kind {
            Kind::Pods => "pods",
            Kind::PersistentVolumes => "persistentvolumes",
        };
        find("", "v1", plural).expect("core resources are served")
    }

    fn replace(&self, kind: Kind, objects: Vec<(String, Value)>) {
        let mut graph = self.graph.write();
        match kind {
            Kind::Pods => graph.clear_pods(),
            Kind::PersistentVolumes => graph.clear_volumes(),
        }
        for (key, obj) in objects {
            apply(&mut graph, kind, &key, Some(&obj));
        }
    }

    fn apply(&self, kind: Kind, key: &str, obj: Option<&Value>) {
        apply(&mut self.graph.write(), kind, key, obj);
    }
}

fn apply(graph: &mut Graph, kind: Kind, key: &str, obj: Option<&Value>) {
    let (ns, name) = reflect::key_parts(NodeGraph::info(kind), key);
    match (kind, obj) {
        (Kind::Pods, Some(pod)) => graph.set_pod(ns, name, pod),
        (Kind::Pods, None) => graph.remove_pod(ns, name),
        (Kind::PersistentVolumes, Some(pv)) => graph.set_volume(name, pv),
        (Kind::PersistentVolumes, None) => graph.remove_volume(name),
    }
}

pub struct NodeAuthorizer {
    graph: Arc<NodeGraph>,
    /// The `system:node` ClusterRole's rules, for requests the graph does not govern.
    rules: Vec<Rule>,
}

/// No opinion, with why.
fn pass(reason: impl Into<String>) -> Decision {
    Decision::NoOpinion(reason.into())
}

impl NodeAuthorizer {
    pub fn new(graph: Arc<NodeGraph>) -> Self {
        let role = policy::CLUSTER_ROLES
            .iter()
            .find(|r| r.name == NODE_ROLE)
            .expect("the bootstrap policy defines system:node");
        Self {
            graph,
            rules: role.rules.iter().map(policy::R::to_rule).collect(),
        }
    }

    /// Allowed if `a` names an object of `kind` a pod on `node` uses.
    fn related(&self, node: &str, kind: VertexKind, a: &Attributes) -> Decision {
        if a.name.is_empty() {
            return pass("No Object name found");
        }
        if self
            .graph
            .reaches(node, &Vertex::new(kind, &a.namespace, &a.name))
        {
            Decision::Allow
        } else {
            pass(format!(
                "no relationship found between node '{node}' and this object"
            ))
        }
    }

    /// `get` of one related object.
    fn get(&self, node: &str, kind: VertexKind, a: &Attributes) -> Decision {
        if a.verb != "get" {
            return pass("can only get individual resources of this type");
        }
        if !a.subresource.is_empty() {
            return pass("cannot get subresource");
        }
        self.related(node, kind, a)
    }

    /// `get`, or `list`/`watch` narrowed to one name, of a related Secret or ConfigMap.
    fn read_namespaced(&self, node: &str, kind: VertexKind, a: &Attributes) -> Decision {
        if !matches!(a.verb.as_str(), "get" | "list" | "watch") {
            return pass("can only read resources of this type");
        }
        if !a.subresource.is_empty() {
            return pass("cannot read subresource");
        }
        if a.namespace.is_empty() {
            return pass("can only read namespaced object of this type");
        }
        self.related(node, kind, a)
    }

    /// `update`/`patch` of a related claim's status.
    fn claim_status(&self, node: &str, a: &Attributes) -> Decision {
        if !matches!(a.verb.as_str(), "update" | "patch") {
            return pass("can only get/update/patch this type");
        }
        self.related(node, VertexKind::PersistentVolumeClaim, a)
    }

    /// A token for the ServiceAccount of a pod on the node.
    fn token(&self, node: &str, a: &Attributes) -> Decision {
        if a.verb != "create" || a.name.is_empty() {
            return pass("can only create tokens for individual service accounts");
        }
        if a.subresource != "token" {
            return pass("can only create token subresource of serviceaccount");
        }
        self.related(node, VertexKind::ServiceAccount, a)
    }

    /// The node's own Node object.
    fn node(&self, node: &str, a: &Attributes) -> Decision {
        match (a.subresource.as_str(), a.verb.as_str()) {
            // NodeRestriction admission confines these to the node's own object.
            ("", "create" | "update" | "patch") | ("status", "update" | "patch") => Decision::Allow,
            ("", "get" | "list" | "watch") if a.name == node => Decision::Allow,
            ("", "get" | "list" | "watch") if a.name.is_empty() => pass(format!(
                "node '{node}' cannot read all nodes, only its own Node object"
            )),
            ("", "get" | "list" | "watch") => pass(format!(
                "node '{node}' cannot read '{}', only its own Node object",
                a.name
            )),
            _ => pass(""),
        }
    }

    /// Pods: reads of pods bound to the node; mirror pods, statuses and evictions are
    /// NodeRestriction admission's to confine.
    fn pod(&self, node: &str, a: &Attributes) -> Decision {
        match (a.subresource.as_str(), a.verb.as_str()) {
            ("", "get") => self.get(node, VertexKind::Pod, a),
            ("", "list" | "watch") => {
                let selected = FieldSelector::parse(&a.field_selector)
                    .ok()
                    .is_some_and(|s| s.equals("spec.nodeName") == Some(node));
                if selected {
                    Decision::Allow
                } else if !a.name.is_empty() {
                    self.related(node, VertexKind::Pod, a)
                } else {
                    pass("can only list/watch pods with spec.nodeName field selector")
                }
            }
            ("", "create" | "delete") | ("status", "update" | "patch") | ("eviction", "create") => {
                Decision::Allow
            }
            _ => pass(""),
        }
    }
}

/// Objects named after the node it belongs to (its Lease, its CSINode): on create the name
/// is in the body, which NodeRestriction admission checks.
fn own_named(node: &str, what: &str, a: &Attributes) -> Decision {
    if !matches!(
        a.verb.as_str(),
        "get" | "create" | "update" | "patch" | "delete"
    ) {
        return pass(format!(
            "can only get, create, update, patch, or delete a {what}"
        ));
    }
    if a.verb != "create" && a.name != node {
        return pass(format!(
            "can only access {what} with the same name as the requesting node"
        ));
    }
    Decision::Allow
}

impl Authorizer for NodeAuthorizer {
    fn authorize(&self, a: &Attributes) -> Decision {
        let Some(node) = node_identity(&a.user) else {
            return pass("");
        };
        if node.is_empty() {
            return pass(format!("unknown node for user {:?}", a.user.name));
        }
        if a.resource_request {
            use VertexKind::*;
            match (a.api_group.as_str(), a.resource.as_str()) {
                ("", "secrets") => return self.read_namespaced(node, Secret, a),
                ("", "configmaps") => return self.read_namespaced(node, ConfigMap, a),
                ("", "persistentvolumeclaims") if a.subresource == "status" => {
                    return self.claim_status(node, a);
                }
                ("", "persistentvolumeclaims") => return self.get(node, PersistentVolumeClaim, a),
                ("", "persistentvolumes") => return self.get(node, PersistentVolume, a),
                ("", "serviceaccounts") => return self.token(node, a),
                ("", "nodes") => return self.node(node, a),
                ("", "pods") => return self.pod(node, a),
                ("coordination.k8s.io", "leases") => {
                    if a.namespace != NODE_LEASE_NAMESPACE {
                        return pass(format!(
                            "can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"
                        ));
                    }
                    return own_named(node, "node lease", a);
                }
                ("storage.k8s.io", "csinodes") => {
                    if !a.subresource.is_empty() {
                        return pass("cannot authorize CSINode subresources");
                    }
                    return own_named(node, "CSINode", a);
                }
                _ => {}
            }
        }
        if self.rules.iter().any(|r| r.allows(a)) {
            Decision::Allow
        } else {
            pass("")
        }
    }

    /// Like upstream, a node's permissions are not enumerated (they depend on the graph).
    fn rules_for(&self, user: &User, _namespace: &str) -> Option<RuleSet> {
        let errors = match node_identity(user) {
            Some(_) => vec!["node authorizer does not support user rule resolution".into()],
            None => Vec::new(),
        };
        Some(RuleSet {
            rules: Vec::new(),
            errors,
        })
    }
}

#[cfg(test)]
mod tests;
