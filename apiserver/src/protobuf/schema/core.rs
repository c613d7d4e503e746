//! core/v1 kinds other than Pod: ConfigMap, Secret, Namespace, ServiceAccount, Service and
//! ResourceQuota, with the object references that pods and service accounts use.

use super::meta::{CONDITION, OBJECT_META};
use crate::protobuf::{Field, Message, Ty};

pub(super) static CLIENT_IP_CONFIG: Message = Message::new(
    "ClientIPConfig",
    &[Field::one(1, "timeoutSeconds", Ty::Int32).keep()],
);
pub(super) static CONFIG_MAP: Message = Message::new(
    "ConfigMap",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(4, "immutable", Ty::Bool).keep(),
        Field::map(2, "data", Ty::Str),
        Field::map(3, "binaryData", Ty::Bytes),
    ],
);
pub(super) static LOAD_BALANCER_INGRESS: Message = Message::new(
    "LoadBalancerIngress",
    &[
        Field::one(1, "ip", Ty::Str),
        Field::one(2, "hostname", Ty::Str),
        Field::one(3, "ipMode", Ty::Str).keep(),
        Field::rep(4, "ports", Ty::Msg(&PORT_STATUS)),
    ],
);
pub(super) static LOAD_BALANCER_STATUS: Message = Message::new(
    "LoadBalancerStatus",
    &[Field::rep(1, "ingress", Ty::Msg(&LOAD_BALANCER_INGRESS))],
);
pub(super) static LOCAL_OBJECT_REFERENCE: Message =
    Message::new("LocalObjectReference", &[Field::one(1, "name", Ty::Str)]);
pub(super) static NAMESPACE: Message = Message::new(
    "Namespace",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&NAMESPACE_SPEC)),
        Field::one(3, "status", Ty::Msg(&NAMESPACE_STATUS)),
    ],
);
pub(super) static NAMESPACE_CONDITION: Message = Message::new(
    "NamespaceCondition",
    &[
        Field::one(1, "type", Ty::Str).keep(),
        Field::one(2, "status", Ty::Str).keep(),
        Field::one(4, "lastTransitionTime", Ty::Time),
        Field::one(5, "reason", Ty::Str),
        Field::one(6, "message", Ty::Str),
    ],
);
pub(super) static NAMESPACE_SPEC: Message =
    Message::new("NamespaceSpec", &[Field::rep(1, "finalizers", Ty::Str)]);
pub(super) static NAMESPACE_STATUS: Message = Message::new(
    "NamespaceStatus",
    &[
        Field::one(1, "phase", Ty::Str),
        Field::rep(2, "conditions", Ty::Msg(&NAMESPACE_CONDITION)),
    ],
);
pub(super) static OBJECT_REFERENCE: Message = Message::new(
    "ObjectReference",
    &[
        Field::one(1, "kind", Ty::Str),
        Field::one(2, "namespace", Ty::Str),
        Field::one(3, "name", Ty::Str),
        Field::one(4, "uid", Ty::Str),
        Field::one(5, "apiVersion", Ty::Str),
        Field::one(6, "resourceVersion", Ty::Str),
        Field::one(7, "fieldPath", Ty::Str),
    ],
);
pub(super) static PORT_STATUS: Message = Message::new(
    "PortStatus",
    &[
        Field::one(1, "port", Ty::Int32).keep(),
        Field::one(2, "protocol", Ty::Str).keep(),
        Field::one(3, "error", Ty::Str).keep(),
    ],
);
pub(super) static RESOURCE_QUOTA: Message = Message::new(
    "ResourceQuota",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&RESOURCE_QUOTA_SPEC)),
        Field::one(3, "status", Ty::Msg(&RESOURCE_QUOTA_STATUS)),
    ],
);
pub(super) static RESOURCE_QUOTA_SPEC: Message = Message::new(
    "ResourceQuotaSpec",
    &[
        Field::map(1, "hard", Ty::Quantity),
        Field::rep(2, "scopes", Ty::Str),
        Field::one(3, "scopeSelector", Ty::Msg(&SCOPE_SELECTOR)),
    ],
);
pub(super) static RESOURCE_QUOTA_STATUS: Message = Message::new(
    "ResourceQuotaStatus",
    &[
        Field::map(1, "hard", Ty::Quantity),
        Field::map(2, "used", Ty::Quantity),
    ],
);
pub(super) static SCOPE_SELECTOR: Message = Message::new(
    "ScopeSelector",
    &[Field::rep(
        1,
        "matchExpressions",
        Ty::Msg(&SCOPED_RESOURCE_SELECTOR_REQUIREMENT),
    )],
);
pub(super) static SCOPED_RESOURCE_SELECTOR_REQUIREMENT: Message = Message::new(
    "ScopedResourceSelectorRequirement",
    &[
        Field::one(1, "scopeName", Ty::Str).keep(),
        Field::one(2, "operator", Ty::Str).keep(),
        Field::rep(3, "values", Ty::Str),
    ],
);
pub(super) static SECRET: Message = Message::new(
    "Secret",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(5, "immutable", Ty::Bool).keep(),
        Field::map(2, "data", Ty::Bytes),
        Field::map(4, "stringData", Ty::Str),
        Field::one(3, "type", Ty::Str),
    ],
);
pub(super) static SERVICE: Message = Message::new(
    "Service",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&SERVICE_SPEC)),
        Field::one(3, "status", Ty::Msg(&SERVICE_STATUS)),
    ],
);
pub(super) static SERVICE_ACCOUNT: Message = Message::new(
    "ServiceAccount",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::rep(2, "secrets", Ty::Msg(&OBJECT_REFERENCE)),
        Field::rep(3, "imagePullSecrets", Ty::Msg(&LOCAL_OBJECT_REFERENCE)),
        Field::one(4, "automountServiceAccountToken", Ty::Bool).keep(),
    ],
);
pub(super) static SERVICE_PORT: Message = Message::new(
    "ServicePort",
    &[
        Field::one(1, "name", Ty::Str),
        Field::one(2, "protocol", Ty::Str),
        Field::one(6, "appProtocol", Ty::Str).keep(),
        Field::one(3, "port", Ty::Int32).keep(),
        Field::one(4, "targetPort", Ty::IntOrString),
        Field::one(5, "nodePort", Ty::Int32),
    ],
);
pub(super) static SERVICE_SPEC: Message = Message::new(
    "ServiceSpec",
    &[
        Field::rep(1, "ports", Ty::Msg(&SERVICE_PORT)),
        Field::map(2, "selector", Ty::Str),
        Field::one(3, "clusterIP", Ty::Str),
        Field::rep(18, "clusterIPs", Ty::Str),
        Field::one(4, "type", Ty::Str),
        Field::rep(5, "externalIPs", Ty::Str),
        Field::one(7, "sessionAffinity", Ty::Str),
        Field::one(8, "loadBalancerIP", Ty::Str),
        Field::rep(9, "loadBalancerSourceRanges", Ty::Str),
        Field::one(10, "externalName", Ty::Str),
        Field::one(11, "externalTrafficPolicy", Ty::Str),
        Field::one(12, "healthCheckNodePort", Ty::Int32),
        Field::one(13, "publishNotReadyAddresses", Ty::Bool),
        Field::one(
            14,
            "sessionAffinityConfig",
            Ty::Msg(&SESSION_AFFINITY_CONFIG),
        ),
        Field::rep(19, "ipFamilies", Ty::Str),
        Field::one(17, "ipFamilyPolicy", Ty::Str).keep(),
        Field::one(20, "allocateLoadBalancerNodePorts", Ty::Bool).keep(),
        Field::one(21, "loadBalancerClass", Ty::Str).keep(),
        Field::one(22, "internalTrafficPolicy", Ty::Str).keep(),
        Field::one(23, "trafficDistribution", Ty::Str).keep(),
    ],
);
pub(super) static SERVICE_STATUS: Message = Message::new(
    "ServiceStatus",
    &[
        Field::one(1, "loadBalancer", Ty::Msg(&LOAD_BALANCER_STATUS)),
        Field::rep(2, "conditions", Ty::Msg(&CONDITION)),
    ],
);
pub(super) static SESSION_AFFINITY_CONFIG: Message = Message::new(
    "SessionAffinityConfig",
    &[Field::one(1, "clientIP", Ty::Msg(&CLIENT_IP_CONFIG))],
);
