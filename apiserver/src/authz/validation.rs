//! Validation of RBAC objects, as upstream's `pkg/apis/rbac/validation`: every rule names
//! verbs; a rule covers either resources (with API groups) or non-resource URLs, never both, and
//! a namespaced Role cannot name URLs; a binding's `roleRef` is a Role or ClusterRole of
//! `rbac.authorization.k8s.io` (a ClusterRoleBinding's only a ClusterRole) and never changes;
//! subjects are Users, Groups or ServiceAccounts with names (a ServiceAccount in a
//! ClusterRoleBinding also with a namespace). Verb names themselves are free-form upstream
//! (custom verbs such as `use` or `escalate` are legitimate), so they are not checked.

use serde_json::Value;

use super::cache::GROUP;
use crate::errors::Cause;

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn rule(rule: &Value, at: &str, namespaced: bool, causes: &mut Vec<Cause>) {
    if strings(rule.get("verbs")).is_empty() {
        causes.push(Cause::required(format!("{at}.verbs")));
    }
    let urls = strings(rule.get("nonResourceURLs"));
    if !urls.is_empty() {
        if namespaced {
            causes.push(Cause::invalid(
                format!("{at}.nonResourceURLs"),
                format!("{urls:?}"),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if !strings(rule.get("apiGroups")).is_empty() || !strings(rule.get("resources")).is_empty()
        {
            causes.push(Cause::invalid(
                format!("{at}.nonResourceURLs"),
                format!("{urls:?}"),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return;
    }
    if strings(rule.get("apiGroups")).is_empty() {
        causes.push(Cause::required_with(
            format!("{at}.apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if strings(rule.get("resources")).is_empty() {
        causes.push(Cause::required_with(
            format!("{at}.resources"),
            "resource rules must supply at least one resource",
        ));
    }
}

fn rules(obj: &Value, namespaced: bool, causes: &mut Vec<Cause>) {
    match obj.get("rules") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, r) in list.iter().enumerate() {
                rule(r, &format!("rules[{i}]"), namespaced, causes);
            }
        }
        Some(other) => causes.push(Cause::invalid("rules", other, "must be a list of rules")),
    }
}

fn binding(obj: &Value, cluster: bool, causes: &mut Vec<Cause>) {
    let rr = obj.get("roleRef");
    let field = |f: &str| {
        rr.and_then(|r| r.get(f))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    if field("apiGroup") != GROUP {
        causes.push(Cause::not_supported(
            "roleRef.apiGroup",
            field("apiGroup"),
            &[GROUP],
        ));
    }
    let kinds: &[&str] = if cluster {
        &["ClusterRole"]
    } else {
        &["Role", "ClusterRole"]
    };
    if !kinds.contains(&field("kind")) {
        causes.push(Cause::not_supported("roleRef.kind", field("kind"), kinds));
    }
    if field("name").is_empty() {
        causes.push(Cause::required("roleRef.name"));
    }
    let subjects = obj.get("subjects").and_then(Value::as_array);
    for (i, s) in subjects.into_iter().flatten().enumerate() {
        let at = format!("subjects[{i}]");
        let get = |f: &str| s.get(f).and_then(Value::as_str).unwrap_or_default();
        if get("name").is_empty() {
            causes.push(Cause::required(format!("{at}.name")));
        }
        match get("kind") {
            "ServiceAccount" => {
                if !get("apiGroup").is_empty() {
                    causes.push(Cause::not_supported(
                        format!("{at}.apiGroup"),
                        get("apiGroup"),
                        &[""],
                    ));
                }
                if cluster && get("namespace").is_empty() {
                    causes.push(Cause::required(format!("{at}.namespace")));
                }
            }
            "User" | "Group" => {
                if get("apiGroup") != GROUP {
                    causes.push(Cause::not_supported(
                        format!("{at}.apiGroup"),
                        get("apiGroup"),
                        &[GROUP],
                    ));
                }
            }
            other => causes.push(Cause::not_supported(
                format!("{at}.kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
}

/// The problems of an RBAC object of `kind`.
pub fn validate(kind: &str, obj: &Value, causes: &mut Vec<Cause>) {
    match kind {
        "Role" => rules(obj, true, causes),
        "ClusterRole" => rules(obj, false, causes),
        "RoleBinding" => binding(obj, false, causes),
        "ClusterRoleBinding" => binding(obj, true, causes),
        _ => {}
    }
}

/// An update may not change a binding's `roleRef`.
pub fn immutable(kind: &str, old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    if matches!(kind, "RoleBinding" | "ClusterRoleBinding")
        && old.get("roleRef") != new.get("roleRef")
    {
        causes.push(Cause::invalid(
            "roleRef",
            new.get("roleRef").cloned().unwrap_or_default(),
            "cannot change roleRef",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(kind: &str, obj: Value) -> Vec<String> {
        let mut causes = Vec::new();
        validate(kind, &obj, &mut causes);
        causes.into_iter().map(|c| c.field).collect()
    }

    #[test]
    fn rules_and_bindings() {
        assert_eq!(
            fields(
                "Role",
                json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            fields(
                "Role",
                json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": []}]})
            ),
            ["rules[0].verbs"]
        );
        assert_eq!(
            fields(
                "Role",
                json!({"rules": [{"nonResourceURLs": ["/x"], "verbs": ["get"]}]})
            ),
            ["rules[0].nonResourceURLs"]
        );
        assert_eq!(
            fields(
                "ClusterRole",
                json!({"rules": [{"nonResourceURLs": ["/x"], "verbs": ["get"]}]})
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            fields("ClusterRole", json!({"rules": [{"verbs": ["get"]}]})),
            ["rules[0].apiGroups", "rules[0].resources"]
        );
        // Custom verbs are legitimate upstream.
        assert!(fields("ClusterRole", json!({"rules": [{"apiGroups": ["policy"], "resources": ["podsecuritypolicies"], "verbs": ["use"]}]})).is_empty());
        let rr = json!({"apiGroup": GROUP, "kind": "Role", "name": "r"});
        assert!(fields("RoleBinding", json!({"roleRef": rr, "subjects": [{"kind": "User", "apiGroup": GROUP, "name": "jane"}, {"kind": "ServiceAccount", "name": "sa"}]})).is_empty());
        assert_eq!(
            fields(
                "ClusterRoleBinding",
                json!({"roleRef": rr, "subjects": [{"kind": "ServiceAccount", "name": "sa"}, {"kind": "Robot", "name": "x"}]})
            ),
            ["roleRef.kind", "subjects[0].namespace", "subjects[1].kind"]
        );
    }
}
