//! Shared pieces of the `bench-*` binaries (`cargo xtask bench`): the report `ekube-rr` prints
//! and the benches read, percentiles, process RSS, running code and processes inside a network
//! namespace, alternating run orders, and the markdown table + JSON file every bench ends with.
//!
//! Benches measure and never assert on speed; a bench fails only when what it measures did
//! not happen at all (a pod never ran, a server never answered).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::sibling_bin;

/// What `ekube-rr client` prints (one JSON object on stdout).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RrReport {
    /// `crr`, `rr` or `stream`.
    pub mode: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// The server address, or the addresses (comma-separated) connections picked from.
    pub target: String,
    pub concurrency: usize,
    /// Measured seconds (after the warm-up).
    pub duration_s: f64,
    /// Completed requests (crr: connections; stream: 0).
    pub requests: u64,
    /// Failed connects, sends, reads and timeouts.
    pub errors: u64,
    /// Connections opened and closed per second (crr; rr and stream open one per client).
    pub connections_per_s: f64,
    /// Requests answered per second.
    pub requests_per_s: f64,
    /// Request latency: crr from `connect()` to the server's close, rr one round trip.
    pub latency_us: Option<Latency>,
    /// Bulk TCP throughput received by the clients (stream).
    pub gbit_per_s: Option<f64>,
    /// Replies per server name (load balancing made visible).
    pub names: BTreeMap<String, u64>,
    /// Request latency per server name: where a Service balances over backends on different
    /// paths (a local pod, one behind the overlay), each path's own figures.
    #[serde(default)]
    pub latency_by_name_us: BTreeMap<String, Latency>,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    /// Percentiles of `samples` (nanoseconds; sorted here); `None` when there are none.
    pub fn of_nanos(samples: &mut [u64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let us = |ns: u64| ns as f64 / 1000.0;
        let sum: u128 = samples.iter().map(|&s| s as u128).sum();
        Some(Self {
            p50: us(percentile(samples, 0.50)),
            p90: us(percentile(samples, 0.90)),
            p99: us(percentile(samples, 0.99)),
            max: us(samples[samples.len() - 1]),
            mean: sum as f64 / samples.len() as f64 / 1000.0,
        })
    }
}

/// The `p` quantile (0..=1) of sorted, non-empty `sorted` (nearest rank).
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The proxy's `--bpf-lb-map-max` for `services` Services of two endpoints each (their
/// frontend, a NodePort's, and two backends), with room for the bench's own: the default
/// until that is too small, then the next power of two.
pub fn lb_map_max_for(services: usize) -> u32 {
    let needed = (2 * services + 4096).next_power_of_two();
    u32::try_from(needed)
        .unwrap_or(u32::MAX)
        .max(ekube_proxy::datapath::DEFAULT_LB_MAP_MAX)
}

/// The two never-reached endpoints of filler service `i` of a scale bench: distinct per
/// service, from 10.128.0.0/12 (room for 500,000 services), outside the pod and service
/// ranges.
pub fn filler_endpoints(i: usize) -> [std::net::Ipv4Addr; 2] {
    const BASE: u32 = u32::from_be_bytes([10, 128, 0, 0]);
    let at = |k: usize| {
        std::net::Ipv4Addr::from(BASE + 1 + u32::try_from(k).expect("fewer filler services"))
    };
    [at(2 * i), at(2 * i + 1)]
}

/// A debugging aid of the lab benches: when the environment variable `var` holds a number of
/// seconds, waits that long (saying so) so the lab can be looked at before it goes.
pub fn hold_for_a_look(var: &str) {
    if let Some(secs) = std::env::var(var).ok().and_then(|s| s.parse().ok()) {
        eprintln!("holding the lab for {secs}s ({var}) before tearing it down");
        std::thread::sleep(Duration::from_secs(secs));
    }
}

/// The median of the finite `values`: the middle one, or the mean of the two middle ones when
/// there is an even number (0 when there are none).
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if !n.is_multiple_of(2) => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Milliseconds as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Resident set size of process `pid` in KiB (0 when it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// `items` in round `round`'s order: forwards in even rounds, backwards in odd ones, so no
/// variant always runs first (or right after the same neighbour).
pub fn alternate<T: Clone>(items: &[T], round: usize) -> Vec<T> {
    let mut v = items.to_vec();
    if round % 2 == 1 {
        v.reverse();
    }
    v
}

pub use crate::netns::path as netns_path;

/// Runs `f` on a new thread inside network namespace `ns` and returns its result. Sockets the
/// thread opens belong to that namespace (so a tokio runtime built inside `f` talks from there).
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let path = netns_path(ns);
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let ns = ns.to_owned();
    std::thread::spawn(move || -> Result<T> {
        crate::netns::setns(&file).with_context(|| format!("setns into {ns}"))?;
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("thread in a network namespace panicked"))?
}

/// A command that starts `program` inside network namespace `ns` (by setns between fork and
/// exec, so `/sys`, cgroups and bpffs stay the real ones).
pub fn netns_command(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Result<Command> {
    let path = netns_path(ns);
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut cmd = Command::new(program);
    // SAFETY: only setns(2) between fork and exec; `file` moves into the closure and lives as
    // long as the command.
    unsafe {
        cmd.pre_exec(move || crate::netns::setns(&file));
    }
    Ok(cmd)
}

/// A process this bench started; killed (SIGKILL) and reaped on drop.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `ekube-rr` load tool built next to this bench.
pub fn rr_bin() -> PathBuf {
    sibling_bin("ekube-rr")
}

/// Starts `ekube-rr serve` in `ns` on `listen` answering `name`, and waits (from inside `ns`)
/// until it accepts connections.
pub fn rr_serve(ns: &str, listen: std::net::SocketAddr, name: &str) -> Result<ChildGuard> {
    let child = netns_command(ns, rr_bin())?
        .args([
            "serve",
            "--listen",
            &listen.to_string(),
            "--name",
            name,
            "--udp",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting ekube-rr serve")?;
    let mut guard = ChildGuard(child);
    let probe = std::net::SocketAddr::from((
        match listen.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST,
            std::net::IpAddr::V4(ip) => ip,
            std::net::IpAddr::V6(_) => bail!("ekube-rr serve: IPv4 only here"),
        },
        listen.port(),
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = guard.0.try_wait()? {
            bail!("ekube-rr serve in {ns} exited: {status}");
        }
        let up = in_netns(ns, move || {
            std::net::TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok()
        })?;
        if up {
            return Ok(guard);
        }
        ensure!(
            Instant::now() < deadline,
            "ekube-rr serve in {ns} not listening on {listen} after 10s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `ekube-rr client` in `ns` with `args` and parses its report.
pub fn rr_client(ns: &str, args: &[String]) -> Result<RrReport> {
    json_output(
        netns_command(ns, rr_bin())?.arg("client").args(args),
        &format!("ekube-rr client {} in {ns}", args.join(" ")),
    )
}

/// Runs `cmd` (stdin closed) and parses the JSON it prints; `what` names it in errors, which
/// carry its stderr when it fails and its output when that is not the JSON expected.
pub fn json_output<T: serde::de::DeserializeOwned>(cmd: &mut Command, what: &str) -> Result<T> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    ensure!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "parsing the output of {what}: {:?}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `addr` as the kernel's `sockaddr_in`, for socket calls made by hand.
pub fn sockaddr_in(addr: std::net::SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// A markdown table: a title row of column names and rows of cells.
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as GitHub markdown.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "| {} |\n|{}\n",
            self.header.join(" | "),
            "---|".repeat(self.header.len())
        );
        for row in &self.rows {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        out
    }
}

/// Writes `value` to `<out_dir>/<name>.json` and says where on stderr.
pub fn write_json(out_dir: &Path, name: &str, value: &serde_json::Value) -> Result<PathBuf> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let path = out_dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(value)?)
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(path)
}

/// A ratio `a / b` printed with two decimals, or `–` when `b` is zero.
pub fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

/// Removes network namespaces whose name starts with `prefix` (leftovers of a crashed run).
pub fn clear_netns(prefix: &str) {
    for entry in std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

/// Fails unless running as root (benches that need namespaces, cgroups or bpf).
pub fn require_root(what: &str) -> Result<()> {
    // /proc/self is owned by the effective uid.
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    ensure!(
        uid == 0,
        "{what} needs root (network namespaces, cgroups, bpf)"
    );
    Ok(())
}

/// Pod network namespaces wired into lab nodes by running `ekube-cni` ADD as a kubelet would;
/// removed on drop (the lab removes the rest).
pub struct PodNamespaces {
    prefix: &'static str,
    names: Vec<String>,
}

impl PodNamespaces {
    /// Pods named `<prefix><node><tag>`; `prefix` is also what `clear_netns` sweeps.
    pub fn new(prefix: &'static str) -> Self {
        Self {
            prefix,
            names: Vec::new(),
        }
    }

    /// Creates pod namespace `<prefix><node><tag>` and runs `ekube-cni` ADD for it with node
    /// `n<node>`'s network configuration; returns the namespace and the pod's address.
    pub fn add(
        &mut self,
        lab: &ekube_lab::Lab,
        node: usize,
        tag: &str,
    ) -> Result<(String, std::net::Ipv4Addr)> {
        use std::io::Write;
        let host = lab.host(&format!("n{node}"))?;
        let netns = format!("{}{node}{tag}", self.prefix);
        let st = Command::new("ip").args(["netns", "add", &netns]).status()?;
        ensure!(st.success(), "ip netns add {netns}");
        self.names.push(netns.clone());
        let conflist = ekube_cni::write_conflist(
            &host.cni_conf_dir(),
            &ekube_cni::NodeConflist {
                subnet_file: host.run_dir().join("subnet.env"),
                data_dir: host.dir.join("data/cni"),
                ..Default::default()
            },
        )?;
        // A runtime hands the plugin one entry of the list, with the list's version and name.
        let list: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&conflist)?)?;
        let mut conf = list["plugins"][0].clone();
        conf["cniVersion"] = list["cniVersion"].clone();
        conf["name"] = list["name"].clone();

        let plugin = crate::ekube_bin().with_file_name("ekube-cni");
        let mut child = netns_command(&host.netns, &plugin)?
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", format!("{netns}-sandbox"))
            .env("CNI_NETNS", netns_path(&netns))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", plugin.parent().context("plugin directory")?)
            .env(
                "CNI_ARGS",
                format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={netns}"),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting ekube-cni")?;
        child
            .stdin
            .take()
            .context("plugin stdin")?
            .write_all(conf.to_string().as_bytes())?;
        let out = child.wait_with_output()?;
        ensure!(
            out.status.success(),
            "CNI ADD for {netns} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let result: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let addr = result["ips"][0]["address"]
            .as_str()
            .context("no ips[0].address in the CNI result")?;
        let ip = addr.split('/').next().unwrap_or_default().parse()?;
        // Loopback up, as a runtime does (servers' readiness checks connect to 127.0.0.1).
        let st = Command::new("ip")
            .args(["-n", &netns, "link", "set", "lo", "up"])
            .status()?;
        ensure!(st.success(), "bringing lo up in {netns}");
        Ok((netns, ip))
    }
}

impl Drop for PodNamespaces {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_middle_of_the_finite_values() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[f64::NAN, 5.0, 1.0]), 3.0);
        assert_eq!(median(&[f64::NAN]), 0.0);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn latency_percentiles() {
        let mut samples: Vec<u64> = (1..=100).rev().map(|i| i * 1000).collect();
        let l = Latency::of_nanos(&mut samples).unwrap();
        assert_eq!((l.p50, l.p90, l.p99, l.max), (51.0, 90.0, 99.0, 100.0));
        assert!((l.mean - 50.5).abs() < 1e-9);
        assert!(Latency::of_nanos(&mut []).is_none());
    }

    #[test]
    fn alternate_reverses_odd_rounds() {
        assert_eq!(alternate(&[1, 2, 3], 0), vec![1, 2, 3]);
        assert_eq!(alternate(&[1, 2, 3], 1), vec![3, 2, 1]);
    }

    #[test]
    fn table_markdown() {
        let mut t = Table::new(&["a", "b"]);
        t.row(vec!["1".into(), "2".into()]);
        assert_eq!(t.markdown(), "| a | b |\n|---|---|\n| 1 | 2 |\n");
        assert_eq!(ratio(1.0, 0.0), "–");
        assert_eq!(ratio(1.0, 2.0), "0.50×");
    }
}
