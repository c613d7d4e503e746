//! The RBAC authorizer, as upstream's `plugin/pkg/auth/authorizer/rbac`: every
//! ClusterRoleBinding applies everywhere, a RoleBinding only in its namespace; a binding applies
//! to a user named by a `User` subject, to members of a `Group` subject, and to the
//! ServiceAccount `system:serviceaccount:<namespace>:<name>` of a `ServiceAccount` subject. The
//! request is allowed if any rule of any applying binding's role allows it; otherwise RBAC has
//! no opinion (reporting roles it could not find).

use std::sync::Arc;

use super::cache::{Binding, RbacCache, Subject};
use super::{Attributes, Authorizer, Decision, RuleSet};
use crate::auth::User;

pub struct Rbac {
    cache: Arc<RbacCache>,
}

/// The user name of a ServiceAccount.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// Whether `subject` of a binding in `namespace` ("" for a ClusterRoleBinding) names `user`.
pub fn applies_to(user: &User, subject: &Subject, namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => user.name == subject.name,
        "Group" => user.in_group(&subject.name),
        "ServiceAccount" => {
            let ns = if subject.namespace.is_empty() {
                namespace
            } else {
                &subject.namespace
            };
            !ns.is_empty() && user.name == service_account_user(ns, &subject.name)
        }
        _ => false,
    }
}

fn binding_applies(user: &User, b: &Binding) -> bool {
    b.subjects.iter().any(|s| applies_to(user, s, &b.namespace))
}

impl Rbac {
    pub fn new(cache: Arc<RbacCache>) -> Self {
        Self { cache }
    }

    /// Visits the rules of every role bound to `user` in `namespace` until `visit` returns
    /// `true`; returns the errors of bindings whose role is missing.
    fn visit_rules(
        &self,
        user: &User,
        namespace: &str,
        visit: impl FnMut(&super::rules::Rule) -> bool,
    ) -> Vec<String> {
        self.cache
            .visit_rules(namespace, |b| binding_applies(user, b), visit)
            .iter()
            .map(ToString::to_string)
            .collect()
    }
}

impl Authorizer for Rbac {
    fn authorize(&self, a: &Attributes) -> Decision {
        let mut allowed = false;
        let errors = self.visit_rules(&a.user, &a.namespace, |rule| {
            allowed = rule.allows(a);
            allowed
        });
        if allowed {
            return Decision::Allow;
        }
        if errors.is_empty() {
            Decision::NoOpinion(String::new())
        } else {
            Decision::NoOpinion(format!("RBAC: {}", errors.join(", ")))
        }
    }

    fn rules_for(&self, user: &User, namespace: &str) -> Option<RuleSet> {
        let mut rules = Vec::new();
        let errors = self.visit_rules(user, namespace, |rule| {
            rules.push(rule.clone());
            false
        });
        Some(RuleSet { rules, errors })
    }
}
