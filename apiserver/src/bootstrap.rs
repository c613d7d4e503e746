//! What exists on every cluster from the first start: the four system namespaces, the
//! `default/kubernetes` Service (the first address of the service range, port 443) and its
//! Endpoints and EndpointSlice listing the live servers (see [`crate::peers`]), and `kube-public/cluster-info`, from
//! which joining nodes learn this server's address and CA (kubeadm's `bootstrap-token`
//! phase writes it; here the apiserver does, so every cluster can be joined by token), and an
//! APIService for each group-version served here (upstream's autoregistered local ones).

use std::net::{IpAddr, SocketAddr};

use ekube_api::bootstrap::{CLUSTER_INFO, CLUSTER_INFO_NAMESPACE, KUBECONFIG_KEY};
use ekube_api::resources::find;
use serde_json::{Value, json};

use crate::errors::Result;
use crate::registry::{Registry, WriteOptions};

pub const NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates what is missing; `ca_pem` is the cluster CA published in `cluster-info`.
pub async fn run(registry: &Registry, advertise: IpAddr, port: u16, ca_pem: &str) -> Result<()> {
    let opts = WriteOptions::default();
    let ns = find("", "v1", "namespaces").expect("served");
    for name in NAMESPACES {
        if registry.get(ns, None, name).await.is_err() {
            registry
                .create(ns, None, json!({"metadata": {"name": name}}), &opts)
                .await?;
        }
    }
    local_api_services(registry, &opts).await?;
    let svc = find("", "v1", "services").expect("served");
    let cluster_ip = registry.alloc.lock().await.first_ip();
    if registry
        .get(svc, Some("default"), "kubernetes")
        .await
        .is_err()
    {
        registry
            .create(
                svc,
                Some("default"),
                json!({
                    "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                    "spec": {
                        "clusterIP": cluster_ip.to_string(),
                        "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
                        "sessionAffinity": "None",
                        "type": "ClusterIP",
                    },
                }),
                &opts,
            )
            .await?;
    }
    crate::peers::reconcile(
        registry,
        advertise,
        port,
        &mut crate::peers::Seen::default(),
    )
    .await?;
    let server = format!("https://{}", SocketAddr::new(advertise, port));
    cluster_info(
        registry,
        ekube_api::bootstrap::cluster_info_kubeconfig(&server, ca_pem),
        &opts,
    )
    .await
}

/// The group-versions this apiserver serves itself, beyond the resource table: the review
/// groups and the resource metrics.
const OTHER_GROUP_VERSIONS: &[(&str, &str)] = &[
    ("authorization.k8s.io", "v1"),
    ("metrics.k8s.io", "v1beta1"),
];

/// Upstream's `groupPriorityMinimum` and `versionPriority` of a built-in group-version (how
/// discovery orders groups); groups upstream does not list get the lowest built-in one.
fn priorities(group: &str, version: &str) -> (i32, i32) {
    let group_priority = match group {
        "" => 18000,
        "apiregistration.k8s.io" => 18000,
        "apps" => 17800,
        "events.k8s.io" => 17750,
        "authentication.k8s.io" => 17700,
        "authorization.k8s.io" => 17600,
        "autoscaling" => 17500,
        "batch" => 17400,
        "certificates.k8s.io" => 17300,
        "networking.k8s.io" => 17200,
        "policy" => 17100,
        "rbac.authorization.k8s.io" => 17000,
        "storage.k8s.io" => 16800,
        "coordination.k8s.io" => 16500,
        "discovery.k8s.io" => 16200,
        "metrics.k8s.io" => 100,
        _ => 16000,
    };
    let version_priority = match (group, version) {
        ("", _) => 1,
        ("autoscaling", "v2") => 30,
        ("metrics.k8s.io", _) => 100,
        _ => 15,
    };
    (group_priority, version_priority)
}

/// An APIService per group-version served here, as upstream's autoregistration keeps them
/// (`v1.`, `v1.apps`, ...): local (no `service`), so always available. Existing ones stay.
async fn local_api_services(registry: &Registry, opts: &WriteOptions) -> Result<()> {
    let api_services = find("apiregistration.k8s.io", "v1", "apiservices").expect("served");
    let mut served: Vec<(&str, &str)> = ekube_api::resources::groups()
        .into_iter()
        .flat_map(|(g, versions)| versions.into_iter().map(move |v| (g, v)))
        .collect();
    for gv in OTHER_GROUP_VERSIONS {
        if !served.contains(gv) {
            served.push(*gv);
        }
    }
    for (group, version) in served {
        let name = format!("{version}.{group}");
        if registry.get(api_services, None, &name).await.is_ok() {
            continue;
        }
        let (group_priority, version_priority) = priorities(group, version);
        let obj = json!({
            "metadata": {"name": name, "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
            "spec": {"group": group, "version": version,
                     "groupPriorityMinimum": group_priority, "versionPriority": version_priority},
        });
        match registry.create(api_services, None, obj, opts).await {
            // Another server of the cluster made it first.
            Err(e) if e.code == 409 => {}
            other => drop(other?),
        }
    }
    Ok(())
}

/// Creates `kube-public/cluster-info`, or rewrites its `kubeconfig` key when this server's
/// address or CA changed. Its other keys (the bootstrap signer's signatures) stay: the signer
/// re-signs the new kubeconfig.
async fn cluster_info(registry: &Registry, kubeconfig: String, opts: &WriteOptions) -> Result<()> {
    let cm = find("", "v1", "configmaps").expect("served");
    let ns = Some(CLUSTER_INFO_NAMESPACE);
    match registry.get(cm, ns, CLUSTER_INFO).await {
        Err(_) => {
            let obj = json!({
                "metadata": {"name": CLUSTER_INFO},
                "data": {KUBECONFIG_KEY: kubeconfig},
            });
            registry.create(cm, ns, obj, opts).await.map(drop)
        }
        Ok(current) if current["data"][KUBECONFIG_KEY] == kubeconfig.as_str() => Ok(()),
        Ok(_) => registry
            .guaranteed_update(cm, ns, CLUSTER_INFO, None, opts, |mut current| {
                current["data"][KUBECONFIG_KEY] = json!(kubeconfig);
                Ok(current)
            })
            .await
            .map(drop),
    }
}

/// Creates `obj` in `default`, or replaces what is there when it differs.
pub(crate) async fn upsert(
    registry: &Registry,
    r: &'static ekube_api::ResourceInfo,
    obj: Value,
    opts: &WriteOptions,
) -> Result<()> {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match registry.get(r, Some("default"), &name).await {
        Err(_) => registry
            .create(r, Some("default"), obj, opts)
            .await
            .map(drop),
        Ok(_) => registry
            .guaranteed_update(r, Some("default"), &name, None, opts, |cur| {
                let mut next = obj.clone();
                next["metadata"] = cur["metadata"].clone();
                next["metadata"]["labels"] = obj["metadata"]["labels"].clone();
                Ok(next)
            })
            .await
            .map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::tests::registry;

    async fn cluster_info_data(registry: &Registry) -> Value {
        let cm = find("", "v1", "configmaps").unwrap();
        registry
            .get(cm, Some(CLUSTER_INFO_NAMESPACE), CLUSTER_INFO)
            .await
            .unwrap()["data"]
            .clone()
    }

    #[tokio::test]
    async fn cluster_info_follows_the_address_and_keeps_other_keys() {
        let registry = registry().await;
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        run(&registry, ip, 6443, "CA").await.unwrap();
        let want = ekube_api::bootstrap::cluster_info_kubeconfig("https://10.0.0.1:6443", "CA");
        assert_eq!(
            cluster_info_data(&registry).await,
            json!({KUBECONFIG_KEY: want})
        );

        // A signature added meanwhile stays; the kubeconfig follows a new address.
        let cm = find("", "v1", "configmaps").unwrap();
        let ns = Some(CLUSTER_INFO_NAMESPACE);
        let opts = WriteOptions::default();
        registry
            .guaranteed_update(cm, ns, CLUSTER_INFO, None, &opts, |mut c| {
                c["data"]["jws-kubeconfig-abcdef"] = json!("sig");
                Ok(c)
            })
            .await
            .unwrap();
        run(&registry, "10.0.0.2".parse().unwrap(), 6443, "CA")
            .await
            .unwrap();
        let data = cluster_info_data(&registry).await;
        let moved = ekube_api::bootstrap::cluster_info_kubeconfig("https://10.0.0.2:6443", "CA");
        assert_eq!(data[KUBECONFIG_KEY], moved.as_str());
        assert_eq!(data["jws-kubeconfig-abcdef"], "sig");
        // IPv6 addresses are bracketed in the URL.
        run(&registry, "fd00::1".parse().unwrap(), 6443, "CA")
            .await
            .unwrap();
        let data = cluster_info_data(&registry).await;
        assert!(
            data[KUBECONFIG_KEY]
                .as_str()
                .unwrap()
                .contains("server: https://[fd00::1]:6443"),
            "{data}"
        );
    }
}
