//! Namespace controller: empties a Namespace being deleted, then finalizes it.
//!
//! A deleted Namespace stays (phase `Terminating`) while `spec.finalizers` holds `kubernetes`.
//! This controller deletes every namespaced object in it, resource by resource, and once all
//! lists come back empty calls `PUT /api/v1/namespaces/<ns>/finalize` with that finalizer
//! removed; the apiserver then removes the Namespace.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

use crate::gc::dynamic_api;
use crate::{Context as _, Result};

pub const FINALIZER: &str = "kubernetes";

struct Ctx {
    client: kube::Client,
}

pub async fn run(client: kube::Client) -> Result<(), String> {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
    });
    Controller::new(Api::<Namespace>::all(client), watcher::Config::default())
        .run(
            reconcile,
            |_, e, _| {
                tracing::warn!(error = %e, "namespace");
                Action::requeue(Duration::from_secs(1))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
    Ok(())
}

#[tracing::instrument(skip_all, fields(namespace = %ns.name_any()))]
async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action> {
    let pending = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER));
    if ns.metadata.deletion_timestamp.is_none() || !pending {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let mut remaining = 0usize;
    for r in ekube_api::RESOURCES.iter().filter(|r| r.namespaced) {
        let api = dynamic_api(&ctx.client, r, Some(&name));
        let list = match api.list(&ListParams::default()).await {
            Ok(l) => l,
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 405 => continue,
            Err(e) => return Err(e).ctx(|| format!("listing {} in namespace {name}", r.plural)),
        };
        for obj in list.items {
            remaining += 1;
            if obj.metadata.deletion_timestamp.is_none() {
                match api
                    .delete(&obj.name_any(), &DeleteParams::background())
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                    Err(e) => {
                        return Err(e)
                            .ctx(|| format!("deleting {} {name}/{}", r.plural, obj.name_any()));
                    }
                }
            }
        }
    }
    if remaining > 0 {
        tracing::debug!(remaining, "namespace still has content");
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let mut body = (*ns).clone();
    if let Some(spec) = body.spec.as_mut() {
        spec.finalizers = Some(
            spec.finalizers
                .take()
                .unwrap_or_default()
                .into_iter()
                .filter(|f| f != FINALIZER)
                .collect(),
        );
    }
    match api
        .replace_subresource("finalize", &name, &PostParams::default(), &body)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            return Ok(Action::requeue(Duration::from_millis(200)));
        }
        Err(e) => return Err(e).ctx(|| format!("finalizing namespace {name}")),
    }
    tracing::info!("namespace finalized");
    Ok(Action::await_change())
}
