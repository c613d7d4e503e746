//! A whole cluster in a lab: `ekube init` on n1 and `ekube join` on every other node (n1 runs
//! `ekube agent` with the identity init wrote, under the lab's control), driven with
//! the real kubectl run inside node 1's network namespace (the root namespace never talks to
//! the underlay). Pod output is read from the CRI log files the agents write under each node's
//! directory. Dropping the cluster tears the lab down.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ekube_lab::{
    AGENT_CMD, CONTROL_PLANE_JOIN_CMD, CmdTemplate, ExecOutput, HA_AGENT_FLAG, HA_CLUSTER_CONFIG,
    INIT_CMD, JOIN_CMD, KUBEADM_CONFIG, Lab, LabConfig,
};
use serde_json::Value;

use crate::{ekube_bin, kubectl_bin, wait_for};

/// How the cluster starts.
#[derive(Default)]
pub struct ClusterOptions<'a> {
    /// The controller-manager's flags, `name=value` (its `extraArgs` in the kubeadm
    /// configuration `ekube init` reads).
    pub controller_manager_args: &'a [&'a str],
    /// Appended to every `ekube agent` (and so passed through `ekube join` to it).
    pub agent_args: &'a [&'a str],
    /// Nodes whose agent does not start with the lab (started later with
    /// [`LabCluster::start_agent`]), e.g. `&["n3"]`.
    pub later: &'a [&'a str],
    /// Push the Debian-based Docker Hub look-alikes too (`nginx:alpine`, `busybox`, …;
    /// [`ekube_lab::hub`]), so pods may name images as on Docker Hub.
    pub hub_images: bool,
    /// Run the lab's auth registry too (needs `hub_images`).
    pub auth_registry: bool,
    /// Skip init's addons phase: no `coredns` pods, for tests that check that nothing of
    /// any pod is left on a node.
    pub no_dns: bool,
    /// A highly available control plane ([`LabConfig::high_availability`]): etcd and a server
    /// on the first three nodes, nodes 2 and 3 joining with `ekube join --control-plane`.
    pub ha: bool,
}

/// The web workload of the cluster tests: a Deployment of three `web:latest` pods (readiness on
/// `/`, a rolling update that never has fewer than three ready) behind the NodePort Service
/// `web` on 32143.
pub const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: 192.168.64.1:5000/web:latest
        ports: [{name: http, containerPort: 80}]
        readinessProbe:
          httpGet: {path: /, port: http}
          periodSeconds: 1
        lifecycle:
          # Endpoints drop a terminating pod at once, but every proxy needs a moment to see it.
          preStop: {exec: {command: ["sleep", "2"]}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 8080, targetPort: http, nodePort: 32143}]
"#;

/// The lab's kubeadm configuration with the controller-manager's `extraArgs` (`name=value`).
fn kubeadm_config(controller_manager_args: &[&str]) -> Result<String> {
    let mut text = KUBEADM_CONFIG.to_string();
    if !controller_manager_args.is_empty() {
        text.push_str("controllerManager:\n  extraArgs:\n");
        for arg in controller_manager_args {
            let Some((name, value)) = arg.split_once('=') else {
                bail!("controller-manager argument {arg:?} is not name=value");
            };
            text.push_str(&format!("  - name: {name}\n    value: {value:?}\n"));
        }
    }
    Ok(text)
}

pub struct LabCluster {
    pub lab: Lab,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    /// A node's first start (`ekube join`) and later ones (`ekube agent`).
    join: CmdTemplate,
    agent: CmdTemplate,
    /// The first start of nodes 2 and 3 in a highly available cluster.
    control_plane_join: Option<CmdTemplate>,
}

impl LabCluster {
    /// A lab of `nodes` nodes named `name` with the cluster running and every node Ready.
    pub fn start(name: &str, nodes: usize, options: ClusterOptions) -> Result<Self> {
        let cluster = Self::up(name, nodes, &options, true)?;
        let now: Vec<String> = cluster
            .lab
            .nodes()
            .map(|h| h.short.clone())
            .filter(|short| !options.later.contains(&short.as_str()))
            .collect();
        for short in &now {
            cluster.start_agent(short)?;
        }
        cluster.wait_nodes_schedulable(now.len())?;
        Ok(cluster)
    }

    /// A lab of `nodes` nodes named `name` (network, registry, images) where nothing of the
    /// cluster runs yet: the test brings it up itself (`ekube init` on n1, writing its
    /// kubeconfigs to n1's directory, where this cluster's kubectl looks for `admin.conf`).
    pub fn bare(name: &str, nodes: usize, options: ClusterOptions) -> Result<Self> {
        Self::up(name, nodes, &options, false)
    }

    fn up(name: &str, nodes: usize, options: &ClusterOptions, server: bool) -> Result<Self> {
        let ekube = ekube_bin();
        assert!(
            ekube.with_file_name("ekube-cni").exists(),
            "ekube-cni missing next to ekube: cargo build --bins"
        );
        let mut config = LabConfig::new(name);
        config.nodes = nodes;
        config.images = Some(PathBuf::from(ekube_lab::images::DEFAULT_LAYOUT));
        if options.hub_images {
            config.hub_images = Some(PathBuf::from(ekube_lab::hub::DEFAULT_LAYOUT));
        }
        config.auth_registry = options.auth_registry;
        config
            .vars
            .insert("ekube".into(), ekube.display().to_string());
        let with = |template: &str, extra: &[&str]| {
            let mut cmd = CmdTemplate::parse(template);
            cmd.0.extend(extra.iter().map(|a| a.to_string()));
            cmd
        };
        let mut agent_args: Vec<&str> = options.agent_args.to_vec();
        if options.ha {
            config.high_availability();
            agent_args.push(HA_AGENT_FLAG);
        }
        if server {
            let mut init = config
                .server
                .clone()
                .unwrap_or(CmdTemplate::parse(INIT_CMD));
            if options.no_dns {
                for arg in &mut init.0 {
                    if arg == "kubelet-start" {
                        *arg = "kubelet-start,addons".into();
                    }
                }
            }
            config.server = Some(init);
            let mut kubeadm = kubeadm_config(options.controller_manager_args)?;
            if options.ha {
                kubeadm.push_str(HA_CLUSTER_CONFIG);
            }
            config.kubeadm_config = Some(kubeadm);
        }
        // Nodes start through `start_agent`, not with the lab.
        config.node = None;
        config.joined_node = None;
        let lab = Lab::up(config)?;
        Ok(Self {
            kubeconfig: lab.kubeconfig(),
            kubectl: kubectl_bin(),
            lab,
            join: with(JOIN_CMD, &agent_args),
            agent: with(AGENT_CMD, &agent_args),
            control_plane_join: options
                .ha
                .then(|| with(CONTROL_PLANE_JOIN_CMD, options.agent_args)),
        })
    }

    /// Waits until there are `count` nodes, each Ready and rid of the `not-ready` taint (the
    /// node lifecycle controller lifts it a few seconds after the kubelet reports Ready).
    pub fn wait_nodes_schedulable(&self, count: usize) -> Result<()> {
        let schedulable = |node: &Value| {
            is_ready(node)
                && node["spec"]["taints"].as_array().is_none_or(|taints| {
                    !taints
                        .iter()
                        .any(|t| t["key"] == "node.kubernetes.io/not-ready")
                })
        };
        self.wait(
            Duration::from_secs(60),
            &format!("{count} Ready, untainted nodes"),
            |c| {
                let nodes = c.list("nodes", &[])?;
                Ok(nodes.len() == count && nodes.iter().all(schedulable))
            },
        )
    }

    /// Starts node `short` (`n1`, …): `ekube join` the first time, `ekube agent` with the
    /// identity it was issued after that; returns its PID.
    pub fn start_agent(&self, short: &str) -> Result<u32> {
        self.start_agent_with(short, &[])
    }

    /// Starts node `short` as [`LabCluster::start_agent`] does, with `extra` agent arguments
    /// after the usual ones (placeholders such as `{dir}` are filled in, e.g.
    /// `--kubelet-arg max-pods={x}`); returns its PID.
    pub fn start_agent_with(&self, short: &str, extra: &[&str]) -> Result<u32> {
        let host = self.lab.host(short)?;
        let joined = host.dir.join("kubelet.conf").exists();
        let control_plane = match host.role {
            ekube_lab::Role::Node(i) if i > 1 && i <= self.lab.config().control_planes => {
                self.control_plane_join.as_ref()
            }
            _ => None,
        };
        let mut agent = match (joined, control_plane) {
            (true, _) => &self.agent,
            (false, Some(join)) => {
                self.lab.write_join_config(host)?;
                join
            }
            (false, None) => &self.join,
        }
        .clone();
        agent.0.extend(extra.iter().map(|a| a.to_string()));
        Ok(self
            .lab
            .spawn(short, "agent", &agent.render(&host.vars(self.lab.config())))?)
    }

    /// The flags `ekube agent` runs with on node `short` (what `ekube join` passes on after
    /// `--`), placeholders filled in.
    pub fn agent_flags(&self, short: &str) -> Result<Vec<String>> {
        let host = self.lab.host(short)?;
        let argv = self.agent.render(&host.vars(self.lab.config()));
        Ok(argv.into_iter().skip(2).collect())
    }

    /// `ekube init <args> -- <n1's agent flags>` for n1, with the paths init writes under n1's
    /// directory (kubeconfigs in it, where [`LabCluster::bare`] looks for `admin.conf`).
    pub fn init_argv(&self, args: &[&str]) -> Result<Vec<String>> {
        let dir = self.lab.host("n1")?.dir.display().to_string();
        let mut argv = vec![ekube_bin().display().to_string(), "init".into()];
        argv.extend(args.iter().map(|a| a.to_string()));
        argv.extend(["--data-dir".into(), format!("{dir}/data/server")]);
        argv.extend(self.host_paths("n1")?);
        argv.push("--".into());
        argv.extend(self.agent_flags("n1")?);
        Ok(argv)
    }

    /// Where init, join and reset keep their files on node `short`, as flags: kubeconfigs in
    /// the node's directory, pid files and logs of detached components under it.
    fn host_paths(&self, short: &str) -> Result<Vec<String>> {
        let dir = self.lab.host(short)?.dir.display().to_string();
        Ok(vec![
            "--kubeconfig-dir".into(),
            dir.clone(),
            "--run-dir".into(),
            format!("{dir}/run/ekube"),
            "--log-dir".into(),
            format!("{dir}/logs/ekube"),
        ])
    }

    /// The argv that runs the join command `printed` (`ekube join <endpoint> --token …`, as
    /// `ekube init` or `ekube token create --print-join-command` print it, continuation lines
    /// and all) on node `short`, its agent in the foreground with the lab's flags.
    pub fn join_argv(&self, printed: &str, short: &str) -> Result<Vec<String>> {
        self.printed_join(printed, short, vec!["--foreground".into()])
    }

    /// [`LabCluster::join_argv`] as a host runs it: the agent detached, its pid file and log
    /// under the node's directory, where `ekube reset` finds them.
    pub fn join_detached_argv(&self, printed: &str, short: &str) -> Result<Vec<String>> {
        let dir = self.lab.host(short)?.dir.display().to_string();
        self.printed_join(
            printed,
            short,
            vec![
                "--run-dir".into(),
                format!("{dir}/run/ekube"),
                "--log-dir".into(),
                format!("{dir}/logs/ekube"),
            ],
        )
    }

    fn printed_join(&self, printed: &str, short: &str, mode: Vec<String>) -> Result<Vec<String>> {
        let line = printed
            .lines()
            .skip_while(|l| !l.starts_with("ekube join"))
            .map(|l| l.trim().trim_end_matches('\\'))
            .take_while(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 3 {
            bail!("no join command in {printed:?}");
        }
        let mut argv = vec![ekube_bin().display().to_string()];
        argv.extend(words[1..].iter().map(|w| w.to_string()));
        argv.extend(["--node-name".into(), self.node_name(short)]);
        argv.extend(mode);
        argv.push("--".into());
        argv.extend(self.agent_flags(short)?);
        Ok(argv)
    }

    /// `ekube reset -f` on node `short`, with the paths init or join used there.
    pub fn reset_argv(&self, short: &str) -> Result<Vec<String>> {
        let dir = self.lab.host(short)?.dir.display().to_string();
        let mut argv = vec![
            ekube_bin().display().to_string(),
            "reset".into(),
            "-f".into(),
            "--cert-dir".into(),
            format!("{dir}/pki"),
        ];
        argv.extend(self.host_paths(short)?);
        Ok(argv)
    }

    /// Stops the agent(s) running on node `short` (SIGTERM, then SIGKILL), leaving its pods'
    /// containers running, e.g. to restart it with [`LabCluster::start_agent`].
    pub fn stop_agent(&self, short: &str) -> Result<()> {
        let pids = self.lab.pids(short, "agent");
        if pids.is_empty() {
            bail!("no agent runs on {short}");
        }
        for pid in pids {
            self.lab.stop(pid)?;
        }
        Ok(())
    }

    /// Makes `kubectl` (and everything built on it) use `kubeconfig`, e.g. the admin
    /// kubeconfig of another control-plane node when node 1's server is down.
    pub fn use_kubeconfig(&mut self, kubeconfig: PathBuf) {
        self.kubeconfig = kubeconfig;
    }

    /// The node name of lab node `short` (`n1` → `<lab>-n1`).
    pub fn node_name(&self, short: &str) -> String {
        format!("{}-{short}", self.lab.name())
    }

    /// The argv of `kubectl <args>` with the cluster's kubeconfig (e.g. for `lab.spawn`).
    pub fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut argv = vec![
            self.kubectl.display().to_string(),
            "--kubeconfig".into(),
            self.kubeconfig.display().to_string(),
        ];
        argv.extend(args.iter().map(|s| s.to_string()));
        argv
    }

    /// `kubectl <args>` on node 1, whatever its exit status.
    pub fn run(&self, args: &[&str]) -> Result<ExecOutput> {
        Ok(self.lab.exec("n1", &self.argv(args))?)
    }

    /// `kubectl <args>` on node 1; its stdout, or an error with its exit status and stderr.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args)?;
        if !out.success() {
            bail!(
                "kubectl {}: exit {:?}: {}",
                args.join(" "),
                out.code,
                out.stderr.trim()
            );
        }
        Ok(out.stdout)
    }

    /// A shell command line on node 1, where `$K` stands for kubectl with the kubeconfig.
    pub fn sh(&self, script: &str) -> Result<ExecOutput> {
        let k = format!(
            "{} --kubeconfig {}",
            self.kubectl.display(),
            self.kubeconfig.display()
        );
        Ok(self
            .lab
            .exec("n1", &["sh", "-c", &script.replace("$K", &k)])?)
    }

    /// `ekube addons enable <addon> <args>` on node 1 with the admin kubeconfig, as an
    /// administrator installs an optional add-on.
    pub fn enable_addon(&self, addon: &str, args: &[&str]) -> Result<()> {
        let (ekube, kubeconfig) = (
            ekube_bin().display().to_string(),
            self.kubeconfig.display().to_string(),
        );
        let mut argv = vec![ekube.as_str(), "addons", "enable", addon];
        argv.extend(args);
        argv.extend(["--kubeconfig", kubeconfig.as_str()]);
        let out = self.lab.exec("n1", &argv)?;
        if !out.success() {
            bail!("ekube addons enable {addon}: {}", out.stderr.trim());
        }
        Ok(())
    }

    /// `kubectl apply -f` of a manifest given as text.
    pub fn apply(&self, manifest: &str) -> Result<String> {
        let file = tempfile::Builder::new().suffix(".yaml").tempfile()?;
        std::fs::write(file.path(), manifest)?;
        self.kubectl(&["apply", "-f", &file.path().display().to_string()])
    }

    /// One object as JSON.
    pub fn get(&self, kind: &str, name: &str) -> Result<Value> {
        let text = self.kubectl(&["get", kind, name, "-o", "json"])?;
        serde_json::from_str(&text).with_context(|| format!("parsing {kind}/{name}"))
    }

    /// The items of a list, with extra kubectl arguments such as `-l app=web`.
    pub fn list(&self, kind: &str, args: &[&str]) -> Result<Vec<Value>> {
        let mut argv = vec!["get", kind, "-o", "json"];
        argv.extend(args);
        let list: Value = serde_json::from_str(&self.kubectl(&argv)?)?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }

    /// Polls `check` until it holds or `timeout` passes (errors count as "not yet").
    pub fn wait(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&Self) -> Result<bool>,
    ) -> Result<()> {
        wait_for(timeout, what, || {
            let done = check(self);
            if !matches!(done, Ok(true)) {
                std::thread::sleep(Duration::from_millis(250));
            }
            done
        })
    }

    /// Polls pod `name` until `check` holds (up to `timeout`); returns its last version. On
    /// timeout the error shows the pod's last status.
    pub fn wait_pod(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let mut last = Value::Null;
        self.wait(timeout, &format!("pod {name}: {what}"), |c| {
            last = c.get("pod", name)?;
            Ok(check(&last))
        })
        .with_context(|| format!("last status of {name}: {}", last["status"]))?;
        Ok(last)
    }

    /// Events about the object named `name` as (reason, message).
    pub fn events_of(&self, name: &str) -> Result<Vec<(String, String)>> {
        let selector = format!("involvedObject.name={name}");
        Ok(self
            .list("events", &["--field-selector", &selector])?
            .iter()
            .map(|e| {
                (
                    e["reason"].as_str().unwrap_or("").to_owned(),
                    e["message"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect())
    }

    /// The output so far of a pod's container (all restarts), read from the CRI log files on
    /// the node that runs it; just the message part of each `<time> <stream> <tag> <msg>` line.
    pub fn container_output(&self, pod: &Value, container: &str) -> Result<String> {
        let node = pod["spec"]["nodeName"]
            .as_str()
            .context("pod is not bound")?;
        let host = self
            .lab
            .nodes()
            .find(|h| h.netns == node)
            .with_context(|| format!("no lab node {node}"))?;
        let prefix = format!(
            "{}_{}_{}",
            pod["metadata"]["namespace"].as_str().unwrap_or("default"),
            pod["metadata"]["name"].as_str().unwrap_or_default(),
            pod["metadata"]["uid"].as_str().unwrap_or_default(),
        );
        let dir = host.dir.join("logs/pods").join(prefix).join(container);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        let mut out = String::new();
        for file in files {
            for line in std::fs::read_to_string(&file).unwrap_or_default().lines() {
                if let Some(message) = line.splitn(4, ' ').nth(3) {
                    out.push_str(message);
                    out.push('\n');
                }
            }
        }
        Ok(out)
    }
}

/// Whether an object's `Ready` condition is `True` (Nodes and Pods).
pub fn is_ready(object: &Value) -> bool {
    object["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}
