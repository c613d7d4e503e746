//! Roles and RoleBindings in `kube-system` and `kube-public` (`namespace_policy.go`, and
//! kubeadm's `cluster-info` reader).

use super::*;

const fn role(namespace: &'static str, name: &'static str, rules: &'static [R]) -> RoleSpec {
    RoleSpec {
        name,
        namespace,
        labels: &[BOOTSTRAPPING],
        aggregate_from: &[],
        rules,
    }
}

/// Roles in `kube-system` and `kube-public` (upstream's `namespace_policy.go`, plus kubeadm's
/// `cluster-info` reader).
pub const NAMESPACE_ROLES: &[RoleSpec] = &[
    role(
        "kube-system",
        "extension-apiserver-authentication-reader",
        &[named(
            READ,
            CORE,
            &["configmaps"],
            &["extension-apiserver-authentication"],
        )],
    ),
    role(
        "kube-system",
        "system::leader-locking-kube-controller-manager",
        &[
            r(&["watch"], CORE, &["configmaps"]),
            named(
                &["get", "update"],
                CORE,
                &["configmaps"],
                &["kube-controller-manager"],
            ),
        ],
    ),
    role(
        "kube-system",
        "system::leader-locking-kube-scheduler",
        &[
            r(&["watch"], CORE, &["configmaps"]),
            named(
                &["get", "update"],
                CORE,
                &["configmaps"],
                &["kube-scheduler"],
            ),
        ],
    ),
    role(
        "kube-system",
        "system:controller:bootstrap-signer",
        &[r(READ, CORE, &["secrets"])],
    ),
    role(
        "kube-system",
        "system:controller:token-cleaner",
        &[
            r(&["delete", "get", "list", "watch"], CORE, &["secrets"]),
            EVENTS,
        ],
    ),
    role(
        "kube-public",
        "system:controller:bootstrap-signer",
        &[
            r(READ, CORE, &["configmaps"]),
            named(&["update"], CORE, &["configmaps"], &["cluster-info"]),
            EVENTS,
        ],
    ),
    RoleSpec {
        name: "kubeadm:bootstrap-signer-clusterinfo",
        namespace: "kube-public",
        labels: &[],
        aggregate_from: &[],
        rules: &[named(&["get"], CORE, &["configmaps"], &["cluster-info"])],
    },
];

const fn role_binding(
    namespace: &'static str,
    name: &'static str,
    role: &'static str,
    subjects: &'static [Who],
) -> BindingSpec {
    BindingSpec {
        name,
        namespace,
        role_kind: "Role",
        role,
        subjects,
    }
}

pub const NAMESPACE_ROLE_BINDINGS: &[BindingSpec] = &[
    role_binding(
        "kube-system",
        "system::extension-apiserver-authentication-reader",
        "extension-apiserver-authentication-reader",
        &[
            Who::User("system:kube-controller-manager"),
            Who::User("system:kube-scheduler"),
        ],
    ),
    role_binding(
        "kube-system",
        "system::leader-locking-kube-controller-manager",
        "system::leader-locking-kube-controller-manager",
        &[
            Who::User("system:kube-controller-manager"),
            Who::ServiceAccount("kube-system", "kube-controller-manager"),
        ],
    ),
    role_binding(
        "kube-system",
        "system::leader-locking-kube-scheduler",
        "system::leader-locking-kube-scheduler",
        &[
            Who::User("system:kube-scheduler"),
            Who::ServiceAccount("kube-system", "kube-scheduler"),
        ],
    ),
    role_binding(
        "kube-system",
        "system:controller:bootstrap-signer",
        "system:controller:bootstrap-signer",
        &[Who::ServiceAccount("kube-system", "bootstrap-signer")],
    ),
    role_binding(
        "kube-system",
        "system:controller:token-cleaner",
        "system:controller:token-cleaner",
        &[Who::ServiceAccount("kube-system", "token-cleaner")],
    ),
    role_binding(
        "kube-public",
        "system:controller:bootstrap-signer",
        "system:controller:bootstrap-signer",
        &[Who::ServiceAccount("kube-system", "bootstrap-signer")],
    ),
    role_binding(
        "kube-public",
        "kubeadm:bootstrap-signer-clusterinfo",
        "kubeadm:bootstrap-signer-clusterinfo",
        &[Who::User("system:anonymous")],
    ),
];
