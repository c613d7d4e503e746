//! `--max-requests-inflight` and `--max-mutating-requests-inflight`, as upstream's max-in-flight
//! filter: a request that finds every slot of its kind taken is answered 429 `TooManyRequests`
//! with `Retry-After: 1` at once instead of queueing, so an overloaded server sheds load
//! rather than memory. Long-running requests (watch; exec, attach, port-forward, logs, proxy)
//! hold a connection for minutes and are not counted. Members of `system:masters` are served
//! even when the slots are full, because upstream never refuses its super-user.

use std::sync::Arc;

use http::Method;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::User;
use crate::errors::{ApiError, Result};
use crate::handler::Query;
use crate::route::Route;

/// Seconds a refused client is told to wait (upstream's constant).
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// The two pools of slots; `None` where the flag is 0 (no limit).
pub struct Inflight {
    readonly: Option<Arc<Semaphore>>,
    mutating: Option<Arc<Semaphore>>,
    /// The flags' values, to tell slots in use from the permits left.
    limits: (usize, usize),
}

impl Inflight {
    pub fn new(readonly: usize, mutating: usize) -> Self {
        let pool = |n: usize| (n > 0).then(|| Arc::new(Semaphore::new(n)));
        Self {
            readonly: pool(readonly),
            mutating: pool(mutating),
            limits: (readonly, mutating),
        }
    }

    /// Read-only and mutating slots held now (`apiserver_current_inflight_requests`); 0 for a
    /// kind without a limit, which is not tracked, as upstream's filter is then off.
    pub fn in_use(&self) -> (usize, usize) {
        let used = |pool: &Option<Arc<Semaphore>>, limit: usize| {
            pool.as_ref()
                .map_or(0, |p| limit.saturating_sub(p.available_permits()))
        };
        (
            used(&self.readonly, self.limits.0),
            used(&self.mutating, self.limits.1),
        )
    }

    /// A slot for the request, held until its response is ready; `Ok(None)` for requests that
    /// are not limited; the 429 when the pool is full.
    pub fn admit(
        &self,
        method: &Method,
        route: &Route,
        query: &Query,
        user: &User,
    ) -> Result<Option<OwnedSemaphorePermit>> {
        // Health and version probes are never refused for load: a busy server is not a dead one.
        if is_long_running(route, query) || matches!(route, Route::Health(_) | Route::Version) {
            return Ok(None);
        }
        let readonly = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let Some(pool) = (if readonly {
            &self.readonly
        } else {
            &self.mutating
        }) else {
            return Ok(None);
        };
        match pool.clone().try_acquire_owned() {
            Ok(slot) => Ok(Some(slot)),
            Err(_) if user.groups.iter().any(|g| g == "system:masters") => Ok(None),
            Err(_) => Err(ApiError::too_many_requests(
                "Too many requests, please try again later.",
            )
            .retry_after(RETRY_AFTER_SECONDS)),
        }
    }
}

/// Upstream's long-running check: the `watch` verb and the streaming subresources.
fn is_long_running(route: &Route, query: &Query) -> bool {
    let Route::Resource(target) = route else {
        return false;
    };
    query.flag("watch")
        || matches!(
            target.subresource.as_deref(),
            Some("exec" | "attach" | "portforward" | "log" | "proxy")
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(groups: &[&str]) -> User {
        User {
            name: "u".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..User::default()
        }
    }

    #[test]
    fn full_pools_refuse_with_retry_after_but_exempt_long_running_and_masters() {
        let inflight = Inflight::new(1, 1);
        let pods = crate::route::parse("/api/v1/namespaces/default/pods");
        let logs = crate::route::parse("/api/v1/namespaces/default/pods/web/log");
        let none = Query::parse(None);
        let watch = Query::parse(Some("watch=true"));
        let alice = user(&[]);

        let held = inflight.admit(&Method::GET, &pods, &none, &alice).unwrap();
        assert!(held.is_some());
        assert_eq!(inflight.in_use(), (1, 0));
        let refused = inflight
            .admit(&Method::GET, &pods, &none, &alice)
            .unwrap_err();
        assert_eq!((refused.code, refused.reason), (429, "TooManyRequests"));
        assert_eq!(refused.retry_after_seconds(), Some(1));
        // The mutating pool is separate.
        let posting = inflight.admit(&Method::POST, &pods, &none, &alice).unwrap();
        assert!(posting.is_some());
        assert!(
            inflight
                .admit(&Method::DELETE, &pods, &none, &alice)
                .is_err()
        );
        // Long-running requests and the super-user pass.
        assert!(
            inflight
                .admit(&Method::GET, &pods, &watch, &alice)
                .unwrap()
                .is_none()
        );
        assert!(
            inflight
                .admit(&Method::GET, &logs, &none, &alice)
                .unwrap()
                .is_none()
        );
        let admin = user(&["system:masters"]);
        assert!(inflight.admit(&Method::GET, &pods, &none, &admin).is_ok());
        // So do health and version probes.
        for probe in ["/readyz", "/version"] {
            let route = crate::route::parse(probe);
            assert!(
                inflight
                    .admit(&Method::GET, &route, &none, &alice)
                    .unwrap()
                    .is_none()
            );
        }
        // A finished request frees its slot.
        drop(held);
        assert_eq!(inflight.in_use(), (0, 1));
        assert!(inflight.admit(&Method::GET, &pods, &none, &alice).is_ok());
        // 0 means no limit.
        let open = Inflight::new(0, 0);
        assert!(
            open.admit(&Method::GET, &pods, &none, &alice)
                .unwrap()
                .is_none()
        );
    }
}
