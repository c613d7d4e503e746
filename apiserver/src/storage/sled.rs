//! The embedded storage backend on sled.
//!
//! Three trees: `kv` (key → create/mod revision + value), `log` (revision → event, for watch
//! replay) and `meta` (the current and the compacted revision). Each write is one sled
//! transaction over all three, so the revision counter, the value and its event land together or
//! not at all: revisions stay gap-free across a crash. Writers are serialised by a lock held only
//! around the transaction and the in-memory fan-out, which keeps events in revision order; the
//! fsync happens after the lock is released and is shared by every writer waiting on it (group
//! commit), and a write is acknowledged only once it is durable.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use parking_lot::RwLock;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use tokio::sync::broadcast;

use super::{Error, Event, EventKind, KeyValue, ListResult, Result, Storage, WatchStream};

const META_REVISION: &[u8] = b"revision";
const META_COMPACTED: &[u8] = b"compacted";

pub struct SledStorage {
    db: sled::Db,
    kv: sled::Tree,
    log: sled::Tree,
    meta: sled::Tree,
    /// Held for writing around each transaction + fan-out; held for reading by lists and watch
    /// start-up so they see a revision boundary no write straddles.
    write_lock: RwLock<()>,
    revision: AtomicU64,
    compacted: AtomicU64,
    /// The highest revision known to be on disk.
    durable: AtomicU64,
    flush_gate: tokio::sync::Mutex<()>,
    events: broadcast::Sender<Arc<Event>>,
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
            events,
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
        self.revision.store(event.revision, Ordering::SeqCst);
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(event.clone());
        Ok(event)
    }

    /// Waits until `revision` is on disk, sharing one fsync among concurrent writers.
    async fn make_durable(&self, revision: u64) -> Result<()> {
        if self.durable.load(Ordering::SeqCst) >= revision {
            return Ok(());
        }
        let _gate = self.flush_gate.lock().await;
        if self.durable.load(Ordering::SeqCst) >= revision {
            return Ok(());
        }
        let target = self.revision.load(Ordering::SeqCst);
        self.db.flush_async().await.map_err(backend)?;
        self.durable.fetch_max(target, Ordering::SeqCst);
        Ok(())
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
        Ok(self
            .kv
            .get(key.as_bytes())
            .map_err(backend)?
            .map(|raw| decode_kv(key, &raw)))
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult> {
        let _guard = self.write_lock.read();
        let revision = self.current_revision();
        let mut items = Vec::new();
        let mut more = false;
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
                more = true;
                break;
            }
            let key = String::from_utf8_lossy(&k).into_owned();
            items.push(decode_kv(&key, &v));
        }
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
        let (live, boundary, replay) = {
            let _guard = self.write_lock.read();
            let compacted = self.compacted_revision();
            if after < compacted {
                return Err(Error::Compacted {
                    requested: after,
                    compacted,
                });
            }
            let boundary = self.current_revision();
            let live = self.events.subscribe();
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
            (live, boundary, replay)
        };
        let prefix = prefix.to_string();
        let live = futures::stream::unfold(live, |mut rx| async move {
            // A lagging receiver is dropped: the client re-watches from its last revision.
            match rx.recv().await {
                Ok(event) => Some((event, rx)),
                Err(_) => None,
            }
        })
        .filter(move |e| {
            futures::future::ready(e.revision > boundary && e.kv.key.starts_with(&prefix))
        });
        Ok(futures::stream::iter(replay).chain(live).boxed())
    }

    async fn compact(&self, revision: u64) -> Result<()> {
        let revision = revision.min(self.current_revision());
        let from = self.compacted_revision();
        if revision <= from {
            return Ok(());
        }
        for entry in self
            .log
            .range((from + 1).to_be_bytes()..=revision.to_be_bytes())
        {
            let (k, _) = entry.map_err(backend)?;
            self.log.remove(k).map_err(backend)?;
        }
        self.meta
            .insert(META_COMPACTED, &revision.to_be_bytes())
            .map_err(backend)?;
        self.compacted.store(revision, Ordering::SeqCst);
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
    })
}
