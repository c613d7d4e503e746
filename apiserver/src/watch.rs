//! Watch: a chunked stream of `{"type", "object"}` lines.
//!
//! `resourceVersion` unset or `"0"` starts with synthetic ADDED events for the current state;
//! `N` replays everything after N from the event log (or answers 410 Expired once compacted);
//! `sendInitialEvents=true` sends the current state and then the
//! `k8s.io/initial-events-end` bookmark. Objects that start or stop matching the selectors
//! arrive as ADDED and DELETED, as Kubernetes' watch cache reports them.
//!
//! A change is decoded and encoded once, not once per watcher: the first watcher of a resource
//! to need the decoded objects, or the line a watcher without selectors sends, keeps them with
//! the change ([`Seen`]) for the others, as upstream's watch cache keeps a `cachingObject` per
//! event. Each response buffers at most [`SEND_BUFFER`] lines; a client that leaves it full for
//! `--watch-stall-timeout` is closed (as upstream's cache watcher terminates a watcher whose
//! channel stays full) and re-lists, so a stalled reader costs bounded memory.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use ekube_api::ResourceInfo;
use ekube_api::serve::ConnectionAbort;
use futures::StreamExt;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};

use crate::ApiServer;
use crate::errors::{ApiError, Result};
use crate::handler::{Body, Query, include_object};
use crate::registry::{collection_prefix, decode, decode_json, key, matches, selected};
use crate::storage::{Event, EventKind};
use crate::table;

struct Filter {
    r: &'static ResourceInfo,
    name: Option<String>,
    labels: ekube_api::selector::LabelSelector,
    fields: ekube_api::selector::FieldSelector,
    table: bool,
    /// The resource's strategy, for its table columns: looked up once per watch, not per line.
    kind: Option<&'static dyn crate::strategy::Kind>,
    include: table::IncludeObject,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        matches(obj, self.name.as_deref(), &self.labels, &self.fields)
    }

    /// Whether every change under the watched prefix is sent, as it is stored: no name (a
    /// name's key is also a prefix of longer names), no selectors, no table.
    fn takes_all(&self) -> bool {
        self.name.is_none() && self.labels.is_empty() && self.fields.is_empty() && !self.table
    }

    /// The line (if any) this watcher sends for `event`, with what earlier watchers of the same
    /// resource left in `event.seen`.
    fn event_line(&self, event: &Event) -> Option<Bytes> {
        let computed;
        let seen = match event.seen.of(self.r) {
            Some(seen) => seen,
            None => {
                computed = Decoded::new(self.r);
                &computed
            }
        };
        if self.takes_all() {
            return seen.line.get_or_init(|| whole_line(self.r, event)).clone();
        }
        let prev = seen
            .prev
            .get_or_init(|| event.prev.as_ref().map(|p| decode(self.r, p)))
            .as_ref()
            .filter(|o| self.matches(o));
        let obj = seen.obj.get_or_init(|| decode(self.r, &event.kv));
        match event.kind {
            EventKind::Delete => prev.map(|_| self.line("DELETED", obj)),
            EventKind::Put => match (self.matches(obj), prev.is_some()) {
                (true, true) => Some(self.line("MODIFIED", obj)),
                (true, false) => Some(self.line("ADDED", obj)),
                (false, true) => Some(self.line("DELETED", obj)),
                (false, false) => None,
            },
        }
    }

    fn line(&self, kind: &str, obj: &Value) -> Bytes {
        if self.table && kind != "BOOKMARK" && kind != "ERROR" {
            let mut t = table::to_table(
                self.kind,
                std::slice::from_ref(obj),
                self.include,
                ekube_api::time::Timestamp::now(),
            );
            t["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"].clone();
            line_of(kind, &t.to_string())
        } else {
            line_of(kind, &obj.to_string())
        }
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        self.line(
            "BOOKMARK",
            &json!({"kind": self.r.kind, "apiVersion": self.r.api_version(), "metadata": meta}),
        )
    }
}

/// One line of a watch response: `{"type":…,"object":…}` and a newline.
fn line_of(kind: &str, object: &str) -> Bytes {
    Bytes::from(format!("{{\"type\":\"{kind}\",\"object\":{object}}}\n"))
}

/// The line of a watcher that takes every change: the stored JSON spliced
/// ([`decode_json`]), never decoded into a tree.
fn whole_line(r: &'static ResourceInfo, event: &Event) -> Option<Bytes> {
    let kind = match (event.kind, event.prev.is_some()) {
        (EventKind::Delete, false) => return None,
        (EventKind::Delete, true) => "DELETED",
        (EventKind::Put, true) => "MODIFIED",
        (EventKind::Put, false) => "ADDED",
    };
    Some(line_of(kind, &decode_json(r, &event.kv)))
}

/// What the watchers of one change made of it, kept with the change (in the `Arc` every watcher
/// of its prefix receives) so that each part is worked out once: by the first watcher of the
/// resource that needs it. A change is seen through one resource (and version) almost always;
/// a watcher of another (say, the same objects served under a second version) works out its own.
/// Not part of the change's identity: a clone starts empty and equality ignores it.
#[derive(Default)]
pub struct Seen(OnceLock<Decoded>);

struct Decoded {
    r: &'static ResourceInfo,
    obj: OnceLock<Value>,
    prev: OnceLock<Option<Value>>,
    /// What a watcher that takes every change sends.
    line: OnceLock<Option<Bytes>>,
}

impl Decoded {
    fn new(r: &'static ResourceInfo) -> Self {
        Self {
            r,
            obj: OnceLock::new(),
            prev: OnceLock::new(),
            line: OnceLock::new(),
        }
    }
}

impl Seen {
    /// What was made of the change as `r`, when `r` is the resource it was first seen as.
    fn of(&self, r: &'static ResourceInfo) -> Option<&Decoded> {
        Some(self.0.get_or_init(|| Decoded::new(r))).filter(|d| std::ptr::eq(d.r, r))
    }
}

impl Clone for Seen {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for Seen {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Seen {}

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seen")
    }
}

/// Lines a watch response buffers for its client. Past that the watcher waits up to
/// `--watch-stall-timeout` for the client to read, then closes it.
const SEND_BUFFER: usize = 64;

/// The sending half of a watch response, bounded in what it buffers and how long it waits.
struct Sender {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    stall: Duration,
    /// The connection the watch is served on, closed when the client stalls: over HTTP/1 the
    /// response cannot end otherwise while the socket's buffers are full.
    conn: Option<ConnectionAbort>,
}

impl Sender {
    /// Queues a line; false when the watch is over (client gone, or stalled and closed).
    async fn send(&self, line: Bytes) -> bool {
        match tokio::time::timeout(self.stall, self.tx.send(line)).await {
            Ok(sent) => sent.is_ok(),
            Err(_) => {
                tracing::info!(stall = ?self.stall, "closing a watch whose client stopped reading");
                if let Some(conn) = &self.conn {
                    conn.abort();
                }
                false
            }
        }
    }
}

pub async fn serve(
    api: Arc<ApiServer>,
    r: &'static ResourceInfo,
    ns: Option<&str>,
    name: Option<String>,
    q: Query,
    table: bool,
    conn: Option<ConnectionAbort>,
) -> Result<Response<Body>> {
    let (labels, fields) = q.selectors(r)?;
    let filter = Arc::new(Filter {
        r,
        name: name.clone(),
        labels,
        fields,
        table,
        kind: crate::strategy::of(r),
        include: include_object(&q),
    });
    let bookmarks = q.flag("allowWatchBookmarks");
    let send_initial = q.flag("sendInitialEvents");
    let rv = q.get("resourceVersion").unwrap_or_default().to_string();
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800 + rand::random::<u64>() % 1800));
    let prefix = match &name {
        Some(n) => key(r, ns, n),
        None => collection_prefix(r, ns),
    };
    if send_initial && q.get("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(ApiError::invalid(
            r.group,
            "ListOptions",
            "",
            vec![crate::errors::Cause::forbidden(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            )],
        ));
    }

    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(SEND_BUFFER);
    let tx = Sender {
        tx,
        stall: api.config.watch_stall_timeout,
        conn,
    };
    let store = api.registry.store.clone();
    // Initial state, when asked for (or implied by an unset / "0" resourceVersion).
    let mut initial = Vec::new();
    let start = if send_initial || rv.is_empty() || rv == "0" {
        let page = store.list(&prefix, None, 0).await?;
        for kv in page
            .items
            .iter()
            .filter(|kv| name.is_none() || kv.key == prefix)
        {
            if filter.takes_all() {
                initial.push(line_of("ADDED", &decode_json(r, kv)));
                continue;
            }
            // Only the objects the selectors pass are built.
            if !selected(r, kv, &filter.labels, &filter.fields) {
                continue;
            }
            let obj = decode(r, kv);
            if filter.matches(&obj) {
                initial.push(filter.line("ADDED", &obj));
            }
        }
        if send_initial {
            initial.push(filter.bookmark(page.revision, true));
        }
        page.revision
    } else {
        rv.parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?
    };
    let events = match store.watch(&prefix, start) {
        Ok(s) => Some(s),
        Err(crate::storage::Error::Compacted {
            requested,
            compacted,
        }) => {
            let status = ApiError::gone(format!(
                "too old resource version: {requested} ({compacted})"
            ))
            .to_status();
            initial.push(filter.line("ERROR", &status));
            None
        }
        Err(e) => return Err(e.into()),
    };

    let task_filter = filter.clone();
    tokio::spawn(async move {
        let filter = task_filter;
        for line in initial {
            if !tx.send(line).await {
                return;
            }
        }
        let Some(mut events) = events else { return };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_secs(15));
        tick.tick().await;
        let mut last_rv = start;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.tx.closed() => return,
                _ = tick.tick(), if bookmarks => {
                    if !tx.send(filter.bookmark(last_rv, false)).await {
                        return;
                    }
                }
                event = events.next() => {
                    let Some(event) = event else {
                        // Dropped for lagging: end the stream; the client resumes from its
                        // last resourceVersion, which the event log still holds.
                        return;
                    };
                    if event.revision <= start {
                        continue;
                    }
                    last_rv = event.revision;
                    if let Some(line) = filter.event_line(&event)
                        && !tx.send(line).await {
                            return;
                        }
                }
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|b| Ok::<_, std::io::Error>(Frame::data(b)));
    let body = StreamBody::new(stream).boxed_unsync();
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::KeyValue;
    use ekube_api::selector::{FieldSelector, LabelSelector};

    fn pods() -> &'static ResourceInfo {
        ekube_api::resources::find("", "v1", "pods").expect("pods")
    }

    fn filter(labels: &str) -> Filter {
        Filter {
            r: pods(),
            name: None,
            labels: LabelSelector::parse(labels).expect("a selector"),
            fields: FieldSelector::default(),
            table: false,
            kind: None,
            include: Default::default(),
        }
    }

    fn kv(app: &str, revision: u64) -> KeyValue {
        let value =
            json!({"metadata": {"name": "p", "namespace": "default", "labels": {"app": app}}});
        KeyValue {
            key: "/registry/pods/default/p".into(),
            value: value.to_string().into_bytes(),
            create_revision: 2,
            mod_revision: revision,
        }
    }

    fn put(prev: Option<KeyValue>, kv: KeyValue) -> Event {
        Event {
            kind: EventKind::Put,
            revision: kv.mod_revision,
            kv,
            prev,
            seen: Seen::default(),
        }
    }

    fn parsed(line: Option<Bytes>) -> Value {
        serde_json::from_slice(&line.expect("a line")).expect("JSON")
    }

    #[test]
    fn a_watcher_without_selectors_sends_what_a_selecting_one_decodes() {
        let event = put(Some(kv("web", 5)), kv("web", 6));
        let all = filter("");
        let web = filter("app=web");
        assert!(all.takes_all() && !web.takes_all());
        let whole = parsed(all.event_line(&event));
        assert_eq!(whole, parsed(web.event_line(&event)));
        assert_eq!(whole["type"], "MODIFIED");
        assert_eq!(whole["object"]["kind"], "Pod");
        assert_eq!(whole["object"]["metadata"]["resourceVersion"], "6");
        // Worked out once, and what later watchers read.
        let seen = event.seen.of(pods()).expect("seen as pods");
        assert!(seen.line.get().is_some() && seen.obj.get().is_some());
        assert_eq!(parsed(all.event_line(&event)), whole);
    }

    #[test]
    fn selectors_still_turn_changes_into_adds_and_deletes() {
        let db = filter("app=db");
        let into = put(Some(kv("web", 5)), kv("db", 6));
        assert_eq!(parsed(db.event_line(&into))["type"], "ADDED");
        let out = put(Some(kv("db", 6)), kv("web", 7));
        assert_eq!(parsed(db.event_line(&out))["type"], "DELETED");
        let elsewhere = put(Some(kv("web", 7)), kv("web", 8));
        assert!(db.event_line(&elsewhere).is_none());
        let created = put(None, kv("web", 9));
        assert_eq!(parsed(filter("").event_line(&created))["type"], "ADDED");
    }
}
