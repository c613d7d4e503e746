//! The scheduling algorithm, free of I/O: per-node state, the filters (with the reasons
//! Kubernetes prints), the scores, and the `FitError` message.
//!
//! Filters run in the default profile's order (NodeUnschedulable, TaintToleration,
//! NodeAffinity, NodePorts, NodeResourcesFit) and a node stops at the first one that fails,
//! so each infeasible node contributes exactly one reason (several for resources), counted
//! into `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node
//! affinity/selector.` exactly as upstream words it. Extended resources (`vendor.example/dev`)
//! and huge pages are fitted by name like cpu (`Insufficient vendor.example/dev`); scoring
//! weighs only cpu and memory, as upstream's default LeastAllocated strategy does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ekube_api::nodematch::{selects, term_matches, tolerated};
use ekube_api::{quantity, resource_name};
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};

pub const UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub const PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
pub const TOO_MANY_PODS: &str = "Too many pods";
const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Requests in the units the filters compare: millicores, bytes, bytes, and whole units of each
/// scalar resource (extended resources such as `vendor.example/dev`, huge pages) by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu: i64,
    pub memory: i64,
    pub ephemeral: i64,
    pub scalar: BTreeMap<String, i64>,
}

impl std::ops::AddAssign<&Resources> for Resources {
    fn add_assign(&mut self, o: &Self) {
        self.cpu += o.cpu;
        self.memory += o.memory;
        self.ephemeral += o.ephemeral;
        for (name, n) in &o.scalar {
            let sum = self.scalar.entry(name.clone()).or_default();
            *sum = sum.saturating_add(*n);
        }
    }
}

impl Resources {
    /// Each resource raised to at least `o`'s (an init container runs alone).
    fn max_assign(&mut self, o: &Self) {
        self.cpu = self.cpu.max(o.cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral = self.ephemeral.max(o.ephemeral);
        for (name, n) in &o.scalar {
            let most = self.scalar.entry(name.clone()).or_default();
            *most = (*most).max(*n);
        }
    }
}

type Quantities = BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>;

fn amount(map: Option<&Quantities>, key: &str, cpu: bool) -> Option<i64> {
    let q = map?.get(key)?;
    if cpu {
        quantity::cpu_millis(&q.0).ok()
    } else {
        quantity::bytes(&q.0).ok()
    }
}

/// Upstream's `IsScalarResourceName`: the resources the fit filter counts by name besides cpu,
/// memory, ephemeral storage and pods.
pub fn is_scalar(name: &str) -> bool {
    resource_name::is_extended(name)
        || resource_name::is_hugepages(name)
        || name.contains("kubernetes.io/")
        || name.starts_with("attachable-volumes-")
}

/// The scalar resources of `map` in whole units (rounded up, as `Quantity.Value()`).
fn scalars(map: Option<&Quantities>) -> BTreeMap<String, i64> {
    map.into_iter()
        .flatten()
        .filter(|(name, _)| is_scalar(name))
        .filter_map(|(name, q)| Some((name.clone(), quantity::bytes(&q.0).ok()?)))
        .collect()
}

/// A pod's effective requests: the sum over containers, at least the largest init container,
/// plus the overhead. With `non_zero`, containers without a request count as 100m / 200Mi
/// (used for scoring only, as upstream does).
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Resources {
    let Some(spec) = pod.spec.as_ref() else {
        return Resources::default();
    };
    let one = |c: &k8s_openapi::api::core::v1::Container| {
        let req = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        let cpu = amount(req, "cpu", true);
        let memory = amount(req, "memory", false);
        Resources {
            cpu: cpu.unwrap_or(if non_zero { 100 } else { 0 }),
            memory: memory.unwrap_or(if non_zero { 200 << 20 } else { 0 }),
            ephemeral: amount(req, "ephemeral-storage", false).unwrap_or(0),
            scalar: scalars(req),
        }
    };
    let mut total = Resources::default();
    for c in &spec.containers {
        total += &one(c);
    }
    for c in spec.init_containers.iter().flatten() {
        total.max_assign(&one(c));
    }
    let overhead = spec.overhead.as_ref();
    total += &Resources {
        cpu: amount(overhead, "cpu", true).unwrap_or(0),
        memory: amount(overhead, "memory", false).unwrap_or(0),
        ephemeral: 0,
        scalar: scalars(overhead),
    };
    total
}

/// `(protocol, hostIP, hostPort)` the pod wants.
pub fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let hp = p.host_port.filter(|p| *p > 0)?;
            let ip = p
                .host_ip
                .clone()
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| "0.0.0.0".into());
            Some((p.protocol.clone().unwrap_or_else(|| "TCP".into()), ip, hp))
        })
        .collect()
}

/// The pod being scheduled, with what the filters and scores read of it worked out once
/// rather than once per node: what it would take of a node, its tolerations and its
/// affinity terms.
pub struct Incoming<'a> {
    pub pod: &'a Pod,
    pub(crate) footprint: Arc<Footprint>,
    tolerations: &'a [Toleration],
    pub(crate) affinity: crate::interpod::Terms,
}

impl<'a> Incoming<'a> {
    pub fn new(pod: &'a Pod) -> Self {
        Self::with_footprint(pod, Arc::new(Footprint::of(pod)))
    }

    /// The pod with its footprint worked out already (by the pod cache, from the whole pod: the
    /// cached pod has no containers).
    pub fn with_footprint(pod: &'a Pod, footprint: Arc<Footprint>) -> Self {
        Self {
            pod,
            footprint,
            tolerations: pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.as_deref())
                .unwrap_or_default(),
            affinity: crate::interpod::Terms::of(pod),
        }
    }
}

/// The controller owner uid of a pod, for spreading.
pub fn owner_uid(pod: &Pod) -> Option<String> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
}

/// A node with what is already placed on it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The node as listed (shared with the node store, not copied for each pass); what is
    /// worked out of it below is from [`NodeInfo::new`].
    pub node: Arc<Node>,
    /// The node's allocatable resources (its capacity when it reports none) and pod count.
    allocatable: Resources,
    max_pods: i64,
    /// Its own taints and the one its Ready condition implies.
    taints: Vec<Taint>,
    pub requested: Resources,
    /// Requests with the non-zero defaults, for scoring.
    pub requested_scoring: Resources,
    pub pods: usize,
    pub ports: Vec<(String, String, i32)>,
    pub owners: HashMap<String, usize>,
    /// The placed pods' labels and anti-affinity, for inter-pod (anti-)affinity.
    pub placed: Vec<Arc<crate::interpod::Placed>>,
    /// Whether one of them has required anti-affinity terms (that an incoming pod must not
    /// match): the symmetric rule looks only at such nodes.
    pub has_anti_affinity: bool,
}

impl NodeInfo {
    pub fn new(node: impl Into<Arc<Node>>) -> Self {
        let node = node.into();
        let status = node.status.as_ref();
        let alloc = status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
        let allocatable = Resources {
            cpu: amount(alloc, "cpu", true).unwrap_or(0),
            memory: amount(alloc, "memory", false).unwrap_or(0),
            ephemeral: amount(alloc, "ephemeral-storage", false).unwrap_or(i64::MAX),
            // A scalar resource the node does not list, it has none of.
            scalar: scalars(alloc),
        };
        let max_pods = amount(alloc, "pods", false).unwrap_or(110);
        Self {
            allocatable,
            max_pods,
            taints: effective_taints(&node),
            node,
            requested: Resources::default(),
            requested_scoring: Resources::default(),
            pods: 0,
            ports: Vec::new(),
            owners: HashMap::new(),
            placed: Vec::new(),
            has_anti_affinity: false,
        }
    }

    pub fn add(&mut self, pod: &Pod) {
        self.add_footprint(&Footprint::of(pod));
    }

    pub fn add_footprint(&mut self, pod: &Footprint) {
        self.requested += &pod.requested;
        self.requested_scoring += &pod.requested_scoring;
        self.pods += 1;
        self.ports.extend(pod.ports.iter().cloned());
        if let Some(uid) = &pod.owner {
            *self.owners.entry(uid.clone()).or_default() += 1;
        }
        self.has_anti_affinity |= !pod.placed.anti_affinity.is_empty();
        self.placed.push(pod.placed.clone());
    }
}

/// What a pod takes of its node and tells about itself, worked out once per version of the
/// pod by the pod cache ([`crate::pods`]).
#[derive(Debug, PartialEq)]
pub struct Footprint {
    requested: Resources,
    /// With the non-zero defaults, for scoring.
    requested_scoring: Resources,
    ports: Vec<(String, String, i32)>,
    pub(crate) owner: Option<String>,
    placed: Arc<crate::interpod::Placed>,
}

impl Footprint {
    pub fn of(pod: &Pod) -> Self {
        Self {
            requested: pod_requests(pod, false),
            requested_scoring: pod_requests(pod, true),
            ports: host_ports(pod),
            owner: owner_uid(pod),
            placed: Arc::new(crate::interpod::Placed::of(pod)),
        }
    }
}

/// nodeSelector and required node affinity.
fn affinity_matches(pod: &Pod, node: &Node) -> bool {
    pod.spec.as_ref().is_none_or(|spec| selects(spec, node))
}

/// The taints a node effectively has: its own, plus the one its Ready condition implies when
/// the lifecycle controller has not tainted it yet.
fn effective_taints(node: &Node) -> Vec<Taint> {
    let mut taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    let implied = match ready.map(|c| c.status.as_str()) {
        Some("False") => Some(NOT_READY_TAINT),
        Some("Unknown") => Some(UNREACHABLE_TAINT),
        _ => None,
    };
    if let Some(key) = implied
        && !taints
            .iter()
            .any(|t| t.key == key && t.effect == "NoSchedule")
    {
        taints.push(Taint {
            key: key.into(),
            effect: "NoSchedule".into(),
            value: None,
            time_added: None,
        });
    }
    taints
}

/// Runs the filters; `Err` carries the reasons the node is infeasible.
pub fn filter(incoming: &Incoming, ni: &NodeInfo) -> Result<(), Vec<String>> {
    let (pod, tolerations) = (incoming.pod, incoming.tolerations);
    if ni.node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        let taint = Taint {
            key: UNSCHEDULABLE_TAINT.into(),
            effect: "NoSchedule".into(),
            value: None,
            time_added: None,
        };
        if !tolerated(tolerations, &taint) {
            return Err(vec![UNSCHEDULABLE.into()]);
        }
    }
    for taint in &ni.taints {
        if (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
            && !tolerated(tolerations, taint)
        {
            return Err(vec![format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or("")
            )]);
        }
    }
    if !affinity_matches(pod, &ni.node) {
        return Err(vec![AFFINITY.into()]);
    }
    for (proto, ip, port) in &incoming.footprint.ports {
        let clash = ni.ports.iter().any(|(p, i, n)| {
            p == proto && n == port && (i == ip || i == "0.0.0.0" || ip == "0.0.0.0")
        });
        if clash {
            return Err(vec![PORTS.into()]);
        }
    }
    let (alloc, want) = (&ni.allocatable, &incoming.footprint.requested);
    let mut reasons = Vec::new();
    if ni.pods as i64 + 1 > ni.max_pods {
        reasons.push(TOO_MANY_PODS.to_string());
    }
    if want.cpu > 0 && ni.requested.cpu + want.cpu > alloc.cpu {
        reasons.push("Insufficient cpu".into());
    }
    if want.memory > 0 && ni.requested.memory + want.memory > alloc.memory {
        reasons.push("Insufficient memory".into());
    }
    if want.ephemeral > 0 && ni.requested.ephemeral.saturating_add(want.ephemeral) > alloc.ephemeral
    {
        reasons.push("Insufficient ephemeral-storage".into());
    }
    for (name, &n) in want.scalar.iter().filter(|(_, n)| **n > 0) {
        let have = alloc.scalar.get(name).copied().unwrap_or(0);
        let used = ni.requested.scalar.get(name).copied().unwrap_or(0);
        if n > have.saturating_sub(used) {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

/// Least-allocated (cpu and memory, 0–100), plus spreading of one owner's pods (weight 2),
/// plus preferred node affinity (weight 2, 0–100 of the matched weight).
pub fn score(incoming: &Incoming, ni: &NodeInfo, max_owner_count: usize) -> i64 {
    let (pod, alloc, want) = (
        incoming.pod,
        &ni.allocatable,
        &incoming.footprint.requested_scoring,
    );
    let least = |requested: i64, capacity: i64| {
        if capacity <= 0 || requested > capacity {
            0
        } else {
            (capacity - requested) * 100 / capacity
        }
    };
    let resources = (least(ni.requested_scoring.cpu + want.cpu, alloc.cpu)
        + least(ni.requested_scoring.memory + want.memory, alloc.memory))
        / 2;
    let spread = match &incoming.footprint.owner {
        Some(uid) if max_owner_count > 0 => {
            let mine = ni.owners.get(uid).copied().unwrap_or(0) as i64;
            (max_owner_count as i64 - mine) * 100 / max_owner_count as i64
        }
        _ => 100,
    };
    let preferred = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let affinity = preferred.map_or(100, |terms| {
        let total: i64 = terms.iter().map(|t| i64::from(t.weight)).sum();
        let matched: i64 = terms
            .iter()
            .filter(|t| term_matches(&t.preference, &ni.node))
            .map(|t| i64::from(t.weight))
            .sum();
        if total == 0 {
            100
        } else {
            matched * 100 / total
        }
    });
    resources + 2 * spread + 2 * affinity
}

/// The message of a pod that fits nowhere, worded as the upstream scheduler's `FitError`.
pub fn fit_error(num_nodes: usize, reasons: &BTreeMap<String, usize>) -> String {
    if num_nodes == 0 {
        return "no nodes available to schedule pods".into();
    }
    let mut parts: Vec<String> = reasons
        .iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    parts.sort();
    format!(
        "0/{num_nodes} nodes are available: {}. preemption: 0/{num_nodes} nodes are available: {num_nodes} Preemption is not helpful for scheduling.",
        parts.join(", ")
    )
}

/// The message of a pod a pre-filter (e.g. [`crate::volumes::pod_claims`]) ruled out on every
/// node at once: upstream prints that message once, without a node count.
pub fn pre_filter_error(num_nodes: usize, message: &str) -> String {
    if num_nodes == 0 {
        return "no nodes available to schedule pods".into();
    }
    format!(
        "0/{num_nodes} nodes are available: {message}. preemption: 0/{num_nodes} nodes are available: {num_nodes} Preemption is not helpful for scheduling."
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use serde_json::json;

    /// [`filter`] as the scheduler calls it.
    fn check(pod: &Pod, ni: &NodeInfo) -> Result<(), Vec<String>> {
        filter(&Incoming::new(pod), ni)
    }

    fn node(name: &str, labels: serde_json::Value, cpu: &str) -> NodeInfo {
        NodeInfo::new(
            serde_json::from_value::<Node>(json!({
                "metadata": {"name": name, "labels": labels},
                "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
                           "conditions": [{"type": "Ready", "status": "True"}]}
            }))
            .unwrap(),
        )
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    #[test]
    fn node_selector_and_fit_error_wording() {
        let p = pod(json!({"containers": [{"name": "c"}], "nodeSelector": {"disk": "ssd"}}));
        let nodes = [
            node("a", json!({}), "2"),
            node("b", json!({}), "2"),
            node("c", json!({"disk": "ssd"}), "2"),
        ];
        assert_eq!(check(&p, &nodes[0]), Err(vec![AFFINITY.to_string()]));
        assert!(check(&p, &nodes[2]).is_ok());
        let mut reasons = BTreeMap::new();
        reasons.insert(AFFINITY.to_string(), 3);
        assert!(fit_error(3, &reasons).starts_with(
            "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
        ));
        assert_eq!(
            pre_filter_error(2, "pod has unbound immediate PersistentVolumeClaims"),
            "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. \
             preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn resources_and_taints() {
        let big =
            pod(json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "3"}}}]}));
        assert_eq!(
            check(&big, &node("a", json!({}), "2")),
            Err(vec!["Insufficient cpu".to_string()])
        );
        let mut tainted = node("t", json!({}), "8");
        Arc::make_mut(&mut tainted.node).spec = Some(
            serde_json::from_value(
                json!({"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}),
            )
            .unwrap(),
        );
        let tainted = NodeInfo::new(tainted.node.clone());
        assert_eq!(
            check(&big, &tainted),
            Err(vec!["node(s) had untolerated taint {k: v}".to_string()])
        );
        let tolerant = pod(
            json!({"containers": [{"name": "c"}], "tolerations": [{"key": "k", "operator": "Exists"}]}),
        );
        assert!(check(&tolerant, &tainted).is_ok());
        let mut used = node("u", json!({}), "2");
        used.add(&pod(
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "1500m"}}}]}),
        ));
        let small =
            pod(json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "600m"}}}]}));
        assert_eq!(
            check(&small, &used),
            Err(vec!["Insufficient cpu".to_string()])
        );
    }

    const DEV: &str = "vendor.example/dev";

    fn with_devices(name: &str, devices: Option<&str>) -> NodeInfo {
        let mut n = node(name, json!({}), "4");
        if let Some(devices) = devices {
            let status = Arc::make_mut(&mut n.node).status.as_mut().unwrap();
            let alloc = status.allocatable.as_mut().unwrap();
            alloc.insert(DEV.into(), Quantity(devices.into()));
        }
        NodeInfo::new(n.node.clone())
    }

    fn wanting(devices: &str) -> Pod {
        pod(json!({"containers": [{"name": "c", "resources": {
            "requests": {DEV: devices}, "limits": {DEV: devices}}}]}))
    }

    #[test]
    fn extended_resources_fit_by_name_and_a_node_without_them_has_none() {
        let insufficient = Err(vec![format!("Insufficient {DEV}")]);
        assert_eq!(
            check(&wanting("1"), &with_devices("plain", None)),
            insufficient
        );
        let mut two = with_devices("two", Some("2"));
        assert!(check(&wanting("2"), &two).is_ok());
        assert_eq!(check(&wanting("3"), &two), insufficient);
        two.add(&wanting("1"));
        assert!(check(&wanting("1"), &two).is_ok());
        assert_eq!(check(&wanting("2"), &two), insufficient);
        two.add(&wanting("1"));
        assert_eq!(check(&wanting("1"), &two), insufficient);
        // A pod asking for none fits a node whose devices are all taken, or that has none.
        let none = pod(json!({"containers": [{"name": "c"}]}));
        assert!(check(&none, &two).is_ok());
        assert!(check(&none, &with_devices("plain", None)).is_ok());
        // Reasons come after cpu's, as upstream lists them.
        let both = pod(json!({"containers": [{"name": "c", "resources": {
            "requests": {"cpu": "8", DEV: "1"}}}]}));
        assert_eq!(
            check(&both, &with_devices("plain", None)),
            Err(vec![
                "Insufficient cpu".to_string(),
                format!("Insufficient {DEV}")
            ])
        );
        let mut reasons = BTreeMap::new();
        reasons.insert(format!("Insufficient {DEV}"), 2);
        assert!(
            fit_error(2, &reasons)
                .starts_with("0/2 nodes are available: 2 Insufficient vendor.example/dev.")
        );
    }

    #[test]
    fn init_containers_count_as_their_largest_against_the_sum_of_the_others() {
        let c = |name: &str, n: &str| json!({"name": name, "resources": {"requests": {DEV: n}}});
        let p = pod(json!({
            "initContainers": [c("i1", "3"), c("i2", "1")],
            "containers": [c("a", "1"), c("b", "1")]}));
        assert_eq!(pod_requests(&p, false).scalar[DEV], 3);
        let p = pod(json!({
            "initContainers": [c("i1", "1")],
            "containers": [c("a", "2"), c("b", "2")],
            "overhead": {DEV: "1"}}));
        assert_eq!(pod_requests(&p, false).scalar[DEV], 5);
        let four = with_devices("four", Some("4"));
        assert_eq!(check(&p, &four), Err(vec![format!("Insufficient {DEV}")]));
        // cpu and memory are not scalar resources; huge pages are.
        let p = pod(
            json!({"containers": [{"name": "c", "resources": {"requests":
            {"cpu": "1", "memory": "1Gi", "hugepages-2Mi": "4Mi"}}}]}),
        );
        let scalar = pod_requests(&p, false).scalar;
        assert_eq!(
            scalar,
            BTreeMap::from([("hugepages-2Mi".to_string(), 4 << 20)])
        );
        assert_eq!(
            check(&p, &four),
            Err(vec!["Insufficient hugepages-2Mi".to_string()])
        );
    }

    #[test]
    fn required_affinity_and_host_ports() {
        let p = pod(
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}}}}),
        );
        assert_eq!(
            check(&p, &node("x", json!({"zone": "c"}), "2")),
            Err(vec![AFFINITY.to_string()])
        );
        let mut n = node("y", json!({"zone": "a"}), "2");
        assert!(check(&p, &n).is_ok());
        n.add(&p);
        assert_eq!(check(&p, &n), Err(vec![PORTS.to_string()]));
    }

    #[test]
    fn spreading_prefers_nodes_without_siblings() {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs1", "controller": true}]},
            "spec": {"containers": [{"name": "c"}]}})).unwrap();
        let mut a = node("a", json!({}), "2");
        a.add(&p);
        let b = node("b", json!({}), "2");
        assert!(score(&Incoming::new(&p), &b, 1) > score(&Incoming::new(&p), &a, 1));
    }
}
