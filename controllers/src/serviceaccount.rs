//! ServiceAccount controller: every active Namespace has a ServiceAccount named `default`.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;

use crate::{Context as _, Result};

struct Ctx {
    client: kube::Client,
}

pub async fn run(client: kube::Client) -> Result<(), String> {
    let ctx = Ctx {
        client: client.clone(),
    };
    crate::runner::drive_per_namespace::<ServiceAccount, _, _, _>(
        "serviceaccount",
        client,
        "metadata.name=default",
        reconcile,
        ctx,
    )
    .await;
    Ok(())
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action> {
    let name = ns.name_any();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    if crate::util::get_listed(&api, "default")
        .await
        .ctx(|| format!("reading serviceaccount {name}/default"))?
        .is_none()
    {
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some("default".into()),
                namespace: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => tracing::info!(namespace = %name, "created serviceaccount default"),
            // Already there, or the namespace started terminating meanwhile.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {}
            Err(e) => return Err(e).ctx(|| format!("creating serviceaccount {name}/default")),
        }
    }
    Ok(Action::await_change())
}
