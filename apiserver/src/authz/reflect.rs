//! List, then watch, then reflect: the authorizers' in-memory views of stored objects (RBAC's
//! roles and bindings, the Node authorizer's pods and volumes) are filled by one list per kind
//! and kept current from a storage watch starting at the list's revision, so deciding a request
//! reads no storage. A watch that ends (the watcher fell behind, or the revision was compacted)
//! is followed by a fresh list that replaces what was held, then a new watch.

use std::sync::Arc;
use std::time::Duration;

use ekube_api::ResourceInfo;
use futures::StreamExt;
use serde_json::Value;

use crate::storage::{EventKind, Storage};

/// A view kept current by [`start`].
pub trait Reflect: Send + Sync + 'static {
    /// The kinds of object the view holds.
    type Kind: Copy + Send + Sync + 'static;

    fn info(kind: Self::Kind) -> &'static ResourceInfo;
    /// Replaces everything held of `kind` by `objects` (storage key, object).
    fn replace(&self, kind: Self::Kind, objects: Vec<(String, Value)>);
    /// The object at `key` was stored (`Some`) or deleted (`None`).
    fn apply(&self, kind: Self::Kind, key: &str, obj: Option<&Value>);
}

/// Lists every kind into `view`, then keeps it current until the process ends.
pub async fn start<R: Reflect>(
    store: &Arc<dyn Storage>,
    view: &Arc<R>,
    kinds: &[R::Kind],
) -> crate::storage::Result<()> {
    for &kind in kinds {
        let revision = relist(store, view.as_ref(), kind).await?;
        tokio::spawn(follow(store.clone(), view.clone(), kind, revision));
    }
    Ok(())
}

/// Replaces what `view` holds of `kind` by a fresh list; returns the list's revision.
async fn relist<R: Reflect>(
    store: &Arc<dyn Storage>,
    view: &R,
    kind: R::Kind,
) -> crate::storage::Result<u64> {
    let info = R::info(kind);
    let listed = store.list(&info.key_prefix(), None, 0).await?;
    let objects = listed
        .items
        .iter()
        .map(|kv| (kv.key.clone(), crate::registry::decode(info, kv)))
        .collect();
    view.replace(kind, objects);
    Ok(listed.revision)
}

/// Applies watch events of `kind` after `revision`; re-lists when the watch ends.
async fn follow<R: Reflect>(
    store: Arc<dyn Storage>,
    view: Arc<R>,
    kind: R::Kind,
    mut revision: u64,
) {
    let info = R::info(kind);
    loop {
        match store.watch(&info.key_prefix(), revision) {
            Ok(mut events) => {
                while let Some(event) = events.next().await {
                    let obj = (event.kind == EventKind::Put)
                        .then(|| crate::registry::decode(info, &event.kv));
                    view.apply(kind, &event.kv.key, obj.as_ref());
                    revision = event.revision;
                }
            }
            Err(e) => tracing::warn!(kind = info.kind, error = %e, "authorization watch failed"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        match relist(&store, view.as_ref(), kind).await {
            Ok(r) => revision = r,
            Err(e) => tracing::warn!(kind = info.kind, error = %e, "authorization re-list failed"),
        }
    }
}

/// The namespace ("" when cluster-scoped) and name a storage key of `info` names: keys are
/// `<prefix><name>` or `<prefix><namespace>/<name>`.
pub fn key_parts<'k>(info: &ResourceInfo, key: &'k str) -> (&'k str, &'k str) {
    let rest = key.strip_prefix(&info.key_prefix()).unwrap_or(key);
    rest.split_once('/').unwrap_or(("", rest))
}
