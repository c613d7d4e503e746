//! Upstream's per-controller roles (`controller_policy.go`).

use super::*;

/// Upstream's per-controller roles (`system:controller:<name>`) for the controllers ekube runs,
/// each bound to the ServiceAccount `kube-system/<name>`.
pub const CONTROLLER_ROLES: &[RoleSpec] = &[
    cluster_role(
        "system:controller:clusterrole-aggregation-controller",
        &[r(
            &["escalate", "get", "list", "watch", "update", "patch"],
            RBAC,
            &["clusterroles"],
        )],
    ),
    cluster_role(
        "system:controller:cronjob-controller",
        &[
            r(&["get", "list", "watch", "update"], BATCH, &["cronjobs"]),
            r(
                &[
                    "get", "list", "watch", "create", "update", "delete", "patch",
                ],
                BATCH,
                &["jobs"],
            ),
            r(&["update"], BATCH, &["cronjobs/status"]),
            r(&["update"], BATCH, &["cronjobs/finalizers"]),
            r(&["list", "delete"], CORE, &["pods"]),
            EVENTS,
        ],
    ),
    cluster_role(
        "system:controller:daemon-set-controller",
        &[
            r(READ, &["extensions", "apps"], &["daemonsets"]),
            r(&["update"], &["extensions", "apps"], &["daemonsets/status"]),
            r(
                &["update"],
                &["extensions", "apps"],
                &["daemonsets/finalizers"],
            ),
            r(&["list", "watch"], CORE, &["nodes"]),
            r(
                &["list", "watch", "create", "delete", "patch"],
                CORE,
                &["pods"],
            ),
            r(&["create"], CORE, &["pods/binding"]),
            r(
                &[
                    "get", "list", "watch", "create", "delete", "update", "patch",
                ],
                APPS,
                &["controllerrevisions"],
            ),
            EVENTS,
        ],
    ),
    cluster_role(
        "system:controller:deployment-controller",
        &[
            r(
                &["get", "list", "watch", "update"],
                &["extensions", "apps"],
                &["deployments"],
            ),
            r(
                &["update"],
                &["extensions", "apps"],
                &["deployments/status"],
            ),
            r(
                &["update"],
                &["extensions", "apps"],
                &["deployments/finalizers"],
            ),
            r(
                &[
                    "get", "list", "watch", "create", "update", "patch", "delete",
                ],
                &["extensions", "apps"],
                &["replicasets"],
            ),
            r(&["get", "list", "watch", "update"], CORE, &["pods"]),
            EVENTS,
        ],
    ),
    cluster_role(
        "system:controller:disruption-controller",
        &[
            r(READ, &["extensions", "apps"], &["deployments"]),
            r(READ, &["apps", "extensions"], &["replicasets"]),
            r(READ, CORE, &["replicationcontrollers"]),
            r(READ, POLICY, &["poddisruptionbudgets"]),
            r(READ, APPS, &["statefulsets"]),
            r(&["update"], POLICY, &["poddisruptionbudgets/status"]),
            r(&["get"], ALL, &["*/scale"]),
            EVENTS,
        ],
    ),
    cluster_role(
        "system:controller:endpoint-controller",
        &[
            r(READ, CORE, &["services", "pods"]),
            r(
                &["get", "list", "create", "update", "delete"],
                CORE,
                &["endpoints"],
            ),
            r(&["create"], CORE, &["endpoints/restricted"]),
            EVENTS,
        ],
    ),
    cluster_role(
        "system:controller:endpointslice-controller",
        &[
            r(READ, CORE, &["services", "pods", "nodes"]),
            r(&["update"], CORE, &["services/finalizers"]),
            r(
                &["get", "list", "create", "update", "delete"],
                DISCOVERY,
                &["endpointslices"],
            ),
            EVENTS,
        ],
    ),
    cluster_role(
        "system:controller:generic-garbage-collector",
        &[r(
            &["get", "list", "watch", "patch", "update", "delete"],
            ALL,
            ALL,
        )],
    ),
    cluster_role(
        "system:controller:horizontal-pod-autoscaler",
        &[
            r(READ, &["autoscaling"], &["horizontalpodautoscalers"]),
            r(
                &["update"],
                &["autoscaling"],
                &["horizontalpodautoscalers/status"],
            ),
            r(&["get", "update"], ALL, &["*/scale"]),
            r(&["list"], CORE, &["pods"]),
            named(
                &["get"],
                CORE,
                &["services/proxy"],
                &["https:heapster:", "http:heapster:"],
            ),
            r(&["list"], &["metrics.k8s.io"], &["pods"]),
            r(&["get", "list"], &["custom.metrics.k8s.io"], ALL),
            r(&["get", "list"], &["external.metrics.k8s.io"], ALL),
            EVENTS,
        ],
    ),
    cluster_role(
        "system:controller:job-controller",
        &[
            r(
                &["get", "list", "watch", "update", "patch"],
                BATCH,
                &["jobs"],
            ),
            r(&["update"], BATCH, &["jobs/status"]),
            r(&["update"], BATCH, &["jobs/finalizers"]),
            r(
                &["list", "watch", "create", "delete", "patch"],
                CORE,
                &["pods"],
            ),
            EVENTS,
        ],
    ),
    cluster_role(
        "system:controller:namespace-controller",
        &[
            r(&["get", "list", "watch", "delete"], CORE, &["namespaces"]),
            r(
                &["update"],
                CORE,
                &["namespaces/finalize", "namespaces/status"],
            ),
            r(&["get", "list", "delete", "deletecollection"], ALL, ALL),
        ],
    ),
    cluster_role(
        "system:controller:node-controller",
        &[
            r(
                &["get", "list", "update", "delete", "patch"],
                CORE,
                &["nodes"],
            ),
            r(&["patch", "update"], CORE, &["nodes/status"]),
            r(&["update"], CORE, &["pods/status"]),
            r(&["list", "delete"], CORE, &["pods"]),
            EVENTS,
        ],
    ),
    cluster_role(
        "system:controller:persistent-volume-binder",
        &[
            r(
                &["get", "list", "watch", "update", "create", "delete"],
                CORE,
                &["persistentvolumes"],
            ),
            r(&["update"], CORE, &["persistentvolumes/status"]),
            r(
                &["get", "list", "watch", "update"],
                CORE,
                &["persistentvolumeclaims"],
            ),
            r(&["update"], CORE, &["persistentvolumeclaims/status"]),
            r(
                &["list", "watch", "get", "create", "delete"],
                CORE,
                &["pods"],
            ),
            r(READ, STORAGE, &["storageclasses"]),
            r(
                &["get", "create", "delete"],
                CORE,
                &["services", "endpoints"],
            ),
            r(&["get"], CORE, &["secrets"]),
            r(&["get", "list"], CORE, &["nodes"]),
            r(&["watch"], CORE, &["events"]),
            EVENTS,
        ],
    ),
    cluster_role(
        "system:controller:pod-garbage-collector",
        &[
            r(&["list", "watch", "delete"], CORE, &["pods"]),
            r(&["get", "list"], CORE, &["nodes"]),
            r(&["patch"], CORE, &["pods/status"]),
        ],
    ),
    cluster_role(
        "system:controller:pv-protection-controller",
        &[
            r(
                &["get", "list", "watch", "update"],
                CORE,
                &["persistentvolumes"],
            ),
            EVENTS,
        ],
    ),
    cluster_role(
        "system:controller:pvc-protection-controller",
        &[
            r(
                &["get", "list", "watch", "update"],
                CORE,
                &["persistentvolumeclaims"],
            ),
            r(&["list", "watch", "get"], CORE, &["pods"]),
            EVENTS,
        ],
    ),
    cluster_role(
        "system:controller:replicaset-controller",
        &[
            r(
                &["get", "list", "watch", "update"],
                &["extensions", "apps"],
                &["replicasets"],
            ),
            r(
                &["update"],
                &["extensions", "apps"],
                &["replicasets/status"],
            ),
            r(
                &["update"],
                &["extensions", "apps"],
                &["replicasets/finalizers"],
            ),
            r(
                &["list", "watch", "patch", "create", "delete"],
                CORE,
                &["pods"],
            ),
            EVENTS,
        ],
    ),
    cluster_role(
        "system:controller:replication-controller",
        &[
            r(
                &["get", "list", "watch", "update"],
                CORE,
                &["replicationcontrollers"],
            ),
            r(&["update"], CORE, &["replicationcontrollers/status"]),
            r(&["update"], CORE, &["replicationcontrollers/finalizers"]),
            r(
                &["list", "watch", "patch", "create", "delete"],
                CORE,
                &["pods"],
            ),
            EVENTS,
        ],
    ),
    cluster_role(
        "system:controller:resourcequota-controller",
        &[
            // It counts usage of anything a quota may limit.
            r(&["list", "watch"], ALL, ALL),
            r(&["update"], CORE, &["resourcequotas/status"]),
            EVENTS,
        ],
    ),
    cluster_role(
        "system:controller:root-ca-cert-publisher",
        &[r(&["create", "update"], CORE, &["configmaps"]), EVENTS],
    ),
    cluster_role(
        "system:controller:service-account-controller",
        &[r(&["create"], CORE, &["serviceaccounts"]), EVENTS],
    ),
    cluster_role(
        "system:controller:statefulset-controller",
        &[
            r(&["list", "watch"], CORE, &["pods"]),
            r(READ, APPS, &["statefulsets"]),
            r(&["update"], APPS, &["statefulsets/status"]),
            r(&["update"], APPS, &["statefulsets/finalizers"]),
            r(
                &["get", "create", "delete", "update", "patch"],
                CORE,
                &["pods"],
            ),
            r(
                &[
                    "get", "create", "delete", "update", "patch", "list", "watch",
                ],
                APPS,
                &["controllerrevisions"],
            ),
            r(&["get", "create"], CORE, &["persistentvolumeclaims"]),
            r(&["update", "delete"], CORE, &["persistentvolumeclaims"]),
            EVENTS,
        ],
    ),
    cluster_role(
        "system:controller:ttl-after-finished-controller",
        &[
            r(&["get", "list", "watch", "delete"], BATCH, &["jobs"]),
            EVENTS,
        ],
    ),
    cluster_role(
        "system:controller:certificate-controller",
        &[
            r(
                &["get", "list", "watch", "delete"],
                CERTIFICATES,
                &["certificatesigningrequests"],
            ),
            r(
                &["update"],
                CERTIFICATES,
                &[
                    "certificatesigningrequests/status",
                    "certificatesigningrequests/approval",
                ],
            ),
            named(
                &["approve"],
                CERTIFICATES,
                &["signers"],
                &[
                    "kubernetes.io/kube-apiserver-client-kubelet",
                    "kubernetes.io/kube-apiserver-client",
                    "kubernetes.io/legacy-unknown",
                    "kubernetes.io/kubelet-serving",
                ],
            ),
            named(
                &["sign"],
                CERTIFICATES,
                &["signers"],
                &[
                    "kubernetes.io/kube-apiserver-client-kubelet",
                    "kubernetes.io/kube-apiserver-client",
                    "kubernetes.io/legacy-unknown",
                    "kubernetes.io/kubelet-serving",
                ],
            ),
            r(&["create"], AUTHORIZATION, &["subjectaccessreviews"]),
            EVENTS,
        ],
    ),
];
