//! Which nodes a pod may run on: `nodeSelector`, node affinity terms and taints against
//! tolerations, shared by the scheduler and the controllers that place pods per node (the
//! DaemonSet controller).

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint, Toleration,
};

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => !value.is_some_and(|v| values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether one node selector term (expressions on labels, fields on `metadata.name`) holds.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            r.key == "metadata.name" && requirement_matches(r, node.metadata.name.as_deref())
        })
}

/// `nodeSelector` and required node affinity.
pub fn selects(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if !spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    required.is_none_or(|sel| {
        sel.node_selector_terms
            .iter()
            .any(|t| term_matches(t, node))
    })
}

/// Whether `toleration` tolerates `taint`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect_ok = toleration
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    let exists = toleration.operator.as_deref() == Some("Exists");
    let key_ok = match toleration.key.as_deref() {
        None | Some("") => exists,
        Some(k) => k == taint.key,
    };
    let value_ok =
        exists || toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("");
    effect_ok && key_ok && value_ok
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The node's taints with one of `effects` that no toleration tolerates.
pub fn untolerated<'a>(
    node: &'a Node,
    tolerations: &[Toleration],
    effects: &[&str],
) -> Vec<&'a Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .filter(|t| !tolerated(tolerations, t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"taints": taints}}),
        )
        .unwrap()
    }

    #[test]
    fn selectors_and_affinity() {
        let n = node(json!({"disk": "ssd", "zone": "a"}), json!([]));
        let spec = |v: serde_json::Value| -> PodSpec { serde_json::from_value(v).unwrap() };
        assert!(selects(
            &spec(json!({"containers": [], "nodeSelector": {"disk": "ssd"}})),
            &n
        ));
        assert!(!selects(
            &spec(json!({"containers": [], "nodeSelector": {"disk": "hdd"}})),
            &n
        ));
        let affinity = |terms: serde_json::Value| {
            spec(
                json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}),
            )
        };
        assert!(selects(
            &affinity(
                json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}])
            ),
            &n
        ));
        assert!(!selects(
            &affinity(
                json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}])
            ),
            &n
        ));
        assert!(selects(
            &affinity(
                json!([{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["b"]}]}])
            ),
            &n
        ));
        assert!(!selects(
            &affinity(json!([{"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}])),
            &n
        ));
    }

    #[test]
    fn taints_and_tolerations() {
        let n = node(
            json!({}),
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}, {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
        );
        let tol = |v: serde_json::Value| -> Vec<Toleration> { serde_json::from_value(v).unwrap() };
        assert_eq!(untolerated(&n, &[], &["NoSchedule", "NoExecute"]).len(), 2);
        assert_eq!(untolerated(&n, &[], &["NoExecute"]).len(), 1);
        let t = tol(
            json!([{"key": "dedicated", "operator": "Equal", "value": "db"}, {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}]),
        );
        assert!(untolerated(&n, &t, &["NoSchedule", "NoExecute"]).is_empty());
        assert_eq!(
            untolerated(
                &n,
                &tol(json!([{"key": "dedicated", "value": "web"}])),
                &["NoSchedule"]
            )
            .len(),
            1
        );
        assert!(
            untolerated(
                &n,
                &tol(json!([{"operator": "Exists"}])),
                &["NoSchedule", "NoExecute"]
            )
            .is_empty()
        );
    }
}
