//! Core v1 Events, as Kubernetes controllers emit them (`kubectl describe` and `kubectl get
//! events` read these).
//!
//! Recording is best effort: a failed Event write is logged and never fails the caller. A
//! component whose work should not wait for its Events hands them to an [`Emitter`].

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};

/// `Normal` or `Warning`, as in `Event.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    /// `Warning` for "Warning", else `Normal`.
    pub fn parse(text: &str) -> Self {
        if text == "Warning" {
            Self::Warning
        } else {
            Self::Normal
        }
    }
}

/// Writes Events on behalf of one component (`source.component`), and for node components
/// on behalf of one node (`source.host`, `reportingInstance`).
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    component: String,
    host: Option<String>,
}

impl Recorder {
    pub fn new(client: kube::Client, component: &str) -> Self {
        Self {
            client,
            component: component.to_string(),
            host: None,
        }
    }

    /// A recorder for a component that runs on node `node` (the kubelet, the proxy).
    pub fn on_node(client: kube::Client, component: &str, node: &str) -> Self {
        Self {
            host: Some(node.to_string()),
            ..Self::new(client, component)
        }
    }

    /// Records an event about `obj`; whether it was written.
    pub async fn record<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        kind: EventType,
        reason: &str,
        message: &str,
    ) -> bool {
        self.record_ref(reference(obj), kind, reason, message).await
    }

    /// Records an event about the object `involved` points to; whether it was written.
    pub async fn record_ref(
        &self,
        involved: ObjectReference,
        kind: EventType,
        reason: &str,
        message: &str,
    ) -> bool {
        self.record_named(involved, kind, reason, message)
            .await
            .is_some()
    }

    /// Records an event about the object `involved` points to; the written Event's name, for a
    /// caller that counts repeats on it (see [`Recorder::repeat`]).
    pub async fn record_named(
        &self,
        involved: ObjectReference,
        kind: EventType,
        reason: &str,
        message: &str,
    ) -> Option<String> {
        let namespace = involved
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let now = k8s_openapi::jiff::Timestamp::now();
        let name = format!(
            "{}.{:x}",
            involved.name.as_deref().unwrap_or("unknown"),
            now.as_nanosecond() as u64 ^ rand::random::<u32>() as u64
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: involved,
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(match kind {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: self.host.clone(),
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            count: Some(1),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone().unwrap_or_else(|| self.component.clone())),
            action: Some(reason.to_string()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => Some(name),
            Err(e) => {
                tracing::debug!(error = %e, reason, "recording event failed");
                None
            }
        }
    }

    /// Counts one more occurrence of the Event `name` in `namespace`, as upstream's event
    /// correlator aggregates a repeated reason and message (`count`, `lastTimestamp`); whether
    /// the Event was still there to count on.
    pub async fn repeat(&self, namespace: &str, name: &str, count: i32) -> bool {
        let now = k8s_openapi::jiff::Timestamp::now();
        let patch = serde_json::json!({"count": count, "lastTimestamp": Time(now)});
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        api.patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(patch),
        )
        .await
        .is_ok()
    }
}

/// Upstream's `maxQueuedEvents`: Events an [`Emitter`] holds before its callers wait.
pub const QUEUED_EVENTS: usize = 1000;

/// Event writes one [`Emitter`] has in flight at once.
const CONCURRENT_WRITES: usize = 8;

/// Records Events in the background: queued (up to [`QUEUED_EVENTS`]) and written a few at a
/// time, so the caller goes on once its Event is queued instead of waiting for the write. When
/// the queue is full the caller waits for room: no Event is lost, and a component making
/// Events faster than the apiserver takes them slows to its pace (upstream's broadcaster drops
/// them instead).
#[derive(Clone)]
pub struct Emitter {
    queue: tokio::sync::mpsc::Sender<Queued>,
}

struct Queued {
    involved: ObjectReference,
    kind: EventType,
    reason: &'static str,
    message: String,
}

impl Emitter {
    /// An emitter writing through `recorder`. Its writer runs on the current tokio runtime
    /// until every clone of the emitter is dropped and the queue is written.
    pub fn spawn(recorder: Recorder) -> Self {
        let (queue, mut queued) = tokio::sync::mpsc::channel::<Queued>(QUEUED_EVENTS);
        tokio::spawn(async move {
            let mut writes = tokio::task::JoinSet::new();
            loop {
                // A slot first, so that what waits for one waits in the queue.
                while writes.len() >= CONCURRENT_WRITES {
                    writes.join_next().await;
                }
                let Some(q) = queued.recv().await else { break };
                let recorder = recorder.clone();
                writes.spawn(async move {
                    recorder
                        .record_ref(q.involved, q.kind, q.reason, &q.message)
                        .await
                });
            }
            while writes.join_next().await.is_some() {}
        });
        Self { queue }
    }

    /// Queues an Event about `obj`, waiting only while the queue is full.
    pub async fn emit<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        kind: EventType,
        reason: &'static str,
        message: String,
    ) {
        let queued = Queued {
            involved: reference(obj),
            kind,
            reason,
            message,
        };
        if self.queue.send(queued).await.is_err() {
            tracing::debug!(reason, "the event writer has stopped: event not recorded");
        }
    }
}

/// The `ObjectReference` an Event names as its `involvedObject`.
pub fn reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: Some(obj.name_any()),
        namespace: obj.namespace(),
        uid: obj.uid(),
        resource_version: obj.resource_version(),
        field_path: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::api::core::v1::Pod;

    use super::*;

    /// An emitter's caller goes on once its Event is queued: with an apiserver that never
    /// answers, [`CONCURRENT_WRITES`] writes are in flight and [`QUEUED_EVENTS`] more queued
    /// at once; only the one after those waits, and nothing is dropped.
    #[tokio::test]
    async fn events_are_queued_and_a_full_queue_waits() {
        let (sent, mut requests) = tokio::sync::mpsc::unbounded_channel();
        let apiserver = tower::service_fn(move |_: http::Request<kube::client::Body>| {
            let _ = sent.send(());
            std::future::pending::<Result<http::Response<kube::client::Body>, std::io::Error>>()
        });
        let emitter = Emitter::spawn(Recorder::new(
            kube::Client::new(apiserver, "default"),
            "test",
        ));
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let emit = || emitter.emit(&pod, EventType::Normal, "Scheduled", "m".into());
        let soon = Duration::from_secs(1);
        for i in 0..CONCURRENT_WRITES + QUEUED_EVENTS {
            tokio::time::timeout(soon, emit())
                .await
                .unwrap_or_else(|_| panic!("event {i} waited"));
            // Let the writer take what it can off the queue.
            tokio::task::yield_now().await;
        }
        for i in 0..CONCURRENT_WRITES {
            tokio::time::timeout(soon, requests.recv())
                .await
                .unwrap_or_else(|_| panic!("write {i} did not start"));
        }
        assert!(
            tokio::time::timeout(soon, emit()).await.is_err(),
            "a full queue takes one more"
        );
        assert!(
            requests.try_recv().is_err(),
            "more than {CONCURRENT_WRITES} writes in flight"
        );
    }
}
