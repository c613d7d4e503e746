//! Storage: the one trait every backend implements, shaped like etcd's KV + watch API.
//!
//! Keys are strings (`/registry/<group>/<plural>/<namespace>/<name>`), values are opaque bytes
//! (the object's JSON without `resourceVersion`, which is the key's `mod_revision`). Every write
//! bumps one cluster-wide, gap-free revision; an event log keyed by revision serves watches from
//! any revision that has not been compacted. `sled` is the embedded default; `etcd` implements the
//! same trait with one etcd call per method.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod encrypted;
pub mod etcd;
pub mod migrate;
pub mod sled;

use std::sync::Arc;

use futures::stream::BoxStream;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    #[error("key {key} not found")]
    NotFound { key: String },
    #[error("key {key} was modified: expected revision {expected}, found {found}")]
    Conflict {
        key: String,
        expected: u64,
        found: u64,
    },
    #[error("revision {requested} has been compacted (oldest available is {compacted})")]
    Compacted { requested: u64, compacted: u64 },
    /// The datastore cannot be reached or has no quorum (503).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The datastore did not answer in time (504).
    #[error("storage timed out: {0}")]
    Timeout(String),
    #[error("storage backend: {0}")]
    Backend(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One stored key with the revisions that created and last modified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change, as replayed to watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// The revision this change created.
    pub revision: u64,
    /// For a put: the new value. For a delete: the value that was deleted (with `mod_revision`
    /// set to the deleting revision, as etcd reports it).
    pub kv: KeyValue,
    /// The value before this change, if there was one.
    pub prev: Option<KeyValue>,
    /// What watchers made of this change, kept for the ones that come after (see
    /// [`crate::watch::Seen`]).
    pub seen: crate::watch::Seen,
}

/// A list result: items in key order, the revision the list is consistent at, and whether more
/// keys remain after the last one returned.
#[derive(Debug, Clone)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    pub revision: u64,
    pub more: bool,
}

/// A watch: replayed events after the start revision, then live ones. The stream ends if the
/// watcher falls too far behind (it must re-list), never blocking writers.
pub type WatchStream = BoxStream<'static, Arc<Event>>;

#[async_trait::async_trait]
pub trait Storage: Send + Sync + 'static {
    /// The newest revision.
    fn current_revision(&self) -> u64;
    /// The oldest revision a watch can still start after.
    fn compacted_revision(&self) -> u64;
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    /// Keys under `prefix` strictly after `start_after`, at most `limit` (0 = all).
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult>;
    async fn count(&self, prefix: &str) -> Result<usize>;
    /// Creates `key`; fails with `AlreadyExists` if present. Returns the new revision.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;
    /// Replaces `key` if its `mod_revision` is `expected`. Returns the stored value.
    async fn update(&self, key: &str, value: Vec<u8>, expected: u64) -> Result<KeyValue>;
    /// Deletes `key` if its `mod_revision` is `expected` (any revision when `None`). Returns the
    /// deleted value with the deleting revision as `mod_revision`.
    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<KeyValue>;
    /// Events under `prefix` with revision greater than `after`.
    fn watch(&self, prefix: &str, after: u64) -> Result<WatchStream>;
    /// Forgets the event log up to and including `revision`.
    async fn compact(&self, revision: u64) -> Result<()>;
}

#[cfg(test)]
mod tests;
