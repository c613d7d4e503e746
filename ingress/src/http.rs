//! The controller's own endpoints: `/metrics` (Prometheus) and `/healthz` (200 once the
//! cluster is listed and the proxy serves, 503 before), as ingress-nginx serves them.

use std::sync::Arc;

use hyper::StatusCode;
use tokio::{net::TcpListener, sync::watch};

use crate::metrics::Metrics;

fn respond(metrics: &Metrics, path: &str) -> (StatusCode, String) {
    match path {
        "/metrics" => (StatusCode::OK, metrics.render()),
        "/healthz" if metrics.ready() => (StatusCode::OK, "ok".into()),
        "/healthz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the cluster is not listed yet\n".into(),
        ),
        _ => (StatusCode::NOT_FOUND, "404 page not found\n".into()),
    }
}

/// Serves `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, stop: watch::Receiver<bool>) {
    ekube_api::serve::text_endpoints(listener, move |path| respond(&metrics, path), stop).await
}
