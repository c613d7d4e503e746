//! Watch: a chunked stream of `{"type", "object"}` lines.
//!
//! `resourceVersion` unset or `"0"` starts with synthetic ADDED events for the current state;
//! `N` replays everything after N from the event log (or answers 410 Expired once compacted);
//! `sendInitialEvents=true` sends the current state and then the
//! `k8s.io/initial-events-end` bookmark. Objects that start or stop matching the selectors
//! arrive as ADDED and DELETED, as Kubernetes' watch cache reports them.
//!
//! Each response buffers at most [`SEND_BUFFER`] lines; a client that leaves it full for
//! `--watch-stall-timeout` is closed (as upstream's cache watcher terminates a watcher whose
//! channel stays full) and re-lists, so a stalled reader costs bounded memory.

use std::sync::Arc;
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
use crate::registry::{collection_prefix, decode, key, matches};
use crate::storage::EventKind;
use crate::table;

struct Filter {
    r: &'static ResourceInfo,
    name: Option<String>,
    labels: ekube_api::selector::LabelSelector,
    fields: ekube_api::selector::FieldSelector,
    table: bool,
    include: table::IncludeObject,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        matches(obj, self.name.as_deref(), &self.labels, &self.fields)
    }

    fn line(&self, kind: &str, obj: &Value) -> Bytes {
        let object = if self.table && kind != "BOOKMARK" && kind != "ERROR" {
            let mut t = table::to_table(
                self.r.kind,
                std::slice::from_ref(obj),
                self.include,
                chrono::Utc::now(),
            );
            t["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"].clone();
            t
        } else {
            obj.clone()
        };
        let mut line = json!({"type": kind, "object": object}).to_string();
        line.push('\n');
        Bytes::from(line)
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
    let (labels, fields) = q.selectors()?;
    let filter = Arc::new(Filter {
        r,
        name: name.clone(),
        labels,
        fields,
        table,
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
                    let prev = event.prev.as_ref().map(|p| decode(filter.r, p)).filter(|o| filter.matches(o));
                    let line = match event.kind {
                        EventKind::Delete => prev.map(|_| filter.line("DELETED", &decode(filter.r, &event.kv))),
                        EventKind::Put => {
                            let obj = decode(filter.r, &event.kv);
                            match (filter.matches(&obj), prev.is_some()) {
                                (true, true) => Some(filter.line("MODIFIED", &obj)),
                                (true, false) => Some(filter.line("ADDED", &obj)),
                                (false, true) => Some(filter.line("DELETED", &obj)),
                                (false, false) => None,
                            }
                        }
                    };
                    if let Some(line) = line
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
