//! The remaining core/v1 kinds: Namespaces, Nodes, ConfigMaps, Secrets, ServiceAccounts,
//! ResourceQuotas, ReplicationControllers and Events (the latter also served as
//! events.k8s.io/v1).

use std::collections::BTreeSet;

use ekube_api::display::format_labels;
use serde_json::{Value, json};

use super::{
    CONTAINERS_DOC, Column, IMAGES_DOC, KindColumns, Printer, age_col, arr_at, at,
    containers_cells, int_at, integer_col, len_at, name_col, or, str_at, string_col,
};

pub(crate) fn namespace_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            string_col("Status", 0, "The status of the namespace"),
            age_col(),
        ],
        cells: Printer::namespace,
        conditions: None,
    }
}

pub(crate) fn node_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            string_col("Status", 0, "The status of the node"),
            string_col("Roles", 0, "The roles of the node"),
            age_col(),
            string_col("Version", 0, "Kubelet Version reported by the node."),
            string_col("Internal-IP", 1, "List of addresses reachable to the node."),
            string_col("External-IP", 1, "List of addresses reachable to the node."),
            string_col(
                "OS-Image",
                1,
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            ),
            string_col(
                "Kernel-Version",
                1,
                "Kernel Version reported by the node from 'uname -r'.",
            ),
            string_col(
                "Container-Runtime",
                1,
                "ContainerRuntime Version reported by the node through runtime remote API.",
            ),
        ],
        cells: Printer::node,
        conditions: None,
    }
}

pub(crate) fn config_map_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            integer_col("Data", 0, "Data contains the configuration data."),
            age_col(),
        ],
        cells: Printer::config_map,
        conditions: None,
    }
}

pub(crate) fn secret_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            string_col(
                "Type",
                0,
                "Used to facilitate programmatic handling of secret data.",
            ),
            integer_col("Data", 0, "Data contains the secret data."),
            age_col(),
        ],
        cells: Printer::secret,
        conditions: None,
    }
}

pub(crate) fn service_account_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            integer_col(
                "Secrets",
                0,
                "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
            ),
            age_col(),
        ],
        cells: Printer::service_account,
        conditions: None,
    }
}

pub(crate) fn resource_quota_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            age_col(),
            string_col(
                "Request",
                0,
                "Request represents a minimum amount of cpu/memory that a container may consume.",
            ),
            string_col(
                "Limit",
                0,
                "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
            ),
        ],
        cells: Printer::resource_quota,
        conditions: None,
    }
}

pub(crate) fn replication_controller_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            integer_col(
                "Desired",
                0,
                "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller",
            ),
            integer_col(
                "Current",
                0,
                "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller",
            ),
            integer_col(
                "Ready",
                0,
                "The number of ready replicas for this replication controller.",
            ),
            age_col(),
            string_col("Containers", 1, CONTAINERS_DOC),
            string_col("Images", 1, IMAGES_DOC),
            string_col(
                "Selector",
                1,
                "Selector is a label query over pods that should match the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod template. Label keys and values that must match in order to be controlled by this replication controller, if empty defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
            ),
        ],
        cells: Printer::replication_controller,
        conditions: None,
    }
}

pub(crate) fn event_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            string_col(
                "Last Seen",
                0,
                "The time at which the most recent occurrence of this event was recorded.",
            ),
            string_col(
                "Type",
                0,
                "Type of this event (Normal, Warning), new types could be added in the future",
            ),
            string_col(
                "Reason",
                0,
                "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
            ),
            string_col("Object", 0, "The object that this event is about."),
            string_col(
                "Subobject",
                1,
                "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.",
            ),
            string_col("Source", 1, "The component reporting this event."),
            string_col(
                "Message",
                0,
                "A human-readable description of the status of this operation.",
            ),
            string_col(
                "First Seen",
                1,
                "The time at which the event was first recorded.",
            ),
            string_col("Count", 1, "The number of times this event has occurred."),
            Column {
                priority: 1,
                ..name_col()
            },
        ],
        cells: Printer::event,
        conditions: None,
    }
}

impl Printer {
    /// The selector as upstream's `labels.FormatLabels` prints a map: sorted `k=v` pairs.
    fn replication_controller(&self, rc: &Value) -> Vec<Value> {
        let (containers, images) = containers_cells(at(rc, &["spec", "template", "spec"]));
        vec![
            Self::name(rc),
            json!(at(rc, &["spec", "replicas"]).as_i64().unwrap_or(1)),
            json!(int_at(rc, &["status", "replicas"])),
            json!(int_at(rc, &["status", "readyReplicas"])),
            self.age(rc),
            containers,
            images,
            json!(format_labels(at(rc, &["spec", "selector"]))),
        ]
    }

    fn namespace(&self, ns: &Value) -> Vec<Value> {
        vec![
            Self::name(ns),
            json!(str_at(ns, &["status", "phase"])),
            self.age(ns),
        ]
    }

    fn node(&self, node: &Value) -> Vec<Value> {
        let status = at(node, &["status"]);
        let mut state: Vec<String> = Vec::new();
        if let Some(c) = arr_at(status, &["conditions"])
            .iter()
            .find(|c| str_at(c, &["type"]) == "Ready")
        {
            state.push(if str_at(c, &["status"]) == "True" {
                "Ready".into()
            } else {
                "NotReady".into()
            });
        }
        if state.is_empty() {
            state.push("Unknown".into());
        }
        if at(node, &["spec", "unschedulable"]).as_bool() == Some(true) {
            state.push("SchedulingDisabled".into());
        }
        let mut roles = BTreeSet::new();
        if let Some(labels) = at(node, &["metadata", "labels"]).as_object() {
            for (k, v) in labels {
                if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                    if !role.is_empty() {
                        roles.insert(role.to_string());
                    }
                } else if k == "kubernetes.io/role"
                    && let Some(v) = v.as_str().filter(|v| !v.is_empty())
                {
                    roles.insert(v.to_string());
                }
            }
        }
        let roles = roles.into_iter().collect::<Vec<_>>().join(",");
        let address = |ty: &str| {
            arr_at(status, &["addresses"])
                .iter()
                .find(|a| str_at(a, &["type"]) == ty)
                .map(|a| str_at(a, &["address"]).to_string())
                .unwrap_or_else(|| "<none>".into())
        };
        let info = at(status, &["nodeInfo"]);
        vec![
            Self::name(node),
            json!(state.join(",")),
            json!(or(&roles, "<none>")),
            self.age(node),
            json!(str_at(info, &["kubeletVersion"])),
            json!(address("InternalIP")),
            json!(address("ExternalIP")),
            json!(or(str_at(info, &["osImage"]), "<unknown>")),
            json!(or(str_at(info, &["kernelVersion"]), "<unknown>")),
            json!(or(str_at(info, &["containerRuntimeVersion"]), "<unknown>")),
        ]
    }

    fn config_map(&self, cm: &Value) -> Vec<Value> {
        vec![
            Self::name(cm),
            json!(len_at(cm, &["data"]) + len_at(cm, &["binaryData"])),
            self.age(cm),
        ]
    }

    fn secret(&self, secret: &Value) -> Vec<Value> {
        vec![
            Self::name(secret),
            json!(or(str_at(secret, &["type"]), "Opaque")),
            json!(len_at(secret, &["data"])),
            self.age(secret),
        ]
    }

    fn service_account(&self, sa: &Value) -> Vec<Value> {
        vec![
            Self::name(sa),
            json!(len_at(sa, &["secrets"])),
            self.age(sa),
        ]
    }

    /// `used/hard` per resource of `status.hard`, the `limits.*` ones in their own column.
    fn resource_quota(&self, q: &Value) -> Vec<Value> {
        let (mut requests, mut limits) = (Vec::new(), Vec::new());
        let mut hard: Vec<_> = at(q, &["status", "hard"])
            .as_object()
            .into_iter()
            .flatten()
            .collect();
        hard.sort_by_key(|(res, _)| *res);
        for (res, h) in hard {
            let used = or(str_at(q, &["status", "used", res]), "0");
            let cell = format!("{res}: {used}/{}", h.as_str().unwrap_or_default());
            if res.starts_with("limits") {
                limits.push(cell);
            } else {
                requests.push(cell);
            }
        }
        vec![
            Self::name(q),
            self.age(q),
            json!(requests.join(", ")),
            json!(limits.join(", ")),
        ]
    }

    fn event(&self, ev: &Value) -> Vec<Value> {
        // core/v1 and events.k8s.io/v1 Events name some fields differently.
        let involved = if at(ev, &["involvedObject"]).is_object() {
            at(ev, &["involvedObject"])
        } else {
            at(ev, &["regarding"])
        };
        let first_ts = or(
            str_at(ev, &["firstTimestamp"]),
            str_at(ev, &["deprecatedFirstTimestamp"]),
        );
        let first = if first_ts.is_empty() {
            self.since(str_at(ev, &["eventTime"]))
        } else {
            self.since(first_ts)
        };
        let last_ts = or(
            str_at(ev, &["lastTimestamp"]),
            str_at(ev, &["deprecatedLastTimestamp"]),
        );
        let mut last = if last_ts.is_empty() {
            first.clone()
        } else {
            self.since(last_ts)
        };
        let mut count = at(ev, &["count"])
            .as_i64()
            .or_else(|| at(ev, &["deprecatedCount"]).as_i64())
            .unwrap_or(0);
        if at(ev, &["series"]).is_object() {
            last = self.since(str_at(ev, &["series", "lastObservedTime"]));
            count = int_at(ev, &["series", "count"]);
        } else if count == 0 {
            count = 1;
        }
        let kind = str_at(involved, &["kind"]).to_lowercase();
        let name = str_at(involved, &["name"]);
        let target = if name.is_empty() {
            kind
        } else {
            format!("{kind}/{name}")
        };
        let component = or(
            or(
                str_at(ev, &["source", "component"]),
                str_at(ev, &["deprecatedSource", "component"]),
            ),
            str_at(ev, &["reportingController"]),
        );
        let host = or(
            or(
                str_at(ev, &["source", "host"]),
                str_at(ev, &["deprecatedSource", "host"]),
            ),
            str_at(ev, &["reportingInstance"]),
        );
        let source = if host.is_empty() {
            component.to_string()
        } else {
            format!("{component}, {host}")
        };
        let message = or(str_at(ev, &["message"]), str_at(ev, &["note"])).trim();
        vec![
            json!(last),
            json!(str_at(ev, &["type"])),
            json!(str_at(ev, &["reason"])),
            json!(target),
            json!(str_at(involved, &["fieldPath"])),
            json!(source),
            json!(message),
            json!(first),
            json!(count),
            Self::name(ev),
        ]
    }
}

#[cfg(test)]
mod tests {
    use crate::table::test_support::cells;
    use serde_json::json;

    #[test]
    fn replication_controllers() {
        let rc = json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-10T11:55:00Z"},
            "spec": {"replicas": 3, "selector": {"tier": "front", "app": "web"},
                "template": {"spec": {"containers": [{"name": "web", "image": "web:1"}, {"name": "log", "image": "busybox"}]}}},
            "status": {"replicas": 2, "readyReplicas": 1}});
        assert_eq!(
            cells("ReplicationController", rc),
            json!([
                "web",
                3,
                2,
                1,
                "5m",
                "web,log",
                "web:1,busybox",
                "app=web,tier=front"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
    }

    #[test]
    fn nodes() {
        let node = json!({
            "metadata": {"name": "n1", "creationTimestamp": "2024-05-10T11:00:00Z",
                         "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/master": "", "kubernetes.io/hostname": "n1"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "192.168.64.10"}, {"type": "Hostname", "address": "n1"}],
                       "nodeInfo": {"kubeletVersion": "v1.37.0", "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.18.0", "containerRuntimeVersion": "ekube://0.1.0"}},
        });
        assert_eq!(
            cells("Node", node),
            json!([
                "n1",
                "Ready,SchedulingDisabled",
                "control-plane,master",
                "60m",
                "v1.37.0",
                "192.168.64.10",
                "<none>",
                "Debian GNU/Linux 12 (bookworm)",
                "6.18.0",
                "ekube://0.1.0"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let bare = json!({"metadata": {"name": "n2"}});
        let c = cells("Node", bare);
        assert_eq!(
            (c[1].as_str(), c[2].as_str(), c[7].as_str()),
            (Some("Unknown"), Some("<none>"), Some("<unknown>"))
        );
    }

    #[test]
    fn config_and_secrets_and_namespaces() {
        let ts = "2024-05-10T11:59:30Z";
        assert_eq!(
            cells(
                "ConfigMap",
                json!({"metadata": {"name": "c", "creationTimestamp": ts}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}})
            ),
            vec![json!("c"), json!(3), json!("30s")]
        );
        assert_eq!(
            cells(
                "Secret",
                json!({"metadata": {"name": "s", "creationTimestamp": ts}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}})
            ),
            vec![
                json!("s"),
                json!("kubernetes.io/tls"),
                json!(2),
                json!("30s")
            ]
        );
        assert_eq!(
            cells(
                "ResourceQuota",
                json!({"metadata": {"name": "q", "creationTimestamp": ts}, "status": {
                    "hard": {"pods": "2", "limits.cpu": "2", "requests.cpu": "1"},
                    "used": {"pods": "1", "limits.cpu": "500m"}}})
            ),
            vec![
                json!("q"),
                json!("30s"),
                json!("pods: 1/2, requests.cpu: 0/1"),
                json!("limits.cpu: 500m/2")
            ]
        );
        assert_eq!(
            cells(
                "Namespace",
                json!({"metadata": {"name": "default", "creationTimestamp": ts}, "status": {"phase": "Active"}})
            ),
            vec![json!("default"), json!("Active"), json!("30s")]
        );
        assert_eq!(
            cells(
                "ServiceAccount",
                json!({"metadata": {"name": "default", "creationTimestamp": ts}})
            ),
            vec![json!("default"), json!(0), json!("30s")]
        );
    }

    #[test]
    fn events() {
        let ev = json!({"metadata": {"name": "web.17c"}, "type": "Normal", "reason": "Scheduled",
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{web}"},
            "source": {"component": "kubelet", "host": "n1"}, "message": "Successfully assigned default/web to n1\n",
            "firstTimestamp": "2024-05-10T11:50:00Z", "lastTimestamp": "2024-05-10T11:59:50Z", "count": 4});
        assert_eq!(
            cells("Event", ev),
            json!([
                "10s",
                "Normal",
                "Scheduled",
                "pod/web",
                "spec.containers{web}",
                "kubelet, n1",
                "Successfully assigned default/web to n1",
                "10m",
                4,
                "web.17c"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let new_style = json!({"metadata": {"name": "e2"}, "type": "Warning", "reason": "FailedScheduling", "eventTime": "2024-05-10T11:59:00.000000Z",
            "reportingController": "default-scheduler", "involvedObject": {"kind": "Pod", "name": "p"}, "message": "0/1 nodes are available"});
        let c = cells("Event", new_style);
        assert_eq!(
            (c[0].as_str(), c[5].as_str(), c[8].as_i64()),
            (Some("60s"), Some("default-scheduler"), Some(1))
        );
    }
}
