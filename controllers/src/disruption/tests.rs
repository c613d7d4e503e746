//! The disruption controller's arithmetic: expected and desired counts, healthy pods, the
//! `disruptedPods` bookkeeping and when a status is written.

use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap()
}

fn pod(name: &str, ready: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        status: Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn spec(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudgetSpec {
    PodDisruptionBudgetSpec {
        min_available: min,
        max_unavailable: max,
        ..Default::default()
    }
}

#[test]
fn where_the_expected_count_comes_from() {
    let int = |n| Some(IntOrString::Int(n));
    let pct = |s: &str| Some(IntOrString::String(s.into()));
    assert_eq!(expected_source(&spec(int(2), None)), Expected::Matching);
    assert_eq!(expected_source(&spec(pct("50%"), None)), Expected::Scale);
    assert_eq!(expected_source(&spec(None, int(1))), Expected::Scale);
    assert_eq!(expected_source(&spec(None, None)), Expected::Nothing);
}

#[test]
fn desired_healthy_as_upstream_rounds_it() {
    let int = |n| Some(IntOrString::Int(n));
    let pct = |s: &str| Some(IntOrString::String(s.into()));
    assert_eq!(desired_healthy(&spec(int(2), None), 3), Ok(2));
    // Percentages round up: 50% of 3 pods is 2 that must stay.
    assert_eq!(desired_healthy(&spec(pct("50%"), None), 3), Ok(2));
    // maxUnavailable 50% of 3 rounds up to 2 unavailable, so 1 must stay healthy.
    assert_eq!(desired_healthy(&spec(None, pct("50%")), 3), Ok(1));
    assert_eq!(desired_healthy(&spec(None, int(1)), 3), Ok(2));
    assert_eq!(desired_healthy(&spec(None, int(5)), 3), Ok(0));
    assert_eq!(desired_healthy(&spec(None, None), 3), Ok(0));
    assert!(desired_healthy(&spec(pct("lots"), None), 3).is_err());
}

#[test]
fn allowed_is_never_negative_and_zero_without_expected_pods() {
    let c = |current_healthy, desired_healthy, expected_pods| Counts {
        current_healthy,
        desired_healthy,
        expected_pods,
    };
    assert_eq!(disruptions_allowed(&c(3, 2, 3)), 1);
    assert_eq!(disruptions_allowed(&c(2, 2, 3)), 0);
    assert_eq!(disruptions_allowed(&c(1, 2, 3)), 0);
    assert_eq!(disruptions_allowed(&c(3, 0, 0)), 0);
}

#[test]
fn evicted_pods_stop_counting_until_their_entry_expires() {
    let pods = vec![pod("a", true), pod("b", true), pod("c", false), {
        let mut p = pod("d", true);
        p.metadata.deletion_timestamp = Some(Time(at(0)));
        p
    }];
    let recorded: BTreeMap<String, Time> = [
        ("a".to_string(), Time(at(1000))),
        ("d".to_string(), Time(at(1000))),
        ("gone".to_string(), Time(at(1000))),
        ("b".to_string(), Time(at(800))),
    ]
    .into();
    let now = at(1050);
    let (kept, recheck) = disrupted_pods(&pods, Some(&recorded), now);
    // b's entry is older than the deletion timeout; d is being deleted; "gone" does not exist.
    assert_eq!(kept.keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(recheck, Some(at(1120)));
    // a is pending eviction, c is not ready, d is being deleted: only b is healthy.
    assert_eq!(count_healthy(&pods, &kept, now), 1);
    assert_eq!(count_healthy(&pods, &BTreeMap::new(), now), 2);
    assert_eq!(disrupted_pods(&pods, None, now), (BTreeMap::new(), None));
}

#[test]
fn status_is_written_only_when_it_changes() {
    let mut pdb = PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some("web".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(spec(Some(IntOrString::Int(2)), None)),
        status: Some(PodDisruptionBudgetStatus::default()),
    };
    let counts = Counts {
        current_healthy: 3,
        desired_healthy: 2,
        expected_pods: 3,
    };
    let status = next_status(&pdb, &counts, BTreeMap::new(), Time(at(5))).unwrap();
    assert_eq!(
        (
            status.disruptions_allowed,
            status.observed_generation,
            status.disrupted_pods.clone()
        ),
        (Some(1), Some(1), None)
    );
    let cond = &status.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (
            cond.type_.as_str(),
            cond.status.as_str(),
            cond.reason.as_str()
        ),
        ("DisruptionAllowed", "True", "SufficientPods")
    );
    pdb.status = Some(status);
    assert_eq!(
        next_status(&pdb, &counts, BTreeMap::new(), Time(at(6))),
        None
    );
    // A new generation is observed even with the same counts.
    pdb.metadata.generation = Some(2);
    let status = next_status(&pdb, &counts, BTreeMap::new(), Time(at(7))).unwrap();
    assert_eq!(status.observed_generation, Some(2));
    pdb.status = Some(status);
    // One pod evicted: it leaves currentHealthy and the budget is spent.
    let spent = Counts {
        current_healthy: 2,
        ..counts
    };
    let pending: BTreeMap<String, Time> = [("a".to_string(), Time(at(7)))].into();
    let status = next_status(&pdb, &spent, pending.clone(), Time(at(8))).unwrap();
    assert_eq!(status.disruptions_allowed, Some(0));
    assert_eq!(status.disrupted_pods, Some(pending));
    let cond = &status.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("False", "InsufficientPods")
    );
}
