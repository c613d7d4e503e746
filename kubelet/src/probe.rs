//! Container probes and lifecycle hooks.
//!
//! One prober task per running container runs its startup, liveness and readiness probes on
//! their own schedules (`initialDelaySeconds` from the container's start, `periodSeconds`,
//! `timeoutSeconds`, `successThreshold`, `failureThreshold`) and publishes the outcome in a
//! [`Verdict`] the pod worker reads: whether the container has started, whether it is ready,
//! and whether it must be killed. The startup probe gates the other two. Handlers (exec
//! through the runtime's ExecSync; httpGet (HTTP or HTTPS, the certificate not verified, as
//! the upstream kubelet), tcpSocket and gRPC (`grpc.health.v1`) from the node into the pod's
//! network, which is routable from the node) are shared with the postStart/preStop hooks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ExecAction, GRPCAction, HTTPGetAction, LifecycleHandler, Pod, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::Ctx;
use crate::cri;

/// What the probes of one container concluded so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// The container this verdict is about.
    pub container_id: String,
    /// The startup probe succeeded (or there is none).
    pub started: bool,
    /// The readiness probe passes (or there is none and the container has started).
    pub ready: bool,
    /// Set once liveness or startup failed `failureThreshold` times: (probe kind, message).
    pub kill: Option<(&'static str, String)>,
}

/// Verdicts by container name, shared between prober tasks and the pod worker.
pub type Verdicts = Arc<Mutex<HashMap<String, Verdict>>>;

/// The three probe kinds, in the words events use.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// One probe's schedule and counters.
struct Schedule {
    kind: Kind,
    probe: Probe,
    next: Instant,
    successes: i32,
    failures: i32,
}

impl Schedule {
    fn new(kind: Kind, probe: Probe, started: Instant) -> Self {
        let delay = probe.initial_delay_seconds.unwrap_or(0).max(0) as u64;
        Self {
            kind,
            probe,
            next: started + Duration::from_secs(delay),
            successes: 0,
            failures: 0,
        }
    }

    fn period(&self) -> Duration {
        Duration::from_secs(self.probe.period_seconds.unwrap_or(10).max(1) as u64)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.probe.timeout_seconds.unwrap_or(1).max(1) as u64)
    }

    /// Records one result; returns whether the threshold for the new state was reached.
    fn record(&mut self, ok: bool) -> bool {
        if ok {
            self.failures = 0;
            self.successes += 1;
            self.successes >= self.probe.success_threshold.unwrap_or(1).max(1)
        } else {
            self.successes = 0;
            self.failures += 1;
            self.failures >= self.probe.failure_threshold.unwrap_or(3).max(1)
        }
    }
}

/// Where a container's handlers run: its runtime ID and its pod's IP.
#[derive(Debug, Clone)]
pub struct Target {
    pub container_id: String,
    pub pod_ip: String,
}

/// Starts the prober of a running container; it ends when aborted or once the container
/// must be killed. The initial verdict is stored before this returns.
pub fn spawn(
    ctx: Arc<Ctx>,
    pod: Pod,
    c: Container,
    target: Target,
    verdicts: Verdicts,
    wake: watch::Sender<()>,
) -> tokio::task::JoinHandle<()> {
    let started = Instant::now();
    let mut schedules: Vec<Schedule> = [
        (Kind::Startup, &c.startup_probe),
        (Kind::Liveness, &c.liveness_probe),
        (Kind::Readiness, &c.readiness_probe),
    ]
    .into_iter()
    .filter_map(|(k, p)| p.clone().map(|p| Schedule::new(k, p, started)))
    .collect();
    let has = |k: Kind, s: &[Schedule]| s.iter().any(|x| x.kind == k);
    let mut verdict = Verdict {
        container_id: target.container_id.clone(),
        started: !has(Kind::Startup, &schedules),
        ready: !has(Kind::Startup, &schedules) && !has(Kind::Readiness, &schedules),
        kill: None,
    };
    verdicts
        .lock()
        .expect("verdicts")
        .insert(c.name.clone(), verdict.clone());
    tokio::spawn(async move {
        loop {
            let due = schedules
                .iter()
                .filter(|s| verdict.started || s.kind == Kind::Startup)
                .map(|s| s.next)
                .min();
            let Some(due) = due else { return };
            tokio::time::sleep_until(due).await;
            let Some(i) = schedules.iter().position(|s| {
                s.next <= Instant::now() && (verdict.started || s.kind == Kind::Startup)
            }) else {
                continue;
            };
            let s = &mut schedules[i];
            s.next = Instant::now() + s.period();
            let timeout = s.timeout();
            let result = run(&ctx, &s.probe, &c, &target, timeout).await;
            if let Err(msg) = &result {
                let message = format!("{} probe failed: {msg}", s.kind.name());
                super::worker::record_event(&ctx, &pod, "Warning", "Unhealthy", message).await;
            }
            let reached = s.record(result.is_ok());
            let before = verdict.clone();
            match (s.kind, result.is_ok(), reached) {
                (Kind::Startup, true, true) => {
                    verdict.started = true;
                    verdict.ready = !has(Kind::Readiness, &schedules);
                    // Liveness and readiness count their initial delay from now on.
                    let now = Instant::now();
                    schedules.retain(|x| x.kind != Kind::Startup);
                    for x in &mut schedules {
                        x.next = now
                            + Duration::from_secs(
                                x.probe.initial_delay_seconds.unwrap_or(0).max(0) as u64,
                            );
                    }
                }
                (Kind::Startup | Kind::Liveness, false, true) => {
                    verdict.ready = false;
                    verdict.kill = Some((
                        if s.kind == Kind::Startup {
                            "startup"
                        } else {
                            "liveness"
                        },
                        result.err().unwrap_or_default(),
                    ));
                }
                (Kind::Readiness, ok, true) => verdict.ready = ok,
                _ => {}
            }
            if verdict != before {
                verdicts
                    .lock()
                    .expect("verdicts")
                    .insert(c.name.clone(), verdict.clone());
                let _ = wake.send(());
            }
            if verdict.kill.is_some() {
                return;
            }
        }
    })
}

/// Runs one probe; `Err` carries the failure message as events show it.
async fn run(
    ctx: &Ctx,
    probe: &Probe,
    c: &Container,
    target: &Target,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(e) = &probe.exec {
        return exec(ctx, e, target, timeout).await;
    }
    if let Some(h) = &probe.http_get {
        return http_get(h, c, target, timeout).await;
    }
    if let Some(t) = &probe.tcp_socket {
        return tcp_socket(t, c, target, timeout).await;
    }
    if let Some(g) = &probe.grpc {
        return grpc(g, target, timeout).await;
    }
    Err("probe has no handler".into())
}

/// Runs a lifecycle hook handler, bounded by `timeout`.
pub async fn run_handler(
    ctx: &Ctx,
    h: &LifecycleHandler,
    c: &Container,
    target: &Target,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(e) = &h.exec {
        return exec(ctx, e, target, timeout).await;
    }
    if let Some(g) = &h.http_get {
        return http_get(g, c, target, timeout).await;
    }
    if let Some(t) = &h.tcp_socket {
        return tcp_socket(t, c, target, timeout).await;
    }
    if let Some(s) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64).min(timeout)).await;
        return Ok(());
    }
    Err("lifecycle handler has no action".into())
}

async fn exec(ctx: &Ctx, e: &ExecAction, target: &Target, timeout: Duration) -> Result<(), String> {
    let cmd = e.command.clone().unwrap_or_default();
    let mut rc = ctx.rc.clone();
    let req = cri::ExecSyncRequest {
        container_id: target.container_id.clone(),
        cmd: cmd.clone(),
        timeout: timeout.as_secs() as i64,
    };
    match rc.exec_sync(req).await {
        Ok(r) => {
            let r = r.into_inner();
            let mut output = String::from_utf8_lossy(&r.stdout).into_owned();
            output.push_str(&String::from_utf8_lossy(&r.stderr));
            if r.exit_code == 0 {
                Ok(())
            } else if output.trim().is_empty() {
                Err(format!("command {cmd:?} exited with {}", r.exit_code))
            } else {
                Err(output.trim_end().to_owned())
            }
        }
        Err(s) if s.code() == tonic::Code::DeadlineExceeded => {
            Err(format!("command {cmd:?} timed out"))
        }
        Err(s) => Err(s.message().to_owned()),
    }
}

/// A port given by number or by the name of one of the container's ports.
fn port(p: &IntOrString, c: &Container) -> Result<u16, String> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            c.ports
                .iter()
                .flatten()
                .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                .and_then(|cp| u16::try_from(cp.container_port).ok())
                .ok_or_else(|| format!("port {name:?} not found in container {}", c.name))
        }
    }
}

async fn connect(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, String> {
    let addr = format!("{host}:{port}");
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!(
            "dial tcp {addr}: connect: {}",
            lower_first(&e.to_string())
        )),
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
    }
}

fn lower_first(s: &str) -> String {
    let s = s.split(" (os error").next().unwrap_or(s);
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

async fn tcp_socket(
    t: &TCPSocketAction,
    c: &Container,
    target: &Target,
    timeout: Duration,
) -> Result<(), String> {
    let host = t
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| target.pod_ip.clone());
    connect(&host, port(&t.port, c)?, timeout).await.map(drop)
}

/// An HTTP/1.1 GET, over TLS for `scheme: HTTPS`; 2xx and 3xx pass (redirects are not
/// followed).
async fn http_get(
    h: &HTTPGetAction,
    c: &Container,
    target: &Target,
    timeout: Duration,
) -> Result<(), String> {
    let https = h
        .scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"));
    let host = h
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| target.pod_ip.clone());
    let port = port(&h.port, c)?;
    let path = h
        .path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into());
    let url = format!(
        "{}://{host}:{port}{path}",
        if https { "https" } else { "http" }
    );
    let deadline = Instant::now() + timeout;
    let stream = connect(&host, port, timeout)
        .await
        .map_err(|e| format!("Get \"{url}\": {e}"))?;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for hd in h.http_headers.iter().flatten() {
        req.push_str(&format!("{}: {}\r\n", hd.name, hd.value));
    }
    req.push_str("\r\n");
    let io = async {
        if !https {
            return status_line(stream, &req).await;
        }
        let name = ServerName::try_from(host.clone())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let tls = tokio_rustls::TlsConnector::from(probe_tls())
            .connect(name, stream)
            .await?;
        status_line(tls, &req).await
    };
    let buf = match tokio::time::timeout_at(deadline, io).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return Err(format!("Get \"{url}\": {e}")),
        Err(_) => {
            return Err(format!(
                "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ));
        }
    };
    let line = String::from_utf8_lossy(&buf);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

/// Sends `req` and reads until the status line is complete.
async fn status_line(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    req: &str,
) -> std::io::Result<Vec<u8>> {
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf)
}

/// TLS for HTTPS probes: any certificate is accepted (signatures are still checked), as the
/// upstream kubelet's probes skip verification.
fn probe_tls() -> std::sync::Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<std::sync::Arc<rustls::ClientConfig>> =
        std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            std::sync::Arc::new(ekube_api::tls::unverified_client().with_no_client_auth())
        })
        .clone()
}

/// A `grpc.health.v1.Health/Check` of `service` (empty: the whole server); passes when the
/// answer is SERVING. Messages are the upstream prober's.
async fn grpc(g: &GRPCAction, target: &Target, timeout: Duration) -> Result<(), String> {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

    let addr = format!("{}:{}", target.pod_ip, g.port);
    let service = g.service.clone().unwrap_or_default();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("error: invalid address {addr}: {e}"))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .map_err(|e| {
            format!("timeout: failed to connect service {addr:?} within {timeout:?}: {e}")
        })?;
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let request = HealthCheckRequest { service };
    let response = match tokio::time::timeout(timeout, client.check(request)).await {
        Err(_) => {
            return Err(format!(
                "timeout: health rpc did not complete within {timeout:?}"
            ));
        }
        Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
            return Err(format!(
                "error: this server does not implement the grpc health protocol \
                 (grpc.health.v1.Health): {}",
                status.message()
            ));
        }
        Ok(Err(status)) if status.code() == tonic::Code::DeadlineExceeded => {
            return Err(format!(
                "timeout: health rpc did not complete within {timeout:?}"
            ));
        }
        Ok(Err(status)) => {
            return Err(format!(
                "error: health rpc probe failed: {}",
                status.message()
            ));
        }
        Ok(Ok(response)) => response.into_inner(),
    };
    match ServingStatus::try_from(response.status) {
        Ok(ServingStatus::Serving) => Ok(()),
        Ok(other) => Err(format!(
            "service unhealthy (responded with {:?})",
            other.as_str_name()
        )),
        Err(_) => Err(format!(
            "service unhealthy (responded with \"{}\")",
            response.status
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(success: i32, failure: i32) -> Schedule {
        let p = Probe {
            success_threshold: Some(success),
            failure_threshold: Some(failure),
            ..Default::default()
        };
        Schedule::new(Kind::Readiness, p, Instant::now())
    }

    #[test]
    fn thresholds_count_consecutive_results() {
        let mut s = probe(2, 3);
        assert!(!s.record(true));
        assert!(s.record(true));
        assert!(!s.record(false));
        assert!(!s.record(false));
        assert!(!s.record(true), "a success resets the failure count");
        assert!(!s.record(false));
        assert!(!s.record(false));
        assert!(s.record(false));
    }

    #[test]
    fn named_ports_resolve_from_the_container() {
        let c: Container = serde_json::from_value(
            serde_json::json!({"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}),
        )
        .unwrap();
        assert_eq!(port(&IntOrString::String("http".into()), &c), Ok(8080));
        assert_eq!(port(&IntOrString::Int(81), &c), Ok(81));
        assert!(port(&IntOrString::String("nope".into()), &c).is_err());
    }

    #[tokio::test]
    async fn http_and_tcp_handlers_report_like_kubernetes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut s, _)) = listener.accept().await {
                n += 1;
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let status = if n == 1 {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let c = Container {
            name: "c".into(),
            ..Default::default()
        };
        let target = Target {
            container_id: "x".into(),
            pod_ip: "127.0.0.1".into(),
        };
        let get = HTTPGetAction {
            port: IntOrString::Int(p.into()),
            path: Some("/healthz".into()),
            ..Default::default()
        };
        assert_eq!(
            http_get(&get, &c, &target, Duration::from_secs(2)).await,
            Ok(())
        );
        assert_eq!(
            http_get(&get, &c, &target, Duration::from_secs(2)).await,
            Err("HTTP probe failed with statuscode: 503".into())
        );
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let tcp = TCPSocketAction {
            port: IntOrString::Int(closed.into()),
            host: None,
        };
        let err = tcp_socket(&tcp, &c, &target, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            format!("dial tcp 127.0.0.1:{closed}: connect: connection refused")
        );
    }

    fn local_target() -> (Container, Target) {
        let c = Container {
            name: "c".into(),
            ..Default::default()
        };
        let target = Target {
            container_id: "x".into(),
            pod_ip: "127.0.0.1".into(),
        };
        (c, target)
    }

    #[tokio::test]
    async fn https_probes_skip_certificate_verification() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["not-the-pod".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    continue;
                };
                let mut buf = [0u8; 512];
                let n = tls.read(&mut buf).await.unwrap_or(0);
                let status = if String::from_utf8_lossy(&buf[..n]).starts_with("GET /ok ") {
                    "200 OK"
                } else {
                    "500 Internal Server Error"
                };
                let _ = tls
                    .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
                let _ = tls.shutdown().await;
            }
        });
        let (c, target) = local_target();
        let get = |path: &str| HTTPGetAction {
            port: IntOrString::Int(p.into()),
            path: Some(path.into()),
            scheme: Some("HTTPS".into()),
            ..Default::default()
        };
        let timeout = Duration::from_secs(2);
        assert_eq!(http_get(&get("/ok"), &c, &target, timeout).await, Ok(()));
        assert_eq!(
            http_get(&get("/bad"), &c, &target, timeout).await,
            Err("HTTP probe failed with statuscode: 500".into())
        );
        // Plain HTTP against the TLS port fails instead of passing.
        let mut plain = get("/ok");
        plain.scheme = Some("HTTP".into());
        assert!(http_get(&plain, &c, &target, timeout).await.is_err());
    }

    #[tokio::test]
    async fn grpc_probes_ask_the_health_service() {
        use tonic_health::ServingStatus;
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("ok", ServingStatus::Serving)
            .await;
        reporter
            .set_service_status("down", ServingStatus::NotServing)
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = listener.local_addr().unwrap().port();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let (_, target) = local_target();
        let check = |service: &str| GRPCAction {
            port: p.into(),
            service: Some(service.into()),
            ..Default::default()
        };
        let timeout = Duration::from_secs(2);
        assert_eq!(grpc(&check("ok"), &target, timeout).await, Ok(()));
        assert_eq!(
            grpc(&check("down"), &target, timeout).await,
            Err("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        let err = grpc(&check("unknown"), &target, timeout).await.unwrap_err();
        assert!(err.starts_with("error: health rpc probe failed"), "{err}");
    }
}
