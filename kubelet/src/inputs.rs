//! What a container is given besides its image: environment (values, `valueFrom`, `envFrom`,
//! `$(VAR)` references) and resources turned into cgroup settings. Volumes are
//! [`super::volumes`]; the lookups of configMaps, secrets and pod fields are shared with it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::Api;

use crate::cri;

/// Why a container cannot be configured (reported as CreateContainerConfigError).
#[derive(Debug)]
pub struct ConfigError(pub String);

pub(super) async fn get_configmap(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<ConfigMap>, ConfigError> {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| ConfigError(format!("configmap {name}: {e}")))
}

pub(super) async fn get_secret(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<Secret>, ConfigError> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| ConfigError(format!("secret {name}: {e}")))
}

pub(super) fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = s
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in s.string_data.clone().unwrap_or_default() {
        out.insert(k, v.into_bytes());
    }
    out
}

pub(super) fn configmap_data(c: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = c
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (k, v) in c.binary_data.clone().unwrap_or_default() {
        out.insert(k, v.0);
    }
    out
}

/// Value of a `fieldRef` path.
pub(super) fn field(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let status = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let keyed = |prefix: &str, map: &Option<BTreeMap<String, String>>| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(|k| {
                map.as_ref()
                    .and_then(|m| m.get(k).cloned())
                    .unwrap_or_default()
            })
    };
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.node_name.unwrap_or_default(),
        "spec.serviceAccountName" => spec.service_account_name.unwrap_or_default(),
        "status.hostIP" => status.host_ip.unwrap_or_default(),
        "status.podIP" => status.pod_ip.unwrap_or_default(),
        "status.podIPs" => status
            .pod_ips
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.ip)
            .collect::<Vec<_>>()
            .join(","),
        _ => {
            return keyed("metadata.labels['", &meta.labels)
                .or_else(|| keyed("metadata.annotations['", &meta.annotations));
        }
    })
}

/// Expands `$(VAR)` from `vars`; `$$(VAR)` stays literal `$(VAR)`; unknown stays as written.
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&format!("$({name})")),
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The container's environment, in Kubernetes order: `envFrom`, then `env`, then the Service
/// variables the container does not set itself.
///
/// `allocatable` is the node's, which a `resourceFieldRef` to a limit the container does not
/// set reads.
pub async fn env(
    client: &kube::Client,
    pod: &Pod,
    c: &Container,
    pod_ip: &str,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut pod = pod.clone();
    let status = pod.status.get_or_insert_with(Default::default);
    if !pod_ip.is_empty() {
        status.pod_ip = Some(pod_ip.to_owned());
    }
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut named = std::collections::HashSet::new();
    let mut set = |k: String, v: String, vars: &mut BTreeMap<String, String>| {
        if named.insert(k.clone()) {
            order.push(k.clone());
        }
        vars.insert(k, v);
    };
    // The Service variables can be referenced by `$(NAME)` and come last, after those the
    // container declares, which win over them.
    let services = super::service_env::for_pod(client, &pod).await?;
    vars.extend(services.iter().cloned());
    for from in c.env_from.clone().unwrap_or_default() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(r) = &from.config_map_ref {
            match get_configmap(client, &ns, &r.name).await? {
                Some(cm) => configmap_data(&cm),
                None if r.optional == Some(true) => BTreeMap::new(),
                None => return Err(ConfigError(format!("configmap \"{}\" not found", r.name))),
            }
        } else if let Some(r) = &from.secret_ref {
            match get_secret(client, &ns, &r.name).await? {
                Some(s) => secret_data(&s),
                None if r.optional == Some(true) => BTreeMap::new(),
                None => return Err(ConfigError(format!("secret \"{}\" not found", r.name))),
            }
        } else {
            BTreeMap::new()
        };
        for (k, v) in data {
            set(
                format!("{prefix}{k}"),
                String::from_utf8_lossy(&v).into_owned(),
                &mut vars,
            );
        }
    }
    for e in c.env.clone().unwrap_or_default() {
        let value = if let Some(v) = &e.value {
            expand(v, &vars)
        } else if let Some(src) = &e.value_from {
            if let Some(f) = &src.field_ref {
                field(&pod, &f.field_path)
                    .ok_or_else(|| ConfigError(format!("unsupported fieldRef {}", f.field_path)))?
            } else if let Some(r) = &src.config_map_key_ref {
                let cm = get_configmap(client, &ns, &r.name).await?;
                match cm
                    .as_ref()
                    .map(configmap_data)
                    .and_then(|d| d.get(&r.key).cloned())
                {
                    Some(v) => String::from_utf8_lossy(&v).into_owned(),
                    None if r.optional == Some(true) => continue,
                    None if cm.is_none() => {
                        return Err(ConfigError(format!("configmap \"{}\" not found", r.name)));
                    }
                    None => {
                        return Err(ConfigError(format!(
                            "couldn't find key {} in ConfigMap {ns}/{}",
                            r.key, r.name
                        )));
                    }
                }
            } else if let Some(r) = &src.secret_key_ref {
                let s = get_secret(client, &ns, &r.name).await?;
                match s
                    .as_ref()
                    .map(secret_data)
                    .and_then(|d| d.get(&r.key).cloned())
                {
                    Some(v) => String::from_utf8_lossy(&v).into_owned(),
                    None if r.optional == Some(true) => continue,
                    None if s.is_none() => {
                        return Err(ConfigError(format!("secret \"{}\" not found", r.name)));
                    }
                    None => {
                        return Err(ConfigError(format!(
                            "couldn't find key {} in Secret {ns}/{}",
                            r.key, r.name
                        )));
                    }
                }
            } else if let Some(r) = &src.resource_field_ref {
                resource_field(c, &r.resource, r.divisor.as_ref(), allocatable)?
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        set(e.name.clone(), value, &mut vars);
    }
    for (k, _) in services {
        if named.insert(k.clone()) {
            order.push(k);
        }
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = vars[&k].clone();
            (k, v)
        })
        .collect())
}

/// A `resourceFieldRef` value: the container's request or limit divided by `divisor` (default
/// 1), rounded up, as upstream. A limit the container does not set reads the node's
/// `allocatable` (what the container may use at most), a request it does not set reads `0`.
pub(super) fn resource_field(
    c: &Container,
    resource: &str,
    divisor: Option<&Quantity>,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, ConfigError> {
    let res = c.resources.clone().unwrap_or_default();
    let (kind, name) = resource.split_once('.').unwrap_or(("", resource));
    let map = match kind {
        "limits" => res.limits,
        "requests" => res.requests,
        _ => {
            return Err(ConfigError(format!(
                "unsupported resourceFieldRef {resource}"
            )));
        }
    };
    let q = map
        .and_then(|m| m.get(name).cloned())
        .or_else(|| {
            (kind == "limits")
                .then(|| allocatable.get(name).cloned())
                .flatten()
        })
        .map(|q| q.0);
    let divisor = divisor.map(|d| d.0.as_str()).unwrap_or("1");
    let bad = |what: &str| ConfigError(format!("resourceFieldRef {resource}: invalid {what}"));
    let ceil_div = |a: i64, b: i64| if b <= 0 { 0 } else { (a + b - 1) / b };
    Ok(match (name, q) {
        (_, None) => "0".into(),
        ("cpu", Some(q)) => {
            let m = ekube_api::quantity::cpu_millis(&q).map_err(|_| bad("quantity"))?;
            let d = ekube_api::quantity::cpu_millis(divisor).map_err(|_| bad("divisor"))?;
            ceil_div(m, d).to_string()
        }
        (_, Some(q)) => {
            let b = ekube_api::quantity::bytes(&q).map_err(|_| bad("quantity"))?;
            let d = ekube_api::quantity::bytes(divisor).map_err(|_| bad("divisor"))?;
            ceil_div(b, d).to_string()
        }
    })
}

/// A whole label or annotation map as upstream writes it to a downwardAPI file: sorted
/// `key="value"` lines (Go-quoted values), without a final newline.
pub(super) fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| {
            let mut q = String::from('"');
            for ch in v.chars() {
                match ch {
                    '"' => q.push_str("\\\""),
                    '\\' => q.push_str("\\\\"),
                    '\n' => q.push_str("\\n"),
                    '\t' => q.push_str("\\t"),
                    '\r' => q.push_str("\\r"),
                    c => q.push(c),
                }
            }
            q.push('"');
            format!("{k}={q}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Requests and limits as cgroup settings: cpu shares from the cpu request (or limit), CFS
/// quota over a 100 ms period from the cpu limit, and the memory limit.
pub fn resources(c: &Container) -> cri::LinuxContainerResources {
    let res = c.resources.clone().unwrap_or_default();
    let get = |m: &Option<BTreeMap<String, Quantity>>, k: &str| {
        m.as_ref().and_then(|m| m.get(k)).map(|q| q.0.clone())
    };
    let cpu_limit = get(&res.limits, "cpu").and_then(|q| ekube_api::quantity::cpu_millis(&q).ok());
    let cpu_request = get(&res.requests, "cpu")
        .and_then(|q| ekube_api::quantity::cpu_millis(&q).ok())
        .or(cpu_limit);
    let memory = get(&res.limits, "memory")
        .and_then(|q| ekube_api::quantity::bytes(&q).ok())
        .unwrap_or(0);
    let mut out = cri::LinuxContainerResources {
        memory_limit_in_bytes: memory,
        ..Default::default()
    };
    out.cpu_shares = cpu_request.map(|m| (m * 1024 / 1000).max(2)).unwrap_or(2);
    if let Some(limit) = cpu_limit {
        out.cpu_period = 100_000;
        out.cpu_quota = (limit * 100_000 / 1000).max(1000);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_references_expand() {
        let vars: BTreeMap<String, String> = [("A".to_owned(), "1".to_owned())].into();
        assert_eq!(expand("x$(A)y", &vars), "x1y");
        assert_eq!(expand("$$(A) $(B) $", &vars), "$(A) $(B) $");
    }

    #[test]
    fn resources_map_like_kubernetes() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}
        }))
        .unwrap();
        let r = resources(&c);
        assert_eq!(
            (
                r.cpu_shares,
                r.cpu_quota,
                r.cpu_period,
                r.memory_limit_in_bytes
            ),
            (256, 50_000, 100_000, 64 << 20)
        );
        let none: Container = serde_json::from_value(serde_json::json!({"name": "c"})).unwrap();
        assert_eq!(resources(&none).cpu_shares, 2);
    }

    #[test]
    fn downward_resources_and_maps() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "resources": {"limits": {"memory": "64Mi", "cpu": "1500m"}, "requests": {"cpu": "250m"}}
        }))
        .unwrap();
        let q = |s: &str| Quantity(s.into());
        let node: BTreeMap<String, Quantity> =
            [("cpu".into(), q("2")), ("memory".into(), q("4Gi"))].into();
        let field = |c: &Container, resource: &str, divisor: Option<&str>| {
            resource_field(c, resource, divisor.map(q).as_ref(), &node).unwrap()
        };
        assert_eq!(field(&c, "limits.memory", None), "67108864");
        assert_eq!(field(&c, "limits.memory", Some("1Mi")), "64");
        assert_eq!(field(&c, "limits.cpu", None), "2");
        assert_eq!(field(&c, "requests.cpu", Some("1m")), "250");
        assert_eq!(field(&c, "requests.memory", None), "0");
        // Unset limits read the node's allocatable, as upstream.
        let unlimited: Container =
            serde_json::from_value(serde_json::json!({"name": "u"})).unwrap();
        assert_eq!(field(&unlimited, "limits.cpu", Some("1m")), "2000");
        assert_eq!(field(&unlimited, "limits.memory", Some("1Mi")), "4096");
        assert_eq!(field(&unlimited, "requests.cpu", None), "0");
        let m: BTreeMap<String, String> =
            [("b".into(), "x\"y".into()), ("a".into(), "1".into())].into();
        assert_eq!(format_map(Some(&m)), "a=\"1\"\nb=\"x\\\"y\"");
    }
}
