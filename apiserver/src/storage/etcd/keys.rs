//! ekube's keys (`/registry/<group>/<plural>/…`, `core` for the legacy group) in etcd as
//! kube-apiserver lays out most of its keys: `/registry/<plural>/…` for built-in resources. (A
//! few built-ins it names otherwise, such as `services/specs` and `minions`; ekube does not.)
//!
//! The mapping is one-to-one: built-in plurals are unique and contain no dot, and a custom
//! resource's group always contains one, so the first segment of an etcd key tells which
//! form it is.

use ekube_api::resources::RESOURCES;

fn builtin_group(group: &str) -> bool {
    group == "core"
        || RESOURCES
            .iter()
            .any(|r| !r.group.is_empty() && r.group == group)
}

/// The group segment ekube's keys use for a built-in plural.
fn group_of(plural: &str) -> Option<String> {
    let r = RESOURCES.iter().find(|r| r.plural == plural)?;
    let prefix = r.key_prefix();
    let group = prefix.strip_prefix("/registry/")?.split('/').next()?;
    Some(group.to_string())
}

pub fn to_etcd(key: &str) -> String {
    if let Some(rest) = key.strip_prefix("/registry/")
        && let Some((group, after)) = rest.split_once('/')
        && builtin_group(group)
        && !after.is_empty()
    {
        return format!("/registry/{after}");
    }
    key.to_string()
}

pub fn from_etcd(key: &str) -> String {
    if let Some(rest) = key.strip_prefix("/registry/")
        && let Some((plural, _)) = rest.split_once('/')
        && !plural.contains('.')
        && let Some(group) = group_of(plural)
    {
        return format!("/registry/{group}/{rest}");
    }
    key.to_string()
}
