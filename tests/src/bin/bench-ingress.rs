//! `cargo xtask bench ingress`: HTTP through `ekube-ingress`, beside straight to the pod and
//! beside Debian's nginx as an equivalent reverse proxy, in one run.
//!
//! A 2-node lab cluster (`ekbing`) with the ingress add-on. The backend is one `nginx:alpine`
//! pod (Debian's nginx, through the lab's `docker.io` mirror) on node 2, behind Service `echo`
//! and an Ingress for host `bench.example`. The reverse proxy to compare is the same nginx
//! image run as a `hostNetwork` pod on node 1, port 8088, with an upstream keep-alive pool to
//! the backend pod and an access log, as the ingress has. From node 1's network namespace,
//! `wrk --latency` runs for a fixed time with 1 and with 64 keep-alive connections against:
//!
//! - the pod IP directly;
//! - `ekube-ingress` on node 1's port 80;
//! - nginx on node 1's port 8088.
//!
//! It reports requests per second and p50 / p99 latency of each, and the ratios of the ingress
//! to the pod and to nginx.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use ekube_tests::bench::{self, Table, ratio};
use ekube_tests::cluster::{ClusterOptions, LabCluster};
use serde_json::{Value, json};

const LAB: &str = "ekbing";

#[derive(Parser)]
struct Args {
    /// Where the JSON report goes.
    #[arg(default_value = "target/bench")]
    out_dir: PathBuf,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

const BACKEND: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 1
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      nodeSelector: {kubernetes.io/hostname: ekbing-n2}
      containers: [{name: nginx, image: "nginx:alpine"}]
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: echo}
spec:
  rules:
  - host: bench.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: echo, port: {number: 80}}}}
"#;

/// nginx as a reverse proxy to `backend`, configured as the ingress behaves: keep-alive
/// upstream connections, the client's address forwarded, an access log.
fn nginx_proxy(backend: &str) -> String {
    let conf = format!(
        "worker_processes auto;\npid /tmp/nginx.pid;\nevents {{ worker_connections 1024; }}\nhttp {{\n  access_log /dev/stdout;\n  upstream backend {{ server {backend}; keepalive 64; }}\n  server {{\n    listen 8088;\n    location / {{\n      proxy_pass http://backend;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_set_header Host $host;\n      proxy_set_header X-Forwarded-For $remote_addr;\n    }}\n  }}\n}}\n"
    );
    let indented: String = conf.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: nginx-proxy}}
data:
  nginx.conf: |
{indented}---
apiVersion: v1
kind: Pod
metadata: {{name: nginx-proxy}}
spec:
  hostNetwork: true
  nodeName: ekbing-n1
  containers:
  - name: nginx
    image: "nginx:alpine"
    command: ["nginx", "-c", "/conf/nginx.conf", "-g", "daemon off;"]
    volumeMounts: [{{name: conf, mountPath: /conf}}]
  volumes: [{{name: conf, configMap: {{name: nginx-proxy}}}}]
"#
    )
}

/// A duration as wrk prints it (`812.00us`, `1.23ms`, `2.01s`) in milliseconds.
fn wrk_ms(text: &str) -> Option<f64> {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e3)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}

/// Requests per second, p50 and p99 (ms), and errors, from `wrk --latency`'s report.
fn parse_wrk(report: &str) -> Result<Value> {
    let field = |prefix: &str| {
        report
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|rest| rest.trim().to_string())
    };
    let rps: f64 = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no Requests/sec in {report}"))?;
    let p50 = field("50%").and_then(|v| wrk_ms(&v)).context("no p50")?;
    let p99 = field("99%").and_then(|v| wrk_ms(&v)).context("no p99")?;
    let errors = field("Non-2xx or 3xx responses:").unwrap_or_else(|| "0".into());
    let socket = field("Socket errors:").unwrap_or_default();
    Ok(
        json!({"rps": rps, "p50_ms": p50, "p99_ms": p99, "non_2xx": errors, "socket_errors": socket}),
    )
}

fn main() -> Result<()> {
    let args = Args::parse();
    bench::require_root("bench ingress")?;
    let started = Instant::now();
    let cluster = LabCluster::start(
        LAB,
        2,
        ClusterOptions {
            hub_images: true,
            ..Default::default()
        },
    )?;
    cluster.enable_addon("ingress", &[])?;
    cluster.apply(BACKEND)?;
    cluster.kubectl(&["rollout", "status", "deployment/echo", "--timeout=180s"])?;
    let pod = cluster
        .list("pods", &["-l", "app=echo"])?
        .into_iter()
        .next()
        .context("no echo pod")?;
    let pod_ip = pod["status"]["podIP"]
        .as_str()
        .context("the echo pod has no IP")?
        .to_string();
    cluster.apply(&nginx_proxy(&format!("{pod_ip}:80")))?;
    let n1 = cluster.lab.host("n1")?.ip.to_string();
    let probe = |url: &str, host: &str| -> Result<bool> {
        let out = cluster.lab.exec(
            "n1",
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-m",
                "2",
                "-H",
                host,
                url,
            ],
        )?;
        Ok(out.stdout == "200")
    };
    let targets = [
        ("pod IP directly", format!("http://{pod_ip}/"), "Host: echo"),
        (
            "ekube-ingress",
            format!("http://{n1}/"),
            "Host: bench.example",
        ),
        (
            "nginx reverse proxy",
            format!("http://{n1}:8088/"),
            "Host: bench.example",
        ),
    ];
    cluster.wait(Duration::from_secs(120), "every target answering", |_| {
        for (_, url, host) in &targets {
            if !probe(url, host)? {
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    eprintln!("[{:.0?}] cluster, ingress and nginx up", started.elapsed());

    let mut table = Table::new(&[
        "target",
        "connections",
        "requests/s",
        "p50 (ms)",
        "p99 (ms)",
    ]);
    let mut results = Vec::new();
    for connections in [1usize, 64] {
        for (what, url, host) in &targets {
            let threads = connections.min(2).to_string();
            let (c, d) = (connections.to_string(), format!("{}s", args.seconds));
            let out = cluster.lab.exec_timeout(
                "n1",
                &[
                    "wrk",
                    "--latency",
                    "-t",
                    &threads,
                    "-c",
                    &c,
                    "-d",
                    &d,
                    "-H",
                    host,
                    url,
                ],
                Duration::from_secs(args.seconds + 30),
            )?;
            ensure!(out.success(), "wrk against {what}: {}", out.stderr);
            let r = parse_wrk(&out.stdout)?;
            eprintln!(
                "[{:.0?}] {what}, {connections} connections: {r}",
                started.elapsed()
            );
            table.row(vec![
                what.to_string(),
                connections.to_string(),
                format!("{:.0}", r["rps"].as_f64().unwrap_or(0.0)),
                format!("{:.3}", r["p50_ms"].as_f64().unwrap_or(0.0)),
                format!("{:.3}", r["p99_ms"].as_f64().unwrap_or(0.0)),
            ]);
            results.push(json!({"target": what, "connections": connections, "result": r}));
        }
    }
    let rps = |what: &str, connections: usize| {
        results
            .iter()
            .find(|r| r["target"] == what && r["connections"] == connections)
            .and_then(|r| r["result"]["rps"].as_f64())
            .unwrap_or(0.0)
    };
    for connections in [1usize, 64] {
        for (name, other) in [
            (
                "ekube-ingress ÷ pod IP directly (requests/s)",
                "pod IP directly",
            ),
            (
                "ekube-ingress ÷ nginx reverse proxy (requests/s)",
                "nginx reverse proxy",
            ),
        ] {
            table.row(vec![
                name.into(),
                connections.to_string(),
                ratio(rps("ekube-ingress", connections), rps(other, connections)),
                String::new(),
                String::new(),
            ]);
        }
    }
    print!("{}", table.markdown());
    bench::write_json(
        &args.out_dir,
        "ingress",
        &json!({"bench": "ingress", "seconds": args.seconds, "results": results}),
    )?;
    drop(cluster);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_reports_parse() {
        let report = "Running 10s test @ http://x/\n  1 threads and 1 connections\n  Latency Distribution\n     50%  812.00us\n     75%    1.01ms\n     90%    1.50ms\n     99%    2.01s\n  1000 requests in 10.00s, 1.00MB read\nRequests/sec:    100.00\nTransfer/sec:    102.40KB\n";
        let r = parse_wrk(report).unwrap();
        assert_eq!(r["rps"], 100.0);
        assert!((r["p50_ms"].as_f64().unwrap() - 0.812).abs() < 1e-9);
        assert!((r["p99_ms"].as_f64().unwrap() - 2010.0).abs() < 1e-6);
        assert_eq!(r["non_2xx"], "0");
        assert!(parse_wrk("nothing").is_err());
    }
}
