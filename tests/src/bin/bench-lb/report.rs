//! What the bench prints and writes: medians over rounds per (path, services, mode, clients),
//! the markdown tables (ratios to the pod IP and eBPF vs iptables), the JSON, and an SVG chart
//! of p50/p99 latency per mode and scale drawn here by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use ekube_tests::bench::{Latency, RrReport, Table, median, ratio};
use serde_json::{Value, json};

use crate::Args;
use crate::modes::Mode;
use crate::probe::{ConnectCost, ConnectCosts};

/// Which way the client reaches the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Path {
    /// From the client pod on n1 to the ClusterIP.
    ClusterIp,
    /// From the external namespace to n1's address and the node port.
    NodePort,
}

impl Path {
    pub fn name(self) -> &'static str {
        match self {
            Path::ClusterIp => "clusterip",
            Path::NodePort => "nodeport",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Path::ClusterIp => "ClusterIP from a pod",
            Path::NodePort => "NodePort from outside",
        }
    }
}

/// One measured run.
pub struct Sample {
    pub scale: usize,
    pub mode: Mode,
    pub path: Path,
    pub concurrency: usize,
    pub round: usize,
    pub report: RrReport,
    /// Runs of this cell thrown away before this one because no connection completed.
    pub empty_runs: usize,
}

/// Programming times of one mode in one round.
#[derive(Default)]
pub struct ProgSample {
    pub scale: usize,
    pub mode: Mode,
    pub round: usize,
    /// Proxy start → the target's ClusterIP answers from the client pod.
    pub full_cluster_ms: Option<f64>,
    /// Proxy start → the target's NodePort answers from outside.
    pub full_node_port_ms: Option<f64>,
    /// The full sync did not finish within `--sync-timeout` (nothing else was measured).
    pub full_gave_up: bool,
    /// The added service did not answer within `--sync-timeout`.
    pub add_gave_up: bool,
    /// The proxy's own first full sync (its metrics).
    pub full_proxy_ms: Option<f64>,
    /// Restart of the same build over what it programmed → its first full sync done.
    pub restart_ms: Option<f64>,
    /// API create of one more Service → its first successful connect.
    pub add_ms: Option<f64>,
    /// The proxy's own sync + commit time for that Service (its metrics).
    pub add_proxy_ms: Option<f64>,
    /// iptables modes: the target's rule position among the ClusterIP rules of KUBE-SERVICES.
    pub target_rule: Option<(usize, usize)>,
    /// eBPF: what the socket hook costs a `connect`.
    pub connect: Option<ConnectCosts>,
}

/// Medians over the rounds of one cell.
#[derive(Clone, Copy, Default)]
struct Stat {
    p50: f64,
    p90: f64,
    p99: f64,
    cps: f64,
    /// Summed over rounds.
    errors: u64,
    requests: u64,
    /// Runs that completed no connection and were repeated, summed over rounds.
    empty_runs: usize,
}

type Key = (Path, usize, Mode, usize);

fn stats(samples: &[Sample]) -> BTreeMap<Key, Stat> {
    let mut groups: BTreeMap<Key, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        groups
            .entry((s.path, s.scale, s.mode, s.concurrency))
            .or_default()
            .push(s);
    }
    groups
        .into_iter()
        .map(|(k, ss)| {
            let rs: Vec<&RrReport> = ss.iter().map(|s| &s.report).collect();
            let lat = |f: &dyn Fn(&Latency) -> f64| {
                median(
                    &rs.iter()
                        .map(|r| r.latency_us.as_ref().map_or(f64::NAN, f))
                        .collect::<Vec<_>>(),
                )
            };
            let stat = Stat {
                p50: lat(&|l| l.p50),
                p90: lat(&|l| l.p90),
                p99: lat(&|l| l.p99),
                cps: median(&rs.iter().map(|r| r.connections_per_s).collect::<Vec<_>>()),
                errors: rs.iter().map(|r| r.errors).sum(),
                requests: rs.iter().map(|r| r.requests).sum(),
                empty_runs: ss.iter().map(|s| s.empty_runs).sum(),
            };
            (k, stat)
        })
        .collect()
}

/// Median over rounds of each backend's own p50 (the connections it answered), per cell.
fn backend_p50s(samples: &[Sample]) -> BTreeMap<(Key, String), f64> {
    let mut groups: BTreeMap<(Key, String), Vec<f64>> = BTreeMap::new();
    for s in samples {
        for (name, l) in &s.report.latency_by_name_us {
            groups
                .entry(((s.path, s.scale, s.mode, s.concurrency), name.clone()))
                .or_default()
                .push(l.p50);
        }
    }
    groups.into_iter().map(|(k, v)| (k, median(&v))).collect()
}

/// The per-backend table: a Service balancing over a local backend and one behind the overlay
/// mixes two paths whose costs differ, and the mixture's p50 hides which path a difference is on.
fn by_backend_table(args: &Args, samples: &[Sample], c1: usize) -> Table {
    let p50s = backend_p50s(samples);
    let names: BTreeSet<&String> = p50s.keys().map(|(_, n)| n).collect();
    let mut header: Vec<String> = vec!["path".into(), "services".into(), "mode".into()];
    for n in &names {
        header.push(format!("{n} p50 µs"));
        header.push("vs direct".into());
    }
    let mut t = Table::new(&header.iter().map(String::as_str).collect::<Vec<_>>());
    for path in [Path::ClusterIp, Path::NodePort] {
        for &scale in &args.scales {
            for &mode in &args.modes {
                let get =
                    |m: Mode, n: &String| p50s.get(&((path, scale, m, c1), n.clone())).copied();
                if names.iter().all(|n| get(mode, n).is_none()) {
                    continue;
                }
                let mut row = vec![path.title().into(), thousands(scale), mode.label().into()];
                for n in &names {
                    let v = get(mode, n).unwrap_or(f64::NAN);
                    row.push(if v.is_finite() {
                        format!("{v:.0}")
                    } else {
                        "–".into()
                    });
                    row.push(ratio(v, get(Mode::Direct, n).unwrap_or(f64::NAN)));
                }
                t.row(row);
            }
        }
    }
    t
}

/// Programming-time medians of one (scale, mode).
#[derive(Default)]
struct ProgStat {
    full_cluster_ms: f64,
    full_node_port_ms: f64,
    full_proxy_ms: f64,
    restart_ms: f64,
    add_ms: f64,
    add_proxy_ms: f64,
    full_gave_up: bool,
    add_gave_up: bool,
    /// Medians of the [`ConnectCosts`] p50s (ns per call).
    connect_no_hook_ns: f64,
    connect_no_service_ns: f64,
    connect_translating_ns: f64,
    /// Medians of each round's differences to its own unhooked socket (the timer measures the
    /// three side by side, so a difference is taken within a round, never across rounds).
    connect_no_service_cost_ns: f64,
    connect_translating_cost_ns: f64,
}

fn prog_stats(progs: &[ProgSample]) -> BTreeMap<(usize, Mode), ProgStat> {
    let mut groups: BTreeMap<(usize, Mode), Vec<&ProgSample>> = BTreeMap::new();
    for p in progs {
        groups.entry((p.scale, p.mode)).or_default().push(p);
    }
    groups
        .into_iter()
        .map(|(k, ps)| {
            let m = |f: &dyn Fn(&ProgSample) -> Option<f64>| {
                median(
                    &ps.iter()
                        .map(|p| f(p).unwrap_or(f64::NAN))
                        .collect::<Vec<_>>(),
                )
            };
            let connect = |f: &dyn Fn(&ConnectCosts) -> ConnectCost| {
                m(&|p| p.connect.as_ref().map(|c| f(c).p50_ns))
            };
            let stat = ProgStat {
                connect_no_hook_ns: connect(&|c| c.no_hook),
                connect_no_service_ns: connect(&|c| c.no_service),
                connect_translating_ns: connect(&|c| c.translating),
                connect_no_service_cost_ns: m(&|p| {
                    p.connect.map(|c| c.no_service.p50_ns - c.no_hook.p50_ns)
                }),
                connect_translating_cost_ns: m(&|p| {
                    p.connect.map(|c| c.translating.p50_ns - c.no_hook.p50_ns)
                }),
                full_cluster_ms: m(&|p| p.full_cluster_ms),
                full_node_port_ms: m(&|p| p.full_node_port_ms),
                full_proxy_ms: m(&|p| p.full_proxy_ms),
                restart_ms: m(&|p| p.restart_ms),
                add_ms: m(&|p| p.add_ms),
                add_proxy_ms: m(&|p| p.add_proxy_ms),
                full_gave_up: ps.iter().any(|p| p.full_gave_up),
                add_gave_up: ps.iter().any(|p| p.add_gave_up),
            };
            (k, stat)
        })
        .collect()
}

/// `10000` → `10,000`.
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        "–".into()
    } else if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// The report as markdown.
pub fn markdown(args: &Args, samples: &[Sample], progs: &[ProgSample]) -> String {
    let st = stats(samples);
    let get = |p: Path, n: usize, m: Mode, c: usize| st.get(&(p, n, m, c)).copied();
    let c1 = args.concurrency[0];
    let cmax = *args.concurrency.iter().max().expect("concurrency");
    let mut out = format!(
        "## Service load balancing: ekube eBPF vs kube-proxy iptables vs the pod IP\n\n\
         2-node lab, flannel VXLAN; target Service with 2 endpoints (one per node) sorting last among N services; \
         `ekube-rr` crr (connect, request, reply, close); {} rounds × {} s per cell, mode order alternating; medians over rounds. \
         Direct = the pod IPs without a Service, each connection to either at random.\n",
        args.rounds, args.duration
    );
    for path in [Path::ClusterIp, Path::NodePort] {
        let mut lat = Table::new(&[
            "services",
            "mode",
            "p50 µs",
            "p90 µs",
            "p99 µs",
            "p50 vs direct",
            "p99 vs direct",
            "errors (all clients)",
        ]);
        let mut cps_header: Vec<String> = vec!["services".into(), "mode".into()];
        cps_header.extend(args.concurrency.iter().map(|c| format!("conn/s ×{c}")));
        cps_header.push(format!("×{cmax} vs direct"));
        let mut cps = Table::new(&cps_header.iter().map(String::as_str).collect::<Vec<_>>());
        for &n in &args.scales {
            for &mode in &args.modes {
                let Some(s) = get(path, n, mode, c1) else {
                    if progs
                        .iter()
                        .any(|p| p.scale == n && p.mode == mode && p.full_gave_up)
                    {
                        let gave_up = format!(
                            "did not program {} services within {} s",
                            thousands(n),
                            args.sync_timeout
                        );
                        lat.row(vec![
                            thousands(n),
                            mode.label().into(),
                            gave_up.clone(),
                            "".into(),
                            "".into(),
                            "".into(),
                            "".into(),
                            "".into(),
                        ]);
                        let mut row = vec![thousands(n), mode.label().into(), gave_up];
                        row.extend(args.concurrency.iter().map(|_| String::new()));
                        cps.row(row);
                    }
                    continue;
                };
                let d = get(path, n, Mode::Direct, c1).unwrap_or_default();
                let all: Vec<Stat> = args
                    .concurrency
                    .iter()
                    .filter_map(|&c| get(path, n, mode, c))
                    .collect();
                let errors: u64 = all.iter().map(|s| s.errors).sum();
                let empty: usize = all.iter().map(|s| s.empty_runs).sum();
                let errors = if empty > 0 {
                    format!("{errors} (+{empty} empty runs repeated)")
                } else {
                    errors.to_string()
                };
                lat.row(vec![
                    thousands(n),
                    mode.label().into(),
                    format!("{:.0}", s.p50),
                    format!("{:.0}", s.p90),
                    format!("{:.0}", s.p99),
                    ratio(s.p50, d.p50),
                    ratio(s.p99, d.p99),
                    errors,
                ]);
                let mut row = vec![thousands(n), mode.label().into()];
                row.extend(args.concurrency.iter().map(|&c| {
                    get(path, n, mode, c).map_or("–".into(), |s| format!("{:.0}", s.cps))
                }));
                let top = get(path, n, mode, cmax).unwrap_or_default();
                row.push(ratio(
                    top.cps,
                    get(path, n, Mode::Direct, cmax).unwrap_or_default().cps,
                ));
                cps.row(row);
            }
        }
        let _ = write!(
            out,
            "\n### {}: latency per connection, {c1} client{}\n\n{}\n### {}: connections per second\n\n{}",
            path.title(),
            if c1 == 1 { "" } else { "s" },
            lat.markdown(),
            path.title(),
            cps.markdown()
        );
    }

    let _ = write!(
        out,
        "\n### Latency by backend ({c1} client{}, p50 of the connections each backend answered; medians over rounds)\n\n{}",
        if c1 == 1 { "" } else { "s" },
        by_backend_table(args, samples, c1).markdown()
    );

    let ipt: Vec<Mode> = [Mode::IptablesLegacy, Mode::IptablesNft, Mode::Nftables]
        .into_iter()
        .filter(|m| args.modes.contains(m))
        .collect();
    if args.modes.contains(&Mode::Ebpf) {
        let mut header: Vec<String> = vec![
            "path".into(),
            "services".into(),
            format!("eBPF p50 vs {}", thousands(args.scales[0])),
        ];
        for m in &ipt {
            header.push(format!("p50 eBPF/{}", m.name()));
            header.push(format!("p99 eBPF/{}", m.name()));
            header.push(format!("conn/s ×{cmax} eBPF/{}", m.name()));
        }
        let mut t = Table::new(&header.iter().map(String::as_str).collect::<Vec<_>>());
        for path in [Path::ClusterIp, Path::NodePort] {
            let base = get(path, args.scales[0], Mode::Ebpf, c1).unwrap_or_default();
            for &n in &args.scales {
                let e = get(path, n, Mode::Ebpf, c1).unwrap_or_default();
                let et = get(path, n, Mode::Ebpf, cmax).unwrap_or_default();
                let mut row = vec![path.title().into(), thousands(n), ratio(e.p50, base.p50)];
                for &m in &ipt {
                    let i = get(path, n, m, c1).unwrap_or_default();
                    let it = get(path, n, m, cmax).unwrap_or_default();
                    row.extend([
                        ratio(e.p50, i.p50),
                        ratio(e.p99, i.p99),
                        ratio(et.cps, it.cps),
                    ]);
                }
                t.row(row);
            }
        }
        let _ = write!(
            out,
            "\n### eBPF vs kube-proxy's rules ({c1} client latency; below 1× = eBPF faster, conn/s above 1× = eBPF more)\n\n{}",
            t.markdown()
        );
    }

    let ps = prog_stats(progs);
    let mut t = Table::new(&[
        "services",
        "mode",
        "full sync: start → ClusterIP answers (ms)",
        "start → NodePort answers (ms)",
        "proxy's own full sync (ms)",
        "restart, same build → synced (ms)",
        "add 1 Service: API → first connect (ms)",
        "proxy's own sync for it (ms)",
    ]);
    for &n in &args.scales {
        for &mode in args.modes.iter().filter(|m| **m != Mode::Direct) {
            let Some(p) = ps.get(&(n, mode)) else {
                continue;
            };
            let limit = format!("> {} s (gave up)", args.sync_timeout);
            // No round measured it (median of nothing is 0) because the proxy gave up.
            let or_limit = |v: f64, gave_up: bool| {
                if gave_up && !(v.is_finite() && v > 0.0) {
                    limit.clone()
                } else {
                    ms(v)
                }
            };
            t.row(vec![
                thousands(n),
                mode.label().into(),
                or_limit(p.full_cluster_ms, p.full_gave_up),
                or_limit(p.full_node_port_ms, p.full_gave_up),
                ms(p.full_proxy_ms),
                ms(p.restart_ms),
                or_limit(p.add_ms, p.add_gave_up),
                ms(p.add_proxy_ms),
            ]);
        }
    }
    let _ = write!(
        out,
        "\n### Programming time (medians over rounds; probes poll every 1 ms)\n\n{}",
        t.markdown()
    );
    let mut t = Table::new(&[
        "services",
        "no hook: socket outside the cgroup → pod IP (ns)",
        "hook, no Service: socket inside → pod IP (ns)",
        "hook translates: socket inside → ClusterIP (ns)",
        "the hook's cost: no Service / translating (ns; each round's difference, median)",
    ]);
    for &n in &args.scales {
        let Some(p) = ps.get(&(n, Mode::Ebpf)) else {
            continue;
        };
        // No round timed a connect: the median of nothing is 0.
        if p.connect_no_hook_ns <= 0.0 {
            continue;
        }
        let ns = |v: f64| format!("{v:.0}");
        t.row(vec![
            thousands(n),
            ns(p.connect_no_hook_ns),
            ns(p.connect_no_service_ns),
            ns(p.connect_translating_ns),
            format!(
                "{:+.0} / {:+.0}",
                p.connect_no_service_cost_ns, p.connect_translating_cost_ns
            ),
        ]);
    }
    if !t.rows.is_empty() {
        let _ = write!(
            out,
            "\n### The socket hook's cost per connect (eBPF; UDP connects from the client pod's namespace, which send nothing: {} per socket, the three sockets' batches of 64 in turn; p50 over batches, medians over rounds)\n\n{}",
            thousands(crate::CONNECT_CALLS as usize),
            t.markdown()
        );
    }
    let positions: Vec<String> = progs
        .iter()
        .filter(|p| p.round == 0)
        .filter_map(|p| {
            p.target_rule.map(|(at, of)| {
                format!("{} at {}: {at} of {of}", p.mode.name(), thousands(p.scale))
            })
        })
        .collect();
    if !positions.is_empty() {
        let _ = writeln!(
            out,
            "\nThe target's rule among the ClusterIP rules of `KUBE-SERVICES`: {}.",
            positions.join("; ")
        );
    }
    out
}

/// The report as JSON: configuration, medians, programming times and every run.
pub fn json(args: &Args, samples: &[Sample], progs: &[ProgSample]) -> Value {
    let st = stats(samples);
    let summary: Vec<Value> = st
        .iter()
        .map(|(&(path, n, mode, c), s)| {
            let d = st
                .get(&(path, n, Mode::Direct, c))
                .copied()
                .unwrap_or_default();
            let div = |a: f64, b: f64| if b > 0.0 { json!(a / b) } else { Value::Null };
            json!({
                "path": path.name(), "services": n, "mode": mode.name(), "concurrency": c,
                "p50_us": s.p50, "p90_us": s.p90, "p99_us": s.p99, "connections_per_s": s.cps,
                "errors": s.errors, "requests": s.requests, "empty_runs_repeated": s.empty_runs,
                "p50_vs_direct": div(s.p50, d.p50), "p99_vs_direct": div(s.p99, d.p99),
                "connections_per_s_vs_direct": div(s.cps, d.cps),
            })
        })
        .collect();
    let programming: Vec<Value> = progs
        .iter()
        .map(|p| {
            json!({
                "services": p.scale, "mode": p.mode.name(), "round": p.round,
                "full_sync_clusterip_ms": p.full_cluster_ms, "full_sync_nodeport_ms": p.full_node_port_ms,
                "full_sync_gave_up": p.full_gave_up, "add_service_gave_up": p.add_gave_up,
                "full_sync_proxy_ms": p.full_proxy_ms, "restart_synced_ms": p.restart_ms, "add_service_ms": p.add_ms, "add_service_proxy_ms": p.add_proxy_ms,
                "target_rule": p.target_rule.map(|(at, of)| json!({"position": at, "of": of})),
                "connect_ns": p.connect.map(|c| json!({
                    "no_hook": c.no_hook, "no_service": c.no_service, "translating": c.translating,
                })),
            })
        })
        .collect();
    let runs: Vec<Value> = samples
        .iter()
        .map(|s| {
            json!({
                "path": s.path.name(), "services": s.scale, "mode": s.mode.name(), "concurrency": s.concurrency,
                "round": s.round, "empty_runs_before": s.empty_runs, "report": s.report,
            })
        })
        .collect();
    json!({
        "bench": "lb",
        "config": {
            "scales": args.scales, "rounds": args.rounds, "duration_s": args.duration, "warmup_s": args.warmup,
            "concurrency": args.concurrency, "modes": args.modes.iter().map(|m| m.name()).collect::<Vec<_>>(),
            "iptables_min_sync_ms": args.iptables_min_sync_ms,
        },
        "summary": summary,
        "programming": programming,
        "runs": runs,
    })
}

fn color(mode: Mode) -> &'static str {
    match mode {
        Mode::Direct => "#7f7f7f",
        Mode::Ebpf => "#2a9d55",
        Mode::IptablesLegacy => "#e07b24",
        Mode::IptablesNft => "#3b6fb6",
        Mode::Nftables => "#8e5bb5",
    }
}

/// The chart: one panel per path, a group of bars per scale, one bar per mode — p99 light,
/// p50 solid in front of it — for the first concurrency.
pub fn svg(args: &Args, samples: &[Sample]) -> String {
    let st = stats(samples);
    let c1 = args.concurrency[0];
    let (panel_w, panel_h, top, left, bottom) = (470.0, 300.0, 70.0, 60.0, 50.0);
    let width = 2.0 * panel_w + 20.0;
    let height = top + panel_h + bottom;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">Per-connection latency (crr, {c1} client{}), µs — solid p50, light p99; medians of {} rounds</text>\n",
        width / 2.0,
        if c1 == 1 { "" } else { "s" },
        args.rounds
    );
    // Legend.
    let mut x = 60.0;
    for &mode in &args.modes {
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"32\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"43\">{}</text>",
            color(mode),
            x + 16.0,
            mode.label()
        );
        x += 30.0 + 7.0 * mode.label().len() as f64;
    }
    for (i, path) in [Path::ClusterIp, Path::NodePort].into_iter().enumerate() {
        let ox = i as f64 * (panel_w + 20.0);
        let plot_w = panel_w - left - 10.0;
        let max = st
            .iter()
            .filter(|((p, _, _, c), _)| *p == path && *c == c1)
            .map(|(_, s)| if s.p99.is_finite() { s.p99 } else { 0.0 })
            .fold(0.0, f64::max)
            .max(1.0);
        let (step, ticks) = nice_ticks(max);
        let y_max = step * ticks as f64;
        let y = |v: f64| top + panel_h - v / y_max * panel_h;
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>",
            ox + left + plot_w / 2.0,
            top - 8.0,
            path.title()
        );
        for t in 0..=ticks {
            let v = step * t as f64;
            let _ = writeln!(
                out,
                "<line x1=\"{}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{v:.0}</text>",
                ox + left,
                ox + left + plot_w,
                ox + left - 6.0,
                y(v) + 4.0,
                y = y(v)
            );
        }
        let group_w = plot_w / args.scales.len() as f64;
        let bar_w = (group_w * 0.8) / args.modes.len() as f64;
        for (g, &n) in args.scales.iter().enumerate() {
            let gx = ox + left + g as f64 * group_w + group_w * 0.1;
            for (b, &mode) in args.modes.iter().enumerate() {
                let Some(s) = st.get(&(path, n, mode, c1)) else {
                    continue;
                };
                let bx = gx + b as f64 * bar_w;
                for (v, opacity) in [(s.p99, 0.35), (s.p50, 1.0)] {
                    if v.is_finite() && v > 0.0 {
                        let _ = writeln!(
                            out,
                            "<rect x=\"{bx:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\" fill-opacity=\"{opacity}\"><title>{} {} services: {v:.0} µs</title></rect>",
                            y(v),
                            bar_w * 0.9,
                            top + panel_h - y(v),
                            color(mode),
                            mode.label(),
                            thousands(n)
                        );
                    }
                }
            }
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{} services</text>",
                gx + group_w * 0.4,
                top + panel_h + 18.0,
                thousands(n)
            );
        }
        let _ = writeln!(
            out,
            "<line x1=\"{0}\" x2=\"{0}\" y1=\"{top}\" y2=\"{1}\" stroke=\"#333\"/><line x1=\"{0}\" x2=\"{2}\" y1=\"{1}\" y2=\"{1}\" stroke=\"#333\"/>",
            ox + left,
            top + panel_h,
            ox + left + plot_w
        );
    }
    out.push_str("</svg>\n");
    out
}

/// A round tick step (1, 2 or 5 × 10^k) and the number of steps that covers `max`.
fn nice_ticks(max: f64) -> (f64, usize) {
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    (step, (max / step).ceil().max(1.0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(p50: f64, cps: f64) -> RrReport {
        RrReport {
            requests: 10,
            connections_per_s: cps,
            requests_per_s: cps,
            duration_s: 1.0,
            latency_us: Some(Latency {
                p50,
                p90: p50,
                p99: p50 * 2.0,
                max: p50 * 3.0,
                mean: p50,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_mode_that_gave_up_says_so() {
        use clap::Parser;
        let args = Args::parse_from([
            "bench-lb",
            "--scales",
            "10000",
            "--modes",
            "ebpf,iptables-nft",
            "--sync-timeout",
            "60",
        ]);
        let ok = Sample {
            scale: 10000,
            mode: Mode::Ebpf,
            path: Path::ClusterIp,
            concurrency: 1,
            round: 0,
            report: report(250.0, 2000.0),
            empty_runs: 0,
        };
        let progs = [
            ProgSample {
                scale: 10000,
                mode: Mode::Ebpf,
                full_cluster_ms: Some(8.0),
                add_ms: Some(1.5),
                ..Default::default()
            },
            ProgSample {
                scale: 10000,
                mode: Mode::IptablesNft,
                full_gave_up: true,
                ..Default::default()
            },
        ];
        let md = markdown(&args, &[ok], &progs);
        assert!(
            md.contains("| 10,000 | iptables-nft | did not program 10,000 services within 60 s |"),
            "{md}"
        );
        assert!(
            md.contains("| 10,000 | iptables-nft | > 60 s (gave up) | > 60 s (gave up) | – |"),
            "{md}"
        );
        assert!(
            md.contains("| 10,000 | ekube eBPF | 250 | 250 | 500 |"),
            "{md}"
        );
        assert!(svg(&args, &[]).ends_with("</svg>\n"));
    }

    #[test]
    fn the_hook_costs_what_a_hooked_connect_takes_over_an_unhooked_one() {
        use clap::Parser;
        let args = Args::parse_from(["bench-lb", "--scales", "10,1000", "--modes", "direct,ebpf"]);
        let cost = |p50_ns| ConnectCost {
            p50_ns,
            p90_ns: p50_ns * 1.5,
            calls: 128,
        };
        let round = |round, no_hook: f64, translating| ProgSample {
            scale: 10,
            mode: Mode::Ebpf,
            round,
            connect: Some(ConnectCosts {
                no_hook: cost(no_hook),
                no_service: cost(no_hook + 100.0),
                translating: cost(translating),
            }),
            ..Default::default()
        };
        // Each round's own differences: 300, 250, 300 (the columns' medians would say 250).
        let progs = [
            round(0, 900.0, 1200.0),
            round(1, 1000.0, 1250.0),
            round(2, 1600.0, 1900.0),
            // A scale whose eBPF rounds timed no connect has no row.
            ProgSample {
                scale: 1000,
                mode: Mode::Ebpf,
                ..Default::default()
            },
        ];
        let md = markdown(&args, &[], &progs);
        let table = md
            .split("### The socket hook's cost per connect")
            .nth(1)
            .and_then(|section| section.split("\n\n").nth(1))
            .unwrap_or_else(|| panic!("no connect table in\n{md}"));
        assert!(
            table.contains("| 10 | 1000 | 1100 | 1250 | +100 / +300 |"),
            "{md}"
        );
        assert!(!table.contains("| 1,000 |"), "{md}");
        let json = json(&args, &[], &progs);
        assert_eq!(
            json["programming"][2]["connect_ns"]["translating"]["p50_ns"],
            1900.0
        );
    }

    #[test]
    fn each_backend_is_compared_with_its_own_pod_ip() {
        use clap::Parser;
        let args = Args::parse_from(["bench-lb", "--scales", "10", "--modes", "direct,ebpf"]);
        let answered_by = |backends: &[(&str, f64)]| {
            let mut r = report(backends[0].1, 1000.0);
            r.latency_by_name_us = backends
                .iter()
                .map(|&(n, p50)| (n.to_owned(), report(p50, 0.0).latency_us.unwrap()))
                .collect();
            r
        };
        let by_name = |local, remote| answered_by(&[("backend-n1", local), ("backend-n2", remote)]);
        let sample = |mode, round, report: RrReport| Sample {
            scale: 10,
            mode,
            path: Path::NodePort,
            concurrency: 1,
            round,
            report,
            empty_runs: 0,
        };
        let samples = [
            sample(Mode::Direct, 0, by_name(80.0, 100.0)),
            sample(Mode::Ebpf, 0, by_name(84.0, 130.0)),
            sample(Mode::Ebpf, 1, by_name(88.0, 140.0)),
            sample(Mode::Ebpf, 2, by_name(200.0, 120.0)),
        ];
        let md = markdown(&args, &samples, &[]);
        assert!(
            md.contains("| path | services | mode | backend-n1 p50 µs | vs direct | backend-n2 p50 µs | vs direct |"),
            "{md}"
        );
        assert!(
            md.contains("| NodePort from outside | 10 | ekube eBPF | 88 | 1.10× | 130 | 1.30× |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| NodePort from outside | 10 | pod IP (direct) | 80 | 1.00× | 100 | 1.00× |"
            ),
            "{md}"
        );
    }

    #[test]
    fn numbers_format() {
        assert_eq!(thousands(10000), "10,000");
        assert_eq!(thousands(10), "10");
        assert_eq!(ms(0.456), "0.46");
        assert_eq!(ms(1234.0), "1234");
        assert_eq!(nice_ticks(730.0), (200.0, 4));
        assert_eq!(nice_ticks(95.0), (20.0, 5));
    }
}
