//! The embedded storage backend on sled.
//!
//! Three trees: `kv` (key → create/mod revision + value), `log` (revision → event, for watch
//! replay) and `meta` (the current and the compacted revision). Each write is one sled
//! transaction over all three, so the revision counter, the value and its event land together or
//! not at all: revisions stay gap-free across a crash. Writers are serialised by a lock held only
//! around the transaction, which queues each event in revision order; the fsync happens after
//! the lock is released and is shared by every writer waiting on it (group commit).
//!
//! Nothing is visible before it is durable: the fsync publishes the events it made durable (watch
//! fan-out) and only then are they acknowledged, and reads wait for the fsync covering the
//! revision they read at. A crash can take back only writes nobody has seen.

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
            pending: Mutex::new(VecDeque::new()),
            publish: Mutex::new(()),
            events,
            crash_before_fsync: std::env::var(CRASH_BEFORE_FSYNC_ENV)
                .ok()
                .filter(|k| !k.is_empty()),
        })
    }

    /// Runs one write: `decide` sees the current value and returns the new one (`None` deletes).
    fn write<F>(&self, key: &str, decide: F) -> Result<Arc<Event>>
    where
        F: Fn(Option<&KeyValue>) -> Result<Option<Vec<u8>>>,
    {
        let _guard = self.write_lock.write();
        let result = (&self.kv, &self.log, &self.meta).transaction(|(kv, log, meta)| {
            let prev = kv.get(key.as_bytes())?.map(|raw| decode_kv(key, &raw));
            let next = decide(prev.as_ref()).map_err(ConflictableTransactionError::Abort)?;
            let revision = meta
                .get(META_REVISION)?
                .map(|v| decode_u64(&v))
                .unwrap_or(0)
                + 1;
            meta.insert(META_REVISION, &revision.to_be_bytes())?;
            let event = match next {
                Some(value) => {
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
                None => {
                    let Some(old) = prev else {
                        return Err(ConflictableTransactionError::Abort(Error::NotFound {
                            key: key.to_string(),
                        }));
                    };
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
            };
            log.insert(&revision.to_be_bytes(), encode_event(&event))?;
            Ok(event)
        });
        let event = match result {
            Ok(event) => Arc::new(event),
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(backend(e)),
        };
        // Queued before the revision is published, so whoever flushes up to it finds its event.
        self.pending.lock().push_back(event.clone());
        self.revision.store(event.revision, Ordering::SeqCst);
        Ok(event)
    }

    /// Waits until `revision` is on disk and fanned out, sharing one fsync among concurrent
    /// writers and readers.
    async fn make_durable(&self, revision: u64) -> Result<()> {
        loop {
            // Subscribed before looking, so a flush that ends in between still wakes this one.
            let mut flushed = self.flushed.subscribe();
            if self.durable.load(Ordering::SeqCst) >= revision {
                return Ok(());
            }
            let Ok(gate) = self.flush_gate.try_lock() else {
                // Another writer is flushing, perhaps from before this revision was written:
                // wait for it to end and look again.
                let _ = flushed.changed().await;
                continue;
            };
            // Releases the gate and tells the waiters however this flush ends, an error or a
            // cancelled request included (one of them then flushes in its turn).
            let _turn = FlushTurn {
                gate: Some(gate),
                flushed: &self.flushed,
            };
            return self.flush().await;
        }
    }

    /// Flushes every revision written so far and publishes their events; the caller holds the
    /// flush gate.
    async fn flush(&self) -> Result<()> {
        let target = self.revision.load(Ordering::SeqCst);
        self.crash_if_injected(target).await;
        self.db.flush_async().await.map_err(backend)?;
        let _publish = self.publish.lock();
        let mut pending = self.pending.lock();
        while pending.front().is_some_and(|e| e.revision <= target) {
            let event = pending.pop_front().expect("front exists");
            // No receivers is fine: nobody is watching.
            let _ = self.events.send(event);
        }
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

    /// Runs `read` where no write is half-done, then waits until what it saw is durable.
    async fn read_durable<T>(&self, read: impl FnOnce() -> Result<T>) -> Result<(T, u64)> {
        let (value, revision) = {
            let _guard = self.write_lock.read();
            (read()?, self.current_revision())
        };
        self.make_durable(revision).await?;
        Ok((value, revision))
    }

    async fn committed(&self, event: Arc<Event>) -> Result<KeyValue> {
        self.make_durable(event.revision).await?;
        Ok(event.kv.clone())
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
            (value, self.current_revision())
        };
        // A value is durable once its own revision is (writers in flight elsewhere need not
        // be waited for); an absence could be a delete in flight, so it waits for them all.
        self.make_durable(value.as_ref().map_or(revision, |kv| kv.mod_revision))
            .await?;
        Ok(value)
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult> {
        let ((items, more), revision) = self
            .read_durable(|| {
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
        let event = self.write(key, |prev| match prev {
            Some(_) => Err(Error::AlreadyExists {
                key: key.to_string(),
            }),
            None => Ok(Some(value.clone())),
        })?;
        self.committed(event).await
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: u64) -> Result<KeyValue> {
        let event = self.write(key, |prev| match prev {
            None => Err(Error::NotFound {
                key: key.to_string(),
            }),
            Some(p) if p.mod_revision != expected => Err(Error::Conflict {
                key: key.to_string(),
                expected,
                found: p.mod_revision,
            }),
            Some(_) => Ok(Some(value.clone())),
        })?;
        self.committed(event).await
    }

    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<KeyValue> {
        let event = self.write(key, |prev| match (prev, expected) {
            (None, _) => Err(Error::NotFound {
                key: key.to_string(),
            }),
            (Some(p), Some(rev)) if p.mod_revision != rev => Err(Error::Conflict {
                key: key.to_string(),
                expected: rev,
                found: p.mod_revision,
            }),
            _ => Ok(None),
        })?;
        self.committed(event).await
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
