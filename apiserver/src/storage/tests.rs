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

/// Many writers at once share flushes: each is acknowledged (and so durable), a cancelled
/// writer strands nobody, and a watcher sees every write once, in revision order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_share_flushes_and_a_cancelled_one_strands_nobody() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir));
    let start = s.current_revision();
    let mut events = s.watch("/c/", start).unwrap();
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..200 {
        let s = s.clone();
        writers.spawn(async move {
            let key = format!("/c/{i:03}");
            let write = s.create(&key, b"v".to_vec());
            if i % 7 == 0 {
                // Dropped wherever it is: before its write, waiting, or flushing for others.
                let _ = tokio::time::timeout(std::time::Duration::from_micros(50), write).await;
                None
            } else {
                Some(write.await.unwrap().mod_revision)
            }
        });
    }
    let deadline = std::time::Duration::from_secs(20);
    let mut acknowledged = Vec::new();
    while let Some(done) = tokio::time::timeout(deadline, writers.join_next())
        .await
        .expect("a writer is stuck")
    {
        acknowledged.extend(done.unwrap());
    }
    assert_eq!(acknowledged.len(), 200 - 29);
    // A cancelled write may have been made without being flushed yet: the next one flushes it.
    acknowledged.push(
        s.create("/c/last", b"v".to_vec())
            .await
            .unwrap()
            .mod_revision,
    );
    let written = s.current_revision() - start;
    let mut seen = Vec::new();
    while seen.len() < written as usize {
        let event = tokio::time::timeout(deadline, events.next())
            .await
            .expect("the watch stalled")
            .unwrap();
        seen.push(event.revision);
    }
    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");
    assert!(acknowledged.iter().all(|r| seen.contains(r)));
}
