//! The `kubernetes` Service's environment variables (`KUBERNETES_SERVICE_HOST`,
//! `KUBERNETES_SERVICE_PORT`, and the Docker-link style `KUBERNETES_PORT_…`), which upstream's
//! kubelet gives every container whatever its `enableServiceLinks`, so in-cluster clients
//! find the API. Links to the pod's other Services are not written.

use k8s_openapi::api::core::v1::Service;
use kube::api::Api;

use super::inputs::ConfigError;

/// The variables of `default/kubernetes`; none when it has no cluster IP yet.
pub async fn kubernetes(client: &kube::Client) -> Result<Vec<(String, String)>, ConfigError> {
    let svc = Api::<Service>::namespaced(client.clone(), "default")
        .get_opt("kubernetes")
        .await
        .map_err(|e| ConfigError(format!("service default/kubernetes: {e}")))?;
    Ok(svc.as_ref().map(variables).unwrap_or_default())
}

/// Upstream's variables for a Service named `kubernetes`.
fn variables(svc: &Service) -> Vec<(String, String)> {
    let spec = svc.spec.as_ref();
    let Some(ip) = spec
        .and_then(|s| s.cluster_ip.clone())
        .filter(|ip| !ip.is_empty() && ip != "None")
    else {
        return Vec::new();
    };
    let ports = spec.and_then(|s| s.ports.clone()).unwrap_or_default();
    let Some(first) = ports.first() else {
        return Vec::new();
    };
    let mut out = vec![
        ("KUBERNETES_SERVICE_HOST".to_string(), ip.clone()),
        (
            "KUBERNETES_SERVICE_PORT".to_string(),
            first.port.to_string(),
        ),
    ];
    for p in &ports {
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            let name = name.to_uppercase().replace('-', "_");
            out.push((
                format!("KUBERNETES_SERVICE_PORT_{name}"),
                p.port.to_string(),
            ));
        }
    }
    let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
        p.protocol.clone().unwrap_or_else(|| "TCP".into())
    };
    out.push((
        "KUBERNETES_PORT".to_string(),
        format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port),
    ));
    for p in &ports {
        let base = format!("KUBERNETES_PORT_{}_{}", p.port, proto(p).to_uppercase());
        let url = format!("{}://{ip}:{}", proto(p).to_lowercase(), p.port);
        out.push((base.clone(), url));
        out.push((format!("{base}_PROTO"), proto(p).to_lowercase()));
        out.push((format!("{base}_PORT"), p.port.to_string()));
        out.push((format!("{base}_ADDR"), ip.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variables_upstream_writes_for_the_kubernetes_service() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]},
        }))
        .unwrap();
        let vars: Vec<String> = variables(&svc)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            vars,
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
}
