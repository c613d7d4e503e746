//! The eviction decision: which pods skip the budget, when an unready pod goes for free, and
//! how a budget is spent or refuses.

use k8s_openapi::api::policy::v1::{PodDisruptionBudgetSpec, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

fn now() -> Time {
    Time(Timestamp::from_second(1_700_000_000).unwrap())
}

fn budget(generation: i64, observed: i64, allowed: i32) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some("web".into()),
            generation: Some(generation),
            ..Default::default()
        },
        spec: Some(PodDisruptionBudgetSpec::default()),
        status: Some(PodDisruptionBudgetStatus {
            observed_generation: Some(observed),
            disruptions_allowed: Some(allowed),
            current_healthy: Some(2 + allowed),
            desired_healthy: Some(2),
            expected_pods: Some(3),
            ..Default::default()
        }),
    }
}

#[test]
fn spending_takes_one_and_records_the_pod() {
    let mut pdb = budget(1, 1, 1);
    check_and_decrement(&mut pdb, "web-a", now(), false).unwrap();
    let status = pdb.status.as_ref().unwrap();
    assert_eq!(status.disruptions_allowed, Some(0));
    assert_eq!(
        status.disrupted_pods.as_ref().unwrap().get("web-a"),
        Some(&now())
    );
    // The last disruption taken turns the condition False.
    let cond = &status.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("False", "InsufficientPods")
    );
    // Now the budget is spent: upstream's 429 with the DisruptionBudget cause.
    let err = check_and_decrement(&mut pdb, "web-b", now(), false).unwrap_err();
    assert_eq!((err.code, err.reason), (429, "TooManyRequests"));
    assert_eq!(
        err.message,
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    let cause = &err.details.as_ref().unwrap()["causes"][0];
    assert_eq!(cause["reason"], "DisruptionBudget");
    assert_eq!(
        cause["message"],
        "The disruption budget web needs 2 healthy pods and has 3 currently"
    );
}

#[test]
fn a_dry_run_records_nothing() {
    let mut pdb = budget(1, 1, 2);
    check_and_decrement(&mut pdb, "web-a", now(), true).unwrap();
    let status = pdb.status.as_ref().unwrap();
    assert_eq!(status.disruptions_allowed, Some(1));
    assert_eq!(status.disrupted_pods, None);
}

#[test]
fn a_status_behind_the_spec_refuses() {
    let mut pdb = budget(2, 1, 1);
    let err = check_and_decrement(&mut pdb, "web-a", now(), false).unwrap_err();
    assert_eq!(err.code, 429);
    assert_eq!(
        err.details.as_ref().unwrap()["causes"][0]["message"],
        "The disruption budget web is still being processed by the server."
    );
    // A budget no controller has looked at yet has no observed generation.
    let mut fresh = budget(1, 0, 0);
    fresh.status.as_mut().unwrap().observed_generation = None;
    assert_eq!(
        check_and_decrement(&mut fresh, "web-a", now(), false)
            .unwrap_err()
            .code,
        429
    );
}

#[test]
fn broken_statuses_are_forbidden() {
    let mut negative = budget(1, 1, -1);
    let err = check_and_decrement(&mut negative, "web-a", now(), false).unwrap_err();
    assert_eq!(err.code, 403);
    assert!(err.message.ends_with("pdb disruptions allowed is negative"));
    let mut full = budget(1, 1, 1);
    full.status.as_mut().unwrap().disrupted_pods = Some(
        (0..=MAX_DISRUPTED_PODS)
            .map(|i| (format!("p{i}"), now()))
            .collect(),
    );
    assert_eq!(
        check_and_decrement(&mut full, "web-a", now(), false)
            .unwrap_err()
            .code,
        403
    );
}

#[test]
fn finished_pending_and_terminating_pods_skip_the_budget() {
    let phase = |p: &str| json!({"metadata": {}, "status": {"phase": p}});
    for p in ["Succeeded", "Failed", "Pending"] {
        assert!(can_ignore_budget(&phase(p)), "{p}");
    }
    assert!(!can_ignore_budget(&phase("Running")));
    let terminating = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}, "status": {"phase": "Running"}});
    assert!(can_ignore_budget(&terminating));
    // Only a pod that could still become Ready is deleted pinned to the version seen.
    assert!(enforce_resource_version(&phase("Pending")));
    assert!(!enforce_resource_version(&phase("Failed")));
    assert!(!enforce_resource_version(&terminating));
}

#[test]
fn unready_pods_go_free_while_the_application_is_healthy() {
    assert!(!pod_ready(
        &json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    ));
    assert!(pod_ready(
        &json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    ));
    // currentHealthy 2 >= desiredHealthy 2.
    assert!(unhealthy_may_go(&budget(1, 1, 0)));
    let mut short = budget(1, 1, 0);
    short.status.as_mut().unwrap().current_healthy = Some(1);
    assert!(!unhealthy_may_go(&short));
    short.spec.as_mut().unwrap().unhealthy_pod_eviction_policy = Some("AlwaysAllow".into());
    assert!(unhealthy_may_go(&short));
    // Nothing desired means nothing guarded as healthy: the budget decides.
    let mut none = budget(1, 1, 0);
    none.status.as_mut().unwrap().desired_healthy = Some(0);
    assert!(!unhealthy_may_go(&none));
}

#[test]
fn delete_options_come_from_the_eviction() {
    let opts = delete_options(
        &json!({"deleteOptions": {"gracePeriodSeconds": 5, "dryRun": ["All"],
            "preconditions": {"uid": "u1", "resourceVersion": "42"}}}),
        false,
    );
    assert_eq!(opts.grace_period, Some(5));
    assert!(opts.dry_run);
    assert_eq!(
        (opts.uid.as_deref(), opts.resource_version.as_deref()),
        (Some("u1"), Some("42"))
    );
    let opts = delete_options(&json!({}), true);
    assert!(opts.dry_run && opts.grace_period.is_none() && opts.resource_version.is_none());
}
