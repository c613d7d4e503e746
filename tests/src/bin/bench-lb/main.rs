//! `cargo xtask bench lb`: Service load balancing measured side by side (issue #7) — ekube's
//! eBPF datapath, kube-proxy's iptables rules through iptables-legacy and iptables-nft, its
//! nftables rules, and the backends' pod IPs with no Service at all (the floor).
//!
//! A two-node lab (`ekblb`): `ekube server` on n1, `ekube flannel` on both nodes, and "pods" —
//! network namespaces wired by `ekube-cni` ADD as a kubelet would: a client pod and a backend on
//! n1, a backend on n2, both backends running `ekube-rr serve`. The target Service (NodePort
//! 30080, selector-less, a hand-written EndpointSlice with both backends) sorts after N−1 filler
//! ClusterIP services (two never-reached endpoints each), so its rule is the last ClusterIP rule
//! kube-proxy's `KUBE-SERVICES` chain matches. For each N in `--scales`, every round runs each
//! mode in turn, the order alternating between rounds. A mode starts from a clean node (proxy
//! stopped, pins removed, `KUBE-*` chains flushed, the `ip kube-proxy` table deleted,
//! conntrack emptied), starts `ekube proxy` on
//! n1 and times its full sync (proxy start → the target answering), runs `ekube-rr client` in
//! crr mode at each concurrency on two paths — ClusterIP from the client pod (inside n1's
//! cgroup subtree, where the socket hooks apply) and NodePort from the external namespace to
//! `192.168.64.10:30080` — and finally times one more Service (API create → first connect).
//! In eBPF mode it also times what the socket hook adds to a `connect`: UDP connects (they send
//! nothing but run the same `connect4` program) from the client pod outside n1's cgroup, inside
//! it to a pod IP, and inside it to the target's ClusterIP (the target has a UDP port for this).
//! The floor ("direct") connects from the same places to the two backends' pod IPs, each
//! connection to either at random as the Service would balance it, and every run reports each
//! backend's own latencies beside the mixture's: a local backend and one behind the overlay
//! are different paths, and the mixture's p50 does not say which one a difference is on.
//!
//! The markdown goes to stdout and `lb.md`, the numbers to `lb.json`, a chart to `lb.svg`, all
//! under the output directory. Nothing is asserted about speed. The driver thread lives in n1's
//! network namespace (the apiserver listens there); nothing is sent from the root namespace.

mod modes;
mod probe;
mod report;
mod setup;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use ekube_lab::{Lab, LabConfig, SERVER_CMD};
use ekube_tests::bench::{self, RrReport};
use ekube_tests::{ekube_bin, netns};

use crate::modes::{Mode, Proxies, sync_stat, synced_fully};
use crate::probe::{ConnectCosts, Place};
use crate::report::{Path, ProgSample, Sample};
use crate::setup::{BACKEND_PORT, Cluster, NODE_PORT, SERVICE_PORT};

const LAB: &str = "ekblb";
/// Extra runs of a cell whose run completed no connection before that is recorded.
const EMPTY_RETRIES: usize = 2;
/// Probe interval while timing programming (the resolution of those numbers).
const PROBE_INTERVAL_MS: f64 = 1.0;
/// UDP connects per place when timing the socket hook.
pub(crate) const CONNECT_CALLS: u32 = 128_000;
/// The proxy's count of `connect4` translations in its metrics.
const CONNECT4_TRANSLATED: &str =
    "ekube_proxy_datapath_events_total{counter=\"connect4_translated\"}";
/// Longer than the proxy takes to bring its eBPF counters into its metrics (every 2 s).
const COUNTERS_REFRESH: Duration = Duration::from_millis(2500);

fn connect4_translations(metrics: &std::collections::BTreeMap<String, f64>) -> f64 {
    metrics.get(CONNECT4_TRANSLATED).copied().unwrap_or(0.0)
}
#[derive(Parser)]
#[command(
    about = "Service load balancing: ekube eBPF vs kube-proxy iptables (legacy, nft) and nftables vs the pod IP"
)]
pub struct Args {
    /// Where lb.md, lb.json and lb.svg go.
    #[arg(default_value = "target/bench")]
    out_dir: PathBuf,
    /// Numbers of services (each with two endpoints) to measure at, ascending.
    #[arg(long, value_delimiter = ',', default_value = "10,1000,10000,100000")]
    scales: Vec<usize>,
    /// Rounds per cell; the mode order alternates between rounds.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Measured seconds per run (with the defaults the scales up to 10,000 take 15–20
    /// minutes; 100,000 adds the growth of the API and the rule proxies' giving up).
    #[arg(long, default_value_t = 1.5)]
    duration: f64,
    /// Seconds of load before each run's measurement starts.
    #[arg(long, default_value_t = 0.2)]
    warmup: f64,
    /// Concurrent closed-loop clients.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    concurrency: Vec<usize>,
    /// Datapaths to compare.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "direct,ebpf,iptables-legacy,iptables-nft,nftables"
    )]
    modes: Vec<Mode>,
    /// `--iptables-min-sync-period` of the iptables and nftables proxies in milliseconds
    /// (kube-proxy's default is 1s).
    #[arg(long, default_value_t = 1000)]
    iptables_min_sync_ms: u64,
    /// Seconds a proxy gets to program N services (and, separately, one more) before the
    /// bench records that it gave up; a mode that gave up on its full sync is skipped for the
    /// remaining rounds at that scale.
    #[arg(long, default_value_t = 120.0)]
    sync_timeout: f64,
}

impl Args {
    fn sync_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.sync_timeout)
    }
}

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    match argv.get(1).map(String::as_str) {
        Some(probe::ARG) => return probe::main(&argv[2..]),
        Some(probe::CONNECT_COST_ARG) => return probe::connect_cost_main(&argv[2..]),
        _ => {}
    }
    let args = Args::parse();
    bench::require_root("bench lb")?;
    ensure!(
        !args.scales.is_empty() && args.scales.iter().all(|&s| s >= 1),
        "--scales must be at least 1 service each"
    );
    ensure!(
        args.scales.windows(2).all(|w| w[0] <= w[1]),
        "--scales must be ascending"
    );
    ensure!(
        args.rounds >= 1
            && args.duration > 0.0
            && !args.modes.is_empty()
            && !args.concurrency.is_empty(),
        "nothing to measure"
    );
    if std::env::var_os("RUST_LOG").is_none() {
        // SAFETY: still single-threaded; the lab's processes inherit this (10,000 services
        // logged at info would cost the proxies more than the measured work).
        unsafe { std::env::set_var("RUST_LOG", "warn") };
    }
    bench::clear_netns(setup::POD_PREFIX);
    let started = Instant::now();

    let mut config = LabConfig::new(LAB);
    config.nodes = 2;
    config.registry = false;
    config
        .vars
        .insert("ekube".into(), ekube_bin().display().to_string());
    config.server = Some(ekube_lab::CmdTemplate::parse(SERVER_CMD));
    let lab = Lab::up(config).context("bringing the lab up")?;
    eprintln!("[{:.0?}] lab up", started.elapsed());

    let n1 = lab.host("n1")?.netns.clone();
    let outcome = std::thread::scope(|s| {
        s.spawn(|| -> Result<_> {
            let _inside =
                netns::Entered::enter(&n1).with_context(|| format!("entering netns {n1}"))?;
            measure(&args, &lab, started)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the bench thread panicked"))?
    });
    let root = lab.config().root.clone();
    let down = lab.down().or_else(|first| {
        // Processes ended at teardown may still be exiting (their parents reap them), which
        // keeps their cgroup busy for a moment: try again for a few seconds.
        ekube_tests::wait_for(
            Duration::from_secs(15),
            &format!("the lab to tear down (first attempt: {first})"),
            || Ok(Lab::teardown(&root, LAB).is_ok()),
        )
    });
    let (samples, progs, failed) = outcome?;
    down?;

    let md = report::markdown(&args, &samples, &progs);
    print!("{md}");
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    let md_path = args.out_dir.join("lb.md");
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    bench::write_json(&args.out_dir, "lb", &report::json(&args, &samples, &progs))?;
    let svg_path = args.out_dir.join("lb.svg");
    std::fs::write(&svg_path, report::svg(&args, &samples))
        .with_context(|| format!("writing {}", svg_path.display()))?;
    eprintln!(
        "wrote {} and {} ({:.0?} in all)",
        md_path.display(),
        svg_path.display(),
        started.elapsed()
    );
    match failed {
        Some(e) => {
            Err(e.context("the bench stopped early; the files hold what was measured until then"))
        }
        None => Ok(()),
    }
}

/// What was measured, and the error that ended the run early if one did.
type Measured = (Vec<Sample>, Vec<ProgSample>, Option<anyhow::Error>);

/// The whole measurement; runs on a thread inside n1's network namespace.
fn measure(args: &Args, lab: &Lab, started: Instant) -> Result<Measured> {
    let mut cluster = Cluster::build(lab)?;
    eprintln!(
        "[{:.0?}] cluster ready: backends {} (n1) and {} (n2), target ClusterIP {}",
        started.elapsed(),
        cluster.backends[0].ip,
        cluster.backends[1].ip,
        cluster.target_vip
    );
    let largest = args.scales.iter().copied().max().unwrap_or(0);
    let mut proxies = Proxies::new(
        lab,
        Duration::from_millis(args.iptables_min_sync_ms),
        bench::lb_map_max_for(largest),
    );
    let mut run = Runner {
        args,
        cluster: &mut cluster,
        proxies: &mut proxies,
        samples: Vec::new(),
        progs: Vec::new(),
        adds: 0,
        gave_up: Vec::new(),
    };
    let result = run.all(started);
    // The last proxy is still running while the lab is held.
    if let Err(e) = &result
        && std::env::var_os("BENCH_LB_HOLD_SECS").is_some()
    {
        eprintln!("error: {e:#}");
    }
    bench::hold_for_a_look("BENCH_LB_HOLD_SECS");
    let cleaned = run.proxies.clean();
    let failed = match (result, cleaned) {
        (Err(e), _) | (Ok(()), Err(e)) => Some(e),
        (Ok(()), Ok(())) => None,
    };
    Ok((run.samples, run.progs, failed))
}

struct Runner<'r, 'a> {
    args: &'r Args,
    cluster: &'r mut Cluster<'a>,
    proxies: &'r mut Proxies<'a>,
    samples: Vec<Sample>,
    progs: Vec<ProgSample>,
    /// Services added so far (names and addresses stay unique).
    adds: usize,
    /// (scale, mode) whose full sync did not finish in time: skipped for the other rounds.
    gave_up: Vec<(usize, Mode)>,
}

impl Runner<'_, '_> {
    fn all(&mut self, started: Instant) -> Result<()> {
        for &scale in &self.args.scales {
            self.proxies.clean()?;
            self.cluster.grow(scale)?;
            eprintln!("[{:.0?}] {scale} services in the API", started.elapsed());
            for round in 0..self.args.rounds {
                for mode in bench::alternate(&self.args.modes, round) {
                    self.mode(scale, round, mode)?;
                }
                eprintln!(
                    "[{:.0?}] {scale} services: round {} of {} done",
                    started.elapsed(),
                    round + 1,
                    self.args.rounds
                );
            }
        }
        Ok(())
    }

    /// One mode in one round: clean start, full sync, the cells, one added service.
    fn mode(&mut self, scale: usize, round: usize, mode: Mode) -> Result<()> {
        if self.gave_up.contains(&(scale, mode)) {
            return Ok(());
        }
        self.proxies.clean()?;
        self.cluster.clear_time_wait()?;
        self.check_clean(mode)?;
        let mut prog = ProgSample {
            scale,
            mode,
            round,
            ..Default::default()
        };
        if mode != Mode::Direct && !self.full_sync(mode, &mut prog)? {
            eprintln!(
                "note: {} did not program {scale} services within {:?}; skipping it at this scale",
                mode.name(),
                self.args.sync_timeout()
            );
            self.gave_up.push((scale, mode));
            prog.full_gave_up = true;
            self.progs.push(prog);
            return self.proxies.clean();
        }
        let cells: Vec<(Path, usize)> = [Path::ClusterIp, Path::NodePort]
            .iter()
            .flat_map(|&p| self.args.concurrency.iter().map(move |&c| (p, c)))
            .collect();
        for (path, concurrency) in bench::alternate(&cells, round) {
            let mut empty_runs = 0;
            let report = loop {
                let report = self.cell(mode, path, concurrency)?;
                if report.requests > 0 {
                    break report;
                }
                let what = format!(
                    "{} {} ×{concurrency}: no connection completed in the window",
                    mode.name(),
                    path.name()
                );
                if empty_runs == EMPTY_RETRIES {
                    // Recorded as measured (0 connections per second, no latency).
                    eprintln!("note: {what}, {} times; recording it", empty_runs + 1);
                    break report;
                }
                empty_runs += 1;
                eprintln!("note: {what}; again");
            };
            self.samples.push(Sample {
                scale,
                mode,
                path,
                concurrency,
                round,
                report,
                empty_runs,
            });
        }
        if mode == Mode::Ebpf {
            prog.connect = Some(self.connect_costs()?);
            self.restart(mode, &mut prog)?;
        }
        if mode != Mode::Direct {
            self.add_one(mode, &mut prog)?;
            self.progs.push(prog);
        }
        Ok(())
    }

    /// What the socket hook costs a `connect` (eBPF only; see [`probe::connect_costs`]): from
    /// the client pod's namespace, a socket outside n1's cgroup to a backend's pod IP, one
    /// inside it to the same pod IP, and one inside it to the target's ClusterIP, whose
    /// translations the proxy must count.
    fn connect_costs(&self) -> Result<ConnectCosts> {
        let c = &self.cluster;
        let before = self.settled_translations()?;
        let costs = probe::connect_costs(
            &c.pod_outside,
            c.pod_client
                .cgroup_procs
                .as_deref()
                .context("the client pod's cgroup")?,
            SocketAddr::from((c.backends[0].ip, BACKEND_PORT)),
            SocketAddr::from((c.target_vip, SERVICE_PORT)),
            CONNECT_CALLS,
        )?;
        // The counters reach the metrics every few seconds.
        self.proxies
            .wait_metrics("the proxy to count the translated connects", |m| {
                connect4_translations(m) - before >= costs.translating.calls as f64
            })?;
        Ok(costs)
    }

    /// The proxy's count of `connect4` translations once the measured connections' have all
    /// reached its metrics: two reads a refresh apart that agree.
    fn settled_translations(&self) -> Result<f64> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = connect4_translations(&self.proxies.metrics()?);
        loop {
            std::thread::sleep(COUNTERS_REFRESH);
            let now = connect4_translations(&self.proxies.metrics()?);
            if now == last {
                return Ok(now);
            }
            ensure!(
                Instant::now() < deadline,
                "the proxy's connect4 count did not settle within 60 s"
            );
            last = now;
        }
    }

    /// Neither the target's ClusterIP nor its NodePort may answer before a proxy runs: whatever
    /// the last mode left would otherwise be measured.
    fn check_clean(&self, mode: Mode) -> Result<()> {
        let c = &self.cluster;
        let vip = SocketAddr::from((c.target_vip, SERVICE_PORT));
        ensure!(
            !probe::answers(&c.pod_client, vip)?,
            "before {}: {vip} still answers after cleaning",
            mode.name()
        );
        let np = self.node_port_addr()?;
        ensure!(
            !probe::answers(&c.ext_client, np)?,
            "before {}: {np} still answers after cleaning",
            mode.name()
        );
        Ok(())
    }

    fn node_port_addr(&self) -> Result<SocketAddr> {
        Ok(SocketAddr::from((
            self.cluster.lab.host("n1")?.ip,
            NODE_PORT,
        )))
    }

    /// Starts the proxy and times it until the target answers on its ClusterIP and NodePort;
    /// `false` when it did not within `--sync-timeout`.
    fn full_sync(&mut self, mode: Mode, prog: &mut ProgSample) -> Result<bool> {
        let c = &self.cluster;
        let vip = SocketAddr::from((c.target_vip, SERVICE_PORT));
        let timeout = self.args.sync_timeout();
        let cluster_probe = probe::spawn(&c.pod_client, vip, timeout, PROBE_INTERVAL_MS)?;
        let node_probe = probe::spawn(
            &c.ext_client,
            self.node_port_addr()?,
            timeout,
            PROBE_INTERVAL_MS,
        )?;
        let t0 = Instant::now();
        self.proxies.start(mode)?;
        let mut probes = [(cluster_probe, None), (node_probe, None)];
        let outcome = probe::wait_all(&mut probes, || self.proxies.check_alive());
        for (child, _) in &mut probes {
            // Still polling only when something failed: ours to end.
            let _ = child.kill();
            let _ = child.wait();
        }
        outcome?;
        prog.full_cluster_ms = probes[0].1.flatten().map(|t| bench::ms(t - t0));
        prog.full_node_port_ms = probes[1].1.flatten().map(|t| bench::ms(t - t0));
        if prog.full_cluster_ms.is_none() || prog.full_node_port_ms.is_none() {
            return Ok(false);
        }
        let m = self
            .proxies
            .wait_metrics("the proxy's first full sync in its metrics", synced_fully)?;
        prog.full_proxy_ms = Some(sync_stat(&m, "sum", "full") * 1000.0);
        if let Some(variant) = mode.iptables_variant() {
            prog.target_rule = Some(modes::target_rule_position(c.lab, variant, c.target_vip)?);
        }
        Ok(true)
    }

    /// Stops the proxy and starts the same build again over its pinned datapath, and times the
    /// start until its first full sync is done (Services answer throughout). eBPF only: a rule
    /// mode's restart rewrites every rule, which its full sync already measures.
    fn restart(&mut self, mode: Mode, prog: &mut ProgSample) -> Result<()> {
        self.proxies.stop()?;
        let t0 = Instant::now();
        self.proxies.start(mode)?;
        self.proxies.wait_full_sync(self.args.sync_timeout())?;
        prog.restart_ms = Some(bench::ms(t0.elapsed()));
        Ok(())
    }

    /// One measured cell: `ekube-rr client` in crr mode, in direct mode to both backends' pod
    /// IPs, each connection to either at random as the Service balances them. A run may
    /// complete no connection at all (a connect stuck past the window, e.g. in SYN
    /// retransmission).
    fn cell(&self, mode: Mode, path: Path, concurrency: usize) -> Result<RrReport> {
        let c = &self.cluster;
        let place = match path {
            Path::ClusterIp => &c.pod_client,
            Path::NodePort => &c.ext_client,
        };
        let target = match (mode, path) {
            (Mode::Direct, _) => c
                .backends
                .iter()
                .map(|b| SocketAddr::from((b.ip, BACKEND_PORT)).to_string())
                .collect::<Vec<_>>()
                .join(","),
            (_, Path::ClusterIp) => SocketAddr::from((c.target_vip, SERVICE_PORT)).to_string(),
            (_, Path::NodePort) => self.node_port_addr()?.to_string(),
        };
        self.client(place, &target, concurrency)
    }

    /// Runs `ekube-rr client` from `place`.
    fn client(&self, place: &Place, target: &str, concurrency: usize) -> Result<RrReport> {
        bench::json_output(
            place
                .command(bench::rr_bin())?
                .args(["client", "--mode", "crr", "--target", target])
                .args([
                    "--concurrency",
                    &concurrency.to_string(),
                    "--duration",
                    &self.args.duration.to_string(),
                ])
                .args(["--warmup", &self.args.warmup.to_string(), "--timeout", "2"]),
            &format!("ekube-rr client → {target}"),
        )
    }

    /// Times one more Service at the current scale: API create → first successful connect from
    /// the client pod, and the proxy's own sync time for it. Its EndpointSlice is created first
    /// and given time to settle (for the rule modes past `--iptables-min-sync-period`, so
    /// the batching throttle never delays the change timed). Removed again when the mode ends.
    fn add_one(&mut self, mode: Mode, prog: &mut ProgSample) -> Result<()> {
        let n = self.adds;
        self.adds += 1;
        let name = format!("lb-add-{n:04}");
        let vip = self.cluster.add_vip(n);
        let commits = |m: &std::collections::BTreeMap<String, f64>| {
            m.get("ekube_proxy_syncs_total{kind=\"commit\"}")
                .copied()
                .unwrap_or(0.0)
        };
        let services = |m: &std::collections::BTreeMap<String, f64>| {
            m.get("ekube_proxy_syncs_total{kind=\"service\"}")
                .copied()
                .unwrap_or(0.0)
        };
        let before = self.proxies.metrics()?;
        self.cluster.create_add_slice(&name)?;
        self.proxies
            .wait_metrics("the proxy to sync the added EndpointSlice", |m| {
                commits(m) > commits(&before)
            })?;
        if mode.writes_rules() {
            std::thread::sleep(Duration::from_millis(self.args.iptables_min_sync_ms + 100));
        }
        let m0 = self.proxies.metrics()?;
        let timeout = self.args.sync_timeout();
        let mut probe = probe::spawn(
            &self.cluster.pod_client,
            SocketAddr::from((vip, SERVICE_PORT)),
            timeout,
            PROBE_INTERVAL_MS,
        )?;
        let t0 = Instant::now();
        let result = (|| -> Result<()> {
            if let Err(e) = self.cluster.create_add_service(&name, vip) {
                let _ = probe.kill();
                let _ = probe.wait();
                return Err(e);
            }
            let Some(ready) = probe::wait(probe)? else {
                eprintln!(
                    "note: {}: added service {name} ({vip}) not answering after {timeout:?}",
                    mode.name()
                );
                prog.add_gave_up = true;
                return Ok(());
            };
            prog.add_ms = Some(bench::ms(ready - t0));
            let m1 = self
                .proxies
                .wait_metrics("the proxy to commit the added Service", |m| {
                    commits(m) > commits(&m0) && services(m) > services(&m0)
                })?;
            let spent = |kind: &str| sync_stat(&m1, "sum", kind) - sync_stat(&m0, "sum", kind);
            prog.add_proxy_ms = Some((spent("service") + spent("commit")) * 1000.0);
            Ok(())
        })();
        // The proxy is stopped before the next mode; delete now so the next full sync is over
        // the same N services.
        self.proxies.clean()?;
        self.cluster.delete_added(&name)?;
        result
    }
}
