//! The RBAC objects in memory: Roles, ClusterRoles, RoleBindings and ClusterRoleBindings are
//! listed once and then kept current from storage watches, so authorizing a request reads no
//! storage (upstream's RBAC authorizer reads informer caches the same way). A watch that falls
//! behind ends; the kind is then listed and watched afresh. Aggregated ClusterRoles
//! (`aggregationRule`) resolve to the rules of the ClusterRoles their selectors match, followed
//! transitively, so `admin` holds `edit` and `view` the moment a labelled role appears.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ekube_api::ResourceInfo;
use ekube_api::resources::find;
use ekube_api::selector::LabelSelector;
use parking_lot::RwLock;
use serde::Deserialize;
use serde_json::Value;

use super::reflect::{self, Reflect};
use super::rules::Rule;
use crate::storage::Storage;

/// `rbac.authorization.k8s.io`.
pub const GROUP: &str = "rbac.authorization.k8s.io";

/// Who a binding grants to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Subject {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RoleRef {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

/// A RoleBinding (namespace set) or ClusterRoleBinding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Binding {
    pub name: String,
    pub namespace: String,
    pub role_ref: RoleRef,
    pub subjects: Vec<Subject>,
}

#[derive(Debug, Clone, Default)]
struct ClusterRole {
    rules: Vec<Rule>,
    labels: BTreeMap<String, String>,
    /// `aggregationRule.clusterRoleSelectors`, when the role is aggregated.
    selectors: Option<Vec<LabelSelector>>,
}

#[derive(Default)]
struct Snapshot {
    roles: HashMap<(String, String), Vec<Rule>>,
    cluster_roles: BTreeMap<String, ClusterRole>,
    /// Namespace → name → binding.
    role_bindings: HashMap<String, BTreeMap<String, Binding>>,
    cluster_role_bindings: BTreeMap<String, Binding>,
}

/// Why the rules of a role reference could not be found (upstream's wording).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}.rbac.authorization.k8s.io \"{name}\" not found")]
pub struct MissingRole {
    pub kind: &'static str,
    pub name: String,
}

/// The RBAC kinds the cache holds.
#[derive(Clone, Copy)]
pub enum Kind {
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::Role,
        Kind::ClusterRole,
        Kind::RoleBinding,
        Kind::ClusterRoleBinding,
    ];

    fn info(self) -> &'static ResourceInfo {
        let plural = match self {
            Kind::Role => "roles",
            Kind::ClusterRole => "clusterroles",
            Kind::RoleBinding => "rolebindings",
            Kind::ClusterRoleBinding => "clusterrolebindings",
        };
        find(GROUP, "v1", plural).expect("RBAC resources are served")
    }
}

pub struct RbacCache {
    snapshot: RwLock<Snapshot>,
    /// Signalled whenever a ClusterRole changes (the aggregation controller waits on it).
    cluster_roles_changed: tokio::sync::Notify,
}

fn str_at<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn parse<T: serde::de::DeserializeOwned + Default>(v: Option<&Value>) -> T {
    v.and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

fn binding_of(obj: &Value) -> Binding {
    Binding {
        name: str_at(obj, "/metadata/name").to_string(),
        namespace: str_at(obj, "/metadata/namespace").to_string(),
        role_ref: parse(obj.get("roleRef")),
        subjects: parse(obj.get("subjects")),
    }
}

fn cluster_role_of(obj: &Value) -> ClusterRole {
    let selectors = obj.get("aggregationRule").map(|agg| {
        let raw: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector> =
            parse(agg.get("clusterRoleSelectors"));
        raw.iter().map(LabelSelector::from_label_selector).collect()
    });
    ClusterRole {
        rules: parse(obj.get("rules")),
        labels: parse(obj.pointer("/metadata/labels")),
        selectors,
    }
}

impl Snapshot {
    /// Applies one stored object (`Some`) or deletion (`None`) at `key`.
    fn apply(&mut self, kind: Kind, key: &str, obj: Option<&Value>) {
        let (ns, name) = reflect::key_parts(kind.info(), key);
        let id = (ns.to_string(), name.to_string());
        match (kind, obj) {
            (Kind::Role, Some(o)) => {
                self.roles.insert(id, parse(o.get("rules")));
            }
            (Kind::Role, None) => {
                self.roles.remove(&id);
            }
            (Kind::ClusterRole, Some(o)) => {
                self.cluster_roles.insert(id.1, cluster_role_of(o));
            }
            (Kind::ClusterRole, None) => {
                self.cluster_roles.remove(&id.1);
            }
            (Kind::RoleBinding, Some(o)) => {
                self.role_bindings
                    .entry(id.0)
                    .or_default()
                    .insert(id.1, binding_of(o));
            }
            (Kind::RoleBinding, None) => {
                if let Some(bindings) = self.role_bindings.get_mut(&id.0) {
                    bindings.remove(&id.1);
                }
            }
            (Kind::ClusterRoleBinding, Some(o)) => {
                self.cluster_role_bindings.insert(id.1, binding_of(o));
            }
            (Kind::ClusterRoleBinding, None) => {
                self.cluster_role_bindings.remove(&id.1);
            }
        }
    }

    fn role_ref_rules(
        &self,
        role_ref: &RoleRef,
        namespace: &str,
    ) -> Result<Cow<'_, [Rule]>, MissingRole> {
        let found = match role_ref.kind.as_str() {
            "ClusterRole" => match self.cluster_roles.get(&role_ref.name) {
                Some(r) if r.selectors.is_none() => Some(Cow::Borrowed(&r.rules[..])),
                _ => self
                    .cluster_role_rules(&role_ref.name, &mut HashSet::new())
                    .map(Cow::Owned),
            },
            _ => self
                .roles
                .get(&(namespace.to_string(), role_ref.name.clone()))
                .map(|r| Cow::Borrowed(&r[..])),
        };
        found.ok_or_else(|| MissingRole {
            kind: if role_ref.kind == "ClusterRole" {
                "clusterrole"
            } else {
                "role"
            },
            name: role_ref.name.clone(),
        })
    }

    fn clear(&mut self, kind: Kind) {
        match kind {
            Kind::Role => self.roles.clear(),
            Kind::ClusterRole => self.cluster_roles.clear(),
            Kind::RoleBinding => self.role_bindings.clear(),
            Kind::ClusterRoleBinding => self.cluster_role_bindings.clear(),
        }
    }

    /// A ClusterRole's rules, aggregated ones resolved through every level of aggregation.
    fn cluster_role_rules(&self, name: &str, seen: &mut HashSet<String>) -> Option<Vec<Rule>> {
        let role = self.cluster_roles.get(name)?;
        if !seen.insert(name.to_string()) {
            return Some(Vec::new());
        }
        let Some(selectors) = &role.selectors else {
            return Some(role.rules.clone());
        };
        let mut rules: Vec<Rule> = Vec::new();
        for (other, candidate) in &self.cluster_roles {
            if other != name && selectors.iter().any(|s| s.matches(&candidate.labels)) {
                for rule in self.cluster_role_rules(other, seen).unwrap_or_default() {
                    if !rules.contains(&rule) {
                        rules.push(rule);
                    }
                }
            }
        }
        Some(rules)
    }
}

impl Reflect for RbacCache {
    type Kind = Kind;

    fn info(kind: Kind) -> &'static ResourceInfo {
        kind.info()
    }

    fn replace(&self, kind: Kind, objects: Vec<(String, Value)>) {
        let mut snapshot = self.snapshot.write();
        snapshot.clear(kind);
        for (key, obj) in &objects {
            snapshot.apply(kind, key, Some(obj));
        }
        drop(snapshot);
        self.changed(kind);
    }

    fn apply(&self, kind: Kind, key: &str, obj: Option<&Value>) {
        self.snapshot.write().apply(kind, key, obj);
        self.changed(kind);
    }
}

impl RbacCache {
    /// Lists the RBAC objects and keeps them current until the process ends.
    pub async fn start(store: Arc<dyn Storage>) -> crate::storage::Result<Arc<Self>> {
        let cache = Arc::new(Self {
            snapshot: RwLock::new(Snapshot::default()),
            cluster_roles_changed: tokio::sync::Notify::new(),
        });
        reflect::start(&store, &cache, &Kind::ALL).await?;
        Ok(cache)
    }

    fn changed(&self, kind: Kind) {
        if matches!(kind, Kind::ClusterRole) {
            self.cluster_roles_changed.notify_one();
        }
    }

    /// Resolves once a ClusterRole has changed since the last call.
    pub async fn cluster_roles_changed(&self) {
        self.cluster_roles_changed.notified().await;
    }

    /// A cache over fixed objects (tests, benchmarks): `(resource plural, object)` pairs.
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = (&'a str, Value)>) -> Arc<Self> {
        let mut snapshot = Snapshot::default();
        for (plural, obj) in objects {
            let kind = match plural {
                "roles" => Kind::Role,
                "clusterroles" => Kind::ClusterRole,
                "rolebindings" => Kind::RoleBinding,
                _ => Kind::ClusterRoleBinding,
            };
            let info = kind.info();
            let key = crate::registry::key(
                info,
                Some(str_at(&obj, "/metadata/namespace")),
                str_at(&obj, "/metadata/name"),
            );
            snapshot.apply(kind, &key, Some(&obj));
        }
        Arc::new(Self {
            snapshot: RwLock::new(snapshot),
            cluster_roles_changed: tokio::sync::Notify::new(),
        })
    }

    /// Calls `visit` with the rules of each binding `applies` accepts among those that may
    /// apply in `namespace` (every ClusterRoleBinding, then the RoleBindings of `namespace`)
    /// until `visit` returns `true`; returns the roles that bindings name but do not exist.
    pub fn visit_rules(
        &self,
        namespace: &str,
        mut applies: impl FnMut(&Binding) -> bool,
        mut visit: impl FnMut(&Rule) -> bool,
    ) -> Vec<MissingRole> {
        let snapshot = self.snapshot.read();
        let namespaced = snapshot
            .role_bindings
            .get(namespace)
            .filter(|_| !namespace.is_empty())
            .into_iter()
            .flat_map(BTreeMap::values);
        let mut missing = Vec::new();
        for b in snapshot.cluster_role_bindings.values().chain(namespaced) {
            if !applies(b) {
                continue;
            }
            match snapshot.role_ref_rules(&b.role_ref, &b.namespace) {
                Ok(rules) => {
                    if rules.iter().any(&mut visit) {
                        break;
                    }
                }
                Err(e) => missing.push(e),
            }
        }
        missing
    }

    /// The rules a binding's `roleRef` grants: a ClusterRole's, or a Role's in `namespace`.
    pub fn role_ref_rules(
        &self,
        role_ref: &RoleRef,
        namespace: &str,
    ) -> Result<Vec<Rule>, MissingRole> {
        self.snapshot
            .read()
            .role_ref_rules(role_ref, namespace)
            .map(Cow::into_owned)
    }

    /// Every aggregated ClusterRole whose stored `rules` differ from what its selectors
    /// resolve to, with the resolved rules.
    pub fn stale_aggregations(&self) -> Vec<(String, Vec<Rule>)> {
        let snapshot = self.snapshot.read();
        snapshot
            .cluster_roles
            .iter()
            .filter(|(_, r)| r.selectors.is_some())
            .filter_map(|(name, role)| {
                let resolved = snapshot.cluster_role_rules(name, &mut HashSet::new())?;
                (resolved != role.rules).then(|| (name.clone(), resolved))
            })
            .collect()
    }
}
