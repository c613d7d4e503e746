//! Node selectors (`NodeSelector`: terms of `matchExpressions` and `matchFields`), as upstream's
//! `ValidateNodeSelector` words them. A PersistentVolume's `nodeAffinity.required` is one; the
//! scheduler and the PV controller match nodes against it with `ekube_api::nodematch`, so what
//! is admitted here is what they can evaluate.

use serde_json::Value;

use super::json::{items, quoted, str_of};
use super::{label_value, qualified_name};
use crate::errors::Cause;

/// The only field a `matchFields` requirement may select on, as upstream's
/// `nodeFieldSelectorValidators`.
const NODE_FIELD: &str = "metadata.name";

/// A `NodeSelector` at `at`: at least one term, each requirement well-formed.
pub(super) fn node_selector(sel: &Value, at: &str, causes: &mut Vec<Cause>) {
    let terms_at = format!("{at}.nodeSelectorTerms");
    let terms = items(sel, "nodeSelectorTerms");
    if terms.is_empty() {
        causes.push(Cause::required_with(
            terms_at,
            "must have at least one node selector term",
        ));
        return;
    }
    for (i, term) in terms.iter().enumerate() {
        let at = format!("{terms_at}[{i}]");
        for (j, req) in items(term, "matchExpressions").iter().enumerate() {
            expression(req, &format!("{at}.matchExpressions[{j}]"), causes);
        }
        for (j, req) in items(term, "matchFields").iter().enumerate() {
            field(req, &format!("{at}.matchFields[{j}]"), causes);
        }
    }
}

/// Upstream's `ValidateNodeSelectorRequirement`: the operator decides how many values there
/// are; the key is a label name and each value a label value.
fn expression(req: &Value, at: &str, causes: &mut Vec<Cause>) {
    let op = str_of(req, "operator");
    let values = items(req, "values");
    match op {
        "In" | "NotIn" if values.is_empty() => causes.push(Cause::required_with(
            format!("{at}.values"),
            "must be specified when `operator` is 'In' or 'NotIn'",
        )),
        "Exists" | "DoesNotExist" if !values.is_empty() => causes.push(Cause::forbidden(
            format!("{at}.values"),
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        )),
        "Gt" | "Lt" if values.len() != 1 => causes.push(Cause::required_with(
            format!("{at}.values"),
            "must be specified single value when `operator` is 'Lt' or 'Gt'",
        )),
        "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
        other => causes.push(Cause::invalid(
            format!("{at}.operator"),
            quoted(other),
            "not a valid selector operator",
        )),
    }
    let key = str_of(req, "key");
    for msg in qualified_name(key) {
        causes.push(Cause::invalid(format!("{at}.key"), quoted(key), &msg));
    }
    for (k, v) in values.iter().enumerate() {
        let value = v.as_str().unwrap_or_default();
        for msg in label_value(value) {
            causes.push(Cause::invalid(
                format!("{at}.values[{k}]"),
                quoted(value),
                msg,
            ));
        }
    }
}

/// Upstream's `ValidateNodeFieldSelectorRequirement`: `metadata.name` `In`/`NotIn` one name.
fn field(req: &Value, at: &str, causes: &mut Vec<Cause>) {
    let values = items(req, "values");
    match str_of(req, "operator") {
        "In" | "NotIn" => {
            if values.len() != 1 {
                causes.push(Cause::required_with(
                    format!("{at}.values"),
                    "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                ));
            }
        }
        other => causes.push(Cause::invalid(
            format!("{at}.operator"),
            quoted(other),
            "not a valid selector operator",
        )),
    }
    let key = str_of(req, "key");
    if key != NODE_FIELD {
        causes.push(Cause::invalid(
            format!("{at}.key"),
            quoted(key),
            "not a valid field selector key",
        ));
        return;
    }
    for (k, v) in values.iter().enumerate() {
        let name = v.as_str().unwrap_or_default();
        if !super::is_dns1123_subdomain(name) {
            causes.push(Cause::invalid(
                format!("{at}.values[{k}]"),
                quoted(name),
                super::DNS1123_SUBDOMAIN,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn render(sel: Value) -> Vec<String> {
        let mut causes = Vec::new();
        node_selector(&sel, "spec.nodeAffinity.required", &mut causes);
        causes
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    fn one(expr: Value) -> Vec<String> {
        render(json!({"nodeSelectorTerms": [{"matchExpressions": [expr]}]}))
    }

    const AT: &str = "spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0]";

    #[test]
    fn well_formed_selectors_pass() {
        let sel = json!({"nodeSelectorTerms": [
            {"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-a"]},
                {"key": "disk", "operator": "Exists"},
                {"key": "cores", "operator": "Gt", "values": ["4"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["node-b"]}]}]});
        assert_eq!(render(sel), Vec::<String>::new());
    }

    #[test]
    fn terms_are_required() {
        assert_eq!(
            render(json!({"nodeSelectorTerms": []})),
            [
                "spec.nodeAffinity.required.nodeSelectorTerms: Required value: must have at least one node selector term"
            ]
        );
    }

    #[test]
    fn each_operator_takes_its_values() {
        assert_eq!(
            one(json!({"key": "k", "operator": "Near", "values": ["a"]})),
            [format!(
                "{AT}.operator: Invalid value: \"Near\": not a valid selector operator"
            )]
        );
        assert_eq!(
            one(json!({"key": "k", "operator": "In"})),
            [format!(
                "{AT}.values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
            )]
        );
        assert_eq!(
            one(json!({"key": "k", "operator": "DoesNotExist", "values": ["a"]})),
            [format!(
                "{AT}.values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
            )]
        );
        assert_eq!(
            one(json!({"key": "k", "operator": "Lt", "values": ["1", "2"]})),
            [format!(
                "{AT}.values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt'"
            )]
        );
    }

    #[test]
    fn keys_and_values_are_label_shaped() {
        let causes = one(json!({"key": "bad key", "operator": "In", "values": ["ok", "not ok"]}));
        let fields: Vec<&str> = causes
            .iter()
            .map(|c| c.split(": ").next().unwrap())
            .collect();
        assert_eq!(fields, [format!("{AT}.key"), format!("{AT}.values[1]")]);
    }

    #[test]
    fn field_requirements_select_the_node_name_only() {
        let at = "spec.nodeAffinity.required.nodeSelectorTerms[0].matchFields[0]";
        let causes = render(json!({"nodeSelectorTerms": [{"matchFields": [
            {"key": "spec.nodeName", "operator": "Exists", "values": ["a", "b"]}]}]}));
        assert_eq!(
            causes,
            [
                format!("{at}.operator: Invalid value: \"Exists\": not a valid selector operator"),
                format!(
                    "{at}.key: Invalid value: \"spec.nodeName\": not a valid field selector key"
                ),
            ]
        );
    }
}
