//! The loop the controllers share: kube-runtime's `Controller` over the owner kind,
//! woken by the kinds it owns, each failed reconcile logged and the object retried.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::Resource;
use kube::runtime::controller::{Action, Controller};
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
