//! `describe node`: the node's conditions, addresses, capacity and system info, and — as
//! kubectl's `describeNodeResource` — its non-terminated pods with their cpu and memory, and the
//! "Allocated resources" table of everything they request of what the node can allocate,
//! extended resources (`vendor.example/dev`) included.

use std::collections::BTreeMap;

use ekube_api::quantity::{self, Format};
use ekube_api::resource_name::{is_hugepages, is_standard_container_resource};
use ekube_api::time::Timestamp;
use serde_json::Value;

use super::{W, age, arr, date, meta_head, or_none, s, ts};

/// Amounts by resource name: billionths of a unit, and the format the first addend had (which
/// the sum is written in, as `Quantity.Add` keeps it).
type Amounts = BTreeMap<String, (i128, Format)>;

/// A quantity in its canonical form, as kubectl prints `Quantity.String()`.
fn shown(v: &Value) -> String {
    match v {
        Value::String(q) => quantity::canonical(q).unwrap_or_else(|_| q.clone()),
        other => or_none(other),
    }
}

fn amounts(v: &Value) -> Amounts {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| {
            let q = match q {
                Value::String(q) => q.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some((k.clone(), (quantity::parse_nano(&q).ok()?, Format::of(&q))))
        })
        .collect()
}

fn add(into: &mut Amounts, from: &Amounts) {
    for (k, (n, f)) in from {
        into.entry(k.clone())
            .and_modify(|(sum, _)| *sum = sum.saturating_add(*n))
            .or_insert((*n, *f));
    }
}

fn raise(into: &mut Amounts, from: &Amounts) {
    for (k, (n, f)) in from {
        let at_least = into.entry(k.clone()).or_insert((*n, *f));
        if *n > at_least.0 {
            *at_least = (*n, *f);
        }
    }
}

/// What a pod requests (`which` = `requests`) or is limited to (`limits`), as kubectl's
/// `PodRequestsAndLimits` counts it: the app containers and sidecars summed, at least any init
/// container plus the sidecars started before it, plus the overhead (for limits, only on
/// resources that have a limit).
fn pod_amounts(pod: &Value, which: &str) -> Amounts {
    let spec = &pod["spec"];
    let mut total = Amounts::new();
    for c in arr(&spec["containers"]) {
        add(&mut total, &amounts(&c["resources"][which]));
    }
    let (mut sidecars, mut init) = (Amounts::new(), Amounts::new());
    for c in arr(&spec["initContainers"]) {
        let own = amounts(&c["resources"][which]);
        if c["restartPolicy"] == "Always" {
            add(&mut total, &own);
            add(&mut sidecars, &own);
            raise(&mut init, &sidecars);
        } else {
            let mut with = own;
            add(&mut with, &sidecars);
            raise(&mut init, &with);
        }
    }
    raise(&mut total, &init);
    let mut overhead = amounts(&spec["overhead"]);
    if which == "limits" {
        overhead.retain(|k, _| total.contains_key(k));
    }
    add(&mut total, &overhead);
    total
}

/// `q (p%)`: the amount and its whole percentage of `of` (0 when the node has none), compared
/// in milli-units for cpu and whole units otherwise, as kubectl does.
fn with_percent(amounts: &Amounts, allocatable: &Amounts, name: &str) -> String {
    let (n, f) = amounts.get(name).copied().unwrap_or_default();
    let of = allocatable.get(name).map_or(0, |a| a.0);
    let unit = if name == "cpu" {
        1_000_000
    } else {
        1_000_000_000
    };
    let whole = |x: i128| x / unit + i128::from(x % unit > 0);
    let percent = if whole(of) == 0 {
        0
    } else {
        (whole(n) as f64 / whole(of) as f64 * 100.0) as i64
    };
    format!("{} ({percent}%)", quantity::render(n, f))
}

fn resources(w: &mut W, allocatable: &Value, pods: &[Value], now: Timestamp) {
    let alloc = amounts(allocatable);
    w.kv(
        0,
        "Non-terminated Pods",
        format!("({} in total)", pods.len()),
    );
    w.line(
        1,
        "Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge",
    );
    w.line(
        1,
        "---------\t----\t\t------------\t----------\t---------------\t-------------\t---",
    );
    let (mut reqs, mut limits) = (Amounts::new(), Amounts::new());
    for p in pods {
        let (r, l) = (pod_amounts(p, "requests"), pod_amounts(p, "limits"));
        w.line(
            1,
            format!(
                "{}\t{}\t\t{}\t{}\t{}\t{}\t{}",
                s(&p["metadata"]["namespace"]),
                s(&p["metadata"]["name"]),
                with_percent(&r, &alloc, "cpu"),
                with_percent(&l, &alloc, "cpu"),
                with_percent(&r, &alloc, "memory"),
                with_percent(&l, &alloc, "memory"),
                age(ts(&p["metadata"]["creationTimestamp"]), now),
            ),
        );
        add(&mut reqs, &r);
        add(&mut limits, &l);
    }
    w.head(0, "Allocated resources");
    w.line(
        1,
        "(Total limits may be over 100 percent, i.e., overcommitted.)",
    );
    w.line(1, "Resource\tRequests\tLimits");
    w.line(1, "--------\t--------\t------");
    for name in ["cpu", "memory", "ephemeral-storage"] {
        w.line(
            1,
            format!(
                "{name}\t{}\t{}",
                with_percent(&reqs, &alloc, name),
                with_percent(&limits, &alloc, name)
            ),
        );
    }
    // Huge pages with percentages, then every other resource the node offers (extended
    // resources) without, each group sorted by name.
    for name in alloc.keys().filter(|k| is_hugepages(k)) {
        w.line(
            1,
            format!(
                "{name}\t{}\t{}",
                with_percent(&reqs, &alloc, name),
                with_percent(&limits, &alloc, name)
            ),
        );
    }
    let extended = alloc
        .keys()
        .filter(|k| !is_standard_container_resource(k) && k.as_str() != "pods");
    for name in extended {
        let (r, rf) = reqs.get(name).copied().unwrap_or_default();
        let (l, lf) = limits.get(name).copied().unwrap_or_default();
        w.line(
            1,
            format!(
                "{name}\t{}\t{}",
                quantity::render(r, rf),
                quantity::render(l, lf)
            ),
        );
    }
}

/// `Node` as kubectl's `describeNode` prints it; `pods` are the node's non-terminated pods, or
/// `None` when they could not be listed (the two resource sections are left out then).
pub(super) fn node(w: &mut W, o: &Value, pods: Option<&[Value]>, now: Timestamp) {
    let (m, spec, st) = (&o["metadata"], &o["spec"], &o["status"]);
    meta_head(w, o, false);
    w.map(0, "Labels", &m["labels"], "=");
    w.map(0, "Annotations", &m["annotations"], ": ");
    w.kv(0, "CreationTimestamp", date(&m["creationTimestamp"]));
    let taints: Vec<String> = arr(&spec["taints"])
        .iter()
        .map(|t| {
            if s(&t["value"]).is_empty() {
                format!("{}:{}", s(&t["key"]), s(&t["effect"]))
            } else {
                format!("{}={}:{}", s(&t["key"]), s(&t["value"]), s(&t["effect"]))
            }
        })
        .collect();
    w.kv(
        0,
        "Taints",
        if taints.is_empty() {
            "<none>".to_string()
        } else {
            taints.join(", ")
        },
    );
    w.kv(
        0,
        "Unschedulable",
        if spec["unschedulable"] == true {
            "true"
        } else {
            "false"
        },
    );
    let conditions = arr(&st["conditions"]);
    w.head(0, "Conditions");
    w.line(
        1,
        "Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage",
    );
    w.line(
        1,
        "----\t------\t-----------------\t------------------\t------\t-------",
    );
    for c in conditions {
        w.line(
            1,
            format!(
                "{}\t{}\t{}\t{}\t{}\t{}",
                s(&c["type"]),
                s(&c["status"]),
                date(&c["lastHeartbeatTime"]),
                date(&c["lastTransitionTime"]),
                s(&c["reason"]),
                s(&c["message"])
            ),
        );
    }
    w.head(0, "Addresses");
    for a in arr(&st["addresses"]) {
        w.kv(1, s(&a["type"]), s(&a["address"]));
    }
    for (title, key) in [("Capacity", "capacity"), ("Allocatable", "allocatable")] {
        if let Some(res) = st[key].as_object() {
            w.head(0, title);
            for (k, v) in res {
                w.kv(1, k, shown(v));
            }
        }
    }
    let info = &st["nodeInfo"];
    w.head(0, "System Info");
    for (label, key) in [
        ("Machine ID", "machineID"),
        ("System UUID", "systemUUID"),
        ("Boot ID", "bootID"),
        ("Kernel Version", "kernelVersion"),
        ("OS Image", "osImage"),
        ("Operating System", "operatingSystem"),
        ("Architecture", "architecture"),
        ("Container Runtime Version", "containerRuntimeVersion"),
        ("Kubelet Version", "kubeletVersion"),
    ] {
        w.kv(1, label, s(&info[key]));
    }
    if !spec["podCIDR"].is_null() {
        w.kv(0, "PodCIDR", s(&spec["podCIDR"]));
        w.kv(
            0,
            "PodCIDRs",
            arr(&spec["podCIDRs"])
                .iter()
                .map(s)
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    if !s(&spec["providerID"]).is_empty() {
        w.kv(0, "ProviderID", s(&spec["providerID"]));
    }
    if let Some(pods) = pods {
        let allocatable = match &st["allocatable"] {
            Value::Object(a) if !a.is_empty() => &st["allocatable"],
            _ => &st["capacity"],
        };
        resources(w, allocatable, pods, now);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::describe;
    use super::*;

    fn now() -> Timestamp {
        "2024-05-10T12:00:00Z".parse().unwrap()
    }

    /// The output's lines with runs of spaces collapsed, so assertions do not depend on the
    /// column widths the rest of the description sets.
    fn lines(out: &str) -> Vec<String> {
        out.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    }

    fn node() -> Value {
        let resources = json!({"cpu": "2", "memory": "4Gi", "pods": "110", "ephemeral-storage": "10Gi",
            "hugepages-2Mi": "0", "vendor.example/dev": "2"});
        json!({"metadata": {"name": "n1"}, "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
            "status": {"capacity": resources.clone(), "allocatable": resources,
                "conditions": [], "addresses": [{"type": "InternalIP", "address": "192.168.64.10"}]}})
    }

    #[test]
    fn extended_resources_show_in_capacity_allocatable_and_allocated() {
        let pods = [
            json!({"metadata": {"name": "dev-user", "namespace": "default", "creationTimestamp": "2024-05-10T11:55:00Z"},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "resources": {
                    "requests": {"cpu": "100m", "memory": "70Mi", "vendor.example/dev": "1"},
                    "limits": {"cpu": "200m", "memory": "170Mi", "vendor.example/dev": "1"}}}]}}),
            json!({"metadata": {"name": "web", "namespace": "kube-system", "creationTimestamp": "2024-05-10T10:00:00Z"},
                "spec": {"nodeName": "n1",
                    "initContainers": [{"name": "init", "resources": {"requests": {"cpu": "1500m"}}}],
                    "containers": [{"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "100Mi"}}},
                                   {"name": "b", "resources": {"requests": {"cpu": "250m"}}}]}}),
        ];
        let rs = super::super::super::discovery::tests::sample();
        let out = describe(rs.resolve("no").unwrap(), &node(), &[], Some(&pods), now());
        let got = lines(&out);
        let section = |title: &str| -> Vec<String> {
            let at = got
                .iter()
                .position(|l| l == title)
                .unwrap_or_else(|| panic!("{title} missing:\n{out}"));
            got[at + 1..]
                .iter()
                .take_while(|l| !l.ends_with(':'))
                .cloned()
                .collect()
        };
        for title in ["Capacity:", "Allocatable:"] {
            assert_eq!(
                section(title),
                [
                    "cpu: 2",
                    "ephemeral-storage: 10Gi",
                    "hugepages-2Mi: 0",
                    "memory: 4Gi",
                    "pods: 110",
                    "vendor.example/dev: 2"
                ],
                "{out}"
            );
        }
        let at = got
            .iter()
            .position(|l| l == "Non-terminated Pods: (2 in total)")
            .expect(&out);
        assert_eq!(
            got[at + 1..at + 5],
            [
                "Namespace Name CPU Requests CPU Limits Memory Requests Memory Limits Age",
                "--------- ---- ------------ ---------- --------------- ------------- ---",
                "default dev-user 100m (5%) 200m (10%) 70Mi (1%) 170Mi (4%) 5m",
                "kube-system web 1500m (75%) 0 (0%) 100Mi (2%) 0 (0%) 120m",
            ],
            "{out}"
        );
        let at = got
            .iter()
            .position(|l| l == "Allocated resources:")
            .expect(&out);
        assert_eq!(
            got[at + 1..at + 10],
            [
                "(Total limits may be over 100 percent, i.e., overcommitted.)",
                "Resource Requests Limits",
                "-------- -------- ------",
                "cpu 1600m (80%) 200m (10%)",
                "memory 170Mi (4%) 170Mi (4%)",
                "ephemeral-storage 0 (0%) 0 (0%)",
                "hugepages-2Mi 0 (0%) 0 (0%)",
                "vendor.example/dev 1 1",
                "Events: <none>",
            ],
            "{out}"
        );
        // The table's columns line up under their headings.
        let header = out.lines().find(|l| l.contains("CPU Requests")).unwrap();
        let row = out.lines().find(|l| l.contains("dev-user")).unwrap();
        assert_eq!(header.find("CPU Requests"), row.find("100m (5%)"), "{out}");
    }

    #[test]
    fn without_the_pod_list_the_resource_sections_are_left_out() {
        let rs = super::super::super::discovery::tests::sample();
        let out = describe(rs.resolve("no").unwrap(), &node(), &[], None, now());
        assert!(out.contains("vendor.example/dev:"), "{out}");
        assert!(!out.contains("Allocated resources"), "{out}");
        assert!(!out.contains("Non-terminated Pods"), "{out}");
    }

    #[test]
    fn sidecars_and_overhead_count_as_kubectl_counts_them() {
        let pod = json!({"spec": {
            "initContainers": [
                {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "100m"}}},
                {"name": "setup", "resources": {"requests": {"cpu": "1"}}}],
            "containers": [{"name": "app", "resources": {"requests": {"cpu": "300m"}, "limits": {"cpu": "1"}}}],
            "overhead": {"cpu": "50m", "memory": "10Mi"}}});
        let requests = pod_amounts(&pod, "requests");
        // max(app 300m + sidecar 100m, setup 1 + sidecar 100m) + overhead 50m.
        assert_eq!(
            quantity::render(requests["cpu"].0, requests["cpu"].1),
            "1150m"
        );
        assert_eq!(
            quantity::render(requests["memory"].0, requests["memory"].1),
            "10Mi"
        );
        let limits = pod_amounts(&pod, "limits");
        assert_eq!(quantity::render(limits["cpu"].0, limits["cpu"].1), "1150m");
        assert!(!limits.contains_key("memory"));
    }
}
