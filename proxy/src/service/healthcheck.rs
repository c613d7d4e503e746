//! `healthCheckNodePort` servers for `externalTrafficPolicy: Local` Services, answering like
//! kube-proxy's: any GET on `<node>:<healthCheckNodePort>` gets `200` with
//! `{"service":{"namespace":..,"name":..},"localEndpoints":N,"serviceProxyHealthy":true}` while
//! this node has ready endpoints of the Service, else `503` with the same body. External load
//! balancers use it to send traffic only to nodes that will not drop it.
//!
//! [`HealthChecks`] is driven by the sync loop: [`HealthChecks::sync`] after each Service sync
//! (opens, updates or closes that Service's port) and [`HealthChecks::retain`] after a full
//! sync. Each port is one tokio task with a hyper server; reports are shared through a mutex
//! held only to copy a value.

use std::{
    collections::{BTreeSet, HashMap},
    convert::Infallible,
    io,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode, header, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, task::JoinHandle};
use tracing::{debug, info};

use super::{
    desired::{ServiceName, valid_port},
    view::{ServiceView, SliceView},
};

/// Errors of the health-check servers.
#[derive(Debug, thiserror::Error)]
pub enum HealthCheckError {
    #[error("binding the health check of service {service} on {addr}: {source}")]
    Bind {
        service: ServiceName,
        addr: SocketAddr,
        source: io::Error,
    },
}

/// What one port reports.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Report {
    service: ServiceName,
    local_endpoints: usize,
}

/// The health-check servers of one node.
pub struct HealthChecks {
    /// Address the servers bind (the node's address, or `0.0.0.0`).
    bind: IpAddr,
    /// Port → report, read by the servers.
    reports: Arc<Mutex<HashMap<u16, Report>>>,
    /// Service → its port.
    ports: HashMap<ServiceName, u16>,
    /// Port → the task serving it.
    servers: HashMap<u16, JoinHandle<()>>,
}

/// The `healthCheckNodePort` of `svc` and the number of its ready endpoints on `node`, if `svc`
/// is an `externalTrafficPolicy: Local` Service with a health-check port.
pub fn health_check_of(
    svc: &ServiceView,
    slices: &[SliceView],
    node: &str,
) -> Option<(u16, usize)> {
    if !svc.external_traffic_local() {
        return None;
    }
    let port = svc.health_check_node_port?;
    let port = valid_port(port)?;
    let local: BTreeSet<IpAddr> = slices
        .iter()
        .flat_map(|s| &s.endpoints)
        .filter(|e| e.ready && e.node_name.as_deref() == Some(node))
        .filter_map(|e| e.address)
        .collect();
    Some((port, local.len()))
}

impl HealthChecks {
    /// No servers yet; they will bind `bind` (use the node IP, or `0.0.0.0`).
    pub fn new(bind: IpAddr) -> Self {
        Self {
            bind,
            reports: Arc::default(),
            ports: HashMap::new(),
            servers: HashMap::new(),
        }
    }

    /// Brings `service`'s health check in line with `svc` (`None`: deleted) and its `slices`.
    /// Must run inside a tokio runtime.
    pub fn sync(
        &mut self,
        service: &ServiceName,
        svc: Option<&ServiceView>,
        slices: &[SliceView],
        node: &str,
    ) -> Result<(), HealthCheckError> {
        let wanted = svc.and_then(|s| health_check_of(s, slices, node));
        self.update(service, wanted.map(|w| w.0), wanted.map_or(0, |w| w.1))
    }

    /// Serves `local_endpoints` for `service` on `port` (`None` closes its server). Must run
    /// inside a tokio runtime.
    pub fn update(
        &mut self,
        service: &ServiceName,
        port: Option<u16>,
        local_endpoints: usize,
    ) -> Result<(), HealthCheckError> {
        let old = self.ports.get(service).copied();
        if let Some(old) = old.filter(|o| Some(*o) != port) {
            self.close(service, old);
        }
        let Some(port) = port else {
            return Ok(());
        };
        let report = Report {
            service: service.clone(),
            local_endpoints,
        };
        if !self.servers.contains_key(&port) {
            let addr = SocketAddr::new(self.bind, port);
            let listener = bind(addr).map_err(|source| HealthCheckError::Bind {
                service: service.clone(),
                addr,
                source,
            })?;
            info!(%service, %addr, "health check serving");
            let task = tokio::spawn(serve(listener, port, self.reports.clone()));
            self.servers.insert(port, task);
        }
        self.ports.insert(service.clone(), port);
        lock(&self.reports).insert(port, report);
        Ok(())
    }

    /// Closes the servers of Services `keep` rejects (after a full sync: the deleted ones).
    pub fn retain(&mut self, keep: impl Fn(&ServiceName) -> bool) {
        let gone: Vec<(ServiceName, u16)> = self
            .ports
            .iter()
            .filter(|(s, _)| !keep(s))
            .map(|(s, p)| (s.clone(), *p))
            .collect();
        for (service, port) in gone {
            self.close(&service, port);
        }
    }

    /// Ports currently served, for tests and metrics.
    pub fn ports(&self) -> BTreeSet<u16> {
        self.servers.keys().copied().collect()
    }

    fn close(&mut self, service: &ServiceName, port: u16) {
        self.ports.remove(service);
        lock(&self.reports).remove(&port);
        if let Some(task) = self.servers.remove(&port) {
            task.abort();
            info!(%service, port, "health check closed");
        }
    }
}

impl Drop for HealthChecks {
    fn drop(&mut self) {
        for task in self.servers.values() {
            task.abort();
        }
    }
}

fn lock(reports: &Mutex<HashMap<u16, Report>>) -> std::sync::MutexGuard<'_, HashMap<u16, Report>> {
    reports
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Binds synchronously (so a taken port is reported to the caller) and hands the socket to
/// tokio.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// The response for `report` (a port whose report was just removed answers 503 with no body).
fn respond(report: Option<Report>) -> Response<Full<Bytes>> {
    let (status, body) = match report {
        Some(r) => {
            let body = serde_json::json!({
                "service": { "namespace": &*r.service.namespace, "name": &*r.service.name },
                "localEndpoints": r.local_endpoints,
                "serviceProxyHealthy": true,
            });
            let status = if r.local_endpoints > 0 {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, body.to_string())
        }
        None => (StatusCode::SERVICE_UNAVAILABLE, String::new()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        "X-Content-Type-Options",
        header::HeaderValue::from_static("nosniff"),
    );
    response
}

async fn serve(listener: TcpListener, port: u16, reports: Arc<Mutex<HashMap<u16, Report>>>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                debug!(%err, port, "health check accept");
                continue;
            }
        };
        let reports = reports.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req| {
                let report = lock(&reports).get(&port).cloned();
                async move { Ok::<_, Infallible>(respond(report)) }
            });
            if let Err(err) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%peer, %err, "health check connection");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::{Ipv4Addr, TcpStream},
    };

    use super::*;

    fn get(port: u16) -> (u16, serde_json::Value) {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        write!(
            stream,
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        let code = text[9..12].parse().unwrap();
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        (code, serde_json::from_str(body).unwrap_or_default())
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_200_with_local_endpoints_else_503_and_closes() {
        let mut checks = HealthChecks::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let web = ServiceName::new("default", "web");
        let port = free_port();
        checks.update(&web, Some(port), 2).unwrap();
        let (code, body) = tokio::task::spawn_blocking(move || get(port))
            .await
            .unwrap();
        assert_eq!(code, 200);
        assert_eq!(
            body,
            serde_json::json!({
                "service": { "namespace": "default", "name": "web" },
                "localEndpoints": 2,
                "serviceProxyHealthy": true,
            })
        );
        checks.update(&web, Some(port), 0).unwrap();
        let (code, body) = tokio::task::spawn_blocking(move || get(port))
            .await
            .unwrap();
        assert_eq!(code, 503);
        assert_eq!(body["localEndpoints"], 0);

        checks.retain(|_| false);
        assert!(checks.ports().is_empty());
        // The listener goes away with its task.
        let mut closed = false;
        for _ in 0..50 {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
                closed = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(closed, "port {port} still open after the service went away");
    }
}
