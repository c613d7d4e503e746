//! `cargo xtask bench dns`: the cluster DNS add-on's throughput and latency, beside the
//! upstream server it forwards to, in one run.
//!
//! A 2-node lab cluster (`ekbdns`: `ekube init`, whose addons phase installs `coredns`
//! running `ekube dns`). From node 2's network namespace and cgroup (where the eBPF load
//! balancing of the DNS Service's address applies, as for its pods), this binary, re-run as
//! `bench-dns client`, sends A queries over UDP for a fixed time with 1 and with 16
//! concurrent clients, each waiting for its answer before the next query:
//!
//! - a cluster name (`kubernetes.default.svc.cluster.local`) to the cluster DNS address;
//! - a name outside the cluster (`www.outside.lab`) to the cluster DNS address, answered from
//!   its cache after the first query;
//! - the same outside name straight to the lab's upstream (dnsmasq in the external namespace).
//!
//! It reports queries per second and p50 / p99 latency of each, and the ratios of the cached
//! outside name to the upstream's.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::{Parser, Subcommand};
use ekube_tests::bench::{self, Table, percentile, ratio};
use ekube_tests::cluster::{ClusterOptions, LabCluster};
use serde_json::{Value, json};

const LAB: &str = "ekbdns";
const CLUSTER_DNS: &str = "10.96.0.10:53";
const CLUSTER_NAME: &str = "kubernetes.default.svc.cluster.local";

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    client: Option<Client>,
    /// Where the JSON report goes.
    #[arg(default_value = "target/bench")]
    out_dir: PathBuf,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

#[derive(Subcommand)]
enum Client {
    /// Queries `server` for `name` from `clients` threads for `seconds`; prints JSON.
    Client {
        server: SocketAddr,
        name: String,
        clients: usize,
        seconds: u64,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(Client::Client {
        server,
        name,
        clients,
        seconds,
    }) = args.client
    {
        let report = load(server, &name, clients, Duration::from_secs(seconds))?;
        println!("{report}");
        return Ok(());
    }
    bench::require_root("bench dns")?;
    let started = Instant::now();
    let cluster = LabCluster::start(LAB, 2, ClusterOptions::default())?;
    cluster.wait(Duration::from_secs(180), "coredns ready", |c| {
        let d: Value = serde_json::from_str(&c.kubectl(&[
            "get",
            "deployment",
            "coredns",
            "-n",
            "kube-system",
            "-o",
            "json",
        ])?)?;
        Ok(d["status"]["readyReplicas"].as_i64() == Some(2))
    })?;
    eprintln!("[{:.0?}] cluster and coredns up", started.elapsed());
    let outside = format!("www.{}", ekube_lab::OUTSIDE_ZONE);
    let upstream = format!("{}:53", ekube_lab::EXT_IP);
    let cases = [
        ("cluster name, cluster DNS", CLUSTER_DNS, CLUSTER_NAME),
        (
            "outside name (cached), cluster DNS",
            CLUSTER_DNS,
            outside.as_str(),
        ),
        (
            "outside name, upstream directly",
            upstream.as_str(),
            outside.as_str(),
        ),
    ];
    let me = std::env::current_exe()?.display().to_string();
    let mut table = Table::new(&[
        "query",
        "clients",
        "queries/s",
        "p50 (ms)",
        "p99 (ms)",
        "lost / errors",
    ]);
    let mut results = Vec::new();
    for clients in [1usize, 16] {
        for (what, server, name) in cases {
            let argv = [
                me.clone(),
                "client".into(),
                server.to_owned(),
                name.to_owned(),
                clients.to_string(),
                args.seconds.to_string(),
            ];
            let out =
                cluster
                    .lab
                    .exec_in_cgroup("n2", &argv, Duration::from_secs(args.seconds + 30))?;
            ensure!(out.success(), "client for {what}: {}", out.stderr.trim());
            let r: Value = serde_json::from_str(out.stdout.trim())
                .with_context(|| format!("client output {:?}", out.stdout))?;
            eprintln!("[{:.0?}] {what}, {clients} clients: {r}", started.elapsed());
            table.row(vec![
                what.to_owned(),
                clients.to_string(),
                format!("{:.0}", r["qps"].as_f64().unwrap_or(0.0)),
                format!("{:.3}", r["p50_ms"].as_f64().unwrap_or(0.0)),
                format!("{:.3}", r["p99_ms"].as_f64().unwrap_or(0.0)),
                format!("{} / {}", r["lost"], r["error_answers"]),
            ]);
            results.push(json!({"query": what, "clients": clients, "result": r}));
        }
    }
    let qps = |what: &str, clients: usize| {
        results
            .iter()
            .find(|r| r["query"] == what && r["clients"] == clients)
            .and_then(|r| r["result"]["qps"].as_f64())
            .unwrap_or(0.0)
    };
    for clients in [1usize, 16] {
        table.row(vec![
            "cached outside name ÷ upstream directly (queries/s)".into(),
            clients.to_string(),
            ratio(qps(cases[1].0, clients), qps(cases[2].0, clients)),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    print!("{}", table.markdown());
    bench::write_json(
        &args.out_dir,
        "dns",
        &json!({"bench": "dns", "seconds": args.seconds, "results": results}),
    )?;
    drop(cluster);
    Ok(())
}

/// An A query for `name` with ID `id`.
fn query(name: &str, id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]);
    q
}

/// `clients` threads querying `server` one query at a time for `duration`: answers per
/// second and latency percentiles of the good ones, as JSON. A query unanswered within 2 s
/// counts as lost, an answer with an error code as an error answer.
fn load(server: SocketAddr, name: &str, clients: usize, duration: Duration) -> Result<Value> {
    let until = Instant::now() + duration;
    let threads: Vec<_> = (0..clients)
        .map(|t| {
            let name = name.to_owned();
            std::thread::spawn(move || -> Result<(Vec<u64>, usize, usize)> {
                let socket = UdpSocket::bind("0.0.0.0:0")?;
                socket.connect(server)?;
                socket.set_read_timeout(Some(Duration::from_secs(2)))?;
                let (mut latencies, mut lost, mut failed) = (Vec::new(), 0, 0);
                let mut buf = [0u8; 1500];
                let mut id = (t as u16).wrapping_mul(4099);
                while Instant::now() < until {
                    id = id.wrapping_add(1);
                    let q = query(&name, id);
                    let sent = Instant::now();
                    socket.send(&q)?;
                    loop {
                        match socket.recv(&mut buf) {
                            Ok(n) if n >= 4 && buf[..2] == id.to_be_bytes() => {
                                // An error answer (SERVFAIL…) is counted, not timed.
                                if buf[3] & 0x0f == 0 {
                                    latencies.push(sent.elapsed().as_nanos() as u64);
                                } else {
                                    failed += 1;
                                }
                                break;
                            }
                            // A late answer to an earlier query.
                            Ok(_) => continue,
                            Err(_) => {
                                lost += 1;
                                break;
                            }
                        }
                    }
                }
                Ok((latencies, lost, failed))
            })
        })
        .collect();
    let (mut all, mut lost, mut failed) = (Vec::new(), 0, 0);
    for t in threads {
        let (l, n, f) = t.join().expect("client thread")?;
        all.extend(l);
        lost += n;
        failed += f;
    }
    all.sort_unstable();
    ensure!(!all.is_empty(), "no query to {server} was answered");
    let ms = |ns: u64| ns as f64 / 1e6;
    Ok(json!({
        "queries": all.len(),
        "lost": lost,
        "error_answers": failed,
        "qps": all.len() as f64 / duration.as_secs_f64(),
        "p50_ms": ms(percentile(&all, 0.5)),
        "p99_ms": ms(percentile(&all, 0.99)),
    }))
}
