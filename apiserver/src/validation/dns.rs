//! A pod's `dnsPolicy` and `dnsConfig`, validated as upstream validates them: the policies the
//! kubelet knows, and a `dnsConfig` that fits the resolv.conf it writes.

use serde_json::Value;

use super::{DNS1123_SUBDOMAIN, is_dns1123_subdomain};
use crate::errors::Cause;

/// What a resolv.conf written by upstream's kubelet can hold.
const MAX_DNS_NAMESERVERS: usize = 3;
const MAX_DNS_SEARCH_PATHS: usize = 32;
const MAX_DNS_SEARCH_CHARS: usize = 2048;

pub(super) fn validate(spec: &Value, at: &str, causes: &mut Vec<Cause>) {
    const POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
    let policy = spec.get("dnsPolicy").and_then(Value::as_str);
    if let Some(p) = policy.filter(|p| !POLICIES.contains(p)) {
        causes.push(Cause::not_supported(format!("{at}.dnsPolicy"), p, POLICIES));
    }
    let none = policy == Some("None");
    let Some(config) = spec.get("dnsConfig").filter(|c| !c.is_null()) else {
        if none {
            causes.push(Cause::required_with(
                format!("{at}.dnsConfig"),
                "must provide `dnsConfig` when `dnsPolicy` is None",
            ));
        }
        return;
    };
    let at = format!("{at}.dnsConfig");
    let strings = |field: &str| -> Vec<&str> {
        config
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|v| v.as_str().unwrap_or_default())
            .collect()
    };
    let nameservers = strings("nameservers");
    if none && nameservers.is_empty() {
        causes.push(Cause::required_with(
            format!("{at}.nameservers"),
            "must provide at least one DNS nameserver when `dnsPolicy` is None",
        ));
    }
    if nameservers.len() > MAX_DNS_NAMESERVERS {
        causes.push(Cause::invalid(
            format!("{at}.nameservers"),
            format!("{nameservers:?}"),
            &format!("must not have more than {MAX_DNS_NAMESERVERS} nameservers"),
        ));
    }
    for (i, ns) in nameservers.iter().enumerate() {
        if ns.parse::<std::net::IpAddr>().is_err() {
            causes.push(Cause::invalid(
                format!("{at}.nameservers[{i}]"),
                format!("\"{ns}\""),
                "must be a valid IP address",
            ));
        }
    }
    let searches = strings("searches");
    if searches.len() > MAX_DNS_SEARCH_PATHS {
        causes.push(Cause::invalid(
            format!("{at}.searches"),
            format!("{searches:?}"),
            &format!("must not have more than {MAX_DNS_SEARCH_PATHS} search paths"),
        ));
    }
    if searches.join(" ").len() > MAX_DNS_SEARCH_CHARS {
        causes.push(Cause::invalid(
            format!("{at}.searches"),
            format!("{searches:?}"),
            &format!(
                "must not have more than {MAX_DNS_SEARCH_CHARS} characters (including spaces) in the search list"
            ),
        ));
    }
    for (i, search) in searches.iter().enumerate() {
        // A trailing dot (an absolute name) is allowed.
        let name = search.strip_suffix('.').unwrap_or(search);
        if !is_dns1123_subdomain(name) {
            causes.push(Cause::invalid(
                format!("{at}.searches[{i}]"),
                format!("\"{search}\""),
                DNS1123_SUBDOMAIN,
            ));
        }
    }
    for (i, option) in config
        .get("options")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if option
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            causes.push(Cause::required_with(
                format!("{at}.options[{i}]"),
                "Option.Name must not be empty",
            ));
        }
    }
}
