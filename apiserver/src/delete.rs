//! DELETE of one object and of a collection: the options a client sends and the answer it gets.
//!
//! The answers follow upstream's delete handler and generic store
//! (`apiserver/pkg/endpoints/handlers/delete.go`, `apiserver/pkg/registry/generic/registry/store.go`):
//! - an object that left storage is answered with the object as it was deleted where the
//!   resource's registry sets `ReturnDeletedObject`, and with a `Status` naming it everywhere
//!   else ([`returns_deleted_object`]);
//! - an object that stays (finalizers, a pod's grace period, a namespace's termination) is
//!   answered with the object as it now is, `deletionTimestamp` set: 200, or 202 Accepted when
//!   the client explicitly asked `orphanDependents: false`;
//! - a collection delete is answered with the list of the objects it set out to delete, as
//!   listed before deleting them.

use std::sync::Arc;

use ekube_api::ResourceInfo;
use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::ApiServer;
use crate::auth::User;
use crate::errors::{ApiError, Result, success_status};
use crate::handler::{Body, Query, json_response};
use crate::registry::{DeleteOptions, Deleted, ListOptions};

/// Whether DELETE answers with the deleted object rather than a `Status`: the resources whose
/// upstream registry sets `ReturnDeletedObject: true` (`pkg/registry/core/<resource>/storage`).
pub fn returns_deleted_object(r: &ResourceInfo) -> bool {
    crate::strategy::of(r).is_some_and(|k| k.returns_deleted_object())
}

/// The HTTP status and body answering the delete of `name`.
pub fn answer(
    r: &ResourceInfo,
    name: &str,
    deleted: Deleted,
    opts: &DeleteOptions,
) -> (StatusCode, Value) {
    match deleted {
        Deleted::Pending(obj) if opts.orphan_dependents == Some(false) => {
            (StatusCode::ACCEPTED, obj)
        }
        Deleted::Pending(obj) => (StatusCode::OK, obj),
        Deleted::Gone(obj) if returns_deleted_object(r) => (StatusCode::OK, obj),
        Deleted::Gone(obj) => {
            let uid = obj
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default();
            (StatusCode::OK, success_status(r.group, r.plural, name, uid))
        }
    }
}

/// `DELETE <resource>/<name>`.
pub async fn object(
    api: &ApiServer,
    r: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Response<Body>> {
    let deleted = api.registry.delete(r, ns, name, opts).await?;
    let (code, body) = answer(r, name, deleted, opts);
    Ok(json_response(code, &body))
}

/// `DELETE <resource>` (deletecollection): deletes every object the selectors match. One that
/// someone else deleted meanwhile is not an error, as upstream.
pub async fn collection(
    api: &ApiServer,
    r: &ResourceInfo,
    ns: Option<&str>,
    q: &Query,
    opts: &DeleteOptions,
) -> Result<Response<Body>> {
    let (labels, fields) = q.selectors(r)?;
    let everything = ListOptions::selecting(labels, fields);
    let (items, rv, _) = api.registry.list(r, ns, &everything).await?;
    for item in &items {
        let name = item
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let item_ns = item.pointer("/metadata/namespace").and_then(Value::as_str);
        match api.registry.delete(r, item_ns, name, opts).await {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "kind": r.list_kind(), "apiVersion": r.api_version(),
            "metadata": {"resourceVersion": rv.to_string()}, "items": items,
        }),
    ))
}

/// The options of a delete: the query's, overridden by a `DeleteOptions` body.
pub fn options(q: &Query, body: &[u8], user: &Arc<User>) -> Result<DeleteOptions> {
    let mut opts = DeleteOptions {
        user: user.clone(),
        grace_period: q
            .get("gracePeriodSeconds")
            .map(|g| g.parse::<i64>())
            .transpose()
            .map_err(|_| ApiError::bad_request("gracePeriodSeconds must be an integer"))?,
        propagation: q.get("propagationPolicy").map(str::to_string),
        orphan_dependents: q
            .get("orphanDependents")
            .map(|o| o.parse::<bool>())
            .transpose()
            .map_err(|_| ApiError::bad_request("orphanDependents must be true or false"))?,
        dry_run: q.get("dryRun") == Some("All"),
        ..Default::default()
    };
    if !body.is_empty() {
        let b: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?;
        apply_body(&mut opts, &b);
    }
    if opts.propagation.is_none() && opts.orphan_dependents == Some(true) {
        opts.propagation = Some("Orphan".into());
    }
    if let Some(p) = &opts.propagation
        && !matches!(p.as_str(), "Background" | "Foreground" | "Orphan")
    {
        return Err(ApiError::bad_request(format!(
            "propagationPolicy {p:?} is not one of Background, Foreground, Orphan"
        )));
    }
    Ok(opts)
}

/// What a `DeleteOptions` body sets.
fn apply_body(opts: &mut DeleteOptions, b: &Value) {
    if let Some(g) = b.get("gracePeriodSeconds").and_then(Value::as_i64) {
        opts.grace_period = Some(g);
    }
    if let Some(p) = b.get("propagationPolicy").and_then(Value::as_str) {
        opts.propagation = Some(p.to_string());
    }
    if let Some(o) = b.get("orphanDependents").and_then(Value::as_bool) {
        opts.orphan_dependents = Some(o);
    }
    opts.uid = b
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        .map(str::to_string);
    opts.resource_version = b
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    if b.get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|d| d.iter().any(|x| x == "All"))
    {
        opts.dry_run = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(group: &str, kind: &str) -> &'static ResourceInfo {
        ekube_api::resources::RESOURCES
            .iter()
            .find(|r| r.group == group && r.kind == kind)
            .unwrap()
    }

    fn svc() -> Value {
        json!({"kind": "Service", "apiVersion": "v1",
               "metadata": {"name": "web", "uid": "u-1", "resourceVersion": "7"}})
    }

    #[test]
    fn deleted_objects_come_back_where_upstream_returns_them() {
        let opts = DeleteOptions::default();
        for (group, kind) in [
            ("", "Pod"),
            ("", "Service"),
            ("", "Namespace"),
            ("", "ServiceAccount"),
            ("", "PersistentVolume"),
            ("", "PersistentVolumeClaim"),
            ("", "ResourceQuota"),
        ] {
            let (code, body) = answer(resource(group, kind), "web", Deleted::Gone(svc()), &opts);
            assert_eq!((code, body), (StatusCode::OK, svc()), "{kind}");
        }
    }

    #[test]
    fn other_kinds_answer_with_a_status() {
        let opts = DeleteOptions::default();
        for (group, kind, plural) in [
            ("apps", "Deployment", "deployments"),
            ("", "ConfigMap", "configmaps"),
            ("", "Node", "nodes"),
            ("batch", "Job", "jobs"),
        ] {
            let (code, body) = answer(resource(group, kind), "web", Deleted::Gone(svc()), &opts);
            assert_eq!(code, StatusCode::OK);
            assert_eq!(body["kind"], "Status");
            assert_eq!(body["status"], "Success");
            assert_eq!(
                body["details"],
                json!({"name": "web", "group": group, "kind": plural, "uid": "u-1"})
            );
        }
    }

    #[test]
    fn an_object_that_stays_is_returned_accepted_only_when_asked_not_to_orphan() {
        let deployment = resource("apps", "Deployment");
        let pending = || Deleted::Pending(svc());
        let plain = DeleteOptions::default();
        assert_eq!(
            answer(deployment, "web", pending(), &plain),
            (StatusCode::OK, svc())
        );
        let no_orphans = DeleteOptions {
            orphan_dependents: Some(false),
            ..Default::default()
        };
        assert_eq!(
            answer(deployment, "web", pending(), &no_orphans),
            (StatusCode::ACCEPTED, svc())
        );
        let (code, body) = answer(deployment, "web", Deleted::Gone(svc()), &no_orphans);
        assert_eq!((code, &body["kind"]), (StatusCode::OK, &json!("Status")));
    }

    #[test]
    fn options_from_query_and_body() {
        let user = Arc::new(User::default());
        let q = Query::parse(Some("gracePeriodSeconds=5&orphanDependents=false"));
        let opts = options(&q, b"", &user).unwrap();
        assert_eq!(opts.grace_period, Some(5));
        assert_eq!(opts.orphan_dependents, Some(false));
        assert_eq!(opts.propagation, None);

        let body =
            br#"{"orphanDependents": true, "preconditions": {"uid": "u-1"}, "dryRun": ["All"]}"#;
        let opts = options(&Query::parse(None), body, &user).unwrap();
        assert_eq!(opts.propagation.as_deref(), Some("Orphan"));
        assert_eq!(opts.uid.as_deref(), Some("u-1"));
        assert!(opts.dry_run);

        let body = br#"{"orphanDependents": true, "propagationPolicy": "Foreground"}"#;
        let opts = options(&Query::parse(None), body, &user).unwrap();
        assert_eq!(opts.propagation.as_deref(), Some("Foreground"));

        let bad = Query::parse(Some("propagationPolicy=Sometimes"));
        assert_eq!(options(&bad, b"", &user).unwrap_err().code, 400);
    }
}
