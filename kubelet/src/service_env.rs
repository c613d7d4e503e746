//! Service environment variables as upstream's kubelet (`envvars.FromServices`) writes them:
//! for each Service with a cluster IP, `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT` (first
//! port), `<NAME>_SERVICE_PORT_<PORT NAME>`, and the Docker-link forms `<NAME>_PORT` and
//! `<NAME>_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR]`. The Services of the pod's namespace are
//! given unless `enableServiceLinks: false`; `default/kubernetes` always is, so in-cluster
//! clients find the API. They are listed at each container start, which is when upstream
//! reads them too (from its Service informer).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};

use super::inputs::ConfigError;

/// The Service variables of `pod`'s containers.
pub async fn for_pod(
    client: &kube::Client,
    pod: &Pod,
) -> Result<Vec<(String, String)>, ConfigError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    // Keyed by name: a Service of the pod's namespace replaces `default/kubernetes`.
    let mut services: BTreeMap<String, Service> = BTreeMap::new();
    if !(links && ns == "default") {
        let kubernetes = Api::<Service>::namespaced(client.clone(), "default")
            .get_opt("kubernetes")
            .await
            .map_err(|e| ConfigError(format!("service default/kubernetes: {e}")))?;
        services.extend(kubernetes.map(|s| ("kubernetes".to_owned(), s)));
    }
    if links {
        let list = Api::<Service>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map_err(|e| ConfigError(format!("listing services of namespace {ns}: {e}")))?;
        for s in list.items {
            services.insert(s.metadata.name.clone().unwrap_or_default(), s);
        }
    }
    Ok(services.values().flat_map(variables).collect())
}

/// `-` → `_`, upper case.
fn env_name(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}

/// Upstream's variables for one Service; none without a cluster IP (headless, ExternalName)
/// or without ports.
fn variables(svc: &Service) -> Vec<(String, String)> {
    let spec = svc.spec.clone().unwrap_or_default();
    let Some(ip) = spec.cluster_ip.filter(|ip| !ip.is_empty() && ip != "None") else {
        return Vec::new();
    };
    let ports = spec.ports.unwrap_or_default();
    let Some(first) = ports.first() else {
        return Vec::new();
    };
    let prefix = env_name(svc.metadata.name.as_deref().unwrap_or_default());
    let mut out = vec![
        (format!("{prefix}_SERVICE_HOST"), ip.clone()),
        (format!("{prefix}_SERVICE_PORT"), first.port.to_string()),
    ];
    for p in &ports {
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((
                format!("{prefix}_SERVICE_PORT_{}", env_name(name)),
                p.port.to_string(),
            ));
        }
    }
    let host = |port: i32| match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(_)) => format!("[{ip}]:{port}"),
        _ => format!("{ip}:{port}"),
    };
    for (i, p) in ports.iter().enumerate() {
        let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
        let url = format!("{}://{}", proto.to_lowercase(), host(p.port));
        if i == 0 {
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let base = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
        out.push((base.clone(), url));
        out.push((format!("{base}_PROTO"), proto.to_lowercase()));
        out.push((format!("{base}_PORT"), p.port.to_string()));
        out.push((format!("{base}_ADDR"), ip.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(svc: serde_json::Value) -> Vec<String> {
        let svc: Service = serde_json::from_value(svc).unwrap();
        variables(&svc)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    #[test]
    fn the_variables_upstream_writes_for_the_kubernetes_service() {
        assert_eq!(
            vars(serde_json::json!({
                "metadata": {"name": "kubernetes", "namespace": "default"},
                "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]},
            })),
            [
                "KUBERNETES_SERVICE_HOST=10.96.0.1",
                "KUBERNETES_SERVICE_PORT=443",
                "KUBERNETES_SERVICE_PORT_HTTPS=443",
                "KUBERNETES_PORT=tcp://10.96.0.1:443",
                "KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443",
                "KUBERNETES_PORT_443_TCP_PROTO=tcp",
                "KUBERNETES_PORT_443_TCP_PORT=443",
                "KUBERNETES_PORT_443_TCP_ADDR=10.96.0.1",
            ]
        );
    }

    #[test]
    fn names_are_upper_cased_with_underscores_and_every_port_is_linked() {
        assert_eq!(
            vars(serde_json::json!({
                "metadata": {"name": "my-db"},
                "spec": {"clusterIP": "10.96.3.4", "ports": [
                    {"port": 3306},
                    {"name": "admin-ui", "port": 8080, "protocol": "UDP"}]},
            })),
            [
                "MY_DB_SERVICE_HOST=10.96.3.4",
                "MY_DB_SERVICE_PORT=3306",
                "MY_DB_SERVICE_PORT_ADMIN_UI=8080",
                "MY_DB_PORT=tcp://10.96.3.4:3306",
                "MY_DB_PORT_3306_TCP=tcp://10.96.3.4:3306",
                "MY_DB_PORT_3306_TCP_PROTO=tcp",
                "MY_DB_PORT_3306_TCP_PORT=3306",
                "MY_DB_PORT_3306_TCP_ADDR=10.96.3.4",
                "MY_DB_PORT_8080_UDP=udp://10.96.3.4:8080",
                "MY_DB_PORT_8080_UDP_PROTO=udp",
                "MY_DB_PORT_8080_UDP_PORT=8080",
                "MY_DB_PORT_8080_UDP_ADDR=10.96.3.4",
            ]
        );
    }

    #[test]
    fn services_without_a_cluster_ip_give_nothing() {
        for ip in ["None", ""] {
            assert!(
                vars(serde_json::json!({"metadata": {"name": "h"},
                    "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}))
                .is_empty()
            );
        }
        assert!(
            vars(serde_json::json!({"metadata": {"name": "x"},
                "spec": {"type": "ExternalName", "externalName": "example.org"}}))
            .is_empty()
        );
    }
}
