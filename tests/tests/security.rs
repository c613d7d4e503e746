//! Container confinement seen from inside the container, on a one-node lab cluster whose
//! kubelet runs with its defaults (`--seccomp-default` on) and a small `--pod-max-pids`.
//!
//! Each pod prints what the kernel says about it (`id`, the `NoNewPrivs`, `Cap*` and
//! `Seccomp` lines of `/proc/self/status`, its `/proc` mounts, writes to `/`) and the test
//! reads that from the CRI log files: the default capability set, masked and read-only
//! `/proc` paths, `no_new_privs` and the `RuntimeDefault` seccomp filter by default;
//! `runAsUser`/`runAsGroup`/`fsGroup`/`supplementalGroups`, `readOnlyRootFilesystem`,
//! capability adds and drops, `privileged`, `Unconfined` and `Localhost` seccomp profiles,
//! the pids limit; and `runAsNonRoot` and fields the node cannot honour refused with events.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use ekube_tests::cluster::{ClusterOptions, LabCluster};
use serde_json::Value;

const LAB: &str = "eksec";

/// The kubelet's `--pod-max-pids` in this lab.
const MAX_PIDS: usize = 40;

const BUSYBOX: &str = "192.168.64.1:5000/busybox:latest";

/// Prints identity, capabilities, seccomp and mounts, then what writes to `/` and a user
/// namespace (refused by the default seccomp profile, not by capabilities) do.
const REPORT: &str = "id; grep -E '^(NoNewPrivs|CapEff|CapBnd|Seccomp):' /proc/self/status; \
    echo TIMER_LIST=$(wc -c < /proc/timer_list) ACPI=$(ls /proc/acpi | wc -l); \
    grep -E ' /proc/(sys|bus|fs|irq|sysrq-trigger) ' /proc/mounts | sed 's/^/MOUNT /'; \
    touch /x 2>&1 && echo ROOT=writable || echo ROOT=refused; \
    unshare -U true && echo USERNS=allowed || echo USERNS=denied";

/// A pod whose container runs [`REPORT`] under the container securityContext `sc` (YAML
/// flow style).
fn report_pod(name: &str, sc: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Never
  containers:
  - {{name: main, image: "{BUSYBOX}", command: ["sh", "-c", "{REPORT}"], securityContext: {sc}}}
"#
    )
}

fn pods() -> String {
    let reports = [
        report_pod("defaults", "{}"),
        report_pod(
            "caps",
            "{capabilities: {add: [NET_ADMIN], drop: [KILL, CHOWN]}}",
        ),
        report_pod("privileged", "{privileged: true}"),
        report_pod(
            "unconfined",
            "{allowPrivilegeEscalation: true, seccompProfile: {type: Unconfined}}",
        ),
    ];
    let others = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: hardened}}
spec:
  restartPolicy: Never
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
    fsGroup: 2000
    supplementalGroups: [4000]
    seccompProfile: {{type: RuntimeDefault}}
  containers:
  - name: main
    image: "{BUSYBOX}"
    command: ["sh", "-c", "{REPORT}; touch /data/f; echo DATA=$(stat -c '%g %a' /data) FILE=$(stat -c %g /data/f)"]
    securityContext:
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
      capabilities: {{drop: [ALL], add: [NET_BIND_SERVICE]}}
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - {{name: data, emptyDir: {{}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: localhost}}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: "{BUSYBOX}"
    command: ["sh", "-c", "grep Seccomp: /proc/self/status; mkdir /tmp/d && echo MKDIR=allowed || echo MKDIR=denied"]
    securityContext:
      seccompProfile: {{type: Localhost, localhostProfile: deny-mkdir.json}}
---
apiVersion: v1
kind: Pod
metadata: {{name: nonroot}}
spec:
  restartPolicy: Never
  securityContext: {{runAsNonRoot: true}}
  containers:
  - {{name: main, image: "{BUSYBOX}", command: ["id"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: nonroot-ok}}
spec:
  restartPolicy: Never
  securityContext: {{runAsNonRoot: true, runAsUser: 65534}}
  containers:
  - {{name: main, image: "{BUSYBOX}", command: ["id"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: pids}}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: "{BUSYBOX}"
    command: ["sh", "-c", "i=0; while [ $i -lt {forks} ]; do sleep 30 & echo BG=$!; i=$((i+1)); done"]
---
apiVersion: v1
kind: Pod
metadata: {{name: selinux}}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: "{BUSYBOX}"
    command: ["true"]
    securityContext: {{seLinuxOptions: {{level: "s0:c1,c2"}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: userns}}
spec:
  restartPolicy: Never
  hostUsers: false
  containers:
  - {{name: main, image: "{BUSYBOX}", command: ["true"]}}
"#,
        forks = MAX_PIDS + 20,
    );
    format!("{}---\n{others}", reports.join("---\n"))
}

/// A `Localhost` profile: everything allowed but creating directories.
const DENY_MKDIR: &str = r#"{"defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#;

/// Capability bit numbers, for the `Cap*` masks.
fn mask(bits: &[u32]) -> String {
    format!("{:016x}", bits.iter().fold(0u64, |m, b| m | 1 << b))
}

/// containerd's default set: CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, FSETID 4, KILL 5, SETGID 6,
/// SETUID 7, SETPCAP 8, NET_BIND_SERVICE 10, NET_RAW 13, SYS_CHROOT 18, MKNOD 27,
/// AUDIT_WRITE 29, SETFCAP 31.
const DEFAULT_BITS: [u32; 14] = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];
const CHOWN: u32 = 0;
const KILL: u32 = 5;
const NET_BIND_SERVICE: u32 = 10;
const NET_ADMIN: u32 = 12;
const SYS_ADMIN: u32 = 21;

/// The value of a `Key:\tvalue` line of `/proc/self/status` in `out`.
fn status_field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// Waits until pod `name` ran to completion; its output.
fn finished_output(c: &LabCluster, name: &str) -> Result<String> {
    let mut last = Value::Null;
    c.wait(
        Duration::from_secs(120),
        &format!("pod {name} finished"),
        |c| {
            last = c.get("pod", name)?;
            Ok(matches!(
                last["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            ))
        },
    )
    .with_context(|| format!("last status of {name}: {}", last["status"]))?;
    c.container_output(&last, "main")
}

/// Waits for a `Failed` event of pod `name` whose message contains `text`, and checks the
/// container waits with `reason`.
fn refused(c: &LabCluster, name: &str, reason: &str, text: &str) -> Result<()> {
    let selector = format!("involvedObject.name={name}");
    c.wait(
        Duration::from_secs(60),
        &format!("pod {name}: event containing {text:?}"),
        |c| {
            Ok(c.list("events", &["--field-selector", &selector])?
                .iter()
                .any(|e| {
                    e["reason"] == "Failed"
                        && e["message"].as_str().is_some_and(|m| m.contains(text))
                }))
        },
    )?;
    let pod = c.get("pod", name)?;
    let waiting = &pod["status"]["containerStatuses"][0]["state"]["waiting"];
    if waiting["reason"] != reason || pod["status"]["phase"] != "Pending" {
        bail!("pod {name} should wait with {reason}: {}", pod["status"]);
    }
    Ok(())
}

#[test]
fn containers_are_confined_as_asked() -> Result<()> {
    let max_pids = format!("pod-max-pids={MAX_PIDS}");
    let c = LabCluster::start(
        LAB,
        1,
        ClusterOptions {
            agent_args: &["--kubelet-arg", &max_pids],
            ..Default::default()
        },
    )?;
    let node = c.node_name("n1");
    let seccomp_dir = c.lab.host("n1")?.dir.join("data/kubelet/seccomp");
    std::fs::create_dir_all(&seccomp_dir)?;
    std::fs::write(seccomp_dir.join("deny-mkdir.json"), DENY_MKDIR)?;
    c.apply(&pods().replace(
        "restartPolicy: Never",
        &format!("restartPolicy: Never\n  nodeName: {node}"),
    ))?;
    checks(&c).with_context(|| {
        let log = c
            .lab
            .log_path("n1", "agent")
            .ok()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
        format!("agent warnings:\n{}", warnings.join("\n"))
    })
}

fn checks(c: &LabCluster) -> Result<()> {
    // Defaults: containerd's capabilities, no_new_privs, RuntimeDefault seccomp (mode 2:
    // filter), masked and read-only /proc, a writable root.
    let out = finished_output(c, "defaults")?;
    assert!(out.contains("uid=0(root) gid=0(root)"), "{out}");
    assert_eq!(
        status_field(&out, "CapEff"),
        Some(&*mask(&DEFAULT_BITS)),
        "{out}"
    );
    assert_eq!(status_field(&out, "NoNewPrivs"), Some("1"), "{out}");
    assert_eq!(status_field(&out, "Seccomp"), Some("2"), "{out}");
    assert!(
        out.contains("TIMER_LIST=0 ACPI=0"),
        "masked /proc paths: {out}"
    );
    assert!(
        std::fs::read_to_string("/proc/timer_list").is_ok_and(|t| !t.is_empty()),
        "the host's /proc/timer_list has content to hide"
    );
    for path in ["/proc/sys", "/proc/irq", "/proc/bus"] {
        let line = out
            .lines()
            .find(|l| l.starts_with("MOUNT ") && l.contains(&format!(" {path} ")))
            .with_context(|| format!("{path} is not remounted: {out}"))?;
        assert!(line.contains(" ro,") || line.contains(" ro "), "{line}");
    }
    assert!(out.contains("ROOT=writable"), "{out}");
    assert!(
        out.contains("USERNS=denied"),
        "seccomp refuses unshare: {out}"
    );

    // runAsUser/runAsGroup, fsGroup and supplementalGroups, read-only root, capabilities
    // dropped but one (a non-root process holds none effective; the bounding set shows it).
    let out = finished_output(c, "hardened")?;
    assert!(out.contains("uid=1000 gid=3000"), "{out}");
    let groups = out
        .lines()
        .find_map(|l| l.split_once("groups=").map(|(_, g)| g.to_owned()))
        .with_context(|| format!("no groups in {out}"))?;
    assert!(groups.contains("2000") && groups.contains("4000"), "{out}");
    assert_eq!(status_field(&out, "CapEff"), Some(&*mask(&[])), "{out}");
    assert_eq!(
        status_field(&out, "CapBnd"),
        Some(&*mask(&[NET_BIND_SERVICE])),
        "{out}"
    );
    assert_eq!(status_field(&out, "NoNewPrivs"), Some("1"), "{out}");
    assert_eq!(status_field(&out, "Seccomp"), Some("2"), "{out}");
    assert!(out.contains("/x: Read-only file system"), "{out}");
    assert!(
        // emptyDir is 0777 as upstream makes it; fsGroup adds the group and setgid (drwxrwsrwx).
        out.contains("DATA=2000 2777 FILE=2000"),
        "fsGroup owns the emptyDir: {out}"
    );

    // Adds and drops.
    let out = finished_output(c, "caps")?;
    let mut bits: Vec<u32> = DEFAULT_BITS
        .iter()
        .copied()
        .filter(|b| ![KILL, CHOWN].contains(b))
        .collect();
    bits.push(NET_ADMIN);
    assert_eq!(status_field(&out, "CapEff"), Some(&*mask(&bits)), "{out}");

    // Privileged: every capability the node's runtime holds, no filter, nothing masked.
    let out = finished_output(c, "privileged")?;
    let eff = u64::from_str_radix(status_field(&out, "CapEff").unwrap_or("0"), 16)?;
    assert!(
        eff & (1 << SYS_ADMIN) != 0 && eff.count_ones() > 30,
        "privileged CapEff {eff:x}: {out}"
    );
    assert_eq!(status_field(&out, "Seccomp"), Some("0"), "{out}");
    assert_eq!(status_field(&out, "NoNewPrivs"), Some("0"), "{out}");
    assert!(!out.contains("TIMER_LIST=0"), "nothing masked: {out}");

    // Unconfined and allowPrivilegeEscalation: no filter, no flag, user namespaces work.
    let out = finished_output(c, "unconfined")?;
    assert_eq!(status_field(&out, "Seccomp"), Some("0"), "{out}");
    assert_eq!(status_field(&out, "NoNewPrivs"), Some("0"), "{out}");
    assert!(out.contains("USERNS=allowed"), "{out}");

    // A Localhost profile from <root-dir>/seccomp.
    let out = finished_output(c, "localhost")?;
    assert_eq!(status_field(&out, "Seccomp"), Some("2"), "{out}");
    assert!(out.contains("MKDIR=denied"), "{out}");

    // The pids limit holds the pod to MAX_PIDS tasks (the shell and its sleeps): `$!`
    // names a new process for each fork that worked.
    let out = finished_output(c, "pids")?;
    let forked = out
        .lines()
        .filter_map(|l| l.strip_prefix("BG=")?.parse::<u32>().ok())
        .collect::<std::collections::HashSet<_>>()
        .len();
    assert!(out.contains("can't fork"), "{out}");
    assert!(
        (MAX_PIDS - 5..MAX_PIDS).contains(&forked),
        "forked {forked} of {} under pids.max {MAX_PIDS}: {out}",
        MAX_PIDS + 20
    );

    // runAsNonRoot: a root image is refused, an explicit non-root user runs.
    let pod = c.get("pod", "nonroot")?;
    let uid = pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    refused(
        c,
        "nonroot",
        "CreateContainerConfigError",
        &format!(
            "Error: container has runAsNonRoot and image will run as root (pod: \
             \"nonroot_default({uid})\", container: main)"
        ),
    )?;
    let out = finished_output(c, "nonroot-ok")?;
    assert!(out.contains("uid=65534(nobody)"), "{out}");

    // What the node cannot honour is refused, by the runtime (SELinux) or the kubelet
    // (user namespaces), never ignored.
    refused(
        c,
        "selinux",
        "CreateContainerError",
        "SELinux options are not supported",
    )?;
    refused(
        c,
        "userns",
        "CreateContainerConfigError",
        "hostUsers: false",
    )?;
    Ok(())
}
