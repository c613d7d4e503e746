//! Fixtures the service-datapath tests (`proxy`, `proxy_iptables`, `nodeport`) share: the
//! `ekube-probe` servers and clients they run inside their network namespaces and the lines
//! those print, the Services and EndpointSlices they write, the lab they run on, and the
//! cgroups, pins and namespaces a crashed run of theirs leaves behind.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use ekube_lab::{Host, Lab};
use ekube_proxy::datapath::{DatapathConfig, remove_pins};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

use crate::{ekube_bin, netns, probe_bin};

/// The port every backend serves TCP on.
pub const TCP_PORT: u16 = 8080;
/// The port every backend serves UDP on.
pub const UDP_PORT: u16 = 5353;
/// Where the tests' cgroups live (the cgroup2 hierarchy of a hybrid host).
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup/unified";
/// The bpffs the proxy pins under (`<BPFFS>/ekube/<node>`).
pub const BPFFS: &str = "/sys/fs/bpf";

/// A lab node's datapath as its proxy keeps it: pins under `<BPFFS>/ekube/<node>` (which the
/// lab removes with the node), socket hooks on the node's cgroup2 subtree.
pub fn node_datapath(node: &Host) -> DatapathConfig {
    DatapathConfig {
        cgroup: node.cgroup2_dir(),
        bpffs: BPFFS.into(),
        ..DatapathConfig::new(node.netns.clone())
    }
}

/// `ekube proxy` for `node` of `lab`, with the lab's admin kubeconfig, then `extra`.
pub fn proxy_argv(lab: &Lab, node: &Host, extra: &[&str]) -> Vec<String> {
    let mut argv = vec![
        ekube_bin().display().to_string(),
        "proxy".into(),
        "--kubeconfig".into(),
        lab.kubeconfig().display().to_string(),
        "--hostname-override".into(),
        node.netns.clone(),
        "--cgroup-path".into(),
        node.cgroup2_dir().display().to_string(),
    ];
    argv.extend(extra.iter().map(|a| a.to_string()));
    argv
}

/// A client of the lab's server. Call it from a thread inside one of the lab's namespaces
/// ([`netns::Entered`]): its connections start where the calling thread is.
pub fn lab_client(rt: &tokio::runtime::Runtime, lab: &Lab) -> kube::Client {
    rt.block_on(ekube_api::client::from_kubeconfig(&lab.kubeconfig()))
        .expect("a client from the lab's admin kubeconfig")
}

/// Opens `cgroup.procs` of `node`'s cgroup2 subtree, for [`in_cgroup`].
pub fn cgroup_procs(node: &Host) -> File {
    let path = node.cgroup2_dir().join("cgroup.procs");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

/// One line of `ekube-probe client` output.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// An answer: the server's name, the client address the server saw, and the peer the
    /// client saw (the address connected to over TCP, the reply's source over UDP).
    Ok {
        name: String,
        seen: Ipv4Addr,
        peer: String,
    },
    /// The errno of a failed attempt (a timeout reads as EAGAIN).
    Err(i32),
    /// A stream client's round trips and failed ones.
    Echo { sent: u32, bad: u32 },
}

impl Reply {
    /// Parses one line; panics on a line the client does not print.
    pub fn parse(line: &str) -> Self {
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["ok", name, seen, peer] => Reply::Ok {
                name: name.to_string(),
                seen: seen.parse().expect("the address the server saw"),
                peer: peer.to_string(),
            },
            ["err", errno] => Reply::Err(errno.parse().expect("errno")),
            ["echo", sent, bad] => Reply::Echo {
                sent: sent.parse().expect("round trips"),
                bad: bad.parse().expect("failed round trips"),
            },
            _ => panic!("bad client line {line:?}"),
        }
    }

    /// Every line of a client's output.
    pub fn parse_all(out: &str) -> Vec<Self> {
        out.lines().map(Reply::parse).collect()
    }
}

/// Answers per server name; panics on any attempt that failed.
pub fn tally(replies: &[Reply]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for reply in replies {
        match reply {
            Reply::Ok { name, .. } => *counts.entry(name.clone()).or_insert(0) += 1,
            other => panic!("a request failed: {other:?} (all: {replies:?})"),
        }
    }
    counts
}

/// [`tally`], checking too that every answer showed `peer` to the client and, when given,
/// reached its server from `seen`.
pub fn tally_from(
    replies: &[Reply],
    peer: &str,
    seen: Option<Ipv4Addr>,
) -> BTreeMap<String, usize> {
    for reply in replies {
        if let Reply::Ok {
            seen: source,
            peer: got,
            ..
        } = reply
        {
            assert_eq!(got, peer, "peer seen by the client: {replies:?}");
            if let Some(seen) = seen {
                assert_eq!(*source, seen, "source seen by the server: {replies:?}");
            }
        }
    }
    tally(replies)
}

/// The names of the servers that answered.
pub fn names(replies: &[Reply]) -> BTreeSet<String> {
    replies
        .iter()
        .filter_map(|r| match r {
            Reply::Ok { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// Endpoints `(address, ready, node)` as the `endpoints` of an EndpointSlice.
pub fn endpoints(list: &[(Ipv4Addr, bool, Option<&str>)]) -> Value {
    list.iter()
        .map(|(ip, ready, node)| {
            let mut ep = json!({ "addresses": [ip.to_string()], "conditions": { "ready": ready } });
            if let Some(node) = node {
                ep["nodeName"] = json!(node);
            }
            ep
        })
        .collect()
}

/// The EndpointSlice `<service>-1` of `service`, written by the test as a controller would.
pub fn endpoint_slice(service: &str, ports: Value, endpoints: Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{service}-1"),
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "ekube-tests",
            },
        },
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    }))
    .expect("an EndpointSlice")
}

/// The slice port `http` of the backends' TCP servers.
pub fn tcp_ports() -> Value {
    json!([{ "name": "http", "protocol": "TCP", "port": TCP_PORT }])
}

/// A ClusterIP Service `name` at `ip`, port 80 to the backends' TCP port.
pub fn cluster_ip_service(name: &str, ip: Ipv4Addr) -> Value {
    json!({
        "metadata": { "name": name },
        "spec": {
            "clusterIP": ip.to_string(),
            "ports": [{ "name": "http", "protocol": "TCP", "port": 80, "targetPort": TCP_PORT }],
        },
    })
}

/// Starts `ekube-probe serve` in namespace `ns` with `servers` (`NAME=IP` on the TCP and UDP
/// ports, `NAME=IP:PORT` TCP only) and waits until it listens. It exits when its stdin closes.
pub fn serve(ns: &str, servers: &[String]) -> Child {
    let child = netns::nsenter(ns)
        .arg(probe_bin())
        .arg("serve")
        .args(["--tcp-port", &TCP_PORT.to_string()])
        .args(["--udp-port", &UDP_PORT.to_string()])
        .args(servers)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the servers");
    await_ready(child, &format!("the servers in {ns}"))
}

/// `child` once it has printed `ready`.
pub fn await_ready(mut child: Child, what: &str) -> Child {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("reading from {what}: {e}"));
    assert_eq!(line.trim(), "ready", "{what} did not start");
    child
}

/// `ekube-probe client <args>` in namespace `ns`, with its output piped.
pub fn client(ns: &str, args: &[String]) -> Command {
    let mut cmd = netns::nsenter(ns);
    cmd.arg(probe_bin()).arg("client").args(args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Makes `cmd` start inside the cgroup whose `cgroup.procs` is open as `procs`.
pub fn in_cgroup(cmd: &mut Command, procs: &File) {
    let procs = procs.try_clone().expect("dup cgroup.procs");
    // SAFETY: only a write(2) on an open file between fork and exec ("0" moves the writing
    // process itself; nsenter and the client inherit the cgroup).
    unsafe {
        cmd.pre_exec(move || (&procs).write_all(b"0"));
    }
}

/// Waits for a client to end and parses what it printed; panics when it failed.
pub fn collect(child: Child, what: &str) -> Vec<Reply> {
    Reply::parse_all(&output(child, what))
}

/// Waits for a client to end: what it printed; panics when it failed.
pub fn output(child: Child, what: &str) -> String {
    let out = child.wait_with_output().expect("running the client");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "client `{what}` failed: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Removes the cgroups, pins and namespaces named `<prefix><pid>-…` of earlier runs whose
/// process is gone.
pub fn clear_leftovers(prefix: &str) {
    let stale = |name: &str| netns::stale(prefix, name);
    for dir in std::fs::read_dir(Path::new(BPFFS).join("ekube"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = dir.file_name().to_string_lossy().into_owned();
        if stale(&name) {
            let _ = remove_pins(&DatapathConfig {
                bpffs: BPFFS.into(),
                ..DatapathConfig::new(name)
            });
        }
    }
    for dir in std::fs::read_dir(CGROUP_ROOT)
        .into_iter()
        .flatten()
        .flatten()
    {
        if stale(&dir.file_name().to_string_lossy()) {
            let _ = std::fs::remove_dir(dir.path());
        }
    }
    netns::clear_stale(prefix);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_lines_parse() {
        assert_eq!(
            Reply::parse("ok b1 10.244.1.2 10.96.0.10:80"),
            Reply::Ok {
                name: "b1".into(),
                seen: Ipv4Addr::new(10, 244, 1, 2),
                peer: "10.96.0.10:80".into(),
            }
        );
        assert_eq!(Reply::parse("err 111"), Reply::Err(111));
        assert_eq!(Reply::parse("echo 60 0"), Reply::Echo { sent: 60, bad: 0 });
    }

    #[test]
    #[should_panic(expected = "a request failed")]
    fn a_failed_attempt_fails_the_tally() {
        tally(&[Reply::Err(11)]);
    }
}
