//! The apiserver against real clients: the real kubectl, kube-rs and the official Python
//! client; durability across `kill -9`; concurrent writers; bad input.

use std::time::{Duration, Instant};

use ekube_tests::{ServerProcess, ok, wait_for};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

const MANIFEST: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  containers:
  - name: web
    image: 192.168.64.1:5000/web:latest
    ports:
    - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 80
    nodePort: 32143
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  replicas: 2
  selector:
    matchLabels:
      app: api
  template:
    metadata:
      labels:
        app: api
    spec:
      containers:
      - name: api
        image: 192.168.64.1:5000/web:latest
        env:
        - name: MODE
          value: blue
"#;

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn json_of(out: std::process::Output) -> Value {
    serde_json::from_str(&ok(out)).expect("kubectl printed JSON")
}

#[test]
fn real_kubectl_manages_objects_end_to_end() {
    let s = ServerProcess::start(&[]).unwrap();
    let file = write(&s.dir, "app.yaml", MANIFEST);

    let applied = ok(s.kubectl(&["apply", "-f", &file]));
    assert!(
        applied.contains("pod/web created") && applied.contains("service/web created"),
        "{applied}"
    );
    let pod = json_of(s.kubectl(&["get", "pod", "web", "-o", "json"]));
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let svc = json_of(s.kubectl(&["get", "svc", "web", "-o", "json"]));
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 32143);
    assert!(
        svc["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .starts_with("10.")
    );

    // Real columns, not just NAME/AGE.
    let table = ok(s.kubectl(&["get", "pods,svc"]));
    for column in [
        "READY",
        "STATUS",
        "RESTARTS",
        "TYPE",
        "CLUSTER-IP",
        "PORT(S)",
        "80:32143/TCP",
    ] {
        assert!(table.contains(column), "missing {column} in:\n{table}");
    }

    // Field selectors name what the kind offers; anything else is a bad request, in
    // upstream's words for a kind with field labels of its own and for one without.
    let pending = ok(s.kubectl(&[
        "get",
        "pods",
        "--field-selector",
        "status.phase=Pending,spec.restartPolicy=Always",
        "-o",
        "name",
    ]));
    assert!(pending.lines().any(|l| l == "pod/web"), "{pending}");
    let running = ok(s.kubectl(&[
        "get",
        "pods",
        "--field-selector",
        "status.phase=Running",
        "-o",
        "name",
    ]));
    assert_eq!(running.trim(), "", "no kubelet runs them");
    let typed = ok(s.kubectl(&[
        "get",
        "svc",
        "--field-selector",
        "spec.type=NodePort",
        "-o",
        "name",
    ]));
    assert_eq!(typed.trim(), "service/web");
    for (resource, selector, message) in [
        (
            "pods",
            "status.hostIP=10.0.0.1",
            "field label not supported: status.hostIP",
        ),
        (
            "configmaps",
            "data.color=blue",
            r#""data.color" is not a known field selector: only "metadata.name", "metadata.namespace""#,
        ),
    ] {
        let out = s.kubectl(&["get", resource, "--field-selector", selector]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("BadRequest") && stderr.contains(message),
            "{resource} {selector}: {stderr}"
        );
    }

    // -o yaml round-trips: applying what get printed changes nothing.
    let yaml = ok(s.kubectl(&["get", "svc", "web", "-o", "yaml"]));
    let again = ok(s.kubectl_stdin(&["apply", "-f", "-"], Some(&yaml)));
    assert!(again.contains("service/web"), "{again}");
    let svc2 = json_of(s.kubectl(&["get", "svc", "web", "-o", "json"]));
    assert_eq!(svc2["spec"], svc["spec"]);

    // A changed label and a changed container env patch in place. (Kubernetes forbids
    // changing a Pod's env, so the env change goes to the Deployment's template.)
    let changed = MANIFEST
        .replacen(
            "app: web\nspec:\n  containers",
            "app: web\n    tier: front\nspec:\n  containers",
            1,
        )
        .replace("value: blue", "value: green");
    let file = write(&s.dir, "app.yaml", &changed);
    let reapplied = ok(s.kubectl(&["apply", "-f", &file]));
    assert!(reapplied.contains("pod/web configured"), "{reapplied}");
    assert!(
        reapplied.contains("deployment.apps/api configured"),
        "{reapplied}"
    );
    let pod = json_of(s.kubectl(&["get", "pod", "web", "-o", "json"]));
    assert_eq!(
        pod["metadata"]["uid"],
        uid.as_str(),
        "patched in place, not recreated"
    );
    assert_eq!(pod["metadata"]["labels"]["tier"], "front");
    let deploy = json_of(s.kubectl(&["get", "deploy", "api", "-o", "json"]));
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
        "green"
    );
    assert_eq!(deploy["metadata"]["generation"], 2);
    // The same manifest again, as an update (without the fields the server defaulted): no
    // change to the spec, so no new generation.
    let deployment = changed
        .split("---")
        .find(|doc| doc.contains("kind: Deployment"))
        .expect("the manifest has a Deployment");
    let api_file = write(&s.dir, "api.yaml", deployment);
    let replaced = ok(s.kubectl(&["replace", "-f", &api_file]));
    assert!(
        replaced.contains("deployment.apps/api replaced"),
        "{replaced}"
    );
    let deploy = json_of(s.kubectl(&["get", "deploy", "api", "-o", "json"]));
    assert_eq!(
        deploy["metadata"]["generation"], 2,
        "an unchanged spec made a new generation"
    );

    // Changing a Pod's env is refused, as Kubernetes refuses it.
    let forbidden = s.kubectl(&[
        "patch",
        "pod",
        "web",
        "-p",
        r#"{"spec":{"containers":[{"name":"web","env":[{"name":"X","value":"1"}]}]}}"#,
    ]);
    assert!(!forbidden.status.success());
    assert!(
        String::from_utf8_lossy(&forbidden.stderr)
            .contains("Forbidden: pod updates may not change fields")
    );

    let deleted = ok(s.kubectl(&["delete", "-f", &file]));
    assert!(
        deleted.contains("pod \"web\" deleted") && deleted.contains("service \"web\" deleted"),
        "{deleted}"
    );
    let gone = s.kubectl(&["get", "pod", "web"]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("NotFound"));

    let ns = ok(s.kubectl(&["get", "ns", "-o", "name"]));
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(&format!("namespace/{n}")), "{ns}");
    }
    let resources = ok(s.kubectl(&["api-resources"]));
    for r in [
        "pods",
        "deployments",
        "endpointslices",
        "leases",
        "certificatesigningrequests",
    ] {
        assert!(resources.contains(r), "{resources}");
    }
    let explain = ok(s.kubectl(&["explain", "pod.spec"]));
    assert!(
        explain.contains("containers") && explain.contains("restartPolicy"),
        "{explain}"
    );
    // Every kind `kubectl api-resources` lists, reviews included, is explained.
    let listed = ok(s.kubectl(&["api-resources", "--no-headers"]));
    assert!(listed.lines().count() >= 40, "{listed}");
    for line in listed.lines() {
        // NAME [SHORTNAMES] APIVERSION NAMESPACED KIND
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (resource, api_version) = (fields[0], fields[fields.len() - 3]);
        let explained = s.kubectl(&["explain", resource, "--api-version", api_version]);
        let out = String::from_utf8_lossy(&explained.stdout);
        assert!(
            explained.status.success() && out.contains("KIND:"),
            "kubectl explain {resource} --api-version {api_version}: {}",
            String::from_utf8_lossy(&explained.stderr)
        );
    }
    // Each group-version served here has its local APIService, available; one naming a
    // Service is stored and reported unavailable, since nothing is proxied to it.
    let api_services = ok(s.kubectl(&["get", "apiservices"]));
    for name in [
        "v1. ",
        "v1.apps ",
        "v1.storage.k8s.io ",
        "v1beta1.metrics.k8s.io ",
    ] {
        let row = api_services
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no APIService {name}: {api_services}"));
        assert!(row.contains("Local") && row.contains("True"), "{row}");
    }
    let remote = write(
        &s.dir,
        "apiservice.yaml",
        "apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.custom.example.com}
spec: {group: custom.example.com, version: v1beta1, groupPriorityMinimum: 1000, versionPriority: 15,
       service: {namespace: kube-system, name: custom}}
",
    );
    ok(s.kubectl(&["apply", "-f", &remote]));
    let row = ok(s.kubectl(&[
        "get",
        "apiservice",
        "v1beta1.custom.example.com",
        "--no-headers",
    ]));
    assert!(
        row.contains("kube-system/custom") && row.contains("False (Unsupported)"),
        "{row}"
    );
    let misnamed = s.kubectl(&[
        "create",
        "-f",
        &write(
            &s.dir,
            "misnamed.yaml",
            "apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1.wrong}
spec: {group: custom.example.com, version: v1, groupPriorityMinimum: 1000, versionPriority: 15}
",
        ),
    ]);
    assert!(
        String::from_utf8_lossy(&misnamed.stderr).contains("must be v1.custom.example.com"),
        "{}",
        String::from_utf8_lossy(&misnamed.stderr)
    );

    let env = write(&s.dir, "app.env", "DB_HOST=db\nDB_PASSWORD=s3cret\n");
    ok(s.kubectl(&["create", "configmap", "cfg", "--from-env-file", &env]));
    ok(s.kubectl(&[
        "create",
        "secret",
        "generic",
        "sec",
        "--from-env-file",
        &env,
    ]));
    let cm = json_of(s.kubectl(&["get", "cm", "cfg", "-o", "json"]));
    assert_eq!(
        cm["data"],
        json!({"DB_HOST": "db", "DB_PASSWORD": "s3cret"})
    );
    let secret = json_of(s.kubectl(&["get", "secret", "sec", "-o", "json"]));
    assert_eq!(secret["data"]["DB_PASSWORD"], "czNjcmV0");
    assert_eq!(secret["type"], "Opaque");

    // A `kind: List` is validated by kubectl itself against the protobuf /openapi/v2: a
    // well-formed one applies, an unknown field in an item is named; `stringData` is written
    // into `data` and not kept.
    let list = write(
        &s.dir,
        "list.yaml",
        "apiVersion: v1\nkind: List\nitems:\n\
         - {apiVersion: v1, kind: ConfigMap, metadata: {name: l1}, data: {x: '1'}}\n\
         - {apiVersion: v1, kind: Secret, metadata: {name: l2}, stringData: {pw: hunter2}}\n",
    );
    let applied = ok(s.kubectl(&["apply", "-f", &list]));
    assert!(applied.contains("configmap/l1 created"), "{applied}");
    let secret = json_of(s.kubectl(&["get", "secret", "l2", "-o", "json"]));
    assert_eq!(secret["data"], json!({"pw": "aHVudGVyMg=="}));
    assert_eq!(secret.get("stringData"), None);
    let bad = write(
        &s.dir,
        "bad-list.yaml",
        "apiVersion: v1\nkind: List\nitems:\n\
         - {apiVersion: v1, kind: ConfigMap, metadata: {name: l3}, bogus: 1}\n",
    );
    let refused = s.kubectl(&["apply", "-f", &bad]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains(r#"unknown field "bogus" in io.k8s.api.core.v1.ConfigMap"#),
        "{stderr}"
    );
    assert!(!s.kubectl(&["get", "cm", "l3"]).status.success());
}

/// Waits for the `kube-root-ca.crt` ConfigMap the root-CA publisher puts in every namespace,
/// so that it does not appear in the middle of what a test lists or watches.
async fn wait_root_ca(cms: &Api<ConfigMap>) {
    for _ in 0..300 {
        if cms.get_opt("kube-root-ca.crt").await.unwrap().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("kube-root-ca.crt was not published within 30s");
}

#[tokio::test]
async fn watcher_sees_every_change_in_order_and_resumes() {
    let s = ServerProcess::start(&[]).unwrap();
    let client = s.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    wait_root_ca(&cms).await;
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("w".into());
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let stream = watcher(
        cms.clone(),
        watcher::Config::default().fields("metadata.name=w"),
    );
    let mut stream = std::pin::pin!(stream);
    // Start writing once the watcher has its initial state.
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await {
            Ok(Ok(Some(watcher::Event::InitDone))) => break,
            Ok(Ok(Some(_))) => {}
            other => panic!("watcher did not initialise: {other:?}"),
        }
    }
    let mut seen = Vec::new();
    let writer = {
        let cms = cms.clone();
        tokio::spawn(async move {
            for i in 0..5 {
                let patch = json!({"data": {"n": i.to_string()}});
                cms.patch(
                    "w",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
                .unwrap();
            }
            cms.delete("w", &Default::default()).await.unwrap();
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .unwrap_or(Ok(None))
        else {
            break;
        };
        match event {
            watcher::Event::Apply(cm) => seen.push(format!(
                "apply:{}",
                cm.data
                    .unwrap_or_default()
                    .get("n")
                    .cloned()
                    .unwrap_or_default()
            )),
            watcher::Event::Delete(_) => {
                seen.push("delete".into());
                break;
            }
            watcher::Event::InitApply(_) | watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }
    writer.await.unwrap();
    assert_eq!(
        seen,
        [
            "apply:0", "apply:1", "apply:2", "apply:3", "apply:4", "delete"
        ]
    );

    // A watch resumed from a resourceVersion after a disconnect misses nothing.
    let list = cms.list(&ListParams::default()).await.unwrap();
    let from = list.metadata.resource_version.unwrap();
    for i in 0..3 {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(format!("r{i}"));
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let params = kube::api::WatchParams::default().timeout(2);
    let events: Vec<_> = cms
        .watch(&params, &from)
        .await
        .unwrap()
        .take(3)
        .try_collect()
        .await
        .unwrap();
    let names: Vec<String> = events
        .iter()
        .map(|e| match e {
            kube::api::WatchEvent::Added(cm) => cm.metadata.name.clone().unwrap(),
            other => panic!("unexpected event {other:?}"),
        })
        .collect();
    assert_eq!(names, ["r0", "r1", "r2"]);
}

#[tokio::test]
async fn compacted_history_answers_410_and_the_watcher_relists() {
    let s = ServerProcess::start(&[
        "--compaction-interval",
        "0.2",
        "--compaction-retain-revisions",
        "5",
        "--compaction-retain-age",
        "0",
    ])
    .unwrap();
    let client = s.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    wait_root_ca(&cms).await;
    let old = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    for i in 0..20 {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(format!("c{i}"));
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    // Wait for compaction to pass the old revision: the raw watch then gets 410 Gone.
    let mut gone = false;
    for _ in 0..100 {
        let mut stream = cms
            .watch(&kube::api::WatchParams::default().timeout(1), &old)
            .await
            .unwrap()
            .boxed();
        if let Some(Ok(kube::api::WatchEvent::Error(e))) = stream.next().await {
            assert_eq!(e.code, 410, "{e:?}");
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the compacted revision {old} never answered 410");
    // kube-rs' watcher recovers by re-listing and sees every object.
    let stream = watcher(cms.clone(), watcher::Config::default());
    let mut stream = std::pin::pin!(stream);
    let mut names = std::collections::BTreeSet::new();
    while let Ok(Some(Ok(ev))) = tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        match ev {
            watcher::Event::InitApply(cm) => {
                names.insert(cm.metadata.name.unwrap());
            }
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    // Every namespace also holds the published cluster CA.
    names.remove("kube-root-ca.crt");
    assert_eq!(names.len(), 20, "{names:?}");
}

#[test]
fn python_client_manages_a_deployment() {
    let s = ServerProcess::start(&[]).unwrap();
    let script = r#"
import sys
from kubernetes import client, config
config.load_kube_config(config_file=sys.argv[1])
apps = client.AppsV1Api()
body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "py"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "py"}},
                 "template": {"metadata": {"labels": {"app": "py"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
apps.create_namespaced_deployment("default", body)
names = [d.metadata.name for d in apps.list_namespaced_deployment("default").items]
assert names == ["py"], names
d = apps.patch_namespaced_deployment("py", "default", {"spec": {"replicas": 3}})
assert d.spec.replicas == 3, d.spec.replicas
scale = apps.read_namespaced_deployment_scale("py", "default")
assert scale.spec.replicas == 3
apps.delete_namespaced_deployment("py", "default")
assert apps.list_namespaced_deployment("default").items == []
try:
    apps.read_namespaced_deployment("py", "default")
    raise SystemExit("still there")
except client.exceptions.ApiException as e:
    assert e.status == 404, e.status
print("ok")
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &s.kubeconfig().display().to_string()])
        .output()
        .unwrap();
    assert_eq!(ok(out).trim(), "ok");
}

/// DELETE answers as upstream's per resource: the deleted object for services and pods, a
/// `Status` for config maps and deployments, the object with 202 when it stays and the client
/// asked not to orphan, and the list of what it deleted for a collection. Created objects carry
/// the status upstream serves before any controller wrote one.
#[test]
fn python_client_reads_delete_answers_and_initial_status() {
    let s = ServerProcess::start(&[]).unwrap();
    let script = r#"
import sys
from kubernetes import client, config
config.load_kube_config(config_file=sys.argv[1])
core, apps = client.CoreV1Api(), client.AppsV1Api()

svc = core.create_namespaced_service("default", {"apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "py"}, "spec": {"selector": {"app": "py"}, "ports": [{"port": 80}]}})
assert svc.status is not None and svc.status.load_balancer is not None, svc.status
gone = core.delete_namespaced_service("py", "default")
assert gone.kind == "Service" and gone.metadata.name == "py", gone

pod = core.create_namespaced_pod("default", {"apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "py"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
assert pod.status.phase == "Pending", pod.status
gone = core.delete_namespaced_pod("py", "default")
assert gone.kind == "Pod" and gone.metadata.name == "py", gone

d = apps.create_namespaced_deployment("default", {"apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "py"},
    "spec": {"selector": {"matchLabels": {"app": "py"}},
             "template": {"metadata": {"labels": {"app": "py"}},
                          "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
assert d.status is not None, d
st = apps.delete_namespaced_deployment("py", "default")
assert st["kind"] == "Status" and st["status"] == "Success", st
assert st["details"]["name"] == "py" and st["details"]["kind"] == "deployments", st

core.create_namespaced_config_map("default", {"metadata": {"name": "held",
    "finalizers": ["example.com/hold"]}})
held, code, _ = core.delete_namespaced_config_map_with_http_info("held", "default",
    body=client.V1DeleteOptions(orphan_dependents=False))
assert code == 202 and held["kind"] == "ConfigMap", (code, held)
assert held["metadata"]["deletionTimestamp"], held["metadata"]
core.patch_namespaced_config_map("held", "default", {"metadata": {"finalizers": None}})

for n in ("a", "b"):
    core.create_namespaced_config_map("default", {"metadata": {"name": "py-" + n,
        "labels": {"app": "py"}}})
listed = core.delete_collection_namespaced_config_map("default", label_selector="app=py")
assert listed.kind == "ConfigMapList", listed.kind
left = core.list_namespaced_config_map("default", label_selector="app=py").items
assert left == [], [c.metadata.name for c in left]
print("ok")
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &s.kubeconfig().display().to_string()])
        .output()
        .unwrap();
    assert_eq!(ok(out).trim(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9() {
    let mut s = ServerProcess::start(&[]).unwrap();
    let client = s.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    wait_root_ca(&cms).await;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for w in 0..50 {
        let (cms, acked) = (cms.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let mut cm = ConfigMap::default();
                cm.metadata.name = Some(format!("d-{w}-{i}"));
                if cms.create(&PostParams::default(), &cm).await.is_err() {
                    return;
                }
                acked.lock().unwrap().push(format!("d-{w}-{i}"));
            }
        }));
    }
    // Kill in the middle of the writes.
    wait_for(
        Duration::from_secs(30),
        "some writes to be acknowledged",
        || Ok(acked.lock().unwrap().len() >= 200),
    )
    .unwrap();
    s.kill();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() < 1000,
        "the server was killed before every write finished"
    );

    // How long the restart takes is the bench's business, not this test's (it was asserted
    // under 1 s and failed at 1.01 s on a loaded machine).
    s.spawn().unwrap();
    let client = s.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    wait_root_ca(&cms).await;
    let stored: std::collections::BTreeSet<String> = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|n| !stored.contains(*n)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // Revisions are gap-free: replaying the event log from 0 yields 1, 2, 3, … with no hole.
    // The log is read from the database itself (the server stopped), since some revisions are
    // the server's own bookkeeping (allocation claims, its endpoint lease) that no resource
    // shows.
    s.kill();
    let revs = replay_revisions(&s).await;
    let max = *revs.last().unwrap();
    assert_eq!(
        revs,
        (1..=max).collect::<Vec<u64>>(),
        "revisions have gaps or repeats"
    );
}

/// Nothing a watcher received is taken back by a crash: the server dies between a write and
/// its fsync (fault injection), and after a restart every resourceVersion the watcher saw still
/// replays as the same object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_fsync_takes_back_nothing_a_watcher_saw() {
    let mut s = ServerProcess::start_with_env(
        &[],
        &[(
            ekube_apiserver::storage::sled::CRASH_BEFORE_FSYNC_ENV,
            "/configmaps/default/doomed",
        )],
    )
    .unwrap();
    let client = s.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    wait_root_ca(&cms).await;
    let from = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let events = cms
        .watch(&kube::api::WatchParams::default().timeout(60), &from)
        .await
        .unwrap();
    let seen = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut events = std::pin::pin!(events);
        // The stream ends (or fails) when the server dies.
        while let Ok(Some(Ok(kube::api::WatchEvent::Added(cm)))) =
            tokio::time::timeout(Duration::from_secs(30), events.next()).await
        {
            seen.push(cm);
        }
        seen
    });
    let make = |name: &str, value: &str| {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.into());
        cm.data = Some([("v".to_string(), value.to_string())].into());
        cm
    };
    for name in ["kept-1", "kept-2"] {
        cms.create(&PostParams::default(), &make(name, "before"))
            .await
            .unwrap();
    }
    let doomed = cms
        .create(&PostParams::default(), &make("doomed", "lost"))
        .await;
    assert!(doomed.is_err(), "the doomed write was acknowledged");
    wait_for(Duration::from_secs(10), "the server to abort", || {
        Ok(s.exited())
    })
    .unwrap();
    let seen = seen.await.unwrap();
    let names: Vec<_> = seen
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert!(
        names.starts_with(&["kept-1".to_string(), "kept-2".to_string()]),
        "the watcher missed acknowledged writes: {names:?}"
    );

    // After a restart, new writes take whatever revisions the crash freed.
    s.env.clear();
    s.spawn().unwrap();
    let client = s.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    wait_root_ca(&cms).await;
    // Usually the crash takes the unacknowledged write back. sled's own periodic flush can make
    // it durable first, which is no fault (nobody saw it before it was on disk); the checks
    // below hold either way.
    if cms.get_opt("doomed").await.unwrap().is_some() {
        eprintln!("note: the interrupted write reached the disk before the crash");
    }
    cms.create(&PostParams::default(), &make("after", "new"))
        .await
        .unwrap();
    for cm in &seen {
        let rv: u64 = cm
            .metadata
            .resource_version
            .as_ref()
            .unwrap()
            .parse()
            .unwrap();
        let replay = cms
            .watch(
                &kube::api::WatchParams::default().timeout(2),
                &(rv - 1).to_string(),
            )
            .await
            .unwrap();
        let replayed = std::pin::pin!(replay).next().await;
        let same = match &replayed {
            Some(Ok(kube::api::WatchEvent::Added(again))) => {
                again.metadata.resource_version == cm.metadata.resource_version
                    && again.metadata.name == cm.metadata.name
                    && again.data == cm.data
            }
            _ => false,
        };
        assert!(
            same,
            "the watcher saw {:?} at resourceVersion {rv}; after the crash that revision replays as {replayed:?}",
            cm.metadata.name
        );
    }
}

/// Every revision in the event log: the union of watches over every resource replaying from
/// revision 1 (the first write, the `default` namespace), plus revision 1 itself.
/// Every revision in the stopped server's event log, in order.
async fn replay_revisions(s: &ServerProcess) -> Vec<u64> {
    use ekube_apiserver::storage::Storage;
    let store = ekube_apiserver::storage::sled::SledStorage::open(&s.dir.join("db"), 1 << 20)
        .expect("the stopped server's database opens");
    let last = store.current_revision();
    let mut events = store.watch("", 0).expect("the log is not compacted");
    let mut revs = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(1), events.next()).await {
        revs.push(e.revision);
        if e.revision >= last {
            break;
        }
    }
    revs
}

#[tokio::test]
async fn concurrent_read_modify_write_loses_no_update() {
    let s = ServerProcess::start(&[]).unwrap();
    let client = s.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    wait_root_ca(&cms).await;
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("counter".into());
    cm.data = Some([("n".to_string(), "0".to_string())].into());
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let conflicts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (cms, conflicts) = (cms.clone(), conflicts.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                loop {
                    let mut cur = cms.get("counter").await.unwrap();
                    let n: u64 = cur.data.as_ref().unwrap()["n"].parse().unwrap();
                    cur.data
                        .as_mut()
                        .unwrap()
                        .insert("n".into(), (n + 1).to_string());
                    match cms.replace("counter", &PostParams::default(), &cur).await {
                        Ok(_) => break,
                        Err(kube::Error::Api(e)) if e.code == 409 => {
                            assert_eq!(e.reason, "Conflict");
                            conflicts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n: u64 = cms.get("counter").await.unwrap().data.unwrap()["n"]
        .parse()
        .unwrap();
    assert_eq!(n, 200, "lost updates");
    assert!(
        conflicts.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "8 racing writers never conflicted"
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_status_and_stores_nothing() {
    let s = ServerProcess::start(&[]).unwrap();
    let client = s.client().await.unwrap();
    let send = |method: &str, path: &str, ct: &str, body: Vec<u8>| {
        let client = client.clone();
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("Content-Type", ct)
            .body(body)
            .unwrap();
        async move {
            let resp = client
                .send(req.map(kube::client::Body::from))
                .await
                .unwrap();
            let code = resp.status().as_u16();
            let bytes = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            let status: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            (code, status)
        }
    };
    let pods = "/api/v1/namespaces/default/pods";
    let before = s.kubectl(&["get", "pods", "-o", "name"]);

    let (code, st) = send("POST", pods, "application/json", b"{not json".to_vec()).await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (400, Some("BadRequest")),
        "{st}"
    );
    let (code, st) = send(
        "POST",
        pods,
        "application/yaml",
        b"metadata: [unclosed".to_vec(),
    )
    .await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (400, Some("BadRequest")),
        "{st}"
    );

    let invalid = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}});
    let (code, st) = send(
        "POST",
        pods,
        "application/json",
        invalid.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (422, Some("Invalid")),
        "{st}"
    );
    assert_eq!(
        st["details"]["causes"][0]["field"],
        "spec.containers[0].image"
    );
    assert_eq!(
        st["message"],
        "Pod \"p\" is invalid: spec.containers[0].image: Required value"
    );

    // Extended resources: whole, with a limit, and the request equal to it.
    let dev_pod = |resources: Value| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dev"}, "spec": {"containers": [
            {"name": "c", "image": "i", "resources": resources}]}})
        .to_string()
        .into_bytes()
    };
    for (resources, message) in [
        (
            json!({"requests": {"vendor.example/dev": "1"}}),
            "Pod \"dev\" is invalid: spec.containers[0].resources.limits: Required value: Limit must be set for non overcommitable resources",
        ),
        (
            json!({"limits": {"vendor.example/dev": "0.5"}}),
            "Pod \"dev\" is invalid: [spec.containers[0].resources.limits[vendor.example/dev]: Invalid value: \"500m\": must be an integer, spec.containers[0].resources.requests[vendor.example/dev]: Invalid value: \"500m\": must be an integer]",
        ),
        (
            json!({"requests": {"vendor.example/dev": "1"}, "limits": {"vendor.example/dev": "2"}}),
            "Pod \"dev\" is invalid: spec.containers[0].resources.requests: Invalid value: \"1\": must be equal to vendor.example/dev limit of 2",
        ),
    ] {
        let (code, st) = send("POST", pods, "application/json", dev_pod(resources)).await;
        assert_eq!(
            (code, st["reason"].as_str(), st["message"].as_str()),
            (422, Some("Invalid"), Some(message)),
            "{st}"
        );
    }
    // A limit alone is enough: the request defaults to it.
    let (code, created) = send(
        "POST",
        &format!("{pods}?dryRun=All"),
        "application/json",
        dev_pod(json!({"limits": {"vendor.example/dev": "2"}})),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        created["spec"]["containers"][0]["resources"]["requests"]["vendor.example/dev"],
        "2"
    );

    let good = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
    let (code, created) = send(
        "POST",
        pods,
        "application/json",
        good.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let (code, st) = send(
        "POST",
        pods,
        "application/json",
        good.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (409, Some("AlreadyExists")),
        "{st}"
    );

    // A write at a resourceVersion that is no longer current. On a ConfigMap, which no
    // controller writes (the scheduler may mark the pod above unschedulable at any moment).
    let configmaps = "/api/v1/namespaces/default/configmaps";
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rv"}});
    let (code, created) = send(
        "POST",
        configmaps,
        "application/json",
        cm.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let mut stale = created.clone();
    stale["metadata"]["labels"] = json!({"a": "b"});
    let (code, st) = send(
        "PUT",
        &format!("{configmaps}/rv"),
        "application/json",
        stale.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 200, "{st}");
    let (code, st) = send(
        "PUT",
        &format!("{configmaps}/rv"),
        "application/json",
        stale.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (409, Some("Conflict")),
        "{st}"
    );

    let (code, st) = send(
        "GET",
        "/api/v1/namespaces/default/frobnicators",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (404, Some("NotFound")),
        "{st}"
    );
    let (code, st) = send(
        "POST",
        "/api/v1/namespaces/nowhere/pods",
        "application/json",
        good.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (404, Some("NotFound")),
        "{st}"
    );
    assert_eq!(st["message"], "namespaces \"nowhere\" not found");

    let mut huge = good.clone();
    huge["metadata"]["name"] = json!("huge");
    huge["metadata"]["annotations"] = json!({"x": "y".repeat(4 << 20)});
    let (code, st) = send(
        "POST",
        pods,
        "application/json",
        huge.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (413, Some("RequestEntityTooLarge")),
        "{st}"
    );

    // Only the one valid pod was stored.
    let names = ok(s.kubectl(&["get", "pods", "-o", "name"]));
    assert_eq!(
        names.trim(),
        "pod/p",
        "before: {}",
        String::from_utf8_lossy(&before.stdout)
    );

    // Wrong credentials: a bearer token the server does not know gets 401; a client
    // certificate from another CA is refused during the TLS handshake.
    let mine = std::fs::read_to_string(s.kubeconfig()).unwrap();
    let ca = mine
        .lines()
        .find(|l| l.contains("certificate-authority-data"))
        .unwrap()
        .trim()
        .to_string();
    let token_conf = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{}\n    {ca}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: not-a-valid-token\n",
        s.port
    );
    let path = s.dir.join("token.conf");
    std::fs::write(&path, token_conf).unwrap();
    let out = std::process::Command::new(ekube_tests::kubectl_bin())
        .args(["--kubeconfig", &path.display().to_string(), "get", "pods"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // kubectl words a 401 as "You must be logged in to the server".
    assert!(err.contains("You must be logged in to the server"), "{err}");
    let other = ServerProcess::start(&[]).unwrap();
    let foreign = std::fs::read_to_string(other.kubeconfig()).unwrap();
    let foreign_ca = foreign
        .lines()
        .find(|l| l.contains("certificate-authority-data"))
        .unwrap()
        .trim()
        .to_string();
    let mixed = foreign
        .replace(&foreign_ca, &ca)
        .replace(&format!(":{}", other.port), &format!(":{}", s.port));
    let path = s.dir.join("foreign.conf");
    std::fs::write(&path, mixed).unwrap();
    let out = std::process::Command::new(ekube_tests::kubectl_bin())
        .args(["--kubeconfig", &path.display().to_string(), "get", "pods"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a certificate from another CA was accepted"
    );
    let anon = ok(s.kubectl(&["get", "--raw", "/healthz"]));
    assert_eq!(anon, "ok");
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn secrets_are_encrypted_at_rest_and_data_files_are_private() {
    use base64::Engine;
    let config_dir = tempfile::tempdir().unwrap();
    let key = base64::engine::general_purpose::STANDARD.encode([0x5au8; 32]);
    let config = write(
        config_dir.path(),
        "encryption.yaml",
        &format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n      - name: key1\n        secret: {key}\n  - identity: {{}}\n"
        ),
    );
    let mut s = ServerProcess::start(&["--encryption-provider-config", &config]).unwrap();
    let plaintext = "correct-horse-battery-staple";
    ok(s.kubectl(&[
        "create",
        "secret",
        "generic",
        "db",
        &format!("--from-literal=password={plaintext}"),
    ]));
    ok(s.kubectl(&[
        "create",
        "configmap",
        "plain",
        "--from-literal=note=visible-on-disk",
    ]));
    let secret = json_of(s.kubectl(&["get", "secret", "db", "-o", "json"]));
    let stored = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["password"].as_str().unwrap())
        .unwrap();
    assert_eq!(stored, plaintext.as_bytes());

    // Stop the server so everything is on disk, then read every byte of the database. The
    // value is stored as JSON, so the plaintext would appear base64-encoded.
    s.kill();
    let encoded = base64::engine::general_purpose::STANDARD.encode(plaintext);
    let db_files = files_under(&s.dir.join("db"));
    let contains = |needle: &[u8]| {
        db_files.iter().any(|f| {
            std::fs::read(f)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
        })
    };
    assert!(
        !contains(encoded.as_bytes()) && !contains(plaintext.as_bytes()),
        "the secret's value is readable in the database files"
    );
    assert!(
        contains(b"k8s:enc:aescbc:v1:key1:"),
        "no encrypted value found"
    );
    // The control: a ConfigMap is not encrypted, so the scan would have found the secret.
    assert!(
        contains(b"visible-on-disk"),
        "the scan does not see stored values"
    );

    for dir in [s.dir.clone(), s.dir.join("db"), s.dir.join("pki")] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    for file in db_files
        .iter()
        .chain(&files_under(&s.dir.join("pki")))
        .chain([&s.kubeconfig()])
    {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }

    // After a restart the secret still decrypts.
    s.spawn().unwrap();
    let again = json_of(s.kubectl(&["get", "secret", "db", "-o", "json"]));
    assert_eq!(again["data"], secret["data"]);
}

#[test]
fn system_namespaces_cannot_be_deleted() {
    let s = ServerProcess::start(&[]).unwrap();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let out = s.kubectl(&["delete", "namespace", ns]);
        assert!(!out.status.success(), "namespace {ns} was deleted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "namespaces \"{ns}\" is forbidden: this namespace may not be deleted"
            )),
            "{stderr}"
        );
        ok(s.kubectl(&["get", "namespace", ns]));
    }
    ok(s.kubectl(&["create", "namespace", "team-a"]));
    ok(s.kubectl(&["delete", "namespace", "team-a", "--wait=false"]));
}

#[tokio::test]
async fn an_object_grown_past_the_limit_by_a_patch_is_refused() {
    let s = ServerProcess::start(&[]).unwrap();
    let client = s.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    wait_root_ca(&cms).await;
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("big".into());
    cm.data = Some([("a".to_string(), "x".repeat(1 << 20))].into());
    cms.create(&PostParams::default(), &cm).await.unwrap();
    // Each request is under the 3 MiB body limit; together they pass 1.5 MiB.
    let patch = json!({"data": {"b": "y".repeat(1 << 20)}});
    let err = cms
        .patch(
            "big",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(e) => {
            assert_eq!(
                (e.code, e.reason.as_str()),
                (413, "RequestEntityTooLarge"),
                "{e:?}"
            );
            assert!(
                e.message.contains("limit is 1572864 bytes"),
                "{}",
                e.message
            );
        }
        other => panic!("expected 413, got {other}"),
    }
    let stored = cms.get("big").await.unwrap();
    assert!(
        !stored.data.unwrap().contains_key("b"),
        "the patch was stored"
    );
}

/// `metrics.k8s.io` with nothing scraped (no kubelets here; the scraper is off): discovery
/// lists the group and its two resources, lists are empty, a pod without figures is
/// metrics-server's 404 and a missing pod or node the object's own, and writes are refused.
#[test]
fn the_metrics_api_is_discoverable_and_answers_like_metrics_server() {
    let s = ServerProcess::start(&[]).unwrap();
    let get = |path: &str| s.kubectl(&["get", "--raw", path]);
    let groups = json_of(get("/apis"));
    assert!(
        groups["groups"].as_array().unwrap().iter().any(|g| {
            g["name"] == "metrics.k8s.io"
                && g["preferredVersion"]["groupVersion"] == "metrics.k8s.io/v1beta1"
        }),
        "{groups}"
    );
    let resources = json_of(get("/apis/metrics.k8s.io/v1beta1"));
    let shapes: Vec<(String, bool, String, Value)> = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["namespaced"].as_bool().unwrap(),
                r["kind"].as_str().unwrap().to_owned(),
                r["verbs"].clone(),
            )
        })
        .collect();
    assert_eq!(
        shapes,
        [
            (
                "nodes".into(),
                false,
                "NodeMetrics".into(),
                json!(["get", "list"])
            ),
            (
                "pods".into(),
                true,
                "PodMetrics".into(),
                json!(["get", "list"])
            ),
        ]
    );

    ok(s.kubectl_stdin(&["apply", "-f", "-"], Some(MANIFEST)));
    let pods = json_of(get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods"));
    assert_eq!(
        (
            pods["kind"].as_str(),
            pods["items"].as_array().map(Vec::len)
        ),
        (Some("PodMetricsList"), Some(0)),
        "{pods}"
    );
    let nodes = json_of(get(
        "/apis/metrics.k8s.io/v1beta1/nodes?labelSelector=a%3Db",
    ));
    assert_eq!(nodes["kind"], "NodeMetricsList");
    for (path, message) in [
        (
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web",
            r#"podmetrics.metrics.k8s.io "default/web" not found"#,
        ),
        (
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/missing",
            r#"pods "missing" not found"#,
        ),
        (
            "/apis/metrics.k8s.io/v1beta1/nodes/n1",
            r#"nodes "n1" not found"#,
        ),
    ] {
        let out = get(path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(&format!("(NotFound): {message}")),
            "{path}: {stderr}"
        );
    }
    let out = s.kubectl_stdin(
        &[
            "create",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods",
            "-f",
            "-",
        ],
        Some("{}"),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("MethodNotAllowed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client replaces a Deployment's `/scale` with an `autoscaling/v1` Scale (as the HPA
/// controller and `Api::replace_scale` do); a body of another kind is refused.
#[tokio::test]
async fn the_scale_subresource_takes_an_autoscaling_v1_scale() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::autoscaling::v1::Scale;
    let server = ServerProcess::start(&[]).unwrap();
    let client = server.client().await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let web: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web"}]}}},
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &web)
        .await
        .unwrap();
    let mut scale: Scale = deployments.get_scale("web").await.unwrap();
    scale.spec.get_or_insert_default().replicas = Some(3);
    let replaced = deployments
        .replace_scale("web", &PostParams::default(), &scale)
        .await
        .unwrap();
    assert_eq!(replaced.spec.and_then(|s| s.replicas), Some(3));
    let stored = deployments.get("web").await.unwrap();
    assert_eq!(stored.spec.replicas, Some(3));
    let wrong = serde_json::to_vec(&json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "spec": {"replicas": 2}}))
    .unwrap();
    let request = http::Request::put("/apis/apps/v1/namespaces/default/deployments/web/scale")
        .header("content-type", "application/json")
        .body(wrong)
        .unwrap();
    let refused = client.request::<Value>(request).await.unwrap_err();
    assert!(refused.to_string().contains("does not match"), "{refused}");
}

/// A pod that does not restart its containers keeps a terminated container terminated: a
/// status write that brings it back is refused as upstream refuses it, and what was stored
/// stays.
#[tokio::test]
async fn a_terminated_container_of_a_never_restarting_pod_stays_terminated() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Patch, PatchParams};
    let s = ServerProcess::start(&[]).unwrap();
    let pods: Api<Pod> = Api::namespaced(s.client().await.unwrap(), "default");
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "once"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}});
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod).unwrap(),
    )
    .await
    .unwrap();
    let status = |state: Value, phase: &str| {
        Patch::Merge(json!({"status": {"phase": phase, "containerStatuses": [{
            "name": "c", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
            "state": state}]}}))
    };
    let done = json!({"terminated": {"exitCode": 0, "reason": "Completed"}});
    pods.patch_status("once", &PatchParams::default(), &status(done, "Succeeded"))
        .await
        .unwrap();
    let err = pods
        .patch_status(
            "once",
            &PatchParams::default(),
            &status(json!({"running": {}}), "Running"),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(e) => {
            assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"), "{e:?}");
            assert!(
                e.message.contains(
                    "status.containerStatuses[0].state: Forbidden: may not be transitioned to non-terminated state"
                ),
                "{}",
                e.message
            );
        }
        other => panic!("expected 422, got {other}"),
    }
    let stored = pods.get_status("once").await.unwrap().status.unwrap();
    assert_eq!(stored.phase.as_deref(), Some("Succeeded"));
    let state = stored.container_statuses.unwrap()[0].state.clone().unwrap();
    assert!(state.terminated.is_some() && state.running.is_none());
}

/// A binding sets the node and records PodScheduled=True in one write, as upstream's binding
/// storage does: the first change a watcher sees with the node already carries the condition.
#[tokio::test]
async fn a_binding_is_one_write_with_the_node_and_pod_scheduled() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::WatchEvent;
    let s = ServerProcess::start(&[]).unwrap();
    let pods: Api<Pod> = Api::namespaced(s.client().await.unwrap(), "default");
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bound"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let created = pods
        .create(
            &PostParams::default(),
            &serde_json::from_value(pod).unwrap(),
        )
        .await
        .unwrap();
    let rv = created.metadata.resource_version.unwrap();
    let params = kube::api::WatchParams::default().fields("metadata.name=bound");
    let mut changes = pods.watch(&params, &rv).await.unwrap().boxed();
    let binding = json!({"apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "bound"}, "target": {"kind": "Node", "name": "n1"}});
    let _: Value = pods
        .create_subresource("binding", "bound", &PostParams::default(), &binding)
        .await
        .unwrap();
    let first_bound = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = changes.try_next().await.unwrap() {
            if let WatchEvent::Modified(pod) = event
                && pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("n1")
            {
                return pod;
            }
        }
        panic!("the watch ended before the binding showed");
    })
    .await
    .expect("the binding shows within 10 s");
    let scheduled = first_bound
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")
        .map(|c| c.status);
    assert_eq!(scheduled.as_deref(), Some("True"));
}

/// An Event recorded through the core API reads, through events.k8s.io/v1, in that API's
/// field names, listed whole or by a field selector on them, as upstream stores both in one.
#[test]
fn a_core_event_lists_in_the_events_api_form() {
    let s = ServerProcess::start(&[]).unwrap();
    let file = write(
        &s.dir,
        "event.yaml",
        "apiVersion: v1\nkind: Event\nmetadata:\n  name: e1\n  namespace: default\n\
         involvedObject:\n  kind: Pod\n  name: p\n  namespace: default\n\
         reason: Started\nmessage: started\nreportingComponent: kubelet\ntype: Normal\n",
    );
    ok(s.kubectl(&["apply", "-f", &file]));
    let resource = "events.v1.events.k8s.io";
    let list = json_of(s.kubectl(&["get", resource, "-o", "json"]));
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["regarding"]["name"], "p", "{list}");
    assert_eq!(items[0]["note"], "started", "{list}");
    assert_eq!(items[0]["reportingController"], "kubelet", "{list}");
    assert!(items[0].get("involvedObject").is_none(), "{list}");
    assert_eq!(
        json_of(s.kubectl(&["get", resource, "e1", "-o", "json"]))["regarding"]["name"],
        "p"
    );
    for (selector, found) in [
        ("regarding.name=p", 1),
        ("regarding.name=q", 0),
        ("reportingController=kubelet", 1),
    ] {
        let list =
            json_of(s.kubectl(&["get", resource, "--field-selector", selector, "-o", "json"]));
        assert_eq!(
            list["items"].as_array().map(Vec::len),
            Some(found),
            "{selector}: {list}"
        );
    }
}
