//! The loop the controllers share: kube-runtime's `Controller` over the owner kind,
//! woken by the kinds it owns, each failed reconcile logged and the object retried.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Namespace;
use kube::Resource;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;

use crate::Result;
use crate::events::Recorder;

/// What a workload controller's reconciler works with.
pub(crate) struct Ctx {
    pub client: kube::Client,
    pub recorder: Recorder,
}

/// Runs `controller` until its watches end: `reconcile` for each object that changed (or whose
/// owned objects did); a failure is logged under `name` and the object retried after `retry`.
pub(crate) async fn drive<K, C, F, Fut>(
    name: &'static str,
    controller: Controller<K>,
    reconcile: F,
    ctx: C,
    retry: Duration,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    C: Send + Sync + 'static,
    F: FnMut(Arc<K>, Arc<C>) -> Fut,
    Fut: Future<Output = Result<Action>> + Send + 'static,
{
    let mut reconcile = reconcile;
    let timed = move |object, ctx| {
        let work = reconcile(object, ctx);
        async move {
            let started = std::time::Instant::now();
            let done = work.await;
            crate::metrics::worked(name, started.elapsed());
            done
        }
    };
    controller
        .run(
            timed,
            move |_, e, _| {
                tracing::warn!(error = %e, "{name}");
                Action::requeue(retry)
            },
            Arc::new(ctx),
        )
        .for_each(|_| async {})
        .await;
}

/// Runs a controller that keeps one object of kind `K`, selected by `fields` (e.g.
/// `metadata.name=default`), in every Namespace: `reconcile` for each Namespace that is not
/// being deleted, woken also when such an object changes. A failure is retried after a second.
pub(crate) async fn drive_per_namespace<K, C, F, Fut>(
    name: &'static str,
    client: kube::Client,
    fields: &str,
    mut reconcile: F,
    ctx: C,
) where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
    C: Send + Sync + 'static,
    F: FnMut(Arc<Namespace>, Arc<C>) -> Fut,
    Fut: Future<Output = Result<Action>> + Send + 'static,
{
    let active = move |ns: Arc<Namespace>, ctx| {
        // A terminating Namespace refuses new objects; its deletion ends the need for them.
        let work = ns
            .metadata
            .deletion_timestamp
            .is_none()
            .then(|| reconcile(ns, ctx));
        async move {
            match work {
                Some(work) => work.await,
                None => Ok(Action::await_change()),
            }
        }
    };
    // Woken for each Namespace, and for each selected object as its Namespace.
    let controller = Controller::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<K>::all(client),
        watcher::Config::default().fields(fields),
        |object| {
            object
                .meta()
                .namespace
                .as_deref()
                .map(ObjectRef::<Namespace>::new)
        },
    );
    drive(name, controller, active, ctx, Duration::from_secs(1)).await;
}
