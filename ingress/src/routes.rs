//! The routing table: the Ingresses of our class resolved against Services and EndpointSlices,
//! and matched per request as the Ingress API defines it.
//!
//! - A request's host picks one *server*: the rules naming that host exactly, else the rules
//!   naming `*.` and the host's parent (a wildcard covers exactly one label), else the rules
//!   without a host. Paths of every Ingress naming the same host merge into one server.
//! - Within a server the longest matching path wins, an `Exact` path over a `Prefix` one of the
//!   same length. `Prefix` matches element-wise (`/foo` matches `/foo`, `/foo/` and `/foo/bar`,
//!   not `/foobar`); a rule's trailing slash is ignored. `ImplementationSpecific` is `Prefix`.
//! - Nothing matching: the `defaultBackend` of an Ingress that names the host, else of any
//!   Ingress (the oldest first), else 404.
//! - The same host and path in two Ingresses: the oldest Ingress keeps it, as ingress-nginx
//!   merges them. A canary Ingress (`nginx.ingress.kubernetes.io/canary: "true"`, or ekube's
//!   `ingress.ekube.io/canary`) does not claim paths: its backends receive `canary-weight` of
//!   every hundred requests of the main Ingress's path with the same host, path and type.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use kube::ResourceExt;

/// Annotation prefixes whose `canary`, `canary-weight`, `canary-weight-total` and
/// `ssl-redirect` keys ekube reads: ingress-nginx's, so its tutorials work unchanged, and
/// ekube's own.
pub const ANNOTATION_PREFIXES: [&str; 2] = ["ingress.ekube.io/", "nginx.ingress.kubernetes.io/"];

/// The value of annotation `key` under either prefix (ekube's wins).
pub fn annotation<'a>(ingress: &'a Ingress, key: &str) -> Option<&'a str> {
    let annotations = ingress.metadata.annotations.as_ref()?;
    ANNOTATION_PREFIXES
        .iter()
        .find_map(|prefix| annotations.get(&format!("{prefix}{key}")))
        .map(|v| v.as_str())
}

/// How a rule's path matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathKind {
    Prefix,
    Exact,
}

/// A backend resolved to its ready endpoints, or why it has none (then requests get 503).
#[derive(Debug)]
pub struct Upstream {
    /// `<namespace>-<service>-<port>`, as ingress-nginx names upstreams in its logs.
    pub name: String,
    pub endpoints: Vec<SocketAddr>,
    /// Why there are no endpoints, when there are none.
    pub problem: Option<String>,
    next: AtomicUsize,
}

impl Upstream {
    fn new(name: String, endpoints: Vec<SocketAddr>, problem: Option<String>) -> Self {
        Self {
            name,
            endpoints,
            problem,
            next: AtomicUsize::new(0),
        }
    }

    /// The endpoints in the order to try them: round robin over requests.
    pub fn pick(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let n = self.endpoints.len().max(1);
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        self.endpoints[start..]
            .iter()
            .chain(&self.endpoints[..start])
            .copied()
    }
}

/// Who configured a route: the Ingress's namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A canary beside a route: `weight` of every `total` requests go to `upstream`.
#[derive(Debug)]
pub struct Canary {
    pub weight: u32,
    pub total: u32,
    pub upstream: Arc<Upstream>,
    pub origin: Origin,
}

/// One path of one host.
#[derive(Debug)]
pub struct Route {
    pub kind: PathKind,
    /// As written, except a `Prefix` path's trailing slashes ("/" becomes "").
    pub path: String,
    pub upstream: Arc<Upstream>,
    pub origin: Origin,
    pub canary: Option<Canary>,
}

impl Route {
    /// Whether the route matches `path` (the request's path, without its query).
    fn matches(&self, path: &str) -> bool {
        match self.kind {
            PathKind::Exact => self.path == path,
            PathKind::Prefix => path
                .strip_prefix(self.path.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }

    /// The upstream to send this request to: the canary's for `weight` of `total` draws.
    pub fn choose(&self, draw: u32) -> (&Arc<Upstream>, &Origin) {
        match &self.canary {
            Some(c) if c.total > 0 && draw % c.total < c.weight => (&c.upstream, &c.origin),
            _ => (&self.upstream, &self.origin),
        }
    }
}

/// The routes of one host (or of every host, for rules without one).
#[derive(Debug, Default)]
pub struct Server {
    /// Longest first, `Exact` before `Prefix` of the same length.
    pub routes: Vec<Route>,
    /// The `defaultBackend` of the oldest Ingress naming this host that has one.
    pub fallback: Option<Arc<Route>>,
    /// Whether a TLS section names this host: plain HTTP is redirected unless an Ingress
    /// naming the host turned that off.
    pub tls: bool,
    pub ssl_redirect: bool,
}

impl Server {
    fn best(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches(path))
    }
}

/// What a request resolved to.
#[derive(Debug)]
pub enum Target<'a> {
    Route(&'a Route),
    /// Nothing matched and no default backend: 404.
    NotFound,
}

/// The whole table, swapped at once when anything changes.
#[derive(Debug, Default)]
pub struct Table {
    exact: HashMap<String, Server>,
    /// Keyed by what follows `*.`.
    wildcard: HashMap<String, Server>,
    any: Server,
    fallback: Option<Arc<Route>>,
}

/// A problem found while building the table, reported as an event on the Ingress.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Problem {
    pub origin: Origin,
    pub reason: &'static str,
    pub message: String,
}

impl Table {
    /// The server for `host` (lower case, without port).
    pub fn server(&self, host: &str) -> &Server {
        if let Some(s) = self.exact.get(host) {
            return s;
        }
        if let Some((_, parent)) = host.split_once('.')
            && let Some(s) = self.wildcard.get(parent)
        {
            return s;
        }
        &self.any
    }

    /// Where a request for `host` and `path` goes.
    pub fn route(&self, host: &str, path: &str) -> Target<'_> {
        let server = self.server(host);
        if let Some(route) = server.best(path) {
            return Target::Route(route);
        }
        match server.fallback.as_deref().or(self.fallback.as_deref()) {
            Some(route) => Target::Route(route),
            None => Target::NotFound,
        }
    }
}

/// The objects a table is built from, borrowed from the watch caches (a rebuild runs on every
/// change, so nothing is copied for it).
#[derive(Debug)]
pub struct Snapshot<'a> {
    /// Ours only, in any order.
    pub ingresses: &'a [Ingress],
    /// By namespace and name.
    pub services: &'a BTreeMap<(String, String), Service>,
    /// By namespace and Service name.
    pub slices: BTreeMap<(String, String), Vec<&'a EndpointSlice>>,
}

fn origin(ingress: &Ingress) -> Origin {
    Origin {
        namespace: ingress.namespace().unwrap_or_default(),
        name: ingress.name_any(),
    }
}

/// Whether an Ingress is a canary.
pub fn is_canary(ingress: &Ingress) -> bool {
    annotation(ingress, "canary") == Some("true")
}

impl Snapshot<'_> {
    /// Resolves a backend of an Ingress in `namespace` to its ready endpoints.
    fn upstream(&self, namespace: &str, backend: &IngressBackend) -> Result<Upstream, String> {
        let Some(svc) = &backend.service else {
            return Err(
                "resource backends are not supported by ekube-ingress; use a service backend"
                    .into(),
            );
        };
        let port = svc.port.as_ref();
        let (number, name) = (
            port.and_then(|p| p.number),
            port.and_then(|p| p.name.clone()),
        );
        let label = number
            .map(|n| n.to_string())
            .or(name.clone())
            .unwrap_or_default();
        let upstream_name = format!("{namespace}-{}-{label}", svc.name);
        let Some(service) = self
            .services
            .get(&(namespace.to_string(), svc.name.clone()))
        else {
            return Err(format!("service \"{namespace}/{}\" not found", svc.name));
        };
        let ports = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default();
        let Some(service_port) = ports.iter().find(|p| match (number, &name) {
            (Some(n), _) => p.port == n,
            (None, Some(name)) => p.name.as_deref() == Some(name.as_str()),
            (None, None) => false,
        }) else {
            return Err(format!(
                "service \"{namespace}/{}\" has no port {label}",
                svc.name
            ));
        };
        let port_name = service_port.name.clone().unwrap_or_default();
        let mut endpoints = Vec::new();
        for slice in self
            .slices
            .get(&(namespace.to_string(), svc.name.clone()))
            .into_iter()
            .flatten()
        {
            let Some(target) = slice.ports.iter().flatten().find_map(|p| {
                (p.name.clone().unwrap_or_default() == port_name)
                    .then_some(p.port)
                    .flatten()
            }) else {
                continue;
            };
            for endpoint in slice.endpoints.iter().flatten() {
                let ready = endpoint
                    .conditions
                    .as_ref()
                    .and_then(|c| c.ready)
                    .unwrap_or(true);
                if !ready {
                    continue;
                }
                for address in &endpoint.addresses {
                    if let Ok(ip) = address.parse::<std::net::IpAddr>() {
                        endpoints.push(SocketAddr::new(ip, target as u16));
                    }
                }
            }
        }
        endpoints.sort();
        endpoints.dedup();
        let problem = endpoints.is_empty().then(|| {
            format!(
                "service \"{namespace}/{}\" has no ready endpoints for port {label}",
                svc.name
            )
        });
        Ok(Upstream::new(upstream_name, endpoints, problem))
    }

    /// An upstream for a backend; a backend that cannot be resolved still gets one (without
    /// endpoints, answering 503) and a problem to report.
    fn resolve(
        &self,
        ingress: &Ingress,
        backend: &IngressBackend,
        problems: &mut Vec<Problem>,
    ) -> Arc<Upstream> {
        let origin = origin(ingress);
        match self.upstream(&origin.namespace, backend) {
            Ok(u) => Arc::new(u),
            Err(message) => {
                let reason = if backend.service.is_some() {
                    "ServiceNotFound"
                } else {
                    "UnsupportedBackend"
                };
                problems.push(Problem {
                    origin: origin.clone(),
                    reason,
                    message: message.clone(),
                });
                Arc::new(Upstream::new(
                    format!("{}-{}-unresolved", origin.namespace, origin.name),
                    Vec::new(),
                    Some(message),
                ))
            }
        }
    }

    /// Builds the table, with the problems to report.
    pub fn build(&self) -> (Table, Vec<Problem>) {
        let mut problems = Vec::new();
        let mut ingresses: Vec<&Ingress> = self.ingresses.iter().collect();
        // Oldest first: it keeps a contested path, as ingress-nginx resolves conflicts.
        ingresses.sort_by_key(|i| {
            (
                i.metadata.creation_timestamp.clone().map(|t| t.0),
                i.namespace(),
                i.name_any(),
            )
        });
        let (canaries, mains): (Vec<&Ingress>, Vec<&Ingress>) =
            ingresses.into_iter().partition(|i| is_canary(i));
        let mut table = Table::default();
        for ingress in &mains {
            let spec = ingress.spec.clone().unwrap_or_default();
            let origin = origin(ingress);
            let redirect = annotation(ingress, "ssl-redirect") != Some("false");
            let fallback = spec.default_backend.as_ref().map(|b| {
                Arc::new(Route {
                    kind: PathKind::Prefix,
                    path: String::new(),
                    upstream: self.resolve(ingress, b, &mut problems),
                    origin: origin.clone(),
                    canary: None,
                })
            });
            if table.fallback.is_none() {
                table.fallback = fallback.clone();
            }
            let tls_hosts: Vec<String> = spec
                .tls
                .iter()
                .flatten()
                .flat_map(|t| t.hosts.iter().flatten())
                .map(|h| h.to_ascii_lowercase())
                .collect();
            for rule in spec.rules.iter().flatten() {
                let host = rule.host.as_deref().unwrap_or("").to_ascii_lowercase();
                let server = table.server_mut(&host);
                if server.fallback.is_none() {
                    server.fallback = fallback.clone();
                }
                if !host.is_empty() && tls_hosts.contains(&host) {
                    server.tls = true;
                    server.ssl_redirect = redirect;
                }
                for path in rule.http.iter().flat_map(|h| &h.paths) {
                    let (kind, text) = route_path(&path.path_type, path.path.as_deref());
                    if server
                        .routes
                        .iter()
                        .any(|r| r.kind == kind && r.path == text)
                    {
                        continue;
                    }
                    let upstream = self.resolve(ingress, &path.backend, &mut problems);
                    server.routes.push(Route {
                        kind,
                        path: text,
                        upstream,
                        origin: origin.clone(),
                        canary: None,
                    });
                }
            }
        }
        for ingress in canaries {
            self.attach_canary(&mut table, ingress, &mut problems);
        }
        for server in table.servers_mut() {
            server
                .routes
                .sort_by(|a, b| b.path.len().cmp(&a.path.len()).then(b.kind.cmp(&a.kind)));
        }
        (table, problems)
    }

    fn attach_canary(&self, table: &mut Table, ingress: &Ingress, problems: &mut Vec<Problem>) {
        let origin = origin(ingress);
        let total = annotation(ingress, "canary-weight-total")
            .and_then(|v| v.parse().ok())
            .unwrap_or(100);
        let weight: u32 = match annotation(ingress, "canary-weight").map(str::parse) {
            Some(Ok(w)) => w,
            Some(Err(_)) => {
                problems.push(Problem {
                    origin,
                    reason: "InvalidCanary",
                    message: "canary-weight is not a whole number from 0 to canary-weight-total"
                        .into(),
                });
                return;
            }
            None => 0,
        };
        let spec = ingress.spec.clone().unwrap_or_default();
        for rule in spec.rules.iter().flatten() {
            let host = rule.host.as_deref().unwrap_or("").to_ascii_lowercase();
            for path in rule.http.iter().flat_map(|h| &h.paths) {
                let (kind, text) = route_path(&path.path_type, path.path.as_deref());
                let upstream = self.resolve(ingress, &path.backend, problems);
                let main = table
                    .server_mut(&host)
                    .routes
                    .iter_mut()
                    .find(|r| r.kind == kind && r.path == text);
                match main {
                    Some(route) => {
                        route.canary = Some(Canary {
                            weight: weight.min(total),
                            total,
                            upstream,
                            origin: origin.clone(),
                        })
                    }
                    None => problems.push(Problem {
                        origin: origin.clone(),
                        reason: "CanaryWithoutMain",
                        message: format!(
                            "no Ingress routes host {host:?} path {:?}: a canary needs a main Ingress with the same host and path",
                            path.path.as_deref().unwrap_or("/")
                        ),
                    }),
                }
            }
        }
    }
}

/// A rule's path as the table keeps it.
fn route_path(path_type: &str, path: Option<&str>) -> (PathKind, String) {
    let path = path.unwrap_or("/");
    match path_type {
        "Exact" => (PathKind::Exact, path.to_string()),
        // Prefix and ImplementationSpecific
        _ => (PathKind::Prefix, path.trim_end_matches('/').to_string()),
    }
}

impl Table {
    fn server_mut(&mut self, host: &str) -> &mut Server {
        if host.is_empty() {
            &mut self.any
        } else if let Some(parent) = host.strip_prefix("*.") {
            self.wildcard.entry(parent.to_string()).or_default()
        } else {
            self.exact.entry(host.to_string()).or_default()
        }
    }

    fn servers_mut(&mut self) -> impl Iterator<Item = &mut Server> {
        self.exact
            .values_mut()
            .chain(self.wildcard.values_mut())
            .chain(std::iter::once(&mut self.any))
    }

    /// The server of a host for TLS decisions: exact, then wildcard.
    pub fn tls_server(&self, host: &str) -> Option<&Server> {
        self.exact.get(host).or_else(|| {
            host.split_once('.')
                .and_then(|(_, parent)| self.wildcard.get(parent))
        })
    }
}

#[cfg(test)]
mod tests;
