//! Privilege-escalation prevention on RBAC writes, as upstream's policy-based RBAC storage:
//! a user may create or update a Role/ClusterRole only with every permission it grants (or the
//! `escalate` verb on it), and a binding only with every permission of the role it references
//! (or the `bind` verb on that role). Writing an aggregated ClusterRole takes cluster-admin's
//! power. `system:masters` is exempt.

use ekube_api::ResourceInfo;
use serde_json::Value;

use super::cache::{GROUP, RbacCache, RoleRef};
use super::rules::{Rule, uncovered};
use super::{Attributes, Authorization, Decision, forbidden_resource};
use crate::auth::{MASTERS, User};
use crate::errors::Result;

/// What the writer of an RBAC object must be checked against.
pub struct Guard<'a> {
    pub authz: &'a Authorization,
    pub cache: &'a RbacCache,
    pub user: &'a User,
}

impl Guard<'_> {
    /// Refuses `obj` (about to be stored as `r` in `ns`) if writing it would escalate.
    pub fn check(&self, r: &ResourceInfo, ns: Option<&str>, obj: &Value) -> Result<()> {
        if r.group != GROUP || self.user.in_group(MASTERS) {
            return Ok(());
        }
        let ns = ns.unwrap_or_default();
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let refuse = |why: String| forbidden_resource(r.group, r.plural, name, &why);
        match r.kind {
            "Role" | "ClusterRole" => {
                if self.allowed("escalate", r.plural, ns, name) {
                    return Ok(());
                }
                if obj.get("aggregationRule").is_some_and(|a| !a.is_null()) {
                    let all = [Rule::everything(), Rule::urls(&["*"], &["*"])];
                    return self.confirm(ns, &all).map_err(|_| {
                        refuse(
                            "must have cluster-admin privileges to use the aggregationRule".into(),
                        )
                    });
                }
                let rules: Vec<Rule> = obj
                    .get("rules")
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default();
                self.confirm(ns, &rules).map_err(refuse)
            }
            "RoleBinding" | "ClusterRoleBinding" => {
                let role_ref: RoleRef = obj
                    .get("roleRef")
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default();
                let role_plural = if role_ref.kind == "ClusterRole" {
                    "clusterroles"
                } else {
                    "roles"
                };
                if self.allowed("bind", role_plural, ns, &role_ref.name) {
                    return Ok(());
                }
                let rules = self
                    .cache
                    .role_ref_rules(&role_ref, ns)
                    .map_err(|e| refuse(e.to_string()))?;
                self.confirm(ns, &rules).map_err(refuse)
            }
            _ => Ok(()),
        }
    }

    fn allowed(&self, verb: &str, plural: &str, ns: &str, name: &str) -> bool {
        let a = Attributes {
            user: self.user.clone(),
            verb: verb.into(),
            resource_request: true,
            namespace: ns.into(),
            api_group: GROUP.into(),
            api_version: "v1".into(),
            resource: plural.into(),
            name: name.into(),
            ..Attributes::default()
        };
        self.authz.authorize(&a) == Decision::Allow
    }

    /// Upstream's `ConfirmNoEscalation`: the writer must hold every rule in `ns`.
    fn confirm(&self, ns: &str, rules: &[Rule]) -> Result<(), String> {
        let (owned, _) = self.authz.rules_for(self.user, ns);
        let missing = uncovered(&owned.rules, rules);
        if missing.is_empty() {
            return Ok(());
        }
        let groups: Vec<String> = self.user.groups.iter().map(|g| format!("{g:?}")).collect();
        let mut why = format!(
            "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
            self.user.name,
            groups.join(" "),
            missing
                .iter()
                .map(Rule::compact)
                .collect::<Vec<_>>()
                .join("\n")
        );
        if !owned.errors.is_empty() {
            why.push_str(&format!(
                "; resolution errors: [{}]",
                owned.errors.join(", ")
            ));
        }
        Err(why)
    }
}
