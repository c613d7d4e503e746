//! What a PodDisruptionBudget's status says, shared by the disruption controller (which
//! computes it) and the eviction subresource (which spends it): the `DisruptionAllowed`
//! condition as upstream's `pdb` helpers keep it, and which pods a budget selects.

use std::collections::BTreeMap;

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::selector::LabelSelector;

/// The condition type the budget's status carries.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
/// Reason of `DisruptionAllowed=True`.
pub const SUFFICIENT_PODS: &str = "SufficientPods";
/// Reason of `DisruptionAllowed=False` when too few pods are healthy.
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
/// Reason of `DisruptionAllowed=False` when the controller could not compute the status.
pub const SYNC_FAILED: &str = "SyncFailed";

/// Sets condition `cond` in `conditions` as `meta.SetStatusCondition` does: the transition
/// time moves only when the status changes; reason, message and generation are overwritten.
pub fn set_condition(conditions: &mut Vec<Condition>, cond: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == cond.type_) {
        None => conditions.push(cond),
        Some(existing) => {
            if existing.status != cond.status {
                existing.status = cond.status;
                existing.last_transition_time = cond.last_transition_time;
            }
            existing.reason = cond.reason;
            existing.message = cond.message;
            existing.observed_generation = cond.observed_generation;
        }
    }
}

/// Upstream's `UpdateDisruptionAllowedCondition`: `True`/`SufficientPods` while disruptions are
/// allowed, else `False`/`InsufficientPods`, at the status' observed generation.
pub fn update_disruption_allowed(status: &mut PodDisruptionBudgetStatus, now: Time) {
    let (value, reason) = if status.disruptions_allowed.unwrap_or(0) > 0 {
        ("True", SUFFICIENT_PODS)
    } else {
        ("False", INSUFFICIENT_PODS)
    };
    let cond = Condition {
        type_: DISRUPTION_ALLOWED.into(),
        status: value.into(),
        reason: reason.into(),
        message: String::new(),
        observed_generation: status.observed_generation,
        last_transition_time: now,
    };
    set_condition(status.conditions.get_or_insert_with(Vec::new), cond);
}

/// Upstream's `ConditionsAreUpToDate`: the condition exists, the status observed the current
/// generation, and the condition agrees with `disruptionsAllowed`.
pub fn conditions_up_to_date(pdb: &PodDisruptionBudget) -> bool {
    let Some(status) = &pdb.status else {
        return false;
    };
    let Some(cond) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == DISRUPTION_ALLOWED)
    else {
        return false;
    };
    if status.observed_generation != pdb.metadata.generation {
        return false;
    }
    if status.disruptions_allowed.unwrap_or(0) > 0 {
        cond.status == "True" && cond.reason == SUFFICIENT_PODS
    } else {
        cond.status == "False" && cond.reason == INSUFFICIENT_PODS
    }
}

/// The pods the disruption controller counts for `pdb`: none without a selector, every pod of
/// the namespace for an empty one (`LabelSelectorAsSelector`).
pub fn counts_pod(pdb: &PodDisruptionBudget, labels: &BTreeMap<String, String>) -> bool {
    match pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        None => false,
        Some(sel) => LabelSelector::from_label_selector(sel).matches(labels),
    }
}

/// Whether `pdb` guards a pod with `labels` against eviction: as [`counts_pod`], except that
/// an empty selector guards nothing (upstream's eviction: "a PDB with a nil or empty selector
/// … should match nothing, not everything").
pub fn guards_pod(pdb: &PodDisruptionBudget, labels: &BTreeMap<String, String>) -> bool {
    match pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        None => false,
        Some(sel) => {
            let sel = LabelSelector::from_label_selector(sel);
            !sel.is_empty() && sel.matches(labels)
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as Sel, ObjectMeta};
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    #[test]
    fn condition_follows_allowed_and_keeps_its_transition_time() {
        let mut status = PodDisruptionBudgetStatus {
            disruptions_allowed: Some(1),
            observed_generation: Some(3),
            ..Default::default()
        };
        update_disruption_allowed(&mut status, at(10));
        let c = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.observed_generation),
            ("True", SUFFICIENT_PODS, Some(3))
        );
        update_disruption_allowed(&mut status, at(20));
        assert_eq!(
            status.conditions.as_ref().unwrap()[0].last_transition_time,
            at(10)
        );
        status.disruptions_allowed = Some(0);
        update_disruption_allowed(&mut status, at(30));
        let c = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (
                c.status.as_str(),
                c.reason.as_str(),
                &c.last_transition_time
            ),
            ("False", INSUFFICIENT_PODS, &at(30))
        );
        assert_eq!(status.conditions.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn up_to_date_needs_the_generation_and_a_matching_condition() {
        let mut pdb = PodDisruptionBudget {
            metadata: ObjectMeta {
                generation: Some(2),
                ..Default::default()
            },
            status: Some(PodDisruptionBudgetStatus {
                disruptions_allowed: Some(1),
                observed_generation: Some(2),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(!conditions_up_to_date(&pdb));
        update_disruption_allowed(pdb.status.as_mut().unwrap(), at(1));
        assert!(conditions_up_to_date(&pdb));
        pdb.status.as_mut().unwrap().disruptions_allowed = Some(0);
        assert!(!conditions_up_to_date(&pdb));
        pdb.metadata.generation = Some(3);
        update_disruption_allowed(pdb.status.as_mut().unwrap(), at(1));
        assert!(!conditions_up_to_date(&pdb));
    }

    #[test]
    fn selectors() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let with = |sel: Option<Sel>| PodDisruptionBudget {
            spec: Some(PodDisruptionBudgetSpec {
                selector: sel,
                ..Default::default()
            }),
            ..Default::default()
        };
        let none = with(None);
        let empty = with(Some(Sel::default()));
        let web = with(Some(Sel {
            match_labels: Some(labels.clone()),
            ..Default::default()
        }));
        assert!(!counts_pod(&none, &labels) && !guards_pod(&none, &labels));
        assert!(counts_pod(&empty, &labels) && !guards_pod(&empty, &labels));
        assert!(counts_pod(&web, &labels) && guards_pod(&web, &labels));
        assert!(!guards_pod(&web, &BTreeMap::new()));
    }
}
