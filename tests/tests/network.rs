//! End-to-end test of the pod network (DESIGN.md §6) on one 4-node lab: `ekube server` on n1,
//! `ekube flannel --register-node` on every node (node IPAM in the server assigns the /24s), and on n1–n3 two "pods" each —
//! network namespaces wired by running the `ekube-cni` binary exactly as a kubelet would.
//! It checks pod-to-pod reachability across the VXLAN overlay (including a 4 MB transfer),
//! masquerading only for traffic leaving the cluster, removal of a deleted Node's entries
//! within 2 s, and that restarting the agent leaves exactly the same entries. Needs root and
//! the Debian package `iproute2` (`ip`, `bridge`) and `iptables`.
//!
//! Servers and clients are threads of this test that entered a pod's (or node's) network
//! namespace, so nothing is sent from the root namespace.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ekube_cni::NodeConflist;
use ekube_lab::{CmdTemplate, Lab};
use ekube_tests::{ekube_bin, netns, wait_for};
use serde_json::Value;

const LAB: &str = "eknet";
/// Prefix of the pod namespaces (not a lab namespace name, so cleared here).
const POD_PREFIX: &str = "eknetp";
const NODES: usize = 4;
/// Nodes that get pods; the last node is the one deleted.
const POD_NODES: usize = 3;
const PORT: u16 = 8080;
const BIG: usize = 4 * 1024 * 1024;
/// Removes the pod namespaces on drop (the lab removes the rest).
struct PodNamespaces(Vec<String>);

impl PodNamespaces {
    fn clear_leftovers() {
        let out = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip netns list");
        for name in String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
        {
            if name.starts_with(POD_PREFIX) {
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
        }
    }
}

impl Drop for PodNamespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A pod: its namespace, node and address.
#[derive(Debug, Clone)]
struct Pod {
    netns: String,
    node: usize,
    ip: Ipv4Addr,
}

/// Runs `f` on a thread inside network namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    ekube_tests::bench::in_netns(ns, f).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Serves forever inside `ns`: a line `ip` is answered with the client's address, `big` with
/// [`BIG`] bytes.
fn serve(ns: &str, port: u16) {
    let listener = in_netns(ns, move || {
        TcpListener::bind(("0.0.0.0", port)).expect("bind")
    });
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let mut line = [0u8; 4];
                if conn.read_exact(&mut line).is_err() {
                    return;
                }
                let _ = match &line {
                    b"ip\n\n" => conn.write_all(
                        conn.peer_addr()
                            .map(|a| a.ip().to_string())
                            .unwrap_or_default()
                            .as_bytes(),
                    ),
                    b"big\n" => conn.write_all(&vec![0x5a; BIG]),
                    _ => Ok(()),
                };
            });
        }
    });
}

/// One request from inside `ns` to `dst`; returns the answer.
fn request(ns: &str, dst: Ipv4Addr, port: u16, what: &'static [u8; 4]) -> Result<Vec<u8>> {
    in_netns(ns, move || -> Result<Vec<u8>> {
        let addr = SocketAddr::from((dst, port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .with_context(|| format!("connect {addr}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(what)?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)
            .with_context(|| format!("read from {addr}"))?;
        Ok(out)
    })
}

/// The source address `dst`'s server saw for a connection from `ns`, retried for up to 10 s.
fn seen_from(ns: &str, dst: Ipv4Addr, port: u16) -> Result<String> {
    let mut answer = String::new();
    wait_for(
        Duration::from_secs(10),
        &format!("{ns} to reach {dst}:{port}"),
        || {
            answer = String::from_utf8(request(ns, dst, port, b"ip\n\n")?)?;
            Ok(true)
        },
    )?;
    Ok(answer)
}

/// `ip`/`bridge` with JSON output inside a lab host.
fn json(lab: &Lab, host: &str, argv: &[&str]) -> Result<Value> {
    let out = lab.exec(host, argv)?;
    ensure!(out.success(), "{argv:?} on {host}: {}", out.stderr);
    Ok(serde_json::from_str(out.stdout.trim()).unwrap_or(Value::Array(vec![])))
}

/// Routes, permanent neighbours and FDB entries on `flannel.1` of node `host`, as strings.
fn overlay_entries(lab: &Lab, host: &str) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for r in json(
        lab,
        host,
        &["ip", "-j", "-4", "route", "show", "dev", "flannel.1"],
    )?
    .as_array()
    .into_iter()
    .flatten()
    {
        out.insert(format!(
            "route {} via {} {}",
            r["dst"], r["gateway"], r["flags"]
        ));
    }
    for n in json(
        lab,
        host,
        &["ip", "-j", "-4", "neigh", "show", "dev", "flannel.1"],
    )?
    .as_array()
    .into_iter()
    .flatten()
    {
        out.insert(format!("neigh {} {} {}", n["dst"], n["lladdr"], n["state"]));
    }
    for f in json(
        lab,
        host,
        &["bridge", "-j", "fdb", "show", "dev", "flannel.1"],
    )?
    .as_array()
    .into_iter()
    .flatten()
    {
        out.insert(format!("fdb {} {} {}", f["mac"], f["dst"], f["state"]));
    }
    Ok(out)
}

/// tx/rx packets of `flannel.1` on `host`.
fn vxlan_packets(lab: &Lab, host: &str) -> Result<(u64, u64)> {
    let v = json(lab, host, &["ip", "-j", "-s", "link", "show", "flannel.1"])?;
    let s = &v[0]["stats64"];
    Ok((
        s["tx"]["packets"].as_u64().unwrap_or(0),
        s["rx"]["packets"].as_u64().unwrap_or(0),
    ))
}

fn flannel_argv(lab: &Lab, i: usize) -> Result<Vec<String>> {
    let host = lab.host(&format!("n{i}"))?;
    let t = CmdTemplate::parse(
        "{ekube} flannel --kubeconfig {kubeconfig} --hostname-override {node} --public-ip {ip} \
         --subnet-file {dir}/run/subnet.env --register-node --resync-interval 5",
    );
    Ok(t.render(&host.vars(lab.config())))
}

/// Runs `ekube-cni` ADD for a new pod namespace on node `i`, as a kubelet would.
fn add_pod(lab: &Lab, i: usize, j: usize) -> Result<Pod> {
    let host = lab.host(&format!("n{i}"))?;
    let netns = format!("{POD_PREFIX}{i}{j}");
    let st = Command::new("ip").args(["netns", "add", &netns]).status()?;
    ensure!(st.success(), "ip netns add {netns}");
    let conflist = ekube_cni::write_conflist(
        &host.cni_conf_dir(),
        &NodeConflist {
            subnet_file: host.run_dir().join("subnet.env"),
            data_dir: host.dir.join("data/cni"),
            ..Default::default()
        },
    )?;
    let list: Value = serde_json::from_str(&std::fs::read_to_string(&conflist)?)?;
    let mut conf = list["plugins"][0].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    conf["name"] = list["name"].clone();

    let plugin = ekube_bin().with_file_name("ekube-cni");
    let mut cmd = ekube_tests::bench::netns_command(&host.netns, &plugin)?;
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", format!("{netns}-sandbox"))
        .env("CNI_NETNS", netns::path(&netns))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", plugin.parent().unwrap())
        .env(
            "CNI_ARGS",
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={netns}"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("starting ekube-cni")?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "CNI ADD for {netns} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout)?;
    let addr = result["ips"][0]["address"]
        .as_str()
        .context("no ips[0].address in the CNI result")?;
    let ip: Ipv4Addr = addr.split('/').next().unwrap().parse()?;
    ensure!(
        ip.octets()[..2] == [10, 244],
        "pod {netns} got {ip}, not from the cluster CIDR"
    );
    Ok(Pod { netns, node: i, ip })
}

/// Waits until every node in `nodes` holds exactly the entries for the other nodes of `peers`
/// and none mentioning any string of `absent`.
fn wait_converged(
    lab: &Lab,
    nodes: &[usize],
    peers: &[usize],
    absent: &[String],
    timeout: Duration,
) -> Result<()> {
    for &i in nodes {
        let want = peers.iter().filter(|&&p| p != i).count();
        let host = format!("n{i}");
        wait_for(
            timeout,
            &format!("{host} to hold routes, neighbours and fdb entries for {want} peers"),
            || {
                let e = overlay_entries(lab, &host)?;
                let count = |k: &str| e.iter().filter(|s| s.starts_with(k)).count();
                let ok =
                    count("route ") == want && count("neigh ") == want && count("fdb ") == want;
                let stray = e
                    .iter()
                    .any(|s| absent.iter().any(|a| s.contains(a.as_str())));
                Ok(ok && !stray)
            },
        )
        .with_context(|| {
            format!(
                "entries now: {:#?}",
                overlay_entries(lab, &host).unwrap_or_default()
            )
        })?;
    }
    Ok(())
}

/// Runs `f` with a kube client whose connections start inside the lab's `ext` namespace.
fn with_client<T: Send + 'static>(
    lab: &Lab,
    f: impl FnOnce(
        kube::Client,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send>>
    + Send
    + 'static,
) -> Result<T> {
    let kubeconfig = lab.kubeconfig();
    in_netns(&lab.host("ext")?.netns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let client = ekube_api::client::from_kubeconfig(&kubeconfig).await?;
            f(client).await
        })
    })
}

#[test]
fn pod_network_end_to_end() -> Result<()> {
    let started = Instant::now();
    PodNamespaces::clear_leftovers();
    let lab = ekube_tests::server_lab(LAB, NODES);
    let mut pods_guard = PodNamespaces(Vec::new());

    let mut agents = Vec::new();
    for i in 1..=NODES {
        agents.push(lab.spawn(&format!("n{i}"), "flannel", &flannel_argv(&lab, i)?)?);
    }
    let all: Vec<usize> = (1..=NODES).collect();
    let show_logs = |e: anyhow::Error| -> anyhow::Error {
        let logs: String = (1..=NODES)
            .map(|i| {
                let p = lab.log_path(&format!("n{i}"), "flannel").unwrap();
                format!(
                    "--- n{i} flannel ({})\n{}\n",
                    p.display(),
                    std::fs::read_to_string(&p).unwrap_or_else(|e| e.to_string())
                )
            })
            .collect();
        e.context(logs)
    };
    wait_converged(&lab, &all, &all, &[], Duration::from_secs(60)).map_err(show_logs)?;

    // The agent's own outputs: subnet.env and the annotations.
    let node2 = format!("{LAB}-n2");
    let (ann, cidr2) = with_client(&lab, move |c| {
        Box::pin(async move {
            let n = kube::Api::<k8s_openapi::api::core::v1::Node>::all(c)
                .get(&node2)
                .await?;
            Ok((
                n.metadata.annotations.unwrap_or_default(),
                n.spec.and_then(|s| s.pod_cidr).unwrap_or_default(),
            ))
        })
    })?;
    // Node IPAM in the controller-manager (inside `ekube server`) assigns each node its /24.
    let net2 = cidr2
        .strip_suffix(".0/24")
        .with_context(|| format!("n2 podCIDR {cidr2:?} is not a /24"))?
        .to_owned();
    let env = std::fs::read_to_string(lab.host("n2")?.run_dir().join("subnet.env"))?;
    let mtu_underlay = json(&lab, "n2", &["ip", "-j", "link", "show", "eth0"])?[0]["mtu"]
        .as_u64()
        .context("underlay mtu")?;
    ensure!(
        env.contains("FLANNEL_NETWORK=10.244.0.0/16\n")
            && env.contains(&format!("FLANNEL_SUBNET={net2}.1/24\n")),
        "subnet.env: {env}"
    );
    ensure!(env.contains("FLANNEL_IPMASQ=true"), "subnet.env: {env}");
    let dev = json(&lab, "n2", &["ip", "-j", "-d", "link", "show", "flannel.1"])?;
    let info = &dev[0]["linkinfo"]["info_data"];
    ensure!(
        info["id"] == 1
            && info["port"] == 8472
            && info["learning"] == false
            && info["local"] == "192.168.64.20",
        "flannel.1: {dev}"
    );
    ensure!(
        dev[0]["mtu"].as_u64() == Some(mtu_underlay - 50),
        "flannel.1 mtu {} vs underlay {mtu_underlay}",
        dev[0]["mtu"]
    );
    ensure!(
        env.contains(&format!("FLANNEL_MTU={}\n", mtu_underlay - 50)),
        "subnet.env: {env}"
    );
    let addrs = json(&lab, "n2", &["ip", "-j", "-4", "addr", "show", "flannel.1"])?;
    ensure!(
        addrs[0]["addr_info"][0]["local"] == format!("{net2}.0").as_str()
            && addrs[0]["addr_info"][0]["prefixlen"] == 32,
        "flannel.1 addresses: {addrs}"
    );
    ensure!(
        ann.get("flannel.alpha.coreos.com/backend-type")
            .map(String::as_str)
            == Some("vxlan"),
        "annotations: {ann:?}"
    );
    ensure!(
        ann.get("flannel.alpha.coreos.com/public-ip")
            .map(String::as_str)
            == Some("192.168.64.20"),
        "annotations: {ann:?}"
    );
    ensure!(
        ann.get("flannel.alpha.coreos.com/kube-subnet-manager")
            .map(String::as_str)
            == Some("true"),
        "annotations: {ann:?}"
    );
    let data: Value = serde_json::from_str(
        ann.get("flannel.alpha.coreos.com/backend-data")
            .context("no backend-data")?,
    )?;
    ensure!(
        data["VNI"] == 1 && data["VtepMAC"] == dev[0]["address"],
        "backend-data {data} vs device {}",
        dev[0]["address"]
    );
    eprintln!(
        "[{:?}] overlay converged on {NODES} nodes",
        started.elapsed()
    );

    // 1. Pods: two per node, wired by the CNI plugin; everyone reaches everyone.
    let mut pods = Vec::new();
    for i in 1..=POD_NODES {
        for j in 1..=2 {
            pods_guard.0.push(format!("{POD_PREFIX}{i}{j}"));
            pods.push(add_pod(&lab, i, j)?);
        }
    }
    for p in &pods {
        serve(&p.netns, PORT);
    }
    for i in 1..=NODES {
        serve(&format!("{LAB}-n{i}"), PORT);
    }
    serve(&format!("{LAB}-ext"), PORT);
    let before = vxlan_packets(&lab, "n1")?;
    for a in &pods {
        for b in pods.iter().filter(|b| b.netns != a.netns) {
            // 2b. Pod to pod keeps the pod's address, across nodes too.
            let seen = seen_from(&a.netns, b.ip, PORT)?;
            ensure!(
                seen == a.ip.to_string(),
                "{} -> {}: server saw {seen}, expected the pod address {}",
                a.netns,
                b.netns,
                a.ip
            );
        }
        for n in 1..=NODES {
            seen_from(&a.netns, ekube_lab::node_ip(n), PORT)
                .with_context(|| format!("{} to node n{n}", a.netns))?;
        }
        // 2a. Leaving the cluster: masqueraded to the node's address.
        let seen = seen_from(&a.netns, ekube_lab::EXT_IP, PORT)?;
        ensure!(
            seen == ekube_lab::node_ip(a.node).to_string(),
            "{} -> ext: server saw {seen}, expected node address",
            a.netns
        );
    }
    let after = vxlan_packets(&lab, "n1")?;
    ensure!(
        after.0 > before.0 && after.1 > before.1,
        "flannel.1 on n1 carried nothing: {before:?} -> {after:?}"
    );
    eprintln!(
        "[{:?}] {} pods reach each other, the nodes and ext; flannel.1 on n1 tx/rx {after:?}",
        started.elapsed(),
        pods.len()
    );

    // 1b. A 4 MB transfer between pods on different nodes (MTU right).
    let big = request(&pods[0].netns, pods[5].ip, PORT, b"big\n")?;
    ensure!(
        big.len() == BIG && big.iter().all(|&b| b == 0x5a),
        "4 MB transfer {} -> {} got {} bytes",
        pods[0].netns,
        pods[5].netns,
        big.len()
    );
    let big = request(&pods[4].netns, pods[1].ip, PORT, b"big\n")?;
    ensure!(
        big.len() == BIG,
        "4 MB transfer {} -> {} got {} bytes",
        pods[4].netns,
        pods[1].netns,
        big.len()
    );

    // 5. Deleting node n4: everyone else drops its entries within 2 s.
    let gone = format!("{LAB}-n{NODES}");
    let name = gone.clone();
    // Its subnet as node IPAM assigned it.
    let gone_subnet = with_client(&lab, move |c| {
        Box::pin(async move {
            let n = kube::Api::<k8s_openapi::api::core::v1::Node>::all(c)
                .get(&name)
                .await?;
            n.spec.and_then(|s| s.pod_cidr).context("no podCIDR")
        })
    })?;
    let gone_vtep = gone_subnet.split('/').next().unwrap_or_default().to_owned();
    let absent = vec![
        format!("\"{gone_vtep}\""),
        format!("\"{}\"", ekube_lab::node_ip(NODES)),
    ];
    let n4_entries: Vec<String> = overlay_entries(&lab, "n1")?
        .into_iter()
        .filter(|s| absent.iter().any(|a| s.contains(a.as_str())))
        .collect();
    ensure!(
        n4_entries.len() == 3,
        "expected n4's route, neighbour and fdb entry on n1: {n4_entries:?}"
    );
    let name = gone.clone();
    with_client(&lab, move |c| {
        Box::pin(async move {
            kube::Api::<k8s_openapi::api::core::v1::Node>::all(c)
                .delete(&name, &Default::default())
                .await?;
            Ok(())
        })
    })?;
    let deleted_at = Instant::now();
    let rest: Vec<usize> = (1..NODES).collect();
    wait_converged(&lab, &rest, &rest, &absent, Duration::from_secs(2)).map_err(show_logs)?;
    eprintln!(
        "[{:?}] node {gone} removed everywhere after {:?}",
        started.elapsed(),
        deleted_at.elapsed()
    );

    // 5b. Restarting the agent on n1 rebuilds the same entries and prunes stale ones.
    let snapshot = overlay_entries(&lab, "n1")?;
    lab.stop(agents[0])?;
    for argv in [
        &[
            "ip",
            "route",
            "add",
            "10.244.99.0/24",
            "via",
            "10.244.99.0",
            "dev",
            "flannel.1",
            "onlink",
        ][..],
        &[
            "ip",
            "neigh",
            "add",
            "10.244.99.0",
            "lladdr",
            "0e:6b:0a:f4:63:00",
            "dev",
            "flannel.1",
            "nud",
            "permanent",
        ][..],
        &[
            "bridge",
            "fdb",
            "add",
            "0e:6b:0a:f4:63:00",
            "dev",
            "flannel.1",
            "dst",
            "192.168.64.99",
            "self",
            "permanent",
        ][..],
    ] {
        let out = lab.exec("n1", argv)?;
        ensure!(out.success(), "{argv:?}: {}", out.stderr);
    }
    ensure!(
        overlay_entries(&lab, "n1")?.len() == snapshot.len() + 3,
        "stale entries not planted"
    );
    agents[0] = lab.spawn("n1", "flannel", &flannel_argv(&lab, 1)?)?;
    wait_for(
        Duration::from_secs(30),
        "the restarted agent on n1 to restore exactly the earlier entries",
        || Ok(overlay_entries(&lab, "n1")? == snapshot),
    )
    .map_err(show_logs)?;
    let log = std::fs::read_to_string(lab.log_path("n1", "flannel")?)?;
    ensure!(
        log.contains("keeping the existing VXLAN device"),
        "the restarted agent recreated flannel.1:\n{log}"
    );
    let seen = seen_from(&pods[1].netns, pods[3].ip, PORT)?;
    ensure!(
        seen == pods[1].ip.to_string(),
        "after restart, {} -> {} saw {seen}",
        pods[1].netns,
        pods[3].netns
    );
    eprintln!(
        "[{:?}] restart kept exactly {} entries",
        started.elapsed(),
        snapshot.len()
    );

    // 6. Teardown leaves nothing of the lab.
    drop(pods_guard);
    lab.down().context("tearing the lab down")?;
    let out = Command::new("ip").args(["netns", "list"]).output()?;
    let left: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&format!("{LAB}-")) || l.starts_with(POD_PREFIX))
        .map(str::to_owned)
        .collect();
    if !left.is_empty() {
        bail!("namespaces left after teardown: {left:?}");
    }
    ensure!(
        !Path::new(ekube_lab::DEFAULT_ROOT).join(LAB).exists(),
        "lab directory left after teardown"
    );
    eprintln!("[{:?}] lab torn down", started.elapsed());
    Ok(())
}
