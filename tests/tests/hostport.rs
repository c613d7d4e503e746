//! End-to-end test of pods' hostPorts (the proxy's `hostport` mapping; issue 17) on a 2-node
//! lab, once with each of the proxy's datapaths (the default eBPF, `--mode iptables`,
//! `--mode nftables`), so each runs a real cluster's pod traffic too: a web pod
//! with `hostPort: 8080` on n1 answers at `<n1 IP>:8080` from the lab's external namespace and
//! from a pod on n2, not at n2's address, and not at all once it is deleted. A second pod
//! asking for the same hostPort on n1 is not scheduled there (the scheduler's NodePorts
//! filter). Needs root, the built binaries (`cargo build --bins`) and the lab's images.
//!
//! Clients run in the external namespace (`curl`) and in a busybox pod (`nc`), so nothing is
//! sent from the root namespace.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ekube_tests::cluster::{ClusterOptions, LabCluster};

const LAB: &str = "ekhport";
const HOST_PORT: u16 = 8080;
/// A plain HTTP request for busybox `nc` (the web pods answer with their hostname, last line).
const GET: &str = r"printf 'GET / HTTP/1.0\r\n\r\n'";

/// A web pod on node `node` (through the scheduler, by its hostname label) publishing its port
/// 80 as hostPort [`HOST_PORT`].
fn web_pod(name: &str, node: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},
            "spec":{{"terminationGracePeriodSeconds":1,
            "nodeSelector":{{"kubernetes.io/hostname":"{node}"}},
            "containers":[{{"name":"web","image":"192.168.64.1:5000/web:latest",
            "ports":[{{"containerPort":80,"hostPort":{HOST_PORT}}}]}}]}}}}"#
    )
}

/// What `http://<ip>:<port>/` answers from the external namespace (its last line), `None`
/// when nothing does within 3 s.
fn from_outside(c: &LabCluster, ip: &str, port: u16) -> Result<Option<String>> {
    let out = c.lab.exec(
        "ext",
        &["curl", "-s", "-m", "3", &format!("http://{ip}:{port}/")],
    )?;
    let answer = out.stdout.lines().last().unwrap_or("").trim().to_owned();
    Ok((out.success() && !answer.is_empty()).then_some(answer))
}

/// n1's hostPort rules of both rule modes: the `KUBE-HOSTPORTS` rules in the nat table (the
/// iptables mode writes through iptables-nft) and the `hostports` chain's rules in the
/// nftables mode's table.
fn hostport_rules(c: &LabCluster) -> Result<Vec<String>> {
    let out = c.lab.exec("n1", &["iptables-nft-save", "-t", "nat"])?;
    ensure!(out.success(), "iptables-nft-save on n1: {}", out.stderr);
    let mut rules: Vec<String> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("-A KUBE-HOSTPORTS "))
        .map(str::to_owned)
        .collect();
    // Fails (and adds nothing) while the table does not exist.
    let out = c.lab.exec(
        "n1",
        &["nft", "list", "chain", "ip", "kube-proxy", "hostports"],
    )?;
    rules.extend(
        out.stdout
            .lines()
            .filter(|l| l.contains(" dport "))
            .map(|l| l.trim().to_owned()),
    );
    Ok(rules)
}

/// One round on a fresh lab whose agents get `agent_args`.
fn round(mode: &str, agent_args: &[&str]) -> Result<()> {
    let c = LabCluster::start(
        LAB,
        2,
        ClusterOptions {
            agent_args,
            ..Default::default()
        },
    )?;
    let (n1, n2) = (c.node_name("n1"), c.node_name("n2"));
    let n1_ip = c.lab.host("n1")?.ip.to_string();
    let n2_ip = c.lab.host("n2")?.ip.to_string();

    c.apply(&web_pod("hp", &n1))?;
    let pod = c.wait_pod("hp", Duration::from_secs(90), "Running on n1", |p| {
        p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string()
    })?;
    ensure!(
        pod["spec"]["nodeName"] == n1.as_str(),
        "{mode}: pod hp on {}",
        pod["spec"]["nodeName"]
    );

    // From outside: n1's address answers with the pod, within moments of it running.
    let mut answer = None;
    c.wait(
        Duration::from_secs(30),
        &format!("{mode}: {n1_ip}:{HOST_PORT} answering from the external namespace"),
        |c| {
            answer = from_outside(c, &n1_ip, HOST_PORT)?;
            Ok(answer.is_some())
        },
    )?;
    ensure!(
        answer.as_deref() == Some("hp"),
        "{mode}: {n1_ip}:{HOST_PORT} answered {answer:?}, not pod hp"
    );
    // Served by the mode under test: one rule in a rule mode, none in eBPF mode.
    let rules = hostport_rules(&c)?;
    let rule_mode = mode != "ebpf";
    ensure!(
        rules.len() == usize::from(rule_mode)
            && rules
                .iter()
                .all(|r| r.contains("default/hp hostport 8080") && r.contains("dport 8080")),
        "{mode}: hostPort rules on n1: {rules:?}"
    );
    // On n1 only.
    let other = from_outside(&c, &n2_ip, HOST_PORT)?;
    ensure!(
        other.is_none(),
        "{mode}: {n2_ip}:{HOST_PORT} answered {other:?}; the hostPort belongs to n1"
    );

    // From a pod on n2: across the underlay to n1's address.
    let script = format!(
        "for i in $(seq 20); do a=$({GET} | nc -w 3 {n1_ip} {HOST_PORT} | tail -n1); \
         [ -n \"$a\" ] && break; sleep 1; done; echo \"ANSWER ${{a:-FAILED}}\"; sleep 3600"
    );
    c.apply(&format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"client"}},
            "spec":{{"nodeName":"{n2}","terminationGracePeriodSeconds":1,
            "containers":[{{"name":"c","image":"192.168.64.1:5000/busybox:latest",
            "command":["sh","-c",{}]}}]}}}}"#,
        serde_json::to_string(&script)?
    ))?;
    let mut output = String::new();
    c.wait(
        Duration::from_secs(90),
        &format!("{mode}: the client pod on n2 to report"),
        |c| {
            output = c.container_output(&c.get("pod", "client")?, "c")?;
            Ok(output.contains("ANSWER"))
        },
    )?;
    ensure!(
        output.contains("ANSWER hp"),
        "{mode}: from a pod on n2, {n1_ip}:{HOST_PORT} answered:\n{output}"
    );

    // A second pod wanting the same hostPort on n1 does not fit there.
    c.apply(&web_pod("hp-twin", &n1))?;
    c.wait(
        Duration::from_secs(30),
        &format!("{mode}: FailedScheduling of hp-twin for its port"),
        |c| {
            Ok(c.events_of("hp-twin")?.iter().any(|(reason, message)| {
                reason == "FailedScheduling" && message.contains("free ports")
            }))
        },
    )?;
    let twin = c.get("pod", "hp-twin")?;
    ensure!(
        twin["spec"]["nodeName"].is_null(),
        "{mode}: hp-twin was bound to {} next to hp",
        twin["spec"]["nodeName"]
    );
    c.kubectl(&["delete", "pod", "hp-twin", "--wait=false"])?;

    // Deleting the pod removes the mapping.
    c.kubectl(&["delete", "pod", "hp", "--wait=false"])?;
    c.wait(
        Duration::from_secs(30),
        &format!("{mode}: {n1_ip}:{HOST_PORT} to stop answering after hp is deleted"),
        |c| Ok(from_outside(c, &n1_ip, HOST_PORT)?.is_none()),
    )?;
    c.wait(Duration::from_secs(30), "pod hp gone", |c| {
        Ok(c.run(&["get", "pod", "hp"])?.stderr.contains("NotFound"))
    })
    .context(mode.to_owned())?;
    c.wait(
        Duration::from_secs(10),
        &format!("{mode}: no hostPort rules left on n1"),
        |c| Ok(hostport_rules(c)?.is_empty()),
    )?;
    Ok(())
}

#[test]
fn host_ports_reach_the_pod_in_every_proxy_mode() -> Result<()> {
    round("ebpf", &[])?;
    round("iptables", &["--proxy-arg", "mode=iptables"])?;
    round("nftables", &["--proxy-arg", "mode=nftables"])
}
