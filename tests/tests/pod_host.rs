//! What the kubelet gives a pod about its host and its cluster, end to end on a two-node lab
//! cluster: Service environment variables (and none but `kubernetes`'s with
//! `enableServiceLinks: false`), the managed `/etc/hosts` (pod IP, hostname, subdomain FQDN,
//! `hostAliases`), the UTS hostname with `setHostnameAsFQDN`, `resolv.conf` per `dnsPolicy`
//! against a node resolver given with `--resolv-conf`, a `hostNetwork` pod serving on the
//! node's address (reached from a pod on the other node and from the lab's external
//! namespace, reporting the node IP), and a `hostPID` pod seeing the node's processes.
//! Deleting the host-network pods leaves the node's network as it was.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ekube_tests::cluster::{ClusterOptions, LabCluster, is_ready};
use ekube_tests::wait_for;

const LAB: &str = "ekhost";

/// Each node's resolver, written to `{dir}/node-resolv.conf` (read at each sandbox start).
const NODE_RESOLV: &str =
    "# lab node\nnameserver 192.168.64.1\nsearch lab.example\noptions timeout:2\n";

const AGENT_ARGS: &[&str] = &["--kubelet-arg=resolv-conf={dir}/node-resolv.conf"];

/// `N1`/`N2` are filled with the node names.
const OBJECTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: back-end}
spec:
  selector: {app: none}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: stats-udp, port: 9100, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: headless}
spec:
  clusterIP: None
  selector: {app: none}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: links}
spec:
  nodeName: N1
  hostname: db-0
  subdomain: db
  setHostnameAsFQDN: true
  hostAliases:
  - {ip: 192.0.2.7, hostnames: [foo.local, bar.local]}
  containers:
  - name: main
    image: 192.168.64.1:5000/busybox:latest
    command: ["sleep", "3600"]
    env:
    - {name: BACK_END_SERVICE_PORT, value: own}
    - {name: VIA, value: "$(BACK_END_SERVICE_HOST)"}
---
apiVersion: v1
kind: Pod
metadata: {name: nolinks}
spec:
  nodeName: N1
  enableServiceLinks: false
  dnsPolicy: Default
  containers:
  - {name: main, image: 192.168.64.1:5000/busybox:latest, command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: dns-none}
spec:
  nodeName: N2
  dnsPolicy: None
  dnsConfig:
    nameservers: [192.0.2.53]
    searches: [one.example, two.example]
    options: [{name: ndots, value: "2"}, {name: edns0}]
  containers:
  - {name: main, image: 192.168.64.1:5000/busybox:latest, command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: N2
  containers:
  - {name: main, image: 192.168.64.1:5000/busybox:latest, command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: hostnet}
spec:
  nodeName: N1
  hostNetwork: true
  dnsPolicy: ClusterFirstWithHostNet
  hostAliases:
  - {ip: 192.0.2.8, hostnames: [alias.local]}
  containers:
  - name: db
    image: 192.168.64.1:5000/busybox:latest
    command: ["sh", "-c", "mkdir -p /www && echo host-db > /www/index.html && exec httpd -f -p 3306 -h /www"]
    ports: [{containerPort: 3306}]
---
apiVersion: v1
kind: Pod
metadata: {name: hostnet-dns}
spec:
  nodeName: N2
  hostNetwork: true
  containers:
  - {name: main, image: 192.168.64.1:5000/busybox:latest, command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: hostpid}
spec:
  nodeName: N1
  hostPID: true
  hostIPC: true
  containers:
  - {name: main, image: 192.168.64.1:5000/busybox:latest, command: ["sleep", "3600"]}
"#;

const PODS: [&str; 7] = [
    "links",
    "nolinks",
    "dns-none",
    "client",
    "hostnet",
    "hostnet-dns",
    "hostpid",
];

/// `kubectl exec <pod> -- sh -c <script>`.
fn exec(c: &LabCluster, pod: &str, script: &str) -> Result<String> {
    c.kubectl(&["exec", pod, "--", "sh", "-c", script])
}

/// The `NAME=value` lines of a pod's environment.
fn env_of(c: &LabCluster, pod: &str) -> Result<Vec<String>> {
    Ok(exec(c, pod, "env")?.lines().map(str::to_owned).collect())
}

#[test]
fn pods_see_their_host_and_their_services() -> Result<()> {
    let c = LabCluster::start(
        LAB,
        2,
        ClusterOptions {
            agent_args: AGENT_ARGS,
            ..Default::default()
        },
    )?;
    for node in c.lab.nodes() {
        std::fs::write(node.dir.join("node-resolv.conf"), NODE_RESOLV)?;
    }
    let manifest = OBJECTS
        .replace("N1", &c.node_name("n1"))
        .replace("N2", &c.node_name("n2"));
    c.apply(&manifest)?;
    for pod in PODS {
        c.wait_pod(pod, Duration::from_secs(120), "Running", |p| {
            p["status"]["phase"] == "Running"
        })?;
    }
    service_variables(&c)?;
    hosts_and_hostname(&c)?;
    resolvers(&c)?;
    host_network(&c)?;
    host_pid(&c)?;
    host_network_teardown(&c)
}

/// A Service created before the pod is in its env (all forms, the container's own value
/// winning and usable in `$(…)`); a headless one is not; `enableServiceLinks: false` leaves
/// only `kubernetes`'s.
fn service_variables(c: &LabCluster) -> Result<()> {
    let ip = c.get("service", "back-end")?["spec"]["clusterIP"]
        .as_str()
        .context("back-end has no clusterIP")?
        .to_owned();
    let env = env_of(c, "links")?;
    for want in [
        format!("BACK_END_SERVICE_HOST={ip}"),
        "BACK_END_SERVICE_PORT=own".into(),
        "BACK_END_SERVICE_PORT_HTTP=80".into(),
        "BACK_END_SERVICE_PORT_STATS_UDP=9100".into(),
        format!("BACK_END_PORT=tcp://{ip}:80"),
        format!("BACK_END_PORT_80_TCP=tcp://{ip}:80"),
        "BACK_END_PORT_80_TCP_PROTO=tcp".into(),
        "BACK_END_PORT_80_TCP_PORT=80".into(),
        format!("BACK_END_PORT_80_TCP_ADDR={ip}"),
        format!("BACK_END_PORT_9100_UDP=udp://{ip}:9100"),
        format!("VIA={ip}"),
        "KUBERNETES_SERVICE_HOST=10.96.0.1".into(),
    ] {
        ensure!(env.contains(&want), "links lacks {want}: {env:?}");
    }
    ensure!(
        !env.iter().any(|e| e.starts_with("HEADLESS_")),
        "a headless service gave variables: {env:?}"
    );
    let env = env_of(c, "nolinks")?;
    ensure!(
        env.contains(&"KUBERNETES_SERVICE_HOST=10.96.0.1".to_owned())
            && !env.iter().any(|e| e.starts_with("BACK_END_")),
        "enableServiceLinks: false: {env:?}"
    );
    Ok(())
}

/// The managed hosts file names the pod's IP with its FQDN and hostname, then the aliases;
/// the kernel hostname is the FQDN (`setHostnameAsFQDN`).
fn hosts_and_hostname(c: &LabCluster) -> Result<()> {
    let pod = c.get("pod", "links")?;
    let ip = pod["status"]["podIP"].as_str().context("links has no IP")?;
    let hosts = exec(c, "links", "cat /etc/hosts")?;
    let fqdn = "db-0.db.default.svc.cluster.local";
    ensure!(
        hosts.contains(&format!("\n{ip}\t{fqdn}\tdb-0\n"))
            && hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
            && hosts
                .ends_with("\n# Entries added by HostAliases.\n192.0.2.7\tfoo.local\tbar.local\n"),
        "hosts file of links: {hosts:?}"
    );
    let hostname = exec(c, "links", "hostname")?;
    ensure!(hostname.trim() == fqdn, "hostname {hostname:?}");
    Ok(())
}

/// `resolv.conf` of each policy, against the nodes' `node-resolv.conf`.
fn resolvers(c: &LabCluster) -> Result<()> {
    let cluster = "search default.svc.cluster.local svc.cluster.local cluster.local lab.example\n\
                   nameserver 10.96.0.10\noptions ndots:5\n";
    let node = "search lab.example\nnameserver 192.168.64.1\noptions timeout:2\n";
    for (pod, want) in [
        ("links", cluster),
        ("nolinks", node),
        (
            "dns-none",
            "search one.example two.example\nnameserver 192.0.2.53\noptions ndots:2 edns0\n",
        ),
        ("hostnet", cluster),
        ("hostnet-dns", node),
    ] {
        let got = exec(c, pod, "cat /etc/resolv.conf")?;
        ensure!(got == want, "resolv.conf of {pod}: {got:?}, want {want:?}");
    }
    Ok(())
}

/// The host-network pod reports the node's IP, has the node's hosts file (with its alias) and
/// hostname, and its server on 3306 answers at the node's address from a pod on the other
/// node and from outside the cluster.
fn host_network(c: &LabCluster) -> Result<()> {
    let n1 = c.lab.host("n1")?.ip.to_string();
    let pod = c.get("pod", "hostnet")?;
    ensure!(
        pod["status"]["podIP"] == n1.as_str() && pod["status"]["podIPs"][0]["ip"] == n1.as_str(),
        "hostnet reports {} / {}, not the node IP {n1}",
        pod["status"]["podIP"],
        pod["status"]["podIPs"]
    );
    let hosts = exec(c, "hostnet", "cat /etc/hosts")?;
    let node_hosts = std::fs::read_to_string("/etc/hosts")?;
    ensure!(
        hosts.starts_with("# Kubernetes-managed hosts file (host network).\n")
            && hosts.contains(node_hosts.trim_end())
            && hosts.ends_with("192.0.2.8\talias.local\n"),
        "hosts file of hostnet: {hosts:?}"
    );
    let net = "readlink /proc/self/ns/net";
    let node_net = c.lab.exec("n1", &["sh", "-c", net])?.stdout;
    let pod_net = exec(c, "hostnet", net)?;
    ensure!(
        pod_net == node_net,
        "hostnet is in network namespace {pod_net:?}, n1 in {node_net:?}"
    );
    let hostname = exec(c, "hostnet", "hostname")?;
    let node_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    ensure!(
        hostname.trim() == node_hostname.trim(),
        "hostnet's hostname {hostname:?} is not the node's {node_hostname:?}"
    );
    let url = format!("http://{n1}:3306/");
    let out = c.lab.exec("ext", &["curl", "-sS", "-m", "3", &url])?;
    ensure!(
        out.stdout.trim() == "host-db",
        "from outside, {url} answered {:?} ({})",
        out.stdout,
        out.stderr
    );
    let mut answer = String::new();
    wait_for(
        Duration::from_secs(20),
        "a pod on n2 reaching hostnet",
        || {
            // Debian's busybox wget crashes on `-T`: `timeout` bounds it instead.
            let out = c.run(&[
                "exec", "client", "--", "timeout", "5", "wget", "-q", "-O-", &url,
            ])?;
            answer = format!("{}{}", out.stdout, out.stderr);
            Ok(out.stdout.trim() == "host-db")
        },
    )
    .with_context(|| format!("last answer {answer:?}"))?;
    Ok(())
}

/// The hostPID/hostIPC pod is in the node's PID and IPC namespaces (those of this test, as the
/// lab's nodes differ only in their network) and sees the node's processes, the agent among
/// them; a pod without has namespaces of its own and sees only its processes.
fn host_pid(c: &LabCluster) -> Result<()> {
    let ns = "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc";
    let node_ns = ["pid", "ipc"]
        .map(|kind| std::fs::read_link(format!("/proc/self/ns/{kind}")))
        .into_iter()
        .map(|l| l.map(|p| p.display().to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let host = exec(c, "hostpid", ns)?;
    ensure!(
        host.lines().collect::<Vec<_>>() == node_ns,
        "hostpid's namespaces {host:?}, the node's {node_ns:?}"
    );
    let own = exec(c, "client", ns)?;
    ensure!(
        own.lines().all(|l| !node_ns.iter().any(|n| n == l)),
        "client shares the node's namespaces: {own:?}"
    );
    let names = "cat /proc/[0-9]*/comm 2>/dev/null";
    let host = exec(c, "hostpid", names)?;
    ensure!(
        host.lines().any(|l| l == "ekube"),
        "the hostPID pod does not see the agent: {host:?}"
    );
    let own = exec(c, "client", names)?;
    ensure!(
        !own.lines().any(|l| l == "ekube") && own.lines().count() < 10,
        "a pod without hostPID sees {own:?}"
    );
    Ok(())
}

/// Deleting the host-network pods stops their server and leaves each node's addresses,
/// loopback and readiness as they were (no CNI DEL, no namespace taken down).
fn host_network_teardown(c: &LabCluster) -> Result<()> {
    let before: Vec<String> = c
        .lab
        .nodes()
        .map(|n| {
            c.lab
                .exec(&n.short, &["ip", "-br", "addr"])
                .map(|o| o.stdout)
        })
        .collect::<Result<_, _>>()?;
    c.kubectl(&[
        "delete",
        "pod",
        "hostnet",
        "hostnet-dns",
        "--wait=true",
        "--timeout=60s",
    ])?;
    let after: Vec<String> = c
        .lab
        .nodes()
        .map(|n| {
            c.lab
                .exec(&n.short, &["ip", "-br", "addr"])
                .map(|o| o.stdout)
        })
        .collect::<Result<_, _>>()?;
    ensure!(
        before == after,
        "the nodes' addresses changed: {before:?} → {after:?}"
    );
    let n1 = c.lab.host("n1")?.ip.to_string();
    let out = c.lab.exec(
        "ext",
        &["curl", "-s", "-m", "3", &format!("http://{n1}:3306/")],
    )?;
    ensure!(
        !out.success(),
        "hostnet's server still answers after deletion"
    );
    for node in ["n1", "n2"] {
        ensure!(
            is_ready(&c.get("node", &c.node_name(node))?),
            "{node} is not Ready after the host-network pods went"
        );
    }
    let lo = c
        .lab
        .exec("n1", &["ip", "-br", "link", "show", "lo"])?
        .stdout;
    ensure!(lo.contains("UP"), "n1's loopback is down: {lo:?}");
    Ok(())
}
