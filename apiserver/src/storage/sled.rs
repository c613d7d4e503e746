//! The embedded storage backend on sled.
//!
//! Three trees: `kv` (key → create/mod revision + value), `log` (revision → event, for watch
//! replay) and `meta` (the current and the compacted revision). Writes are committed in sled
//! transactions over all three, so the revision counter, a value and its event land together or
//! not at all: revisions stay gap-free across a crash. Writes queue, and whoever takes the flush
//! gate commits all of them in one transaction (queueing each event in revision order), then
//! fsyncs once for all of them (group commit).
//!
//! Nothing is visible before it is durable: the fsync publishes the events it made durable (watch
//! fan-out) and only then are they acknowledged, and a read that saw a write not yet durable
//! waits for the fsync covering it. A read no write in flight could change (a quota check's list
//! of a namespace's quotas while pods are created) answers at once, at the durable revision.
//! A crash can take back only writes nobody has seen.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use parking_lot::{Mutex, RwLock};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use tokio::sync::broadcast;

use super::{Error, Event, EventKind, KeyValue, ListResult, Result, Storage, WatchStream};

const META_REVISION: &[u8] = b"revision";
const META_COMPACTED: &[u8] = b"compacted";

/// Fault injection for crash tests: when set, the process aborts after writing a key containing
/// this text and before the fsync that would make it durable.
pub const CRASH_BEFORE_FSYNC_ENV: &str = "EKUBE_TESTING_CRASH_BEFORE_FSYNC";

pub struct SledStorage {
    db: sled::Db,
    kv: sled::Tree,
    log: sled::Tree,
    meta: sled::Tree,
    /// Held for writing around each transaction; held for reading by gets and lists so they see
    /// a revision boundary no write straddles.
    write_lock: RwLock<()>,
    /// The newest revision written, durable or not.
    revision: AtomicU64,
    compacted: AtomicU64,
    /// The highest revision on disk and fanned out: the newest any reader or watcher may see.
    durable: AtomicU64,
    /// Serialises fsyncs: whoever holds it flushes for every writer waiting.
    flush_gate: tokio::sync::Mutex<()>,
    /// Told when a flush ends, so the writers that waited for it wake together and look again
    /// (rather than taking the gate one after another only to find their revision durable).
    flushed: tokio::sync::watch::Sender<()>,
    /// Writes waiting for the next flush gate holder to commit them, oldest first.
    queue: Mutex<VecDeque<Request>>,
    /// Written but not yet durable events, in revision order, waiting for their fsync.
    pending: Mutex<VecDeque<Arc<Event>>>,
    /// Held while events are fanned out and `durable` advances, and while a watch subscribes,
    /// so a new watcher gets each event exactly once: from the log replay or live.
    publish: Mutex<()>,
    events: broadcast::Sender<Arc<Event>>,
    /// See [`CRASH_BEFORE_FSYNC_ENV`].
    crash_before_fsync: Option<String>,
}

impl SledStorage {
    /// Opens (or creates) the database in `dir`. `watch_buffer` bounds how far a live watcher may
    /// fall behind before it is dropped.
    pub fn open(dir: &Path, watch_buffer: usize) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .open()
            .map_err(backend)?;
        let kv = db.open_tree("kv").map_err(backend)?;
        let log = db.open_tree("log").map_err(backend)?;
        let meta = db.open_tree("meta").map_err(backend)?;
        let read_u64 = |k: &[u8]| -> Result<u64> {
            Ok(meta
                .get(k)
                .map_err(backend)?
                .map(|v| decode_u64(&v))
                .unwrap_or(0))
        };
        let revision = read_u64(META_REVISION)?;
        let compacted = read_u64(META_COMPACTED)?;
        let (events, _) = broadcast::channel(watch_buffer.max(16));
        Ok(Self {
            db,
            kv,
            log,
            meta,
            write_lock: RwLock::new(()),
            revision: AtomicU64::new(revision),
            compacted: AtomicU64::new(compacted),
            durable: AtomicU64::new(revision),
            flush_gate: tokio::sync::Mutex::new(()),
            flushed: tokio::sync::watch::Sender::new(()),
            queue: Mutex::new(VecDeque::new()),
            pending: Mutex::new(VecDeque::new()),
            publish: Mutex::new(()),
            events,
            crash_before_fsync: std::env::var(CRASH_BEFORE_FSYNC_ENV)
                .ok()
                .filter(|k| !k.is_empty()),
        })
    }

    /// Runs one write: `decide` sees the current value and returns the new one (`None`
    /// deletes). Answers once the write is durable.
    ///
    /// The write is queued, and whoever takes the flush gate next commits every queued write in
    /// one sled transaction and flushes them together. sled writes out its log buffer twice for
    /// each transaction, whatever it holds, so writes that arrive while a flush runs share one
    /// transaction (and one fsync) instead of paying for their own.
    async fn write<F>(&self, key: &str, decide: F) -> Result<KeyValue>
    where
        F: Fn(Option<&KeyValue>) -> Result<Option<Vec<u8>>> + Send + 'static,
    {
        let (done, mut answer) = tokio::sync::oneshot::channel();
        self.queue.lock().push_back(Request {
            key: key.to_string(),
            decide: Box::new(decide),
            done,
        });
        let mut answered = None;
        let turn = self
            .turn_unless(|| {
                answered = answer.try_recv().ok();
                answered.is_some()
            })
            .await;
        if let Some(_turn) = turn {
            self.commit_queued();
            self.flush().await?;
        }
        let event = match answered {
            Some(outcome) => outcome?,
            // Committed by this turn or an earlier one: the answer is there.
            None => answer.await.map_err(|_| {
                Error::Backend("internal: a queued write was dropped uncommitted".into())
            })??,
        };
        self.make_durable(event.revision).await?;
        Ok(event.kv.clone())
    }

    /// Commits every queued write in one transaction and answers each with its event or its
    /// error (a write `decide` refuses takes no revision and fails no other).
    ///
    /// A write whose writer gave up (its request was cancelled) before it was taken is dropped
    /// here, so it is never made later, after writes that came after it. Once taken, it stands.
    fn commit_queued(&self) {
        let requests: Vec<Request> = self
            .queue
            .lock()
            .drain(..)
            .filter(|r| !r.done.is_closed())
            .collect();
        if requests.is_empty() {
            return;
        }
        let _guard = self.write_lock.write();
        let result = (&self.kv, &self.log, &self.meta).transaction(|(kv, log, meta)| {
            let mut revision = meta
                .get(META_REVISION)?
                .map(|v| decode_u64(&v))
                .unwrap_or(0);
            let mut outcomes = Vec::with_capacity(requests.len());
            for request in &requests {
                let key = request.key.as_str();
                let prev = kv.get(key.as_bytes())?.map(|raw| decode_kv(key, &raw));
                let next = match (request.decide)(prev.as_ref()) {
                    Ok(next) => next,
                    Err(e) => {
                        outcomes.push(Err(e));
                        continue;
                    }
                };
                let event = match (next, prev) {
                    (Some(value), prev) => {
                        revision += 1;
                        let create_revision = prev.as_ref().map_or(revision, |p| p.create_revision);
                        let kv_new = KeyValue {
                            key: key.to_string(),
                            value,
                            create_revision,
                            mod_revision: revision,
                        };
                        kv.insert(key.as_bytes(), encode_kv(&kv_new))?;
                        Event {
                            kind: EventKind::Put,
                            revision,
                            kv: kv_new,
                            prev,
                            seen: Default::default(),
                        }
                    }
                    (None, Some(old)) => {
                        revision += 1;
                        kv.remove(key.as_bytes())?;
                        let gone = KeyValue {
                            mod_revision: revision,
                            ..old.clone()
                        };
                        Event {
                            kind: EventKind::Delete,
                            revision,
                            kv: gone,
                            prev: Some(old),
                            seen: Default::default(),
                        }
                    }
                    (None, None) => {
                        outcomes.push(Err(Error::NotFound {
                            key: key.to_string(),
                        }));
                        continue;
                    }
                };
                log.insert(&revision.to_be_bytes(), encode_event(&event))?;
                outcomes.push(Ok(event));
            }
            if outcomes.iter().any(Result::is_ok) {
                meta.insert(META_REVISION, &revision.to_be_bytes())?;
            }
            // Refusals are answers, not aborts: the transaction only fails in sled.
            Ok::<_, ConflictableTransactionError<std::convert::Infallible>>(outcomes)
        });
        let outcomes = match result {
            Ok(outcomes) => outcomes,
            Err(TransactionError::Abort(never)) => match never {},
            Err(TransactionError::Storage(e)) => {
                let message = e.to_string();
                for request in requests {
                    let _ = request.done.send(Err(Error::Backend(message.clone())));
                }
                return;
            }
        };
        let mut pending = self.pending.lock();
        for (request, outcome) in requests.into_iter().zip(outcomes) {
            let outcome = outcome.map(Arc::new);
            if let Ok(event) = &outcome {
                // Queued before the revision is published, so whoever flushes up to it finds
                // its event.
                pending.push_back(event.clone());
                self.revision.store(event.revision, Ordering::SeqCst);
            }
            // A writer that gave up after its write was taken: the write stands.
            let _ = request.done.send(outcome);
        }
    }

    /// Waits until `revision` is on disk and fanned out, sharing one fsync among concurrent
    /// writers and readers.
    async fn make_durable(&self, revision: u64) -> Result<()> {
        match self
            .turn_unless(|| self.durable.load(Ordering::SeqCst) >= revision)
            .await
        {
            Some(_turn) => self.flush().await,
            None => Ok(()),
        }
    }

    /// Waits until `done` holds (`None`) or the caller may flush (`Some`, its turn at the
    /// flush gate). While another caller flushes, perhaps from before what this one waits for
    /// was written, it waits for that flush to end and looks again.
    async fn turn_unless(&self, mut done: impl FnMut() -> bool) -> Option<FlushTurn<'_>> {
        loop {
            // Subscribed before looking, so a flush that ends in between still wakes this one.
            let mut flushed = self.flushed.subscribe();
            if done() {
                return None;
            }
            let Ok(gate) = self.flush_gate.try_lock() else {
                let _ = flushed.changed().await;
                continue;
            };
            // Releases the gate and tells the waiters however the turn ends, an error or a
            // cancelled request included (one of them then flushes in its turn).
            return Some(FlushTurn {
                gate: Some(gate),
                flushed: &self.flushed,
            });
        }
    }

    /// Flushes every revision written so far and publishes their events; the caller holds the
    /// flush gate.
    async fn flush(&self) -> Result<()> {
        let target = self.revision.load(Ordering::SeqCst);
        self.crash_if_injected(target).await;
        // On a thread of tokio's blocking pool rather than through `flush_async`, which hands
        // the flush to sled's own pool: that pool wakes all of its idle threads for each job,
        // and on a small machine the wake-ups cost more than the fsync.
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(backend)?
            .map_err(backend)?;
        let _publish = self.publish.lock();
        let mut pending = self.pending.lock();
        while pending.front().is_some_and(|e| e.revision <= target) {
            let event = pending.pop_front().expect("front exists");
            // No receivers is fine: nobody is watching.
            let _ = self.events.send(event);
        }
        // Under the `pending` lock: see `settled`.
        self.durable.fetch_max(target, Ordering::SeqCst);
        Ok(())
    }

    /// The fault-injection hook: dies like a power cut between a write and its fsync. The pause
    /// first gives anything that (wrongly) escaped before the fsync time to reach clients.
    async fn crash_if_injected(&self, target: u64) {
        let Some(needle) = &self.crash_before_fsync else {
            return;
        };
        let doomed = self
            .pending
            .lock()
            .iter()
            .any(|e| e.revision <= target && e.kv.key.contains(needle.as_str()));
        if doomed {
            tracing::error!(key = %needle, "fault injection: aborting before fsync");
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            std::process::abort();
        }
    }

    /// Runs `read` of the keys `prefix` starts where no write is half-done, and answers once
    /// what it saw is durable, with the revision it saw it at.
    ///
    /// When no write in flight touches those keys, what it read is the durable state of them,
    /// unchanged since the durable revision: it answers at that revision at once. Otherwise it
    /// waits for the fsync covering every write it may have seen.
    async fn read_durable<T>(
        &self,
        prefix: &str,
        read: impl FnOnce() -> Result<T>,
    ) -> Result<(T, u64)> {
        let (value, settled, revision) = {
            let _guard = self.write_lock.read();
            let value = read()?;
            (
                value,
                self.settled(|key| key.starts_with(prefix)),
                self.current_revision(),
            )
        };
        if let Some(durable) = settled {
            return Ok((value, durable));
        }
        self.make_durable(revision).await?;
        Ok((value, revision))
    }

    /// The durable revision, if no write waiting for its fsync touches a key `touches`
    /// accepts; `None` if one does. Called under the write lock (for reading), so no write
    /// joins the waiting ones meanwhile.
    fn settled(&self, touches: impl Fn(&str) -> bool) -> Option<u64> {
        // A flush takes the written events out of `pending` and advances `durable` under this
        // lock, so each written revision is either at most `durable` or still in `pending`.
        let pending = self.pending.lock();
        if pending.iter().any(|event| touches(&event.kv.key)) {
            return None;
        }
        Some(self.durable.load(Ordering::SeqCst))
    }
}

#[async_trait::async_trait]
impl Storage for SledStorage {
    fn current_revision(&self) -> u64 {
        self.revision.load(Ordering::SeqCst)
    }

    fn compacted_revision(&self) -> u64 {
        self.compacted.load(Ordering::SeqCst)
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let (value, revision) = {
            let _guard = self.write_lock.read();
            let value = self
                .kv
                .get(key.as_bytes())
                .map_err(backend)?
                .map(|raw| decode_kv(key, &raw));
            // A value is durable once its own revision is (writes in flight elsewhere need not
            // be waited for); an absence once no delete of the key is in flight.
            let revision = match &value {
                Some(kv) => kv.mod_revision,
                None => self
                    .settled(|k| k == key)
                    .unwrap_or_else(|| self.current_revision()),
            };
            (value, revision)
        };
        self.make_durable(revision).await?;
        Ok(value)
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult> {
        let ((items, more), revision) = self
            .read_durable(prefix, || {
                let mut items = Vec::new();
                let range = match start_after {
                    Some(after) => {
                        let mut from = after.as_bytes().to_vec();
                        from.push(0);
                        self.kv.range(from..)
                    }
                    None => self.kv.range(prefix.as_bytes()..),
                };
                for entry in range {
                    let (k, v) = entry.map_err(backend)?;
                    if !k.starts_with(prefix.as_bytes()) {
                        break;
                    }
                    if limit > 0 && items.len() == limit {
                        return Ok((items, true));
                    }
                    let key = String::from_utf8_lossy(&k).into_owned();
                    items.push(decode_kv(&key, &v));
                }
                Ok((items, false))
            })
            .await?;
        Ok(ListResult {
            items,
            revision,
            more,
        })
    }

    async fn count(&self, prefix: &str) -> Result<usize> {
        Ok(self.kv.scan_prefix(prefix.as_bytes()).count())
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let owned = key.to_string();
        self.write(key, move |prev| match prev {
            Some(_) => Err(Error::AlreadyExists { key: owned.clone() }),
            None => Ok(Some(value.clone())),
        })
        .await
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: u64) -> Result<KeyValue> {
        let owned = key.to_string();
        self.write(key, move |prev| match prev {
            None => Err(Error::NotFound { key: owned.clone() }),
            Some(p) if p.mod_revision != expected => Err(Error::Conflict {
                key: owned.clone(),
                expected,
                found: p.mod_revision,
            }),
            Some(_) => Ok(Some(value.clone())),
        })
        .await
    }

    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<KeyValue> {
        let owned = key.to_string();
        self.write(key, move |prev| match (prev, expected) {
            (None, _) => Err(Error::NotFound { key: owned.clone() }),
            (Some(p), Some(rev)) if p.mod_revision != rev => Err(Error::Conflict {
                key: owned.clone(),
                expected: rev,
                found: p.mod_revision,
            }),
            _ => Ok(None),
        })
        .await
    }

    fn watch(&self, prefix: &str, after: u64) -> Result<WatchStream> {
        let check_compacted = || {
            let compacted = self.compacted_revision();
            if after < compacted {
                return Err(Error::Compacted {
                    requested: after,
                    compacted,
                });
            }
            Ok(())
        };
        check_compacted()?;
        let (live, boundary) = {
            let _publish = self.publish.lock();
            (self.events.subscribe(), self.durable.load(Ordering::SeqCst))
        };
        let mut replay = Vec::new();
        for entry in self
            .log
            .range((after + 1).to_be_bytes()..=boundary.to_be_bytes())
        {
            let (_, raw) = entry.map_err(backend)?;
            let event = decode_event(&raw)
                .ok_or_else(|| Error::Backend("corrupt event log entry".into()))?;
            if event.kv.key.starts_with(prefix) {
                replay.push(Arc::new(event));
            }
        }
        // A compaction that ran during the replay may have removed entries it read past: it
        // raises the compacted revision before removing anything, so checking again turns what
        // would be a silent gap into 410.
        check_compacted()?;
        let prefix = prefix.to_string();
        let live_after = boundary.max(after);
        let live = futures::stream::unfold(live, |mut rx| async move {
            // A lagging receiver is dropped: the client re-watches from its last revision.
            match rx.recv().await {
                Ok(event) => Some((event, rx)),
                Err(_) => None,
            }
        })
        .filter(move |e| {
            futures::future::ready(e.revision > live_after && e.kv.key.starts_with(&prefix))
        });
        Ok(futures::stream::iter(replay).chain(live).boxed())
    }

    async fn compact(&self, revision: u64) -> Result<()> {
        // Only durable revisions: the log past them is what the next fsync publishes.
        let revision = revision.min(self.durable.load(Ordering::SeqCst));
        let from = self.compacted_revision();
        if revision <= from {
            return Ok(());
        }
        // The new floor is announced before the first entry goes (see `watch`).
        self.meta
            .insert(META_COMPACTED, &revision.to_be_bytes())
            .map_err(backend)?;
        self.compacted.fetch_max(revision, Ordering::SeqCst);
        let mut batch = sled::Batch::default();
        for entry in self
            .log
            .range((from + 1).to_be_bytes()..=revision.to_be_bytes())
        {
            let (k, _) = entry.map_err(backend)?;
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(backend)?;
        Ok(())
    }
}

fn backend(e: impl std::fmt::Display) -> Error {
    Error::Backend(e.to_string())
}

fn decode_u64(raw: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&raw[..8]);
    u64::from_be_bytes(buf)
}

fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_be_bytes());
    out.extend_from_slice(&kv.mod_revision.to_be_bytes());
    out.extend_from_slice(&kv.value);
    out
}

fn decode_kv(key: &str, raw: &[u8]) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        create_revision: decode_u64(&raw[0..8]),
        mod_revision: decode_u64(&raw[8..16]),
        value: raw[16..].to_vec(),
    }
}

/// `[kind u8][key len u32][key][kv][has prev u8][prev kv]`, each kv as in `encode_kv` with a
/// length prefix.
fn encode_event(event: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(matches!(event.kind, EventKind::Delete) as u8);
    let key = event.kv.key.as_bytes();
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    for kv in std::iter::once(Some(&event.kv)).chain(std::iter::once(event.prev.as_ref())) {
        match kv {
            Some(kv) => {
                let raw = encode_kv(kv);
                out.push(1);
                out.extend_from_slice(&(raw.len() as u32).to_be_bytes());
                out.extend_from_slice(&raw);
            }
            None => out.push(0),
        }
    }
    out
}

fn decode_event(raw: &[u8]) -> Option<Event> {
    let kind = if *raw.first()? == 1 {
        EventKind::Delete
    } else {
        EventKind::Put
    };
    let key_len = u32::from_be_bytes(raw.get(1..5)?.try_into().ok()?) as usize;
    let key = std::str::from_utf8(raw.get(5..5 + key_len)?)
        .ok()?
        .to_string();
    let mut pos = 5 + key_len;
    let mut read_kv = || -> Option<Option<KeyValue>> {
        let present = *raw.get(pos)?;
        pos += 1;
        if present == 0 {
            return Some(None);
        }
        let len = u32::from_be_bytes(raw.get(pos..pos + 4)?.try_into().ok()?) as usize;
        pos += 4;
        let body = raw.get(pos..pos + len)?;
        pos += len;
        (body.len() >= 16).then(|| Some(decode_kv(&key, body)))
    };
    let kv = read_kv()??;
    let prev = read_kv()?;
    Some(Event {
        kind,
        revision: kv.mod_revision,
        kv,
        prev,
        seen: Default::default(),
    })
}

/// How a queued write decides: the stored value in, the new one (`None` deletes) out.
type Decide = Box<dyn Fn(Option<&KeyValue>) -> Result<Option<Vec<u8>>> + Send>;

/// A write waiting to be committed.
struct Request {
    key: String,
    decide: Decide,
    done: tokio::sync::oneshot::Sender<Result<Arc<Event>>>,
}

/// A writer's turn at flushing: when it ends, the gate is released and then the waiters told.
struct FlushTurn<'a> {
    gate: Option<tokio::sync::MutexGuard<'a, ()>>,
    flushed: &'a tokio::sync::watch::Sender<()>,
}

impl Drop for FlushTurn<'_> {
    fn drop(&mut self) {
        drop(self.gate.take());
        self.flushed.send_replace(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commits a write of `value` to `key` (`None` deletes) without flushing it.
    fn commit_unflushed(s: &SledStorage, key: &str, value: Option<&[u8]>) {
        let (done, _answer) = tokio::sync::oneshot::channel();
        let value = value.map(<[u8]>::to_vec);
        s.queue.lock().push_back(Request {
            key: key.to_string(),
            decide: Box::new(move |_| Ok(value.clone())),
            done,
        });
        s.commit_queued();
    }

    /// Writes committed together take consecutive revisions in their order and see each
    /// other; one refused takes no revision and fails no other.
    #[tokio::test]
    async fn a_batch_commits_each_write_on_its_own_terms() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStorage::open(dir.path(), 16).unwrap();
        let base = s.current_revision();
        let mut answers = Vec::new();
        let writes: [(&str, Decide); 3] = [
            ("/k/a", Box::new(|_| Ok(Some(b"1".to_vec())))),
            (
                "/k/a",
                Box::new(|prev| match prev {
                    Some(_) => Err(Error::AlreadyExists { key: "/k/a".into() }),
                    None => Ok(Some(b"x".to_vec())),
                }),
            ),
            (
                "/k/a",
                Box::new(|prev| Ok(Some([prev.unwrap().value.as_slice(), b"2"].concat()))),
            ),
        ];
        for (key, decide) in writes {
            let (done, answer) = tokio::sync::oneshot::channel();
            s.queue.lock().push_back(Request {
                key: key.to_string(),
                decide,
                done,
            });
            answers.push(answer);
        }
        s.commit_queued();
        let mut outcomes = Vec::new();
        for answer in answers {
            outcomes.push(answer.await.unwrap());
        }
        let first = outcomes[0].as_ref().unwrap();
        assert_eq!(first.revision, base + 1);
        assert!(matches!(outcomes[1], Err(Error::AlreadyExists { .. })));
        let third = outcomes[2].as_ref().unwrap();
        assert_eq!(
            (third.revision, third.kv.create_revision),
            (base + 2, base + 1)
        );
        assert_eq!(third.kv.value, b"12");
        assert_eq!(s.current_revision(), base + 2);
        let stored = s.get("/k/a").await.unwrap().unwrap();
        assert_eq!(
            (stored.mod_revision, stored.value),
            (base + 2, b"12".to_vec())
        );
    }

    /// A write whose writer gave up before it was committed is never made.
    #[tokio::test]
    async fn a_write_given_up_before_its_commit_is_not_made() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStorage::open(dir.path(), 16).unwrap();
        let base = s.current_revision();
        let (done, answer) = tokio::sync::oneshot::channel();
        s.queue.lock().push_back(Request {
            key: "/k/gone".to_string(),
            decide: Box::new(|_| Ok(Some(b"1".to_vec()))),
            done,
        });
        drop(answer);
        commit_unflushed(&s, "/k/kept", Some(b"2"));
        assert_eq!(s.current_revision(), base + 1);
        assert!(s.get("/k/gone").await.unwrap().is_none());
        assert!(s.get("/k/kept").await.unwrap().is_some());
    }

    /// Reads of keys no write in flight touches answer at once, at the durable revision;
    /// a read that could see a write in flight waits for its fsync.
    #[tokio::test]
    async fn reads_wait_only_for_the_writes_in_flight_they_could_see() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStorage::open(dir.path(), 16).unwrap();
        s.create("/a/1", b"1".to_vec()).await.unwrap();
        let durable = s.current_revision();
        let flushed = || s.durable.load(Ordering::SeqCst);
        // Committed but not flushed, as a write between its transaction and its fsync.
        commit_unflushed(&s, "/b/1", Some(b"2"));

        let other = s.list("/a/", None, 0).await.unwrap();
        assert_eq!((other.items.len(), other.revision), (1, durable));
        assert!(s.get("/a/1").await.unwrap().is_some());
        assert!(s.get("/b/2").await.unwrap().is_none());
        assert_eq!(
            flushed(),
            durable,
            "a read waited for a write it cannot see"
        );

        let same = s.list("/b/", None, 0).await.unwrap();
        assert_eq!((same.items.len(), same.revision), (1, durable + 1));
        assert_eq!(flushed(), durable + 1);

        // A delete in flight: the key's absence is not durable until it is.
        commit_unflushed(&s, "/a/1", None);
        assert!(s.get("/a/1").await.unwrap().is_none());
        assert_eq!(flushed(), durable + 2);
    }
}
