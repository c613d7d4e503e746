//! Server-side printing: the `meta.k8s.io/v1` `Table` returned when a client asks for
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! The columns and cell formats follow the Kubernetes apiserver's printers
//! (`pkg/printers/internalversion/printers.go`) so `kubectl get` output looks the same as against
//! a real cluster. Like the real server, every row carries all columns, wide ones included; the
//! client hides columns with `priority > 0` unless asked for `-o wide`. Objects are read as JSON
//! (`serde_json::Value`), so missing fields simply print their Kubernetes placeholder.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use ekube_api::display::{format_labels, human_duration};
use serde_json::{Value, json};

/// What each row's `object` holds (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// `object` is null.
    None,
    /// `object` is a `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// `object` is the whole object.
    Object,
}

const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.";
const CONTAINERS_DOC: &str = "Names of each container in the template.";
const IMAGES_DOC: &str = "Images referenced by each container in the template.";

/// One column definition: (name, type, format, priority, description).
type Col = (&'static str, &'static str, &'static str, u8, &'static str);

fn name_col() -> Col {
    ("Name", "string", "name", 0, NAME_DOC)
}
fn age_col() -> Col {
    ("Age", "string", "", 0, AGE_DOC)
}
fn s(name: &'static str, priority: u8, doc: &'static str) -> Col {
    (name, "string", "", priority, doc)
}
fn int(name: &'static str, priority: u8, doc: &'static str) -> Col {
    (name, "integer", "", priority, doc)
}

/// Formats the cells of one row of a kind.
type RowPrinter = fn(&Printer, &Value) -> Vec<Value>;

/// Builds a complete `Table` for `items` of `kind`, with ages measured at `now`.
pub fn to_table(
    kind: &str,
    items: &[Value],
    include_object: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let p = Printer { now };
    let (columns, print): (Vec<Col>, RowPrinter) = match kind {
        "Pod" => (
            vec![
                name_col(),
                s(
                    "Ready",
                    0,
                    "The aggregate readiness state of this pod for accepting traffic.",
                ),
                s(
                    "Status",
                    0,
                    "The aggregate status of the containers in this pod.",
                ),
                s(
                    "Restarts",
                    0,
                    "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                ),
                age_col(),
                s("IP", 1, "podIP address allocated to the pod."),
                s(
                    "Node",
                    1,
                    "NodeName indicates in which node this pod is scheduled.",
                ),
                s(
                    "Nominated Node",
                    1,
                    "nominatedNodeName is set only when this pod preempts other pods on the node.",
                ),
                s(
                    "Readiness Gates",
                    1,
                    "If specified, all readiness gates will be evaluated for pod readiness.",
                ),
            ],
            Printer::pod,
        ),
        "Service" => (
            vec![
                name_col(),
                s("Type", 0, "type determines how the Service is exposed."),
                s(
                    "Cluster-IP",
                    0,
                    "clusterIP is the IP address of the service.",
                ),
                s(
                    "External-IP",
                    0,
                    "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
                ),
                s(
                    "Port(s)",
                    0,
                    "The list of ports that are exposed by this service.",
                ),
                age_col(),
                s(
                    "Selector",
                    1,
                    "Route service traffic to pods with label keys and values matching this selector.",
                ),
            ],
            Printer::service,
        ),
        "Namespace" => (
            vec![
                name_col(),
                s("Status", 0, "The status of the namespace"),
                age_col(),
            ],
            Printer::namespace,
        ),
        "Node" => (
            vec![
                name_col(),
                s("Status", 0, "The status of the node"),
                s("Roles", 0, "The roles of the node"),
                age_col(),
                s("Version", 0, "Kubelet Version reported by the node."),
                s("Internal-IP", 1, "List of addresses reachable to the node."),
                s("External-IP", 1, "List of addresses reachable to the node."),
                s(
                    "OS-Image",
                    1,
                    "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
                ),
                s(
                    "Kernel-Version",
                    1,
                    "Kernel Version reported by the node from 'uname -r'.",
                ),
                s(
                    "Container-Runtime",
                    1,
                    "ContainerRuntime Version reported by the node through runtime remote API.",
                ),
            ],
            Printer::node,
        ),
        "ConfigMap" => (
            vec![
                name_col(),
                int("Data", 0, "Data contains the configuration data."),
                age_col(),
            ],
            Printer::config_map,
        ),
        "Secret" => (
            vec![
                name_col(),
                s(
                    "Type",
                    0,
                    "Used to facilitate programmatic handling of secret data.",
                ),
                int("Data", 0, "Data contains the secret data."),
                age_col(),
            ],
            Printer::secret,
        ),
        "Endpoints" => (
            vec![
                name_col(),
                s(
                    "Endpoints",
                    0,
                    "The set of all endpoints is the union of all subsets.",
                ),
                age_col(),
            ],
            Printer::endpoints,
        ),
        "EndpointSlice" => (
            vec![
                name_col(),
                s(
                    "AddressType",
                    0,
                    "addressType specifies the type of address carried by this EndpointSlice.",
                ),
                s(
                    "Ports",
                    0,
                    "ports specifies the list of network ports exposed by each endpoint in this slice.",
                ),
                s(
                    "Endpoints",
                    0,
                    "endpoints is a list of unique endpoints in this slice.",
                ),
                age_col(),
            ],
            Printer::endpoint_slice,
        ),
        "Event" => (
            vec![
                s(
                    "Last Seen",
                    0,
                    "The time at which the most recent occurrence of this event was recorded.",
                ),
                s(
                    "Type",
                    0,
                    "Type of this event (Normal, Warning), new types could be added in the future",
                ),
                s(
                    "Reason",
                    0,
                    "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
                ),
                s("Object", 0, "The object that this event is about."),
                s(
                    "Subobject",
                    1,
                    "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.",
                ),
                s("Source", 1, "The component reporting this event."),
                s(
                    "Message",
                    0,
                    "A human-readable description of the status of this operation.",
                ),
                s(
                    "First Seen",
                    1,
                    "The time at which the event was first recorded.",
                ),
                s("Count", 1, "The number of times this event has occurred."),
                ("Name", "string", "name", 1, NAME_DOC),
            ],
            Printer::event,
        ),
        "ServiceAccount" => (
            vec![
                name_col(),
                int(
                    "Secrets",
                    0,
                    "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
                ),
                age_col(),
            ],
            Printer::service_account,
        ),
        "Deployment" => (
            vec![
                name_col(),
                s("Ready", 0, "Number of the pod with ready state"),
                int(
                    "Up-to-date",
                    0,
                    "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                ),
                int(
                    "Available",
                    0,
                    "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                ),
                age_col(),
                s("Containers", 1, CONTAINERS_DOC),
                s("Images", 1, IMAGES_DOC),
                s(
                    "Selector",
                    1,
                    "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
                ),
            ],
            Printer::deployment,
        ),
        "ReplicaSet" => (
            vec![
                name_col(),
                int("Desired", 0, "Replicas is the number of desired pods."),
                int(
                    "Current",
                    0,
                    "Replicas is the most recently observed number of non-terminating pods.",
                ),
                int(
                    "Ready",
                    0,
                    "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.",
                ),
                age_col(),
                s("Containers", 1, CONTAINERS_DOC),
                s("Images", 1, IMAGES_DOC),
                s(
                    "Selector",
                    1,
                    "Selector is a label query over pods that should match the replica count.",
                ),
            ],
            Printer::replica_set,
        ),
        "DaemonSet" => (
            vec![
                name_col(),
                int(
                    "Desired",
                    0,
                    "The total number of nodes that should be running the daemon pod.",
                ),
                int(
                    "Current",
                    0,
                    "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
                ),
                int(
                    "Ready",
                    0,
                    "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.",
                ),
                int(
                    "Up-to-date",
                    0,
                    "The total number of nodes that are running updated daemon pod",
                ),
                int(
                    "Available",
                    0,
                    "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
                ),
                s(
                    "Node Selector",
                    0,
                    "NodeSelector is a selector which must be true for the pod to fit on a node.",
                ),
                age_col(),
                s("Containers", 1, CONTAINERS_DOC),
                s("Images", 1, IMAGES_DOC),
                s(
                    "Selector",
                    1,
                    "A label query over pods that are managed by the daemon set.",
                ),
            ],
            Printer::daemon_set,
        ),
        "StatefulSet" => (
            vec![
                name_col(),
                s("Ready", 0, "Number of the pod with ready state"),
                age_col(),
                s("Containers", 1, CONTAINERS_DOC),
                s("Images", 1, IMAGES_DOC),
            ],
            Printer::stateful_set,
        ),
        "Job" => (
            vec![
                name_col(),
                s("Status", 0, "Status of the job."),
                s("Completions", 0, "The completion status of the job"),
                s("Duration", 0, "Time required to complete the job."),
                age_col(),
                s("Containers", 1, CONTAINERS_DOC),
                s("Images", 1, IMAGES_DOC),
                s(
                    "Selector",
                    1,
                    "A label query over pods that should match the pod count.",
                ),
            ],
            Printer::job,
        ),
        "CronJob" => (
            vec![
                name_col(),
                s(
                    "Schedule",
                    0,
                    "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
                ),
                s(
                    "Timezone",
                    0,
                    "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
                ),
                (
                    "Suspend",
                    "boolean",
                    "",
                    0,
                    "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.",
                ),
                int("Active", 0, "A list of pointers to currently running jobs."),
                s(
                    "Last Schedule",
                    0,
                    "Information when was the last time the job was successfully scheduled.",
                ),
                age_col(),
                s("Containers", 1, CONTAINERS_DOC),
                s("Images", 1, IMAGES_DOC),
                s(
                    "Selector",
                    1,
                    "A label query over pods that should match the pod count.",
                ),
            ],
            Printer::cron_job,
        ),
        "Lease" => (
            vec![
                name_col(),
                s(
                    "Holder",
                    0,
                    "holderIdentity contains the identity of the holder of a current lease.",
                ),
                age_col(),
            ],
            Printer::lease,
        ),
        "Ingress" => (
            vec![
                name_col(),
                s(
                    "Class",
                    0,
                    "The name of the IngressClass resource that should be used for this Ingress.",
                ),
                s(
                    "Hosts",
                    0,
                    "Hosts that incoming requests are matched against before the ingress rule",
                ),
                s(
                    "Address",
                    0,
                    "Address is a list containing ingress points for the load-balancer",
                ),
                s("Ports", 0, "Ports of TLS configurations that open"),
                age_col(),
            ],
            Printer::ingress,
        ),
        "PersistentVolume" => (
            vec![
                name_col(),
                s(
                    "Capacity",
                    0,
                    "capacity is the description of the persistent volume's resources and capacity.",
                ),
                s(
                    "Access Modes",
                    0,
                    "accessModes contains all ways the volume can be mounted.",
                ),
                s(
                    "Reclaim Policy",
                    0,
                    "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
                ),
                s(
                    "Status",
                    0,
                    "phase indicates if a volume is available, bound to a claim, or released by a claim.",
                ),
                s(
                    "Claim",
                    0,
                    "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
                ),
                s(
                    "StorageClass",
                    0,
                    "storageClassName is the name of StorageClass to which this persistent volume belongs.",
                ),
                s(
                    "VolumeAttributesClass",
                    0,
                    "VolumeAttributesClass of the persistent volume.",
                ),
                s(
                    "Reason",
                    0,
                    "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
                ),
                age_col(),
                s(
                    "VolumeMode",
                    1,
                    "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
                ),
            ],
            Printer::persistent_volume,
        ),
        "PersistentVolumeClaim" => (
            vec![
                name_col(),
                s(
                    "Status",
                    0,
                    "phase represents the current phase of PersistentVolumeClaim.",
                ),
                s(
                    "Volume",
                    0,
                    "volumeName is the binding reference to the PersistentVolume backing this claim.",
                ),
                s(
                    "Capacity",
                    0,
                    "capacity represents the actual resources of the underlying volume.",
                ),
                s(
                    "Access Modes",
                    0,
                    "accessModes contains the actual access modes the volume backing the PVC has.",
                ),
                s(
                    "StorageClass",
                    0,
                    "storageClassName is the name of the StorageClass required by the claim.",
                ),
                s(
                    "VolumeAttributesClass",
                    0,
                    "volumeAttributesClassName may be used to set the VolumeAttributesClass used by this claim.",
                ),
                age_col(),
                s(
                    "VolumeMode",
                    1,
                    "volumeMode defines what type of volume is required by the claim.",
                ),
            ],
            Printer::persistent_volume_claim,
        ),
        "RoleBinding" | "ClusterRoleBinding" => (
            vec![
                name_col(),
                s(
                    "Role",
                    0,
                    "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
                ),
                age_col(),
                s("Users", 1, "Users in the roleBinding"),
                s("Groups", 1, "Groups in the roleBinding"),
                s("ServiceAccounts", 1, "ServiceAccounts in the roleBinding"),
            ],
            Printer::role_binding,
        ),
        "CertificateSigningRequest" => (
            vec![
                name_col(),
                age_col(),
                s(
                    "SignerName",
                    0,
                    "signerName indicates the requested signer, and is a qualified name.",
                ),
                s(
                    "Requestor",
                    0,
                    "Name of the user who created the CertificateSigningRequest.",
                ),
                s(
                    "RequestedDuration",
                    0,
                    "expirationSeconds is the requested duration of validity of the issued certificate.",
                ),
                s("Condition", 0, "The state of the CSR."),
            ],
            Printer::csr,
        ),
        "ResourceQuota" => (
            vec![
                name_col(),
                age_col(),
                s(
                    "Request",
                    0,
                    "Request represents a minimum amount of cpu/memory that a container may consume.",
                ),
                s(
                    "Limit",
                    0,
                    "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
                ),
            ],
            Printer::resource_quota,
        ),
        // Role, ClusterRole, LimitRange and everything without a dedicated printer.
        _ => (
            vec![name_col(), ("Created At", "date", "", 0, AGE_DOC)],
            Printer::generic,
        ),
    };
    let column_definitions: Vec<Value> = columns
        .iter()
        .map(|(name, ty, format, priority, doc)| {
            json!({"name": name, "type": ty, "format": format, "description": doc, "priority": priority})
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let object = match include_object {
                IncludeObject::None => Value::Null,
                IncludeObject::Metadata => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": item.get("metadata").cloned().unwrap_or_else(|| json!({})),
                }),
                IncludeObject::Object => item.clone(),
            };
            let mut row = json!({"cells": print(&p, item), "object": object});
            if kind == "Pod" {
                // Like the real printer: finished pods carry a Completed condition.
                match str_at(item, &["status", "phase"]) {
                    "Succeeded" => row["conditions"] = json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]),
                    "Failed" => row["conditions"] = json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod has failed."}]),
                    _ => {}
                }
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| v.get(k).unwrap_or(&Value::Null))
}
fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).as_str().unwrap_or("")
}
fn int_at(v: &Value, path: &[&str]) -> i64 {
    at(v, path).as_i64().unwrap_or(0)
}
fn arr_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path).as_array().map(Vec::as_slice).unwrap_or(&[])
}
fn len_at(v: &Value, path: &[&str]) -> usize {
    match at(v, path) {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    }
}
fn or<'a>(s: &'a str, placeholder: &'a str) -> &'a str {
    if s.is_empty() { placeholder } else { s }
}
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A `metav1.LabelSelector` in selector syntax (`app=web,tier in (a,b)`), "" when it selects
/// everything or is absent (`LabelSelectorAsSelector(...).String()`).
fn selector_string(sel: &Value) -> String {
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let key = str_at(e, &["key"]);
        let mut values: Vec<&str> = arr_at(e, &["values"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        values.sort();
        values.dedup();
        let text = match str_at(e, &["operator"]) {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other} ({})", values.join(",")),
        };
        reqs.push((key.to_string(), text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    reqs.into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// Like [`selector_string`] but `<none>` when empty (`metav1.FormatLabelSelector`).
fn format_label_selector(sel: &Value) -> String {
    let s = selector_string(sel);
    if s.is_empty() { "<none>".into() } else { s }
}

/// Container names and images of a pod spec, comma-joined (`layoutContainerCells`).
fn containers_cells(pod_spec: &Value) -> (Value, Value) {
    let containers = arr_at(pod_spec, &["containers"]);
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, &["image"])).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

/// Joins up to `max` entries and appends ` + N more...` like the Kubernetes printers.
fn list_with_more(list: &[String], count: usize, max: usize, empty: &str) -> String {
    let shown: Vec<&str> = list.iter().take(max).map(String::as_str).collect();
    let ret = shown.join(",");
    if count > max {
        return format!("{ret} + {} more...", count - max);
    }
    if ret.is_empty() { empty.into() } else { ret }
}

fn access_modes(v: &Value) -> String {
    let modes: Vec<&str> = v
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut out = Vec::new();
    for (mode, short) in [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ] {
        if modes.contains(&mode) {
            out.push(short);
        }
    }
    out.join(",")
}

fn load_balancer_ingress(status: &Value) -> String {
    arr_at(status, &["ingress"])
        .iter()
        .filter_map(|i| {
            let ip = str_at(i, &["ip"]);
            let host = str_at(i, &["hostname"]);
            if !ip.is_empty() {
                Some(ip.to_string())
            } else if !host.is_empty() {
                Some(host.to_string())
            } else {
                None
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

struct Printer {
    now: DateTime<Utc>,
}

impl Printer {
    /// Age of an RFC 3339 timestamp, `<unknown>` when unset (`translateTimestampSince`).
    fn since(&self, ts: &str) -> String {
        match parse_time(ts) {
            Some(t) => human_duration((self.now - t).num_seconds()),
            None => "<unknown>".into(),
        }
    }

    fn age(&self, o: &Value) -> Value {
        json!(self.since(str_at(o, &["metadata", "creationTimestamp"])))
    }

    fn name(o: &Value) -> Value {
        json!(str_at(o, &["metadata", "name"]))
    }

    fn generic(&self, o: &Value) -> Vec<Value> {
        vec![
            Self::name(o),
            at(o, &["metadata", "creationTimestamp"]).clone(),
        ]
    }

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
        let mut last_restart: Option<DateTime<Utc>> = None;
        let mut last_sidecar_restart: Option<DateTime<Utc>> = None;
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
                    human_duration((self.now - t).num_seconds())
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

    fn service(&self, svc: &Value) -> Vec<Value> {
        let spec = at(svc, &["spec"]);
        let ty = or(str_at(spec, &["type"]), "ClusterIP");
        let cluster_ip = arr_at(spec, &["clusterIPs"])
            .first()
            .and_then(Value::as_str)
            .unwrap_or(str_at(spec, &["clusterIP"]));
        let external: Vec<String> = arr_at(spec, &["externalIPs"])
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect();
        let external_ip = match ty {
            "ClusterIP" | "NodePort" => {
                if external.is_empty() {
                    "<none>".to_string()
                } else {
                    external.join(",")
                }
            }
            "LoadBalancer" => {
                let lb = load_balancer_ingress(at(svc, &["status", "loadBalancer"]));
                let mut all: Vec<String> = if lb.is_empty() {
                    vec![]
                } else {
                    lb.split(',').map(String::from).collect()
                };
                all.extend(external);
                if all.is_empty() {
                    "<pending>".into()
                } else {
                    all.join(",")
                }
            }
            "ExternalName" => str_at(spec, &["externalName"]).to_string(),
            _ => "<unknown>".into(),
        };
        let ports: Vec<String> = arr_at(spec, &["ports"])
            .iter()
            .map(|p| {
                let proto = or(str_at(p, &["protocol"]), "TCP");
                match int_at(p, &["nodePort"]) {
                    0 => format!("{}/{proto}", int_at(p, &["port"])),
                    np => format!("{}:{np}/{proto}", int_at(p, &["port"])),
                }
            })
            .collect();
        vec![
            Self::name(svc),
            json!(ty),
            json!(or(cluster_ip, "<none>")),
            json!(external_ip),
            json!(if ports.is_empty() {
                "<none>".into()
            } else {
                ports.join(",")
            }),
            self.age(svc),
            json!(format_labels(at(spec, &["selector"]))),
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

    fn secret(&self, secret: &Value) -> Vec<Value> {
        vec![
            Self::name(secret),
            json!(or(str_at(secret, &["type"]), "Opaque")),
            json!(len_at(secret, &["data"])),
            self.age(secret),
        ]
    }

    fn endpoints(&self, ep: &Value) -> Vec<Value> {
        let mut list = Vec::new();
        let mut count = 0;
        for subset in arr_at(ep, &["subsets"]) {
            let addresses = arr_at(subset, &["addresses"]);
            let ports = arr_at(subset, &["ports"]);
            if ports.is_empty() {
                count += addresses.len();
                list.extend(addresses.iter().map(|a| str_at(a, &["ip"]).to_string()));
                continue;
            }
            for port in ports {
                count += addresses.len();
                for a in addresses {
                    let ip = str_at(a, &["ip"]);
                    let port = int_at(port, &["port"]);
                    // net.JoinHostPort brackets IPv6 addresses.
                    list.push(if ip.contains(':') {
                        format!("[{ip}]:{port}")
                    } else {
                        format!("{ip}:{port}")
                    });
                }
            }
        }
        vec![
            Self::name(ep),
            json!(list_with_more(&list, count, 3, "<none>")),
            self.age(ep),
        ]
    }

    fn endpoint_slice(&self, slice: &Value) -> Vec<Value> {
        let ports: Vec<String> = arr_at(slice, &["ports"])
            .iter()
            .map(|p| match at(p, &["port"]).as_i64() {
                Some(n) => n.to_string(),
                None => p
                    .get("name")
                    .and_then(Value::as_str)
                    .map(String::from)
                    .unwrap_or_else(|| "*".into()),
            })
            .collect();
        let addresses: Vec<String> = arr_at(slice, &["endpoints"])
            .iter()
            .flat_map(|e| {
                arr_at(e, &["addresses"])
                    .iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
            })
            .collect();
        vec![
            Self::name(slice),
            json!(str_at(slice, &["addressType"])),
            json!(list_with_more(&ports, ports.len(), 3, "<unset>")),
            json!(list_with_more(&addresses, addresses.len(), 3, "<unset>")),
            self.age(slice),
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

    fn service_account(&self, sa: &Value) -> Vec<Value> {
        vec![
            Self::name(sa),
            json!(len_at(sa, &["secrets"])),
            self.age(sa),
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

    fn job(&self, job: &Value) -> Vec<Value> {
        let status = at(job, &["status"]);
        let has = |ty: &str| {
            arr_at(status, &["conditions"])
                .iter()
                .any(|c| str_at(c, &["type"]) == ty && str_at(c, &["status"]) == "True")
        };
        let state = if has("Complete") {
            "Complete"
        } else if has("Failed") {
            "Failed"
        } else if at(job, &["metadata", "deletionTimestamp"]).is_string() {
            "Terminating"
        } else if has("Suspended") {
            "Suspended"
        } else if has("FailureTarget") {
            "FailureTarget"
        } else if has("SuccessCriteriaMet") {
            "SuccessCriteriaMet"
        } else {
            "Running"
        };
        let succeeded = int_at(status, &["succeeded"]);
        let completions = match at(job, &["spec", "completions"]).as_i64() {
            Some(c) => format!("{succeeded}/{c}"),
            None => match int_at(job, &["spec", "parallelism"]) {
                p if p > 1 => format!("{succeeded}/1 of {p}"),
                _ => format!("{succeeded}/1"),
            },
        };
        let duration = match (
            parse_time(str_at(status, &["startTime"])),
            parse_time(str_at(status, &["completionTime"])),
        ) {
            (None, _) => String::new(),
            (Some(start), None) => human_duration((self.now - start).num_seconds()),
            (Some(start), Some(end)) => human_duration((end - start).num_seconds()),
        };
        let (containers, images) = containers_cells(at(job, &["spec", "template", "spec"]));
        vec![
            Self::name(job),
            json!(state),
            json!(completions),
            json!(duration),
            self.age(job),
            containers,
            images,
            json!(selector_string(at(job, &["spec", "selector"]))),
        ]
    }

    fn cron_job(&self, cj: &Value) -> Vec<Value> {
        let spec = at(cj, &["spec"]);
        let last = str_at(cj, &["status", "lastScheduleTime"]);
        let (containers, images) =
            containers_cells(at(spec, &["jobTemplate", "spec", "template", "spec"]));
        vec![
            Self::name(cj),
            json!(str_at(spec, &["schedule"])),
            json!(or(str_at(spec, &["timeZone"]), "<none>")),
            json!(if at(spec, &["suspend"]).as_bool() == Some(true) {
                "True"
            } else {
                "False"
            }),
            json!(len_at(cj, &["status", "active"])),
            json!(if last.is_empty() {
                "<none>".into()
            } else {
                self.since(last)
            }),
            self.age(cj),
            containers,
            images,
            json!(format_label_selector(at(
                spec,
                &["jobTemplate", "spec", "selector"]
            ))),
        ]
    }

    fn lease(&self, lease: &Value) -> Vec<Value> {
        vec![
            Self::name(lease),
            json!(str_at(lease, &["spec", "holderIdentity"])),
            self.age(lease),
        ]
    }

    fn ingress(&self, ing: &Value) -> Vec<Value> {
        let rules = arr_at(ing, &["spec", "rules"]);
        let hosts: Vec<String> = rules
            .iter()
            .map(|r| str_at(r, &["host"]))
            .filter(|h| !h.is_empty())
            .map(String::from)
            .collect();
        let hosts = if hosts.is_empty() {
            "*".to_string()
        } else if rules.len() > 3 {
            format!(
                "{} + {} more...",
                hosts.iter().take(3).cloned().collect::<Vec<_>>().join(","),
                rules.len() - 3
            )
        } else {
            hosts.join(",")
        };
        let ports = if arr_at(ing, &["spec", "tls"]).is_empty() {
            "80"
        } else {
            "80, 443"
        };
        vec![
            Self::name(ing),
            json!(or(str_at(ing, &["spec", "ingressClassName"]), "<none>")),
            json!(hosts),
            json!(load_balancer_ingress(at(ing, &["status", "loadBalancer"]))),
            json!(ports),
            self.age(ing),
        ]
    }

    fn persistent_volume(&self, pv: &Value) -> Vec<Value> {
        let spec = at(pv, &["spec"]);
        let claim = at(spec, &["claimRef"]);
        let claim = if claim.is_object() {
            format!(
                "{}/{}",
                str_at(claim, &["namespace"]),
                str_at(claim, &["name"])
            )
        } else {
            String::new()
        };
        let class = or(
            str_at(spec, &["storageClassName"]),
            str_at(
                pv,
                &[
                    "metadata",
                    "annotations",
                    "volume.beta.kubernetes.io/storage-class",
                ],
            ),
        );
        let phase = if at(pv, &["metadata", "deletionTimestamp"]).is_string() {
            "Terminating"
        } else {
            str_at(pv, &["status", "phase"])
        };
        vec![
            Self::name(pv),
            json!(quantity(at(spec, &["capacity", "storage"]))),
            json!(access_modes(at(spec, &["accessModes"]))),
            json!(str_at(spec, &["persistentVolumeReclaimPolicy"])),
            json!(phase),
            json!(claim),
            json!(class),
            json!(or(str_at(spec, &["volumeAttributesClassName"]), "<unset>")),
            json!(str_at(pv, &["status", "reason"])),
            self.age(pv),
            json!(or(str_at(spec, &["volumeMode"]), "<unset>")),
        ]
    }

    fn persistent_volume_claim(&self, pvc: &Value) -> Vec<Value> {
        let spec = at(pvc, &["spec"]);
        let phase = if at(pvc, &["metadata", "deletionTimestamp"]).is_string() {
            "Terminating"
        } else {
            str_at(pvc, &["status", "phase"])
        };
        let bound = !str_at(spec, &["volumeName"]).is_empty();
        let (capacity, modes) = if bound {
            (
                quantity(at(pvc, &["status", "capacity", "storage"])),
                access_modes(at(pvc, &["status", "accessModes"])),
            )
        } else {
            (String::new(), String::new())
        };
        let class = or(
            str_at(spec, &["storageClassName"]),
            str_at(
                pvc,
                &[
                    "metadata",
                    "annotations",
                    "volume.beta.kubernetes.io/storage-class",
                ],
            ),
        );
        vec![
            Self::name(pvc),
            json!(phase),
            json!(str_at(spec, &["volumeName"])),
            json!(capacity),
            json!(modes),
            json!(class),
            json!(or(str_at(spec, &["volumeAttributesClassName"]), "<unset>")),
            self.age(pvc),
            json!(or(str_at(spec, &["volumeMode"]), "<unset>")),
        ]
    }

    fn role_binding(&self, rb: &Value) -> Vec<Value> {
        let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
        for s in arr_at(rb, &["subjects"]) {
            let name = str_at(s, &["name"]);
            match str_at(s, &["kind"]) {
                "User" => users.push(name.to_string()),
                "Group" => groups.push(name.to_string()),
                "ServiceAccount" => sas.push(format!("{}/{name}", str_at(s, &["namespace"]))),
                _ => {}
            }
        }
        vec![
            Self::name(rb),
            json!(format!(
                "{}/{}",
                str_at(rb, &["roleRef", "kind"]),
                str_at(rb, &["roleRef", "name"])
            )),
            self.age(rb),
            json!(users.join(", ")),
            json!(groups.join(", ")),
            json!(sas.join(", ")),
        ]
    }

    fn csr(&self, csr: &Value) -> Vec<Value> {
        let has = |ty: &str| {
            arr_at(csr, &["status", "conditions"])
                .iter()
                .any(|c| str_at(c, &["type"]) == ty)
        };
        let mut condition = if has("Denied") {
            "Denied".to_string()
        } else if has("Approved") {
            "Approved".to_string()
        } else {
            "Pending".to_string()
        };
        if has("Failed") {
            condition.push_str(",Failed");
        }
        if !str_at(csr, &["status", "certificate"]).is_empty() {
            condition.push_str(",Issued");
        }
        let duration = match at(csr, &["spec", "expirationSeconds"]).as_i64() {
            Some(secs) => human_duration(secs),
            None => "<none>".into(),
        };
        vec![
            Self::name(csr),
            self.age(csr),
            json!(or(str_at(csr, &["spec", "signerName"]), "<none>")),
            json!(str_at(csr, &["spec", "username"])),
            json!(duration),
            json!(condition),
        ]
    }
}

/// A quantity as stored (already canonical on the server), "" when absent.
fn quantity(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        parse_time("2024-05-10T12:00:00Z").unwrap()
    }

    fn cells(kind: &str, obj: Value) -> Vec<Value> {
        let t = to_table(kind, &[obj], IncludeObject::Metadata, now());
        t["rows"][0]["cells"].as_array().unwrap().clone()
    }

    fn names(t: &Value) -> Vec<(String, u64)> {
        t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["priority"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn table_shape_and_partial_metadata() {
        let pod = json!({"metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2024-05-10T11:59:55Z"}});
        let t = to_table(
            "Pod",
            std::slice::from_ref(&pod),
            IncludeObject::Metadata,
            now(),
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"], json!({}));
        assert_eq!(
            names(&t),
            [
                ("Name", 0),
                ("Ready", 0),
                ("Status", 0),
                ("Restarts", 0),
                ("Age", 0),
                ("IP", 1),
                ("Node", 1),
                ("Nominated Node", 1),
                ("Readiness Gates", 1)
            ]
            .map(|(n, p)| (n.to_string(), p))
        );
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        let row = &t["rows"][0];
        assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(row["object"]["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(row["object"]["metadata"]["name"], "web");
        assert_eq!(row["cells"].as_array().unwrap().len(), 9);
        let t = to_table(
            "Pod",
            std::slice::from_ref(&pod),
            IncludeObject::Object,
            now(),
        );
        assert_eq!(t["rows"][0]["object"], pod);
        let t = to_table("Pod", &[pod], IncludeObject::None, now());
        assert!(t["rows"][0]["object"].is_null());
    }

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
        let t = to_table("Pod", &[done], IncludeObject::None, now());
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

    #[test]
    fn services() {
        let svc = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-08T09:00:00Z"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.12.7", "clusterIPs": ["10.96.12.7"], "selector": {"app": "web", "tier": "fe"},
                     "ports": [{"port": 80, "nodePort": 32143, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]},
        });
        assert_eq!(
            cells("Service", svc),
            json!([
                "web",
                "NodePort",
                "10.96.12.7",
                "<none>",
                "80:32143/TCP,53/UDP",
                "2d3h",
                "app=web,tier=fe"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let headless = json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}});
        assert_eq!(
            cells("Service", headless),
            json!([
                "h",
                "ClusterIP",
                "None",
                "<none>",
                "<none>",
                "<unknown>",
                "<none>"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.9"], "ports": [{"port": 443, "protocol": "TCP", "nodePort": 30001}]}});
        assert_eq!(cells("Service", lb)[3], "<pending>");
        let ext = json!({"metadata": {"name": "x"}, "spec": {"type": "ExternalName", "externalName": "example.com"}});
        assert_eq!(cells("Service", ext)[3], "example.com");
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
    fn endpoints_and_slices() {
        let ep = json!({"metadata": {"name": "web"}, "subsets": [
            {"addresses": [{"ip": "10.244.1.2"}, {"ip": "10.244.2.2"}], "ports": [{"port": 8080}, {"port": 8443}]}]});
        assert_eq!(
            cells("Endpoints", ep)[1],
            "10.244.1.2:8080,10.244.2.2:8080,10.244.1.2:8443 + 1 more..."
        );
        assert_eq!(
            cells("Endpoints", json!({"metadata": {"name": "e"}}))[1],
            "<none>"
        );
        let slice = json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.244.1.2"]}, {"addresses": ["10.244.2.2"]}]});
        let c = cells("EndpointSlice", slice);
        assert_eq!(
            (c[1].as_str(), c[2].as_str(), c[3].as_str()),
            (Some("IPv4"), Some("8080"), Some("10.244.1.2,10.244.2.2"))
        );
        let empty = cells(
            "EndpointSlice",
            json!({"metadata": {"name": "e"}, "addressType": "IPv4"}),
        );
        assert_eq!(
            (empty[2].as_str(), empty[3].as_str()),
            (Some("<unset>"), Some("<unset>"))
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
    fn jobs_and_cronjobs() {
        let job = json!({"metadata": {"name": "pi"}, "spec": {"completions": 1, "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}},
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "abc"}}},
            "status": {"succeeded": 1, "startTime": "2024-05-10T11:00:00Z", "completionTime": "2024-05-10T11:00:42Z",
                       "conditions": [{"type": "Complete", "status": "True"}]}});
        let c = cells("Job", job);
        assert_eq!(
            (c[1].as_str(), c[2].as_str(), c[3].as_str()),
            (Some("Complete"), Some("1/1"), Some("42s"))
        );
        assert_eq!(c[7], "batch.kubernetes.io/controller-uid=abc");
        let running = json!({"metadata": {"name": "par"}, "spec": {"parallelism": 3}, "status": {"startTime": "2024-05-10T11:58:30Z"}});
        let c = cells("Job", running);
        assert_eq!(
            (c[1].as_str(), c[2].as_str(), c[3].as_str()),
            (Some("Running"), Some("0/1 of 3"), Some("90s"))
        );
        let cj = json!({"metadata": {"name": "hello"}, "spec": {"schedule": "*/1 * * * *", "suspend": false,
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "hello", "image": "busybox"}]}}}}},
            "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": "2024-05-10T11:59:00Z"}});
        assert_eq!(
            cells("CronJob", cj),
            json!([
                "hello",
                "*/1 * * * *",
                "<none>",
                "False",
                1,
                "60s",
                "<unknown>",
                "hello",
                "busybox",
                "<none>"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
    }

    #[test]
    fn misc_kinds() {
        let lease = json!({"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}});
        assert_eq!(cells("Lease", lease)[1], "n1");
        let ing = json!({"metadata": {"name": "ing"}, "spec": {"ingressClassName": "nginx", "rules": [{"host": "a.example"}, {"host": "b.example"}], "tls": [{}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.64.10"}]}}});
        assert_eq!(
            cells("Ingress", ing),
            json!([
                "ing",
                "nginx",
                "a.example,b.example",
                "192.168.64.10",
                "80, 443",
                "<unknown>"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let pv = json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain", "claimRef": {"namespace": "default", "name": "data"}, "storageClassName": "local"}, "status": {"phase": "Bound"}});
        assert_eq!(
            cells("PersistentVolume", pv),
            json!([
                "pv1",
                "5Gi",
                "RWO,ROX",
                "Retain",
                "Bound",
                "default/data",
                "local",
                "<unset>",
                "",
                "<unknown>",
                "<unset>"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let pvc = json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pv1", "storageClassName": "local"},
            "status": {"phase": "Bound", "capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"]}});
        assert_eq!(
            cells("PersistentVolumeClaim", pvc),
            json!([
                "data",
                "Bound",
                "pv1",
                "5Gi",
                "RWO",
                "local",
                "<unset>",
                "<unknown>",
                "<unset>"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let rb = json!({"metadata": {"name": "rb"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"}, {"kind": "ServiceAccount", "namespace": "default", "name": "bot"}]});
        assert_eq!(
            cells("ClusterRoleBinding", rb),
            json!([
                "rb",
                "ClusterRole/view",
                "<unknown>",
                "alice",
                "devs",
                "default/bot"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let csr = json!({"metadata": {"name": "csr-1"}, "spec": {"signerName": "kubernetes.io/kube-apiserver-client", "username": "admin", "expirationSeconds": 86400},
            "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "LS0t"}});
        assert_eq!(
            cells("CertificateSigningRequest", csr)[2..],
            json!([
                "kubernetes.io/kube-apiserver-client",
                "admin",
                "24h",
                "Approved,Issued"
            ])
            .as_array()
            .unwrap()[..]
        );
    }

    #[test]
    fn generic_fallback() {
        let role =
            json!({"metadata": {"name": "reader", "creationTimestamp": "2024-05-10T11:00:00Z"}});
        let t = to_table(
            "Role",
            std::slice::from_ref(&role),
            IncludeObject::Metadata,
            now(),
        );
        assert_eq!(
            names(&t),
            vec![("Name".to_string(), 0), ("Created At".to_string(), 0)]
        );
        assert_eq!(t["columnDefinitions"][1]["type"], "date");
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["reader", "2024-05-10T11:00:00Z"])
        );
        let t = to_table("Widget", &[], IncludeObject::Metadata, now());
        assert_eq!(t["rows"], json!([]));
    }
}
