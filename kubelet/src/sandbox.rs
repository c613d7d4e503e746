//! The CRI sandbox config of a pod, as upstream's `generatePodSandboxConfig` makes it: its
//! metadata, kernel hostname, resolver (`dns`), the namespaces it shares with the node
//! (`hostNetwork`, `hostPID`, `hostIPC`) and its cgroup parent.

use k8s_openapi::api::core::v1::Pod;

use super::dns::{self, PodName};
use super::worker::POD_UID_LABEL;
use crate::cri::{self, NamespaceMode};

/// A pod's sandbox config, and what was cut from its resolver to fit (for warning events).
pub struct Built {
    pub config: cri::PodSandboxConfig,
    pub dns_warnings: Vec<String>,
}

/// The sandbox metadata of `pod`.
pub fn metadata(pod: &Pod) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata {
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        namespace: pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        attempt: 0,
    }
}

/// Whether `pod` runs in the node's network namespace.
pub fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network) == Some(true)
}

/// The namespaces of `pod` as CRI modes: the node's where it asks for them, else the pod's
/// (network, IPC) or the container's own (PID, unless `shareProcessNamespace`).
pub fn namespace_options(pod: &Pod) -> cri::NamespaceOption {
    let spec = pod.spec.clone().unwrap_or_default();
    let mode = |host: Option<bool>, otherwise: NamespaceMode| {
        if host == Some(true) {
            NamespaceMode::Node
        } else {
            otherwise
        }
    };
    let own_pid = if spec.share_process_namespace == Some(true) {
        NamespaceMode::Pod
    } else {
        NamespaceMode::Container
    };
    cri::NamespaceOption {
        network: mode(spec.host_network, NamespaceMode::Pod) as i32,
        pid: mode(spec.host_pid, own_pid) as i32,
        ipc: mode(spec.host_ipc, NamespaceMode::Pod) as i32,
        target_id: String::new(),
        userns_options: None,
    }
}

/// What the kubelet's flags give every sandbox.
pub struct NodeInputs<'a> {
    pub dns: dns::Node<'a>,
    pub cgroup_root: &'a str,
    pub log_directory: String,
}

/// The sandbox config of `pod`; an error when its hostname or resolver cannot be formed.
pub fn config(pod: &Pod, node: &NodeInputs) -> Result<Built, String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let meta = metadata(pod);
    // A host-network pod has the node's hostname: the runtime keeps no UTS namespace for it.
    let hostname = if host_network(pod) {
        String::new()
    } else {
        PodName::of(pod, node.dns.cluster_domain)?
            .kernel_hostname(spec.set_hostname_as_fqdn == Some(true))?
    };
    let dns = dns::pod_config(pod, &node.dns)?;
    let uid = meta.uid.clone();
    Ok(Built {
        config: cri::PodSandboxConfig {
            metadata: Some(meta),
            hostname,
            log_directory: node.log_directory.clone(),
            dns_config: Some(dns.config),
            labels: [(POD_UID_LABEL.to_owned(), uid.clone())].into(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: format!("{}/pod{uid}", node.cgroup_root.trim_end_matches('/')),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(namespace_options(pod)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        dns_warnings: dns.warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn build(spec: serde_json::Value) -> Result<Built, String> {
        let host = dns::parse_resolv_conf("nameserver 192.0.2.53\n");
        let node = NodeInputs {
            dns: dns::Node {
                cluster_dns: &["10.96.0.10".parse().unwrap()],
                cluster_domain: "cluster.local",
                host: Some(&host),
            },
            cgroup_root: "/ekube/",
            log_directory: "/logs".into(),
        };
        config(&pod(spec), &node)
    }

    #[test]
    fn host_namespaces_map_to_node_mode() {
        let b = build(serde_json::json!({"hostNetwork": true, "hostPID": true})).unwrap();
        let ns = b.config.linux.unwrap().security_context.unwrap();
        let ns = ns.namespace_options.unwrap();
        assert_eq!(ns.network, NamespaceMode::Node as i32);
        assert_eq!(ns.pid, NamespaceMode::Node as i32);
        assert_eq!(ns.ipc, NamespaceMode::Pod as i32);
        assert_eq!(b.config.hostname, "", "the node's hostname");
        assert_eq!(b.config.dns_config.unwrap().servers, ["192.0.2.53"]);
        let b = build(serde_json::json!({"hostIPC": true})).unwrap();
        let linux = b.config.linux.unwrap();
        assert_eq!(linux.cgroup_parent, "/ekube/podu1");
        let ns = linux.security_context.unwrap().namespace_options.unwrap();
        assert_eq!(ns.network, NamespaceMode::Pod as i32);
        assert_eq!(ns.pid, NamespaceMode::Container as i32);
        assert_eq!(ns.ipc, NamespaceMode::Node as i32);
        assert_eq!(b.config.hostname, "web");
    }

    #[test]
    fn the_hostname_is_the_fqdn_when_asked_and_refused_when_too_long() {
        let b = build(serde_json::json!({"hostname": "a", "subdomain": "s",
            "setHostnameAsFQDN": true}))
        .unwrap();
        assert_eq!(b.config.hostname, "a.s.shop.svc.cluster.local");
        let long = "x".repeat(50);
        let err = build(serde_json::json!({"hostname": long, "subdomain": "s",
            "setHostnameAsFQDN": true}))
        .err()
        .unwrap();
        assert!(err.contains("too long"), "{err}");
    }
}
