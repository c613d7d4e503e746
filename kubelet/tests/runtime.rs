//! The CRI runtime end to end on this machine (root, runc): images imported from the lab's OCI
//! archive, a sandbox, containers that print, exit, get OOM-killed and answer exec, and a
//! clean slate afterwards (no mounts, namespaces, runc containers or cgroups left).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ekube_kubelet::cri;
use ekube_kubelet::runtime::{self, Config};

const BUSYBOX: &str = "192.168.64.1:5000/busybox:latest";
const WEB: &str = "192.168.64.1:5000/web:latest";

struct Cleanup {
    cgroup: String,
    root: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| Path::new(m).starts_with(&self.root))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = std::process::Command::new("umount")
                .args(["-l", m])
                .status();
        }
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let dir = h.path().join(self.cgroup.trim_start_matches('/'));
            let _ = std::process::Command::new("find")
                .arg(&dir)
                .args(["-depth", "-type", "d", "-delete"])
                .status();
        }
    }
}

async fn wait_exited(
    client: &mut runtime::RuntimeClient,
    id: &str,
    secs: u64,
) -> cri::ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let st = client
            .container_status(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        if st.state == cri::ContainerState::ContainerExited as i32 {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} not exited after {secs}s: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn container(name: &str, image: &str, command: &[&str], log: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        envs: vec![cri::KeyValue {
            key: "FOO".into(),
            value: "bar".into(),
        }],
        log_path: log.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_run_log_exit_and_leave_nothing_behind() {
    // SAFETY: geteuid has no preconditions.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the runtime test needs root and runc (CI runs as root)"
    );
    let layout = Path::new(ekube_lab::images::DEFAULT_LAYOUT);
    ekube_lab::images::ensure(layout).expect("building the test images");
    let tmp = tempfile::tempdir().unwrap();
    let images_dir = tmp.path().join("images");
    std::fs::create_dir_all(&images_dir).unwrap();
    std::fs::copy(
        ekube_lab::images::archive_path(layout),
        images_dir.join("oci.tar"),
    )
    .unwrap();
    let cgroup = format!("/ekube-rtt{}", std::process::id());
    let _cleanup = Cleanup {
        cgroup: cgroup.clone(),
        root: tmp.path().to_owned(),
    };

    let mut config = Config::under(tmp.path());
    config.images_dir = Some(images_dir);
    let rt = runtime::Runtime::open(&config).await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sock = config.listen.clone();
    let server = tokio::spawn(async move {
        runtime::serve(rt, &sock, async {
            let _ = stop_rx.await;
        })
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !config.listen.exists() {
        assert!(Instant::now() < deadline, "runtime socket did not appear");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut rc, mut ic) = runtime::connect(&config.listen.display().to_string())
        .await
        .unwrap();

    let images = ic
        .list_images(cri::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert!(
        images
            .iter()
            .any(|i| i.repo_tags.contains(&BUSYBOX.to_owned())),
        "imported: {images:?}"
    );
    let status = ic
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: "192.168.64.1:5000/web".into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(status.image.is_some(), "web resolves without a tag");

    let logs = tmp.path().join("logs");
    let sandbox_config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "p1".into(),
            uid: "u1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "p1".into(),
        log_directory: logs.display().to_string(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: format!("{cgroup}/podu1"),
            ..Default::default()
        }),
        ..Default::default()
    };
    let sb = rc
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;

    // A container that prints and fails.
    let c1 = container(
        "c1",
        BUSYBOX,
        &[
            "sh",
            "-c",
            "echo hello $FOO; hostname; echo oops >&2; exit 3",
        ],
        "c1/0.log",
    );
    let id1 = rc
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sb.clone(),
            config: Some(c1),
            sandbox_config: Some(sandbox_config.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    rc.start_container(cri::StartContainerRequest {
        container_id: id1.clone(),
    })
    .await
    .unwrap();
    let st = wait_exited(&mut rc, &id1, 20).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (3, "Error"));
    let log = std::fs::read_to_string(logs.join("c1/0.log")).unwrap();
    let records: Vec<&str> = log.lines().map(|l| l.split_once(' ').unwrap().1).collect();
    assert!(records.contains(&"stdout F hello bar"), "{log}");
    assert!(records.contains(&"stdout F p1"), "{log}");
    assert!(records.contains(&"stderr F oops"), "{log}");

    // A server, reached over the pod's localhost from another container.
    let web = container("web", WEB, &[], "web/0.log");
    let web_id = rc
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sb.clone(),
            config: Some(web),
            sandbox_config: Some(sandbox_config.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    rc.start_container(cri::StartContainerRequest {
        container_id: web_id.clone(),
    })
    .await
    .unwrap();
    let side = container("side", BUSYBOX, &["sleep", "3600"], "side/0.log");
    let side_id = rc
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sb.clone(),
            config: Some(side),
            sandbox_config: Some(sandbox_config.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    rc.start_container(cri::StartContainerRequest {
        container_id: side_id.clone(),
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = rc
            .exec_sync(cri::ExecSyncRequest {
                container_id: side_id.clone(),
                cmd: vec!["wget".into(), "-qO-".into(), "http://127.0.0.1:80/".into()],
                timeout: 5,
            })
            .await
            .unwrap()
            .into_inner();
        if out.exit_code == 0 {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "p1");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "web not reachable over localhost: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Exec through the streaming server: the URL serves one session, the output and the exit
    // status arrive on their channels.
    let exec = |cmd: &[&str], stdout: bool| cri::ExecRequest {
        container_id: side_id.clone(),
        cmd: cmd.iter().map(|a| a.to_string()).collect(),
        stdout,
        stderr: stdout,
        ..Default::default()
    };
    let url = rc
        .exec(exec(&["sh", "-c", "echo streamed; exit 4"], true))
        .await
        .unwrap()
        .into_inner()
        .url;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let (out, status) = stream_exec(&url).await.expect("exec session");
    assert_eq!(out, "streamed\n");
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["message"], "4", "{status}");
    assert!(stream_exec(&url).await.is_err(), "a URL serves one session");
    let refused = rc.exec(exec(&["true"], false)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");

    let listed = rc
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: sb.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(listed.len(), 3);

    // Stats from the cgroups: the running side container used CPU and holds memory; the list
    // covers the running containers of the sandbox only.
    let stats = rc
        .container_stats(cri::ContainerStatsRequest {
            container_id: side_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    assert_eq!(stats.attributes.as_ref().unwrap().id, side_id);
    assert_eq!(
        stats
            .attributes
            .as_ref()
            .unwrap()
            .metadata
            .as_ref()
            .unwrap()
            .name,
        "side"
    );
    let cpu = stats.cpu.unwrap().usage_core_nano_seconds.unwrap().value;
    let memory = stats.memory.unwrap();
    let usage = memory.usage_bytes.unwrap().value;
    let working_set = memory.working_set_bytes.unwrap().value;
    assert!(cpu > 0, "no CPU time for side");
    assert!(
        usage > 0 && working_set <= usage,
        "memory {usage} / {working_set}"
    );
    let all = rc
        .list_container_stats(cri::ListContainerStatsRequest {
            filter: Some(cri::ContainerStatsFilter {
                pod_sandbox_id: sb.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    let running = listed
        .iter()
        .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32)
        .count();
    assert_eq!(all.len(), running, "{all:?}");
    assert!(
        all.iter()
            .any(|s| s.attributes.as_ref().unwrap().id == side_id)
    );

    // A container over its memory limit is OOM-killed.
    let mut hog = container(
        "hog",
        BUSYBOX,
        &[
            "sh",
            "-c",
            "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}",
        ],
        "hog/0.log",
    );
    hog.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 16 << 20,
            cpu_shares: 256,
            ..Default::default()
        }),
        security_context: None,
    });
    let hog_id = rc
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sb.clone(),
            config: Some(hog),
            sandbox_config: Some(sandbox_config.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    rc.start_container(cri::StartContainerRequest {
        container_id: hog_id.clone(),
    })
    .await
    .unwrap();
    let st = wait_exited(&mut rc, &hog_id, 60).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (137, "OOMKilled"));

    // A missing binary fails at start.
    let bad = container("bad", BUSYBOX, &["/nonexistent"], "bad/0.log");
    let bad_id = rc
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sb.clone(),
            config: Some(bad),
            sandbox_config: Some(sandbox_config.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    assert!(
        rc.start_container(cri::StartContainerRequest {
            container_id: bad_id.clone()
        })
        .await
        .is_err()
    );

    // Graceful stop, then everything goes.
    rc.stop_container(cri::StopContainerRequest {
        container_id: web_id.clone(),
        timeout: 2,
    })
    .await
    .unwrap();
    let st = wait_exited(&mut rc, &web_id, 5).await;
    assert_ne!(st.finished_at, 0);
    rc.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: sb.clone(),
    })
    .await
    .unwrap();
    rc.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: sb.clone(),
    })
    .await
    .unwrap();
    let left = rc
        .list_containers(cri::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(left.is_empty(), "{left:?}");
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounts: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(tmp.path()))
        .collect();
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    let runc = std::process::Command::new("runc")
        .arg("--root")
        .arg(&config.runc_root)
        .args(["list", "-q"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&runc.stdout).trim(),
        "",
        "runc containers left"
    );
    assert!(
        !Path::new("/sys/fs/cgroup/memory")
            .join(cgroup.trim_start_matches('/'))
            .join("podu1")
            .exists(),
        "pod cgroup left"
    );

    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}

/// Runs the exec session at `url` over `v5.channel.k8s.io`: its stdout, and the `Status` of
/// its error channel. Fails when the server refuses the session.
async fn stream_exec(url: &str) -> Result<(String, serde_json::Value), String> {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let ws_url = url.replacen("http://", "ws://", 1);
    let mut request = ws_url
        .as_str()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        http::HeaderValue::from_static("v5.channel.k8s.io"),
    );
    let authority = url.trim_start_matches("http://").split('/').next().unwrap();
    let tcp = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| e.to_string())?;
    let (mut socket, _) = tokio_tungstenite::client_async(request, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut out, mut status) = (String::new(), serde_json::Value::Null);
    while let Some(Ok(message)) = socket.next().await {
        let Message::Binary(data) = message else {
            continue;
        };
        match data.split_first() {
            Some((1, text)) => out.push_str(&String::from_utf8_lossy(text)),
            Some((3, s)) => status = serde_json::from_slice(s).map_err(|e| e.to_string())?,
            _ => {}
        }
    }
    Ok((out, status))
}
