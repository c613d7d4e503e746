//! The HTTP endpoints beside the DNS server: `/metrics` (Prometheus), `/health` (200 while the
//! process serves) and `/ready` (200 once the caches have listed, 503 before), on every
//! listener it is given, as CoreDNS's `prometheus`, `health` and `ready` plugins serve them.

use std::sync::Arc;

use hyper::StatusCode;
use tokio::{net::TcpListener, sync::watch};

use crate::metrics::Metrics;

fn respond(metrics: &Metrics, path: &str) -> (StatusCode, String) {
    match path {
        "/metrics" => (StatusCode::OK, metrics.render()),
        "/health" => (StatusCode::OK, "OK".into()),
        "/ready" if metrics.ready() => (StatusCode::OK, "OK".into()),
        "/ready" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "services and endpoint slices not listed yet\n".into(),
        ),
        _ => (StatusCode::NOT_FOUND, "404 page not found\n".into()),
    }
}

/// Serves `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, stop: watch::Receiver<bool>) {
    ekube_api::serve::text_endpoints(listener, move |path| respond(&metrics, path), stop).await
}
