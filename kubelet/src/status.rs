//! Pod status as Kubernetes reports it: container states from what the worker observed, the
//! pod phase derived from them, and the standard conditions.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// What the worker knows about one container.
#[derive(Debug, Clone, PartialEq)]
pub enum View {
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        id: String,
        started: i64,
    },
    Terminated {
        id: String,
        code: i32,
        reason: String,
        message: String,
        started: i64,
        finished: i64,
    },
}

pub fn time(ns: i64) -> Option<Time> {
    if ns <= 0 {
        return None;
    }
    k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(ns))
        .ok()
        .map(Time)
}

impl View {
    pub fn state(&self) -> ContainerState {
        match self {
            View::Waiting { reason, message } => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: (!message.is_empty()).then(|| message.clone()),
                }),
                ..Default::default()
            },
            View::Running { started, .. } => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: time(*started),
                }),
                ..Default::default()
            },
            View::Terminated { .. } => ContainerState {
                terminated: self.terminated(),
                ..Default::default()
            },
        }
    }

    pub fn terminated(&self) -> Option<ContainerStateTerminated> {
        match self {
            View::Terminated {
                id,
                code,
                reason,
                message,
                started,
                finished,
            } => Some(ContainerStateTerminated {
                container_id: Some(format!("ekube://{id}")),
                exit_code: *code,
                reason: Some(reason.clone()),
                message: (!message.is_empty()).then(|| message.clone()),
                started_at: time(*started),
                finished_at: time(*finished),
                signal: None,
            }),
            _ => None,
        }
    }
}

/// One container's status.
pub struct Observed<'a> {
    pub name: &'a str,
    pub image: &'a str,
    pub image_id: &'a str,
    pub view: &'a View,
    pub last: Option<&'a View>,
    pub restarts: i32,
    /// Readiness as the probes (or their absence) say.
    pub ready: bool,
    /// Whether the startup probe passed (or there is none) while running.
    pub started: bool,
}

pub fn container_status(o: &Observed) -> ContainerStatus {
    let id = match o.view {
        View::Running { id, .. } | View::Terminated { id, .. } => Some(format!("ekube://{id}")),
        View::Waiting { .. } => None,
    };
    ContainerStatus {
        name: o.name.to_owned(),
        image: o.image.to_owned(),
        image_id: o.image_id.to_owned(),
        container_id: id,
        ready: o.ready,
        started: Some(o.started),
        restart_count: o.restarts,
        state: Some(o.view.state()),
        last_state: Some(o.last.map(|l| l.state()).unwrap_or_default()),
        ..Default::default()
    }
}

/// The phase from the regular containers' states (kubelet's getPhase).
pub fn phase(
    restart_policy: &str,
    init_failed: bool,
    init_done: bool,
    views: &[(&View, bool)],
) -> &'static str {
    if init_failed {
        return "Failed";
    }
    if !init_done {
        return "Pending";
    }
    let (mut pending, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for (v, has_last) in views {
        match v {
            View::Waiting { .. } if *has_last => stopped += 1,
            View::Waiting { .. } => pending += 1,
            View::Running { .. } => running += 1,
            View::Terminated { code, .. } => {
                stopped += 1;
                if *code == 0 {
                    succeeded += 1;
                }
            }
        }
    }
    let restarting = views
        .iter()
        .any(|(v, has_last)| matches!(v, View::Waiting { .. }) && *has_last);
    if pending > 0 {
        "Pending"
    } else if running > 0 || restarting {
        "Running"
    } else if stopped > 0 {
        match restart_policy {
            "Always" => "Running",
            "OnFailure" if succeeded < stopped => "Running",
            _ if succeeded == stopped => "Succeeded",
            _ => "Failed",
        }
    } else {
        "Pending"
    }
}

/// A condition, keeping its transition time while its status stays the same.
pub fn condition(
    previous: &[PodCondition],
    type_: &str,
    status: bool,
    reason: Option<&str>,
) -> PodCondition {
    let s = if status { "True" } else { "False" };
    let last = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == s)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
    PodCondition {
        type_: type_.into(),
        status: s.into(),
        reason: reason.map(str::to_owned),
        last_transition_time: Some(last),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(code: i32) -> View {
        View::Terminated {
            id: "x".into(),
            code,
            reason: String::new(),
            message: String::new(),
            started: 1,
            finished: 2,
        }
    }

    #[test]
    fn phases_follow_restart_policy() {
        let run = View::Running {
            id: "x".into(),
            started: 1,
        };
        let wait = View::Waiting {
            reason: "ContainerCreating".into(),
            message: String::new(),
        };
        let crash = View::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: String::new(),
        };
        assert_eq!(phase("Always", false, true, &[(&wait, false)]), "Pending");
        assert_eq!(phase("Always", false, true, &[(&run, false)]), "Running");
        assert_eq!(phase("Always", false, true, &[(&crash, true)]), "Running");
        assert_eq!(
            phase("Never", false, true, &[(&done(0), false)]),
            "Succeeded"
        );
        assert_eq!(phase("Never", false, true, &[(&done(1), false)]), "Failed");
        assert_eq!(
            phase("OnFailure", false, true, &[(&done(0), false)]),
            "Succeeded"
        );
        assert_eq!(
            phase("Never", false, true, &[(&done(0), false), (&run, false)]),
            "Running"
        );
        assert_eq!(phase("Always", false, false, &[(&wait, false)]), "Pending");
        assert_eq!(phase("Never", true, false, &[(&wait, false)]), "Failed");
    }
}
