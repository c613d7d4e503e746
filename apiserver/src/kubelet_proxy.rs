//! The apiserver → kubelet hop (DESIGN.md §2) for `pods/log`, `pods/exec`, `pods/attach` and
//! `pods/portforward`, and the connection [`dial`] the `metrics.k8s.io` scraper reads
//! `/metrics/resource` over.
//!
//! The pod must be bound to a node, and the named container must exist (default: the
//! `kubectl.kubernetes.io/default-container` annotation or the only container). The request
//! goes to `https://<node InternalIP>:<kubelet port>` on the kubelet's paths
//! (`/containerLogs/…`, `/exec/…`, `/attach/…`, `/portForward/…`): a log is streamed back as the
//! kubelet writes it, and an upgrade (WebSocket, SPDY) is relayed like the upstream
//! UpgradeAwareHandler — the kubelet's `101` answer goes back to the client and the two
//! upgraded connections are spliced, so the protocol spoken inside is the kubelet's business.
//! The connection and the relay are [`crate::proxy`]'s, shared with the `proxy` subresources.
//! The apiserver authenticates to the kubelet with its kubelet client certificate
//! (`--kubelet-client-certificate`, by default one the cluster CA issues), as kube-apiserver
//! does; the kubelet's serving certificate is not verified, as in kubeadm clusters without
//! `--kubelet-certificate-authority`.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use rustls::pki_types::CertificateDer;
use serde_json::Value;

use crate::ApiServer;
use crate::errors::{ApiError, Result};
use crate::handler::Body;
use crate::proxy;

/// The kubelet port when the Node does not publish `status.daemonEndpoints`.
const KUBELET_PORT: u16 = 10250;

/// Relays a streaming subresource request of `pod` to its kubelet.
pub async fn to_kubelet(
    api: &Arc<ApiServer>,
    pod: &Value,
    sub: &str,
    mut req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let Some(node_name) = node_name else {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    };
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let path = match sub {
        "portforward" => format!("/portForward/{ns}/{name}"),
        _ => {
            let container = container(
                pod,
                query
                    .iter()
                    .find(|(k, _)| k == "container")
                    .map(|(_, v)| v.as_str()),
            )?;
            if sub != "log" {
                let phase = pod
                    .pointer("/status/phase")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if matches!(phase, "Succeeded" | "Failed") {
                    return Err(ApiError::bad_request(format!(
                        "cannot exec into or attach to a container in a completed pod; current phase is {phase}"
                    )));
                }
            }
            let verb = match sub {
                "log" => "containerLogs",
                other => other,
            };
            format!("/{verb}/{ns}/{name}/{container}")
        }
    };
    let forwarded: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query.iter().filter(|(k, _)| k != "container"))
        .finish();
    let path_and_query = if forwarded.is_empty() {
        path
    } else {
        format!("{path}?{forwarded}")
    };

    let nodes = ekube_api::resources::find("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("nodes are not in the resource table"))?;
    let node = api.registry.get(nodes, None, node_name).await?;
    let Kubelet {
        mut sender,
        host,
        port,
    } = dial(api, &node).await?;
    let unavailable = |e: String| ApiError {
        code: 503,
        reason: "ServiceUnavailable",
        message: format!("error dialing the kubelet of node {node_name} ({host}:{port}): {e}"),
        details: None,
    };

    let upgrading = proxy::is_upgrade(req.headers());
    let client_upgrade = upgrading.then(|| hyper::upgrade::on(&mut req));
    let mut out = Request::builder()
        .method(req.method().clone())
        .uri(path_and_query)
        .body(crate::handler::full(Bytes::new()))
        .map_err(|e| ApiError::internal(format!("building the kubelet request: {e}")))?;
    *out.headers_mut() = proxy::forwardable(req.headers(), upgrading);
    out.headers_mut().insert(
        header::HOST,
        HeaderValue::from_str(&format!("{host}:{port}"))
            .map_err(|e| ApiError::internal(e.to_string()))?,
    );
    let resp = match proxy::send(&mut sender, out, client_upgrade)
        .await
        .map_err(unavailable)?
    {
        proxy::Answer::Switched(back) => {
            tracing::debug!(pod = %name, %sub, node = %node_name, "upgraded through the kubelet");
            return Ok(back);
        }
        proxy::Answer::Plain(resp) => resp,
    };
    let status = resp.status();
    tracing::debug!(pod = %name, %sub, node = %node_name, status = status.as_u16(), "relayed to the kubelet");
    if !status.is_success() {
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = String::from_utf8_lossy(&body).trim().to_owned();
        let reason = match status {
            StatusCode::BAD_REQUEST => "BadRequest",
            StatusCode::NOT_FOUND => "NotFound",
            StatusCode::NOT_IMPLEMENTED => "NotImplemented",
            _ => "InternalError",
        };
        let message = if message.is_empty() {
            format!("the kubelet answered {status}")
        } else {
            message
        };
        return Err(ApiError {
            code: status.as_u16(),
            reason,
            message,
            details: None,
        });
    }
    let mut back = Response::builder().status(status);
    for k in [header::CONTENT_TYPE, header::TRANSFER_ENCODING] {
        if let Some(v) = resp.headers().get(&k) {
            back = back.header(k, v);
        }
    }
    let body = resp
        .into_body()
        .map_err(std::io::Error::other)
        .boxed_unsync();
    back.body(body)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// An HTTP/1.1 connection to a node's kubelet, with the address it went to.
pub struct Kubelet {
    pub sender: hyper::client::conn::http1::SendRequest<Body>,
    pub host: String,
    pub port: u16,
}

/// Connects to the kubelet of `node` (a Node object) over TLS with the apiserver's kubelet
/// client certificate. Failures are 503 ServiceUnavailable naming the node and address.
pub async fn dial(api: &ApiServer, node: &Value) -> Result<Kubelet> {
    let node_name = node
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (host, port) = kubelet_address(node).ok_or_else(|| ApiError {
        code: 503,
        reason: "ServiceUnavailable",
        message: format!("node {node_name} has no address for its kubelet"),
        details: None,
    })?;
    let location = proxy::Location {
        tls: proxy::Tls::Kubelet,
        authority: format!("{host}:{port}"),
        host: host.clone(),
        port,
    };
    let sender = proxy::connect(&location, &api.kubelet_tls)
        .await
        .map_err(|e| ApiError {
            code: 503,
            reason: "ServiceUnavailable",
            message: format!("error dialing the kubelet of node {node_name} ({host}:{port}): {e}"),
            details: None,
        })?;
    Ok(Kubelet { sender, host, port })
}

/// The container a request addresses: the named one, which must exist, or the default.
pub fn container(pod: &Value, requested: Option<&str>) -> Result<String> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let names = |key: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{key}"))
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (containers, init, ephemeral) = (
        names("containers"),
        names("initContainers"),
        names("ephemeralContainers"),
    );
    match requested.filter(|c| !c.is_empty()) {
        Some(c)
            if containers
                .iter()
                .chain(&init)
                .chain(&ephemeral)
                .any(|n| n == c) =>
        {
            Ok(c.to_owned())
        }
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None => {
            let annotated = pod
                .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
                .and_then(Value::as_str)
                .filter(|c| containers.iter().any(|n| n == c));
            if let Some(c) = annotated {
                return Ok(c.to_owned());
            }
            if containers.len() == 1 {
                return Ok(containers[0].clone());
            }
            let mut message = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

/// The node's InternalIP (else any address) and kubelet port.
pub(crate) fn kubelet_address(node: &Value) -> Option<(String, u16)> {
    let addresses = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)?;
    let by_type = |t: &str| {
        addresses
            .iter()
            .find(|a| a["type"] == t)
            .and_then(|a| a["address"].as_str())
    };
    let host = by_type("InternalIP")
        .or_else(|| by_type("ExternalIP"))
        .or_else(|| by_type("Hostname"))?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0 && *p <= u16::MAX as u64)
        .map_or(KUBELET_PORT, |p| p as u16);
    Some((host.to_owned(), port))
}

/// TLS towards kubelets: HTTP/1.1 (upgrades need it), `client` as the client certificate,
/// serving certificates not verified.
pub fn kubelet_tls(
    client: &crate::pki::Issued,
) -> std::result::Result<Arc<rustls::ClientConfig>, String> {
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut client.cert_pem.as_bytes())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| format!("kubelet client certificate: {e}"))?;
    let key = rustls_pemfile::private_key(&mut client.key_pem.as_bytes())
        .map_err(|e| format!("kubelet client key: {e}"))?
        .ok_or("kubelet client key: no private key found")?;
    let mut config = ekube_api::tls::unverified_client()
        .with_client_auth_cert(certs, key)
        .map_err(|e| format!("kubelet client certificate: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "web"}, {"name": "sidecar"}], "initContainers": [{"name": "init"}]}})
    }

    #[test]
    fn containers_default_and_validate() {
        let p = pod();
        assert_eq!(container(&p, Some("sidecar")).unwrap(), "sidecar");
        assert_eq!(container(&p, Some("init")).unwrap(), "init");
        let e = container(&p, Some("nope")).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "container nope is not valid for pod web")
        );
        let e = container(&p, None).unwrap_err();
        assert_eq!(
            e.message,
            "a container name must be specified for pod web, choose one of: [web sidecar] or one of the init containers: [init]"
        );
        let mut p = pod();
        p["metadata"]["annotations"] =
            json!({"kubectl.kubernetes.io/default-container": "sidecar"});
        assert_eq!(container(&p, None).unwrap(), "sidecar");
        let p = json!({"metadata": {"name": "one"}, "spec": {"containers": [{"name": "only"}]}});
        assert_eq!(container(&p, None).unwrap(), "only");
    }

    #[test]
    fn kubelet_address_prefers_the_internal_ip() {
        let n = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "192.168.64.10"}]}});
        assert_eq!(kubelet_address(&n), Some(("192.168.64.10".into(), 10250)));
        let n = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}], "daemonEndpoints": {"kubeletEndpoint": {"Port": 11250}}}});
        assert_eq!(kubelet_address(&n), Some(("n1".into(), 11250)));
        assert_eq!(kubelet_address(&json!({})), None);
    }
}
