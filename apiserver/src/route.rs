//! Request paths → what they address.

use ekube_api::resources::{self, ResourceInfo};

use crate::authz::review::{self, Virtual};
use crate::resource_metrics;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health(String),
    /// `/metrics` ([`crate::metrics`]).
    ComponentMetrics,
    Version,
    Api,
    Apis,
    Group(String),
    ResourceList {
        group: String,
        version: String,
    },
    OpenApiV2,
    OpenApiV3Root,
    OpenApiV3(String),
    Resource(Target),
    /// A create-only review resource ([`crate::authz::review`]), with its namespace.
    Review(&'static Virtual, Option<String>),
    /// `metrics.k8s.io` ([`crate::resource_metrics`]).
    Metrics(resource_metrics::Target),
    NotFound,
}

/// A resource path: `/api/v1/namespaces/default/pods/web/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub info: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

pub fn parse(path: &str) -> Route {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs.as_slice() {
        [h @ ("healthz" | "livez" | "readyz"), rest @ ..] => Route::Health(format!(
            "{h}{}",
            if rest.is_empty() {
                String::new()
            } else {
                format!("/{}", rest.join("/"))
            }
        )),
        ["version"] => Route::Version,
        ["metrics"] => Route::ComponentMetrics,
        ["api"] => Route::Api,
        ["apis"] => Route::Apis,
        ["openapi", "v2"] | ["swagger.json"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3Root,
        ["openapi", "v3", rest @ ..] => Route::OpenApiV3(rest.join("/")),
        ["api", version] => Route::ResourceList {
            group: String::new(),
            version: version.to_string(),
        },
        ["apis", group] => Route::Group(group.to_string()),
        ["apis", group, version] => Route::ResourceList {
            group: group.to_string(),
            version: version.to_string(),
        },
        ["api", version, rest @ ..] => resource("", version, rest),
        [
            "apis",
            resource_metrics::GROUP,
            resource_metrics::VERSION,
            rest @ ..,
        ] => resource_metrics::route(rest).map_or(Route::NotFound, Route::Metrics),
        ["apis", group, version, rest @ ..] => match review::find(group, version, rest) {
            Some((r, ns)) => Route::Review(r, ns.map(str::to_string)),
            None => resource(group, version, rest),
        },
        _ => Route::NotFound,
    }
}

/// Whether `<plural>/<sub>` exists.
pub fn has_subresource(info: &ResourceInfo, sub: &str) -> bool {
    match sub {
        "status" => info.status,
        "scale" => info.scale,
        _ => matches!(
            (info.group, info.plural, sub),
            (
                "",
                "pods",
                "binding"
                    | "eviction"
                    | "ephemeralcontainers"
                    | "log"
                    | "exec"
                    | "attach"
                    | "portforward"
                    | "proxy"
            ) | ("", "services" | "nodes", "proxy")
                | ("", "namespaces", "finalize")
                | ("", "serviceaccounts", "token")
                | (
                    "certificates.k8s.io",
                    "certificatesigningrequests",
                    "approval"
                )
        ),
    }
}

fn resource(group: &str, version: &str, rest: &[&str]) -> Route {
    let find = |plural: &str| resources::find(group, version, plural);
    let target = |info: &'static ResourceInfo,
                  namespace: Option<&str>,
                  name: Option<&str>,
                  sub: Option<&str>| {
        if sub.is_some_and(|s| !has_subresource(info, s)) {
            return Route::NotFound;
        }
        Route::Resource(Target {
            info,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        })
    };
    match rest {
        // /api/v1/namespaces/{ns}/{plural}[/{name}[/{sub}]]
        ["namespaces", ns, plural, tail @ ..] if find(plural).is_some_and(|r| r.namespaced) => {
            match (find(plural), tail) {
                (Some(info), []) => target(info, Some(ns), None, None),
                (Some(info), [name]) => target(info, Some(ns), Some(name), None),
                (Some(info), [name, sub]) => target(info, Some(ns), Some(name), Some(sub)),
                // `…/<name>/proxy/<path to the backend>`
                (Some(info), [name, "proxy", _, ..]) => {
                    target(info, Some(ns), Some(name), Some("proxy"))
                }
                _ => Route::NotFound,
            }
        }
        // /api/v1/{plural}[/{name}[/{sub}]] (cluster-scoped, or namespaced across all namespaces)
        [plural, tail @ ..] => match find(plural) {
            Some(info) => match tail {
                [] => target(info, None, None, None),
                [name] if !info.namespaced => target(info, None, Some(name), None),
                [name, sub] if !info.namespaced => target(info, None, Some(name), Some(sub)),
                [name, "proxy", _, ..] if !info.namespaced => {
                    target(info, None, Some(name), Some("proxy"))
                }
                _ => Route::NotFound,
            },
            None => Route::NotFound,
        },
        [] => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let Route::Resource(t) = parse("/api/v1/namespaces/default/pods/web/status") else {
            panic!()
        };
        assert_eq!(
            (
                t.info.plural,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.subresource.as_deref()
            ),
            ("pods", Some("default"), Some("web"), Some("status"))
        );
        let Route::Resource(t) = parse("/api/v1/namespaces/kube-system") else {
            panic!()
        };
        assert_eq!(
            (t.info.plural, t.name.as_deref()),
            ("namespaces", Some("kube-system"))
        );
        let Route::Resource(t) = parse("/apis/apps/v1/deployments") else {
            panic!()
        };
        assert_eq!((t.info.plural, t.namespace), ("deployments", None));
        assert_eq!(parse("/api/v1/namespaces/x/frobs"), Route::NotFound);
        assert_eq!(
            parse("/apis/apps/v1"),
            Route::ResourceList {
                group: "apps".into(),
                version: "v1".into()
            }
        );
        assert_eq!(parse("/api/v1/pods/web"), Route::NotFound);
        assert!(matches!(
            parse("/apis/authorization.k8s.io/v1/namespaces/dev/localsubjectaccessreviews"),
            Route::Review(r, Some(ns)) if r.kind == "LocalSubjectAccessReview" && ns == "dev"
        ));
        assert_eq!(
            parse("/apis/authorization.k8s.io/v1/namespaces/dev/selfsubjectaccessreviews"),
            Route::NotFound
        );
    }

    #[test]
    fn proxy_paths_carry_any_tail() {
        let shape = |path: &str| match parse(path) {
            Route::Resource(t) => Some((
                t.info.plural,
                t.namespace,
                t.name.unwrap_or_default(),
                t.subresource.unwrap_or_default(),
            )),
            _ => None,
        };
        assert_eq!(
            shape("/api/v1/namespaces/dev/services/https:web:8443/proxy/a/b/c"),
            Some((
                "services",
                Some("dev".into()),
                "https:web:8443".into(),
                "proxy".into()
            ))
        );
        assert_eq!(
            shape("/api/v1/namespaces/dev/pods/web:8080/proxy"),
            Some((
                "pods",
                Some("dev".into()),
                "web:8080".into(),
                "proxy".into()
            ))
        );
        assert_eq!(
            shape("/api/v1/nodes/n1/proxy/stats/summary"),
            Some(("nodes", None, "n1".into(), "proxy".into()))
        );
        assert_eq!(shape("/api/v1/namespaces/dev/configmaps/c/proxy/a"), None);
        assert_eq!(shape("/api/v1/namespaces/dev/pods/web/log/extra"), None);
        assert_eq!(shape("/api/v1/namespaces/dev/pods/web/proxyx/a"), None);
    }
}
