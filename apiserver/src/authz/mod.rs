//! Authorization: may this user do this? Requests are described by [`Attributes`] (upstream's
//! `RequestInfo`, parsed in [`request_info`]) and put to the authorizers `--authorization-mode`
//! names, in order: the first that allows or denies decides; if none has an opinion the request
//! is forbidden. Members of `system:masters` are allowed before any authorizer is asked, as
//! upstream's privileged-group authorizer does. [`node`] confines kubelets to their own Node and
//! what their pods use; [`rbac`] evaluates Roles and bindings held in memory by [`cache`]; both
//! views are kept from storage watches by [`reflect`]. [`aggregate`] writes aggregated
//! ClusterRoles' rules; [`policy`] is the bootstrap policy [`reconcile`] writes at start;
//! [`escalation`] stops users granting what they do not hold; [`review`] serves the
//! `*AccessReview`/`SelfSubjectRulesReview` APIs.

pub mod aggregate;
pub mod cache;
pub mod escalation;
pub mod node;
pub mod policy;
pub mod rbac;
pub mod reconcile;
pub mod reflect;
pub mod request_info;
pub mod review;
pub mod rules;
pub mod validation;

use std::sync::Arc;

use serde_json::json;

use crate::auth::{MASTERS, User};
use crate::errors::ApiError;

/// What a request asks to do, as upstream's `authorizer.Attributes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub user: User,
    pub verb: String,
    /// Whether this addresses an API resource (else a non-resource path such as `/healthz`).
    pub resource_request: bool,
    /// The request path (what non-resource rules match).
    pub path: String,
    pub namespace: String,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    /// The `fieldSelector` of a list or watch, as sent (the Node authorizer lets a node list
    /// pods selected by `spec.nodeName=<itself>`).
    pub field_selector: String,
}

impl Attributes {
    /// `pods/log`, or `pods` without a subresource.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
    /// Neither allowed nor denied; the reason (possibly empty) is shown if nobody allows.
    NoOpinion(String),
}

/// A resource or non-resource rule a user holds, as `SelfSubjectRulesReview` reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSet {
    pub rules: Vec<rules::Rule>,
    /// Why the list may be incomplete (a binding naming a missing role, say).
    pub errors: Vec<String>,
}

/// One authorization mode of the chain.
pub trait Authorizer: Send + Sync {
    fn authorize(&self, attributes: &Attributes) -> Decision;
    /// Everything `user` may do in `namespace` (cluster-wide rules included), or `None` when
    /// this authorizer cannot list rules.
    fn rules_for(&self, user: &User, namespace: &str) -> Option<RuleSet>;
}

/// `--authorization-mode` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    AlwaysAllow,
    AlwaysDeny,
    Node,
    Rbac,
}

impl Mode {
    /// Parses a comma-separated mode list, refusing unknown and not-yet-available modes.
    pub fn parse_list(s: &str) -> Result<Vec<Self>, String> {
        let mut modes = Vec::new();
        for m in s.split(',').map(str::trim) {
            let mode = match m {
                "AlwaysAllow" => Self::AlwaysAllow,
                "AlwaysDeny" => Self::AlwaysDeny,
                "RBAC" => Self::Rbac,
                "Node" => Self::Node,
                "ABAC" | "Webhook" => {
                    return Err(format!(
                        "--authorization-mode: {m} is not supported; use Node, RBAC, AlwaysAllow or AlwaysDeny"
                    ));
                }
                other => {
                    return Err(format!(
                        "--authorization-mode: unknown mode {other:?}; known modes are AlwaysAllow, AlwaysDeny, Node, RBAC"
                    ));
                }
            };
            if modes.contains(&mode) {
                return Err(format!("--authorization-mode: {m} is listed twice"));
            }
            modes.push(mode);
        }
        Ok(modes)
    }
}

struct AlwaysAllow;

impl Authorizer for AlwaysAllow {
    fn authorize(&self, _: &Attributes) -> Decision {
        Decision::Allow
    }

    fn rules_for(&self, _: &User, _: &str) -> Option<RuleSet> {
        Some(RuleSet {
            rules: vec![rules::Rule::everything()],
            errors: Vec::new(),
        })
    }
}

struct AlwaysDeny;

impl Authorizer for AlwaysDeny {
    fn authorize(&self, _: &Attributes) -> Decision {
        Decision::Deny("Everything is forbidden.".into())
    }

    fn rules_for(&self, _: &User, _: &str) -> Option<RuleSet> {
        Some(RuleSet::default())
    }
}

/// The configured chain.
pub struct Authorization {
    chain: Vec<Arc<dyn Authorizer>>,
}

impl Authorization {
    /// The chain for `modes`; RBAC reads from `cache`, the Node authorizer from `nodes`.
    pub fn new(
        modes: &[Mode],
        cache: &Arc<cache::RbacCache>,
        nodes: &Arc<node::NodeGraph>,
    ) -> Self {
        let chain = modes
            .iter()
            .map(|m| -> Arc<dyn Authorizer> {
                match m {
                    Mode::AlwaysAllow => Arc::new(AlwaysAllow),
                    Mode::AlwaysDeny => Arc::new(AlwaysDeny),
                    Mode::Node => Arc::new(node::NodeAuthorizer::new(nodes.clone())),
                    Mode::Rbac => Arc::new(rbac::Rbac::new(cache.clone())),
                }
            })
            .collect();
        Self { chain }
    }

    pub fn authorize(&self, a: &Attributes) -> Decision {
        if a.user.in_group(MASTERS) {
            return Decision::Allow;
        }
        let mut reasons = Vec::new();
        for authorizer in &self.chain {
            match authorizer.authorize(a) {
                Decision::NoOpinion(reason) => {
                    if !reason.is_empty() {
                        reasons.push(reason);
                    }
                }
                decided => return decided,
            }
        }
        Decision::NoOpinion(reasons.join(", "))
    }

    /// `Ok` if allowed, else upstream's Forbidden answer.
    pub fn check(&self, a: &Attributes) -> Result<(), ApiError> {
        match self.authorize(a) {
            Decision::Allow => Ok(()),
            Decision::Deny(reason) | Decision::NoOpinion(reason) => Err(forbidden(a, &reason)),
        }
    }

    /// The union of what every authorizer lists for `user` in `namespace`; `incomplete` when
    /// some authorizer cannot list its rules or hit errors.
    pub fn rules_for(&self, user: &User, namespace: &str) -> (RuleSet, bool) {
        if user.in_group(MASTERS) {
            return (
                RuleSet {
                    rules: vec![rules::Rule::everything()],
                    errors: Vec::new(),
                },
                false,
            );
        }
        let mut all = RuleSet::default();
        let mut incomplete = false;
        for authorizer in &self.chain {
            match authorizer.rules_for(user, namespace) {
                Some(set) => {
                    incomplete |= !set.errors.is_empty();
                    all.rules.extend(set.rules);
                    all.errors.extend(set.errors);
                }
                None => incomplete = true,
            }
        }
        (all, incomplete)
    }
}

/// `User "jane" cannot list resource "pods" in API group "" in the namespace "dev"`, as
/// upstream's `forbiddenMessage` words it.
pub fn forbidden_message(a: &Attributes) -> String {
    let user = &a.user.name;
    let verb = &a.verb;
    if !a.resource_request {
        return format!("User {user:?} cannot {verb} path {:?}", a.path);
    }
    let resource = a.combined_resource();
    let group = &a.api_group;
    if a.namespace.is_empty() {
        format!(
            "User {user:?} cannot {verb} resource {resource:?} in API group {group:?} at the cluster scope"
        )
    } else {
        format!(
            "User {user:?} cannot {verb} resource {resource:?} in API group {group:?} in the namespace {:?}",
            a.namespace
        )
    }
}

/// The 403 for a refused request: `pods "web" is forbidden: User …`, details naming the
/// group, resource and object as upstream's `NewForbidden` does.
pub fn forbidden(a: &Attributes, reason: &str) -> ApiError {
    let mut why = forbidden_message(a);
    if !reason.is_empty() {
        why = format!("{why}: {reason}");
    }
    forbidden_resource(&a.api_group, &a.resource, &a.name, &why)
}

/// `<resource>[.<group>] ["<name>"] is forbidden: <why>` (or `forbidden: <why>` when no resource
/// is concerned), upstream's `NewForbidden`.
pub fn forbidden_resource(group: &str, resource: &str, name: &str, why: &str) -> ApiError {
    let qualified = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    let message = match (qualified.is_empty(), name.is_empty()) {
        (true, _) => format!("forbidden: {why}"),
        (false, true) => format!("{qualified} is forbidden: {why}"),
        (false, false) => format!("{qualified} \"{name}\" is forbidden: {why}"),
    };
    let mut details = serde_json::Map::new();
    for (k, v) in [("name", name), ("group", group), ("kind", resource)] {
        if !v.is_empty() {
            details.insert(k.into(), json!(v));
        }
    }
    let mut e = ApiError::forbidden(message);
    e.details = Some(details.into());
    e
}

#[cfg(test)]
mod tests;
