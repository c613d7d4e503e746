//! core/v1 Pod: the pod, its spec and status, the pod template that workloads embed, and the
//! scheduling constraints a spec carries (affinity, tolerations, topology spread). Containers and
//! volumes have their own modules.

use super::{
    container::{
        APP_ARMOR_PROFILE, CONTAINER, RESOURCE_REQUIREMENTS, SE_LINUX_OPTIONS, SECCOMP_PROFILE,
    },
    core::LOCAL_OBJECT_REFERENCE,
    meta::{LABEL_SELECTOR, OBJECT_META},
    volume::VOLUME,
};
use crate::protobuf::{Field, Message, Ty};

pub(super) static AFFINITY: Message = Message::new(
    "Affinity",
    &[
        Field::one(1, "nodeAffinity", Ty::Msg(&NODE_AFFINITY)),
        Field::one(2, "podAffinity", Ty::Msg(&POD_AFFINITY)),
        Field::one(3, "podAntiAffinity", Ty::Msg(&POD_ANTI_AFFINITY)),
    ],
);
pub(super) static HOST_ALIAS: Message = Message::new(
    "HostAlias",
    &[
        Field::one(1, "ip", Ty::Str).keep(),
        Field::rep(2, "hostnames", Ty::Str),
    ],
);
pub(super) static HOST_IP: Message = Message::new("HostIP", &[Field::one(1, "ip", Ty::Str).keep()]);
pub(super) static NODE_AFFINITY: Message = Message::new(
    "NodeAffinity",
    &[
        Field::one(
            1,
            "requiredDuringSchedulingIgnoredDuringExecution",
            Ty::Msg(&NODE_SELECTOR),
        ),
        Field::rep(
            2,
            "preferredDuringSchedulingIgnoredDuringExecution",
            Ty::Msg(&PREFERRED_SCHEDULING_TERM),
        ),
    ],
);
pub(super) static NODE_SELECTOR: Message = Message::new(
    "NodeSelector",
    &[Field::rep(1, "nodeSelectorTerms", Ty::Msg(&NODE_SELECTOR_TERM)).keep()],
);
pub(super) static NODE_SELECTOR_REQUIREMENT: Message = Message::new(
    "NodeSelectorRequirement",
    &[
        Field::one(1, "key", Ty::Str).keep(),
        Field::one(2, "operator", Ty::Str).keep(),
        Field::rep(3, "values", Ty::Str),
    ],
);
pub(super) static NODE_SELECTOR_TERM: Message = Message::new(
    "NodeSelectorTerm",
    &[
        Field::rep(1, "matchExpressions", Ty::Msg(&NODE_SELECTOR_REQUIREMENT)),
        Field::rep(2, "matchFields", Ty::Msg(&NODE_SELECTOR_REQUIREMENT)),
    ],
);
pub(super) static POD: Message = Message::new(
    "Pod",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&POD_SPEC)),
        Field::one(3, "status", Ty::Msg(&POD_STATUS)),
    ],
);
pub(super) static POD_AFFINITY: Message = Message::new(
    "PodAffinity",
    &[
        Field::rep(
            1,
            "requiredDuringSchedulingIgnoredDuringExecution",
            Ty::Msg(&POD_AFFINITY_TERM),
        ),
        Field::rep(
            2,
            "preferredDuringSchedulingIgnoredDuringExecution",
            Ty::Msg(&WEIGHTED_POD_AFFINITY_TERM),
        ),
    ],
);
pub(super) static POD_AFFINITY_TERM: Message = Message::new(
    "PodAffinityTerm",
    &[
        Field::one(1, "labelSelector", Ty::Msg(&LABEL_SELECTOR)),
        Field::rep(2, "namespaces", Ty::Str),
        Field::one(3, "topologyKey", Ty::Str).keep(),
        Field::one(4, "namespaceSelector", Ty::Msg(&LABEL_SELECTOR)),
        Field::rep(5, "matchLabelKeys", Ty::Str),
        Field::rep(6, "mismatchLabelKeys", Ty::Str),
    ],
);
pub(super) static POD_ANTI_AFFINITY: Message = Message::new(
    "PodAntiAffinity",
    &[
        Field::rep(
            1,
            "requiredDuringSchedulingIgnoredDuringExecution",
            Ty::Msg(&POD_AFFINITY_TERM),
        ),
        Field::rep(
            2,
            "preferredDuringSchedulingIgnoredDuringExecution",
            Ty::Msg(&WEIGHTED_POD_AFFINITY_TERM),
        ),
    ],
);
pub(super) static POD_CONDITION: Message = Message::new(
    "PodCondition",
    &[
        Field::one(1, "type", Ty::Str).keep(),
        Field::one(7, "observedGeneration", Ty::Int64),
        Field::one(2, "status", Ty::Str).keep(),
        Field::one(3, "lastProbeTime", Ty::Time),
        Field::one(4, "lastTransitionTime", Ty::Time),
        Field::one(5, "reason", Ty::Str),
        Field::one(6, "message", Ty::Str),
    ],
);
pub(super) static POD_DNS_CONFIG: Message = Message::new(
    "PodDNSConfig",
    &[
        Field::rep(1, "nameservers", Ty::Str),
        Field::rep(2, "searches", Ty::Str),
        Field::rep(3, "options", Ty::Msg(&POD_DNS_CONFIG_OPTION)),
    ],
);
pub(super) static POD_DNS_CONFIG_OPTION: Message = Message::new(
    "PodDNSConfigOption",
    &[
        Field::one(1, "name", Ty::Str),
        Field::one(2, "value", Ty::Str).keep(),
    ],
);
pub(super) static POD_IP: Message = Message::new("PodIP", &[Field::one(1, "ip", Ty::Str).keep()]);
pub(super) static POD_OS: Message = Message::new("PodOS", &[Field::one(1, "name", Ty::Str).keep()]);
pub(super) static POD_READINESS_GATE: Message = Message::new(
    "PodReadinessGate",
    &[Field::one(1, "conditionType", Ty::Str).keep()],
);
// Not covered: windowsOptions.
pub(super) static POD_SECURITY_CONTEXT: Message = Message::new(
    "PodSecurityContext",
    &[
        Field::one(1, "seLinuxOptions", Ty::Msg(&SE_LINUX_OPTIONS)),
        Field::one(2, "runAsUser", Ty::Int64).keep(),
        Field::one(6, "runAsGroup", Ty::Int64).keep(),
        Field::one(3, "runAsNonRoot", Ty::Bool).keep(),
        Field::rep(4, "supplementalGroups", Ty::Int64),
        Field::one(12, "supplementalGroupsPolicy", Ty::Str).keep(),
        Field::one(5, "fsGroup", Ty::Int64).keep(),
        Field::rep(7, "sysctls", Ty::Msg(&SYSCTL)),
        Field::one(9, "fsGroupChangePolicy", Ty::Str).keep(),
        Field::one(10, "seccompProfile", Ty::Msg(&SECCOMP_PROFILE)),
        Field::one(11, "appArmorProfile", Ty::Msg(&APP_ARMOR_PROFILE)),
        Field::one(13, "seLinuxChangePolicy", Ty::Str).keep(),
    ],
);
// Not covered: ephemeralContainers, schedulingGates, resourceClaims, schedulingGroup,
// evictionResponders.
pub(super) static POD_SPEC: Message = Message::new(
    "PodSpec",
    &[
        Field::rep(1, "volumes", Ty::Msg(&VOLUME)),
        Field::rep(20, "initContainers", Ty::Msg(&CONTAINER)),
        Field::rep(2, "containers", Ty::Msg(&CONTAINER)).keep(),
        Field::one(3, "restartPolicy", Ty::Str),
        Field::one(4, "terminationGracePeriodSeconds", Ty::Int64).keep(),
        Field::one(5, "activeDeadlineSeconds", Ty::Int64).keep(),
        Field::one(6, "dnsPolicy", Ty::Str),
        Field::map(7, "nodeSelector", Ty::Str),
        Field::one(8, "serviceAccountName", Ty::Str),
        Field::one(9, "serviceAccount", Ty::Str),
        Field::one(21, "automountServiceAccountToken", Ty::Bool).keep(),
        Field::one(10, "nodeName", Ty::Str),
        Field::one(11, "hostNetwork", Ty::Bool),
        Field::one(12, "hostPID", Ty::Bool),
        Field::one(13, "hostIPC", Ty::Bool),
        Field::one(27, "shareProcessNamespace", Ty::Bool).keep(),
        Field::one(14, "securityContext", Ty::Msg(&POD_SECURITY_CONTEXT)),
        Field::rep(15, "imagePullSecrets", Ty::Msg(&LOCAL_OBJECT_REFERENCE)),
        Field::one(16, "hostname", Ty::Str),
        Field::one(17, "subdomain", Ty::Str),
        Field::one(18, "affinity", Ty::Msg(&AFFINITY)),
        Field::one(19, "schedulerName", Ty::Str),
        Field::rep(22, "tolerations", Ty::Msg(&TOLERATION)),
        Field::rep(23, "hostAliases", Ty::Msg(&HOST_ALIAS)),
        Field::one(24, "priorityClassName", Ty::Str),
        Field::one(25, "priority", Ty::Int32).keep(),
        Field::one(26, "dnsConfig", Ty::Msg(&POD_DNS_CONFIG)),
        Field::rep(28, "readinessGates", Ty::Msg(&POD_READINESS_GATE)),
        Field::one(29, "runtimeClassName", Ty::Str).keep(),
        Field::one(30, "enableServiceLinks", Ty::Bool).keep(),
        Field::one(31, "preemptionPolicy", Ty::Str).keep(),
        Field::map(32, "overhead", Ty::Quantity),
        Field::rep(
            33,
            "topologySpreadConstraints",
            Ty::Msg(&TOPOLOGY_SPREAD_CONSTRAINT),
        ),
        Field::one(35, "setHostnameAsFQDN", Ty::Bool).keep(),
        Field::one(36, "os", Ty::Msg(&POD_OS)),
        Field::one(37, "hostUsers", Ty::Bool).keep(),
        Field::one(40, "resources", Ty::Msg(&RESOURCE_REQUIREMENTS)),
        Field::one(41, "hostnameOverride", Ty::Str).keep(),
    ],
);
// Not covered: initContainerStatuses, containerStatuses, ephemeralContainerStatuses,
// resourceClaimStatuses, extendedResourceClaimStatus, nodeAllocatableResourceClaimStatuses,
// volumeHealth.
pub(super) static POD_STATUS: Message = Message::new(
    "PodStatus",
    &[
        Field::one(17, "observedGeneration", Ty::Int64),
        Field::one(1, "phase", Ty::Str),
        Field::rep(2, "conditions", Ty::Msg(&POD_CONDITION)),
        Field::one(3, "message", Ty::Str),
        Field::one(4, "reason", Ty::Str),
        Field::one(11, "nominatedNodeName", Ty::Str),
        Field::one(5, "hostIP", Ty::Str),
        Field::rep(16, "hostIPs", Ty::Msg(&HOST_IP)),
        Field::one(6, "podIP", Ty::Str),
        Field::rep(12, "podIPs", Ty::Msg(&POD_IP)),
        Field::one(7, "startTime", Ty::Time),
        Field::one(9, "qosClass", Ty::Str),
        Field::one(14, "resize", Ty::Str),
        Field::map(19, "allocatedResources", Ty::Quantity),
        Field::one(20, "resources", Ty::Msg(&RESOURCE_REQUIREMENTS)),
    ],
);
pub(super) static POD_TEMPLATE_SPEC: Message = Message::new(
    "PodTemplateSpec",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&POD_SPEC)),
    ],
);
pub(super) static PREFERRED_SCHEDULING_TERM: Message = Message::new(
    "PreferredSchedulingTerm",
    &[
        Field::one(1, "weight", Ty::Int32).keep(),
        Field::one(2, "preference", Ty::Msg(&NODE_SELECTOR_TERM)),
    ],
);
pub(super) static SYSCTL: Message = Message::new(
    "Sysctl",
    &[
        Field::one(1, "name", Ty::Str).keep(),
        Field::one(2, "value", Ty::Str).keep(),
    ],
);
pub(super) static TOLERATION: Message = Message::new(
    "Toleration",
    &[
        Field::one(1, "key", Ty::Str),
        Field::one(2, "operator", Ty::Str),
        Field::one(3, "value", Ty::Str),
        Field::one(4, "effect", Ty::Str),
        Field::one(5, "tolerationSeconds", Ty::Int64).keep(),
    ],
);
pub(super) static TOPOLOGY_SPREAD_CONSTRAINT: Message = Message::new(
    "TopologySpreadConstraint",
    &[
        Field::one(1, "maxSkew", Ty::Int32).keep(),
        Field::one(2, "topologyKey", Ty::Str).keep(),
        Field::one(3, "whenUnsatisfiable", Ty::Str).keep(),
        Field::one(4, "labelSelector", Ty::Msg(&LABEL_SELECTOR)),
        Field::one(5, "minDomains", Ty::Int32).keep(),
        Field::one(6, "nodeAffinityPolicy", Ty::Str).keep(),
        Field::one(7, "nodeTaintsPolicy", Ty::Str).keep(),
        Field::rep(8, "matchLabelKeys", Ty::Str),
    ],
);
pub(super) static WEIGHTED_POD_AFFINITY_TERM: Message = Message::new(
    "WeightedPodAffinityTerm",
    &[
        Field::one(1, "weight", Ty::Int32).keep(),
        Field::one(2, "podAffinityTerm", Ty::Msg(&POD_AFFINITY_TERM)),
    ],
);
