//! `cargo xtask bench proxy-sync`: the time from an API change to the eBPF datapath, measured
//! (issue #3).
//!
//! Starts `ekube server` on loopback and the real `ekube proxy` attached to a private cgroup v2
//! directory `ekube-ekbps-<pid>` (pins under `/sys/fs/bpf/ekube/<same name>/`; no process runs
//! in that cgroup, so no traffic is balanced — only the maps matter here). With 1, 100, 10,000
//! and 100,000 existing services (each with two endpoints; the proxy's `--bpf-lb-map-max` sized
//! for the largest), it times two kinds of change, in
//! alternating order: a new Service + EndpointSlice created, until its frontend with both
//! backends is in the pinned maps; and one endpoint of an existing service replaced, until the
//! pinned maps show the new backend and not the old one. The pinned maps are polled with
//! [`lookup_service`]: point lookups of the one frontend, whose cost does not grow with the
//! number of services (the longest one is reported as the resolution). Also reports the proxy's
//! RSS at each size.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use ekube_proxy::datapath::{BpfMaps, DatapathConfig, dump_store, lookup_service, remove_pins};
use ekube_proxy::{BackendAddr, Frontend, Protocol, ServiceEntry};
use ekube_tests::bench::{self, Table, percentile};
use ekube_tests::datapath::{BPFFS, CGROUP_ROOT, clear_leftovers};
use ekube_tests::{ServerProcess, ekube_bin, free_port, wait_for};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const PREFIX: &str = "ekube-ekbps-";
const TARGET_PORT: u16 = 8080;
/// A NodePort address of the "node" (TEST-NET-1, held by no interface).
const NODE_IP: &str = "192.0.2.10";
/// How long one change may take to reach the maps before the bench gives up.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the proxy may take to program a whole size step.
const GROW_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Parser)]
struct Args {
    /// Where the JSON report goes.
    #[arg(default_value = "target/bench")]
    out_dir: PathBuf,
    /// Numbers of existing services to measure at (ascending).
    #[arg(long, value_delimiter = ',', default_value = "1,100,10000,100000")]
    scales: Vec<usize>,
    /// Changes of each kind timed at each size.
    #[arg(long, default_value_t = 10)]
    samples: usize,
}

/// The proxy, its cgroup and pins; dropping it ends the proxy and removes both.
struct Proxy {
    dp: DatapathConfig,
    child: Option<Child>,
    log: PathBuf,
}

impl Proxy {
    fn start(server: &ServerProcess, lb_map_max: u32) -> Result<Self> {
        clear_leftovers(PREFIX);
        let name = format!("{PREFIX}{}", std::process::id());
        let cgroup = Path::new(CGROUP_ROOT).join(&name);
        fs::create_dir(&cgroup).with_context(|| format!("creating {}", cgroup.display()))?;
        let mut proxy = Self {
            dp: DatapathConfig {
                cgroup,
                bpffs: PathBuf::from(BPFFS),
                ..DatapathConfig::new(name)
            },
            child: None,
            log: server.dir.join("proxy.log"),
        };
        let healthz = free_port();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&proxy.log)?;
        let child = Command::new(ekube_bin())
            .arg("proxy")
            .arg("--kubeconfig")
            .arg(server.kubeconfig())
            .args(["--hostname-override", &proxy.dp.node_name])
            .arg("--cgroup-path")
            .arg(&proxy.dp.cgroup)
            .args(["--node-ip", NODE_IP])
            .args([
                "--metrics-bind-address",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .args(["--healthz-bind-address", &format!("127.0.0.1:{healthz}")])
            .args(["--bpf-lb-map-max", &lb_map_max.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting ekube proxy")?;
        proxy.child = Some(child);
        let up = wait_for(
            Duration::from_secs(30),
            "ekube proxy to report healthy",
            || {
                if let Some(status) = proxy
                    .child
                    .as_mut()
                    .map(Child::try_wait)
                    .transpose()?
                    .flatten()
                {
                    bail!("ekube proxy exited: {status}");
                }
                Ok(healthz_ok(healthz))
            },
        );
        if let Err(e) = up {
            bail!("{e:#}\nproxy log:\n{}", proxy.log_tail());
        }
        Ok(proxy)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Err(e) = remove_pins(&self.dp) {
            eprintln!("cleanup: {e}");
        }
        if let Err(e) = fs::remove_dir(&self.dp.cgroup) {
            eprintln!("cleanup: removing {}: {e}", self.dp.cgroup.display());
        }
    }
}

/// `GET /healthz` on loopback answers 200.
fn healthz_ok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut response = String::new();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_ok()
        && s.read_to_string(&mut response).is_ok()
        && response.split_whitespace().nth(1) == Some("200")
}

fn service(name: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": TARGET_PORT}]},
    }))
    .expect("valid service")
}

fn endpoints(ips: &[Ipv4Addr]) -> Value {
    ips.iter()
        .map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}}))
        .collect()
}

fn slice(service: &str, ips: &[Ipv4Addr]) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("{service}-1"),
            "labels": {"kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "ekube-bench"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "protocol": "TCP", "port": TARGET_PORT}],
        "endpoints": endpoints(ips),
    }))
    .expect("valid endpointslice")
}

/// A distinct address for change number `k` (10.245.0.0/16).
fn probe_ip(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 245, (k / 250) as u8, (k % 250 + 1) as u8)
}

fn backend(ip: Ipv4Addr) -> BackendAddr {
    BackendAddr {
        ip,
        port: TARGET_PORT,
    }
}

/// Creates a Service and its EndpointSlice; returns its ClusterIP frontend.
async fn create_pair(
    services: &Api<Service>,
    slices: &Api<EndpointSlice>,
    name: &str,
    ips: &[Ipv4Addr],
) -> Result<Frontend> {
    let svc = services
        .create(&PostParams::default(), &service(name))
        .await
        .with_context(|| format!("creating service {name}"))?;
    slices
        .create(&PostParams::default(), &slice(name, ips))
        .await
        .with_context(|| format!("creating endpointslice {name}-1"))?;
    let ip: Ipv4Addr = svc
        .spec
        .and_then(|s| s.cluster_ip)
        .context("no clusterIP allocated")?
        .parse()?;
    Ok(Frontend::cluster_ip(ip, 80, Protocol::Tcp))
}

/// Polls the pinned maps until every service up to `want` is there (a full walk: only for
/// growing between sizes, never timed).
fn wait_all(maps: &BpfMaps, want: usize) -> Result<()> {
    let deadline = Instant::now() + GROW_TIMEOUT;
    loop {
        let state = dump_store(maps).context("reading the pinned maps")?;
        if state.services.len() >= want {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{want} services not in the pinned maps after {GROW_TIMEOUT:?} (have {})",
            state.services.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls `frontend` in the pinned maps (point lookups, independent of how many services exist)
/// until `check` holds; returns when the first lookup that saw it ended, and the longest
/// lookup.
fn wait_service(
    maps: &BpfMaps,
    frontend: &Frontend,
    what: &str,
    check: impl Fn(&ServiceEntry) -> bool,
) -> Result<(Instant, Duration)> {
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    let mut lookup = Duration::ZERO;
    loop {
        let t = Instant::now();
        let entry = lookup_service(maps, frontend).context("reading the pinned maps")?;
        let seen = Instant::now();
        lookup = lookup.max(seen - t);
        if entry.as_ref().is_some_and(&check) {
            return Ok((seen, lookup));
        }
        ensure!(
            seen < deadline,
            "{what}: not in the pinned maps after {CHANGE_TIMEOUT:?}"
        );
        // Leave the CPUs to the proxy and apiserver between lookups.
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Results at one size.
#[derive(Default)]
struct Scale {
    services: usize,
    create: Vec<Duration>,
    change: Vec<Duration>,
    /// Longest point lookup while polling: the resolution of the timings.
    lookup: Duration,
    rss_mib: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    bench::require_root("bench proxy-sync")?;
    ensure!(
        args.scales.windows(2).all(|w| w[0] <= w[1]),
        "--scales must be ascending"
    );
    let started = Instant::now();
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    let largest = args.scales.iter().copied().max().unwrap_or(0);
    let proxy = Proxy::start(&server, bench::lb_map_max_for(largest))?;
    let result = run(&args, &client, &proxy, started).await;
    if result.is_err() {
        eprintln!("proxy log (last lines):\n{}", proxy.log_tail());
    }
    let scales = result?;

    let mut table = Table::new(&[
        "existing services",
        "create Service+slice → maps p50 / p99 (ms)",
        "endpoint change → maps p50 / p99 (ms)",
        "map lookup (resolution, µs)",
        "proxy RSS (MiB)",
    ]);
    let p = |v: &[Duration], q: f64| bench::ms(percentile(v, q));
    for s in &scales {
        table.row(vec![
            format!("{}", s.services),
            format!("{:.1} / {:.1}", p(&s.create, 0.5), p(&s.create, 0.99)),
            format!("{:.1} / {:.1}", p(&s.change, 0.5), p(&s.change, 0.99)),
            format!("{:.0}", s.lookup.as_secs_f64() * 1e6),
            s.rss_mib.to_string(),
        ]);
    }
    println!(
        "ekube proxy: API change → pinned eBPF maps, {} changes of each kind per size:\n",
        args.samples
    );
    print!("{}", table.markdown());
    let ms_list = |v: &[Duration]| v.iter().map(|d| bench::ms(*d)).collect::<Vec<_>>();
    let json_scales: Vec<Value> = scales
        .iter()
        .map(|s| {
            json!({
                "services": s.services,
                "create_ms": ms_list(&s.create),
                "change_ms": ms_list(&s.change),
                "create_p50_ms": p(&s.create, 0.5),
                "create_p99_ms": p(&s.create, 0.99),
                "change_p50_ms": p(&s.change, 0.5),
                "change_p99_ms": p(&s.change, 0.99),
                "map_lookup_us": s.lookup.as_secs_f64() * 1e6,
                "proxy_rss_mib": s.rss_mib,
            })
        })
        .collect();
    bench::write_json(
        &args.out_dir,
        "proxy-sync",
        &json!({"bench": "proxy-sync", "samples": args.samples, "scales": json_scales}),
    )?;
    drop(proxy);
    Ok(())
}

async fn run(
    args: &Args,
    client: &kube::Client,
    proxy: &Proxy,
    started: Instant,
) -> Result<Vec<Scale>> {
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let maps = BpfMaps::open_pinned(&proxy.dp).context("opening the pinned maps")?;
    // The service whose endpoint the "change" samples replace.
    let target_name = "probe-target";
    let mut target_ips = [probe_ip(0), probe_ip(1)];
    let target = create_pair(&services, &slices, target_name, &target_ips).await?;
    let mut existing = 1;
    let mut probes = 0;
    let mut changes = 2;
    let mut out = Vec::new();
    for &scale in &args.scales {
        // Grow to `scale` services (the probes of earlier sizes count too).
        if scale > existing {
            let from = existing;
            futures::stream::iter(from..scale)
                .map(|i| {
                    let (services, slices) = (services.clone(), slices.clone());
                    async move {
                        create_pair(
                            &services,
                            &slices,
                            &format!("bulk-{i}"),
                            &bench::filler_endpoints(i),
                        )
                        .await
                    }
                })
                .buffer_unordered(32)
                .try_collect::<Vec<_>>()
                .await?;
            existing = scale;
        }
        wait_all(&maps, existing).inspect_err(|_| eprintln!("{}", proxy.log_tail()))?;
        eprintln!(
            "[{:.0?}] {existing} services in the maps",
            started.elapsed()
        );

        let mut result = Scale {
            services: existing,
            ..Default::default()
        };
        for round in 0..args.samples {
            for kind in bench::alternate(&["create", "change"], round) {
                if kind == "create" {
                    let name = format!("probe-{probes}");
                    let ips = [probe_ip(1000 + 2 * probes), probe_ip(1001 + 2 * probes)];
                    probes += 1;
                    let t0 = Instant::now();
                    let frontend = create_pair(&services, &slices, &name, &ips).await?;
                    let want: Vec<BackendAddr> = {
                        let mut v: Vec<BackendAddr> = ips.iter().map(|ip| backend(*ip)).collect();
                        v.sort();
                        v
                    };
                    let (seen, lookup) =
                        wait_service(&maps, &frontend, &format!("service {name}"), |e| {
                            let mut b = e.backends.clone();
                            b.sort();
                            b == want
                        })?;
                    result.create.push(seen - t0);
                    result.lookup = result.lookup.max(lookup);
                } else {
                    let (old, new) = (target_ips[1], probe_ip(changes));
                    changes += 1;
                    target_ips[1] = new;
                    let patch = json!({"endpoints": endpoints(&target_ips)});
                    let t0 = Instant::now();
                    slices
                        .patch(
                            &format!("{target_name}-1"),
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await
                        .context("patching the endpointslice")?;
                    let (seen, lookup) =
                        wait_service(&maps, &target, &format!("endpoint {old} → {new}"), |e| {
                            e.backends.contains(&backend(new))
                                && !e.backends.contains(&backend(old))
                        })?;
                    result.change.push(seen - t0);
                    result.lookup = result.lookup.max(lookup);
                }
            }
        }
        existing += args.samples;
        result.create.sort();
        result.change.sort();
        result.rss_mib = bench::rss_kib(proxy.pid()) / 1024;
        eprintln!(
            "[{:.0?}] {}: create p50 {:.1} ms, change p50 {:.1} ms",
            started.elapsed(),
            result.services,
            bench::ms(percentile(&result.create, 0.5)),
            bench::ms(percentile(&result.change, 0.5))
        );
        out.push(result);
    }
    Ok(out)
}
