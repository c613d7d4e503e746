//! What every backend must do, as checks any backend can be run through: the sled backend's unit
//! tests run them, and the end-to-end tests run them against a real etcd.
//!
//! Each check takes a store and a key prefix of its own, and reads revisions relative to the
//! store's current one, so the checks can share one etcd (which starts at revision 1 and is
//! written by compaction bookkeeping too). They panic on the first difference.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::{Error, EventKind, Storage};

const WAIT: Duration = Duration::from_secs(5);

/// Creates, updates and deletes are guarded by the expected revision; failed writes consume
/// no revision; each successful write takes the next one.
pub async fn revisions_are_gap_free_and_guard_writes(s: &dyn Storage, p: &str) {
    let key = format!("{p}a");
    let a = s.create(&key, b"1".to_vec()).await.unwrap();
    let base = a.mod_revision;
    assert_eq!(a.create_revision, base);
    assert!(matches!(
        s.create(&key, b"x".to_vec()).await,
        Err(Error::AlreadyExists { .. })
    ));
    let a2 = s.update(&key, b"2".to_vec(), base).await.unwrap();
    assert_eq!((a2.create_revision, a2.mod_revision), (base, base + 1));
    assert!(matches!(
        s.update(&key, b"3".to_vec(), base).await,
        Err(Error::Conflict { found, .. }) if found == base + 1
    ));
    assert!(matches!(
        s.delete(&key, Some(base)).await,
        Err(Error::Conflict { .. })
    ));
    let gone = s.delete(&key, Some(base + 1)).await.unwrap();
    assert_eq!(gone.mod_revision, base + 2);
    assert_eq!(gone.value, b"2");
    assert!(s.get(&key).await.unwrap().is_none());
    assert!(matches!(
        s.update(&key, b"4".to_vec(), base + 2).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        s.delete(&key, None).await,
        Err(Error::NotFound { .. })
    ));
    // The failed writes consumed no revision: the next write takes the one after the delete.
    let b = s.create(&format!("{p}b"), vec![]).await.unwrap();
    assert_eq!(b.mod_revision, base + 3);
    assert!(s.current_revision() >= base + 3);
}

/// Lists come back in key order, a page at a time, at a revision no older than the last write.
pub async fn list_pages_in_key_order(s: &dyn Storage, p: &str) {
    let mut last = 0;
    for name in ["c", "a", "b"] {
        last = s
            .create(&format!("{p}x/{name}"), name.as_bytes().to_vec())
            .await
            .unwrap()
            .mod_revision;
    }
    s.create(&format!("{p}y/z"), b"z".to_vec()).await.unwrap();
    let page = s.list(&format!("{p}x/"), None, 2).await.unwrap();
    let keys: Vec<_> = page.items.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, [format!("{p}x/a"), format!("{p}x/b")]);
    assert_eq!(page.items[0].value, b"a");
    assert!(page.more);
    assert!(page.revision > last);
    let rest = s
        .list(&format!("{p}x/"), Some(&format!("{p}x/b")), 2)
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].key, format!("{p}x/c"));
    assert!(!rest.more);
    assert_eq!(
        s.list(&format!("{p}x/"), None, 0)
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    assert_eq!(s.count(p).await.unwrap(), 4);
}

/// A watch replays the events after its start revision, then follows live ones; one that
/// starts before the compacted revision is refused with `Compacted`.
pub async fn watch_replays_then_follows_and_respects_compaction(s: &dyn Storage, p: &str) {
    let key = format!("{p}a");
    let first = s.create(&key, b"1".to_vec()).await.unwrap().mod_revision;
    let other = format!("{}-other/b", p.trim_end_matches('/'));
    s.create(&other, b"1".to_vec()).await.unwrap();
    let updated = s
        .update(&key, b"2".to_vec(), first)
        .await
        .unwrap()
        .mod_revision;
    let mut w = s.watch(p, first - 1).unwrap();
    let deleted = s.delete(&key, None).await.unwrap().mod_revision;
    let mut got = Vec::new();
    for _ in 0..3 {
        let e = tokio::time::timeout(WAIT, w.next()).await.unwrap().unwrap();
        got.push((e.kind, e.revision, e.kv.key.clone()));
    }
    assert_eq!(
        got,
        [
            (EventKind::Put, first, key.clone()),
            (EventKind::Put, updated, key.clone()),
            (EventKind::Delete, deleted, key.clone()),
        ]
    );
    s.compact(updated).await.unwrap();
    assert!(s.compacted_revision() >= updated);
    assert!(matches!(
        s.watch(p, updated - 1),
        Err(Error::Compacted { .. })
    ));
    let mut w = s.watch(p, updated).unwrap();
    let e = tokio::time::timeout(WAIT, w.next()).await.unwrap().unwrap();
    assert_eq!((e.kind, e.revision), (EventKind::Delete, deleted));
    assert_eq!(e.kv.mod_revision, deleted);
    assert_eq!(e.prev.as_ref().unwrap().value, b"2");
}

/// A watcher that does not read is cut off after the store's watch buffer (which must be far
/// below 100 for this check), never holding writers back.
pub async fn slow_watcher_is_dropped_not_blocking(s: &dyn Storage, p: &str) {
    let mut w = s.watch(p, s.current_revision()).unwrap();
    for i in 0..100 {
        tokio::time::timeout(WAIT, s.create(&format!("{p}{i}"), vec![]))
            .await
            .expect("a write waited for a slow watcher")
            .unwrap();
    }
    let mut seen = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(2), w.next()).await {
        seen += 1;
    }
    assert!(seen < 100, "a lagging watcher must be cut off, saw {seen}");
}

/// A watch starting just after the compacted revision while compaction runs gets either the
/// whole history after its start or `Compacted` (410), never a replay with a hole in it.
pub async fn watch_racing_compaction_replays_fully_or_is_refused(s: Arc<dyn Storage>, p: &str) {
    let n: u64 = 1200;
    let keys: Vec<String> = (0..n).map(|i| format!("{p}{i:05}")).collect();
    let mut revisions = Vec::new();
    for chunk in keys.chunks(100) {
        let written = futures::future::try_join_all(chunk.iter().map(|k| s.create(k, vec![])))
            .await
            .unwrap();
        revisions.extend(written.iter().map(|kv| kv.mod_revision));
    }
    revisions.sort_unstable();
    let last = *revisions.last().unwrap();
    // The revisions of this prefix's events after `start`, as a full replay delivers them.
    let expected_after =
        |start: u64| -> Vec<u64> { revisions.iter().copied().filter(|&r| r > start).collect() };
    let compactor = {
        let s = s.clone();
        let targets: Vec<u64> = revisions.iter().copied().step_by(3).collect();
        tokio::spawn(async move {
            for target in targets {
                s.compact(target).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let (mut full, mut refused) = (0, 0);
    while !compactor.is_finished() {
        let start = s.compacted_revision();
        match s.watch(p, start) {
            Err(Error::Compacted { .. }) => refused += 1,
            Err(e) => panic!("watch from {start}: {e}"),
            Ok(w) => {
                let expected = expected_after(start);
                let got: Vec<u64> =
                    tokio::time::timeout(WAIT, w.take(expected.len()).collect::<Vec<_>>())
                        .await
                        .unwrap_or_else(|_| panic!("watch from {start}: replay stalled"))
                        .into_iter()
                        .map(|e| e.revision)
                        .collect();
                // A backend that learns of the compaction only after the watch started (etcd)
                // may end the stream early; what it delivered has no hole, and a retry from
                // where it stopped is refused.
                assert_eq!(
                    got,
                    expected[..got.len()],
                    "watch from {start} skipped revisions"
                );
                if got.len() == expected.len() {
                    full += 1;
                } else {
                    let resume = got.last().copied().unwrap_or(start);
                    assert!(
                        matches!(s.watch(p, resume), Err(Error::Compacted { .. })),
                        "watch from {start} ended after {} of {} events, and a retry from \
                         {resume} was not refused",
                        got.len(),
                        expected.len()
                    );
                    refused += 1;
                }
            }
        }
    }
    compactor.await.unwrap();
    // Every watch may have lost its race; one started after the compaction must replay.
    let start = s.compacted_revision();
    assert!(start <= last);
    let expected = expected_after(start);
    let w = s.watch(p, start).unwrap();
    let got: Vec<u64> = tokio::time::timeout(WAIT, w.take(expected.len()).collect::<Vec<_>>())
        .await
        .expect("the replay after the compaction ended early")
        .into_iter()
        .map(|e| e.revision)
        .collect();
    assert_eq!(got, expected);
    eprintln!("{full} watches replayed fully and {refused} were refused during the compaction");
}
