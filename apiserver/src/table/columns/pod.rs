//! Pods (core/v1): the readiness, status and restarts columns computed like the apiserver's
//! `printPod`, and the `Completed` condition a finished pod's row carries.

use ekube_api::display::human_duration;
use ekube_api::time::Timestamp;
use serde_json::{Value, json};

use super::{
    KindColumns, Printer, age_col, arr_at, at, int_at, name_col, or, parse_time, str_at, string_col,
};

pub(crate) fn pod_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            string_col(
                "Ready",
                0,
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            string_col(
                "Status",
                0,
                "The aggregate status of the containers in this pod.",
            ),
            string_col(
                "Restarts",
                0,
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            age_col(),
            string_col("IP", 1, "podIP address allocated to the pod."),
            string_col(
                "Node",
                1,
                "NodeName indicates in which node this pod is scheduled.",
            ),
            string_col(
                "Nominated Node",
                1,
                "nominatedNodeName is set only when this pod preempts other pods on the node.",
            ),
            string_col(
                "Readiness Gates",
                1,
                "If specified, all readiness gates will be evaluated for pod readiness.",
            ),
        ],
        cells: Printer::pod,
        conditions: Some(completed_condition),
    }
}

impl Printer {
    fn pod(&self, pod: &Value) -> Vec<Value> {
        let status = at(pod, &["status"]);
        let spec = at(pod, &["spec"]);
        let init_specs = arr_at(spec, &["initContainers"]);
        let restartable = |name: &str| {
            init_specs
                .iter()
                .any(|c| str_at(c, &["name"]) == name && str_at(c, &["restartPolicy"]) == "Always")
        };
        let mut total = arr_at(spec, &["containers"]).len();
        total += init_specs
            .iter()
            .filter(|c| str_at(c, &["restartPolicy"]) == "Always")
            .count();
        let mut ready = 0;
        let mut restarts = 0;
        let mut sidecar_restarts = 0;
        let mut last_restart: Option<Timestamp> = None;
        let mut last_sidecar_restart: Option<Timestamp> = None;
        let phase = str_at(status, &["phase"]);
        let mut reason = or(str_at(status, &["reason"]), phase).to_string();
        for c in arr_at(status, &["conditions"]) {
            if str_at(c, &["type"]) == "PodScheduled" && str_at(c, &["reason"]) == "SchedulingGated"
            {
                reason = "SchedulingGated".into();
            }
        }
        let finished_at =
            |c: &Value| parse_time(str_at(c, &["lastState", "terminated", "finishedAt"]));

        let init_statuses = arr_at(status, &["initContainerStatuses"]);
        let mut initializing = false;
        for (i, c) in init_statuses.iter().enumerate() {
            let sidecar = restartable(str_at(c, &["name"]));
            restarts += int_at(c, &["restartCount"]);
            if let Some(t) = finished_at(c) {
                last_restart = last_restart.max(Some(t));
            }
            if sidecar {
                sidecar_restarts += int_at(c, &["restartCount"]);
                if let Some(t) = finished_at(c) {
                    last_sidecar_restart = last_sidecar_restart.max(Some(t));
                }
            }
            let terminated = at(c, &["state", "terminated"]);
            let waiting_reason = str_at(c, &["state", "waiting", "reason"]);
            if terminated.is_object() && int_at(terminated, &["exitCode"]) == 0 {
                continue;
            }
            if sidecar && at(c, &["started"]).as_bool() == Some(true) {
                if at(c, &["ready"]).as_bool() == Some(true) {
                    ready += 1;
                }
                continue;
            }
            if terminated.is_object() {
                let r = str_at(terminated, &["reason"]);
                reason = if !r.is_empty() {
                    format!("Init:{r}")
                } else if int_at(terminated, &["signal"]) != 0 {
                    format!("Init:Signal:{}", int_at(terminated, &["signal"]))
                } else {
                    format!("Init:ExitCode:{}", int_at(terminated, &["exitCode"]))
                };
            } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
                reason = format!("Init:{waiting_reason}");
            } else {
                reason = format!("Init:{i}/{}", init_specs.len());
            }
            initializing = true;
            break;
        }

        let initialized = arr_at(status, &["conditions"])
            .iter()
            .any(|c| str_at(c, &["type"]) == "Initialized" && str_at(c, &["status"]) == "True");
        if !initializing || initialized {
            restarts = sidecar_restarts;
            last_restart = last_sidecar_restart;
            let mut has_running = false;
            for c in arr_at(status, &["containerStatuses"]).iter().rev() {
                restarts += int_at(c, &["restartCount"]);
                if let Some(t) = finished_at(c) {
                    last_restart = last_restart.max(Some(t));
                }
                let waiting = str_at(c, &["state", "waiting", "reason"]);
                let terminated = at(c, &["state", "terminated"]);
                if !waiting.is_empty() {
                    reason = waiting.to_string();
                } else if terminated.is_object() {
                    let r = str_at(terminated, &["reason"]);
                    reason = if !r.is_empty() {
                        r.to_string()
                    } else if int_at(terminated, &["signal"]) != 0 {
                        format!("Signal:{}", int_at(terminated, &["signal"]))
                    } else {
                        format!("ExitCode:{}", int_at(terminated, &["exitCode"]))
                    };
                } else if at(c, &["ready"]).as_bool() == Some(true)
                    && at(c, &["state", "running"]).is_object()
                {
                    has_running = true;
                    ready += 1;
                }
            }
            if reason == "Completed" && has_running {
                let pod_ready = arr_at(status, &["conditions"])
                    .iter()
                    .any(|c| str_at(c, &["type"]) == "Ready" && str_at(c, &["status"]) == "True");
                reason = if pod_ready { "Running" } else { "NotReady" }.into();
            }
        }

        let deleting = at(pod, &["metadata", "deletionTimestamp"]).is_string();
        if deleting && str_at(status, &["reason"]) == "NodeLost" {
            reason = "Unknown".into();
        } else if deleting && phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }

        let restarts_str = match last_restart {
            Some(t) if restarts != 0 => {
                format!(
                    "{restarts} ({} ago)",
                    human_duration(self.now.duration_since(t).as_secs())
                )
            }
            _ => restarts.to_string(),
        };

        let pod_ip = arr_at(status, &["podIPs"])
            .first()
            .map(|ip| str_at(ip, &["ip"]))
            .unwrap_or("");
        let pod_ip = or(or(pod_ip, str_at(status, &["podIP"])), "<none>");
        let gates = arr_at(spec, &["readinessGates"]);
        let readiness_gates = if gates.is_empty() {
            "<none>".to_string()
        } else {
            let true_count = gates
                .iter()
                .filter(|g| {
                    let ty = str_at(g, &["conditionType"]);
                    arr_at(status, &["conditions"])
                        .iter()
                        .find(|c| str_at(c, &["type"]) == ty)
                        .is_some_and(|c| str_at(c, &["status"]) == "True")
                })
                .count();
            format!("{true_count}/{}", gates.len())
        };
        vec![
            Self::name(pod),
            json!(format!("{ready}/{total}")),
            json!(reason),
            json!(restarts_str),
            self.age(pod),
            json!(pod_ip),
            json!(or(str_at(spec, &["nodeName"]), "<none>")),
            json!(or(str_at(status, &["nominatedNodeName"]), "<none>")),
            json!(readiness_gates),
        ]
    }
}

/// Like the real printer: a finished pod's row carries a `Completed` condition.
fn completed_condition(pod: &Value) -> Option<Value> {
    let (reason, message) = match str_at(pod, &["status", "phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod has failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

#[cfg(test)]
mod tests {
    use crate::table::test_support::{cells, kind, now};
    use crate::table::{IncludeObject, to_table};
    use serde_json::{Value, json};

    #[test]
    fn running_pod() {
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-10T11:57:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "web", "image": "nginx"}, {"name": "side", "image": "busybox"}]},
            "status": {
                "phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": "web", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2024-05-10T11:57:05Z"}}},
                    {"name": "side", "ready": true, "restartCount": 2, "state": {"running": {}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-10T11:59:00Z"}}},
                ],
            },
        });
        assert_eq!(
            cells("Pod", pod),
            json!([
                "web",
                "2/2",
                "Running",
                "2 (60s ago)",
                "3m",
                "10.244.1.5",
                "n1",
                "<none>",
                "<none>"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
    }

    #[test]
    fn pod_statuses() {
        let base = |status: Value| {
            json!({"metadata": {"name": "p", "creationTimestamp": "2024-05-10T11:00:00Z"},
            "spec": {"containers": [{"name": "c", "image": "i"}], "initContainers": [{"name": "i1"}, {"name": "i2"}]}, "status": status})
        };
        let status_of = |pod: Value| cells("Pod", pod)[2].as_str().unwrap().to_string();
        assert_eq!(status_of(base(json!({"phase": "Pending"}))), "Pending");
        assert_eq!(
            status_of(base(json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "i2", "state": {"running": {}}}]}))),
            "Init:1/2"
        );
        assert_eq!(
            status_of(base(json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}))),
            "Init:CrashLoopBackOff"
        );
        assert_eq!(
            status_of(base(json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"terminated": {"exitCode": 3}}}]}))),
            "Init:ExitCode:3"
        );
        assert_eq!(
            status_of(base(json!({"phase": "Pending", "containerStatuses": [
                {"name": "c", "ready": false, "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}))),
            "ImagePullBackOff"
        );
        let done = base(json!({"phase": "Succeeded", "containerStatuses": [
            {"name": "c", "ready": false, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}));
        assert_eq!(status_of(done.clone()), "Completed");
        let t = to_table(kind("Pod"), &[done], IncludeObject::None, now());
        assert_eq!(t["rows"][0]["conditions"][0]["type"], "Completed");
        assert_eq!(
            status_of(base(json!({"phase": "Failed", "containerStatuses": [
                {"name": "c", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}))),
            "OOMKilled"
        );
        assert_eq!(
            status_of(base(json!({"phase": "Running", "containerStatuses": [
                {"name": "c", "state": {"terminated": {"exitCode": 0, "signal": 9}}}]}))),
            "Signal:9"
        );
        let mut deleting = base(json!({"phase": "Running"}));
        deleting["metadata"]["deletionTimestamp"] = json!("2024-05-10T11:59:00Z");
        assert_eq!(status_of(deleting), "Terminating");
        assert_eq!(
            status_of(base(json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}))),
            "SchedulingGated"
        );
        let evicted = base(json!({"phase": "Failed", "reason": "Evicted"}));
        assert_eq!(status_of(evicted), "Evicted");
    }

    #[test]
    fn pod_with_sidecar_and_gates() {
        let pod = json!({
            "metadata": {"name": "p", "creationTimestamp": "2024-05-10T11:00:00Z"},
            "spec": {"containers": [{"name": "c"}], "initContainers": [{"name": "sc", "restartPolicy": "Always"}],
                     "readinessGates": [{"conditionType": "example.com/ready"}]},
            "status": {"phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "example.com/ready", "status": "True"}],
                "initContainerStatuses": [{"name": "sc", "started": true, "ready": true, "restartCount": 0, "state": {"running": {}}}],
                "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "state": {"running": {}}}]},
        });
        let c = cells("Pod", pod);
        assert_eq!(c[1], "2/2");
        assert_eq!(c[2], "Running");
        assert_eq!(c[3], "0");
        assert_eq!(c[5], "<none>");
        assert_eq!(c[8], "1/1");
    }
}
