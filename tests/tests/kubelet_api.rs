//! The kubelet API through the apiserver with the real kubectl: `logs` (plain, `--tail`, `-f`,
//! a wrong container), `exec` (env, exit code propagation, stdin with `-i`, a terminal with
//! `-ti`), `attach` and `port-forward`, on a one-node lab cluster (`ekube server` and `ekube agent` on
//! n1). kubectl runs inside the node's namespace; the apiserver relays to
//! the kubelet at the node's InternalIP, which asks the apiserver whether the apiserver's
//! kubelet client may (it is bound to `system:kubelet-api-admin`). The kubelet API is also
//! asked directly with ServiceAccount tokens, allowed `nodes/proxy` or nothing. Exec, attach
//! and port-forward reach the runtime's CRI streaming server through the kubelet; a CRI client
//! that is not the kubelet (`cri-client`) lists, execs into and reads the logs of the
//! containers the kubelet started.

use std::time::Duration;

use anyhow::{Context, Result};
use ekube_tests::cluster::{ClusterOptions, LabCluster};
use ekube_tests::wait_for;
use serde_json::Value;

const LAB: &str = "ekkapi";

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: duo}
spec:
  nodeName: NODE
  containers:
  - name: web
    image: 192.168.64.1:5000/web:latest
  - name: sidecar
    image: 192.168.64.1:5000/busybox:latest
    env: [{name: X, value: hello-x}]
    command: ["sh", "-c", "echo start; echo oops >&2; i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.5; done"]
"#;

/// `cri-client` (its own CRI bindings, no kubelet code) against n1's runtime socket: `ps`,
/// `images`, `exec` with the command's output and exit code, and `logs`.
fn cri_client(c: &LabCluster) -> Result<()> {
    let socket = c.lab.host("n1")?.dir.join("data/kubelet/runtime.sock");
    let bin = ekube_tests::sibling_bin("cri-client");
    let cri = |args: &[&str]| {
        let mut argv = vec![
            bin.display().to_string(),
            "--runtime-endpoint".to_owned(),
            format!("unix://{}", socket.display()),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        c.lab.exec("n1", &argv)
    };
    let ps = cri(&["ps", "--name", "sidecar"])?;
    assert!(ps.success(), "cri-client ps: {}", ps.stderr);
    let sidecar: Vec<&str> = ps
        .stdout
        .lines()
        .filter(|l| l.contains(" CONTAINER_RUNNING sidecar "))
        .collect();
    assert_eq!(sidecar.len(), 1, "one running sidecar:\n{}", ps.stdout);
    let id = sidecar[0].split(' ').next().context("container ID")?;
    assert!(sidecar[0].contains("busybox"), "{}", sidecar[0]);

    let images = cri(&["images"])?;
    assert!(
        images.success() && images.stdout.contains("192.168.64.1:5000/busybox:latest"),
        "cri-client images: {}{}",
        images.stdout,
        images.stderr
    );

    let exec = cri(&[
        "exec",
        id,
        "--",
        "sh",
        "-c",
        "echo $X; echo to-stderr >&2; exit 3",
    ])?;
    assert_eq!(exec.code, Some(3), "exec exit code: {}", exec.stderr);
    assert_eq!(exec.stdout.trim(), "hello-x", "exec stdout");
    assert!(
        exec.stderr.contains("to-stderr"),
        "exec stderr: {}",
        exec.stderr
    );
    let ok = cri(&["exec", id, "--", "true"])?;
    assert!(ok.success(), "exec true: {}", ok.stderr);

    let logs = cri(&["logs", id])?;
    // stdout and stderr reach the log through two pipes: "oops" may come before "start".
    assert!(
        logs.success() && logs.stdout.lines().find(|l| *l != "oops") == Some("start"),
        "cri-client logs: {}{}",
        logs.stdout,
        logs.stderr
    );
    assert!(
        logs.stdout.lines().any(|l| l == "line-1"),
        "{}",
        logs.stdout
    );
    Ok(())
}

/// The highest `line-N` in `text`.
fn last_line_number(text: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("line-")?.parse().ok())
        .max()
}

/// The end of the node agent's log, for failure messages.
fn agent_log(c: &LabCluster) -> String {
    let text = c
        .lab
        .log_path("n1", "agent")
        .ok()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Log rotation limits small enough for a chatty container to rotate every few seconds, and
/// large enough that `duo`'s slow sidecar does not rotate during the test.
const LOG_LIMITS: &[&str] = &[
    "--kubelet-arg",
    "container-log-max-size=8Ki",
    "--kubelet-arg",
    "container-log-max-files=3",
    "--kubelet-arg",
    "container-log-monitor-interval=1",
];

#[test]
fn logs_exec_attach_and_port_forward_through_the_apiserver() -> Result<()> {
    let c = LabCluster::start(
        LAB,
        1,
        ClusterOptions {
            agent_args: LOG_LIMITS,
            ..Default::default()
        },
    )?;
    checks(&c)
        .and_then(|()| rotation(&c))
        .and_then(|()| downward(&c))
        .and_then(|()| runtime_metrics(&c))
        .with_context(|| format!("kubelet log (end):\n{}", agent_log(&c)))
}

/// The kubelet's `/metrics` through the apiserver's node proxy counts and times the CRI calls
/// that started the pods above, by upstream's operation names, and times the steps of a start
/// that are not CRI calls: the CNI chain and the status writes.
fn runtime_metrics(c: &LabCluster) -> Result<()> {
    let node = c.lab.host("n1")?.netns.clone();
    let text = c.kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{node}/proxy/metrics"),
    ])?;
    for operation in [
        "run_podsandbox",
        "create_container",
        "start_container",
        "pull_image",
    ] {
        let count = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "kubelet_runtime_operations_total{{operation_type=\"{operation}\"}} "
                ))
            })
            .and_then(|n| n.trim().parse::<u64>().ok());
        anyhow::ensure!(
            count.is_some_and(|n| n > 0),
            "no {operation} in kubelet_runtime_operations_total:\n{text}"
        );
        let timed = format!(
            "kubelet_runtime_operations_duration_seconds_count{{operation_type=\"{operation}\"}}"
        );
        anyhow::ensure!(text.contains(&timed), "no {timed} in:\n{text}");
    }
    for series in [
        "kubelet_network_plugin_operations_duration_seconds_count{operation_type=\"set_up_pod\"}",
        "kubelet_pod_status_sync_duration_seconds_count",
    ] {
        let count = text
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|n| n.trim().parse::<u64>().ok());
        anyhow::ensure!(
            count.is_some_and(|n| n > 0),
            "no observations in {series}:\n{text}"
        );
    }
    Ok(())
}

fn checks(c: &LabCluster) -> Result<()> {
    let node = c.lab.host("n1")?.netns.clone();
    let manifest = c.lab.host("n1")?.dir.join("duo.yaml");
    std::fs::write(&manifest, POD.replace("NODE", &node))?;
    wait_for(Duration::from_secs(60), "the apiserver answers", || {
        Ok(c.run(&["get", "ns", "default"])?.success())
    })?;
    c.kubectl(&["apply", "-f", &manifest.display().to_string()])?;
    let mut last = Value::Null;
    wait_for(
        Duration::from_secs(120),
        "pod duo Running with both containers started",
        || {
            last = serde_json::from_str(&c.kubectl(&["get", "pod", "duo", "-o", "json"])?)?;
            let started = last["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|cs| {
                    cs.len() == 2 && cs.iter().all(|s| s["state"]["running"].is_object())
                });
            Ok(last["status"]["phase"] == "Running" && started)
        },
    )
    .with_context(|| format!("last status: {}", last["status"]))?;

    direct(c)?;
    cri_client(c)?;

    // logs: both streams; a wrong container is refused with the choices.
    wait_for(Duration::from_secs(20), "sidecar logs show line-3", || {
        Ok(c.kubectl(&["logs", "duo", "-c", "sidecar"])?
            .contains("line-3"))
    })?;
    let logs = c.kubectl(&["logs", "duo", "-c", "sidecar"])?;
    // stdout and stderr are separate pipes: their relative order is not kept.
    let stdout: Vec<&str> = logs.lines().filter(|l| *l != "oops").take(3).collect();
    assert_eq!(stdout, ["start", "line-0", "line-1"], "{logs}");
    assert!(logs.lines().any(|l| l == "oops"), "{logs}");
    let tail = c.kubectl(&["logs", "duo", "-c", "sidecar", "--tail", "2"])?;
    assert_eq!(tail.lines().count(), 2, "{tail}");
    assert!(tail.lines().all(|l| l.starts_with("line-")), "{tail}");
    let stamped = c.kubectl(&[
        "logs",
        "duo",
        "-c",
        "sidecar",
        "--timestamps",
        "--tail",
        "1",
    ])?;
    let (ts, rest) = stamped.trim().split_once(' ').context("timestamped line")?;
    assert!(
        ts.ends_with('Z') && ts.contains('T') && rest.starts_with("line-"),
        "{stamped}"
    );
    let wrong = c.run(&["logs", "duo", "-c", "nope"])?;
    assert!(
        !wrong.success()
            && wrong
                .stderr
                .contains("container nope is not valid for pod duo"),
        "{}",
        wrong.stderr
    );

    // logs -f keeps streaming new lines until stopped.
    let before = last_line_number(&c.kubectl(&["logs", "duo", "-c", "sidecar"])?)
        .context("a numbered line")?;
    let followed = c.sh("timeout -s INT 4 $K logs -f duo -c sidecar")?;
    let after = last_line_number(&followed.stdout).context("followed output")?;
    assert!(
        after >= before + 3,
        "logs -f stopped at line-{after}, was at line-{before} before; {}",
        followed.stderr
    );

    // exec: env of the named container, exit codes, stdin, and a terminal.
    assert_eq!(
        c.kubectl(&["exec", "duo", "-c", "sidecar", "--", "sh", "-c", "echo $X"])?,
        "hello-x\n"
    );
    let failed = c.run(&[
        "exec",
        "duo",
        "-c",
        "sidecar",
        "--",
        "sh",
        "-c",
        "echo to-err >&2; exit 3",
    ])?;
    assert_eq!(failed.code, Some(3), "exec exit code: {}", failed.stderr);
    assert!(failed.stderr.contains("to-err"), "{}", failed.stderr);
    let piped =
        c.sh("echo from-stdin | $K exec -i duo -c sidecar -- sh -c 'read l; echo got:$l'")?;
    assert_eq!(
        (piped.code, piped.stdout.as_str()),
        (Some(0), "got:from-stdin\n"),
        "{}",
        piped.stderr
    );
    let tty = c.sh(
        "script -qec \"$K exec -ti duo -c sidecar -- sh -c 'echo X=\\$X; tty; exit 4'\" /dev/null",
    )?;
    assert!(
        tty.stdout.contains("X=hello-x") && tty.stdout.contains("/dev/pts/"),
        "exec -ti: {tty:?}"
    );
    assert_eq!(tty.code, Some(4), "exec -ti exit code: {tty:?}");
    let missing = c.run(&["exec", "duo", "-c", "nope", "--", "true"])?;
    assert!(
        !missing.success() && missing.stderr.contains("container nope is not valid"),
        "{}",
        missing.stderr
    );

    // attach: live output of the running container.
    let attached = c.sh("timeout -s INT 3 $K attach duo -c sidecar")?;
    assert!(
        last_line_number(&attached.stdout).is_some(),
        "attach: {attached:?}"
    );

    // port-forward: a local port on the node reaches the web container.
    let pf = c.lab.spawn(
        "n1",
        "port-forward",
        &c.argv(&["port-forward", "pod/duo", "18080:80"]),
    )?;
    let result = wait_for(
        Duration::from_secs(30),
        "a request through the forwarded port",
        || {
            Ok(c.lab
                .http("n1", "GET", "http://127.0.0.1:18080/", &[])
                .is_ok_and(|r| r.status == 200 && r.text().contains("duo")))
        },
    );
    let log = std::fs::read_to_string(c.lab.log_path("n1", "port-forward")?).unwrap_or_default();
    c.lab.stop(pf)?;
    result.with_context(|| format!("kubectl port-forward said: {log}"))?;
    Ok(())
}

/// Who a direct request to the kubelet API claims to be.
enum Credentials<'a> {
    None,
    /// The admin kubeconfig's client certificate.
    AdminCertificate,
    Bearer(&'a str),
}

/// A request to the kubelet API on n1, from n1: the HTTP status and body.
fn kubelet_call(
    c: &LabCluster,
    method: &str,
    path: &str,
    credentials: Credentials,
) -> Result<(u16, String)> {
    let dir = c.lab.host("n1")?.dir.clone();
    let (crt, key) = (dir.join("admin-client.crt"), dir.join("admin-client.key"));
    let auth = match credentials {
        Credentials::None => String::new(),
        Credentials::AdminCertificate => {
            if !key.exists() {
                for (field, file) in [("client-certificate-data", &crt), ("client-key-data", &key)]
                {
                    let out = c.sh(&format!(
                        "$K config view --raw -o jsonpath='{{.users[0].user.{field}}}' | base64 -d > {}",
                        file.display()
                    ))?;
                    anyhow::ensure!(out.success(), "extracting {field}: {}", out.stderr);
                }
            }
            format!("--cert {} --key {}", crt.display(), key.display())
        }
        Credentials::Bearer(token) => format!("-H 'Authorization: Bearer {token}'"),
    };
    let ip = c.lab.host("n1")?.ip;
    let out = c.sh(&format!(
        "curl -sS -k --max-time 10 -X {method} {auth} -w '\\n%{{http_code}}' 'https://{ip}:10250{path}'"
    ))?;
    anyhow::ensure!(out.success(), "curl {method} {path}: {}", out.stderr);
    let (body, code) = out
        .stdout
        .rsplit_once('\n')
        .with_context(|| format!("curl output {:?}", out.stdout))?;
    Ok((code.trim().parse()?, body.to_owned()))
}

/// A ServiceAccount allowed `nodes/proxy` (what exec, run and container logs need on the
/// kubelet API) and one allowed nothing.
const KUBELET_RBAC: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: kubelet-runner, namespace: default}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: kubelet-nobody, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: kubelet-runner}
rules:
- {apiGroups: [""], resources: [nodes/proxy], verbs: [get, create]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: kubelet-runner}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kubelet-runner}
subjects:
- {kind: ServiceAccount, name: kubelet-runner, namespace: default}
"#;

/// The kubelet API asked directly: no credentials get 401, the admin's certificate reads
/// `/healthz`; ServiceAccount tokens are reviewed by the apiserver and their requests
/// authorized as `nodes/<subresource>` of the node (SubjectAccessReview).
fn direct(c: &LabCluster) -> Result<()> {
    for path in ["/healthz", "/pods", "/containerLogs/default/duo/sidecar"] {
        let (code, body) = kubelet_call(c, "GET", path, Credentials::None)?;
        assert_eq!(
            (code, body.trim()),
            (401, "Unauthorized"),
            "{path} without credentials"
        );
    }
    let (code, body) = kubelet_call(c, "GET", "/healthz", Credentials::AdminCertificate)?;
    assert_eq!(
        (code, body.trim()),
        (200, "ok"),
        "/healthz with the admin certificate"
    );

    c.apply(KUBELET_RBAC)?;
    let runner = c.kubectl(&["create", "token", "kubelet-runner"])?;
    let nobody = c.kubectl(&["create", "token", "kubelet-nobody"])?;
    let run = "/run/default/duo/sidecar?cmd=env";
    let (code, body) = kubelet_call(c, "POST", run, Credentials::Bearer(runner.trim()))?;
    assert!(
        code == 200 && body.lines().any(|l| l == "X=hello-x"),
        "run with a token allowed nodes/proxy: {code} {body}"
    );
    // The runtime gives every container its pod's hostname, as containerd does.
    assert!(body.lines().any(|l| l == "HOSTNAME=duo"), "{body}");
    // The log's first lines are `start`, `oops` (stderr) and `line-0`, copied from the two
    // streams independently, in either order; from `line-1` on, the last line is a `line-N`.
    let mut last = (0, String::new());
    wait_for(
        Duration::from_secs(20),
        "the sidecar's last log line to be a line-N",
        || {
            last = kubelet_call(
                c,
                "GET",
                "/containerLogs/default/duo/sidecar?tailLines=1",
                Credentials::Bearer(runner.trim()),
            )?;
            Ok(last.0 == 200 && last.1.starts_with("line-") && last.1.trim() != "line-0")
        },
    )
    .with_context(|| format!("last answer: {} {}", last.0, last.1))?;
    let (code, body) = kubelet_call(
        c,
        "GET",
        "/stats/summary",
        Credentials::Bearer(runner.trim()),
    )?;
    assert_eq!(
        (code, body.trim()),
        (
            403,
            "Forbidden (user=system:serviceaccount:default:kubelet-runner, verb=get, resource=nodes, subresource(s)=[stats])"
        ),
        "nodes/proxy does not reach the stats"
    );
    let (code, body) = kubelet_call(c, "POST", run, Credentials::Bearer(nobody.trim()))?;
    assert_eq!(
        (code, body.trim()),
        (
            403,
            "Forbidden (user=system:serviceaccount:default:kubelet-nobody, verb=create, resource=nodes, subresource(s)=[proxy])"
        ),
        "run with a token without nodes/proxy"
    );
    let (code, body) = kubelet_call(c, "GET", "/pods", Credentials::Bearer(nobody.trim()))?;
    assert_eq!(
        (code, body.trim()),
        (
            403,
            "Forbidden (user=system:serviceaccount:default:kubelet-nobody, verb=get, resource=nodes, subresource(s)=[pods proxy])"
        ),
    );
    let (code, body) = kubelet_call(c, "POST", run, Credentials::Bearer("not-a-token"))?;
    assert_eq!(
        (code, body.trim()),
        (401, "Unauthorized"),
        "an unknown token"
    );
    Ok(())
}

const CHATTY: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: chatty}
spec:
  nodeName: NODE
  containers:
  - name: talker
    image: 192.168.64.1:5000/busybox:latest
    command: ["sh", "-c", "i=0; while true; do echo chatty-$i-0123456789abcdefghijklmnopqrstuvwxyz; i=$((i+1)); sleep 0.01; done"]
"#;

/// The `chatty-N` numbers in `text`, in order.
fn chatty_numbers(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("chatty-")?
                .split('-')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// The log files in `dir`, sorted. A rotated file being compressed right now shows as the
/// file it will be: its `.tmp` is left out, and so is the uncompressed file once its `.gz`
/// is in place (the kubelet removes it next).
fn log_files(dir: &std::path::Path) -> Result<Vec<String>> {
    let names: std::collections::BTreeSet<String> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".tmp"))
        .collect();
    Ok(names
        .iter()
        .filter(|n| !names.contains(&format!("{n}.gz")))
        .cloned()
        .collect())
}

/// A chatty container's log is rotated at `container-log-max-size` into
/// `0.log.<YYYYMMDD-hhmmss>` files (all but the newest gzipped), at most
/// `container-log-max-files` files stay, and `kubectl logs` reads the current file.
fn rotation(c: &LabCluster) -> Result<()> {
    c.apply(&CHATTY.replace("NODE", &c.node_name("n1")))?;
    c.wait(Duration::from_secs(60), "pod chatty Running", |c| {
        Ok(c.get("pod", "chatty")?["status"]["phase"] == "Running")
    })?;
    let pod = c.get("pod", "chatty")?;
    let dir = c.lab.host("n1")?.dir.join("logs/pods").join(format!(
        "default_chatty_{}/talker",
        pod["metadata"]["uid"].as_str().unwrap_or_default()
    ));
    let mut rotated_seen = std::collections::BTreeSet::new();
    let mut listing = Vec::new();
    c.wait(
        Duration::from_secs(90),
        "four rotations of chatty's log",
        |_| {
            listing = log_files(&dir)?;
            assert!(listing.len() <= 3, "more than max-files logs: {listing:?}");
            for name in &listing {
                let rest = name.strip_prefix("0.log").unwrap_or("?");
                if rest.is_empty() {
                    continue;
                }
                let stamp = rest
                    .strip_prefix('.')
                    .map(|r| r.trim_end_matches(".gz"))
                    .unwrap_or_default();
                let well_formed = stamp.len() == 15
                    && stamp.chars().enumerate().all(|(i, ch)| {
                        if i == 8 {
                            ch == '-'
                        } else {
                            ch.is_ascii_digit()
                        }
                    });
                assert!(well_formed, "unexpected file {name} in {listing:?}");
                rotated_seen.insert(stamp.to_owned());
            }
            Ok(rotated_seen.len() >= 4)
        },
    )
    .with_context(|| format!("files: {listing:?}"))?;
    // All rotated files but the newest are compressed.
    let rotated: Vec<&String> = listing.iter().filter(|n| *n != "0.log").collect();
    if let Some((newest, older)) = rotated.split_last() {
        assert!(!newest.ends_with(".gz"), "{listing:?}");
        assert!(older.iter().all(|n| n.ends_with(".gz")), "{listing:?}");
    }
    // kubectl logs: the current file only, whole and in order, without the first lines.
    // Right after a rotation the current file may hold no line yet: ask again then.
    let mut numbers = Vec::new();
    c.wait(
        Duration::from_secs(5),
        "kubectl logs chatty to show lines",
        |c| {
            numbers = chatty_numbers(&c.kubectl(&["logs", "chatty"])?);
            Ok(!numbers.is_empty())
        },
    )?;
    let first = *numbers.first().context("kubectl logs chatty is empty")?;
    assert!(first > 0, "kubectl logs still shows the first line");
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "kubectl logs chatty is not one run of lines: {numbers:?}"
    );
    // logs -f crosses a rotation: it keeps delivering a gapless run of lines.
    let rotated_files = || -> Result<Vec<String>> {
        Ok(log_files(&dir)?
            .into_iter()
            .map(|n| n.trim_end_matches(".gz").to_owned())
            .filter(|n| n != "0.log")
            .collect())
    };
    let before = rotated_files()?;
    let followed = c.sh("timeout -s INT 8 $K logs -f --tail 1 chatty")?;
    let after = rotated_files()?;
    assert_ne!(before, after, "no rotation while following");
    let numbers = chatty_numbers(&followed.stdout);
    assert!(
        numbers.len() > 20 && numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "logs -f across a rotation: {} lines, gapless: {}; {}",
        numbers.len(),
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        followed.stderr
    );
    c.kubectl(&[
        "delete",
        "pod",
        "chatty",
        "--grace-period=0",
        "--wait=false",
    ])?;
    Ok(())
}

const DOWNWARD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: downward
  labels: {app: dw, tier: back-end}
  annotations: {note: "say \"hi\""}
spec:
  nodeName: NODE
  containers:
  - name: main
    image: 192.168.64.1:5000/busybox:latest
    command: ["sleep", "3600"]
    resources:
      limits: {memory: 64Mi, cpu: 500m}
      requests: {memory: 32Mi, cpu: 250m}
    env:
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
    - {name: MY_NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
    - {name: MEM_LIMIT, valueFrom: {resourceFieldRef: {resource: limits.memory}}}
    - {name: MEM_LIMIT_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    - {name: CPU_REQUEST_M, valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}}
    - {name: CPU_LIMIT, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}
    volumeMounts: [{name: podinfo, mountPath: /etc/podinfo}]
  - name: free
    image: 192.168.64.1:5000/busybox:latest
    command: ["sleep", "3600"]
    env:
    - {name: CPU_LIMIT_M, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}}
    - {name: MEM_LIMIT, valueFrom: {resourceFieldRef: {resource: limits.memory}}}
  volumes:
  - name: podinfo
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: annotations, fieldRef: {fieldPath: metadata.annotations}}
      - {path: name, fieldRef: {fieldPath: metadata.name}}
      - {path: mem, resourceFieldRef: {containerName: main, resource: limits.memory, divisor: 1Mi}}
"#;

/// The downward API: env from fieldRef and resourceFieldRef (with divisors; limits a container
/// does not set read the node's allocatable), and a downwardAPI volume with the labels,
/// annotations and name as files.
fn downward(c: &LabCluster) -> Result<()> {
    let node = c.node_name("n1");
    c.apply(&DOWNWARD.replace("nodeName: NODE", &format!("nodeName: {node}")))?;
    c.wait(Duration::from_secs(60), "pod downward Running", |c| {
        Ok(c.get("pod", "downward")?["status"]["phase"] == "Running")
    })?;
    let pod = c.get("pod", "downward")?;
    let env = c.kubectl(&[
        "exec",
        "downward",
        "-c",
        "main",
        "--",
        "sh",
        "-c",
        "for v in POD_NAME POD_NS POD_IP HOST_IP MY_NODE APP MEM_LIMIT MEM_LIMIT_MI CPU_REQUEST_M CPU_LIMIT; do eval echo $v=\\$$v; done",
    ])?;
    let want = format!(
        "POD_NAME=downward\nPOD_NS=default\nPOD_IP={}\nHOST_IP={}\nMY_NODE={node}\nAPP=dw\n\
         MEM_LIMIT=67108864\nMEM_LIMIT_MI=64\nCPU_REQUEST_M=250\nCPU_LIMIT=1\n",
        pod["status"]["podIP"].as_str().unwrap_or("?"),
        c.lab.host("n1")?.ip,
    );
    assert_eq!(env, want, "downward env");
    let allocatable = &c.get("node", &node)?["status"]["allocatable"];
    let cpus: i64 = allocatable["cpu"].as_str().unwrap_or("?").parse()?;
    let memory_ki: i64 = allocatable["memory"]
        .as_str()
        .and_then(|m| m.strip_suffix("Ki"))
        .unwrap_or("?")
        .parse()?;
    let free = c.kubectl(&[
        "exec",
        "downward",
        "-c",
        "free",
        "--",
        "sh",
        "-c",
        "echo $CPU_LIMIT_M $MEM_LIMIT",
    ])?;
    assert_eq!(
        free.trim(),
        format!("{} {}", cpus * 1000, memory_ki * 1024),
        "unset limits read the node's allocatable"
    );
    let files = c.kubectl(&[
        "exec",
        "downward",
        "-c",
        "main",
        "--",
        "sh",
        "-c",
        "for f in labels annotations name mem; do cat /etc/podinfo/$f; echo; echo --; done",
    ])?;
    let annotations = files.split("\n--\n").nth(1).unwrap_or_default();
    assert!(
        files.starts_with("app=\"dw\"\ntier=\"back-end\"\n--\n")
            && annotations.lines().any(|l| l == r#"note="say \"hi\"""#)
            && files.ends_with("--\ndownward\n--\n64\n--\n"),
        "downwardAPI volume files:\n{files}"
    );
    // Labels changed while the pod runs show up in the volume (not in the environment).
    c.kubectl(&["label", "pod", "downward", "tier=front-end", "--overwrite"])?;
    let mut labels = String::new();
    c.wait(
        Duration::from_secs(30),
        "the labels file follows the pod",
        |c| {
            labels = c.kubectl(&[
                "exec",
                "downward",
                "-c",
                "main",
                "--",
                "cat",
                "/etc/podinfo/labels",
            ])?;
            Ok(labels == "app=\"dw\"\ntier=\"front-end\"")
        },
    )
    .with_context(|| format!("labels file: {labels:?}"))?;
    c.kubectl(&[
        "delete",
        "pod",
        "downward",
        "--grace-period=0",
        "--wait=false",
    ])?;
    Ok(())
}
