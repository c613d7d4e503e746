//! The resource table: every kind ekube serves, with the facts discovery and routing need.
//!
//! One row per resource, in the shape of the Kubernetes discovery documents: group, version,
//! kind, plural, scope, short names and the subresources a client may address. The apiserver
//! routes by it, discovery is rendered from it, and `kubectl api-resources` prints it.

/// How a resource is addressed and what it supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; empty for the core (legacy) group served under `/api`.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The lowercase plural used in paths (`pods`).
    pub plural: &'static str,
    /// The lowercase singular name (`pod`).
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Categories such as `all`, used by `kubectl get all`.
    pub categories: &'static [&'static str],
    /// Whether `<plural>/status` exists (writes to it change only `.status`).
    pub status: bool,
    /// Whether `<plural>/scale` exists (an `autoscaling/v1` Scale view of `.spec.replicas`).
    pub scale: bool,
    /// A review: create-only, answered with the object's status and never stored
    /// (`TokenReview`).
    pub review: bool,
}

impl ResourceInfo {
    /// `v1` for the core group, `<group>/<version>` otherwise, as in `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The storage key prefix for this resource (`/registry/<group>/<plural>/`).
    pub fn key_prefix(&self) -> String {
        // events.k8s.io/v1 Events are another version of core/v1 Events: one storage.
        // autoscaling/v1 HorizontalPodAutoscalers are another version of autoscaling/v2 ones.
        let group = match self.group {
            "" | "events.k8s.io" => "core",
            g => g,
        };
        format!("/registry/{group}/{}/", self.plural)
    }

    /// The kind of the list type (`PodList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

const fn res(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
) -> ResourceInfo {
    ResourceInfo {
        group,
        version,
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        categories: &[],
        status: false,
        scale: false,
        review: false,
    }
}

const fn with_status(mut r: ResourceInfo) -> ResourceInfo {
    r.status = true;
    r
}

const fn with_scale(mut r: ResourceInfo) -> ResourceInfo {
    r.status = true;
    r.scale = true;
    r
}

const fn review(mut r: ResourceInfo) -> ResourceInfo {
    r.review = true;
    r
}

const fn in_all(mut r: ResourceInfo) -> ResourceInfo {
    r.categories = &["all"];
    r
}

/// Every resource ekube serves.
pub static RESOURCES: &[ResourceInfo] = &[
    with_status(res(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        false,
        &["ns"],
    )),
    in_all(with_status(res(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        true,
        &["po"],
    ))),
    in_all(with_status(res(
        "",
        "v1",
        "Service",
        "services",
        "service",
        true,
        &["svc"],
    ))),
    res(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        true,
        &["ep"],
    ),
    with_status(res("", "v1", "Node", "nodes", "node", false, &["no"])),
    res(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        true,
        &["cm"],
    ),
    res("", "v1", "Secret", "secrets", "secret", true, &[]),
    res(
        "",
        "v1",
        "LimitRange",
        "limitranges",
        "limitrange",
        true,
        &["limits"],
    ),
    with_status(res(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        "resourcequota",
        true,
        &["quota"],
    )),
    res("", "v1", "Event", "events", "event", true, &["ev"]),
    res(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        &["sa"],
    ),
    with_status(res(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        "persistentvolume",
        false,
        &["pv"],
    )),
    with_status(res(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        true,
        &["pvc"],
    )),
    in_all(with_scale(res(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        "replicationcontroller",
        true,
        &["rc"],
    ))),
    in_all(with_scale(res(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        true,
        &["deploy"],
    ))),
    in_all(with_scale(res(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        true,
        &["rs"],
    ))),
    in_all(with_status(res(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        true,
        &["ds"],
    ))),
    in_all(with_scale(res(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        true,
        &["sts"],
    ))),
    res(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        true,
        &[],
    ),
    in_all(with_status(res(
        "batch",
        "v1",
        "Job",
        "jobs",
        "job",
        true,
        &[],
    ))),
    in_all(with_status(res(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        "cronjob",
        true,
        &["cj"],
    ))),
    with_status(res(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        true,
        &["pdb"],
    )),
    // autoscaling/v2 is the storage version; v1 is converted (see the apiserver's `convert`).
    in_all(with_status(res(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        true,
        &["hpa"],
    ))),
    in_all(with_status(res(
        "autoscaling",
        "v1",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        true,
        &["hpa"],
    ))),
    res(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
        &[],
    ),
    res(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        true,
        &[],
    ),
    with_status(res(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        "ingress",
        true,
        &["ing"],
    )),
    res(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        "ingressclass",
        false,
        &[],
    ),
    res(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        "storageclass",
        false,
        &["sc"],
    ),
    res(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        "role",
        true,
        &[],
    ),
    res(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        "rolebinding",
        true,
        &[],
    ),
    res(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        "clusterrole",
        false,
        &[],
    ),
    res(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        false,
        &[],
    ),
    with_status(res(
        "apiregistration.k8s.io",
        "v1",
        "APIService",
        "apiservices",
        "apiservice",
        false,
        &[],
    )),
    review(res(
        "authentication.k8s.io",
        "v1",
        "TokenReview",
        "tokenreviews",
        "tokenreview",
        false,
        &[],
    )),
    with_status(res(
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        "certificatesigningrequest",
        false,
        &["csr"],
    )),
    res(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        "event",
        true,
        &["ev"],
    ),
];

/// Finds the resource served at `group`/`version` under `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Finds the resource for an object's `apiVersion` and `kind`.
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    let (group, version) = split_api_version(api_version);
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// Splits `apps/v1` into `("apps", "v1")` and `v1` into `("", "v1")`.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

/// The groups served, in discovery order (core first), each with its versions.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_is_unique_per_group_version() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(
                    !(a.group == b.group && a.version == b.version && a.plural == b.plural),
                    "{} served twice",
                    a.plural
                );
            }
        }
    }

    #[test]
    fn lookups() {
        assert_eq!(find("", "v1", "pods").unwrap().kind, "Pod");
        assert_eq!(
            find_kind("apps/v1", "Deployment").unwrap().plural,
            "deployments"
        );
        assert!(find_kind("apps/v1", "Pod").is_none());
        let class = find_kind("networking.k8s.io/v1", "IngressClass").unwrap();
        assert_eq!(
            (class.plural, class.namespaced, class.status),
            ("ingressclasses", false, false)
        );
        let sc = find_kind("storage.k8s.io/v1", "StorageClass").unwrap();
        assert_eq!(
            (sc.plural, sc.short_names, sc.namespaced, sc.status),
            ("storageclasses", &["sc"][..], false, false)
        );
        let pdb = find_kind("policy/v1", "PodDisruptionBudget").unwrap();
        assert_eq!(
            (pdb.plural, pdb.short_names, pdb.status),
            ("poddisruptionbudgets", &["pdb"][..], true)
        );
        assert_eq!(
            find("", "v1", "services").unwrap().key_prefix(),
            "/registry/core/services/"
        );
        assert_eq!(groups()[0], ("", vec!["v1"]));
        let v1 = find("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let v2 = find_kind("autoscaling/v2", "HorizontalPodAutoscaler").unwrap();
        assert_eq!(v1.key_prefix(), v2.key_prefix());
        assert_eq!(
            (v2.short_names, v2.categories),
            (&["hpa"][..], &["all"][..])
        );
        assert!(groups().contains(&("autoscaling", vec!["v2", "v1"])));
    }
}
