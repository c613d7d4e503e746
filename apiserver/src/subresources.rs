//! Subresources other than `status`: `scale`, `pods/binding`, `pods/eviction` (in
//! [`crate::eviction`]), and the streaming
//! ones served by kubelets (`log`, `exec`, `attach`, `portforward`, relayed by
//! [`crate::kubelet_proxy`]).
//!
//! Creates on a subresource (a binding, an eviction, a token request) and connections
//! (`exec`, `attach`, `portforward`) pass the admission chain as the requester's; the writes
//! they then make on the pod are the apiserver's own, as upstream's subresource storage makes
//! them.

use std::sync::Arc;

use bytes::Bytes;
use ekube_api::ResourceInfo;
use http::{HeaderMap, Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::ApiServer;
use crate::admission::{self, Attributes, Operation};
use crate::auth::User;
use crate::errors::{ApiError, Cause, Result};
use crate::handler::{Body, Query, json_response, parse_object};
use crate::registry::WriteOptions;

/// The `autoscaling/v1` Scale view of a workload.
pub fn scale_of(r: &ResourceInfo, obj: &Value) -> Value {
    debug_assert!(r.scale, "{} has no scale subresource", r.plural);
    // A LabelSelector's pairs are its `matchLabels`; a selector whose values are all strings is
    // itself the pairs (a ReplicationController's plain map).
    let plain = obj
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .filter(|m| m.values().all(Value::is_string));
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .or(plain)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"]["namespace"],
            "uid": obj["metadata"]["uid"],
            "resourceVersion": obj["metadata"]["resourceVersion"],
            "creationTimestamp": obj["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
    })
}

pub async fn put_scale(
    api: &Arc<ApiServer>,
    r: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    scale: &Value,
    opts: &WriteOptions,
) -> Result<Response<Body>> {
    let replicas = scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if replicas < 0 {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            name,
            vec![Cause::invalid(
                "spec.replicas",
                replicas,
                "must be greater than or equal to 0",
            )],
        ));
    }
    let pinned = scale
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|rv| !rv.is_empty())
        .map(|rv| {
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))
        })
        .transpose()?;
    let opts = WriteOptions {
        precondition: pinned,
        ..opts.clone()
    };
    let (obj, _) = api
        .registry
        .guaranteed_update(r, ns, name, None, &opts, |mut cur| {
            cur["spec"]["replicas"] = json!(replicas);
            Ok(cur)
        })
        .await?;
    Ok(json_response(StatusCode::OK, &scale_of(r, &obj)))
}

/// Passes `object`, created on `<r>/<sub>` named `name`, through the admission chain.
#[allow(clippy::too_many_arguments)]
async fn admit(
    api: &ApiServer,
    operation: Operation,
    r: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    sub: &str,
    user: &User,
    mut object: Option<&mut Value>,
    dry_run: bool,
) -> Result<()> {
    let attrs = Attributes {
        operation,
        resource: r,
        subresource: Some(sub),
        namespace: ns,
        name,
        old_object: None,
        user,
        dry_run,
    };
    admission::mutate(&api.registry, &attrs, object.as_deref_mut()).await?;
    // No plugin warns about a subresource's object (PodSecurity looks at pods and templates).
    let mut warnings = crate::registry::Warnings::default();
    admission::validate(&api.registry, &attrs, object.as_deref(), &mut warnings).await
}

#[allow(clippy::too_many_arguments)]
pub async fn post(
    api: &Arc<ApiServer>,
    r: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    sub: &str,
    q: &Query,
    user: &User,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response<Body>> {
    let dry_run = q.get("dryRun") == Some("All");
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if !matches!(
        (r.kind, sub),
        ("Pod", "binding" | "eviction") | ("ServiceAccount", "token")
    ) {
        return Err(ApiError::path_not_found());
    }
    let mut object = parse_object(body, ct)?;
    admit(
        api,
        Operation::Create,
        r,
        ns,
        name,
        sub,
        user,
        Some(&mut object),
        dry_run,
    )
    .await?;
    match (r.kind, sub) {
        ("Pod", "binding") => {
            let binding = object;
            let node = binding
                .pointer("/target/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if node.is_empty() {
                return Err(ApiError::invalid(
                    "",
                    "Binding",
                    name,
                    vec![Cause::required("target.name")],
                ));
            }
            let opts = WriteOptions {
                dry_run,
                ..Default::default()
            };
            // The node and PodScheduled=True in one write, as upstream's binding storage does.
            let now = crate::registry::now();
            api.registry
                .guaranteed_update(r, ns, name, Some("binding"), &opts, |mut pod| {
                    if pod.pointer("/metadata/deletionTimestamp").is_some() {
                        return Err(ApiError::conflict(
                            "",
                            "pods",
                            name,
                            "pod is being deleted, cannot be assigned to a host",
                        ));
                    }
                    if let Some(current) = pod
                        .pointer("/spec/nodeName")
                        .and_then(Value::as_str)
                        .filter(|n| !n.is_empty())
                    {
                        return Err(ApiError::conflict(
                            "",
                            "pods",
                            name,
                            &format!("pod {name} is already assigned to node \"{current}\""),
                        ));
                    }
                    pod["spec"]["nodeName"] = json!(node);
                    let status = crate::defaults::ensure(&mut pod, "status");
                    let conditions = &mut status["conditions"];
                    if !conditions.is_array() {
                        *conditions = json!([]);
                    }
                    if let Some(list) = conditions.as_array_mut() {
                        list.retain(|c| c["type"] != "PodScheduled");
                        list.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
                    }
                    Ok(pod)
                })
                .await?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        ("ServiceAccount", "token") => {
            let request = object;
            let ns = ns.unwrap_or_default();
            let issued =
                crate::serviceaccount::request::create(&api.service_accounts, ns, name, &request)
                    .await?;
            Ok(json_response(StatusCode::CREATED, &issued))
        }
        ("Pod", "eviction") => {
            crate::eviction::create(api, r, ns.unwrap_or_default(), name, &object, dry_run).await
        }
        _ => Err(ApiError::path_not_found()),
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn get(
    api: &Arc<ApiServer>,
    r: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    sub: &str,
    q: &Query,
    user: &User,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>> {
    match (r.kind, sub) {
        ("Pod", "log") => {
            check_log_options(q)?;
            stream(api, r, ns, name, sub, user, req).await
        }
        ("Pod", "exec" | "attach" | "portforward") => {
            stream(api, r, ns, name, sub, user, req).await
        }
        _ => Err(ApiError::path_not_found()),
    }
}

/// Checks `PodLogOptions` as upstream validates them, before anything is relayed: integers
/// that parse, `tailLines` ≥ 0, `limitBytes` and `sinceSeconds` > 0, at most one of
/// `sinceSeconds` and `sinceTime`, and a `sinceSeconds` that reaches back to a representable
/// time.
fn check_log_options(q: &Query) -> Result<()> {
    let int = |k: &str| {
        q.get(k)
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!("{k}: invalid value {v:?}: must be an integer"))
                })
            })
            .transpose()
    };
    let positive = |k: &str, min: i64| -> Result<Option<i64>> {
        match int(k)? {
            Some(v) if v < min => Err(ApiError::bad_request(format!(
                "{k}: invalid value {v}: must be greater than {}",
                if min == 0 { "or equal to 0" } else { "0" }
            ))),
            v => Ok(v),
        }
    };
    positive("tailLines", 0)?;
    positive("limitBytes", 1)?;
    if let Some(s) = positive("sinceSeconds", 1)? {
        if q.get("sinceTime").is_some() {
            return Err(ApiError::bad_request(
                "at most one of `sinceTime` or `sinceSeconds` may be specified",
            ));
        }
        let reachable = ekube_api::time::Timestamp::now()
            .checked_sub(ekube_api::time::SignedDuration::from_secs(s))
            .is_ok();
        if !reachable {
            return Err(ApiError::bad_request(format!(
                "sinceSeconds: invalid value {s}: reaches back further than any time"
            )));
        }
    }
    if let Some(t) = q.get("sinceTime") {
        t.parse::<ekube_api::time::Timestamp>()
            .map_err(|e| ApiError::bad_request(format!("sinceTime: invalid value {t:?}: {e}")))?;
    }
    Ok(())
}

/// `pods/log`, and `pods/exec|attach|portforward` by GET (WebSocket) or POST (SPDY): relayed
/// to the pod's kubelet. The connections (not `log`, a read) are admitted first.
pub async fn stream(
    api: &Arc<ApiServer>,
    r: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    sub: &str,
    user: &User,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>> {
    if sub != "log" {
        admit(api, Operation::Connect, r, ns, name, sub, user, None, false).await?;
    }
    let pod = api.registry.get(r, ns, name).await?;
    crate::kubelet_proxy::to_kubelet(api, &pod, sub, req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scale_selects_what_its_workload_selects() {
        let rc = ekube_api::resources::find("", "v1", "replicationcontrollers").unwrap();
        let rs = ekube_api::resources::find("apps", "v1", "replicasets").unwrap();
        let obj = |selector: Value| {
            json!({"metadata": {"name": "web"}, "spec": {"replicas": 3, "selector": selector},
                   "status": {"replicas": 2}})
        };
        let scale = scale_of(rc, &obj(json!({"app": "web", "tier": "front"})));
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(
            scale["status"],
            json!({"replicas": 2, "selector": "app=web,tier=front"})
        );
        let scale = scale_of(rs, &obj(json!({"matchLabels": {"app": "web"}})));
        assert_eq!(scale["status"]["selector"], "app=web");
        let scale = scale_of(rc, &obj(json!({"matchLabels": "x"})));
        assert_eq!(scale["status"]["selector"], "matchLabels=x");
    }

    #[test]
    fn log_options_out_of_range_are_bad_requests() {
        let check = |q: &str| check_log_options(&Query::parse(Some(q)));
        for bad in [
            "sinceSeconds=9223372036854775807",
            "sinceSeconds=0",
            "sinceSeconds=x",
            "tailLines=-1",
            "limitBytes=0",
            "sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z",
            "sinceTime=yesterday",
        ] {
            let err = check(bad).unwrap_err();
            assert_eq!((err.code, err.reason), (400, "BadRequest"), "{bad}: {err}");
        }
        for good in [
            "",
            "sinceSeconds=3600&tailLines=0&limitBytes=1",
            "sinceTime=2024-01-01T00:00:00Z&follow=true",
        ] {
            assert!(check(good).is_ok(), "{good}");
        }
    }
}
