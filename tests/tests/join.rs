//! Joining nodes as `kubeadm join` does, on a two-node lab whose n1 came up with `ekube init`
//! (the lab joins every other node with `ekube join`): joins that must not succeed fail with a message naming
//! the cause and leave nothing on the node; `ekube token create --print-join-command` prints a
//! command that joins n2; the nodes' client certificates came from approved CSRs; and a
//! joined node authenticates as `system:node:<name>`, confined to its own objects.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ekube_tests::cluster::{ClusterOptions, LabCluster};
use ekube_tests::{ekube_bin, wait_for};

const LAB: &str = "ekjoin";

/// `ekube <args>` on n1 with the admin kubeconfig; its stdout.
fn ekube_admin(c: &LabCluster, args: &[&str]) -> Result<String> {
    let kubeconfig = c.lab.kubeconfig().display().to_string();
    let mut argv = vec![ekube_bin().display().to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    argv.extend(["--kubeconfig".into(), kubeconfig]);
    let out = c.lab.exec("n1", &argv)?;
    ensure!(out.success(), "ekube {}: {}", args.join(" "), out.stderr);
    Ok(out.stdout)
}

/// What `ekube join` on n2 printed when it failed (it must fail within `timeout`), after
/// checking that it left no file behind.
fn failed_join(c: &LabCluster, join: &[&str]) -> Result<String> {
    let dir = c.lab.host("n2")?.dir.clone();
    let mut argv = vec![ekube_bin().display().to_string(), "join".into()];
    argv.extend(join.iter().map(|a| a.to_string()));
    argv.extend(["--discovery-timeout".into(), "4s".into()]);
    if !join.contains(&"--config") {
        argv.extend(["--node-name".into(), c.node_name("n2")]);
    }
    argv.extend(["--foreground".into(), "--".into()]);
    argv.extend(c.agent_flags("n2")?);
    let out = c.lab.exec_timeout("n2", &argv, Duration::from_secs(60))?;
    ensure!(!out.success(), "join {join:?} succeeded: {}", out.stdout);
    for file in [
        "kubelet.conf",
        "bootstrap-kubelet.conf",
        "data/kubelet/pki/kubelet-client-current.pem",
    ] {
        ensure!(
            !dir.join(file).exists(),
            "join {join:?} failed but left {file} behind"
        );
    }
    Ok(format!("{}{}", out.stdout, out.stderr))
}

#[test]
fn nodes_join_with_a_token_and_a_pinned_ca() -> Result<()> {
    let c = LabCluster::start(
        LAB,
        2,
        ClusterOptions {
            later: &["n2"],
            ..Default::default()
        },
    )?;
    let vars = &c.lab.config().vars;
    let (token, pin) = (vars["token"].clone(), vars["ca_hash"].clone());
    let endpoint = "192.168.64.10:6443";

    // Joins that must fail, each saying why.
    let zero_pin = format!("sha256:{}", "0".repeat(64));
    let out = failed_join(
        &c,
        &[
            endpoint,
            "--token",
            &token,
            "--discovery-token-ca-cert-hash",
            &zero_pin,
        ],
    )?;
    ensure!(out.contains("none of the pins given"), "{out}");
    // The same through a kubeadm JoinConfiguration, from `ekube config print join-defaults`.
    let defaults = c.lab.exec(
        "n2",
        &[
            ekube_bin().display().to_string(),
            "config".into(),
            "print".into(),
            "join-defaults".into(),
        ],
    )?;
    ensure!(defaults.success(), "{}", defaults.stderr);
    let config = c.lab.host("n2")?.dir.join("join.yaml");
    std::fs::write(
        &config,
        defaults
            .stdout
            .replace("kube-apiserver:6443", endpoint)
            .replace("abcdef.0123456789abcdef", &token)
            .replace(
                "unsafeSkipCAVerification: true",
                &format!("caCertHashes: [\"{zero_pin}\"]"),
            )
            .replace("name: node", &format!("name: {}", c.node_name("n2"))),
    )?;
    let out = failed_join(&c, &["--config", &config.display().to_string()])?;
    ensure!(out.contains("none of the pins given"), "{out}");
    ensure!(!out.contains("W: "), "warnings for the defaults: {out}");
    let wrong_secret = format!("{}.{}", &token[..6], "x".repeat(16));
    let out = failed_join(
        &c,
        &[
            endpoint,
            "--token",
            &wrong_secret,
            "--discovery-token-ca-cert-hash",
            &pin,
        ],
    )?;
    ensure!(out.contains("failed to verify the JWS signature"), "{out}");
    let another_cluster = ekube_admin(&c, &["token", "generate"])?;
    let out = failed_join(
        &c,
        &[
            endpoint,
            "--token",
            another_cluster.trim(),
            "--discovery-token-ca-cert-hash",
            &pin,
        ],
    )?;
    ensure!(out.contains("there is no JWS signed token"), "{out}");
    let deleted = ekube_admin(&c, &["token", "create"])?;
    let deleted = deleted.trim();
    ekube_admin(&c, &["token", "delete", deleted])?;
    let out = failed_join(
        &c,
        &[
            endpoint,
            "--token",
            deleted,
            "--discovery-token-ca-cert-hash",
            &pin,
        ],
    )?;
    ensure!(out.contains("there is no JWS signed token"), "{out}");
    let expired = ekube_admin(&c, &["token", "create", "--ttl", "1s"])?;
    std::thread::sleep(Duration::from_secs(2));
    let out = failed_join(
        &c,
        &[
            endpoint,
            "--token",
            expired.trim(),
            "--discovery-token-ca-cert-hash",
            &pin,
        ],
    )?;
    ensure!(out.contains("there is no JWS signed token"), "{out}");

    // A second control plane needs a datastore the servers share; this cluster's is sled on n1.
    let n2_dir = c.lab.host("n2")?.dir.display().to_string();
    let key = "ab".repeat(32);
    let (data_dir, cert_dir) = (format!("{n2_dir}/data/server"), format!("{n2_dir}/pki"));
    let out = failed_join(
        &c,
        &[
            endpoint,
            "--token",
            &token,
            "--discovery-token-ca-cert-hash",
            &pin,
            "--control-plane",
            "--certificate-key",
            &key,
            "--data-dir",
            &data_dir,
            "--cert-dir",
            &cert_dir,
        ],
    )?;
    ensure!(
        out.contains("sled store of its first control-plane host")
            && out.contains("datastore migrate"),
        "{out}"
    );
    ensure!(
        !std::path::Path::new(&cert_dir).join("ca.key").exists(),
        "a refused control-plane join left the CA key behind"
    );
    let out = failed_join(
        &c,
        &[endpoint, "--token", &token, "--certificate-key", &key],
    )?;
    ensure!(out.contains("give --control-plane too"), "{out}");

    // The printed join command, as printed, plus where this lab keeps n2's files.
    let printed = ekube_admin(&c, &["token", "create", "--print-join-command"])?;
    let words: Vec<&str> = printed.split_whitespace().collect();
    ensure!(
        words.len() == 7 && words[..3] == ["ekube", "join", endpoint] && words[6] == pin,
        "printed {printed:?}"
    );
    c.lab.spawn("n2", "agent", &c.join_argv(&printed, "n2")?)?;
    c.wait_nodes_schedulable(2)?;

    // n2's client certificate came from its CSR, auto-approved for the bootstrap token's
    // group and signed by the cluster CA.
    let csrs = c.list("csr", &[])?;
    let n2_csr = csrs
        .iter()
        .find(|r| {
            r["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
                && r["spec"]["username"] == format!("system:bootstrap:{}", &words[4][..6]).as_str()
        })
        .context("no node CSR from the printed join command's token")?;
    let approved = n2_csr["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Approved" && c["reason"] == "AutoApproved");
    ensure!(
        approved && n2_csr["status"]["certificate"].is_string(),
        "n2's CSR: {n2_csr}"
    );

    // n2 is system:node:<n2>: its own Lease and Node, not n1's.
    let n2_kubeconfig = c.lab.host("n2")?.dir.join("kubelet.conf");
    let as_n2 = |args: &[&str]| {
        let mut argv = vec![
            ekube_tests::kubectl_bin().display().to_string(),
            "--kubeconfig".into(),
            n2_kubeconfig.display().to_string(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        c.lab.exec("n2", &argv)
    };
    let whoami = as_n2(&["auth", "whoami", "-o", "jsonpath={.status.userInfo}"])?;
    let n2 = c.node_name("n2");
    ensure!(
        whoami
            .stdout
            .contains(&format!("\"username\":\"system:node:{n2}\""))
            && whoami.stdout.contains("system:nodes"),
        "n2 is {}{}",
        whoami.stdout,
        whoami.stderr
    );
    let n1 = c.node_name("n1");
    let denied = as_n2(&[
        "annotate",
        "lease",
        &n1,
        "-n",
        "kube-node-lease",
        "ekube.test/x=y",
    ])?;
    ensure!(
        !denied.success() && denied.stderr.contains("Forbidden"),
        "n2 annotated n1's lease: {}{}",
        denied.stdout,
        denied.stderr
    );
    let own = as_n2(&[
        "annotate",
        "lease",
        &n2,
        "-n",
        "kube-node-lease",
        "ekube.test/x=y",
    ])?;
    ensure!(
        own.success(),
        "n2 could not annotate its own lease: {}",
        own.stderr
    );

    // A pod on n2 runs, under the node's own identity.
    c.apply(&format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"on-n2"}},
            "spec":{{"nodeName":"{n2}","terminationGracePeriodSeconds":1,"containers":[{{"name":"main",
            "image":"192.168.64.1:5000/busybox:latest","command":["sleep","3600"]}}]}}}}"#
    ))?;
    wait_for(Duration::from_secs(90), "pod on-n2 running", || {
        Ok(c.get("pod", "on-n2")?["status"]["phase"] == "Running")
    })?;
    Ok(())
}
