//! `POST .../serviceaccounts/<name>/token`: an `authentication.k8s.io/v1` TokenRequest,
//! answered with a signed token. Nothing is stored. As upstream: `expirationSeconds` defaults
//! to 3600 and must lie in [600 s, 2^32 s] (capped by `--service-account-max-token-expiration`),
//! `audiences` default to the API audiences, and a `boundObjectRef` names a Pod, Secret or Node
//! that must exist with the given uid.

use serde_json::{Value, json};

use super::token::{Grant, Ref};
use super::{ServiceAccounts, uid_of};
use crate::errors::{ApiError, Cause, Result};

const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
const MIN_EXPIRATION_SECONDS: i64 = 600;
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
/// What the kubelet's projected volumes ask for; such tokens may live a year (see
/// [`ServiceAccounts::extend_expiration`]).
pub const WARN_ONLY_EXPIRATION_SECONDS: i64 = 3607;
const EXTENDED_EXPIRATION_SECONDS: i64 = 365 * 24 * 60 * 60;

fn internal(e: super::Error) -> ApiError {
    ApiError::internal(e)
}

/// Issues the token a TokenRequest asks for; returns the TokenRequest with its status.
pub async fn create(sas: &ServiceAccounts, ns: &str, name: &str, request: &Value) -> Result<Value> {
    let spec = &request["spec"];
    let expiration = spec["expirationSeconds"]
        .as_i64()
        .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    let invalid =
        |cause| ApiError::invalid("authentication.k8s.io", "TokenRequest", "", vec![cause]);
    if expiration < MIN_EXPIRATION_SECONDS {
        return Err(invalid(Cause::invalid(
            "spec.expirationSeconds",
            expiration,
            "may not specify a duration less than 10 minutes",
        )));
    }
    if expiration > MAX_EXPIRATION_SECONDS {
        return Err(invalid(Cause::invalid(
            "spec.expirationSeconds",
            expiration,
            "may not specify a duration larger than 2^32 seconds",
        )));
    }
    let expiration = sas
        .max_expiration
        .map_or(expiration, |max| expiration.min(max));
    let audiences: Vec<String> = spec["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .filter(|a: &Vec<String>| !a.is_empty())
        .unwrap_or_else(|| sas.api_audiences.clone());

    let sa = sas
        .lookup("serviceaccounts", Some(ns), name)
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::not_found("", "serviceaccounts", name))?;
    let now = ekube_api::time::Timestamp::now().as_second();
    let mut grant = Grant {
        namespace: ns.to_string(),
        service_account: Some(Ref::of(&sa)),
        audiences: audiences.clone(),
        issued_at: now,
        expires_at: now + expiration,
        ..Grant::default()
    };
    let bound = &spec["boundObjectRef"];
    if bound.is_object() {
        bind(sas, ns, name, bound, &mut grant).await?;
        let kubelet_token = expiration == WARN_ONLY_EXPIRATION_SECONDS
            && grant.pod.is_some()
            && audiences.iter().all(|a| sas.api_audiences.contains(a));
        if sas.extend_expiration && kubelet_token {
            grant.warn_after = Some(grant.expires_at);
            grant.expires_at = now + EXTENDED_EXPIRATION_SECONDS;
        }
    }
    let token = sas.issue(&grant);
    let expires = ekube_api::time::from_unix(now + expiration)
        .map(ekube_api::time::rfc3339)
        .unwrap_or_default();
    let mut spec = spec.clone();
    if !spec.is_object() {
        spec = json!({});
    }
    spec["audiences"] = json!(audiences);
    spec["expirationSeconds"] = json!(expiration);
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": crate::registry::now()},
        "spec": spec,
        "status": {"token": token, "expirationTimestamp": expires},
    }))
}

/// Binds the token to the object `bound` names, which must exist (with its uid, if given).
async fn bind(
    sas: &ServiceAccounts,
    ns: &str,
    sa_name: &str,
    bound: &Value,
    grant: &mut Grant,
) -> Result<()> {
    let kind = bound["kind"].as_str().unwrap_or_default();
    let api_version = bound["apiVersion"].as_str().unwrap_or("v1");
    let name = bound["name"].as_str().unwrap_or_default();
    let plural = match (api_version, kind) {
        ("v1", "Pod") => "pods",
        ("v1", "Secret") => "secrets",
        ("v1", "Node") => "nodes",
        _ => {
            return Err(ApiError::bad_request(format!(
                "cannot bind token for serviceaccount \"{sa_name}\" to object of kind \"{api_version}, Kind={kind}\""
            )));
        }
    };
    let scope = (plural != "nodes").then_some(ns);
    let obj = sas
        .lookup(plural, scope, name)
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::not_found("", plural, name))?;
    if let Some(uid) = bound["uid"].as_str().filter(|u| !u.is_empty())
        && uid != uid_of(&obj)
    {
        return Err(ApiError::conflict(
            "",
            kind,
            name,
            &format!(
                "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        ));
    }
    match plural {
        "pods" => {
            let pod_sa = obj
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("default");
            if pod_sa != sa_name {
                return Err(ApiError::bad_request(format!(
                    "cannot issue token for pod \"{name}\": it runs as service account \"{pod_sa}\", not \"{sa_name}\""
                )));
            }
            if let Some(node) = obj
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                let uid = sas
                    .lookup("nodes", None, node)
                    .await
                    .map_err(internal)?
                    .map(|n| uid_of(&n).to_string())
                    .unwrap_or_default();
                grant.node = Some(Ref {
                    name: node.to_string(),
                    uid,
                });
            }
            grant.pod = Some(Ref::of(&obj));
        }
        "secrets" => grant.secret = Some(Ref::of(&obj)),
        _ => grant.node = Some(Ref::of(&obj)),
    }
    Ok(())
}
