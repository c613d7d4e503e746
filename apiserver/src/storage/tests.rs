use std::sync::Arc;

use super::sled::SledStorage;
use super::*;
use crate::storage::conformance;

fn open(dir: &tempfile::TempDir) -> SledStorage {
    SledStorage::open(dir.path(), 1024).unwrap()
}

#[tokio::test]
async fn revisions_are_gap_free_and_guard_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    conformance::revisions_are_gap_free_and_guard_writes(&s, "/r/").await;
    // A fresh store starts at revision 1.
    assert_eq!(s.get("/r/b").await.unwrap().unwrap().mod_revision, 4);
}

#[tokio::test]
async fn list_pages_in_key_order() {
    let dir = tempfile::tempdir().unwrap();
    conformance::list_pages_in_key_order(&open(&dir), "/r/").await;
}

#[tokio::test]
async fn watch_replays_then_follows_and_respects_compaction() {
    let dir = tempfile::tempdir().unwrap();
    conformance::watch_replays_then_follows_and_respects_compaction(&open(&dir), "/r/").await;
}

#[tokio::test]
async fn reopen_keeps_revision_and_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(&dir);
        s.create("/r/a", b"1".to_vec()).await.unwrap();
        s.create("/r/b", b"1".to_vec()).await.unwrap();
        s.compact(1).await.unwrap();
    }
    let s = open(&dir);
    assert_eq!(s.current_revision(), 2);
    assert_eq!(s.compacted_revision(), 1);
    assert_eq!(s.get("/r/b").await.unwrap().unwrap().mod_revision, 2);
    assert_eq!(s.create("/r/c", vec![]).await.unwrap().mod_revision, 3);
}

#[tokio::test]
async fn slow_watcher_is_dropped_not_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStorage::open(dir.path(), 16).unwrap();
    conformance::slow_watcher_is_dropped_not_blocking(&s, "/r/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_racing_compaction_replays_fully_or_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s: Arc<dyn Storage> = Arc::new(open(&dir));
    conformance::watch_racing_compaction_replays_fully_or_is_refused(s, "/r/").await;
}
