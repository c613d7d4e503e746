//! `cargo xtask bench net`: the pod network's TCP throughput and request/response latency,
//! measured (issue #4).
//!
//! A two-node lab (`ekbnet`): `ekube server` on n1, `ekube flannel` on both nodes, and three
//! "pods" — network namespaces wired by running `ekube-cni` ADD exactly as a kubelet would —
//! two on n1 and one on n2. `ekube-rr` servers run in the second n1 pod, in the n2 pod and in n2
//! itself; `ekube-rr client` runs in the first n1 pod (or in n1) for six paths:
//! node↔node (the underlay); node↔node over a VXLAN device made by hand with iproute2 between
//! the two nodes (no bridge, no pod, no ekube; the same MTU as `flannel.1`): the kernel's own
//! encapsulation cost, the ceiling for ekube's overlay on this machine; node↔node over ekube's
//! own `flannel.1` (n2's address on it); pod↔pod on one node (bridge); pod→node across nodes
//! (the overlay with one pod hop: the client's veth, bridge and forwarding); and pod↔pod
//! across nodes (a pod hop on each side). The three overlay rows split the overlay's cost into
//! the device and the pod hops.
//! Each round runs every path in every mode (bulk stream, request/response on one connection,
//! connect-request-close), in alternating order; the table shows medians over the rounds and
//! ratios to the underlay. Nothing is sent from the root namespace.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use ekube_cni::config::SubnetEnv;
use ekube_flannel::peers::vtep_ip;
use ekube_lab::{CmdTemplate, Lab, LabConfig};
use ekube_tests::bench::{self, RrReport, Table, median, ratio};
use ekube_tests::{ekube_bin, wait_for};
use serde_json::{Value, json};

const LAB: &str = "ekbnet";
/// Prefix of the pod namespaces (cleared at start, removed at the end).
const POD_PREFIX: &str = "ekbnetp";
const PORT: u16 = 7000;
/// The hand-built VXLAN: its device, VNI and UDP port (not flannel's 1/8472), and the
/// nodes' addresses on it.
const BARE_VXLAN: &str = "ekbvx0";
const BARE_VNI: &str = "42";
const BARE_PORT: &str = "4789";
const BARE_ADDRS: [Ipv4Addr; 2] = [Ipv4Addr::new(172, 31, 0, 1), Ipv4Addr::new(172, 31, 0, 2)];

#[derive(Parser)]
struct Args {
    /// Where the JSON report goes.
    #[arg(default_value = "target/bench")]
    out_dir: PathBuf,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Rounds over all paths and modes (the order alternates between rounds).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// One measured path: where the client runs and the server it talks to.
#[derive(Clone)]
struct Path {
    hops: Hops,
    label: &'static str,
    client_ns: String,
    target: SocketAddr,
}

const MODES: [&str; 3] = ["stream", "rr", "crr"];

/// What a measured path crosses; the summary under the table picks its paths by it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hops {
    Underlay,
    HandBuiltVxlan,
    Flannel,
    Bridge,
    PodToNode,
    PodToPod,
}

/// `host`'s VTEP address on `flannel.1`, from the pod subnet its `subnet.env` names.
fn overlay_address(lab: &Lab, host: &str) -> Result<Ipv4Addr> {
    let path = lab.host(host)?.run_dir().join("subnet.env");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let subnet = SubnetEnv::parse(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        .subnet
        .with_context(|| format!("{}: no FLANNEL_SUBNET", path.display()))?;
    Ok(vtep_ip(subnet))
}

/// The VXLAN device between n1 and n2 made as an administrator would by hand, over the same
/// underlay as ekube's `flannel.1` (it goes with the lab's namespaces).
fn bare_vxlan(lab: &Lab) -> Result<()> {
    let (n1, n2) = (lab.host("n1")?, lab.host("n2")?);
    for (i, (this, peer)) in [(n1, n2), (n2, n1)].into_iter().enumerate() {
        let (local, remote) = (this.ip.to_string(), peer.ip.to_string());
        let address = format!("{}/24", BARE_ADDRS[i]);
        for argv in [
            vec![
                "ip", "link", "add", BARE_VXLAN, "type", "vxlan", "id", BARE_VNI, "dstport",
                BARE_PORT, "local", &local, "remote", &remote, "dev", "eth0",
            ],
            vec!["ip", "addr", "add", &address, "dev", BARE_VXLAN],
            vec!["ip", "link", "set", BARE_VXLAN, "up"],
        ] {
            let out = lab.exec(&this.short, &argv)?;
            ensure!(
                out.success(),
                "{}: {}: {}",
                this.short,
                argv.join(" "),
                out.stderr.trim()
            );
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    bench::require_root("bench net")?;
    bench::clear_netns(POD_PREFIX);
    let started = Instant::now();

    let mut config = LabConfig::new(LAB);
    config.nodes = 2;
    config.registry = false;
    config
        .vars
        .insert("ekube".into(), ekube_bin().display().to_string());
    config.server = Some(CmdTemplate::parse(
        "{ekube} server --data-dir {dir}/data/server --bind-address {ip} --advertise-address {ip} --write-kubeconfig {kubeconfig}",
    ));
    let lab = Lab::up(config).context("bringing the lab up")?;
    let mut pods = bench::PodNamespaces::new(POD_PREFIX);
    for i in 1..=2 {
        let host = lab.host(&format!("n{i}"))?;
        let argv = CmdTemplate::parse(
            "{ekube} flannel --kubeconfig {kubeconfig} --hostname-override {node} --public-ip {ip} \
             --subnet-file {dir}/run/subnet.env --register-node",
        )
        .render(&host.vars(lab.config()));
        lab.spawn(&host.short, "flannel", &argv)?;
    }
    for i in 1..=2 {
        let host = format!("n{i}");
        let subnet = lab.host(&host)?.run_dir().join("subnet.env");
        wait_for(
            Duration::from_secs(60),
            &format!("{host}: subnet.env and a route to the other node on flannel.1"),
            || {
                let out = lab.exec(
                    &host,
                    &["ip", "-j", "-4", "route", "show", "dev", "flannel.1"],
                )?;
                let routes: Value = serde_json::from_str(out.stdout.trim()).unwrap_or(Value::Null);
                Ok(subnet.exists() && routes.as_array().is_some_and(|r| r.len() == 1))
            },
        )
        .with_context(|| {
            format!(
                "see {}",
                lab.log_path(&host, "flannel")
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )
        })?;
    }
    bare_vxlan(&lab)?;
    let n2_overlay = overlay_address(&lab, "n2")?;
    let a = pods.add(&lab, 1, "a")?;
    let b = pods.add(&lab, 1, "b")?;
    let c = pods.add(&lab, 2, "c")?;
    eprintln!(
        "[{:.0?}] lab up: pods {a:?} {b:?} on n1, {c:?} on n2",
        started.elapsed()
    );

    let n1 = lab.host("n1")?.netns.clone();
    let n2 = lab.host("n2")?;
    let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT));
    let _servers = [
        bench::rr_serve(&b.0, any, "pod-b")?,
        bench::rr_serve(&c.0, any, "pod-c")?,
        bench::rr_serve(&n2.netns, any, "node-2")?,
    ];
    let paths = [
        Path {
            hops: Hops::Underlay,
            label: "node ↔ node (underlay)",
            client_ns: n1.clone(),
            target: SocketAddr::from((n2.ip, PORT)),
        },
        Path {
            hops: Hops::HandBuiltVxlan,
            label: "node ↔ node, hand-built kernel VXLAN (ceiling)",
            client_ns: n1.clone(),
            target: SocketAddr::from((BARE_ADDRS[1], PORT)),
        },
        Path {
            hops: Hops::Flannel,
            label: "node ↔ node, ekube's flannel.1",
            client_ns: n1,
            target: SocketAddr::from((n2_overlay, PORT)),
        },
        Path {
            hops: Hops::Bridge,
            label: "pod ↔ pod, same node (bridge)",
            client_ns: a.0.clone(),
            target: SocketAddr::from((b.1, PORT)),
        },
        Path {
            hops: Hops::PodToNode,
            label: "pod → node, across nodes (ekube's VXLAN, one pod hop)",
            client_ns: a.0.clone(),
            target: SocketAddr::from((n2_overlay, PORT)),
        },
        Path {
            hops: Hops::PodToPod,
            label: "pod ↔ pod, across nodes (ekube's VXLAN)",
            client_ns: a.0.clone(),
            target: SocketAddr::from((c.1, PORT)),
        },
    ];

    // results[path][mode] = one report per round.
    let mut results: Vec<Vec<Vec<RrReport>>> = vec![vec![Vec::new(); MODES.len()]; paths.len()];
    let duration = args.duration.to_string();
    for round in 0..args.rounds {
        let runs: Vec<(usize, usize)> = (0..paths.len())
            .flat_map(|p| (0..MODES.len()).map(move |m| (p, m)))
            .collect();
        for (p, m) in bench::alternate(&runs, round) {
            let path = &paths[p];
            let argv: Vec<String> = [
                "--target",
                &path.target.to_string(),
                "--mode",
                MODES[m],
                "--concurrency",
                "1",
                "--duration",
                &duration,
                "--warmup",
                "0.3",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let report = bench::rr_client(&path.client_ns, &argv)?;
            ensure!(
                report.requests > 0 || report.gbit_per_s.is_some_and(|g| g > 0.0),
                "{} {}: nothing got through ({} errors)",
                path.label,
                MODES[m],
                report.errors
            );
            results[p][m].push(report);
        }
        eprintln!(
            "[{:.0?}] round {} of {} done",
            started.elapsed(),
            round + 1,
            args.rounds
        );
    }

    let stat = |p: usize, m: usize, f: &dyn Fn(&RrReport) -> f64| {
        median(&results[p][m].iter().map(f).collect::<Vec<_>>())
    };
    let gbit = |p: usize| stat(p, 0, &|r: &RrReport| r.gbit_per_s.unwrap_or(0.0));
    let rr_p50 = |p: usize| {
        stat(p, 1, &|r: &RrReport| {
            r.latency_us.map_or(f64::NAN, |l| l.p50)
        })
    };
    let rr_p99 = |p: usize| {
        stat(p, 1, &|r: &RrReport| {
            r.latency_us.map_or(f64::NAN, |l| l.p99)
        })
    };
    let crr = |p: usize| stat(p, 2, &|r: &RrReport| r.connections_per_s);
    let mut table = Table::new(&[
        "path",
        "TCP stream (Gbit/s)",
        "vs underlay",
        "rr p50 / p99 (µs)",
        "p50 vs underlay",
        "crr (conn/s)",
        "vs underlay",
    ]);
    let mut summary = Vec::new();
    for (p, path) in paths.iter().enumerate() {
        table.row(vec![
            path.label.into(),
            format!("{:.2}", gbit(p)),
            ratio(gbit(p), gbit(0)),
            format!("{:.0} / {:.0}", rr_p50(p), rr_p99(p)),
            ratio(rr_p50(p), rr_p50(0)),
            format!("{:.0}", crr(p)),
            ratio(crr(p), crr(0)),
        ]);
        summary.push(json!({
            "path": path.label,
            "stream_gbit_per_s": gbit(p),
            "rr_p50_us": rr_p50(p),
            "rr_p99_us": rr_p99(p),
            "crr_connections_per_s": crr(p),
            "stream_vs_underlay": gbit(p) / gbit(0),
            "rr_p50_vs_underlay": rr_p50(p) / rr_p50(0),
            "crr_vs_underlay": crr(p) / crr(0),
        }));
    }
    println!(
        "Pod network, {} rounds × {}s per path and mode, one client, medians over rounds (2-node lab, flannel VXLAN):\n",
        args.rounds, args.duration
    );
    print!("{}", table.markdown());
    // The overlay against the kernel's own VXLAN, the part of its cost ekube could remove,
    // split into the device and the pod hops.
    let at = |hops: Hops| {
        paths
            .iter()
            .position(|p| p.hops == hops)
            .expect("every kind of path is measured")
    };
    let (bare, flannel, pod_node, pod_pod) = (
        at(Hops::HandBuiltVxlan),
        at(Hops::Flannel),
        at(Hops::PodToNode),
        at(Hops::PodToPod),
    );
    println!(
        "\nekube's overlay against the hand-built VXLAN: stream {}, rr p50 {}, crr {}.",
        ratio(gbit(pod_pod), gbit(bare)),
        ratio(rr_p50(pod_pod), rr_p50(bare)),
        ratio(crr(pod_pod), crr(bare)),
    );
    let per_connection_us = |p: usize| 1e6 / crr(p);
    println!(
        "crr time per connection (µs): hand-built VXLAN {:.1}, flannel.1 {:.1}, one pod hop {:.1}, \
         pod hops on both sides {:.1}.",
        per_connection_us(bare),
        per_connection_us(flannel),
        per_connection_us(pod_node),
        per_connection_us(pod_pod),
    );
    let raw: Vec<Value> = paths
        .iter()
        .enumerate()
        .flat_map(|(p, path)| {
            let results = &results;
            MODES.iter().enumerate().map(
                move |(m, mode)| json!({"path": path.label, "mode": mode, "rounds": results[p][m]}),
            )
        })
        .collect();
    bench::write_json(
        &args.out_dir,
        "net",
        &json!({"bench": "net", "rounds": args.rounds, "duration_s": args.duration, "summary": summary, "runs": raw}),
    )?;
    bench::hold_for_a_look("BENCH_NET_HOLD_SECS");
    drop(pods);
    lab.down().context("tearing the lab down")?;
    Ok(())
}
