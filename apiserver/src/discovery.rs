//! Discovery documents: `/api`, `/apis`, `/apis/<group>` and the per-version resource lists,
//! in the legacy (non-aggregated) format every client understands. Besides the resource table
//! and the review APIs, `metrics.k8s.io` ([`crate::resource_metrics`]) is listed.

use ekube_api::resources::{self, RESOURCES, ResourceInfo};
use serde_json::{Value, json};

use crate::authz::review::VIRTUAL;
use crate::resource_metrics;

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The verbs of the `proxy` subresources: those of the methods they pass on.
const PROXY_VERBS: &[&str] = &["create", "delete", "get", "patch", "update"];

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_json(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": versions,
        "preferredVersion": versions[0],
    })
}

/// Every served group with its versions: stored resources' and the review APIs'.
fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups = resources::groups();
    for r in VIRTUAL {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => groups.push((r.group, vec![r.version])),
        }
    }
    groups.push((resource_metrics::GROUP, vec![resource_metrics::VERSION]));
    groups
}

pub fn api_group_list() -> Value {
    let groups: Vec<Value> = groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, versions)| group_json(g, &versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(group: &str) -> Option<Value> {
    let (_, versions) = groups()
        .into_iter()
        .find(|(g, _)| *g == group && !g.is_empty())?;
    let mut doc = group_json(group, &versions);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

fn entry(r: &ResourceInfo) -> Value {
    let mut e = json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": if r.review { &["create"][..] } else { VERBS },
    });
    if !r.short_names.is_empty() {
        e["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        e["categories"] = json!(r.categories);
    }
    e
}

fn sub(r: &ResourceInfo, name: &str, kind: &str, group: Option<&str>, verbs: &[&str]) -> Value {
    let mut e = json!({
        "name": format!("{}/{name}", r.plural),
        "singularName": "",
        "namespaced": r.namespaced,
        "kind": kind,
        "verbs": verbs,
    });
    if let Some((g, v)) = group.and_then(|g| g.split_once('/')) {
        e["group"] = json!(g);
        e["version"] = json!(v);
    }
    e
}

pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut out = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        out.push(entry(r));
        if r.status {
            out.push(sub(r, "status", r.kind, None, &["get", "patch", "update"]));
        }
        if r.scale {
            out.push(sub(
                r,
                "scale",
                "Scale",
                Some("autoscaling/v1"),
                &["get", "patch", "update"],
            ));
        }
        match (r.group, r.plural) {
            ("", "pods") => {
                out.push(sub(r, "binding", "Binding", None, &["create"]));
                out.push(sub(
                    r,
                    "ephemeralcontainers",
                    "Pod",
                    None,
                    &["get", "patch", "update"],
                ));
                out.push(sub(
                    r,
                    "eviction",
                    "Eviction",
                    Some("policy/v1"),
                    &["create"],
                ));
                out.push(sub(r, "log", "Pod", None, &["get"]));
                out.push(sub(r, "exec", "PodExecOptions", None, &["create", "get"]));
                out.push(sub(
                    r,
                    "attach",
                    "PodAttachOptions",
                    None,
                    &["create", "get"],
                ));
                out.push(sub(
                    r,
                    "portforward",
                    "PodPortForwardOptions",
                    None,
                    &["create", "get"],
                ));
                out.push(sub(r, "proxy", "PodProxyOptions", None, PROXY_VERBS));
            }
            ("", "services") => out.push(sub(r, "proxy", "ServiceProxyOptions", None, PROXY_VERBS)),
            ("", "nodes") => out.push(sub(r, "proxy", "NodeProxyOptions", None, PROXY_VERBS)),
            ("", "namespaces") => out.push(sub(r, "finalize", "Namespace", None, &["update"])),
            ("", "serviceaccounts") => out.push(sub(
                r,
                "token",
                "TokenRequest",
                Some("authentication.k8s.io/v1"),
                &["create"],
            )),
            ("certificates.k8s.io", "certificatesigningrequests") => out.push(sub(
                r,
                "approval",
                r.kind,
                None,
                &["get", "patch", "update"],
            )),
            _ => {}
        }
    }
    for r in VIRTUAL
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        out.push(json!({
            "name": r.plural,
            "singularName": r.kind.to_ascii_lowercase(),
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": ["create"],
        }));
    }
    if group == resource_metrics::GROUP && version == resource_metrics::VERSION {
        out.extend(resource_metrics::resources());
    }
    if out.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": out}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_subresources_are_listed_with_upstreams_verbs() {
        let list = resource_list("", "v1").unwrap();
        for (name, kind) in [
            ("pods/proxy", "PodProxyOptions"),
            ("services/proxy", "ServiceProxyOptions"),
            ("nodes/proxy", "NodeProxyOptions"),
        ] {
            let entry = list["resources"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name)
                .unwrap_or_else(|| panic!("{name} is not listed"));
            assert_eq!(entry["kind"], kind, "{name}");
            assert_eq!(
                entry["verbs"],
                json!(["create", "delete", "get", "patch", "update"]),
                "{name}"
            );
        }
    }
}
