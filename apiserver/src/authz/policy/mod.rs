//! The bootstrap policy: the ClusterRoles, ClusterRoleBindings, Roles and RoleBindings every
//! cluster starts with, as upstream's `plugin/pkg/auth/authorizer/rbac/bootstrappolicy` defines
//! them (`policy.go`, `controller_policy.go`, `namespace_policy.go`), plus the two objects
//! kubeadm adds for anonymous `cluster-info` discovery and its admin group. One table per role;
//! [`super::reconcile`] writes them at every start. This file holds the cluster-wide roles and
//! bindings; [`controllers`] the per-controller roles, [`namespaced`] the Roles and RoleBindings
//! in `kube-system` and `kube-public`.

mod controllers;
mod namespaced;

pub use controllers::CONTROLLER_ROLES;
pub use namespaced::{NAMESPACE_ROLE_BINDINGS, NAMESPACE_ROLES};

use super::rules::Rule;

/// A rule as data: verbs, then API groups and resources (or URLs), optionally names.
#[derive(Debug, Clone, Copy)]
pub struct R {
    pub verbs: &'static [&'static str],
    pub groups: &'static [&'static str],
    pub resources: &'static [&'static str],
    pub names: &'static [&'static str],
    pub urls: &'static [&'static str],
}

const fn r(
    verbs: &'static [&'static str],
    groups: &'static [&'static str],
    resources: &'static [&'static str],
) -> R {
    R {
        verbs,
        groups,
        resources,
        names: &[],
        urls: &[],
    }
}

const fn named(
    verbs: &'static [&'static str],
    groups: &'static [&'static str],
    resources: &'static [&'static str],
    names: &'static [&'static str],
) -> R {
    R {
        verbs,
        groups,
        resources,
        names,
        urls: &[],
    }
}

const fn urls(verbs: &'static [&'static str], urls: &'static [&'static str]) -> R {
    R {
        verbs,
        groups: &[],
        resources: &[],
        names: &[],
        urls,
    }
}

impl R {
    pub fn to_rule(&self) -> Rule {
        let rule = if self.urls.is_empty() {
            Rule::resource(self.verbs, self.groups, self.resources)
        } else {
            Rule::urls(self.verbs, self.urls)
        };
        if self.names.is_empty() {
            rule
        } else {
            rule.named(self.names)
        }
    }
}

/// A (Cluster)Role.
pub struct RoleSpec {
    pub name: &'static str,
    /// Namespace of a Role; empty for a ClusterRole.
    pub namespace: &'static str,
    pub labels: &'static [(&'static str, &'static str)],
    /// Label keys whose value `"true"` selects the ClusterRoles this one aggregates.
    pub aggregate_from: &'static [&'static str],
    pub rules: &'static [R],
}

/// Subject kinds of a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    User(&'static str),
    Group(&'static str),
    /// Namespace and name.
    ServiceAccount(&'static str, &'static str),
}

/// A (Cluster)RoleBinding.
pub struct BindingSpec {
    pub name: &'static str,
    /// Namespace of a RoleBinding; empty for a ClusterRoleBinding.
    pub namespace: &'static str,
    /// `Role` or `ClusterRole`.
    pub role_kind: &'static str,
    pub role: &'static str,
    pub subjects: &'static [Who],
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const READ_WRITE: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];
const CORE: &[&str] = &[""];
const APPS: &[&str] = &["apps"];
const BATCH: &[&str] = &["batch"];
const EXTENSIONS: &[&str] = &["extensions"];
const CERTIFICATES: &[&str] = &["certificates.k8s.io"];
const AUTHENTICATION: &[&str] = &["authentication.k8s.io"];
const AUTHORIZATION: &[&str] = &["authorization.k8s.io"];
const COORDINATION: &[&str] = &["coordination.k8s.io"];
const DISCOVERY: &[&str] = &["discovery.k8s.io"];
const NETWORKING: &[&str] = &["networking.k8s.io"];
const POLICY: &[&str] = &["policy"];
const STORAGE: &[&str] = &["storage.k8s.io"];
const RBAC: &[&str] = &["rbac.authorization.k8s.io"];
const ALL: &[&str] = &["*"];

/// Upstream's `eventsRule()`.
const EVENTS: R = r(
    &["create", "update", "patch"],
    &["", "events.k8s.io"],
    &["events"],
);

const BOOTSTRAPPING: (&str, &str) = ("kubernetes.io/bootstrapping", "rbac-defaults");
const TO_ADMIN: (&str, &str) = ("rbac.authorization.k8s.io/aggregate-to-admin", "true");
const TO_EDIT: (&str, &str) = ("rbac.authorization.k8s.io/aggregate-to-edit", "true");
const TO_VIEW: (&str, &str) = ("rbac.authorization.k8s.io/aggregate-to-view", "true");

const fn cluster_role(name: &'static str, rules: &'static [R]) -> RoleSpec {
    RoleSpec {
        name,
        namespace: "",
        labels: &[BOOTSTRAPPING],
        aggregate_from: &[],
        rules,
    }
}

pub const CLUSTER_ROLES: &[RoleSpec] = &[
    cluster_role("cluster-admin", &[r(ALL, ALL, ALL), urls(ALL, ALL)]),
    cluster_role(
        "system:discovery",
        &[urls(
            &["get"],
            &[
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/healthz",
                "/livez",
                "/openapi",
                "/openapi/*",
                "/readyz",
                "/version",
                "/version/",
            ],
        )],
    ),
    cluster_role(
        "system:monitoring",
        &[urls(
            &["get"],
            &[
                "/healthz",
                "/healthz/*",
                "/livez",
                "/livez/*",
                "/metrics",
                "/metrics/slis",
                "/readyz",
                "/readyz/*",
            ],
        )],
    ),
    cluster_role(
        "system:basic-user",
        &[
            r(
                &["create"],
                AUTHORIZATION,
                &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
            ),
            r(&["create"], AUTHENTICATION, &["selfsubjectreviews"]),
        ],
    ),
    cluster_role(
        "system:public-info-viewer",
        &[urls(
            &["get"],
            &["/healthz", "/livez", "/readyz", "/version", "/version/"],
        )],
    ),
    RoleSpec {
        name: "admin",
        namespace: "",
        labels: &[BOOTSTRAPPING],
        aggregate_from: &[TO_ADMIN.0],
        rules: &[],
    },
    RoleSpec {
        name: "edit",
        namespace: "",
        labels: &[BOOTSTRAPPING, TO_ADMIN],
        aggregate_from: &[TO_EDIT.0],
        rules: &[],
    },
    RoleSpec {
        name: "view",
        namespace: "",
        labels: &[BOOTSTRAPPING, TO_EDIT],
        aggregate_from: &[TO_VIEW.0],
        rules: &[],
    },
    RoleSpec {
        name: "system:aggregate-to-admin",
        namespace: "",
        labels: &[BOOTSTRAPPING, TO_ADMIN],
        aggregate_from: &[],
        rules: &[
            r(&["create"], AUTHORIZATION, &["localsubjectaccessreviews"]),
            r(READ_WRITE, RBAC, &["rolebindings", "roles"]),
        ],
    },
    RoleSpec {
        name: "system:aggregate-to-edit",
        namespace: "",
        labels: &[BOOTSTRAPPING, TO_EDIT],
        aggregate_from: &[],
        rules: &[
            r(&["impersonate"], CORE, &["serviceaccounts"]),
            // Read access to what lets a holder act beyond reading.
            r(
                READ,
                CORE,
                &[
                    "pods/attach",
                    "pods/proxy",
                    "pods/exec",
                    "pods/portforward",
                    "secrets",
                    "services/proxy",
                ],
            ),
            r(
                WRITE,
                CORE,
                &[
                    "pods",
                    "pods/attach",
                    "pods/proxy",
                    "pods/exec",
                    "pods/portforward",
                ],
            ),
            r(&["create"], CORE, &["pods/eviction"]),
            r(
                WRITE,
                CORE,
                &[
                    "replicationcontrollers",
                    "replicationcontrollers/scale",
                    "serviceaccounts",
                    "services",
                    "services/proxy",
                    "persistentvolumeclaims",
                    "configmaps",
                    "secrets",
                    "events",
                ],
            ),
            r(&["create"], CORE, &["serviceaccounts/token"]),
            r(
                WRITE,
                APPS,
                &[
                    "statefulsets",
                    "statefulsets/scale",
                    "daemonsets",
                    "deployments",
                    "deployments/scale",
                    "deployments/rollback",
                    "replicasets",
                    "replicasets/scale",
                ],
            ),
            r(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
            r(WRITE, BATCH, &["jobs", "cronjobs"]),
            r(
                WRITE,
                EXTENSIONS,
                &[
                    "daemonsets",
                    "deployments",
                    "deployments/scale",
                    "deployments/rollback",
                    "ingresses",
                    "replicasets",
                    "replicasets/scale",
                    "replicationcontrollers/scale",
                    "networkpolicies",
                ],
            ),
            r(WRITE, POLICY, &["poddisruptionbudgets"]),
            r(WRITE, NETWORKING, &["networkpolicies", "ingresses"]),
            r(WRITE, COORDINATION, &["leases"]),
        ],
    },
    // What metrics-server's manifest adds for its aggregated API; `metrics.k8s.io` is served
    // by the apiserver here, so the role is part of the bootstrap policy.
    RoleSpec {
        name: "system:aggregated-metrics-reader",
        namespace: "",
        labels: &[BOOTSTRAPPING, TO_ADMIN, TO_EDIT, TO_VIEW],
        aggregate_from: &[],
        rules: &[r(READ, &["metrics.k8s.io"], &["pods", "nodes"])],
    },
    RoleSpec {
        name: "system:aggregate-to-view",
        namespace: "",
        labels: &[BOOTSTRAPPING, TO_VIEW],
        aggregate_from: &[],
        rules: &[
            r(
                READ,
                CORE,
                &[
                    "pods",
                    "replicationcontrollers",
                    "replicationcontrollers/scale",
                    "serviceaccounts",
                    "services",
                    "services/status",
                    "endpoints",
                    "persistentvolumeclaims",
                    "persistentvolumeclaims/status",
                    "configmaps",
                ],
            ),
            r(
                READ,
                CORE,
                &[
                    "limitranges",
                    "resourcequotas",
                    "bindings",
                    "events",
                    "pods/status",
                    "resourcequotas/status",
                    "namespaces/status",
                    "replicationcontrollers/status",
                    "pods/log",
                ],
            ),
            r(READ, CORE, &["namespaces"]),
            r(READ, DISCOVERY, &["endpointslices"]),
            r(
                READ,
                APPS,
                &[
                    "controllerrevisions",
                    "statefulsets",
                    "statefulsets/status",
                    "statefulsets/scale",
                    "daemonsets",
                    "daemonsets/status",
                    "deployments",
                    "deployments/status",
                    "deployments/scale",
                    "replicasets",
                    "replicasets/status",
                    "replicasets/scale",
                ],
            ),
            r(
                READ,
                &["autoscaling"],
                &[
                    "horizontalpodautoscalers",
                    "horizontalpodautoscalers/status",
                ],
            ),
            r(
                READ,
                BATCH,
                &["jobs", "jobs/status", "cronjobs", "cronjobs/status"],
            ),
            r(
                READ,
                EXTENSIONS,
                &[
                    "daemonsets",
                    "daemonsets/status",
                    "deployments",
                    "deployments/scale",
                    "deployments/status",
                    "ingresses",
                    "ingresses/status",
                    "replicasets",
                    "replicasets/scale",
                    "replicasets/status",
                    "replicationcontrollers/scale",
                    "networkpolicies",
                ],
            ),
            r(
                READ,
                POLICY,
                &["poddisruptionbudgets", "poddisruptionbudgets/status"],
            ),
            r(
                READ,
                NETWORKING,
                &["networkpolicies", "ingresses", "ingresses/status"],
            ),
            r(READ, COORDINATION, &["leases"]),
        ],
    },
    cluster_role(
        "system:heapster",
        &[
            r(READ, CORE, &["events", "pods", "nodes", "namespaces"]),
            r(READ, EXTENSIONS, &["deployments"]),
        ],
    ),
    cluster_role(
        "system:node",
        &[
            r(&["create"], AUTHENTICATION, &["tokenreviews"]),
            r(
                &["create"],
                AUTHORIZATION,
                &["subjectaccessreviews", "localsubjectaccessreviews"],
            ),
            r(READ, CORE, &["services"]),
            r(&["create", "get", "list", "watch"], CORE, &["nodes"]),
            r(&["update", "patch"], CORE, &["nodes/status"]),
            r(&["update", "patch"], CORE, &["nodes"]),
            EVENTS,
            r(READ, CORE, &["pods"]),
            r(&["create", "delete"], CORE, &["pods"]),
            r(&["update", "patch"], CORE, &["pods/status"]),
            r(&["create"], CORE, &["pods/eviction"]),
            r(&["get"], CORE, &["secrets", "configmaps"]),
            r(
                &["get"],
                CORE,
                &["persistentvolumeclaims", "persistentvolumes"],
            ),
            r(&["get"], CORE, &["endpoints"]),
            r(
                &["create", "get", "list", "watch"],
                CERTIFICATES,
                &["certificatesigningrequests"],
            ),
            r(
                &["get", "create", "update", "patch", "delete"],
                COORDINATION,
                &["leases"],
            ),
            r(&["get"], STORAGE, &["volumeattachments"]),
            r(&["create"], CORE, &["serviceaccounts/token"]),
            r(
                &["get", "update", "patch"],
                CORE,
                &["persistentvolumeclaims/status"],
            ),
            r(READ, STORAGE, &["csidrivers"]),
            r(
                &["get", "create", "update", "patch", "delete"],
                STORAGE,
                &["csinodes"],
            ),
            r(READ, &["node.k8s.io"], &["runtimeclasses"]),
        ],
    ),
    cluster_role(
        "system:node-problem-detector",
        &[
            r(&["get"], CORE, &["nodes"]),
            r(&["patch"], CORE, &["nodes/status"]),
            EVENTS,
        ],
    ),
    cluster_role(
        "system:kubelet-api-admin",
        &[
            r(READ, CORE, &["nodes"]),
            r(&["proxy"], CORE, &["nodes"]),
            r(
                ALL,
                CORE,
                &[
                    "nodes/proxy",
                    "nodes/metrics",
                    "nodes/spec",
                    "nodes/stats",
                    "nodes/log",
                ],
            ),
        ],
    ),
    cluster_role(
        "system:node-bootstrapper",
        &[r(
            &["create", "get", "list", "watch"],
            CERTIFICATES,
            &["certificatesigningrequests"],
        )],
    ),
    cluster_role(
        "system:auth-delegator",
        &[
            r(&["create"], AUTHENTICATION, &["tokenreviews"]),
            r(&["create"], AUTHORIZATION, &["subjectaccessreviews"]),
        ],
    ),
    cluster_role(
        "system:kube-aggregator",
        &[r(READ, CORE, &["services", "endpoints"])],
    ),
    cluster_role(
        "system:kube-controller-manager",
        &[
            EVENTS,
            r(&["create"], COORDINATION, &["leases"]),
            named(
                &["get", "update"],
                COORDINATION,
                &["leases"],
                &["kube-controller-manager"],
            ),
            r(&["create"], CORE, &["secrets", "serviceaccounts"]),
            r(&["delete"], CORE, &["secrets"]),
            r(
                &["get"],
                CORE,
                &["namespaces", "secrets", "serviceaccounts"],
            ),
            r(&["update"], CORE, &["secrets", "serviceaccounts"]),
            r(&["create"], CORE, &["serviceaccounts/token"]),
            r(&["list", "watch"], ALL, ALL),
            r(&["create"], AUTHENTICATION, &["tokenreviews"]),
            r(&["create"], AUTHORIZATION, &["subjectaccessreviews"]),
        ],
    ),
    cluster_role(
        "system:kube-dns",
        &[r(&["list", "watch"], CORE, &["endpoints", "services"])],
    ),
    cluster_role(
        "system:persistent-volume-provisioner",
        &[
            r(
                &["get", "list", "watch", "create", "delete"],
                CORE,
                &["persistentvolumes"],
            ),
            r(
                &["get", "list", "watch", "update"],
                CORE,
                &["persistentvolumeclaims"],
            ),
            r(READ, STORAGE, &["storageclasses"]),
            r(&["watch"], CORE, &["events"]),
            EVENTS,
        ],
    ),
    cluster_role(
        "system:kube-scheduler",
        &[
            EVENTS,
            r(&["create"], COORDINATION, &["leases"]),
            named(
                &["get", "update"],
                COORDINATION,
                &["leases"],
                &["kube-scheduler"],
            ),
            r(READ, CORE, &["nodes"]),
            r(&["delete", "get", "list", "watch"], CORE, &["pods"]),
            r(&["create"], CORE, &["bindings", "pods/binding"]),
            r(&["patch", "update"], CORE, &["pods/status"]),
            r(READ, CORE, &["replicationcontrollers", "services"]),
            r(READ, APPS, &["replicasets", "statefulsets"]),
            r(READ, POLICY, &["poddisruptionbudgets"]),
            r(READ, CORE, &["persistentvolumeclaims", "persistentvolumes"]),
            r(&["create"], AUTHENTICATION, &["tokenreviews"]),
            r(&["create"], AUTHORIZATION, &["subjectaccessreviews"]),
            r(
                READ,
                STORAGE,
                &[
                    "csinodes",
                    "csidrivers",
                    "csistoragecapacities",
                    "storageclasses",
                ],
            ),
            r(READ, CORE, &["namespaces"]),
        ],
    ),
    cluster_role(
        "system:volume-scheduler",
        &[
            r(
                &["get", "list", "patch", "update", "watch"],
                CORE,
                &["persistentvolumes"],
            ),
            r(READ, STORAGE, &["storageclasses"]),
            r(
                &["get", "list", "patch", "update", "watch"],
                CORE,
                &["persistentvolumeclaims"],
            ),
        ],
    ),
    cluster_role(
        "system:node-proxier",
        &[
            r(&["list", "watch"], CORE, &["services", "endpoints"]),
            r(READ, CORE, &["nodes"]),
            EVENTS,
            r(&["list", "watch"], DISCOVERY, &["endpointslices"]),
        ],
    ),
    cluster_role(
        "system:service-account-issuer-discovery",
        &[urls(
            &["get"],
            &[
                "/.well-known/openid-configuration",
                "/.well-known/openid-configuration/",
                "/openid/v1/jwks",
                "/openid/v1/jwks/",
            ],
        )],
    ),
    cluster_role(
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        &[r(
            &["create"],
            CERTIFICATES,
            &["certificatesigningrequests/nodeclient"],
        )],
    ),
    cluster_role(
        "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        &[r(
            &["create"],
            CERTIFICATES,
            &["certificatesigningrequests/selfnodeclient"],
        )],
    ),
    cluster_role(
        "system:certificates.k8s.io:kube-apiserver-client-approver",
        &[named(
            &["approve"],
            CERTIFICATES,
            &["signers"],
            &["kubernetes.io/kube-apiserver-client"],
        )],
    ),
    cluster_role(
        "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
        &[named(
            &["approve"],
            CERTIFICATES,
            &["signers"],
            &["kubernetes.io/kube-apiserver-client-kubelet"],
        )],
    ),
    cluster_role(
        "system:certificates.k8s.io:kubelet-serving-approver",
        &[named(
            &["approve"],
            CERTIFICATES,
            &["signers"],
            &["kubernetes.io/kubelet-serving"],
        )],
    ),
    cluster_role(
        "system:certificates.k8s.io:legacy-unknown-approver",
        &[named(
            &["approve"],
            CERTIFICATES,
            &["signers"],
            &["kubernetes.io/legacy-unknown"],
        )],
    ),
];

/// A ClusterRoleBinding named after its ClusterRole.
const fn cluster_binding(name: &'static str, subjects: &'static [Who]) -> BindingSpec {
    binding_to(name, name, subjects)
}

pub const CLUSTER_ROLE_BINDINGS: &[BindingSpec] = &[
    cluster_binding("cluster-admin", &[Who::Group("system:masters")]),
    cluster_binding("system:monitoring", &[Who::Group("system:monitoring")]),
    cluster_binding("system:discovery", &[Who::Group("system:authenticated")]),
    cluster_binding("system:basic-user", &[Who::Group("system:authenticated")]),
    cluster_binding(
        "system:public-info-viewer",
        &[
            Who::Group("system:authenticated"),
            Who::Group("system:unauthenticated"),
        ],
    ),
    cluster_binding("system:node-proxier", &[Who::User("system:kube-proxy")]),
    cluster_binding(
        "system:kube-controller-manager",
        &[Who::User("system:kube-controller-manager")],
    ),
    cluster_binding(
        "system:kube-dns",
        &[Who::ServiceAccount("kube-system", "kube-dns")],
    ),
    cluster_binding(
        "system:kube-scheduler",
        &[Who::User("system:kube-scheduler")],
    ),
    cluster_binding(
        "system:volume-scheduler",
        &[Who::User("system:kube-scheduler")],
    ),
    // Without subjects, as upstream: the Node authorizer applies the role's rules to nodes
    // itself, after confining what its graph governs (see `authz::node`).
    cluster_binding("system:node", &[]),
    cluster_binding(
        "system:service-account-issuer-discovery",
        &[Who::Group("system:serviceaccounts")],
    ),
    // kubeadm: the admin kubeconfig's group.
    binding_to(
        "kubeadm:cluster-admins",
        "cluster-admin",
        &[Who::Group("kubeadm:cluster-admins")],
    ),
    // kubeadm: nodes joining with a bootstrap token may ask for their client certificate, and
    // the csrapproving controller approves it; nodes may renew their own.
    binding_to(
        "kubeadm:kubelet-bootstrap",
        "system:node-bootstrapper",
        &[Who::Group(BOOTSTRAP_NODE_GROUP)],
    ),
    binding_to(
        "kubeadm:node-autoapprove-bootstrap",
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        &[Who::Group(BOOTSTRAP_NODE_GROUP)],
    ),
    binding_to(
        "kubeadm:node-autoapprove-certificate-rotation",
        "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        &[Who::Group("system:nodes")],
    ),
    // ekube's node agent runs the service proxy beside the kubelet, with the node's
    // credentials: nodes read what kube-proxy reads (Services, EndpointSlices, Nodes) and
    // nothing more. kubeadm gives kube-proxy a ServiceAccount of its own instead, because it
    // runs as a DaemonSet; ekube's proxy is no pod.
    binding_to(
        "ekube:node-proxier",
        "system:node-proxier",
        &[Who::Group("system:nodes")],
    ),
    // The apiserver's client certificate for kubelets (`apiserver-kubelet-client.crt`): the
    // kubelets ask the apiserver (SubjectAccessReview) whether it may proxy logs, exec and
    // port-forward; this grants exactly the kubelet API.
    binding_to(
        "kube-apiserver-kubelet-api-admin",
        "system:kubelet-api-admin",
        &[Who::User(KUBELET_CLIENT_USER)],
    ),
];

/// The group kubeadm's default bootstrap token puts joining nodes in.
pub const BOOTSTRAP_NODE_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
/// The user (CN) of the apiserver's client certificate for kubelets.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

/// A ClusterRoleBinding named differently from its ClusterRole.
const fn binding_to(
    name: &'static str,
    role: &'static str,
    subjects: &'static [Who],
) -> BindingSpec {
    BindingSpec {
        name,
        namespace: "",
        role_kind: "ClusterRole",
        role,
        subjects,
    }
}
