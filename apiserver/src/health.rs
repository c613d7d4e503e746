//! `/healthz`, `/livez` and `/readyz` as upstream's `healthz` package answers them: named
//! checks, `ok` when they pass, the list with `?verbose` (`[+]ping ok` … `livez check
//! passed`), the list and 500 when one fails (`[-]etcd failed: reason withheld`, the reason only
//! in the log), `?exclude=<check>` to skip one, and `/livez/<check>` for a single check.
//!
//! The checks are the ones upstream runs that ekube has: `ping`; `log`; `etcd`, a read of the
//! store (sled here, named as upstream's storage check); `informer-sync`, the RBAC cache and node
//! graph the authorizers read from (loaded before the server listens); the
//! `rbac/bootstrap-roles` post-start hook (also done before listening); and on `/readyz`,
//! `shutdown`, which fails once the server has begun to shut down so load balancers stop
//! sending it requests.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{Response, StatusCode, header};

use crate::ApiServer;
use crate::errors::ApiError;
use crate::handler::Body;

/// How long the storage check waits for the store.
const STORAGE_TIMEOUT: Duration = Duration::from_secs(2);

/// The key the storage check reads (absent is fine: the read itself is the check).
const STORAGE_PROBE_KEY: &str = "/registry/health";

/// Health state that is not read from elsewhere.
#[derive(Debug, Default)]
pub struct State {
    /// Set when the serving future's shutdown signal fired.
    shutting_down: AtomicBool,
}

impl State {
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }
}

/// One named check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Ping,
    Log,
    Etcd,
    InformerSync,
    BootstrapRoles,
    Shutdown,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::Ping => "ping",
            Check::Log => "log",
            Check::Etcd => "etcd",
            Check::InformerSync => "informer-sync",
            Check::BootstrapRoles => "poststarthook/rbac/bootstrap-roles",
            Check::Shutdown => "shutdown",
        }
    }

    /// `Err(reason)` when the check fails.
    async fn run(self, api: &ApiServer) -> Result<(), String> {
        match self {
            // Answering is the check.
            Check::Ping => Ok(()),
            // Upstream's checks that flushing the log does not block; ekube's log writer
            // writes each line as it comes and keeps nothing to flush.
            Check::Log => Ok(()),
            Check::Etcd => {
                match tokio::time::timeout(
                    STORAGE_TIMEOUT,
                    api.registry.store.get(STORAGE_PROBE_KEY),
                )
                .await
                {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(format!("error reading the store: {e}")),
                    Err(_) => Err(format!(
                        "the store did not answer within {STORAGE_TIMEOUT:?}"
                    )),
                }
            }
            // Both are filled before the listener is served (`start`), so a server that
            // answers has them; the check names the dependency as upstream lists it.
            Check::InformerSync | Check::BootstrapRoles => Ok(()),
            Check::Shutdown => {
                if api.health.shutting_down.load(Ordering::Relaxed) {
                    Err("process is shutting down".into())
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// The checks of `/healthz`, `/livez` or `/readyz`, in upstream's order.
fn checks(endpoint: &str) -> Option<&'static [Check]> {
    const LIVE: &[Check] = &[Check::Ping, Check::Log, Check::Etcd, Check::BootstrapRoles];
    const READY: &[Check] = &[
        Check::Ping,
        Check::Log,
        Check::Etcd,
        Check::InformerSync,
        Check::BootstrapRoles,
        Check::Shutdown,
    ];
    match endpoint {
        "healthz" | "livez" => Some(LIVE),
        "readyz" => Some(READY),
        _ => None,
    }
}

fn text(code: StatusCode, body: String) -> Response<Body> {
    let mut response = crate::handler::respond(code, "text/plain; charset=utf-8", body);
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    response
}

/// Answers `path` (`livez`, `readyz/etcd`, …) with the raw query string.
pub async fn respond(
    api: &ApiServer,
    path: &str,
    raw_query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let (endpoint, single) = match path.split_once('/') {
        Some((endpoint, check)) => (endpoint, Some(check)),
        None => (path, None),
    };
    let checks = checks(endpoint).ok_or_else(ApiError::path_not_found)?;
    if let Some(name) = single {
        let check = checks
            .iter()
            .find(|c| c.name() == name)
            .ok_or_else(ApiError::path_not_found)?;
        return Ok(match check.run(api).await {
            Ok(()) => text(StatusCode::OK, "ok".into()),
            Err(reason) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal server error: {reason}\n"),
            ),
        });
    }
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(raw_query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let verbose = pairs.iter().any(|(k, _)| k == "verbose");
    let mut excluded: BTreeSet<&str> = pairs
        .iter()
        .filter(|(k, v)| k == "exclude" && !v.is_empty())
        .map(|(_, v)| v.as_str())
        .collect();
    let mut outcomes = Vec::with_capacity(checks.len());
    for check in checks {
        let name = check.name();
        let outcome = if excluded.remove(name) {
            None
        } else {
            let result = check.run(api).await;
            if let Err(reason) = &result {
                tracing::info!(check = name, %reason, "{endpoint} check failed");
            }
            Some(result.is_ok())
        };
        outcomes.push((name, outcome));
    }
    let (code, body) = summarize(endpoint, &outcomes, &excluded, verbose);
    Ok(text(code, body))
}

/// The status and body of a root health request from each check's outcome (`None`:
/// excluded, `Some(passed)`) and the exclusions that named no check.
fn summarize(
    endpoint: &str,
    outcomes: &[(&str, Option<bool>)],
    unmatched: &BTreeSet<&str>,
    verbose: bool,
) -> (StatusCode, String) {
    let mut listing = String::new();
    let mut failed = false;
    for (name, outcome) in outcomes {
        match outcome {
            None => listing.push_str(&format!("[+]{name} excluded: ok\n")),
            Some(true) => listing.push_str(&format!("[+]{name} ok\n")),
            Some(false) => {
                listing.push_str(&format!("[-]{name} failed: reason withheld\n"));
                failed = true;
            }
        }
    }
    if !unmatched.is_empty() {
        let quoted: Vec<String> = unmatched.iter().map(|c| format!("{c:?}")).collect();
        listing.push_str(&format!(
            "warn: some health checks cannot be excluded: no matches for {}\n",
            quoted.join(", ")
        ));
    }
    if failed {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{listing}{endpoint} check failed\n"),
        )
    } else if verbose {
        (
            StatusCode::OK,
            format!("{listing}{endpoint} check passed\n"),
        )
    } else {
        (StatusCode::OK, "ok".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_when_healthy_listed_when_verbose_or_failing() {
        let none = BTreeSet::new();
        let healthy = [("ping", Some(true)), ("etcd", Some(true))];
        assert_eq!(
            summarize("livez", &healthy, &none, false),
            (StatusCode::OK, "ok".into())
        );
        assert_eq!(
            summarize("livez", &healthy, &none, true),
            (
                StatusCode::OK,
                "[+]ping ok\n[+]etcd ok\nlivez check passed\n".into()
            )
        );
        let failing = [
            ("ping", Some(true)),
            ("etcd", Some(false)),
            ("shutdown", None),
        ];
        let unmatched = BTreeSet::from(["nosuch"]);
        assert_eq!(
            summarize("readyz", &failing, &unmatched, false),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "[+]ping ok\n[-]etcd failed: reason withheld\n[+]shutdown excluded: ok\n\
                 warn: some health checks cannot be excluded: no matches for \"nosuch\"\n\
                 readyz check failed\n"
                    .into()
            )
        );
    }

    #[test]
    fn endpoints_list_upstreams_checks_in_order() {
        let names = |e| {
            checks(e)
                .unwrap()
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names("livez"),
            ["ping", "log", "etcd", "poststarthook/rbac/bootstrap-roles"]
        );
        assert_eq!(names("healthz"), names("livez"));
        assert_eq!(
            names("readyz"),
            [
                "ping",
                "log",
                "etcd",
                "informer-sync",
                "poststarthook/rbac/bootstrap-roles",
                "shutdown"
            ]
        );
        assert!(checks("deadz").is_none());
    }
}
