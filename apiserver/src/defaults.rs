//! Defaulting, as the Kubernetes API machinery applies it before validation.
//!
//! Works on the JSON form so every resource (and every pod template inside a workload) shares
//! one implementation. Only fields the user left unset are filled.

use serde_json::{Map, Value, json};

use crate::strategy::Kind;

/// Applies the defaults of a kind to `obj` ([`crate::strategy::Strategy::set_defaults`]), then
/// fills in its initial status; a kind without a strategy (a custom resource) has none.
pub(crate) fn apply(strategy: Option<&dyn Kind>, obj: &mut Value) {
    let Some(strategy) = strategy else {
        return;
    };
    strategy.set_defaults(obj);
    if let Some(status) = strategy.initial_status() {
        fill(ensure(obj, "status"), &status);
    }
}

/// [`apply`] with the strategy of `group`/`kind` in its storage version, for tests.
#[cfg(test)]
pub(crate) fn apply_kind(group: &str, kind: &str, obj: &mut Value) {
    apply(crate::strategy::of_kind(group, kind), obj)
}

/// Upstream's `SetDefaults_ReplicationController`: an RC without a selector selects its
/// template's labels, and an RC without labels carries them too; `replicas` is 1.
pub(crate) fn replication_controller(obj: &mut Value) {
    let labels = obj
        .pointer("/spec/template/metadata/labels")
        .filter(|l| l.is_object())
        .cloned();
    if let Some(labels) = labels {
        let empty = |v: Option<&Value>| v.and_then(Value::as_object).is_none_or(Map::is_empty);
        if empty(obj.pointer("/spec/selector")) {
            ensure(obj, "spec")["selector"] = labels.clone();
        }
        if empty(obj.pointer("/metadata/labels")) {
            ensure(obj, "metadata")["labels"] = labels;
        }
    }
    let spec = ensure(obj, "spec");
    set(spec, "replicas", json!(1));
    template(spec);
}

/// Upstream's `autoscaling/v2` `SetDefaults_HorizontalPodAutoscaler` (objects of every version
/// are defaulted in v2, their storage version): `minReplicas` 1, a CPU utilization target of
/// 80 % when no metric is given, and a behavior's unset rules and fields from the defaults.
/// The scale-down stabilization window stays unset when not given, as upstream leaves it, so the
/// controller's `--horizontal-pod-autoscaler-downscale-stabilization` (5 minutes) applies.
pub(crate) fn horizontal_pod_autoscaler(obj: &mut Value) {
    let spec = ensure(obj, "spec");
    set(spec, "minReplicas", json!(1));
    if spec["metrics"].as_array().is_none_or(Vec::is_empty) {
        spec["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 80}}}]);
    }
    let Some(behavior) = spec.get_mut("behavior").filter(|b| b.is_object()) else {
        return;
    };
    let up = ensure(behavior, "scaleUp");
    set(up, "stabilizationWindowSeconds", json!(0));
    set(up, "selectPolicy", json!("Max"));
    set(
        up,
        "policies",
        json!([{"type": "Pods", "value": 4, "periodSeconds": 15},
               {"type": "Percent", "value": 100, "periodSeconds": 15}]),
    );
    let down = ensure(behavior, "scaleDown");
    set(down, "selectPolicy", json!("Max"));
    set(
        down,
        "policies",
        json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
    );
}

/// An APIService's availability, which no controller reports here: a local one (no
/// `service`: the group is served by this apiserver) is available, as upstream's are; one
/// naming a Service is not, since ekube proxies no aggregated API, and says so.
pub(crate) fn api_service(obj: &mut Value) {
    let status = ensure(obj, "status");
    if status.get("conditions").is_some_and(Value::is_array) {
        return;
    }
    let local = obj.pointer("/spec/service").is_none_or(Value::is_null);
    let (state, reason, message) = if local {
        ("True", "Local", "Local APIServices are always available")
    } else {
        (
            "False",
            "Unsupported",
            "ekube serves no aggregated APIs: requests for this group-version are not proxied to the service",
        )
    };
    obj["status"]["conditions"] = json!([{
        "type": "Available", "status": state, "reason": reason, "message": message,
        "lastTransitionTime": ekube_api::time::now_rfc3339(),
    }]);
}

/// Sets every field of `defaults` that `target` leaves unset, inside objects recursively. A
/// field of the wrong type stays, for decoding to refuse with its name.
fn fill(target: &mut Value, defaults: &Value) {
    let (Some(target), Some(defaults)) = (target.as_object_mut(), defaults.as_object()) else {
        return;
    };
    for (key, value) in defaults {
        let slot = target.entry(key.clone()).or_insert(Value::Null);
        if slot.is_null() {
            *slot = value.clone();
        } else {
            fill(slot, value);
        }
    }
}

/// A Container item's `default` falls back to its `max`, and its `defaultRequest` to its
/// `default`, then its `min`, as upstream defaults LimitRanges.
pub(crate) fn limit_range(obj: &mut Value) {
    let Some(items) = obj
        .pointer_mut("/spec/limits")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for item in items.iter_mut().filter(|i| i["type"] == "Container") {
        for (from, to) in [
            ("max", "default"),
            ("default", "defaultRequest"),
            ("min", "defaultRequest"),
        ] {
            let Some(source) = item.get(from).and_then(Value::as_object).cloned() else {
                continue;
            };
            let target = ensure(item, to);
            if !target.is_object() {
                *target = json!({});
            }
            for (k, v) in source {
                set(target, &k, v);
            }
        }
    }
}

/// The QoS class Kubernetes derives from requests and limits.
pub fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|l| pod.pointer(&format!("/spec/{l}")).and_then(Value::as_array))
        .flatten()
        .collect();
    let (mut any, mut guaranteed) = (false, !containers.is_empty());
    for c in &containers {
        let requests = c.pointer("/resources/requests").and_then(Value::as_object);
        let limits = c.pointer("/resources/limits").and_then(Value::as_object);
        if requests.is_some_and(|r| !r.is_empty()) || limits.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(res));
            let request = requests.and_then(|r| r.get(res)).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

pub(crate) fn job_spec(spec: &mut Value) {
    set(spec, "backoffLimit", json!(6));
    set(spec, "completionMode", json!("NonIndexed"));
    set(spec, "suspend", json!(false));
    if spec.get("completions").is_none() && spec.get("parallelism").is_none() {
        set(spec, "completions", json!(1));
    }
    set(spec, "parallelism", json!(1));
    template(spec);
}

pub(crate) fn template(spec: &mut Value) {
    if let Some(pod) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
        pod_spec(pod);
    }
}

/// The pod spec defaults, shared by pods and every pod template.
pub fn pod_spec(spec: &mut Value) {
    set(spec, "restartPolicy", json!("Always"));
    set(spec, "terminationGracePeriodSeconds", json!(30));
    set(spec, "dnsPolicy", json!("ClusterFirst"));
    set(spec, "schedulerName", json!("default-scheduler"));
    set(spec, "securityContext", json!({}));
    set(spec, "enableServiceLinks", json!(true));
    set(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    set(spec, "priority", json!(0));
    if spec.get("serviceAccountName").is_none() {
        let sa = spec
            .get("serviceAccount")
            .cloned()
            .unwrap_or(json!("default"));
        set(spec, "serviceAccountName", sa.clone());
        set(spec, "serviceAccount", sa);
    }
    for list in ["initContainers", "containers"] {
        if let Some(Value::Array(containers)) = spec.get_mut(list) {
            containers.iter_mut().for_each(container);
        }
    }
    if let Some(Value::Array(volumes)) = spec.get_mut("volumes") {
        for v in volumes {
            for (source, mode) in [
                ("configMap", 0o644),
                ("secret", 0o644),
                ("projected", 0o644),
                ("downwardAPI", 0o644),
            ] {
                if let Some(src) = v.get_mut(source).filter(|s| s.is_object()) {
                    set(src, "defaultMode", json!(mode));
                }
            }
            if let Some(hp) = v.get_mut("hostPath").filter(|s| s.is_object()) {
                set(hp, "type", json!(""));
            }
        }
    }
    if let Some(Value::Array(tolerations)) = spec.get_mut("tolerations") {
        for t in tolerations {
            if t.get("operator").is_none() {
                set(t, "operator", json!("Equal"));
            }
        }
    }
}

fn container(c: &mut Value) {
    let image = c
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let latest = {
        let last = image.rsplit('/').next().unwrap_or_default();
        !image.contains('@') && (!last.contains(':') || last.ends_with(":latest"))
    };
    set(
        c,
        "imagePullPolicy",
        json!(if latest { "Always" } else { "IfNotPresent" }),
    );
    set(c, "terminationMessagePath", json!("/dev/termination-log"));
    set(c, "terminationMessagePolicy", json!("File"));
    set(c, "resources", json!({}));
    if let Some(Value::Array(ports)) = c.get_mut("ports") {
        for p in ports {
            set(p, "protocol", json!("TCP"));
        }
    }
    // Limits without requests: the requests equal the limits.
    if let Some(limits) = c
        .pointer("/resources/limits")
        .cloned()
        .and_then(|l| l.as_object().cloned())
    {
        let requests = ensure(ensure(c, "resources"), "requests");
        for (k, v) in limits {
            set(requests, &k, v);
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).filter(|p| p.is_object()) {
            set(p, "timeoutSeconds", json!(1));
            set(p, "periodSeconds", json!(10));
            set(p, "successThreshold", json!(1));
            set(p, "failureThreshold", json!(3));
            if let Some(h) = p.get_mut("httpGet").filter(|h| h.is_object()) {
                set(h, "path", json!("/"));
                set(h, "scheme", json!("HTTP"));
            }
        }
    }
}

/// A Secret's `stringData` is write-only, as upstream's conversion makes it: each entry goes into
/// `data` (base64, replacing an entry of the same key) and `stringData` is not stored. One that
/// is not a map of strings stays, for decoding to refuse with the field's name.
pub(crate) fn secret_string_data(obj: &mut Value) {
    use base64::Engine;
    let strings = match obj.get("stringData") {
        Some(Value::Object(m)) if m.values().all(Value::is_string) => m.clone(),
        _ => return,
    };
    if let Some(o) = obj.as_object_mut() {
        o.remove("stringData");
    }
    let data = ensure(obj, "data");
    for (key, value) in strings {
        let text = value.as_str().unwrap_or_default();
        data[key] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

/// Returns the object at `obj[key]`, creating an empty one when absent or null.
pub fn ensure<'a>(obj: &'a mut Value, key: &str) -> &'a mut Value {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    // Indexing an object by key inserts null when absent; it cannot fail on an object.
    let slot = &mut obj[key];
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot
}

/// Sets `obj[key] = value` when the key is absent or null.
pub fn set(obj: &mut Value, key: &str, value: Value) {
    if let Some(map) = obj.as_object_mut() {
        let slot = map.entry(key.to_string()).or_insert(Value::Null);
        if slot.is_null() {
            *slot = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_string_data_is_merged_into_data() {
        let mut secret = json!({"metadata": {"name": "s"},
            "data": {"a": "b2xk", "keep": "eA=="}, "stringData": {"a": "new", "b": "two"}});
        apply_kind("", "Secret", &mut secret);
        assert_eq!(secret.get("stringData"), None);
        assert_eq!(
            secret["data"],
            json!({"a": "bmV3", "b": "dHdv", "keep": "eA=="})
        );
        let mut bad = json!({"metadata": {"name": "s"}, "stringData": {"n": 1}});
        apply_kind("", "Secret", &mut bad);
        assert_eq!(
            bad["stringData"],
            json!({"n": 1}),
            "left for decoding to refuse"
        );
    }

    #[test]
    fn pod_defaults() {
        let mut pod = json!({"spec": {"containers": [{"name": "a", "image": "web"}, {"name": "b", "image": "web:v2",
            "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": "100m"}}}]}});
        apply_kind("", "Pod", &mut pod);
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 30);
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(
            pod["spec"]["containers"][1]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(pod["spec"]["containers"][1]["ports"][0]["protocol"], "TCP");
        assert_eq!(
            pod["spec"]["containers"][1]["resources"]["requests"]["cpu"],
            "100m"
        );
    }

    #[test]
    fn statuses_start_as_upstream_serves_them() {
        for (group, kind, status) in [
            ("", "Service", json!({"loadBalancer": {}})),
            ("networking.k8s.io", "Ingress", json!({"loadBalancer": {}})),
            ("", "Namespace", json!({"phase": "Active"})),
            ("", "PersistentVolumeClaim", json!({"phase": "Pending"})),
            ("", "PersistentVolume", json!({"phase": "Pending"})),
            ("apps", "Deployment", json!({})),
            ("apps", "ReplicaSet", json!({"replicas": 0})),
            ("", "ReplicationController", json!({"replicas": 0})),
            (
                "apps",
                "StatefulSet",
                json!({"replicas": 0, "availableReplicas": 0}),
            ),
            ("batch", "Job", json!({})),
            ("batch", "CronJob", json!({})),
            (
                "policy",
                "PodDisruptionBudget",
                json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}),
            ),
        ] {
            let mut obj = json!({"metadata": {"name": "x"}, "spec": {}});
            apply_kind(group, kind, &mut obj);
            assert_eq!(obj["status"], status, "{kind}");
        }
        let mut ds = json!({"spec": {}});
        apply_kind("apps", "DaemonSet", &mut ds);
        assert_eq!(ds["status"]["numberMisscheduled"], 0);
        let mut cm = json!({"data": {}});
        apply_kind("", "ConfigMap", &mut cm);
        assert_eq!(cm.get("status"), None, "a kind without status gets none");
    }

    #[test]
    fn a_replication_controller_selects_its_template_labels() {
        let mut rc = json!({"metadata": {"name": "web"}, "spec": {"template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        apply_kind("", "ReplicationController", &mut rc);
        assert_eq!(rc["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(rc["spec"]["replicas"], 1);
        assert_eq!(rc["spec"]["template"]["spec"]["restartPolicy"], "Always");
        let mut own = json!({"metadata": {"name": "web", "labels": {"team": "a"}}, "spec": {
            "replicas": 0, "selector": {"app": "web", "v": "1"},
            "template": {"metadata": {"labels": {"app": "web", "v": "1", "x": "y"}}}}});
        apply_kind("", "ReplicationController", &mut own);
        assert_eq!(own["spec"]["selector"], json!({"app": "web", "v": "1"}));
        assert_eq!(own["metadata"]["labels"], json!({"team": "a"}));
        assert_eq!(own["spec"]["replicas"], 0);
        let mut bare = json!({"metadata": {"name": "web"}, "spec": {}});
        apply_kind("", "ReplicationController", &mut bare);
        assert_eq!(bare["spec"].get("selector"), None, "no labels, no selector");
    }

    #[test]
    fn storage_defaults_fill_only_what_is_unset() {
        let mut pv = json!({"spec": {"capacity": {"storage": "1Gi"}}});
        apply_kind("", "PersistentVolume", &mut pv);
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
        let mut pvc = json!({"spec": {"volumeMode": "Block"}});
        apply_kind("", "PersistentVolumeClaim", &mut pvc);
        assert_eq!(pvc["spec"]["volumeMode"], "Block");
        let mut class = json!({"provisioner": "ekube.io/local-path"});
        apply_kind("storage.k8s.io", "StorageClass", &mut class);
        assert_eq!(class["reclaimPolicy"], "Delete");
        assert_eq!(class["volumeBindingMode"], "Immediate");
        let mut kept =
            json!({"reclaimPolicy": "Retain", "volumeBindingMode": "WaitForFirstConsumer"});
        apply_kind("storage.k8s.io", "StorageClass", &mut kept);
        assert_eq!(kept["reclaimPolicy"], "Retain");
        assert_eq!(kept["volumeBindingMode"], "WaitForFirstConsumer");
    }

    #[test]
    fn a_reported_status_keeps_its_values() {
        let mut rs = json!({"spec": {}, "status": {"replicas": 3, "readyReplicas": 2}});
        apply_kind("apps", "ReplicaSet", &mut rs);
        assert_eq!(rs["status"], json!({"replicas": 3, "readyReplicas": 2}));
        let mut svc =
            json!({"spec": {}, "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.9"}]}}});
        apply_kind("", "Service", &mut svc);
        assert_eq!(
            svc["status"]["loadBalancer"]["ingress"][0]["ip"],
            "10.0.0.9"
        );
        let mut node = json!({"status": {"nodeInfo": {"kubeletVersion": "v1.37.0"},
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        apply_kind("", "Node", &mut node);
        assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "v1.37.0");
        assert_eq!(node["status"]["nodeInfo"]["machineID"], "");
        assert_eq!(
            node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
            10250
        );
    }

    #[test]
    fn horizontal_pod_autoscaler_defaults() {
        let mut hpa = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3}});
        apply_kind("autoscaling", "HorizontalPodAutoscaler", &mut hpa);
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert_eq!(
            hpa["spec"]["metrics"][0]["resource"]["target"],
            json!({"type": "Utilization", "averageUtilization": 80})
        );
        assert!(hpa["spec"].get("behavior").is_none());
        assert_eq!(hpa["status"], json!({"desiredReplicas": 0}));
        let mut hpa = json!({"spec": {"minReplicas": 2, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
            "metrics": [{"type": "Pods"}]}});
        apply_kind("autoscaling", "HorizontalPodAutoscaler", &mut hpa);
        assert_eq!(hpa["spec"]["minReplicas"], 2);
        assert_eq!(hpa["spec"]["metrics"], json!([{"type": "Pods"}]));
        let b = &hpa["spec"]["behavior"];
        assert_eq!(b["scaleUp"]["stabilizationWindowSeconds"], 0);
        assert_eq!(
            b["scaleUp"]["policies"][0],
            json!({"type": "Pods", "value": 4, "periodSeconds": 15})
        );
        assert_eq!(b["scaleDown"]["stabilizationWindowSeconds"], 60);
        assert_eq!(b["scaleDown"]["selectPolicy"], "Max");
        assert_eq!(b["scaleDown"]["policies"][0]["type"], "Percent");
    }

    #[test]
    fn service_defaults() {
        let mut svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        apply_kind("", "Service", &mut svc);
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(svc["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(svc["spec"]["sessionAffinity"], "None");
    }
}
