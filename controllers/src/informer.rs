//! One watch of a kind for every controller that wants to hear of its changes, as upstream's
//! shared informer factory gives the controllers of one controller-manager.
//!
//! Pods are what most controllers follow (a ReplicaSet's, a Job's, a budget's, a Service's
//! endpoints…). Each watching them on its own made the apiserver encode every pod change once
//! per controller and the controller-manager decode it as many times. A [`SharedWatch`] runs one
//! watch and hands each subscriber the object it saw change (added, modified, deleted, and each
//! object again when the watch lists anew), the stream kube-runtime's `Controller` takes in
//! `owns_shared_stream` and `watches_shared_stream`. As before, the watch only says *when* to
//! reconcile: reconcilers read what they act on with a fresh LIST.
//!
//! Subscribing happens before the watch runs (`subscribe` borrows what `run` consumes), so no
//! subscriber misses the first list. Each subscriber has an unbounded queue: a slow controller
//! neither holds up the others nor loses a change; what waits there is one `Arc` per change.

use std::fmt::Debug;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

/// What a subscriber receives: each object the watch saw change.
pub type Changes<K> = tokio_stream::wrappers::UnboundedReceiverStream<Arc<K>>;

/// One watch of `K`, fanned out to its subscribers.
pub struct SharedWatch<K> {
    api: Api<K>,
    subscribers: Vec<mpsc::UnboundedSender<Arc<K>>>,
}

impl<K> SharedWatch<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    pub fn new(api: Api<K>) -> Self {
        Self {
            api,
            subscribers: Vec::new(),
        }
    }

    /// Every object the watch will see change, from the start of [`SharedWatch::run`].
    pub fn subscribe(&mut self) -> Changes<K> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.push(tx);
        Changes::new(rx)
    }

    pub fn has_subscribers(&self) -> bool {
        !self.subscribers.is_empty()
    }

    /// Watches (retrying with back-off after a failure) and hands out what changes, until the
    /// last subscriber is gone.
    pub async fn run(self) -> Result<(), String> {
        let events = watcher(self.api.clone(), watcher::Config::default()).default_backoff();
        self.fan_out(events).await
    }

    async fn fan_out(
        mut self,
        events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    ) -> Result<(), String> {
        let kind = K::kind(&()).into_owned();
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            let changed = match event {
                Ok(
                    watcher::Event::Apply(obj)
                    | watcher::Event::InitApply(obj)
                    | watcher::Event::Delete(obj),
                ) => Arc::new(obj),
                Ok(watcher::Event::Init | watcher::Event::InitDone) => continue,
                Err(error) => {
                    tracing::warn!(%kind, %error, "shared watch failed; retrying");
                    continue;
                }
            };
            self.subscribers
                .retain(|tx| tx.send(changed.clone()).is_ok());
            if self.subscribers.is_empty() {
                return Err(format!("no controller follows the {kind} watch any more"));
            }
        }
        Err(format!("the shared {kind} watch ended"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn pod(name: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.into());
        pod
    }

    fn names(seen: Vec<Arc<Pod>>) -> Vec<String> {
        seen.iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    /// What a fake apiserver client would take to build; the watch itself is kube-runtime's.
    fn shared() -> SharedWatch<Pod> {
        let config = kube::Config::new("http://127.0.0.1:1".parse().expect("a URL"));
        let client = kube::Client::try_from(config).expect("a client");
        SharedWatch::new(Api::all(client))
    }

    #[tokio::test]
    async fn every_subscriber_hears_of_every_change_listed_applied_or_deleted() {
        let mut shared = shared();
        let first = shared.subscribe();
        let second = shared.subscribe();
        let events = futures::stream::iter([
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(pod("a"))),
            Ok(watcher::Event::InitDone),
            Ok(watcher::Event::Apply(pod("b"))),
            Err(watcher::Error::NoResourceVersion),
            Ok(watcher::Event::Delete(pod("a"))),
        ]);
        let ended = shared.fan_out(events).await;
        assert!(ended.unwrap_err().contains("watch ended"));
        for stream in [first, second] {
            assert_eq!(names(stream.collect().await), ["a", "b", "a"]);
        }
    }

    #[tokio::test]
    async fn a_subscriber_that_goes_leaves_the_others_served_and_the_last_ends_the_watch() {
        let mut shared = shared();
        let gone = shared.subscribe();
        let staying = shared.subscribe();
        drop(gone);
        let (tx, rx) = mpsc::unbounded_channel();
        let run =
            tokio::spawn(shared.fan_out(tokio_stream::wrappers::UnboundedReceiverStream::new(rx)));
        tx.send(Ok(watcher::Event::Apply(pod("a"))))
            .expect("running");
        let mut staying = Box::pin(staying);
        assert_eq!(names(vec![staying.next().await.expect("a")]), ["a"]);
        drop(staying);
        tx.send(Ok(watcher::Event::Apply(pod("b"))))
            .expect("running");
        let ended = run.await.expect("no panic");
        assert!(ended.unwrap_err().contains("no controller follows"));
    }
}
