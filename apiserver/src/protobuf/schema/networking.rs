//! networking.k8s.io/v1 Ingress.

use super::meta::OBJECT_META;
use crate::protobuf::{Field, Message, Ty};

pub(super) static HTTP_INGRESS_PATH: Message = Message::new(
    "HTTPIngressPath",
    &[
        Field::one(1, "path", Ty::Str),
        Field::one(3, "pathType", Ty::Str).keep(),
        Field::one(2, "backend", Ty::Msg(&INGRESS_BACKEND)),
    ],
);
pub(super) static HTTP_INGRESS_RULE_VALUE: Message = Message::new(
    "HTTPIngressRuleValue",
    &[Field::rep(1, "paths", Ty::Msg(&HTTP_INGRESS_PATH)).keep()],
);
pub(super) static INGRESS: Message = Message::new(
    "Ingress",
    &[
        Field::one(1, "metadata", Ty::Msg(&OBJECT_META)),
        Field::one(2, "spec", Ty::Msg(&INGRESS_SPEC)),
        Field::one(3, "status", Ty::Msg(&INGRESS_STATUS)),
    ],
);
// Not covered: resource.
pub(super) static INGRESS_BACKEND: Message = Message::new(
    "IngressBackend",
    &[Field::one(4, "service", Ty::Msg(&INGRESS_SERVICE_BACKEND))],
);
pub(super) static INGRESS_LOAD_BALANCER_INGRESS: Message = Message::new(
    "IngressLoadBalancerIngress",
    &[
        Field::one(1, "ip", Ty::Str),
        Field::one(2, "hostname", Ty::Str),
        Field::rep(4, "ports", Ty::Msg(&INGRESS_PORT_STATUS)),
    ],
);
pub(super) static INGRESS_LOAD_BALANCER_STATUS: Message = Message::new(
    "IngressLoadBalancerStatus",
    &[Field::rep(
        1,
        "ingress",
        Ty::Msg(&INGRESS_LOAD_BALANCER_INGRESS),
    )],
);
pub(super) static INGRESS_PORT_STATUS: Message = Message::new(
    "IngressPortStatus",
    &[
        Field::one(1, "port", Ty::Int32).keep(),
        Field::one(2, "protocol", Ty::Str).keep(),
        Field::one(3, "error", Ty::Str).keep(),
    ],
);
pub(super) static INGRESS_RULE: Message = Message::new(
    "IngressRule",
    &[
        Field::one(1, "host", Ty::Str),
        Field::one(2, "", Ty::Inline(&INGRESS_RULE_VALUE)),
    ],
);
pub(super) static INGRESS_RULE_VALUE: Message = Message::new(
    "IngressRuleValue",
    &[Field::one(1, "http", Ty::Msg(&HTTP_INGRESS_RULE_VALUE))],
);
pub(super) static INGRESS_SERVICE_BACKEND: Message = Message::new(
    "IngressServiceBackend",
    &[
        Field::one(1, "name", Ty::Str).keep(),
        Field::one(2, "port", Ty::Msg(&SERVICE_BACKEND_PORT)),
    ],
);
pub(super) static INGRESS_SPEC: Message = Message::new(
    "IngressSpec",
    &[
        Field::one(4, "ingressClassName", Ty::Str).keep(),
        Field::one(1, "defaultBackend", Ty::Msg(&INGRESS_BACKEND)),
        Field::rep(2, "tls", Ty::Msg(&INGRESS_TLS)),
        Field::rep(3, "rules", Ty::Msg(&INGRESS_RULE)),
    ],
);
pub(super) static INGRESS_STATUS: Message = Message::new(
    "IngressStatus",
    &[Field::one(
        1,
        "loadBalancer",
        Ty::Msg(&INGRESS_LOAD_BALANCER_STATUS),
    )],
);
pub(super) static INGRESS_TLS: Message = Message::new(
    "IngressTLS",
    &[
        Field::rep(1, "hosts", Ty::Str),
        Field::one(2, "secretName", Ty::Str),
    ],
);
pub(super) static SERVICE_BACKEND_PORT: Message = Message::new(
    "ServiceBackendPort",
    &[
        Field::one(1, "name", Ty::Str),
        Field::one(2, "number", Ty::Int32),
    ],
);
