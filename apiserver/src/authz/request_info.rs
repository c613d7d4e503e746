//! Request → [`Attributes`], as upstream's `RequestInfoFactory` reads a request: paths under
//! `/api` and `/apis/<group>` with a version and more are resource requests whose verb comes
//! from the method (`get` becomes `list` or `watch` without a name, `delete` becomes
//! `deletecollection`); everything else is a non-resource request whose verb is the lowercase
//! method. A websocket `GET …/pods/x/exec` is therefore `get` on `pods/exec`, a `POST` is
//! `create`, as upstream authorizes them.

use http::Method;

use super::Attributes;
use crate::handler::Query;

/// Subresources of a namespace itself (`/api/v1/namespaces/x/status`), not resources in it.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

fn method_verb(method: &Method) -> &'static str {
    match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
}

/// The attributes of a request (the user is filled in by the caller).
pub fn parse(method: &Method, path: &str, query: &Query) -> Attributes {
    let non_resource = || Attributes {
        verb: method.as_str().to_ascii_lowercase(),
        path: path.to_string(),
        ..Attributes::default()
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    if parts.len() < 3 {
        return non_resource();
    }
    let (group, rest) = match parts[0] {
        "api" => ("", &parts[1..]),
        "apis" if parts.len() >= 4 => (parts[1], &parts[2..]),
        _ => return non_resource(),
    };
    let mut a = Attributes {
        resource_request: true,
        path: path.to_string(),
        api_group: group.to_string(),
        api_version: rest[0].to_string(),
        field_selector: query.get("fieldSelector").unwrap_or_default().to_string(),
        ..Attributes::default()
    };
    let mut rest = &rest[1..];
    // `/watch/…` and `/proxy/…` name their verb in the path (deprecated, still honoured).
    if matches!(rest[0], "watch" | "proxy") {
        if rest.len() < 2 {
            return non_resource();
        }
        a.verb = rest[0].to_string();
        rest = &rest[1..];
    } else {
        a.verb = method_verb(method).to_string();
    }
    if rest[0] == "namespaces"
        && let Some(ns) = rest.get(1)
    {
        a.namespace = ns.to_string();
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            rest = &rest[2..];
        }
    }
    if rest.len() >= 3 && a.verb != "proxy" {
        a.subresource = rest[2].to_string();
    }
    if rest.len() >= 2 {
        a.name = rest[1].to_string();
    }
    a.resource = rest[0].to_string();
    if a.name.is_empty() && a.verb == "get" {
        a.verb = if query.flag("watch") { "watch" } else { "list" }.into();
        // A list of one object by field selector is authorized as naming that object.
        if let Some(name) = query
            .get("fieldSelector")
            .and_then(|s| ekube_api::selector::FieldSelector::parse(s).ok())
            .and_then(|s| s.equals("metadata.name").map(str::to_string))
            .filter(|n| !n.is_empty() && !n.contains('/') && n != "." && n != "..")
        {
            a.name = name;
        }
    }
    if a.name.is_empty() && a.verb == "delete" {
        a.verb = "deletecollection".into();
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: Method, uri: &str) -> Attributes {
        let (path, q) = uri.split_once('?').unwrap_or((uri, ""));
        parse(&method, path, &Query::parse(Some(q)))
    }

    /// Resource request?, verb, group, namespace, resource, subresource, name.
    type Shape<'a> = (bool, &'a str, &'a str, &'a str, &'a str, &'a str, &'a str);

    fn shape(a: &Attributes) -> Shape<'_> {
        (
            a.resource_request,
            a.verb.as_str(),
            a.api_group.as_str(),
            a.namespace.as_str(),
            a.resource.as_str(),
            a.subresource.as_str(),
            a.name.as_str(),
        )
    }

    #[test]
    fn resource_requests() {
        let cases: &[(Method, &str, Shape)] = &[
            (
                Method::GET,
                "/api/v1/namespaces/dev/pods",
                (true, "list", "", "dev", "pods", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/dev/pods?watch=true",
                (true, "watch", "", "dev", "pods", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/pods",
                (true, "list", "", "", "pods", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/dev/pods/web",
                (true, "get", "", "dev", "pods", "", "web"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/dev/pods/web/log",
                (true, "get", "", "dev", "pods", "log", "web"),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/dev/pods/web/exec",
                (true, "create", "", "dev", "pods", "exec", "web"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/dev/pods/web/exec",
                (true, "get", "", "dev", "pods", "exec", "web"),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/dev/pods",
                (true, "deletecollection", "", "dev", "pods", "", ""),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/dev/pods/web",
                (true, "delete", "", "dev", "pods", "", "web"),
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/dev/deployments/web/scale",
                (true, "patch", "apps", "dev", "deployments", "scale", "web"),
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/dev",
                (true, "update", "", "dev", "namespaces", "", "dev"),
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/dev/finalize",
                (true, "update", "", "dev", "namespaces", "finalize", "dev"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces",
                (true, "list", "", "", "namespaces", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/nodes/n1/proxy/stats",
                (true, "get", "", "", "nodes", "proxy", "n1"),
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/dev/services/https:web:443/proxy/a/b",
                (
                    true,
                    "update",
                    "",
                    "dev",
                    "services",
                    "proxy",
                    "https:web:443",
                ),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/dev/pods/web/proxy/",
                (true, "delete", "", "dev", "pods", "proxy", "web"),
            ),
            (
                Method::OPTIONS,
                "/api/v1/namespaces/dev/services/web/proxy",
                (true, "", "", "dev", "services", "proxy", "web"),
            ),
            (
                Method::GET,
                "/api/v1/watch/namespaces/dev/pods",
                (true, "watch", "", "dev", "pods", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/dev/configmaps?fieldSelector=metadata.name%3Dcfg",
                (true, "list", "", "dev", "configmaps", "", "cfg"),
            ),
            (
                Method::POST,
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                (
                    true,
                    "create",
                    "authorization.k8s.io",
                    "",
                    "selfsubjectaccessreviews",
                    "",
                    "",
                ),
            ),
        ];
        for (method, uri, want) in cases {
            assert_eq!(shape(&info(method.clone(), uri)), *want, "{method} {uri}");
        }
    }

    #[test]
    fn list_field_selectors_are_kept() {
        let a = info(
            Method::GET,
            "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&watch=true",
        );
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("watch", ""));
        assert_eq!(a.field_selector, "spec.nodeName=n1");
    }

    #[test]
    fn non_resource_requests() {
        for (method, path, verb) in [
            (Method::GET, "/healthz", "get"),
            (Method::GET, "/api", "get"),
            (Method::GET, "/api/v1", "get"),
            (Method::GET, "/apis/apps/v1", "get"),
            (Method::GET, "/version", "get"),
            (Method::POST, "/openapi/v2", "post"),
        ] {
            let a = info(method, path);
            assert!(!a.resource_request, "{path}");
            assert_eq!((a.verb.as_str(), a.path.as_str()), (verb, path));
        }
    }
}
