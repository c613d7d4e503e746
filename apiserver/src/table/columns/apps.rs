//! apps/v1: Deployments, ReplicaSets, DaemonSets, StatefulSets and ControllerRevisions.

use ekube_api::display::format_labels;
use serde_json::{Value, json};

use super::{
    CONTAINERS_DOC, IMAGES_DOC, KindColumns, Printer, age_col, at, containers_cells, int_at,
    integer_col, name_col, selector_string, string_col,
};

pub(crate) fn deployment_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            string_col("Ready", 0, "Number of the pod with ready state"),
            integer_col(
                "Up-to-date",
                0,
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            integer_col(
                "Available",
                0,
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            ),
            age_col(),
            string_col("Containers", 1, CONTAINERS_DOC),
            string_col("Images", 1, IMAGES_DOC),
            string_col(
                "Selector",
                1,
                "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
            ),
        ],
        cells: Printer::deployment,
        conditions: None,
    }
}

pub(crate) fn replica_set_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            integer_col("Desired", 0, "Replicas is the number of desired pods."),
            integer_col(
                "Current",
                0,
                "Replicas is the most recently observed number of non-terminating pods.",
            ),
            integer_col(
                "Ready",
                0,
                "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.",
            ),
            age_col(),
            string_col("Containers", 1, CONTAINERS_DOC),
            string_col("Images", 1, IMAGES_DOC),
            string_col(
                "Selector",
                1,
                "Selector is a label query over pods that should match the replica count.",
            ),
        ],
        cells: Printer::replica_set,
        conditions: None,
    }
}

pub(crate) fn daemon_set_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            integer_col(
                "Desired",
                0,
                "The total number of nodes that should be running the daemon pod.",
            ),
            integer_col(
                "Current",
                0,
                "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
            ),
            integer_col(
                "Ready",
                0,
                "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.",
            ),
            integer_col(
                "Up-to-date",
                0,
                "The total number of nodes that are running updated daemon pod",
            ),
            integer_col(
                "Available",
                0,
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
            ),
            string_col(
                "Node Selector",
                0,
                "NodeSelector is a selector which must be true for the pod to fit on a node.",
            ),
            age_col(),
            string_col("Containers", 1, CONTAINERS_DOC),
            string_col("Images", 1, IMAGES_DOC),
            string_col(
                "Selector",
                1,
                "A label query over pods that are managed by the daemon set.",
            ),
        ],
        cells: Printer::daemon_set,
        conditions: None,
    }
}

pub(crate) fn stateful_set_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            string_col("Ready", 0, "Number of the pod with ready state"),
            age_col(),
            string_col("Containers", 1, CONTAINERS_DOC),
            string_col("Images", 1, IMAGES_DOC),
        ],
        cells: Printer::stateful_set,
        conditions: None,
    }
}

pub(crate) fn controller_revision_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            string_col("Controller", 0, "Controller of the object"),
            // Upstream declares the column a string and fills it with the int64.
            string_col(
                "Revision",
                0,
                "Revision indicates the revision of the state represented by Data.",
            ),
            age_col(),
        ],
        cells: Printer::controller_revision,
        conditions: None,
    }
}

impl Printer {
    /// The controller as `<kind>.<group>/<name>` (`daemonset.apps/proxy`), as upstream prints it.
    fn controller_revision(&self, cr: &Value) -> Vec<Value> {
        let owner = at(cr, &["metadata", "ownerReferences"])
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["controller"] == json!(true));
        let controller = owner.map_or_else(
            || "<none>".to_string(),
            |r| {
                let api_version = r["apiVersion"].as_str().unwrap_or_default();
                let kind = r["kind"].as_str().unwrap_or_default().to_lowercase();
                let name = r["name"].as_str().unwrap_or_default();
                match api_version.rsplit_once('/') {
                    Some((group, _)) => format!("{kind}.{group}/{name}"),
                    None => format!("{kind}/{name}"),
                }
            },
        );
        vec![
            Self::name(cr),
            json!(controller),
            json!(int_at(cr, &["revision"])),
            self.age(cr),
        ]
    }

    fn deployment(&self, d: &Value) -> Vec<Value> {
        let (containers, images) = containers_cells(at(d, &["spec", "template", "spec"]));
        let replicas = at(d, &["spec", "replicas"]).as_i64().unwrap_or(1);
        vec![
            Self::name(d),
            json!(format!(
                "{}/{replicas}",
                int_at(d, &["status", "readyReplicas"])
            )),
            json!(int_at(d, &["status", "updatedReplicas"])),
            json!(int_at(d, &["status", "availableReplicas"])),
            self.age(d),
            containers,
            images,
            json!(selector_string(at(d, &["spec", "selector"]))),
        ]
    }

    fn replica_set(&self, rs: &Value) -> Vec<Value> {
        let (containers, images) = containers_cells(at(rs, &["spec", "template", "spec"]));
        vec![
            Self::name(rs),
            json!(at(rs, &["spec", "replicas"]).as_i64().unwrap_or(1)),
            json!(int_at(rs, &["status", "replicas"])),
            json!(int_at(rs, &["status", "readyReplicas"])),
            self.age(rs),
            containers,
            images,
            json!(selector_string(at(rs, &["spec", "selector"]))),
        ]
    }

    fn daemon_set(&self, ds: &Value) -> Vec<Value> {
        let status = at(ds, &["status"]);
        let (containers, images) = containers_cells(at(ds, &["spec", "template", "spec"]));
        vec![
            Self::name(ds),
            json!(int_at(status, &["desiredNumberScheduled"])),
            json!(int_at(status, &["currentNumberScheduled"])),
            json!(int_at(status, &["numberReady"])),
            json!(int_at(status, &["updatedNumberScheduled"])),
            json!(int_at(status, &["numberAvailable"])),
            json!(format_labels(at(
                ds,
                &["spec", "template", "spec", "nodeSelector"]
            ))),
            self.age(ds),
            containers,
            images,
            json!(selector_string(at(ds, &["spec", "selector"]))),
        ]
    }

    fn stateful_set(&self, ss: &Value) -> Vec<Value> {
        let (containers, images) = containers_cells(at(ss, &["spec", "template", "spec"]));
        let replicas = at(ss, &["spec", "replicas"]).as_i64().unwrap_or(1);
        vec![
            Self::name(ss),
            json!(format!(
                "{}/{replicas}",
                int_at(ss, &["status", "readyReplicas"])
            )),
            self.age(ss),
            containers,
            images,
        ]
    }
}

#[cfg(test)]
mod tests {
    use crate::table::test_support::cells;
    use serde_json::json;

    #[test]
    fn workloads() {
        let template = json!({"spec": {"containers": [{"name": "web", "image": "web:1"}, {"name": "log", "image": "busybox"}]}});
        let d = json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-10T11:55:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]}, "template": template},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert_eq!(
            cells("Deployment", d),
            json!([
                "web",
                "2/3",
                3,
                2,
                "5m",
                "web,log",
                "web:1,busybox",
                "app=web,env in (dev,prod)"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let rs = json!({"metadata": {"name": "web-5d4"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template},
            "status": {"replicas": 2, "readyReplicas": 1}});
        assert_eq!(
            cells("ReplicaSet", rs),
            json!([
                "web-5d4",
                2,
                2,
                1,
                "<unknown>",
                "web,log",
                "web:1,busybox",
                "app=web"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let ds = json!({"metadata": {"name": "proxy"}, "spec": {"selector": {"matchLabels": {"k": "v"}}, "template": {"spec": {"containers": [{"name": "p", "image": "p:1"}], "nodeSelector": {"kubernetes.io/os": "linux"}}}},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2, "updatedNumberScheduled": 3, "numberAvailable": 2}});
        assert_eq!(
            cells("DaemonSet", ds),
            json!([
                "proxy",
                3,
                3,
                2,
                3,
                2,
                "kubernetes.io/os=linux",
                "<unknown>",
                "p",
                "p:1",
                "k=v"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let ss = json!({"metadata": {"name": "db"}, "spec": {"replicas": 3, "template": template}, "status": {"readyReplicas": 3}});
        assert_eq!(cells("StatefulSet", ss)[1], "3/3");
    }

    #[test]
    fn controller_revisions_name_their_controller() {
        let cr = json!({"metadata": {"name": "proxy-7c9d", "creationTimestamp": "2024-05-10T11:58:00Z",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "u0"},
                {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "proxy", "uid": "u1", "controller": true}]},
            "data": {"spec": {}}, "revision": 4});
        assert_eq!(
            cells("ControllerRevision", cr),
            json!(["proxy-7c9d", "daemonset.apps/proxy", 4, "2m"])
                .as_array()
                .unwrap()
                .clone()
        );
        let orphan = json!({"metadata": {"name": "x"}, "revision": 1});
        assert_eq!(cells("ControllerRevision", orphan)[1], "<none>");
    }
}
