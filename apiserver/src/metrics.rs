//! `/metrics`: the apiserver's own series, named, labelled and bucketed as upstream's
//! (`k8s.io/apiserver/pkg/endpoints/metrics`).
//!
//! Every routed resource request is counted once, when its response is complete, in
//! `apiserver_request_total` and `apiserver_request_duration_seconds`; a watch counts when it
//! ends and is in `apiserver_longrunning_requests` while it runs. The request's labels come from
//! the same parse the authorizer reads ([`request_info`]), with the verb as upstream reports it
//! (`LIST`, `WATCH`, `APPLY` for a server-side apply, `CONNECT` for exec, attach, port-forward
//! and proxy). The health endpoints are counted with their path as the subresource and an empty
//! component, as upstream instruments them. `apiserver_storage_objects` and
//! `apiserver_current_inflight_requests` are read when scraped.

use std::time::{Duration, Instant};

use ekube_api::metrics::{CONTENT_TYPE, CounterVec, GaugeVec, HistogramVec};
use http::{HeaderMap, Method, Response, StatusCode, Uri, header};
use http_body_util::BodyExt;

use crate::ApiServer;
use crate::authz::{Attributes, request_info};
use crate::handler::{Body, Query, full};
use crate::route::{self, Route};

/// Upstream's buckets of `apiserver_request_duration_seconds`.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// The `component` label of the apiserver's own requests.
const COMPONENT: &str = "apiserver";

static REQUESTS: CounterVec = CounterVec::new(
    "apiserver_request_total",
    "[STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
    &[
        "code",
        "component",
        "dry_run",
        "group",
        "resource",
        "scope",
        "subresource",
        "verb",
        "version",
    ],
);

static DURATIONS: HistogramVec = HistogramVec::new(
    "apiserver_request_duration_seconds",
    "[STABLE] Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
    &[
        "component",
        "dry_run",
        "group",
        "resource",
        "scope",
        "subresource",
        "verb",
        "version",
    ],
    DURATION_BUCKETS,
);

static LONGRUNNING: GaugeVec = GaugeVec::new(
    "apiserver_longrunning_requests",
    "[STABLE] Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component. Not all requests are tracked this way.",
    &[
        "component",
        "group",
        "resource",
        "scope",
        "subresource",
        "verb",
        "version",
    ],
);

/// The labels of one request, as upstream reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    pub verb: &'static str,
    pub dry_run: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub scope: &'static str,
    pub component: &'static str,
}

impl Labels {
    /// The labels of a request, or `None` for one upstream does not count (unknown paths,
    /// non-resource paths other than the health endpoints).
    pub fn of(method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<Self> {
        let path = uri.path();
        match route::parse(path) {
            Route::Health(check) if !check.contains('/') => {
                return Some(Labels {
                    verb: if *method == Method::HEAD {
                        "HEAD"
                    } else {
                        "GET"
                    },
                    dry_run: String::new(),
                    group: String::new(),
                    version: String::new(),
                    resource: String::new(),
                    subresource: format!("/{check}"),
                    scope: "",
                    component: "",
                });
            }
            Route::Resource(_) | Route::Review(..) | Route::Metrics(_) => {}
            _ => return None,
        }
        let query = Query::parse(uri.query());
        let a = request_info::parse(method, path, &query);
        if !a.resource_request {
            return None;
        }
        let apply = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/apply-patch"));
        Some(Labels {
            verb: verb(&a, apply),
            dry_run: dry_run(uri.query().unwrap_or_default()),
            scope: scope(&a),
            group: a.api_group,
            version: a.api_version,
            resource: a.resource,
            subresource: a.subresource,
            component: COMPONENT,
        })
    }

    fn duration_values(&self) -> [&str; 8] {
        [
            self.component,
            &self.dry_run,
            &self.group,
            &self.resource,
            self.scope,
            &self.subresource,
            self.verb,
            &self.version,
        ]
    }

    fn longrunning_values(&self) -> [&str; 7] {
        [
            self.component,
            &self.group,
            &self.resource,
            self.scope,
            &self.subresource,
            self.verb,
            &self.version,
        ]
    }

    fn record(&self, code: StatusCode, started: Instant) {
        let code = code.as_u16().to_string();
        let [
            component,
            dry_run,
            group,
            resource,
            scope,
            subresource,
            verb,
            version,
        ] = self.duration_values();
        REQUESTS.inc(&[
            &code,
            component,
            dry_run,
            group,
            resource,
            scope,
            subresource,
            verb,
            version,
        ]);
        DURATIONS.observe(&self.duration_values(), started.elapsed().as_secs_f64());
    }
}

/// The verb upstream's instrumentation reports: its route's action verb, uppercase.
fn verb(a: &Attributes, apply: bool) -> &'static str {
    if matches!(
        a.subresource.as_str(),
        "exec" | "attach" | "portforward" | "proxy"
    ) || a.verb == "proxy"
    {
        return "CONNECT";
    }
    match a.verb.as_str() {
        "list" => "LIST",
        "watch" => "WATCH",
        "get" => "GET",
        "create" => "POST",
        "update" => "PUT",
        "patch" if apply => "APPLY",
        "patch" => "PATCH",
        "delete" => "DELETE",
        "deletecollection" => "DELETECOLLECTION",
        _ => "UNKNOWN",
    }
}

/// Upstream's `CleanScope`: one object (or a create), a namespace, or the cluster.
fn scope(a: &Attributes) -> &'static str {
    if !a.name.is_empty() || a.verb == "create" {
        "resource"
    } else if !a.namespace.is_empty() {
        "namespace"
    } else {
        "cluster"
    }
}

/// Upstream's `cleanDryRun`: the sorted, distinct `dryRun` values joined by commas, `invalid`
/// if one is not `All`.
fn dry_run(query: &str) -> String {
    let mut values: Vec<String> = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "dryRun")
        .map(|(_, v)| v.into_owned())
        .collect();
    if values.iter().any(|v| v != "All") {
        return "invalid".into();
    }
    values.dedup();
    values.join(",")
}

/// A request being measured.
pub struct Measured {
    labels: Option<Labels>,
    started: Instant,
}

impl Measured {
    pub fn start(method: &Method, uri: &Uri, headers: &HeaderMap) -> Self {
        Self {
            labels: Labels::of(method, uri, headers),
            started: Instant::now(),
        }
    }

    /// Records the request now, or for a watch when its response body ends.
    pub fn finish(self, response: Response<Body>) -> Response<Body> {
        let Some(labels) = self.labels else {
            return response;
        };
        if labels.verb != "WATCH" {
            labels.record(response.status(), self.started);
            return response;
        }
        LONGRUNNING.add(&labels.longrunning_values(), 1.0);
        let watch = Watch {
            labels,
            code: response.status(),
            started: self.started,
        };
        response.map(|body| {
            body.map_frame(move |frame| {
                let _running = &watch;
                frame
            })
            .boxed_unsync()
        })
    }
}

/// A running watch: counted in `apiserver_longrunning_requests` until dropped with its response
/// body, then recorded.
struct Watch {
    labels: Labels,
    code: StatusCode,
    started: Instant,
}

impl Drop for Watch {
    fn drop(&mut self) {
        LONGRUNNING.add(&self.labels.longrunning_values(), -1.0);
        self.labels.record(self.code, self.started);
    }
}

/// The text exposition of every apiserver series.
pub async fn render(api: &ApiServer) -> String {
    let mut out = String::new();
    REQUESTS.render(&mut out);
    DURATIONS.render(&mut out);
    LONGRUNNING.render(&mut out);
    let inflight = GaugeVec::new(
        "apiserver_current_inflight_requests",
        "[STABLE] Maximal number of currently used inflight request limit of this apiserver per request kind in last second.",
        &["request_kind"],
    );
    let (readonly, mutating) = api.inflight.in_use();
    inflight.set(&["mutating"], mutating as f64);
    inflight.set(&["readOnly"], readonly as f64);
    inflight.render(&mut out);
    out.push_str(&storage_objects(api).await);
    out
}

/// How often `apiserver_storage_objects` is counted again, as upstream's object count tracker
/// does: a count walks every stored object, so a scrape in between reads the last one.
const STORAGE_COUNT_PERIOD: Duration = Duration::from_secs(60);

/// `apiserver_storage_objects`, rendered, and when it was counted.
#[derive(Default)]
pub struct StorageObjects(tokio::sync::Mutex<Option<(Instant, String)>>);

/// `apiserver_storage_objects{resource}`: stored objects per resource (`pods`,
/// `deployments.apps`), counted at most once a [`STORAGE_COUNT_PERIOD`]; -1 where the count
/// failed, as upstream reports it.
async fn storage_objects(api: &ApiServer) -> String {
    let mut last = api.storage_objects.0.lock().await;
    if let Some((at, text)) = last.as_ref()
        && at.elapsed() < STORAGE_COUNT_PERIOD
    {
        return text.clone();
    }
    let gauge = GaugeVec::new(
        "apiserver_storage_objects",
        "[STABLE] Number of stored objects at the time of last check split by kind. In case of a fetching error, the value will be -1.",
        &["resource"],
    );
    let mut prefixes = std::collections::HashSet::new();
    for info in ekube_api::resources::RESOURCES {
        let prefix = info.key_prefix();
        // Reviews are never stored; other versions of one resource share its storage.
        if info.review || !prefixes.insert(prefix.clone()) {
            continue;
        }
        let resource = if info.group.is_empty() {
            info.plural.to_string()
        } else {
            format!("{}.{}", info.plural, info.group)
        };
        let n = match api.registry.store.count(&prefix).await {
            Ok(n) => n as f64,
            Err(e) => {
                tracing::warn!(%resource, error = %e, "counting stored objects failed");
                -1.0
            }
        };
        gauge.set(&[&resource], n);
    }
    let mut text = String::new();
    gauge.render(&mut text);
    *last = Some((Instant::now(), text.clone()));
    text
}

/// The `/metrics` response.
pub async fn respond(api: &ApiServer) -> Response<Body> {
    let mut response = Response::new(full(render(api).await));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(method: Method, uri: &str, content_type: Option<&str>) -> Option<Labels> {
        let mut headers = HeaderMap::new();
        if let Some(ct) = content_type {
            headers.insert(header::CONTENT_TYPE, ct.parse().unwrap());
        }
        Labels::of(&method, &uri.parse().unwrap(), &headers)
    }

    /// verb, group, version, resource, subresource, scope, dry_run.
    type Shape<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
    );

    fn shape(l: &Labels) -> Shape<'_> {
        (
            l.verb,
            &l.group,
            &l.version,
            &l.resource,
            &l.subresource,
            l.scope,
            &l.dry_run,
        )
    }

    #[test]
    fn verbs_and_scopes_are_reported_as_upstream() {
        let cases: &[(Method, &str, Option<&str>, Shape)] = &[
            (
                Method::GET,
                "/api/v1/pods",
                None,
                ("LIST", "", "v1", "pods", "", "cluster", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/dev/pods",
                None,
                ("LIST", "", "v1", "pods", "", "namespace", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/dev/pods?watch=true",
                None,
                ("WATCH", "", "v1", "pods", "", "namespace", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/dev/pods/web",
                None,
                ("GET", "", "v1", "pods", "", "resource", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/dev/pods/web/log",
                None,
                ("GET", "", "v1", "pods", "log", "resource", ""),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/dev/pods?dryRun=All",
                None,
                ("POST", "", "v1", "pods", "", "resource", "All"),
            ),
            (
                Method::PUT,
                "/apis/apps/v1/namespaces/dev/deployments/web/scale",
                None,
                ("PUT", "apps", "v1", "deployments", "scale", "resource", ""),
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/dev/deployments/web",
                Some("application/strategic-merge-patch+json"),
                ("PATCH", "apps", "v1", "deployments", "", "resource", ""),
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/dev/deployments/web?fieldManager=kubectl",
                Some("application/apply-patch+yaml"),
                ("APPLY", "apps", "v1", "deployments", "", "resource", ""),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/dev/pods/web?dryRun=All&dryRun=All",
                None,
                ("DELETE", "", "v1", "pods", "", "resource", "All"),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/dev/pods?dryRun=Some",
                None,
                (
                    "DELETECOLLECTION",
                    "",
                    "v1",
                    "pods",
                    "",
                    "namespace",
                    "invalid",
                ),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/dev/pods/web/exec?command=ls",
                None,
                ("CONNECT", "", "v1", "pods", "exec", "resource", ""),
            ),
            (
                Method::GET,
                "/api/v1/nodes",
                None,
                ("LIST", "", "v1", "nodes", "", "cluster", ""),
            ),
        ];
        for (method, uri, ct, want) in cases {
            let got = labels(method.clone(), uri, *ct).unwrap_or_else(|| panic!("{uri}"));
            assert_eq!(shape(&got), *want, "{method} {uri}");
            assert_eq!(got.component, "apiserver");
        }
    }

    #[test]
    fn health_roots_are_counted_by_path_and_other_paths_not_at_all() {
        let l = labels(Method::GET, "/readyz?verbose", None).unwrap();
        assert_eq!(
            (l.verb, l.subresource.as_str(), l.component, l.scope),
            ("GET", "/readyz", "", "")
        );
        for uri in [
            "/metrics",
            "/version",
            "/apis",
            "/livez/ping",
            "/api/v1/nosuchthings",
        ] {
            assert_eq!(labels(Method::GET, uri, None), None, "{uri}");
        }
    }

    #[test]
    fn a_watch_is_long_running_until_its_body_is_dropped() {
        let uri: Uri = "/api/v1/namespaces/gauge-test/limitranges?watch=1"
            .parse()
            .unwrap();
        let measured = Measured::start(&Method::GET, &uri, &HeaderMap::new());
        let values = measured.labels.clone().unwrap();
        let values = values.longrunning_values();
        let response = measured.finish(Response::new(full("")));
        assert_eq!(LONGRUNNING.get(&values), 1.0);
        let counted = |code: &str| {
            REQUESTS.get(&[
                code,
                "apiserver",
                "",
                "",
                "limitranges",
                "namespace",
                "",
                "WATCH",
                "v1",
            ])
        };
        assert_eq!(counted("200"), 0, "a watch counts when it ends");
        drop(response);
        assert_eq!(LONGRUNNING.get(&values), 0.0);
        assert_eq!(counted("200"), 1);
    }
}
