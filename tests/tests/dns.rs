//! The cluster DNS add-on end to end, on one 3-node lab cluster brought up by `ekube init`
//! (whose addons phase installs `coredns` running `ekube dns` from the add-on image):
//!
//! - from a pod on every node, the lab's busybox `nslookup` (through the pod's resolv.conf and
//!   its search path): `kubernetes.default`, a ClusterIP Service by its full name, a headless
//!   Service's three endpoints, an ExternalName, and a name outside the cluster, answered by
//!   the lab's upstream (dnsmasq in the external namespace);
//! - with Debian's `dig` in each node's namespace (asking the cluster DNS address): SRV of a
//!   named port, PTR of a cluster IP, the ExternalName's CNAME, NXDOMAIN once the headless
//!   Service has no endpoints, TCP, and an answer over 512 bytes truncated over UDP and whole
//!   over TCP;
//! - a StatefulSet's pod name followed to its new address when the pod is recreated;
//! - no query lost by a client that retries as glibc does while one `coredns` pod is deleted;
//! - malformed queries answered with errors while the server keeps serving, and a `dnsConfig`
//!   over the limits refused with 422.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ekube_tests::cluster::{ClusterOptions, LabCluster, is_ready};
use serde_json::Value;

const LAB: &str = "ekdns";
const BUSYBOX: &str = "192.168.64.1:5000/busybox:latest";
const DNS_IP: &str = "10.96.0.10";

/// The Services and their pods: `web` (ClusterIP, named port `http`), `db` (headless over the
/// same pods), `wide` (headless, ten named ports: its SRV answer needs TCP), `ext`
/// (ExternalName to the lab's upstream zone), and the StatefulSet `web` in namespace `sts`.
fn workloads(outside: &str) -> String {
    let ports: String = (0..10)
        .map(|i| {
            format!(
                "  - {{name: port{i}, port: {}, targetPort: 8080}}\n",
                9000 + i
            )
        })
        .collect();
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: httpd
        image: {BUSYBOX}
        command: ["sh", "-c", "mkdir -p /www && exec httpd -f -p 8080 -h /www"]
        ports: [{{containerPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: db}}
spec:
  clusterIP: None
  selector: {{app: web}}
  ports: [{{name: http, port: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: wide}}
spec:
  clusterIP: None
  selector: {{app: web}}
  ports:
{ports}---
apiVersion: v1
kind: Service
metadata: {{name: ext}}
spec:
  type: ExternalName
  externalName: www.{outside}
---
apiVersion: v1
kind: Namespace
metadata: {{name: sts}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: sts}}
spec:
  clusterIP: None
  selector: {{app: sts-web}}
  ports: [{{name: http, port: 8080}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web, namespace: sts}}
spec:
  serviceName: web
  replicas: 1
  selector: {{matchLabels: {{app: sts-web}}}}
  template:
    metadata: {{labels: {{app: sts-web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {BUSYBOX}
        command: ["sleep", "3600"]
"#
    )
}

/// A client pod pinned to `node`.
fn client(name: &str, node: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX}
    command: ["sleep", "3600"]
"#
    )
}

/// `nslookup <name>` in pod `pod`: the addresses of the answer (after the server's own).
fn nslookup(c: &LabCluster, pod: &str, name: &str) -> Result<BTreeSet<String>> {
    let out = c.run(&["exec", pod, "--", "nslookup", name])?;
    // For a short name busybox asks under every search domain and fails when any says
    // NXDOMAIN, even though one answered: the answer is what counts.
    ensure!(
        out.stdout.contains("Name:"),
        "nslookup {name} in {pod}: exit {:?}: {}{}",
        out.code,
        out.stdout,
        out.stderr
    );
    // busybox prints the server first ("Server:"/"Address:" lines), then per answer "Name:"
    // and "Address:" lines.
    let answers = out
        .stdout
        .split_once("Name:")
        .map(|(_, rest)| rest)
        .with_context(|| format!("nslookup {name}: no answer in {:?}", out.stdout))?;
    Ok(answers
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Address:"))
        .map(|a| a.split_whitespace().next().unwrap_or_default().to_owned())
        .collect())
}

/// `dig @<cluster DNS> <args>` in `node`'s namespace; its whole output.
fn dig(c: &LabCluster, node: &str, args: &[&str]) -> Result<String> {
    let server = format!("@{DNS_IP}");
    let mut argv = vec!["dig", &server, "+time=2", "+tries=2"];
    argv.extend(args);
    let out = c.lab.exec_in_cgroup(node, &argv, Duration::from_secs(60))?;
    ensure!(
        out.success(),
        "dig {args:?} on {node}: {}{}",
        out.stdout,
        out.stderr
    );
    Ok(out.stdout)
}

/// `dig +search <name>` on `node` with the resolver configuration of pod `pod` (its
/// `/etc/resolv.conf`, bind-mounted in a private mount namespace): the search path and
/// `ndots:5` applied as glibc applies them in the pod.
fn dig_as_pod(c: &LabCluster, node: &str, pod: &str, name: &str) -> Result<String> {
    let conf = c.kubectl(&["exec", pod, "--", "cat", "/etc/resolv.conf"])?;
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), conf)?;
    let script = format!(
        "mount --bind {} /etc/resolv.conf && exec dig +search +time=2 +tries=2 +noall +answer {name}",
        file.path().display()
    );
    let out = c.lab.exec_in_cgroup(
        node,
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ],
        Duration::from_secs(60),
    )?;
    ensure!(
        out.success(),
        "dig +search {name} as {pod}: {}{}",
        out.stdout,
        out.stderr
    );
    Ok(out.stdout)
}

/// The answer section of `dig +noall +answer` output: (type, data) per record.
fn records(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 5).then(|| (f[3].to_owned(), f[4..].join(" ")))
        })
        .collect()
}

fn status(output: &str) -> Option<String> {
    let at = output.find("status: ")? + "status: ".len();
    Some(output[at..].split(',').next()?.to_owned())
}

fn pod_ips(c: &LabCluster, selector: &str, namespace: &str) -> Result<BTreeSet<String>> {
    Ok(c.list("pods", &["-n", namespace, "-l", selector])?
        .iter()
        .filter(|p| is_ready(p))
        .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_owned))
        .collect())
}

fn wait_deployment(c: &LabCluster, namespace: &str, name: &str, replicas: i64) -> Result<()> {
    c.wait(
        Duration::from_secs(120),
        &format!("deployment {namespace}/{name} with {replicas} ready replicas"),
        |c| {
            let d: Value = serde_json::from_str(&c.kubectl(&[
                "get",
                "deployment",
                name,
                "-n",
                namespace,
                "-o",
                "json",
            ])?)?;
            Ok(
                d["status"]["readyReplicas"].as_i64().unwrap_or(0) == replicas
                    && d["status"]["replicas"].as_i64().unwrap_or(0) == replicas,
            )
        },
    )
}

#[test]
fn cluster_dns() -> Result<()> {
    let c = LabCluster::start(LAB, 3, ClusterOptions::default())?;
    wait_deployment(&c, "kube-system", "coredns", 2)?;
    // Init placed both replicas on node 1, the only node then; restarted with every node
    // there, they go to two (their anti-affinity), as after `kubeadm join`.
    c.kubectl(&[
        "rollout",
        "restart",
        "deployment",
        "coredns",
        "-n",
        "kube-system",
    ])?;
    c.kubectl(&[
        "rollout",
        "status",
        "deployment",
        "coredns",
        "-n",
        "kube-system",
        "--timeout=120s",
    ])?;
    wait_deployment(&c, "kube-system", "coredns", 2)?;
    let mut dns_nodes = BTreeSet::new();
    c.wait(
        Duration::from_secs(60),
        "two coredns pods, the old ones gone",
        |c| {
            let pods = c.list("pods", &["-n", "kube-system", "-l", "k8s-app=kube-dns"])?;
            dns_nodes = pods
                .iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && is_ready(p))
                .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
                .into_iter()
                .collect();
            Ok(pods.len() == 2)
        },
    )?;
    ensure!(
        dns_nodes.len() == 2,
        "the two coredns replicas share a node: {dns_nodes:?}"
    );

    c.apply(&workloads(ekube_lab::OUTSIDE_ZONE))?;
    let nodes: Vec<String> = c.lab.nodes().map(|h| h.netns.clone()).collect();
    let clients: Vec<String> = (1..=nodes.len()).map(|i| format!("client{i}")).collect();
    for (name, node) in clients.iter().zip(&nodes) {
        c.apply(&client(name, node))?;
    }
    wait_deployment(&c, "default", "web", 3)?;
    for name in &clients {
        c.wait_pod(name, Duration::from_secs(60), "ready", is_ready)?;
    }

    let web_ip = c.get("service", "web")?["spec"]["clusterIP"]
        .as_str()
        .context("web's cluster IP")?
        .to_owned();
    let web_pods = pod_ips(&c, "app=web", "default")?;
    ensure!(web_pods.len() == 3, "web pods: {web_pods:?}");
    let outside = format!("www.{}", ekube_lab::OUTSIDE_ZONE);
    let outside_ip = ekube_lab::OUTSIDE_IP.to_string();

    // From a pod on every node, through its resolv.conf.
    for pod in &clients {
        let one = |ip: &str| BTreeSet::from([ip.to_owned()]);
        let check = |name: &str, want: &BTreeSet<String>| -> Result<()> {
            let got = nslookup(&c, pod, name)?;
            ensure!(&got == want, "{pod}: {name} → {got:?}, want {want:?}");
            Ok(())
        };
        // busybox's nslookup applies the search path to dotless names only.
        check("kubernetes.default.svc.cluster.local", &one("10.96.0.1"))?;
        check("web.default.svc.cluster.local", &one(&web_ip))?;
        check("web", &one(&web_ip))?;
        check("db", &web_pods)?;
        check(&outside, &one(&outside_ip))?;
        check("ext", &one(&outside_ip))?;
    }

    // As glibc resolves in a pod (search path, ndots:5): dig with the pod's resolv.conf.
    for (pod, host) in clients.iter().zip(c.lab.nodes().map(|h| h.short.clone())) {
        for (name, want) in [
            ("kubernetes.default", "10.96.0.1"),
            ("web.default", web_ip.as_str()),
        ] {
            let got = records(&dig_as_pod(&c, &host, pod, name)?);
            ensure!(
                got == [("A".to_owned(), want.to_owned())],
                "{pod}: {name} through the search path → {got:?}, want {want}"
            );
        }
    }

    for node in &c.lab.nodes().map(|h| h.short.clone()).collect::<Vec<_>>() {
        let answer = |args: &[&str]| -> Result<Vec<(String, String)>> {
            let mut argv = vec!["+noall", "+answer"];
            argv.extend(args);
            Ok(records(&dig(&c, node, &argv)?))
        };
        ensure!(
            answer(&["SRV", "_http._tcp.web.default.svc.cluster.local"])?
                == [(
                    "SRV".to_owned(),
                    "0 100 80 web.default.svc.cluster.local.".to_owned()
                )],
            "SRV of web's named port on {node}"
        );
        ensure!(
            answer(&["-x", &web_ip])?
                == [(
                    "PTR".to_owned(),
                    "web.default.svc.cluster.local.".to_owned()
                )],
            "PTR of {web_ip} on {node}"
        );
        let ext = answer(&["ext.default.svc.cluster.local"])?;
        ensure!(
            ext.first() == Some(&("CNAME".to_owned(), format!("{outside}."))),
            "ext on {node}: {ext:?}"
        );
        let tcp = answer(&["+tcp", "web.default.svc.cluster.local"])?;
        ensure!(
            tcp == [("A".to_owned(), web_ip.clone())],
            "over TCP on {node}: {tcp:?}"
        );
    }

    // Thirty SRV records (three endpoints, ten ports) do not fit in 512 bytes.
    let srv = "wide.default.svc.cluster.local";
    let udp = dig(&c, "n2", &["+noedns", "+ignore", "SRV", srv])?;
    ensure!(
        udp.contains(" tc ") || udp.contains(" tc;"),
        "no TC bit over UDP: {udp}"
    );
    let whole = records(&dig(&c, "n2", &["+tcp", "+noall", "+answer", "SRV", srv])?);
    ensure!(whole.len() == 30, "SRV over TCP: {} records", whole.len());

    host_network_resolves_cluster_names(&c, &web_ip)?;
    bad_queries(&c)?;
    statefulset_follows_its_pod(&c)?;
    no_query_lost_while_a_replica_goes(&c)?;

    // No endpoints left: the headless name is gone.
    c.kubectl(&["scale", "deployment", "web", "--replicas", "0"])?;
    c.wait(Duration::from_secs(60), "db without endpoints", |c| {
        Ok(
            status(&dig(c, "n1", &["db.default.svc.cluster.local"])?).as_deref()
                == Some("NXDOMAIN"),
        )
    })?;

    dns_config_limits(&c)?;
    Ok(())
}

/// A `hostNetwork` pod with `dnsPolicy: ClusterFirstWithHostNet` resolves cluster names.
fn host_network_resolves_cluster_names(c: &LabCluster, web_ip: &str) -> Result<()> {
    let node = c.lab.host("n3")?.netns.clone();
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hostnet}}
spec:
  nodeName: {node}
  hostNetwork: true
  dnsPolicy: ClusterFirstWithHostNet
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX}
    command: ["sleep", "3600"]
"#
    ))?;
    c.wait_pod("hostnet", Duration::from_secs(60), "ready", is_ready)?;
    let got = nslookup(c, "hostnet", "web.default.svc.cluster.local")?;
    ensure!(
        got == BTreeSet::from([web_ip.to_owned()]),
        "hostNetwork pod: web → {got:?}"
    );
    c.kubectl(&["delete", "pod", "hostnet", "--wait=false"])?;
    Ok(())
}

/// Raw queries the server must answer with an error, then a good one it still answers.
fn bad_queries(c: &LabCluster) -> Result<()> {
    // Each line: name, hex query, the response code wanted.
    let script = format!(
        r#"
import socket, sys
def ask(data):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(data, ("{DNS_IP}", 53))
    r = s.recv(4096)
    return r[0:2], r[3] & 0x0f
def query(name, qtype, qid=b"\x12\x34"):
    q = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\x00"
    return qid + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + q + qtype.to_bytes(2, "big") + b"\x00\x01"
cases = [
    ("garbage", b"\x55\x66\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xff", 1),
    ("label of 1 KiB", b"\x55\x67\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff" + b"a" * 1024 + b"\x00\x00\x01\x00\x01", 1),
    ("ANY", query("web.default.svc.cluster.local", 255), 4),
    ("unknown type of a name", query("web.default.svc.cluster.local", 999), 0),
    ("unknown type, no name", query("nope.default.svc.cluster.local", 999), 3),
    ("good", query("web.default.svc.cluster.local", 1), 0),
]
for what, data, want in cases:
    qid, code = ask(data)
    if qid != data[0:2] or code != want:
        print(f"{{what}}: id {{qid!r}} rcode {{code}}, want {{want}}")
        sys.exit(1)
print("ok")
"#
    );
    let out = c
        .lab
        .exec_in_cgroup("n3", &["python3", "-c", &script], Duration::from_secs(60))?;
    ensure!(
        out.success() && out.stdout.trim() == "ok",
        "bad queries: {}{}",
        out.stdout,
        out.stderr
    );
    Ok(())
}

/// `web-0.web.sts.svc.cluster.local` is the StatefulSet's pod, and follows it to its new
/// address within 5 s of the new pod being ready.
fn statefulset_follows_its_pod(c: &LabCluster) -> Result<()> {
    let name = "web-0.web.sts.svc.cluster.local";
    let ready = |c: &LabCluster| -> Result<Option<String>> {
        let pod: Value =
            serde_json::from_str(&c.kubectl(&["get", "pod", "web-0", "-n", "sts", "-o", "json"])?)?;
        Ok(is_ready(&pod)
            .then(|| pod["status"]["podIP"].as_str().map(str::to_owned))
            .flatten())
    };
    let mut first = None;
    c.wait(Duration::from_secs(60), "sts/web-0 ready", |c| {
        first = ready(c)?;
        Ok(first.is_some())
    })?;
    let first = first.expect("waited for");
    c.wait(Duration::from_secs(10), "web-0's name", |c| {
        Ok(records(&dig(c, "n1", &["+noall", "+answer", name])?)
            == [("A".to_owned(), first.clone())])
    })?;
    c.kubectl(&["delete", "pod", "web-0", "-n", "sts", "--wait=false"])?;
    let mut second = None;
    c.wait(
        Duration::from_secs(90),
        "sts/web-0 recreated and ready",
        |c| {
            second = ready(c)?.filter(|ip| *ip != first);
            Ok(second.is_some())
        },
    )?;
    let second = second.expect("waited for");
    let since = Instant::now();
    c.wait(
        Duration::from_secs(5),
        "web-0's name at its new address",
        |c| {
            Ok(records(&dig(c, "n1", &["+noall", "+answer", name])?)
                == [("A".to_owned(), second.clone())])
        },
    )
    .with_context(|| format!("{name} after {:?}", since.elapsed()))
}

/// 60 s of 20 queries/s from a client retrying as glibc does (timeout 5 s, 2 attempts),
/// during which one `coredns` pod is deleted: none may go unanswered.
fn no_query_lost_while_a_replica_goes(c: &LabCluster) -> Result<()> {
    let script = format!(
        r#"
import socket, threading, time, random
lost = []
def one(i):
    q = random.randbytes(2) + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03web\x07default\x03svc\x07cluster\x05local\x00\x00\x01\x00\x01"
    for attempt in range(2):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        try:
            s.sendto(q, ("{DNS_IP}", 53))
            r = s.recv(512)
            if r[0:2] == q[0:2] and r[3] & 0x0f == 0:
                return
        except OSError:
            pass
        finally:
            s.close()
    lost.append(i)
threads = []
start = time.time()
for i in range(1200):
    t = threading.Thread(target=one, args=(i,))
    t.start()
    threads.append(t)
    time.sleep(max(0, start + (i + 1) / 20 - time.time()))
for t in threads:
    t.join()
print(f"lost {{len(lost)}} of 1200")
"#
    );
    let lab = &c.lab;
    let run = std::thread::scope(|s| {
        let load = s.spawn(|| {
            lab.exec_in_cgroup("n2", &["python3", "-c", &script], Duration::from_secs(120))
        });
        std::thread::sleep(Duration::from_secs(15));
        let victim = c
            .list("pods", &["-n", "kube-system", "-l", "k8s-app=kube-dns"])
            .ok()
            .and_then(|pods| {
                pods.first()
                    .and_then(|p| p["metadata"]["name"].as_str().map(str::to_owned))
            });
        let deleted =
            victim.map(|v| c.kubectl(&["delete", "pod", "-n", "kube-system", &v, "--wait=false"]));
        (load.join().expect("load thread"), deleted)
    });
    let (out, deleted) = run;
    deleted.context("no coredns pod to delete")??;
    let out = out?;
    ensure!(
        out.stdout.trim() == "lost 0 of 1200",
        "{}{}",
        out.stdout,
        out.stderr
    );
    wait_deployment(c, "kube-system", "coredns", 2)
}

/// A `dnsConfig` beyond upstream's limits is refused at admission.
fn dns_config_limits(c: &LabCluster) -> Result<()> {
    let manifest = format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "toomany"}},
        "spec": {{"dnsPolicy": "None", "dnsConfig": {{"nameservers": ["1.1.1.1", "1.0.0.1", "8.8.8.8", "8.8.4.4"]}},
        "containers": [{{"name": "main", "image": "{BUSYBOX}"}}]}}}}"#
    );
    let out = c.sh(&format!("echo '{manifest}' | $K create -f - -v=6 2>&1"))?;
    let text = format!("{}{}", out.stdout, out.stderr);
    if out.success() || !text.contains("422") || !text.contains("nameservers") {
        bail!("a pod with 4 nameservers was not refused with 422: {text}");
    }
    Ok(())
}
