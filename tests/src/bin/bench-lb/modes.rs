//! The datapaths under test and switching between them: starting `ekube proxy` in a mode on
//! n1, stopping it, and returning the node to a clean state (pins removed, `KUBE-*` chains
//! flushed from both iptables variants, conntrack emptied), plus reading the proxy's metrics.
//!
//! Reading a table with `iptables-legacy-save` instantiates it, so from the first cleaning on,
//! n1 carries empty legacy `nat` and `filter` tables next to flannel's nf_tables ones in every
//! mode: each mode pays for the same set of netfilter hooks.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use ekube_lab::Lab;
use ekube_proxy::datapath::{DatapathConfig, remove_pins};
use ekube_tests::bench;
use ekube_tests::{ekube_bin, wait_for};

use crate::setup::must;

/// A datapath the bench compares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Mode {
    /// The backends' pod IPs, no Service: the floor.
    #[default]
    Direct,
    /// ekube's eBPF datapath (socket hooks for ClusterIP, tc for NodePort).
    Ebpf,
    /// kube-proxy's iptables rules through iptables-legacy (x_tables).
    IptablesLegacy,
    /// kube-proxy's iptables rules through iptables-nft (nf_tables).
    IptablesNft,
    /// kube-proxy's nftables rules (verdict maps in table `ip kube-proxy`).
    Nftables,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Ebpf => "ebpf",
            Mode::IptablesLegacy => "iptables-legacy",
            Mode::IptablesNft => "iptables-nft",
            Mode::Nftables => "nftables",
        }
    }

    /// How tables and the chart name it.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Direct => "pod IP (direct)",
            Mode::Ebpf => "ekube eBPF",
            Mode::IptablesLegacy => "iptables-legacy",
            Mode::IptablesNft => "iptables-nft",
            Mode::Nftables => "nftables",
        }
    }

    /// One of kube-proxy's rule modes, batched by `--iptables-min-sync-period`.
    pub fn writes_rules(self) -> bool {
        matches!(
            self,
            Mode::IptablesLegacy | Mode::IptablesNft | Mode::Nftables
        )
    }

    /// `--iptables-variant` of the iptables modes.
    pub fn iptables_variant(self) -> Option<&'static str> {
        match self {
            Mode::IptablesLegacy => Some("legacy"),
            Mode::IptablesNft => Some("nft"),
            _ => None,
        }
    }
}

/// The proxy currently running on n1 and what it may have left behind.
pub struct Proxies<'a> {
    lab: &'a Lab,
    /// Mode and PID of the running proxy.
    running: Option<(Mode, u32)>,
    /// Modes whose state may be on the node (cleared by [`Proxies::clean`]).
    dirty: Vec<Mode>,
    /// Metrics port of the running proxy (a fresh one per start, so no TIME_WAIT is in the way).
    pub metrics_port: u16,
    starts: u16,
    iptables_min_sync: Duration,
    /// `--bpf-lb-map-max` of the eBPF proxy: one size for every scale of the run.
    lb_map_max: u32,
}

impl<'a> Proxies<'a> {
    pub fn new(lab: &'a Lab, iptables_min_sync: Duration, lb_map_max: u32) -> Self {
        Self {
            lab,
            running: None,
            // Nothing should be there on a fresh lab; cleaning everything once proves it.
            dirty: vec![
                Mode::Ebpf,
                Mode::IptablesLegacy,
                Mode::IptablesNft,
                Mode::Nftables,
            ],
            metrics_port: 0,
            starts: 0,
            iptables_min_sync,
            lb_map_max,
        }
    }

    /// The pins of n1's eBPF datapath.
    fn datapath(&self) -> Result<DatapathConfig> {
        let n1 = self.lab.host("n1")?;
        Ok(DatapathConfig {
            cgroup: n1.cgroup2_dir(),
            bpffs: PathBuf::from(ekube_lab::BPFFS),
            ..DatapathConfig::new(n1.netns.clone())
        })
    }

    /// Starts `ekube proxy` in `mode` on n1; returns at once (readiness is the caller's probe).
    pub fn start(&mut self, mode: Mode) -> Result<()> {
        ensure!(self.running.is_none(), "a proxy is already running");
        let n1 = self.lab.host("n1")?;
        self.starts += 1;
        self.metrics_port = 20_000 + 2 * (self.starts % 5_000);
        let mut argv: Vec<String> = vec![
            ekube_bin().display().to_string(),
            "proxy".into(),
            "--kubeconfig".into(),
            self.lab.kubeconfig().display().to_string(),
            "--hostname-override".into(),
            n1.netns.clone(),
            "--node-ip".into(),
            n1.ip.to_string(),
            "--metrics-bind-address".into(),
            format!("127.0.0.1:{}", self.metrics_port),
            "--healthz-bind-address".into(),
            format!("127.0.0.1:{}", self.metrics_port + 1),
            "--cluster-cidr".into(),
            "10.244.0.0/16".into(),
        ];
        if let Some(variant) = mode.iptables_variant() {
            argv.extend([
                "--mode".into(),
                "iptables".into(),
                "--iptables-variant".into(),
                variant.into(),
            ]);
        }
        match mode {
            Mode::Nftables => argv.extend(["--mode".into(), "nftables".into()]),
            _ if mode.writes_rules() => {}
            _ => argv.extend([
                "--cgroup-path".into(),
                n1.cgroup2_dir().display().to_string(),
                "--bpf-lb-map-max".into(),
                self.lb_map_max.to_string(),
            ]),
        }
        if mode.writes_rules() {
            argv.extend([
                "--iptables-min-sync-period".into(),
                format!("{}ms", self.iptables_min_sync.as_millis()),
            ]);
        }
        if !self.dirty.contains(&mode) {
            self.dirty.push(mode);
        }
        let pid = self
            .lab
            .spawn("n1", &format!("proxy-{}", mode.name()), &argv)?;
        self.running = Some((mode, pid));
        Ok(())
    }

    /// Fails (with the log's tail) when the proxy has exited.
    pub fn check_alive(&self) -> Result<()> {
        if let Some((mode, pid)) = self.running
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            bail!(
                "ekube proxy ({}) exited\n{}",
                mode.name(),
                self.log_tail(mode)
            );
        }
        Ok(())
    }

    /// The last lines of the proxy log of `mode`.
    pub fn log_tail(&self, mode: Mode) -> String {
        let path = self
            .lab
            .log_path("n1", &format!("proxy-{}", mode.name()))
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "{} (last lines):\n{}",
            path.display(),
            lines[lines.len().saturating_sub(25)..].join("\n")
        )
    }

    /// Stops the proxy (if any) and leaves what it programmed in place, as a restart does.
    pub fn stop(&mut self) -> Result<()> {
        if let Some((_, pid)) = self.running.take() {
            self.lab.stop(pid).context("stopping ekube proxy")?;
        }
        Ok(())
    }

    /// Polls the metrics every millisecond until the proxy has done a full sync; bounded by
    /// `timeout`. The metrics port answers once the proxy is up, so errors until then are "not
    /// yet".
    pub fn wait_full_sync(&self, timeout: Duration) -> Result<()> {
        let until = std::time::Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if self.metrics().is_ok_and(|m| synced_fully(&m)) {
                return Ok(());
            }
            ensure!(
                std::time::Instant::now() < until,
                "the restarted proxy did no full sync within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops the proxy (if any) and removes everything any mode left on the node.
    pub fn clean(&mut self) -> Result<()> {
        if let Some((mode, pid)) = self.running.take() {
            let t = std::time::Instant::now();
            self.lab.stop(pid).context("stopping ekube proxy")?;
            if t.elapsed() > Duration::from_secs(2) {
                eprintln!(
                    "note: ekube proxy ({}) took {:.1?} to stop",
                    mode.name(),
                    t.elapsed()
                );
            }
            self.end_orphans()?;
        }
        let dirty = std::mem::take(&mut self.dirty);
        for mode in dirty {
            match mode.iptables_variant() {
                Some(variant) => flush_kube_chains(self.lab, variant)?,
                None if mode == Mode::Ebpf => {
                    remove_pins(&self.datapath()?).context("removing the eBPF pins")?
                }
                None if mode == Mode::Nftables => remove_nft_table(self.lab)?,
                None => {}
            }
        }
        for node in ["n1", "n2"] {
            // Best effort: an empty table makes `conntrack -F` fail on some versions.
            let _ = self.lab.exec(node, &["conntrack", "-F"]);
        }
        Ok(())
    }

    /// Ends what a stopped proxy left running in n1's cgroup: an `iptables-*-restore` or `nft`
    /// it was waiting for when it was killed (a restore of 10,000 services can take minutes),
    /// which would otherwise commit its rules after the cleaning.
    fn end_orphans(&self) -> Result<()> {
        let procs = self.lab.host("n1")?.cgroup2_dir().join("cgroup.procs");
        let orphans = || -> Vec<String> {
            std::fs::read_to_string(&procs)
                .unwrap_or_default()
                .lines()
                .filter(|pid| {
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
                    let name = String::from_utf8_lossy(argv0)
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    // Only the proxy runs these; flannel's own `iptables` checks are left alone.
                    name == "nft"
                        || name.starts_with("iptables-")
                            && (name.ends_with("-restore") || name.ends_with("-save"))
                })
                .map(str::to_owned)
                .collect()
        };
        let pids = orphans();
        if pids.is_empty() {
            return Ok(());
        }
        eprintln!(
            "note: ending {} iptables process(es) the stopped proxy left: {}",
            pids.len(),
            pids.join(" ")
        );
        let _ = std::process::Command::new("kill")
            .arg("-KILL")
            .args(&pids)
            .status();
        wait_for(
            Duration::from_secs(10),
            "the stopped proxy's rule-writing processes to end",
            || Ok(orphans().is_empty()),
        )
    }

    /// The proxy's metrics (`name{labels}` → value).
    pub fn metrics(&self) -> Result<BTreeMap<String, f64>> {
        let mut s = TcpStream::connect(("127.0.0.1", self.metrics_port))
            .context("connecting to the proxy's metrics")?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        Ok(body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect())
    }

    /// Polls the metrics until `done` holds for them (bounded); returns them.
    pub fn wait_metrics(
        &self,
        what: &str,
        done: impl Fn(&BTreeMap<String, f64>) -> bool,
    ) -> Result<BTreeMap<String, f64>> {
        let mut last = BTreeMap::new();
        wait_for(Duration::from_secs(60), what, || {
            self.check_alive()?;
            last = self.metrics()?;
            Ok(done(&last))
        })?;
        Ok(last)
    }
}

/// Whether the proxy's metrics count a full sync done.
pub fn synced_fully(m: &BTreeMap<String, f64>) -> bool {
    m.get("ekube_proxy_syncs_total{kind=\"full\"}")
        .is_some_and(|n| *n >= 1.0)
}

/// A sample of the proxy's sync histogram: `ekube_proxy_sync_duration_seconds_<what>{kind}`.
pub fn sync_stat(m: &BTreeMap<String, f64>, what: &str, kind: &str) -> f64 {
    m.get(&format!(
        "ekube_proxy_sync_duration_seconds_{what}{{kind=\"{kind}\"}}"
    ))
    .copied()
    .unwrap_or(0.0)
}

/// Removes the nftables mode's table from n1, if there; checks it is gone.
pub fn remove_nft_table(lab: &Lab) -> Result<()> {
    let table = ["ip", ekube_proxy::nftables::render::TABLE];
    if !lab
        .exec("n1", &[&["nft", "list", "table"][..], &table].concat())?
        .success()
    {
        return Ok(());
    }
    let out = lab.exec("n1", &[&["nft", "delete", "table"][..], &table].concat())?;
    must(out, "nft delete table ip kube-proxy")?;
    Ok(())
}

/// Removes every `KUBE-*` chain of one iptables variant from n1 (`nat` and `filter`): the jumps
/// to them from other chains first, then their rules, then the chains, in one
/// `iptables-restore --noflush` per variant. Checks that nothing is left.
pub fn flush_kube_chains(lab: &Lab, variant: &str) -> Result<()> {
    let save = format!("iptables-{variant}-save");
    let restore = format!("iptables-{variant}-restore");
    let mut script = String::new();
    for table in ["nat", "filter"] {
        let out = lab.exec("n1", &[save.as_str(), "-t", table])?;
        must(out.clone(), &format!("{save} -t {table}"))?;
        let (chains, jumps) = kube_chains(&out.stdout);
        if chains.is_empty() && jumps.is_empty() {
            continue;
        }
        script.push_str(&format!("*{table}\n"));
        for rule in &jumps {
            script.push_str(&format!("-D {rule}\n"));
        }
        for chain in &chains {
            script.push_str(&format!("-F {chain}\n"));
        }
        for chain in &chains {
            script.push_str(&format!("-X {chain}\n"));
        }
        script.push_str("COMMIT\n");
    }
    if script.is_empty() {
        return Ok(());
    }
    let n1 = lab.host("n1")?.netns.clone();
    let mut child = bench::netns_command(&n1, &restore)?
        .args(["--noflush", "-w", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {restore}"))?;
    child
        .stdin
        .take()
        .context("restore stdin")?
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "{restore} (removing KUBE-* chains) failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    for table in ["nat", "filter"] {
        let out = lab.exec("n1", &[save.as_str(), "-t", table])?;
        let (chains, jumps) = kube_chains(&out.stdout);
        ensure!(
            chains.is_empty() && jumps.is_empty(),
            "{variant} {table}: KUBE-* chains left after cleaning: {chains:?} {jumps:?}"
        );
    }
    Ok(())
}

/// From `iptables-save` text: the `KUBE-*` chains, and the rules of other chains that jump to
/// one (as `CHAIN rule…`, ready for `-D`).
fn kube_chains(save: &str) -> (Vec<String>, Vec<String>) {
    let mut chains = Vec::new();
    let mut jumps = Vec::new();
    for line in save.lines() {
        if let Some(rest) = line.strip_prefix(':') {
            if let Some(name) = rest
                .split_whitespace()
                .next()
                .filter(|n| n.starts_with("KUBE-"))
            {
                chains.push(name.to_owned());
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let chain = rule.split_whitespace().next().unwrap_or_default();
            if !chain.starts_with("KUBE-")
                && (rule.contains("-j KUBE-") || rule.contains("-g KUBE-"))
            {
                jumps.push(rule.to_owned());
            }
        }
    }
    (chains, jumps)
}

/// Where the target's TCP rule sits among the TCP ClusterIP rules of `KUBE-SERVICES` (1-based,
/// and how many there are: one per Service, the target's UDP port left out), read from n1's
/// `nat` table.
pub fn target_rule_position(
    lab: &Lab,
    variant: &str,
    vip: std::net::Ipv4Addr,
) -> Result<(usize, usize)> {
    let out = lab.exec(
        "n1",
        &[
            format!("iptables-{variant}-save"),
            "-t".into(),
            "nat".into(),
        ],
    )?;
    let rules: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| {
            l.starts_with("-A KUBE-SERVICES ")
                && l.contains(" -d ")
                && l.contains(" -p tcp ")
                && l.contains("-j KUBE-SVC-")
        })
        .collect();
    let at = rules
        .iter()
        .position(|l| l.contains(&format!(" -d {vip}/32")))
        .context("no KUBE-SERVICES rule for the target")?;
    Ok((at + 1, rules.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_kube_chains_and_the_jumps_to_them() {
        let save = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-ABC - [0:0]\n:FLANNEL-POSTRTG - [0:0]\n\
                    -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
                    -A POSTROUTING -j FLANNEL-POSTRTG\n-A KUBE-SERVICES -d 10.96.0.1/32 -j KUBE-SVC-ABC\nCOMMIT\n";
        let (chains, jumps) = kube_chains(save);
        assert_eq!(chains, ["KUBE-SERVICES", "KUBE-SVC-ABC"]);
        assert_eq!(
            jumps,
            ["PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"]
        );
    }
}
