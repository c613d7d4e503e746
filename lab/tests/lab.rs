//! End-to-end tests of the lab: they need root (network namespaces, cgroups, bpffs) and the
//! Debian packages `iproute2`, `docker-registry` and `busybox-static`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ekube_lab::{CmdTemplate, Lab, LabConfig};
use serde_json::Value;

/// What the root network namespace looks like: addresses and routes (lifetimes left out).
#[derive(Debug, PartialEq, Eq)]
struct RootNet {
    addrs: BTreeSet<String>,
    routes: Vec<Value>,
    ip_forward: String,
}

fn ip_json(args: &[&str]) -> Value {
    let out = std::process::Command::new("ip")
        .arg("-j")
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]))
}

fn root_net() -> RootNet {
    let mut addrs = BTreeSet::new();
    for link in ip_json(&["addr"]).as_array().unwrap() {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            addrs.insert(format!(
                "{} {} {}/{}",
                link["ifname"], a["family"], a["local"], a["prefixlen"]
            ));
        }
    }
    let mut routes = Vec::new();
    for fam in ["-4", "-6"] {
        for mut r in ip_json(&[fam, "route", "show", "table", "all"])
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            if let Some(o) = r.as_object_mut() {
                o.remove("expires");
            }
            routes.push(r);
        }
    }
    RootNet {
        addrs,
        routes,
        ip_forward: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
    }
}

fn netns_list() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn lab_namespaces(name: &str) -> Vec<String> {
    netns_list()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{name}-")))
        .collect()
}

/// Every place a lab leaves traces in, for the "all gone" checks.
fn traces(name: &str) -> Vec<PathBuf> {
    let mut paths = vec![Path::new(ekube_lab::DEFAULT_ROOT).join(name)];
    for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        paths.push(entry.path().join("ekube").join(name));
    }
    if let Ok(entries) = std::fs::read_dir("/sys/fs/bpf/ekube") {
        for e in entries.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{name}-"))
            {
                paths.push(e.path());
            }
        }
    }
    paths.into_iter().filter(|p| p.exists()).collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !matches!(
                s[s.rfind(')').unwrap() + 2..].chars().next(),
                Some('Z' | 'X')
            )
        })
        .unwrap_or(false)
}

fn netns_inode(path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => {
                panic!("{what} not true after {timeout:?}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Serves `text` over HTTP on port 8080 of `host`, returning the server's PID.
fn serve(lab: &Lab, host: &str, text: &str) -> u32 {
    let www = lab.host(host).unwrap().dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), text).unwrap();
    let www = www.display().to_string();
    lab.spawn(
        host,
        "httpd",
        &["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", &www],
    )
    .unwrap()
}

#[test]
fn three_node_lab_connects_serves_images_and_leaves_nothing() {
    let name = "ekltu";
    let before = root_net();
    let images = std::env::temp_dir().join(format!("ekube-lab-test-{}", std::process::id()));
    let mut config = LabConfig::new(name);
    config.nodes = 3;
    config.images = Some(images.join("oci"));
    let lab = Lab::up(config).expect("lab up");

    let mut want: Vec<String> = ["ext", "fab", "n1", "n2", "n3"]
        .iter()
        .map(|s| format!("{name}-{s}"))
        .collect();
    want.sort();
    let mut have = lab_namespaces(name);
    have.sort();
    assert_eq!(have, want);

    // Every host reaches every other one over the underlay.
    for from in lab.hosts() {
        for to in lab.hosts().iter().filter(|h| h.netns != from.netns) {
            let ip = to.ip.to_string();
            let out = lab
                .exec(
                    &from.short,
                    &["/bin/busybox", "ping", "-c", "1", "-W", "2", &ip],
                )
                .unwrap();
            assert!(
                out.success(),
                "ping {} -> {}: {} {}",
                from.netns,
                to.netns,
                out.stdout,
                out.stderr
            );
        }
    }

    // TCP both ways: servers on n1 and ext, clients everywhere else.
    let n1_pid = serve(&lab, "n1", "hello from n1\n");
    let ext_pid = serve(&lab, "ext", "hello from ext\n");
    for (server, ip, text) in [
        ("n1", "192.168.64.10", "hello from n1"),
        ("ext", "192.168.64.100", "hello from ext"),
    ] {
        for client in lab.hosts().iter().filter(|h| h.short != server) {
            let url = format!("http://{ip}:8080/");
            wait_for(
                &format!("{url} from {}", client.netns),
                Duration::from_secs(10),
                || {
                    let out = lab
                        .exec_timeout(
                            &client.short,
                            &["/bin/busybox", "wget", "-q", "-O", "-", &url],
                            Duration::from_secs(5),
                        )
                        .map_err(|e| e.to_string())?;
                    if out.success() && out.stdout.trim() == text {
                        Ok(())
                    } else {
                        Err(format!(
                            "code {:?}: {} {}",
                            out.code, out.stdout, out.stderr
                        ))
                    }
                },
            );
        }
    }

    // Spawned processes sit in their host's cgroup2 subtree and network namespace.
    let cgroups = std::fs::read_to_string(format!("/proc/{n1_pid}/cgroup")).unwrap();
    assert!(
        cgroups.lines().any(|l| l == format!("0::/ekube/{name}/n1")),
        "{cgroups}"
    );
    let ns = std::fs::read_link(format!("/proc/{n1_pid}/ns/net")).unwrap();
    assert_eq!(
        ns.display().to_string(),
        format!("net:[{}]", netns_inode(&format!("/run/netns/{name}-n1")))
    );
    assert!(lab.log_path("n1", "httpd").unwrap().exists());

    // Per-node state: directories, pins, cgroups in v2 and v1, sysctls only inside the lab.
    for node in lab.nodes() {
        assert!(node.pin_dir().is_dir(), "{}", node.pin_dir().display());
        assert!(node.cgroup2_dir().is_dir());
        assert!(
            Path::new("/sys/fs/cgroup/memory")
                .join(&node.cgroup)
                .is_dir()
        );
        assert!(Path::new("/sys/fs/cgroup/pids").join(&node.cgroup).is_dir());
        assert!(node.cni_conf_dir().is_dir() && node.run_dir().is_dir());
        let fwd = lab
            .exec(&node.short, &["/bin/cat", "/proc/sys/net/ipv4/ip_forward"])
            .unwrap();
        assert_eq!(fwd.stdout.trim(), "1");
    }

    // The registry answers from the external client, and holds the images.
    let v2 = lab
        .http("ext", "GET", "http://192.168.64.1:5000/v2/", &[])
        .unwrap();
    assert_eq!(v2.status, 200, "{}", v2.text());
    assert_eq!(lab.images().len(), 3);
    for image in lab.images() {
        let url = format!(
            "http://{}/v2/{}/manifests/{}",
            lab.registry(),
            image.name,
            image.tag
        );
        let resp = lab
            .http(
                "n2",
                "GET",
                &url,
                &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
            )
            .unwrap();
        assert_eq!(resp.status, 200, "{url}: {}", resp.text());
        assert_eq!(
            resp.header("docker-content-digest"),
            Some(image.manifest_digest.as_str())
        );
    }
    assert!(ekube_lab::images::archive_path(&images.join("oci")).exists());

    lab.down().expect("lab down");
    assert!(!alive(n1_pid) && !alive(ext_pid), "servers still running");
    assert_eq!(lab_namespaces(name), Vec::<String>::new());
    assert_eq!(traces(name), Vec::<PathBuf>::new());
    assert_eq!(root_net(), before, "root namespace changed");
    std::fs::remove_dir_all(&images).unwrap();
}

#[test]
fn leftovers_of_a_crashed_lab_are_cleared() {
    let name = "ekltc";
    let before = root_net();
    let mut config = LabConfig::new(name);
    config.nodes = 1;
    let crashed = Lab::up(config.clone()).expect("first lab up");
    let argv = ["/bin/busybox", "sleep", "1000"];
    let sleeper = crashed.spawn("n1", "sleeper", &argv).unwrap();
    std::mem::forget(crashed);
    assert!(alive(sleeper));

    // The second run also starts components through the hooks, as `lab up` does with ekube.
    config.server = Some(CmdTemplate(
        [
            "/bin/sh",
            "-c",
            "echo {node} {ip} > {kubeconfig}; exec /bin/busybox sleep 1000",
        ]
        .map(str::to_owned)
        .to_vec(),
    ));
    config.node = Some(CmdTemplate::parse("/bin/busybox sleep 1001"));
    let lab = Lab::up(config).expect("second lab up");
    assert!(!alive(sleeper), "process of the crashed lab survived");
    let state: Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(ekube_lab::DEFAULT_ROOT)
                .join(name)
                .join("state.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let procs: Vec<_> = state["procs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        procs,
        ["dnsmasq", "registry", "server", "agent"],
        "only the new run's processes are recorded"
    );
    let kubeconfig = std::fs::read_to_string(lab.kubeconfig()).unwrap();
    assert_eq!(kubeconfig.trim(), format!("{name}-n1 192.168.64.10"));
    let agent = state["procs"][3]["pid"].as_u64().unwrap();
    let cgroups = std::fs::read_to_string(format!("/proc/{agent}/cgroup")).unwrap();
    assert!(
        cgroups.lines().any(|l| l == format!("0::/ekube/{name}/n1")),
        "{cgroups}"
    );
    let out = lab
        .exec(
            "ext",
            &[
                "/bin/busybox",
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                "192.168.64.10",
            ],
        )
        .unwrap();
    assert!(out.success(), "{}", out.stderr);

    // One process can be stopped on its own; PIDs the lab did not start are refused.
    let again = lab.spawn("n1", "sleeper", &argv).unwrap();
    assert!(alive(again));
    lab.stop(again).unwrap();
    assert!(!alive(again), "stopped process still running");
    assert!(lab.stop(std::process::id()).is_err());
    // Or killed at once, as a crash would end it: a process that ignores SIGTERM goes too.
    let stubborn = [
        "/bin/busybox",
        "sh",
        "-c",
        "trap '' TERM; echo \"$GREETING\"; exec /bin/busybox sleep 1000",
    ];
    let pid = lab
        .spawn_with_env("n1", "stubborn", &stubborn, &[("GREETING", "hello")])
        .unwrap();
    wait_for("the greeting in the log", Duration::from_secs(10), || {
        let log = std::fs::read_to_string(lab.log_path("n1", "stubborn").unwrap());
        match log {
            Ok(text) if text.trim() == "hello" => Ok(()),
            other => Err(format!("log: {other:?}")),
        }
    });
    lab.kill(pid).unwrap();
    assert!(!alive(pid), "killed process still running");
    assert!(lab.kill(pid).is_err(), "a forgotten PID is refused");
    drop(lab);

    assert_eq!(lab_namespaces(name), Vec::<String>::new());
    assert_eq!(traces(name), Vec::<PathBuf>::new());
    assert_eq!(root_net(), before, "root namespace changed");
}

#[test]
fn teardown_of_an_absent_lab_succeeds() {
    Lab::teardown(Path::new(ekube_lab::DEFAULT_ROOT), "ekltnone").unwrap();
    Lab::teardown(Path::new(ekube_lab::DEFAULT_ROOT), "ekltnone").unwrap();
}

#[test]
fn a_failed_start_reports_and_leaves_nothing() {
    let name = "ekltf";
    let mut config = LabConfig::new(name);
    config.nodes = 1;
    config.registry = false;
    config.server = Some(CmdTemplate(
        ["/bin/sh", "-c", "echo boom; exit 3"]
            .map(str::to_owned)
            .to_vec(),
    ));
    let err = Lab::up(config)
        .err()
        .expect("a server that exits fails the start");
    assert!(err.to_string().contains("server.log"), "{err}");
    assert_eq!(lab_namespaces(name), Vec::<String>::new());
    assert_eq!(traces(name), Vec::<PathBuf>::new());
}
