//! `ekube init` and `ekube join` as a kubeadm tutorial uses them, on a three-node lab where
//! nothing runs yet: preflight stops init with the failing check's name (a busy 6443, no
//! `runc`) unless told to ignore it; `ekube config print init-defaults`, edited, then
//! `ekube init --config` brings up the control plane and n1's agent, each edited value
//! showing in the cluster; the printed join command, run on n2 and n3, brings them Ready with
//! the cluster's settings and approved CSRs; a pod on n3 answers through a NodePort from
//! outside; `ekube reset -f` on every node leaves nothing init or join made, and init works
//! again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use ekube_tests::cluster::{ClusterOptions, LabCluster};
use ekube_tests::{ekube_bin, wait_for};

const LAB: &str = "ekinit";
const POD_SUBNET: &str = "10.32.0.0/16";
const SERVICE_SUBNET: &str = "10.112.0.0/16";

/// What a failed `ekube init` printed, checking it failed.
fn init_fails(c: &LabCluster, argv: &[String]) -> Result<String> {
    let out = c.lab.exec("n1", argv)?;
    ensure!(!out.success(), "init succeeded: {}", out.stdout);
    Ok(out.stderr)
}

#[test]
fn init_then_join_brings_up_a_cluster() -> Result<()> {
    let c = LabCluster::bare(LAB, 3, ClusterOptions::default())?;
    let n1_dir = c.lab.host("n1")?.dir.clone();

    // Preflight: a busy API server port, then no runc on the PATH. `busy` runs a command
    // while a socket holds :6443 in n1.
    let busy = |argv: Vec<String>| -> Vec<String> {
        let hold = "import socket,subprocess,sys; s=socket.socket(); \
            s.bind(('0.0.0.0',6443)); s.listen(); r=subprocess.run(sys.argv[1:]); sys.exit(r.returncode)";
        [vec!["python3".into(), "-c".into(), hold.into()], argv].concat()
    };
    let n1 = c.node_name("n1");
    let flags = [
        "--apiserver-advertise-address",
        "192.168.64.10",
        "--node-name",
        n1.as_str(),
    ];
    let err = init_fails(&c, &busy(c.init_argv(&flags)?))?;
    ensure!(
        err.contains("[ERROR Port-6443]: Port 6443 is in use"),
        "{err}"
    );
    let mut ignored = c.init_argv(
        &[
            &flags[..],
            &["--ignore-preflight-errors=Port-6443", "--dry-run"],
        ]
        .concat(),
    )?;
    let out = c.lab.exec("n1", &busy(ignored))?;
    ensure!(
        out.success(),
        "ignoring Port-6443 did not pass: {}",
        out.stderr
    );
    let no_runc = |argv: &[String]| -> Vec<String> {
        [&["env".to_string(), "PATH=/nonexistent".to_string()], argv].concat()
    };
    let err = init_fails(&c, &no_runc(&c.init_argv(&flags)?))?;
    ensure!(
        err.contains("[ERROR FileExisting-runc]: runc not found in system path"),
        "{err}"
    );
    ignored = c.init_argv(
        &[
            &flags[..],
            &["--ignore-preflight-errors=FileExisting-runc", "--dry-run"],
        ]
        .concat(),
    )?;
    let out = c.lab.exec("n1", &no_runc(&ignored))?;
    ensure!(
        out.success(),
        "ignoring FileExisting-runc did not pass: {}",
        out.stderr
    );
    ensure!(
        !n1_dir.join("admin.conf").exists(),
        "a dry run wrote admin.conf"
    );

    // The defaults, edited as a tutorial edits them.
    let defaults = c.lab.exec(
        "n1",
        &[
            ekube_bin().display().to_string(),
            "config".into(),
            "print".into(),
            "init-defaults".into(),
        ],
    )?;
    ensure!(defaults.success(), "{}", defaults.stderr);
    let token = c.lab.config().vars["token"].clone();
    let edited = defaults
        .stdout
        .replace(
            "advertiseAddress: 1.2.3.4",
            "advertiseAddress: 192.168.64.10",
        )
        .replace("token: abcdef.0123456789abcdef", &format!("token: {token}"))
        .replace("name: node", &format!("name: {n1}"))
        .replace("taints: null", "taints: []")
        .replace(
            "podSubnet: 10.244.0.0/16",
            &format!("podSubnet: {POD_SUBNET}"),
        )
        .replace(
            "serviceSubnet: 10.96.0.0/12",
            &format!("serviceSubnet: {SERVICE_SUBNET}"),
        )
        .replace(
            "certificatesDir: /etc/kubernetes/pki",
            &format!("certificatesDir: {}/pki", n1_dir.display()),
        );
    let config = n1_dir.join("kubeadm.yaml");
    std::fs::write(&config, &edited)?;
    // What each node's directory holds before init and join: all that may be left after reset.
    let before: Vec<(String, BTreeSet<PathBuf>)> = c
        .lab
        .nodes()
        .map(|h| (h.short.clone(), tree(&h.dir)))
        .collect();

    let started = Instant::now();
    let out = c.lab.exec_timeout(
        "n1",
        &c.init_argv(&["--config", &config.display().to_string()])?,
        Duration::from_secs(60),
    )?;
    let took = started.elapsed();
    ensure!(out.success(), "init failed: {}{}", out.stdout, out.stderr);
    eprintln!("ekube init returned after {took:?}");
    ensure!(
        took < Duration::from_secs(30),
        "ekube init took {took:?}, over the 30 s it should need"
    );
    ensure!(
        out.stdout
            .contains("Your Kubernetes control-plane has initialized successfully!")
            && out.stdout.contains(&format!(
                "export KUBECONFIG={}",
                n1_dir.join("admin.conf").display()
            )),
        "{}",
        out.stdout
    );

    // n1's identity as kubeadm leaves it: kubelet.conf names the agent's rotating
    // kubelet-client-current.pem.
    let kubelet_conf = std::fs::read_to_string(n1_dir.join("kubelet.conf"))?;
    ensure!(
        kubelet_conf.contains("client-certificate: ")
            && kubelet_conf.contains("data/kubelet/pki/kubelet-client-current.pem"),
        "n1's kubelet.conf: {kubelet_conf}"
    );

    // kubeadm's kubeconfig files, each with kubeadm's identity.
    for (file, user, group) in [
        ("admin.conf", "kubernetes-admin", "kubeadm:cluster-admins"),
        (
            "super-admin.conf",
            "kubernetes-super-admin",
            "system:masters",
        ),
        (
            "controller-manager.conf",
            "system:kube-controller-manager",
            "system:authenticated",
        ),
        (
            "scheduler.conf",
            "system:kube-scheduler",
            "system:authenticated",
        ),
    ] {
        let kubeconfig = n1_dir.join(file).display().to_string();
        let whoami = c.lab.exec(
            "n1",
            &[
                ekube_tests::kubectl_bin().display().to_string(),
                "--kubeconfig".into(),
                kubeconfig,
                "auth".into(),
                "whoami".into(),
                "-o".into(),
                "jsonpath={.status.userInfo}".into(),
            ],
        )?;
        ensure!(
            whoami.stdout.contains(&format!("\"username\":\"{user}\""))
                && whoami.stdout.contains(group),
            "{file} is {}{}",
            whoami.stdout,
            whoami.stderr
        );
    }

    // Each edited value, in the cluster.
    c.wait_nodes_schedulable(1)?;
    let node = c.get("node", &n1)?;
    ensure!(
        node["metadata"]["labels"]
            .get("node-role.kubernetes.io/control-plane")
            .is_some(),
        "no control-plane label: {}",
        node["metadata"]
    );
    let taints = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        !taints
            .iter()
            .any(|t| t["key"] == "node-role.kubernetes.io/control-plane"),
        "taints: [] but {taints:?}"
    );
    let pod_cidr = node["spec"]["podCIDR"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(
        pod_cidr.starts_with("10.32."),
        "podCIDR {pod_cidr} not in {POD_SUBNET}"
    );
    let svc = c.get("service", "kubernetes")?;
    ensure!(
        svc["spec"]["clusterIP"] == "10.112.0.1",
        "kubernetes Service {}",
        svc["spec"]
    );
    let slice = c.kubectl(&[
        "get",
        "endpoints",
        "kubernetes",
        "-o",
        "jsonpath={.subsets[0].addresses[0].ip}",
    ])?;
    ensure!(
        slice == "192.168.64.10",
        "the API server advertises {slice}"
    );
    // kubeadm's expiry table over what init wrote.
    let dirs = |cmd: &[&str]| {
        let mut argv: Vec<String> = [ekube_bin().display().to_string(), "certs".into()]
            .into_iter()
            .chain(cmd.iter().map(|a| a.to_string()))
            .collect();
        argv.extend(["--cert-dir".into(), format!("{}/pki", n1_dir.display())]);
        argv.extend(["--kubeconfig-dir".into(), n1_dir.display().to_string()]);
        argv
    };
    let expiry = c.lab.exec("n1", &dirs(&["check-expiration"]))?;
    ensure!(
        expiry.success()
            && [
                "apiserver ",
                "admin.conf ",
                "super-admin.conf ",
                "scheduler.conf ",
                "CERTIFICATE AUTHORITY"
            ]
            .iter()
            .all(|row| expiry.stdout.contains(row))
            // kubelet.conf names the rotating kubelet-client-current.pem: not listed, as
            // kubeadm leaves it out.
            && !expiry.stdout.contains("kubelet.conf"),
        "certs check-expiration: {}{}",
        expiry.stdout,
        expiry.stderr
    );
    // One phase alone: another bootstrap token.
    let another = "zzzzzz.0123456789abcdef";
    let phase = c.lab.exec(
        "n1",
        &c.init_argv(&["phase", "bootstrap-token", "--token", another])?,
    )?;
    ensure!(
        phase.success(),
        "init phase bootstrap-token: {}",
        phase.stderr
    );
    ensure!(
        !phase.stdout.contains("initialized successfully"),
        "a phase alone printed the closing text: {}",
        phase.stdout
    );
    let tokens = c.lab.exec(
        "n1",
        &[
            ekube_bin().display().to_string(),
            "token".into(),
            "list".into(),
            "--kubeconfig".into(),
            n1_dir.join("admin.conf").display().to_string(),
        ],
    )?;
    ensure!(
        tokens.stdout.contains(&token) && tokens.stdout.contains(another),
        "token list: {}",
        tokens.stdout
    );

    // The printed join command, on n2 and n3.
    let n2_argv = c.join_argv(&out.stdout, "n2")?;
    ensure!(
        n2_argv[1..5] == ["join", "192.168.64.10:6443", "--token", token.as_str()],
        "printed {:?}",
        out.stdout
    );
    for short in ["n2", "n3"] {
        let joined = c.lab.exec_timeout(
            short,
            &c.join_detached_argv(&out.stdout, short)?,
            Duration::from_secs(120),
        )?;
        ensure!(
            joined.success(),
            "join on {short}: {}{}",
            joined.stdout,
            joined.stderr
        );
    }
    c.wait_nodes_schedulable(3)?;
    let n3_dir = c.lab.host("n3")?.dir.clone();
    let subnet_env = std::fs::read_to_string(n3_dir.join("run/subnet.env"))?;
    ensure!(
        subnet_env.contains(&format!("FLANNEL_NETWORK={POD_SUBNET}")),
        "n3 did not take the cluster's pod network: {subnet_env}"
    );
    let csrs = c.list("csr", &[])?;
    let approved_nodes: Vec<&str> = csrs
        .iter()
        .filter(|r| {
            r["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Approved")
                && r["status"]["certificate"].is_string()
        })
        .filter_map(|r| r["spec"]["username"].as_str())
        .collect();
    ensure!(
        approved_nodes.len() == 2
            && approved_nodes
                .iter()
                .all(|u| u.starts_with("system:bootstrap:")),
        "approved node CSRs from {approved_nodes:?}"
    );

    // A pod on n3, through a NodePort, from outside, via every node.
    let n3 = c.node_name("n3");
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: web-n3, labels: {{app: web}}}}\n\
         spec:\n  nodeName: {n3}\n  containers:\n  - name: web\n    image: 192.168.64.1:5000/web:latest\n    \
         ports: [{{name: http, containerPort: 80}}]\n    readinessProbe: {{httpGet: {{path: /, port: http}}, periodSeconds: 1}}\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\n\
         spec:\n  type: NodePort\n  selector: {{app: web}}\n  ports: [{{port: 8080, targetPort: http, nodePort: 32143}}]\n"
    ))?;
    c.wait_pod(
        "web-n3",
        Duration::from_secs(120),
        "ready",
        ekube_tests::cluster::is_ready,
    )?;
    for node in c.lab.nodes() {
        let url = format!("http://{}:32143/", node.ip);
        wait_for(
            Duration::from_secs(20),
            &format!("{url} from outside"),
            || {
                let out = c.lab.exec("ext", &["curl", "-s", "-m", "3", &url])?;
                Ok(out.stdout.trim() == "web-n3")
            },
        )?;
    }

    // Without `taints: []`, mark-control-plane sets kubeadm's taint (the phase alone, with
    // flags instead of the file).
    let marked = c.lab.exec(
        "n1",
        &c.init_argv(&[
            "phase",
            "mark-control-plane",
            "--node-name",
            &n1,
            "--apiserver-advertise-address",
            "192.168.64.10",
        ])?,
    )?;
    ensure!(marked.success(), "mark-control-plane: {}", marked.stderr);
    let node = c.get("node", &n1)?;
    let taints = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        taints
            .iter()
            .any(|t| t["key"] == "node-role.kubernetes.io/control-plane"
                && t["effect"] == "NoSchedule"),
        "no control-plane taint: {taints:?}"
    );

    // Reset asks first; anything but `y` changes nothing.
    let mut declined = vec![
        "sh".to_string(),
        "-c".into(),
        "echo n | \"$@\"".into(),
        "sh".into(),
    ];
    declined.extend(c.reset_argv("n3")?.into_iter().filter(|a| a != "-f"));
    let out = c.lab.exec("n3", &declined)?;
    ensure!(
        !out.success() && out.stderr.contains("aborted reset operation"),
        "declined reset: {}{}",
        out.stdout,
        out.stderr
    );
    ensure!(
        c.lab.host("n3")?.dir.join("kubelet.conf").exists(),
        "a declined reset removed kubelet.conf"
    );

    // `ekube reset -f` on every node, the workers first: nothing init or join made is left.
    for short in ["n3", "n2", "n1"] {
        let out = c
            .lab
            .exec_timeout(short, &c.reset_argv(short)?, Duration::from_secs(120))?;
        ensure!(
            out.success(),
            "reset on {short}: {}{}",
            out.stdout,
            out.stderr
        );
        eprintln!("reset on {short}:\n{}", out.stdout);
    }
    for (short, before) in &before {
        nothing_left(&c, short, before)?;
    }

    // And init works again (a new CA, a new token, the flags instead of the file).
    let again = c.lab.exec_timeout(
        "n1",
        &c.init_argv(&[
            "--apiserver-advertise-address",
            "192.168.64.10",
            "--node-name",
            &n1,
            "--cert-dir",
            &n1_dir.join("pki").display().to_string(),
        ])?,
        Duration::from_secs(60),
    )?;
    ensure!(
        again.success(),
        "init after reset: {}{}",
        again.stdout,
        again.stderr
    );
    c.wait_nodes_schedulable(1)?;
    Ok(())
}

/// Every path under `dir`, directories included.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut paths = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path.clone());
            }
            paths.insert(path);
        }
    }
    paths
}

/// Checks that node `short` holds no process, link, route, pin, cgroup, mount, iptables
/// chain or file of ekube's, beyond the files in `before`.
fn nothing_left(c: &LabCluster, short: &str, before: &BTreeSet<PathBuf>) -> Result<()> {
    let host = c.lab.host(short)?;
    let pids = std::process::Command::new("ip")
        .args(["netns", "pids", &host.netns])
        .output()?;
    let pids = String::from_utf8_lossy(&pids.stdout).trim().to_string();
    ensure!(pids.is_empty(), "{short}: processes {pids} still run");
    let links = c.lab.exec(short, &["ip", "-o", "link"])?.stdout;
    ensure!(
        !["flannel.", "cni0", "veth"]
            .iter()
            .any(|l| links.contains(l)),
        "{short}: links left: {links}"
    );
    let routes = c.lab.exec(short, &["ip", "route"])?.stdout;
    ensure!(!routes.contains("10.32."), "{short}: routes left: {routes}");
    let pins = Path::new("/sys/fs/bpf/ekube").join(c.node_name(short));
    ensure!(!pins.exists(), "{short}: pins left in {}", pins.display());
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")?.flatten() {
        let cgroup = hierarchy.path().join(&host.cgroup);
        ensure!(
            !cgroup.exists(),
            "{short}: cgroup {} left",
            cgroup.display()
        );
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    let dir = host.dir.display().to_string();
    ensure!(
        !mounts.lines().any(|l| l.contains(&dir)),
        "{short}: mounts left under {dir}"
    );
    for save in ["iptables-legacy-save", "iptables-nft-save"] {
        let rules = c.lab.exec(short, &[save])?.stdout;
        ensure!(
            !rules.contains("KUBE-"),
            "{short}: {save} still shows ekube's chains: {rules}"
        );
    }
    let after = tree(&host.dir);
    let new: Vec<&PathBuf> = after.difference(before).collect();
    ensure!(new.is_empty(), "{short}: files left: {new:?}");
    Ok(())
}
