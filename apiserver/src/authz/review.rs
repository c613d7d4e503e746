//! The review APIs: create-only virtual resources whose answer is computed, never stored.
//! `authorization.k8s.io/v1` SubjectAccessReview (may this user…?), LocalSubjectAccessReview
//! (the same within the namespace of the path), SelfSubjectAccessReview (may I…? — `kubectl auth
//! can-i`), SelfSubjectRulesReview (what may I do here? — `kubectl auth can-i --list`) and
//! `authentication.k8s.io/v1` SelfSubjectReview (who am I? — `kubectl auth whoami`).

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Attributes, Authorization, Decision};
use crate::auth::User;
use crate::errors::{ApiError, Cause, Result};

/// A create-only resource served without storage.
#[derive(Debug, PartialEq, Eq)]
pub struct Virtual {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

const fn v(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
) -> Virtual {
    Virtual {
        group,
        version: "v1",
        kind,
        plural,
        namespaced,
    }
}

pub const VIRTUAL: &[Virtual] = &[
    v(
        "authorization.k8s.io",
        "SubjectAccessReview",
        "subjectaccessreviews",
        false,
    ),
    v(
        "authorization.k8s.io",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        false,
    ),
    v(
        "authorization.k8s.io",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        true,
    ),
    v(
        "authorization.k8s.io",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        false,
    ),
    v(
        "authentication.k8s.io",
        "SelfSubjectReview",
        "selfsubjectreviews",
        false,
    ),
];

impl Virtual {
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

/// The virtual resource a path under `/apis/<group>/<version>/` addresses, with its namespace.
pub fn find<'a>(
    group: &str,
    version: &str,
    rest: &[&'a str],
) -> Option<(&'static Virtual, Option<&'a str>)> {
    let (ns, plural) = match rest {
        ["namespaces", ns, plural] => (Some(*ns), *plural),
        [plural] => (None, *plural),
        _ => return None,
    };
    let found = VIRTUAL
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)?;
    (found.namespaced == ns.is_some()).then_some((found, ns))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ResourceAttributes {
    namespace: String,
    verb: String,
    group: String,
    version: String,
    resource: String,
    subresource: String,
    name: String,
    field_selector: FieldSelectorAttributes,
}

/// `resourceAttributes.fieldSelector`: only the raw form is read.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct FieldSelectorAttributes {
    raw_selector: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NonResourceAttributes {
    path: String,
    verb: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Spec {
    resource_attributes: Option<ResourceAttributes>,
    non_resource_attributes: Option<NonResourceAttributes>,
    user: String,
    groups: Vec<String>,
    uid: String,
    extra: std::collections::BTreeMap<String, Vec<String>>,
    /// SelfSubjectRulesReview's.
    namespace: String,
}

fn invalid(r: &Virtual, cause: Cause) -> ApiError {
    ApiError::invalid(r.group, r.kind, "", vec![cause])
}

fn attributes(r: &Virtual, spec: &Spec, user: User) -> Result<Attributes> {
    match (&spec.resource_attributes, &spec.non_resource_attributes) {
        (Some(ra), None) => Ok(Attributes {
            user,
            verb: ra.verb.clone(),
            resource_request: true,
            namespace: ra.namespace.clone(),
            api_group: ra.group.clone(),
            api_version: ra.version.clone(),
            resource: ra.resource.clone(),
            subresource: ra.subresource.clone(),
            name: ra.name.clone(),
            field_selector: ra.field_selector.raw_selector.clone(),
            ..Attributes::default()
        }),
        (None, Some(nra)) => Ok(Attributes {
            user,
            verb: nra.verb.clone(),
            path: nra.path.clone(),
            ..Attributes::default()
        }),
        _ => Err(invalid(
            r,
            Cause::invalid(
                "spec.resourceAttributes",
                "",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ),
        )),
    }
}

fn access_status(decision: Decision) -> Value {
    match decision {
        Decision::Allow => json!({"allowed": true}),
        Decision::Deny(reason) => json!({"allowed": false, "denied": true, "reason": reason}),
        Decision::NoOpinion(reason) if reason.is_empty() => json!({"allowed": false}),
        Decision::NoOpinion(reason) => json!({"allowed": false, "reason": reason}),
    }
}

fn rules_status(authz: &Authorization, user: &User, namespace: &str) -> Value {
    let (set, incomplete) = authz.rules_for(user, namespace);
    let strings = |v: &[String]| json!(v);
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for rule in &set.rules {
        if !rule.non_resource_urls().is_empty() {
            non_resource_rules.push(json!({"verbs": strings(&rule.verbs), "nonResourceURLs": strings(rule.non_resource_urls())}));
        }
        if !rule.resources().is_empty() {
            let mut out = json!({"verbs": strings(&rule.verbs), "apiGroups": strings(rule.api_groups()), "resources": strings(rule.resources())});
            if !rule.resource_names().is_empty() {
                out["resourceNames"] = strings(rule.resource_names());
            }
            resource_rules.push(out);
        }
    }
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": incomplete,
    });
    if !set.errors.is_empty() {
        status["evaluationError"] = json!(set.errors.join(", "));
    }
    status
}

fn user_info(user: &User) -> Value {
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}

/// Answers a create of `r` (in `namespace` for the local review) by `user` with `body`.
pub fn create(
    authz: &Authorization,
    r: &Virtual,
    namespace: Option<&str>,
    user: &User,
    mut body: Value,
) -> Result<Value> {
    crate::handler::check_type_meta(&r.api_version(), r.kind, &body)?;
    let spec: Spec = match body.get("spec") {
        None | Some(Value::Null) => Spec::default(),
        Some(s) => serde_json::from_value(s.clone())
            .map_err(|e| ApiError::bad_request(format!("spec: {e}")))?,
    };
    let status = match r.kind {
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            if spec.user.is_empty() && spec.groups.is_empty() {
                return Err(invalid(
                    r,
                    Cause::invalid(
                        "spec.user",
                        "\"\"",
                        "at least one of user or group must be specified",
                    ),
                ));
            }
            let subject = User {
                name: spec.user.clone(),
                uid: spec.uid.clone(),
                groups: spec.groups.clone(),
                extra: spec.extra.clone(),
            };
            let a = attributes(r, &spec, subject)?;
            if let Some(ns) = namespace {
                if !a.resource_request {
                    return Err(invalid(
                        r,
                        Cause::invalid(
                            "spec.nonResourceAttributes",
                            "",
                            "disallowed on this kind of request",
                        ),
                    ));
                }
                if a.namespace != ns {
                    return Err(invalid(
                        r,
                        Cause::invalid(
                            "spec.resourceAttributes.namespace",
                            format!("{:?}", a.namespace),
                            "must match metadata.namespace",
                        ),
                    ));
                }
            }
            access_status(authz.authorize(&a))
        }
        "SelfSubjectAccessReview" => {
            access_status(authz.authorize(&attributes(r, &spec, user.clone())?))
        }
        "SelfSubjectRulesReview" => rules_status(authz, user, &spec.namespace),
        "SelfSubjectReview" => json!({"userInfo": user_info(user)}),
        other => return Err(ApiError::internal(format!("no review answers {other}"))),
    };
    body["apiVersion"] = json!(r.api_version());
    body["kind"] = json!(r.kind);
    if !body["metadata"].is_object() {
        body["metadata"] = json!({});
    }
    body["metadata"]["creationTimestamp"] = Value::Null;
    if let Some(ns) = namespace {
        body["metadata"]["namespace"] = json!(ns);
    }
    body["status"] = status;
    Ok(body)
}
