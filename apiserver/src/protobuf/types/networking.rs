//! Conversions for networking.k8s.io/v1 and coordination.k8s.io/v1: ingresses and leases.

use crate::protobuf::convert::convert;

convert! { api::networking::v1 =>
    Ingress { metadata, spec, status }
    IngressSpec { default_backend, ingress_class_name: keep, rules, tls }
    IngressBackend { resource, service }
    IngressServiceBackend { name, port }
    ServiceBackendPort { name, number }
    IngressRule { host, ..ingress_rule_value { http } }
    HTTPIngressRuleValue as HttpIngressRuleValue { paths }
    HTTPIngressPath as HttpIngressPath { backend, path, path_type }
    IngressTLS as IngressTls { hosts, secret_name }
    IngressStatus { load_balancer }
    IngressLoadBalancerStatus { ingress }
    IngressLoadBalancerIngress { hostname, ip, ports }
    IngressPortStatus { error: keep, port, protocol }
}

convert! { api::coordination::v1 =>
    Lease { metadata, spec }
    LeaseSpec {
        acquire_time, holder_identity: keep, lease_duration_seconds: keep, lease_transitions: keep,
        preferred_holder: keep, renew_time, strategy: keep
    }
}
