//! etcd as the datastore, against a real etcd member (Debian's `etcd-server`) on loopback: the
//! storage conformance checks the sled backend passes, a server whose objects `etcdctl` shows
//! under kube-apiserver's keys with `resourceVersion` = `mod_revision`, and the failures a
//! user meets — an unreachable endpoint at start, and etcd going away under a running server.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use ekube_apiserver::storage::Storage;
use ekube_apiserver::storage::conformance;
use ekube_apiserver::storage::etcd::{Endpoints, EtcdStorage};
use ekube_tests::etcd::Etcd;
use ekube_tests::{ServerProcess, ekube_bin, free_port, ok, stderr, wait_for};

async fn connect(etcd: &Etcd, watch_buffer: usize) -> EtcdStorage {
    let endpoints = Endpoints {
        urls: vec![etcd.url()],
        ..Endpoints::default()
    };
    EtcdStorage::connect(&endpoints, Duration::from_secs(5), watch_buffer)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_backend_passes_the_storage_conformance_checks() {
    if !Etcd::available() {
        return;
    }
    let etcd = Etcd::start().unwrap();
    let s = connect(&etcd, 1024).await;
    conformance::revisions_are_gap_free_and_guard_writes(&s, "/registry/t1/").await;
    conformance::list_pages_in_key_order(&s, "/registry/t2/").await;
    conformance::watch_replays_then_follows_and_respects_compaction(&s, "/registry/t3/").await;
    conformance::slow_watcher_is_dropped_not_blocking(&connect(&etcd, 16).await, "/registry/t4/")
        .await;
    let shared: Arc<dyn Storage> = Arc::new(connect(&etcd, 4096).await);
    conformance::watch_racing_compaction_replays_fully_or_is_refused(shared, "/registry/t5/").await;

    // A second server on the same etcd sees the revision and the compaction the first made.
    let again = connect(&etcd, 1024).await;
    assert!(again.current_revision() >= s.current_revision());
    assert!(again.compacted_revision() > 0);
    assert!(matches!(
        again.watch("/registry/t3/", 1),
        Err(ekube_apiserver::storage::Error::Compacted { .. })
    ));
    // The built-in resources' keys are kube-apiserver's, as etcdctl sees them.
    s.create("/registry/core/pods/default/web", b"{}".to_vec())
        .await
        .unwrap();
    let keys = etcd.etcdctl(&["get", "--prefix", "--keys-only", "/registry/pods/"]);
    assert_eq!(ok(keys).trim(), "/registry/pods/default/web");
    let listed = s.list("/registry/core/pods/", None, 0).await.unwrap();
    assert_eq!(listed.items[0].key, "/registry/core/pods/default/web");
}

/// `etcdctl get --prefix <key> -w json`: (key, mod_revision) of each stored key.
fn etcd_revisions(etcd: &Etcd, prefix: &str) -> Vec<(String, u64)> {
    let out = ok(etcd.etcdctl(&["get", "--prefix", prefix, "-w", "json"]));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    json["kvs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|kv| {
            let key = b64.decode(kv["key"].as_str().unwrap()).unwrap();
            (
                String::from_utf8(key).unwrap(),
                kv["mod_revision"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn server_on_etcd_stores_what_etcdctl_shows() {
    if !Etcd::available() {
        return;
    }
    let etcd = Etcd::start().unwrap();
    let mut s = ServerProcess::start(&["--datastore-endpoint", &etcd.url()]).unwrap();
    assert!(
        !s.dir.join("db").exists(),
        "an etcd-backed server keeps no sled database"
    );
    ok(s.kubectl(&["run", "web", "--image=nginx:alpine", "--restart=Never"]));
    ok(s.kubectl(&["create", "configmap", "settings", "--from-literal=a=1"]));
    let pod: serde_json::Value =
        serde_json::from_str(&ok(s.kubectl(&["get", "pod", "web", "-o", "json"]))).unwrap();
    let rv: u64 = pod["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let stored = etcd_revisions(&etcd, "/registry/pods/default/");
    assert_eq!(stored, [("/registry/pods/default/web".to_string(), rv)]);
    let value = ok(etcd.etcdctl(&["get", "--print-value-only", "/registry/pods/default/web"]));
    let value: serde_json::Value = serde_json::from_str(value.trim()).unwrap();
    assert_eq!(value["metadata"]["uid"], pod["metadata"]["uid"]);
    assert_eq!(
        etcd_revisions(&etcd, "/registry/configmaps/default/settings").len(),
        1
    );

    // A list's resourceVersion is etcd's revision at the time of the list.
    let list: serde_json::Value = serde_json::from_str(&ok(s.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods",
    ])))
    .unwrap();
    let list_rv: u64 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(list_rv >= rv);

    // Restarted, the server serves what etcd holds.
    s.kill();
    s.spawn().unwrap();
    let names = ok(s.kubectl(&["get", "pods,configmaps", "-o", "name"]));
    assert!(names.contains("pod/web"), "{names}");
    assert!(names.contains("configmap/settings"), "{names}");
    let after: serde_json::Value =
        serde_json::from_str(&ok(s.kubectl(&["get", "pod", "web", "-o", "json"]))).unwrap();
    assert_eq!(after["metadata"]["uid"], pod["metadata"]["uid"]);
}

#[test]
fn unreachable_etcd_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let out = Command::new(ekube_bin())
        .args(["server", "--bind-address", "127.0.0.1", "--secure-port"])
        .arg(free_port().to_string())
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--datastore-endpoint", &url, "--datastore-timeout", "3s"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&url), "the error names the endpoint: {err}");
    assert!(started.elapsed() < Duration::from_secs(30), "{err}");

    for (args, want) in [
        (
            vec!["--datastore-endpoint", "127.0.0.1:2379"],
            "not an http:// or https:// URL",
        ),
        (
            vec!["--datastore-endpoint", "https://127.0.0.1:2379"],
            "need --datastore-cafile",
        ),
        (
            vec!["--storage-backend", "etcd3"],
            "--storage-backend=etcd3 needs --datastore-endpoint",
        ),
    ] {
        let out = Command::new(ekube_bin())
            .args(["server", "--data-dir"])
            .arg(dir.path())
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn losing_etcd_turns_requests_into_errors_and_recovers() {
    if !Etcd::available() {
        return;
    }
    let mut etcd = Etcd::start().unwrap();
    let s = ServerProcess::start(&[
        "--datastore-endpoint",
        &etcd.url(),
        "--datastore-timeout",
        "2s",
    ])
    .unwrap();
    ok(s.kubectl(&["create", "configmap", "before"]));
    etcd.kill();

    let started = Instant::now();
    let out = s.kubectl(&[
        "create",
        "configmap",
        "during",
        "--request-timeout=30s",
        "-v=6",
    ]);
    let took = started.elapsed();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("503 Service Unavailable") || err.contains("504 Gateway Timeout"),
        "a 503 or 504 Status, not a hang or a dropped connection: {err}"
    );
    assert!(err.contains(&etcd.url()), "{err}");
    assert!(took < Duration::from_secs(30), "took {took:?}: {err}");

    etcd.spawn().unwrap();
    wait_for(Duration::from_secs(30), "writes to succeed again", || {
        Ok(s.kubectl(&["create", "configmap", "after"])
            .status
            .success())
    })
    .unwrap();
    let names = ok(s.kubectl(&["get", "configmaps", "-o", "name"]));
    assert!(names.contains("configmap/before") && names.contains("configmap/after"));
    assert!(!names.contains("configmap/during"), "{names}");
}

/// What `kubectl get` shows of `kinds` in every namespace, without the resourceVersions a
/// migration changes.
fn snapshot(s: &ServerProcess, kinds: &str) -> serde_json::Value {
    let mut list: serde_json::Value =
        serde_json::from_str(&ok(s.kubectl(&["get", kinds, "-A", "-o", "json"]))).unwrap();
    for item in list["items"].as_array_mut().unwrap() {
        item["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("resourceVersion");
    }
    list["items"].take()
}

const APP: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx:alpine}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {mode: production}
---
apiVersion: v1
kind: Secret
metadata: {name: key, namespace: shop}
stringData: {key: hunter2}
";

#[test]
fn datastore_migrate_moves_a_cluster_from_sled_to_etcd_and_back() {
    if !Etcd::available() {
        return;
    }
    let etcd = Etcd::start().unwrap();
    let mut s = ServerProcess::start(&[]).unwrap();
    ok(s.kubectl_stdin(&["apply", "-f", "-"], Some(APP)));
    wait_for(Duration::from_secs(30), "the Deployment's pods", || {
        Ok(ok(s.kubectl(&["get", "pods", "-n", "shop", "-o", "name"]))
            .lines()
            .count()
            == 2)
    })
    .unwrap();
    // Let the controllers settle (the Deployment's status), so what follows compares objects
    // no controller is still writing.
    std::thread::sleep(Duration::from_secs(3));
    let kinds = "all,configmaps,secrets,serviceaccounts,roles,rolebindings";
    let before = snapshot(&s, kinds);
    s.kill();

    let migrate = |from: &str, to: &str| {
        Command::new(ekube_bin())
            .args(["datastore", "migrate", "--from", from, "--to", to])
            .output()
            .unwrap()
    };
    let sled = format!("sled:{}", s.dir.display());
    let copied = ok(migrate(&sled, &etcd.url()));
    assert!(copied.starts_with("copied "), "{copied}");
    // The target now holds objects: a second migration into it is refused, changing nothing.
    let again = migrate(&sled, &etcd.url());
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already holds"),
        "{}",
        stderr(&again)
    );

    s.spawn_with(&["--datastore-endpoint", &etcd.url()])
        .unwrap();
    assert_eq!(
        snapshot(&s, kinds),
        before,
        "the etcd-backed server shows the same objects"
    );
    let pod_keys = ok(etcd.etcdctl(&["get", "--prefix", "--keys-only", "/registry/pods/shop/"]));
    assert_eq!(
        pod_keys.lines().filter(|l| !l.is_empty()).count(),
        2,
        "{pod_keys}"
    );
    s.kill();

    // And back, into a new sled database.
    let back = tempfile::tempdir().unwrap();
    let copied_back = ok(migrate(
        &etcd.url(),
        &format!("sled:{}", back.path().display()),
    ));
    let count = |line: &str| -> u64 { line.split_whitespace().nth(1).unwrap().parse().unwrap() };
    assert!(
        count(&copied_back) >= count(&copied),
        "{copied_back} after {copied}"
    );
    let missing = migrate("sled:/nonexistent", &etcd.url());
    assert!(
        stderr(&missing).contains("no sled database"),
        "{}",
        stderr(&missing)
    );
}
