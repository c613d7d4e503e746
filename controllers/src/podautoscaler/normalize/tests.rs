//! Upstream's `horizontal_test.go` normalization cases: clamps, the scale-up limit, the
//! downscale stabilization window and behavior policies.

use super::*;

fn t0() -> Timestamp {
    "2026-01-01T12:00:00Z".parse().unwrap()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const WINDOW: Duration = Duration::from_secs(300);

#[test]
fn without_behavior_clamps_and_limits() {
    // (current, desired, min, max) → (replicas, ScalingLimited, reason)
    let cases = [
        (3, 3, 1, 10, 3, false, "DesiredWithinRange"),
        (3, 5, 1, 10, 5, false, "DesiredWithinRange"),
        (3, 0, 2, 10, 2, true, "TooFewReplicas"),
        (3, 12, 1, 5, 5, true, "TooManyReplicas"),
        // At most max(2 × current, 4) at once.
        (3, 20, 1, 30, 6, true, "ScaleUpLimit"),
        (1, 20, 1, 30, 4, true, "ScaleUpLimit"),
    ];
    for (current, desired, min, max, want, limited, reason) in cases {
        let mut h = History::default();
        let n = h.normalize(current, desired, min, max, WINDOW, t0());
        assert_eq!(n.replicas, want, "{current}→{desired} in [{min},{max}]");
        assert_eq!(
            (n.scaling_limited.0, n.scaling_limited.1),
            (limited, reason),
            "{current}→{desired}"
        );
        assert_eq!(n.able_to_scale.1, "ReadyForNewScale");
    }
}

#[test]
fn stabilization_window_keeps_the_highest_recent_recommendation() {
    let mut h = History::default();
    h.record_initial(5, t0());
    let n = h.normalize(5, 5, 1, 10, WINDOW, t0() + secs(15));
    assert_eq!(n.replicas, 5);
    // The load drops: recommendations of 2 are held at 5 while 5 is in the window.
    let n = h.normalize(5, 2, 1, 10, WINDOW, t0() + secs(60));
    assert_eq!(n.replicas, 5);
    assert_eq!(n.able_to_scale.1, "ScaleDownStabilized");
    let n = h.normalize(5, 3, 1, 10, WINDOW, t0() + secs(200));
    assert_eq!(n.replicas, 5);
    // Past the window of the 5s, the highest left is 3.
    let n = h.normalize(5, 2, 1, 10, WINDOW, t0() + secs(330));
    assert_eq!(n.replicas, 3);
    assert_eq!(n.able_to_scale.1, "ScaleDownStabilized");
    // Scaling up is never held back.
    let n = h.normalize(3, 8, 1, 10, WINDOW, t0() + secs(340));
    assert_eq!(n.replicas, 6);
    assert_eq!(n.able_to_scale.1, "ReadyForNewScale");
}

fn rules(window: u64, select: SelectPolicy, policies: Vec<Policy>) -> Rules {
    Rules {
        stabilization_window: secs(window),
        select_policy: select,
        policies,
    }
}

fn pods(value: i32, period: u64) -> Policy {
    Policy::Pods {
        value,
        period: secs(period),
    }
}

fn percent(value: i32, period: u64) -> Policy {
    Policy::Percent {
        value,
        period: secs(period),
    }
}

/// Upstream's default behavior.
fn default_behavior() -> Behavior {
    Behavior {
        scale_up: rules(0, SelectPolicy::Max, vec![pods(4, 15), percent(100, 15)]),
        scale_down: rules(300, SelectPolicy::Max, vec![percent(100, 15)]),
    }
}

#[test]
fn behavior_select_policy_on_scale_up() {
    // current 10, desired 100: Pods +4 → 14, Percent +100 % → 20.
    let cases = [
        (SelectPolicy::Max, 20, true, "ScaleUpLimit"),
        (SelectPolicy::Min, 14, true, "ScaleUpLimit"),
        (SelectPolicy::Disabled, 10, true, "ScaleUpLimit"),
    ];
    for (select, want, limited, reason) in cases {
        let mut b = default_behavior();
        b.scale_up.select_policy = select;
        let mut h = History::default();
        let n = h.normalize_with_behavior(&b, 10, 100, 1, 200, t0());
        assert_eq!(n.replicas, want, "{select:?}");
        assert_eq!(
            (n.scaling_limited.0, n.scaling_limited.1),
            (limited, reason)
        );
    }
    // Within the limits, and capped by max.
    let mut h = History::default();
    let n = h.normalize_with_behavior(&default_behavior(), 10, 12, 1, 200, t0());
    assert_eq!(
        (n.replicas, n.scaling_limited.1),
        (12, "DesiredWithinRange")
    );
    let n = History::default().normalize_with_behavior(&default_behavior(), 10, 100, 1, 15, t0());
    assert_eq!((n.replicas, n.scaling_limited.1), (15, "TooManyReplicas"));
}

#[test]
fn behavior_select_policy_on_scale_down() {
    // current 10, desired 1: Pods −2 → 8, Percent −50 % → 5.
    let cases = [
        (SelectPolicy::Max, 5, "ScaleDownLimit"),
        (SelectPolicy::Min, 8, "ScaleDownLimit"),
        (SelectPolicy::Disabled, 10, "ScaleDownLimit"),
    ];
    for (select, want, reason) in cases {
        let b = Behavior {
            scale_up: default_behavior().scale_up,
            scale_down: rules(0, select, vec![pods(2, 60), percent(50, 60)]),
        };
        let n = History::default().normalize_with_behavior(&b, 10, 1, 1, 20, t0());
        assert_eq!(
            (n.replicas, n.scaling_limited.1),
            (want, reason),
            "{select:?}"
        );
    }
    // Down to min when the policies allow more.
    let b = Behavior {
        scale_up: default_behavior().scale_up,
        scale_down: rules(0, SelectPolicy::Max, vec![percent(100, 15)]),
    };
    let n = History::default().normalize_with_behavior(&b, 10, 1, 3, 20, t0());
    assert_eq!((n.replicas, n.scaling_limited.1), (3, "TooFewReplicas"));
}

#[test]
fn behavior_rate_counts_recent_scale_events() {
    let b = Behavior {
        scale_up: rules(0, SelectPolicy::Max, vec![pods(4, 60)]),
        scale_down: rules(0, SelectPolicy::Max, vec![pods(1, 60)]),
    };
    let mut h = History::default();
    let n = h.normalize_with_behavior(&b, 2, 20, 1, 50, t0());
    assert_eq!(n.replicas, 6);
    h.record_scale(Some(&b), 2, 6, t0());
    // 30 s later the period still holds the +4: no more room.
    let n = h.normalize_with_behavior(&b, 6, 20, 1, 50, t0() + secs(30));
    assert_eq!((n.replicas, n.scaling_limited.1), (6, "ScaleUpLimit"));
    // Once it has passed, another +4.
    let n = h.normalize_with_behavior(&b, 6, 20, 1, 50, t0() + secs(61));
    assert_eq!(n.replicas, 10);
}

#[test]
fn behavior_stabilization_windows() {
    let b = Behavior {
        scale_up: rules(60, SelectPolicy::Max, vec![percent(1000, 15)]),
        scale_down: rules(120, SelectPolicy::Max, vec![percent(100, 15)]),
    };
    let mut h = History::default();
    h.record_initial(4, t0());
    // Scale up is held to the lowest recommendation of the last minute (4).
    let n = h.normalize_with_behavior(&b, 4, 10, 1, 50, t0() + secs(10));
    assert_eq!((n.replicas, n.able_to_scale.1), (4, "ScaleUpStabilized"));
    let n = h.normalize_with_behavior(&b, 4, 10, 1, 50, t0() + secs(65));
    assert_eq!(n.replicas, 10);
    // Scale down is held to the highest of the last two minutes (10).
    let n = h.normalize_with_behavior(&b, 10, 2, 1, 50, t0() + secs(100));
    assert_eq!((n.replicas, n.able_to_scale.1), (10, "ScaleDownStabilized"));
    let n = h.normalize_with_behavior(&b, 10, 2, 1, 50, t0() + secs(190));
    assert_eq!(n.replicas, 2);
}
