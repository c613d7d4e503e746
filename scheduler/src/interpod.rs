//! Inter-pod affinity and anti-affinity, as upstream's InterPodAffinity plugin: a term names
//! pods (a label selector over some namespaces) and a topology key; the pods it looks at are
//! those on every node sharing the candidate node's value of that key (its domain).
//!
//! - Filter: every required affinity term must find a pod in the domain (or, when no pod
//!   anywhere matches and the pod matches its own term, it may start the group); no required
//!   anti-affinity term may find one; and no pod already placed may have a required
//!   anti-affinity term that the incoming pod matches in that domain (the symmetric rule).
//! - Score: each preferred term adds (affinity) or takes away (anti-affinity) its weight per
//!   matching pod in the domain, normalised to 0–100 over the feasible nodes.
//!
//! A term's namespaces are its `namespaces`, or the pod's own when it names none; a
//! `namespaceSelector` is matched against the namespace's `kubernetes.io/metadata.name`
//! label, the only namespace label the scheduler knows, so `{}` selects every namespace.

use std::collections::BTreeMap;

use ekube_api::selector::LabelSelector as Selector;
use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, WeightedPodAffinityTerm};

use crate::framework::{Incoming, NodeInfo};

pub const AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";

/// What the scheduler keeps of a pod placed on a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// Its required anti-affinity terms, for the symmetric rule.
    pub anti_affinity: Vec<PodAffinityTerm>,
}

impl Placed {
    pub fn of(pod: &Pod) -> Self {
        Self {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            anti_affinity: Terms::of(pod).required_anti,
        }
    }
}

/// A pod's terms, by kind.
#[derive(Default)]
pub(crate) struct Terms {
    required: Vec<PodAffinityTerm>,
    required_anti: Vec<PodAffinityTerm>,
    /// (weight, term); anti-affinity with a negative weight.
    preferred: Vec<(i64, PodAffinityTerm)>,
}

impl Terms {
    pub(crate) fn of(pod: &Pod) -> Self {
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let mut t = Terms::default();
        // Affinity and anti-affinity have the same shape in two types.
        let mut take = |required: &Option<Vec<PodAffinityTerm>>,
                        preferred: &Option<Vec<WeightedPodAffinityTerm>>,
                        sign: i64| {
            t.preferred.extend(
                preferred
                    .iter()
                    .flatten()
                    .map(|w| (sign * i64::from(w.weight), w.pod_affinity_term.clone())),
            );
            required.clone().unwrap_or_default()
        };
        if let Some(a) = affinity.and_then(|a| a.pod_affinity.as_ref()) {
            let required = take(
                &a.required_during_scheduling_ignored_during_execution,
                &a.preferred_during_scheduling_ignored_during_execution,
                1,
            );
            t.required = required;
        }
        if let Some(a) = affinity.and_then(|a| a.pod_anti_affinity.as_ref()) {
            let required = take(
                &a.required_during_scheduling_ignored_during_execution,
                &a.preferred_during_scheduling_ignored_during_execution,
                -1,
            );
            t.required_anti = required;
        }
        t
    }
}

/// Whether `term` (of a pod in namespace `own`) selects a pod in `namespace` with `labels`.
fn selects(
    term: &PodAffinityTerm,
    own: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let in_namespace = match (&term.namespaces, &term.namespace_selector) {
        (names, selector)
            if names.as_ref().is_some_and(|n| !n.is_empty()) || selector.is_some() =>
        {
            names.iter().flatten().any(|n| n == namespace)
                || selector.as_ref().is_some_and(|s| {
                    let ns_labels = BTreeMap::from([(
                        "kubernetes.io/metadata.name".to_owned(),
                        namespace.to_owned(),
                    )]);
                    Selector::from_label_selector(s).matches(&ns_labels)
                })
        }
        _ => namespace == own,
    };
    // A term without a selector selects nothing (upstream's null selector).
    in_namespace
        && term
            .label_selector
            .as_ref()
            .is_some_and(|s| Selector::from_label_selector(s).matches(labels))
}

/// The node's value of `key`.
fn domain<'a>(ni: &'a NodeInfo, key: &str) -> Option<&'a str> {
    ni.node
        .metadata
        .labels
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// The pods in node `at`'s domain of `key` (none when the node has no such label).
fn in_domain<'a>(
    infos: &'a [NodeInfo],
    at: usize,
    key: &str,
) -> impl Iterator<Item = &'a Placed> + 'a {
    let value = domain(&infos[at], key).map(str::to_owned);
    let key = key.to_owned();
    infos
        .iter()
        .filter(move |ni| value.is_some() && domain(ni, &key) == value.as_deref())
        .flat_map(|ni| ni.placed.iter().map(|p| &**p))
}

/// The InterPodAffinity filter for node `at`.
/// `guarded` are the nodes with a placed pod that has required anti-affinity terms
/// ([`NodeInfo::has_anti_affinity`]), the only ones the symmetric rule needs to look at.
pub fn filter(
    incoming: &Incoming,
    at: usize,
    infos: &[NodeInfo],
    guarded: &[usize],
) -> Result<(), &'static str> {
    static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
    let pod = incoming.pod;
    let own = pod.metadata.namespace.as_deref().unwrap_or_default();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS);
    let t = &incoming.affinity;
    for term in &t.required {
        let found = in_domain(infos, at, &term.topology_key)
            .any(|p| selects(term, own, &p.namespace, &p.labels));
        let anywhere = infos
            .iter()
            .flat_map(|ni| ni.placed.iter())
            .any(|p| selects(term, own, &p.namespace, &p.labels));
        // The first pod of a group that is its own affinity starts it anywhere in a domain.
        let first_of_group = !anywhere
            && selects(term, own, own, labels)
            && domain(&infos[at], &term.topology_key).is_some();
        if !found && !first_of_group {
            return Err(AFFINITY);
        }
    }
    for term in &t.required_anti {
        if in_domain(infos, at, &term.topology_key)
            .any(|p| selects(term, own, &p.namespace, &p.labels))
        {
            return Err(ANTI_AFFINITY);
        }
    }
    for &j in guarded {
        let ni = &infos[j];
        for placed in &ni.placed {
            for term in &placed.anti_affinity {
                let same_domain = domain(ni, &term.topology_key)
                    .is_some_and(|v| domain(&infos[at], &term.topology_key) == Some(v));
                if (j == at || same_domain) && selects(term, &placed.namespace, own, labels) {
                    return Err(EXISTING_ANTI_AFFINITY);
                }
            }
        }
    }
    Ok(())
}

/// The InterPodAffinity scores of the `feasible` nodes, 0–100 each (all 0 without preferred
/// terms).
pub fn scores(incoming: &Incoming, feasible: &[usize], infos: &[NodeInfo]) -> Vec<i64> {
    let own = incoming
        .pod
        .metadata
        .namespace
        .as_deref()
        .unwrap_or_default();
    let preferred = &incoming.affinity.preferred;
    let raw: Vec<i64> = feasible
        .iter()
        .map(|&at| {
            preferred
                .iter()
                .map(|(weight, term)| {
                    let n = in_domain(infos, at, &term.topology_key)
                        .filter(|p| selects(term, own, &p.namespace, &p.labels))
                        .count();
                    weight * i64::try_from(n).unwrap_or(i64::MAX)
                })
                .sum()
        })
        .collect();
    let (min, max) = (
        raw.iter().copied().min().unwrap_or(0),
        raw.iter().copied().max().unwrap_or(0),
    );
    raw.iter()
        .map(|r| {
            if max == min {
                0
            } else {
                (r - min) * 100 / (max - min)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;

    fn node(name: &str, zone: &str) -> NodeInfo {
        NodeInfo::new(
            serde_json::from_value::<Node>(json!({"metadata": {"name": name,
                "labels": {"kubernetes.io/hostname": name, "zone": zone}}}))
            .unwrap(),
        )
    }

    fn pod(ns: &str, labels: serde_json::Value, affinity: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": ns, "labels": labels},
            "spec": {"containers": [], "affinity": affinity}}),
        )
        .unwrap()
    }

    /// [`filter`] as the scheduler calls it.
    fn check(pod: &Pod, at: usize, infos: &[NodeInfo]) -> Result<(), &'static str> {
        let guarded: Vec<usize> = (0..infos.len())
            .filter(|&i| infos[i].has_anti_affinity)
            .collect();
        filter(&Incoming::new(pod), at, infos, &guarded)
    }

    fn score_all(pod: &Pod, feasible: &[usize], infos: &[NodeInfo]) -> Vec<i64> {
        scores(&Incoming::new(pod), feasible, infos)
    }

    fn term(key: &str, app: &str) -> serde_json::Value {
        json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key})
    }

    fn cluster() -> Vec<NodeInfo> {
        let mut infos = vec![node("a", "z1"), node("b", "z1"), node("c", "z2")];
        infos[0].add(&pod("default", json!({"app": "db"}), json!(null)));
        infos[2].add(&pod("other", json!({"app": "db"}), json!(null)));
        infos
    }

    #[test]
    fn required_anti_affinity_by_host_and_by_zone() {
        let infos = cluster();
        let by_host = pod(
            "default",
            json!({"app": "web"}),
            json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("kubernetes.io/hostname", "db")]}}),
        );
        assert_eq!(check(&by_host, 0, &infos), Err(ANTI_AFFINITY));
        assert_eq!(check(&by_host, 1, &infos), Ok(()));
        // The db pod on c is in another namespace: the term looks at its own only.
        assert_eq!(check(&by_host, 2, &infos), Ok(()));
        let by_zone = pod(
            "default",
            json!({"app": "web"}),
            json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("zone", "db")]}}),
        );
        assert_eq!(check(&by_zone, 1, &infos), Err(ANTI_AFFINITY));
        let mut everywhere = term("zone", "db");
        everywhere["namespaceSelector"] = json!({});
        let all_ns = pod(
            "default",
            json!({}),
            json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [everywhere]}}),
        );
        assert_eq!(check(&all_ns, 2, &infos), Err(ANTI_AFFINITY));
    }

    #[test]
    fn required_affinity_and_the_first_of_a_group() {
        let infos = cluster();
        let near_db = pod(
            "default",
            json!({"app": "web"}),
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("zone", "db")]}}),
        );
        assert_eq!(
            check(&near_db, 1, &infos),
            Ok(()),
            "same zone as the db pod on a"
        );
        assert_eq!(check(&near_db, 2, &infos), Err(AFFINITY));
        let group = pod(
            "default",
            json!({"app": "cache"}),
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("zone", "cache")]}}),
        );
        assert_eq!(
            check(&group, 2, &infos),
            Ok(()),
            "no cache pod yet: the first may start it"
        );
        let missing_key = pod(
            "default",
            json!({"app": "cache"}),
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("rack", "cache")]}}),
        );
        assert_eq!(check(&missing_key, 0, &infos), Err(AFFINITY));
    }

    #[test]
    fn placed_pods_anti_affinity_repels_the_newcomer() {
        let mut infos = cluster();
        infos[1].add(&pod("default", json!({"app": "lonely"}),
            json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("kubernetes.io/hostname", "web")]}})));
        let web = pod("default", json!({"app": "web"}), json!(null));
        assert_eq!(check(&web, 1, &infos), Err(EXISTING_ANTI_AFFINITY));
        assert_eq!(check(&web, 0, &infos), Ok(()));
    }

    #[test]
    fn preferred_terms_score_per_matching_pod() {
        let mut infos = cluster();
        infos[0].add(&pod("default", json!({"app": "dns"}), json!(null)));
        let dns = pod(
            "default",
            json!({"app": "dns"}),
            json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": term("kubernetes.io/hostname", "dns")}]}}),
        );
        assert_eq!(score_all(&dns, &[0, 1, 2], &infos), vec![0, 100, 100]);
        let plain = pod("default", json!({}), json!(null));
        assert_eq!(score_all(&plain, &[0, 1, 2], &infos), vec![0, 0, 0]);
    }
}
