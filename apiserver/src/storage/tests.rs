use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::sled::SledStorage;
use super::*;

fn open(dir: &tempfile::TempDir) -> SledStorage {
    SledStorage::open(dir.path(), 1024).unwrap()
}

#[tokio::test]
async fn revisions_are_gap_free_and_guard_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let a = s.create("/r/a", b"1".to_vec()).await.unwrap();
    assert_eq!((a.create_revision, a.mod_revision), (1, 1));
    assert!(matches!(
        s.create("/r/a", b"x".to_vec()).await,
        Err(Error::AlreadyExists { .. })
    ));
    let a2 = s.update("/r/a", b"2".to_vec(), 1).await.unwrap();
    assert_eq!((a2.create_revision, a2.mod_revision), (1, 2));
    assert!(matches!(
        s.update("/r/a", b"3".to_vec(), 1).await,
        Err(Error::Conflict { found: 2, .. })
    ));
    assert!(matches!(
        s.delete("/r/a", Some(1)).await,
        Err(Error::Conflict { .. })
    ));
    let gone = s.delete("/r/a", Some(2)).await.unwrap();
    assert_eq!(gone.mod_revision, 3);
    assert!(s.get("/r/a").await.unwrap().is_none());
    assert!(matches!(
        s.update("/r/a", b"4".to_vec(), 3).await,
        Err(Error::NotFound { .. })
    ));
    // Failed writes consumed no revision.
    assert_eq!(s.current_revision(), 3);
}

#[tokio::test]
async fn list_pages_in_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    for name in ["c", "a", "b"] {
        s.create(&format!("/r/x/{name}"), name.as_bytes().to_vec())
            .await
            .unwrap();
    }
    s.create("/r/y/z", b"z".to_vec()).await.unwrap();
    let page = s.list("/r/x/", None, 2).await.unwrap();
    let keys: Vec<_> = page.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/r/x/a", "/r/x/b"]);
    assert!(page.more);
    let rest = s.list("/r/x/", Some("/r/x/b"), 2).await.unwrap();
    assert_eq!(rest.items.len(), 1);
    assert!(!rest.more);
    assert_eq!(s.count("/r/").await.unwrap(), 4);
}

#[tokio::test]
async fn watch_replays_then_follows_and_respects_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.create("/r/a", b"1".to_vec()).await.unwrap();
    s.create("/other/b", b"1".to_vec()).await.unwrap();
    s.update("/r/a", b"2".to_vec(), 1).await.unwrap();
    let mut w = s.watch("/r/", 0).unwrap();
    s.delete("/r/a", None).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let e = tokio::time::timeout(Duration::from_secs(2), w.next())
            .await
            .unwrap()
            .unwrap();
        got.push((e.kind, e.revision));
    }
    assert_eq!(
        got,
        [
            (EventKind::Put, 1),
            (EventKind::Put, 3),
            (EventKind::Delete, 4)
        ]
    );
    s.compact(3).await.unwrap();
    assert!(matches!(
        s.watch("/r/", 2),
        Err(Error::Compacted { compacted: 3, .. })
    ));
    let mut w = s.watch("/r/", 3).unwrap();
    let e = tokio::time::timeout(Duration::from_secs(2), w.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.revision, 4);
    assert_eq!(e.prev.as_ref().unwrap().value, b"2");
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
    let mut w = s.watch("/r/", 0).unwrap();
    for i in 0..100 {
        s.create(&format!("/r/{i}"), vec![]).await.unwrap();
    }
    let mut seen = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(2), w.next()).await {
        seen += 1;
    }
    assert!(seen < 100, "a lagging watcher must be cut off, saw {seen}");
}

/// A watch starting just after the compacted revision while compaction runs gets either the
/// whole history after its start or `Compacted` (410), never a replay with a hole in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_racing_compaction_replays_fully_or_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir));
    let n: u64 = 1200;
    let keys: Vec<String> = (0..n).map(|i| format!("/r/{i:05}")).collect();
    for chunk in keys.chunks(100) {
        futures::future::try_join_all(chunk.iter().map(|k| s.create(k, vec![])))
            .await
            .unwrap();
    }
    assert_eq!(s.current_revision(), n);
    let compactor = {
        let s = s.clone();
        tokio::spawn(async move {
            for target in (0..n).step_by(3) {
                s.compact(target).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let (mut full, mut refused) = (0, 0);
    while !compactor.is_finished() {
        let start = s.compacted_revision();
        match s.watch("/r/", start) {
            Err(Error::Compacted { .. }) => refused += 1,
            Err(e) => panic!("watch from {start}: {e}"),
            Ok(w) => {
                let want = (n - start) as usize;
                let got: Vec<u64> =
                    tokio::time::timeout(Duration::from_secs(5), w.take(want).collect::<Vec<_>>())
                        .await
                        .unwrap_or_else(|_| panic!("watch from {start}: replay ended early"))
                        .iter()
                        .map(|e| e.revision)
                        .collect();
                let expected: Vec<u64> = (start + 1..=n).collect();
                assert_eq!(got, expected, "watch from {start} skipped revisions");
                full += 1;
            }
        }
    }
    compactor.await.unwrap();
    // Every watch may have lost its race; one started after the compaction must replay.
    let start = s.compacted_revision();
    let w = s.watch("/r/", start).unwrap();
    let got: Vec<u64> = tokio::time::timeout(
        Duration::from_secs(5),
        w.take((n - start) as usize).collect::<Vec<_>>(),
    )
    .await
    .expect("the replay after the compaction ended early")
    .iter()
    .map(|e| e.revision)
    .collect();
    assert_eq!(got, (start + 1..=n).collect::<Vec<_>>());
    eprintln!("{full} watches replayed fully and {refused} were refused during the compaction");
}
