//! etcd as the datastore, against a real etcd member (Debian's `etcd-server`) on loopback: the
//! storage conformance checks the sled backend passes, a server whose objects `etcdctl` shows
//! under kube-apiserver's keys with `resourceVersion` = `mod_revision`, and the failures a
//! user meets — an unreachable endpoint at start, and etcd going away under a running server.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use ekube_api::balancer::Balancer;
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

/// Runs `ekube server` on loopback with `args` (and a 3 s datastore timeout), expecting it to
/// fail at start; returns what it printed.
fn server_fails(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(ekube_bin())
        .args(["server", "--bind-address", "127.0.0.1", "--secure-port"])
        .arg(free_port().to_string())
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--datastore-timeout", "3s"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} started");
    stderr(&out)
}

#[test]
fn unreachable_etcd_is_a_clear_error_at_start() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let err = server_fails(&["--datastore-endpoint", &url]);
    assert!(err.contains(&url), "the error names the endpoint: {err}");
    assert!(started.elapsed() < Duration::from_secs(30), "{err}");

    for (args, want) in [
        (
            ["--datastore-endpoint", "127.0.0.1:2379"],
            "not an http:// or https:// URL",
        ),
        (
            ["--datastore-endpoint", "https://127.0.0.1:2379"],
            "need --datastore-cafile",
        ),
        (
            ["--storage-backend", "etcd3"],
            "--storage-backend=etcd3 needs --datastore-endpoint",
        ),
    ] {
        let err = server_fails(&args);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// etcd with TLS and client certificates, as kubeadm's external etcd runs: the server connects
/// with `--datastore-cafile/-certfile/-keyfile`; a CA that did not sign etcd's certificate is
/// an error at start that names the file.
#[test]
fn server_reaches_etcd_over_tls_with_a_client_certificate() {
    if !Etcd::available() {
        return;
    }
    let etcd = Etcd::start_tls().unwrap();
    let tls = etcd.tls.clone().unwrap();
    let (ca, cert, key) = (
        tls.ca.display().to_string(),
        tls.cert.display().to_string(),
        tls.key.display().to_string(),
    );
    let s = ServerProcess::start(&[
        "--datastore-endpoint",
        &etcd.url(),
        "--datastore-cafile",
        &ca,
        "--datastore-certfile",
        &cert,
        "--datastore-keyfile",
        &key,
    ])
    .unwrap();
    ok(s.kubectl(&["create", "configmap", "over-tls"]));
    let keys = ok(etcd.etcdctl(&[
        "get",
        "--prefix",
        "--keys-only",
        "/registry/configmaps/default/over-tls",
    ]));
    assert_eq!(keys.trim(), "/registry/configmaps/default/over-tls");

    // Another CA: etcd's certificate does not verify, and the error says against what.
    let other = tempfile::tempdir().unwrap();
    ekube_apiserver::pki::Ca::load_or_create(other.path()).unwrap();
    let wrong_ca = other.path().join("ca.crt").display().to_string();
    let err = server_fails(&[
        "--datastore-endpoint",
        &etcd.url(),
        "--datastore-cafile",
        &wrong_ca,
        "--datastore-certfile",
        &cert,
        "--datastore-keyfile",
        &key,
    ]);
    assert!(
        err.contains(&wrong_ca),
        "the error names the CA file: {err}"
    );
    assert!(err.contains("certificate"), "{err}");

    // No client certificate: etcd refuses the connection.
    let err = server_fails(&[
        "--datastore-endpoint",
        &etcd.url(),
        "--datastore-cafile",
        &ca,
    ]);
    assert!(err.contains(&etcd.url()), "{err}");
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
    // The controllers settle (the Deployment's status, the pods' conditions): compare what
    // two looks a second apart show, so the comparison below sees objects no one writes.
    let kinds = "all,configmaps,secrets,serviceaccounts,roles,rolebindings";
    let mut before = snapshot(&s, kinds);
    wait_for(
        Duration::from_secs(30),
        "the objects to stop changing",
        || {
            std::thread::sleep(Duration::from_secs(1));
            let now = snapshot(&s, kinds);
            let settled = now == before;
            before = now;
            Ok(settled)
        },
    )
    .unwrap();
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

    // Without re-applying the DNS add-on: a re-apply of its unchanged Deployment bumps
    // `metadata.generation` (on sled as well), which is not the migration's doing.
    s.spawn_with(&["--datastore-endpoint", &etcd.url(), "--disable", "coredns"])
        .unwrap();
    let after = snapshot(&s, kinds);
    let names = |list: &serde_json::Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|o| {
                let m = &o["metadata"];
                format!("{}/{}/{}", o["kind"], m["namespace"], m["name"])
            })
            .collect()
    };
    assert_eq!(names(&after), names(&before));
    for (was, now) in before
        .as_array()
        .unwrap()
        .iter()
        .zip(after.as_array().unwrap())
    {
        assert_eq!(
            was,
            now,
            "the etcd-backed server shows another object:\n{}\n{}",
            serde_json::to_string_pretty(was).unwrap(),
            serde_json::to_string_pretty(now).unwrap()
        );
    }
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

/// `kubectl get -o jsonpath=<path>` of one object.
fn jsonpath(s: &ServerProcess, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let path = format!("jsonpath={path}");
    args.extend(["-o", &path]);
    ok(s.kubectl(&args))
}

fn lease_holder(s: &ServerProcess, lease: &str) -> String {
    jsonpath(
        s,
        &["lease", "-n", "kube-system", lease],
        "{.spec.holderIdentity}",
    )
}

fn services(prefix: &str, count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {prefix}{i}}}\n\
                 spec: {{type: NodePort, selector: {{app: x}}, ports: [{{port: 80}}]}}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Two servers (on 127.0.0.2 and 127.0.0.3, one port, one CA) sharing one etcd: both serve
/// the same objects, the `kubernetes` EndpointSlice lists both, Services created through both
/// at once never share a cluster IP or node port, one controller-manager and one scheduler act
/// (the Leases' holders), and when the leading server is killed the other takes the Leases over
/// and its controllers act.
#[test]
fn two_servers_on_one_etcd_share_the_work() {
    if !Etcd::available() {
        return;
    }
    let etcd = Etcd::start().unwrap();
    let port = free_port();
    let flags = ["--datastore-endpoint", &etcd.url()];
    let mut a = ServerProcess::prepare_with_env(&flags, &[]).unwrap();
    (a.address, a.port) = ([127, 0, 0, 2].into(), port);
    a.spawn().unwrap();
    // Serving, so its keys are written.
    ok(a.kubectl(&["get", "namespaces"]));
    let mut b = ServerProcess::prepare_with_env(&flags, &[]).unwrap();
    (b.address, b.port) = ([127, 0, 0, 3].into(), port);
    // One cluster: the second server gets the first one's CA and ServiceAccount keys (what
    // `kubeadm join --control-plane` copies), and issues its own serving certificate.
    std::fs::create_dir_all(b.dir.join("pki")).unwrap();
    for file in ["ca.crt", "ca.key", "sa.key", "sa.pub"] {
        let from = a.dir.join("pki").join(file);
        std::fs::copy(&from, b.dir.join("pki").join(file))
            .unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
    }
    b.spawn().unwrap();

    ok(a.kubectl(&["create", "configmap", "from-a"]));
    ok(b.kubectl(&["get", "configmap", "from-a"]));
    wait_for(
        Duration::from_secs(30),
        "both servers in the kubernetes EndpointSlice",
        || {
            let addresses = jsonpath(
                &a,
                &["endpointslice", "kubernetes"],
                "{.endpoints[*].addresses[0]}",
            );
            Ok(addresses == "127.0.0.2 127.0.0.3")
        },
    )
    .unwrap();
    // A node's load balancer, told of the first server only, learns the second from the
    // EndpointSlice.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let first = std::net::SocketAddr::from(([127, 0, 0, 2], port));
    let lb = rt
        .block_on(Balancer::start("127.0.0.1:0".parse().unwrap(), vec![first]))
        .unwrap();
    let through_lb = rt
        .block_on(ekube_api::client::from_kubeconfig_at(
            &a.kubeconfig(),
            Some(&lb.url()),
        ))
        .unwrap();
    rt.spawn(lb.clone().follow_endpoints(through_lb));
    wait_for(
        Duration::from_secs(15),
        "the balancer to learn both servers",
        || Ok(lb.servers().len() == 2),
    )
    .unwrap();
    let via_lb = || b.kubectl(&["--server", &lb.url(), "get", "configmap", "from-a"]);
    ok(via_lb());

    let a_identity = format!("127.0.0.2:{port}");
    for lease in ["kube-controller-manager", "kube-scheduler"] {
        let holder = lease_holder(&b, lease);
        assert!(holder.ends_with(&a_identity), "{lease} held by {holder:?}");
    }

    // Services through both servers at once: each allocation is claimed in etcd.
    let (through_a, through_b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| a.kubectl_stdin(&["apply", "-f", "-"], Some(&services("a", 25))));
        let b = scope.spawn(|| b.kubectl_stdin(&["apply", "-f", "-"], Some(&services("b", 25))));
        (a.join().unwrap(), b.join().unwrap())
    });
    ok(through_a);
    ok(through_b);
    let listed: serde_json::Value =
        serde_json::from_str(&ok(a.kubectl(&["get", "services", "-o", "json"]))).unwrap();
    let items = listed["items"].as_array().unwrap();
    let ips: Vec<&str> = items
        .iter()
        .map(|s| s["spec"]["clusterIP"].as_str().unwrap())
        .collect();
    let ports: Vec<u64> = items
        .iter()
        .filter_map(|s| s["spec"]["ports"][0]["nodePort"].as_u64())
        .collect();
    assert_eq!(ips.len(), 51, "50 Services and kubernetes");
    let unique = |v: Vec<String>| v.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert_eq!(
        unique(ips.iter().map(|s| s.to_string()).collect()),
        51,
        "{ips:?}"
    );
    assert_eq!(ports.len(), 50);
    assert_eq!(
        unique(ports.iter().map(u64::to_string).collect()),
        50,
        "{ports:?}"
    );

    // The leader dies: the balancer relays to the survivor at once, and within the lease
    // duration and a retry, the survivor leads.
    a.kill();
    let killed = Instant::now();
    wait_for(Duration::from_secs(5), "the balancer to fail over", || {
        Ok(via_lb().status.success())
    })
    .unwrap();
    eprintln!("the balancer failed over in {:?}", killed.elapsed());
    let b_identity = format!("127.0.0.3:{port}");
    let started = Instant::now();
    wait_for(
        Duration::from_secs(25),
        "the survivor to take both Leases",
        || {
            Ok(["kube-controller-manager", "kube-scheduler"]
                .iter()
                .all(|lease| lease_holder(&b, lease).ends_with(&b_identity)))
        },
    )
    .unwrap();
    eprintln!("the Leases moved in {:?}", started.elapsed());
    ok(b.kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:alpine",
        "--replicas=2",
    ]));
    wait_for(
        Duration::from_secs(30),
        "the survivor's controllers to act",
        || {
            Ok(
                ok(b.kubectl(&["get", "pods", "-l", "app=web", "-o", "name"]))
                    .lines()
                    .count()
                    == 2,
            )
        },
    )
    .unwrap();
    wait_for(
        Duration::from_secs(40),
        "the dead server to leave the EndpointSlice",
        || {
            Ok(jsonpath(
                &b,
                &["endpointslice", "kubernetes"],
                "{.endpoints[*].addresses[0]}",
            ) == "127.0.0.3")
        },
    )
    .unwrap();
}
