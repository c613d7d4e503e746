//! From the metrics' proposal to the replica count the controller sets (upstream's
//! `normalizeDesiredReplicas` and `normalizeDesiredReplicasWithBehaviors`).
//!
//! Without `spec.behavior`: the highest recommendation of the downscale stabilization window
//! (`--horizontal-pod-autoscaler-downscale-stabilization`), clamped to `[minReplicas,
//! maxReplicas]` and to a scale-up of at most `max(2 × current, 4)`. With it: the proposal is
//! held between the lowest recommendation of the scale-up window and the highest of the
//! scale-down window, then limited by the rate the policies allow over their periods (judged
//! from the scale events recorded), picked by `selectPolicy` (`Max`, `Min` or `Disabled`).
//! The recommendation and event history lives in [`History`], one per autoscaler.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

/// One scaling direction's rules (`HPAScalingRules`, defaulted).
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub stabilization_window: Duration,
    pub select_policy: SelectPolicy,
    pub policies: Vec<Policy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectPolicy {
    Max,
    Min,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Pods { value: i32, period: Duration },
    Percent { value: i32, period: Duration },
}

impl Policy {
    fn period(&self) -> Duration {
        match self {
            Policy::Pods { period, .. } | Policy::Percent { period, .. } => *period,
        }
    }
}

/// `spec.behavior`, both directions.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    pub scale_up: Rules,
    pub scale_down: Rules,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Recommendation {
    replicas: i32,
    at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct ScaleEvent {
    change: i32,
    at: Timestamp,
    outdated: bool,
}

/// What the controller remembers of one autoscaler between syncs.
#[derive(Debug, Clone, Default)]
pub struct History {
    recommendations: Vec<Recommendation>,
    scale_up_events: Vec<ScaleEvent>,
    scale_down_events: Vec<ScaleEvent>,
}

/// A condition to set: (status, reason, message).
pub type Condition = (bool, &'static str, &'static str);

/// The outcome of normalization: the replicas, and the `AbleToScale` and `ScalingLimited`
/// conditions that explain them.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    pub replicas: i32,
    pub able_to_scale: Condition,
    pub scaling_limited: Condition,
}

const READY: Condition = (
    true,
    "ReadyForNewScale",
    "recommended size matches current size",
);
const DOWN_STABILIZED: Condition = (
    true,
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
);
const UP_STABILIZED: Condition = (
    true,
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
);
const WITHIN_RANGE: (&str, &str) = (
    "DesiredWithinRange",
    "the desired count is within the acceptable range",
);
const SCALE_UP_LIMIT: (&str, &str) = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
);
const SCALE_DOWN_LIMIT: (&str, &str) = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
);
const TOO_MANY: (&str, &str) = (
    "TooManyReplicas",
    "the desired replica count is more than the maximum replica count",
);
const TOO_FEW: (&str, &str) = (
    "TooFewReplicas",
    "the desired replica count is less than the minimum replica count",
);

fn limited(
    replicas: i32,
    stabilized: i32,
    (reason, message): (&'static str, &'static str),
) -> Condition {
    (replicas != stabilized, reason, message)
}

impl History {
    /// Upstream's `recordInitialRecommendation`: the current scale is the first recommendation.
    pub fn record_initial(&mut self, current: i32, now: Timestamp) {
        if self.recommendations.is_empty() {
            self.recommendations.push(Recommendation {
                replicas: current,
                at: now,
            });
        }
    }

    /// Records `rec`, reusing the slot of a sample older than every window.
    fn record(&mut self, old: Option<usize>, rec: Recommendation) {
        match old {
            Some(i) => self.recommendations[i] = rec,
            None => self.recommendations.push(rec),
        }
    }

    /// Without `spec.behavior`.
    pub fn normalize(
        &mut self,
        current: i32,
        desired: i32,
        min: i32,
        max: i32,
        downscale_window: Duration,
        now: Timestamp,
    ) -> Normalized {
        let cutoff = now - downscale_window;
        let mut highest = desired;
        let mut old = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            if r.at < cutoff {
                old = Some(i);
            } else if r.replicas > highest {
                highest = r.replicas;
            }
        }
        self.record(
            old,
            Recommendation {
                replicas: desired,
                at: now,
            },
        );
        let able_to_scale = if highest != desired {
            DOWN_STABILIZED
        } else {
            READY
        };
        let scale_up_limit = (2 * current).max(4);
        let (ceiling, over) = if max > scale_up_limit {
            (scale_up_limit, SCALE_UP_LIMIT)
        } else {
            (max, TOO_MANY)
        };
        let (replicas, why) = if highest < min {
            (min, TOO_FEW)
        } else if highest > ceiling {
            (ceiling, over)
        } else {
            (highest, WITHIN_RANGE)
        };
        Normalized {
            replicas,
            able_to_scale,
            scaling_limited: limited(replicas, highest, why),
        }
    }

    /// With `spec.behavior`.
    pub fn normalize_with_behavior(
        &mut self,
        behavior: &Behavior,
        current: i32,
        desired: i32,
        min: i32,
        max: i32,
        now: Timestamp,
    ) -> Normalized {
        let up_cutoff = now - behavior.scale_up.stabilization_window;
        let down_cutoff = now - behavior.scale_down.stabilization_window;
        let (mut up, mut down) = (desired, desired);
        let mut old = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            if r.at > up_cutoff {
                up = up.min(r.replicas);
            }
            if r.at > down_cutoff {
                down = down.max(r.replicas);
            }
            if r.at < up_cutoff && r.at < down_cutoff {
                old = Some(i);
            }
        }
        let stabilized = current.max(up).min(down);
        self.record(
            old,
            Recommendation {
                replicas: desired,
                at: now,
            },
        );
        let able_to_scale = if stabilized == desired {
            READY
        } else if desired >= current {
            UP_STABILIZED
        } else {
            DOWN_STABILIZED
        };
        let (replicas, why) = if stabilized > current {
            let limit = self
                .scale_up_limit(current, &behavior.scale_up, now)
                .max(current);
            let (ceiling, why) = if max > limit {
                (limit, SCALE_UP_LIMIT)
            } else {
                (max, TOO_MANY)
            };
            if stabilized > ceiling {
                (ceiling, why)
            } else {
                (stabilized, WITHIN_RANGE)
            }
        } else if stabilized < current {
            let limit = self
                .scale_down_limit(current, &behavior.scale_down, now)
                .min(current);
            let (floor, why) = if min < limit {
                (limit, SCALE_DOWN_LIMIT)
            } else {
                (min, TOO_FEW)
            };
            if stabilized < floor {
                (floor, why)
            } else {
                (stabilized, WITHIN_RANGE)
            }
        } else {
            (stabilized, WITHIN_RANGE)
        };
        Normalized {
            replicas,
            able_to_scale,
            scaling_limited: limited(replicas, stabilized, why),
        }
    }

    /// The replicas at the start of `period`: now's, less what was added since, plus what was
    /// removed.
    fn period_start(&self, current: i32, period: Duration, now: Timestamp) -> i32 {
        let cutoff = now - period;
        let sum = |events: &[ScaleEvent]| -> i32 {
            events
                .iter()
                .filter(|e| e.at > cutoff)
                .map(|e| e.change)
                .sum()
        };
        current - sum(&self.scale_up_events) + sum(&self.scale_down_events)
    }

    /// Upstream's `calculateScaleUpLimitWithScalingRules`.
    fn scale_up_limit(&self, current: i32, rules: &Rules, now: Timestamp) -> i32 {
        let proposals = rules.policies.iter().map(|p| {
            let start = self.period_start(current, p.period(), now);
            match p {
                Policy::Pods { value, .. } => start + value,
                // Rounded up, or a small target could never grow.
                Policy::Percent { value, .. } => {
                    (f64::from(start) * (1.0 + f64::from(*value) / 100.0)).ceil() as i32
                }
            }
        });
        match rules.select_policy {
            SelectPolicy::Disabled => current,
            SelectPolicy::Min => proposals.min().unwrap_or(i32::MAX),
            SelectPolicy::Max => proposals.max().unwrap_or(i32::MIN),
        }
    }

    /// Upstream's `calculateScaleDownLimitWithBehaviors`.
    fn scale_down_limit(&self, current: i32, rules: &Rules, now: Timestamp) -> i32 {
        let proposals = rules.policies.iter().map(|p| {
            let start = self.period_start(current, p.period(), now);
            match p {
                Policy::Pods { value, .. } => start - value,
                Policy::Percent { value, .. } => {
                    (f64::from(start) * (1.0 - f64::from(*value) / 100.0)) as i32
                }
            }
        });
        match rules.select_policy {
            SelectPolicy::Disabled => current,
            // The smallest change is the highest floor.
            SelectPolicy::Min => proposals.max().unwrap_or(i32::MIN),
            SelectPolicy::Max => proposals.min().unwrap_or(i32::MAX),
        }
    }

    /// Upstream's `storeScaleEvent`: remembered only when a behavior will read it, reusing the
    /// slot of an event older than the direction's longest policy period.
    pub fn record_scale(
        &mut self,
        behavior: Option<&Behavior>,
        previous: i32,
        new: i32,
        now: Timestamp,
    ) {
        let Some(behavior) = behavior else {
            return;
        };
        let (events, rules, change) = if new > previous {
            (
                &mut self.scale_up_events,
                &behavior.scale_up,
                new - previous,
            )
        } else {
            (
                &mut self.scale_down_events,
                &behavior.scale_down,
                previous - new,
            )
        };
        let longest = rules
            .policies
            .iter()
            .map(Policy::period)
            .max()
            .unwrap_or_default();
        let cutoff = now - longest;
        let mut old = None;
        for (i, e) in events.iter_mut().enumerate() {
            if e.at <= cutoff {
                e.outdated = true;
            }
            if e.outdated {
                old = Some(i);
            }
        }
        let event = ScaleEvent {
            change,
            at: now,
            outdated: false,
        };
        match old {
            Some(i) => events[i] = event,
            None => events.push(event),
        }
    }
}

#[cfg(test)]
mod tests;
