//! `cargo xtask demo`: the first thing to run. Installs what is missing, builds, brings up a
//! three-node lab (`ekube init` on n1, `ekube join` on the others), deploys three `web`
//! replicas behind a NodePort Service on 32143, and curls every node from the external client
//! namespace: each answer is the hostname of the pod that served it. `--down` ends it all.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ekube_lab::{DEFAULT_ROOT, Lab};
use serde_json::Value;

use crate::{deps, lab};

const NODE_PORT: u16 = 32143;
const REPLICAS: u64 = 3;
/// How long the Deployment may take to be available (image pulls included).
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long each node may take to answer on the NodePort (the proxy's first sync).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

const MANIFEST: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: 192.168.64.1:5000/web:latest
        ports:
        - {name: http, containerPort: 80}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {port: 80, targetPort: http, nodePort: 32143}
"#;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Stop the demo cluster and remove everything it created.
    #[arg(long)]
    down: bool,
    /// Lab name (namespaces `<name>-n1`…, `<name>-ext`).
    #[arg(long, default_value = "demo")]
    name: String,
    /// Skip installing missing packages and tools.
    #[arg(long)]
    no_deps: bool,
    /// Use what is built already.
    #[arg(long, hide = true)]
    no_build: bool,
}

/// The demo as `cargo xtask test` runs it last, on what that run built: up, three answers,
/// down, nothing left.
pub fn check() -> Result<()> {
    let name = "ekcidemo";
    let shown = run(DemoArgs {
        down: false,
        name: name.into(),
        no_deps: true,
        no_build: true,
    });
    let ended = down(name);
    shown.context("cargo xtask demo")?;
    ended.context("cargo xtask demo --down")
}

pub fn run(args: DemoArgs) -> Result<()> {
    lab::init_tracing();
    if args.down {
        return down(&args.name);
    }
    let started = Instant::now();
    if !args.no_deps {
        deps::ensure_all()?;
    }
    if !args.no_build {
        crate::ebpf::build(&crate::ebpf::BuildArgs {
            debug_log: false,
            out: None,
        })?;
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        deps::run(Command::new(&cargo).args([
            "build",
            "--bins",
            "-p",
            "ekube",
            "-p",
            "ekube-cni",
        ]))?;
    }

    let (lab, ekube) = lab::start(&lab::UpArgs::cluster(&args.name, 3))?;
    let ekube = ekube.context("no ekube binary was built")?;
    let kubectl = Kubectl {
        lab: &lab,
        ekube: &ekube,
        kubeconfig: lab.kubeconfig(),
    };
    wait_nodes(&kubectl, lab.nodes().count())?;
    let manifest = lab.config().lab_dir().join("web.yaml");
    std::fs::write(&manifest, MANIFEST)
        .with_context(|| format!("writing {}", manifest.display()))?;
    println!("$ kubectl apply -f web.yaml");
    print!(
        "{}",
        kubectl.run(&["apply", "-f", &manifest.display().to_string()])?
    );
    wait_available(&kubectl)?;
    println!("$ kubectl get pods -o wide");
    print!("{}", kubectl.run(&["get", "pods", "-o", "wide"])?);

    let mut answers = Vec::new();
    for node in lab.nodes() {
        let url = format!("http://{}:{NODE_PORT}/", node.ip);
        let answer = first_answer(&lab, &url)?;
        println!(
            "{:<10} curl {url:<28} → {answer}",
            format!("{}-ext", lab.name())
        );
        answers.push(answer);
    }
    answers.sort();
    answers.dedup();
    println!(
        "{} answers from {} different pod(s), in {:.0?}",
        lab.nodes().count(),
        answers.len(),
        started.elapsed()
    );
    println!();
    println!("drive the cluster (from node 1's network namespace):");
    println!(
        "  nsenter --net=/run/netns/{}-n1 {} kubectl --kubeconfig {} get pods -o wide",
        lab.name(),
        ekube.display(),
        lab.kubeconfig().display()
    );
    println!("  (the real kubectl works the same way with that --kubeconfig)");
    println!("reach it as an outside client:");
    println!(
        "  ip netns exec {}-ext curl http://192.168.64.20:{NODE_PORT}/",
        lab.name()
    );
    println!(
        "stop it: cargo xtask demo --down{}",
        if args.name == "demo" {
            String::new()
        } else {
            format!(" --name {}", args.name)
        }
    );
    lab.detach();
    Ok(())
}

/// `ekube kubectl` run inside node 1's network namespace (the root namespace never talks to
/// the lab).
struct Kubectl<'a> {
    lab: &'a Lab,
    ekube: &'a Path,
    kubeconfig: std::path::PathBuf,
}

impl Kubectl<'_> {
    fn run(&self, args: &[&str]) -> Result<String> {
        let mut argv = vec![
            self.ekube.display().to_string(),
            "kubectl".into(),
            "--kubeconfig".into(),
            self.kubeconfig.display().to_string(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        let out = self.lab.exec("n1", &argv)?;
        ensure!(
            out.success(),
            "kubectl {}: {}",
            args.join(" "),
            out.stderr.trim()
        );
        Ok(out.stdout)
    }
}

/// Waits until `count` nodes have joined, each Ready and rid of the `not-ready` taint, so the
/// replicas spread over all of them.
fn wait_nodes(kubectl: &Kubectl, count: usize) -> Result<()> {
    wait_for(
        kubectl,
        &["get", "nodes", "-o", "json"],
        "the nodes to join",
        |nodes| {
            let schedulable = nodes["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| {
                    let ready = n["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True");
                    let tainted = n["spec"]["taints"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|t| t["key"] == "node.kubernetes.io/not-ready");
                    ready && !tainted
                })
                .count();
            (schedulable != count).then(|| format!("{schedulable}/{count} nodes Ready"))
        },
    )
}

fn wait_available(kubectl: &Kubectl) -> Result<()> {
    let args = ["get", "deployment", "web", "-o", "json"];
    wait_for(
        kubectl,
        &args,
        "the web Deployment to be available",
        |deployment| {
            let available = deployment["status"]["availableReplicas"]
                .as_u64()
                .unwrap_or(0);
            (available != REPLICAS).then(|| format!("{available}/{REPLICAS} replicas available"))
        },
    )
}

/// Polls `kubectl <args>` (JSON) until `pending` finds nothing missing (`None`), or fails
/// after [`READY_TIMEOUT`] with what was still missing.
fn wait_for(
    kubectl: &Kubectl,
    args: &[&str],
    what: &str,
    pending: impl Fn(&Value) -> Option<String>,
) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let last = match kubectl.run(args) {
            Ok(text) => {
                let value: Value = serde_json::from_str(&text)
                    .with_context(|| format!("parsing kubectl {}", args.join(" ")))?;
                match pending(&value) {
                    None => return Ok(()),
                    Some(missing) => missing,
                }
            }
            Err(err) => format!("{err:#}"),
        };
        if Instant::now() > deadline {
            bail!("timed out after {READY_TIMEOUT:?} waiting for {what}: {last}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The body of the first successful answer from `url`, asked from the external namespace.
fn first_answer(lab: &Lab, url: &str) -> Result<String> {
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    loop {
        let last = match lab.http("ext", "GET", url, &[]) {
            Ok(response) if response.status == 200 => {
                return Ok(String::from_utf8_lossy(&response.body).trim().to_owned());
            }
            Ok(response) => format!("HTTP {}", response.status),
            Err(err) => format!("{err:#}"),
        };
        if Instant::now() > deadline {
            bail!(
                "{url} did not answer from the external namespace within {ANSWER_TIMEOUT:?}: {last}"
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Tears the demo down and checks that nothing of it is left.
fn down(name: &str) -> Result<()> {
    Lab::teardown(Path::new(DEFAULT_ROOT), name)
        .with_context(|| format!("tearing down lab {name}"))?;
    Lab::remove_shared_dirs();
    let mut left = Vec::new();
    let netns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .context("running ip netns list")?;
    let prefix = format!("{name}-");
    left.extend(
        String::from_utf8_lossy(&netns.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|ns| ns.starts_with(&prefix))
            .map(|ns| format!("network namespace {ns}")),
    );
    let pins = Path::new(ekube_lab::BPFFS).join("ekube");
    if let Ok(entries) = std::fs::read_dir(&pins) {
        left.extend(
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| format!("bpffs pins {}", e.path().display())),
        );
    }
    let cgroup = Path::new("/sys/fs/cgroup/unified/ekube").join(name);
    if cgroup.exists() {
        left.push(format!("cgroup {}", cgroup.display()));
    }
    ensure!(
        left.is_empty(),
        "demo {name} left behind: {}",
        left.join(", ")
    );
    println!("demo {name} is down; nothing of it is left");
    Ok(())
}
