//! The device manager with the example plugin, in one process over real unix sockets: the
//! plugin registers and its devices become the node's resource, admission allocates free
//! healthy devices (never the same twice, also across a kubelet restart, through the
//! checkpoint), health changes and a plugin going away show in allocatable, and bad
//! registrations are refused with their reason.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ekube_kubelet::devices::{self, Manager, example};
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::oneshot;

const RESOURCE: &str = "vendor.example/dev";

fn pod(uid: &str, count: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": uid, "namespace": "default", "uid": uid},
        "spec": {"containers": [{
            "name": "main",
            "image": "busybox",
            "resources": {
                "requests": {RESOURCE: count, "cpu": "100m"},
                "limits": {RESOURCE: count},
            },
        }]},
    }))
    .unwrap()
}

/// `(capacity, allocatable)` of the resource, as the node status would show them.
fn counts(m: &Manager) -> (String, String) {
    let (capacity, allocatable) = m.resources();
    let get = |map: &std::collections::BTreeMap<
        _,
        k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    >| { map.get(RESOURCE).map(|q| q.0.clone()).unwrap_or_default() };
    (get(&capacity), get(&allocatable))
}

/// Waits (woken by the manager's change signal, up to 20 s) until the resource reads `want`.
async fn wait_counts(m: &Manager, want: (&str, &str)) {
    let mut changed = m.changed();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = counts(m);
        if (now.0.as_str(), now.1.as_str()) == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "capacity/allocatable stayed {now:?}, wanted {want:?}"
        );
        let _ = tokio::time::timeout_at(deadline, changed.changed()).await;
    }
}

fn allocated(m: &Manager, uid: &str) -> Vec<String> {
    m.container(uid, "main")
        .into_iter()
        .flat_map(|a| a.device_ids)
        .collect()
}

/// Starts a kubelet's registration service; the sender stops it.
fn kubelet(
    m: &Manager,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), String>>,
) {
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(devices::serve(m.clone(), async move {
        let _ = rx.await;
    }));
    (tx, task)
}

fn stopper() -> (oneshot::Sender<()>, impl Future<Output = ()>) {
    let (tx, rx) = oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

#[tokio::test]
async fn plugins_devices_admission_checkpoint_and_health() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("device-plugins");
    let manager = Manager::open(dir.clone());
    let (stop_kubelet, kubelet_task) = kubelet(&manager);

    let config = example::Config {
        resource: RESOURCE.into(),
        count: 4,
        unhealthy_after: None,
        pre_start_required: true,
        device_plugin_path: dir.clone(),
        api_version: devices::api::VERSION.into(),
    };
    let plugin = Arc::new(example::Plugin::new(4, true));
    let (stop_plugin, stopped) = stopper();
    let plugin_task = tokio::spawn({
        let (plugin, config) = (plugin.clone(), config.clone());
        async move { example::serve(plugin, &config, stopped).await }
    });
    wait_counts(&manager, ("4", "4")).await;

    // Two devices for the first pod, the plugin's preferred (lowest) ones, with its answer.
    manager.admit(&pod("a", "2")).await.unwrap();
    assert_eq!(allocated(&manager, "a"), ["dev-0", "dev-1"]);
    let given = &manager.container("a", "main")[0].response;
    assert_eq!(given.envs["EXAMPLE_DEVICES"], "dev-0,dev-1");
    assert_eq!(given.devices[1].container_path, "/dev/example/dev-1");
    let mut config_a = ekube_kubelet::cri::ContainerConfig::default();
    devices::apply(&manager.container("a", "main"), &mut config_a);
    assert_eq!(config_a.devices.len(), 2);
    assert_eq!(config_a.devices[0].host_path, "/dev/null");
    assert!(config_a.envs.iter().any(|e| e.key == "EXAMPLE_DEVICES"));
    assert_eq!(
        config_a.annotations["example.ekube.io/devices"],
        "dev-0,dev-1"
    );
    manager.pre_start("a", "main").await.unwrap();
    assert_eq!(
        *plugin.pre_started.lock().unwrap(),
        vec![vec!["dev-0".to_owned(), "dev-1".to_owned()]]
    );
    // Admitting again (a restarted worker) keeps what the pod has.
    manager.admit(&pod("a", "2")).await.unwrap();
    assert_eq!(allocated(&manager, "a"), ["dev-0", "dev-1"]);

    // Three more do not fit; the reason is upstream's.
    let err = manager.admit(&pod("b", "3")).await.unwrap_err();
    assert_eq!(
        err,
        "requested number of devices unavailable for vendor.example/dev. Requested: 3, Available: 2"
    );
    assert!(allocated(&manager, "b").is_empty());

    // A kubelet restart: a new manager from the checkpoint, the socket made afresh, the
    // plugin registers again; the running pod keeps its devices and they are not given twice.
    stop_kubelet.send(()).unwrap();
    kubelet_task.await.unwrap().unwrap();
    let manager = Manager::open(dir.clone());
    assert_eq!(allocated(&manager, "a"), ["dev-0", "dev-1"]);
    assert_eq!(
        counts(&manager),
        ("4".into(), "4".into()),
        "restored from the checkpoint"
    );
    let (stop_kubelet, kubelet_task) = kubelet(&manager);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let c = loop {
        // Until the plugin registered again, admission says there is no plugin.
        match manager.admit(&pod("c", "2")).await {
            Ok(()) => break allocated(&manager, "c"),
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert!(e.contains("no device plugin is registered"), "{e}");
                let _ =
                    tokio::time::timeout(Duration::from_millis(200), manager.changed().changed())
                        .await;
            }
            Err(e) => panic!("plugin never registered again: {e}"),
        }
    };
    assert_eq!(c, ["dev-2", "dev-3"]);
    let err = manager.admit(&pod("d", "1")).await.unwrap_err();
    assert!(err.ends_with("Requested: 1, Available: 0"), "{err}");

    // Health: a device turning unhealthy leaves allocatable, and the pod holding it sees it.
    plugin.set_health("dev-3", false);
    wait_counts(&manager, ("4", "3")).await;
    let health = manager.health("c", "main").unwrap();
    let by_id: Vec<(String, Option<String>)> = health[0]
        .resources
        .clone()
        .unwrap()
        .into_iter()
        .map(|r| (r.resource_id, r.health))
        .collect();
    assert_eq!(
        by_id,
        [
            ("dev-2".to_owned(), Some("Healthy".to_owned())),
            ("dev-3".to_owned(), Some("Unhealthy".to_owned()))
        ]
    );

    // Freed devices go back: releasing "a" lets "d" in.
    manager.release("a");
    manager.admit(&pod("d", "1")).await.unwrap();
    assert_eq!(allocated(&manager, "d"), ["dev-0"]);
    // After a restart, pods that are gone lose their devices.
    manager.retain(&HashSet::from(["c".to_owned()]));
    assert!(allocated(&manager, "d").is_empty());

    // The plugin goes away: nothing allocatable, the capacity stays through the grace period,
    // and the pods' devices read Unknown.
    stop_plugin.send(()).unwrap();
    plugin_task.await.unwrap().unwrap();
    wait_counts(&manager, ("4", "0")).await;
    let health = manager.health("c", "main").unwrap();
    assert!(
        health[0]
            .resources
            .iter()
            .flatten()
            .all(|r| r.health.as_deref() == Some("Unknown"))
    );

    // Bad registrations are refused, with the reason.
    let refused = |version: &'static str, resource: &'static str| {
        let dir = dir.clone();
        async move {
            example::register(&dir, version, resource, "x.sock")
                .await
                .unwrap_err()
                .to_string()
        }
    };
    assert_eq!(
        refused("v1alpha", RESOURCE).await,
        r#"the kubelet refused the registration: requested API version "v1alpha" is not supported by kubelet. Supported versions are ["v1beta1"]"#
    );
    assert_eq!(
        refused("v1beta1", "dev").await,
        r#"the kubelet refused the registration: the ResourceName "dev" is invalid"#
    );
    stop_kubelet.send(()).unwrap();
    kubelet_task.await.unwrap().unwrap();
}
