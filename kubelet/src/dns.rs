//! A pod's DNS as upstream's kubelet (`pkg/kubelet/network/dns`) forms it: the resolver
//! configuration its `dnsPolicy` asks for, with `dnsConfig` merged on top and the result cut
//! to what a resolver reads, and the hostname and domain the pod is known by.
//!
//! The policy picks a base: `ClusterFirst` (and `ClusterFirstWithHostNet`) the cluster DNS
//! server with the cluster search path before the node's own, `Default` the node's
//! resolv.conf (`--resolv-conf`), `None` nothing. A host-network pod asking for `ClusterFirst`
//! gets `Default`, as upstream, since it resolves as the node does unless it says
//! `ClusterFirstWithHostNet`.

use std::net::IpAddr;
use std::path::Path;

use k8s_openapi::api::core::v1::{Pod, PodDNSConfig};

use crate::cri;

/// Most nameservers a resolver reads (glibc's `MAXNS`); upstream's `MaxDNSNameservers`.
const MAX_NAMESERVERS: usize = 3;
/// Upstream's `MaxDNSSearchPaths` and `MaxDNSSearchListChars`.
const MAX_SEARCH_PATHS: usize = 32;
const MAX_SEARCH_CHARS: usize = 2048;
/// Longest search path kept: glibc aborts on a search domain over 255 characters, so upstream
/// drops those longer than a DNS subdomain may be.
const MAX_SEARCH_PATH_LEN: usize = 253;
/// The Linux nodename holds at most 64 characters.
const MAX_FQDN_LEN: usize = 64;
/// Longest hostname (a DNS label).
const MAX_HOSTNAME_LEN: usize = 63;

/// What the node contributes: the cluster's DNS servers and domain, and the node's resolver.
pub struct Node<'a> {
    pub cluster_dns: &'a [IpAddr],
    pub cluster_domain: &'a str,
    /// The node's resolv.conf, parsed (`--resolv-conf`); `None` when that flag is empty.
    pub host: Option<&'a cri::DnsConfig>,
}

/// The node's resolver from `path` (`--resolv-conf`); `None` for an empty path.
pub fn read_host_config(path: &Path) -> Result<Option<cri::DnsConfig>, String> {
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    std::fs::read_to_string(path)
        .map(|text| Some(parse_resolv_conf(&text)))
        .map_err(|e| {
            format!(
                "reading the node's resolver {} (--resolv-conf): {e}",
                path.display()
            )
        })
}

/// A resolver configuration and the limits it was cut to fit, to be reported as upstream's
/// `DNSConfigForming` warnings.
pub struct Formed {
    pub config: cri::DnsConfig,
    pub warnings: Vec<String>,
}

/// Parses a resolv.conf as upstream does: every `nameserver`, the last `search` line (without
/// `.` and trailing dots), and `options` (a later option of a name replaces an earlier one).
pub fn parse_resolv_conf(text: &str) -> cri::DnsConfig {
    let mut out = cri::DnsConfig::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["nameserver", server, ..] => out.servers.push((*server).to_owned()),
            ["search", paths @ ..] => {
                out.searches = paths
                    .iter()
                    .filter(|p| **p != ".")
                    .map(|p| p.trim_end_matches('.').to_owned())
                    .collect();
            }
            ["options", options @ ..] => {
                out.options = merge_options(&out.options, options.iter().map(|o| (*o).to_owned()));
            }
            _ => {}
        }
    }
    out
}

/// The resolver configuration of `pod`.
pub fn pod_config(pod: &Pod, node: &Node) -> Result<Formed, String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network == Some(true);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster = match policy {
        "None" => None,
        "ClusterFirstWithHostNet" => Some(true),
        "ClusterFirst" => Some(!host_network),
        "Default" => Some(false),
        other => {
            return Err(format!(
                "spec.dnsPolicy {other:?} is not one of ClusterFirst, ClusterFirstWithHostNet, \
                 Default, None"
            ));
        }
    };
    let mut config = match cluster {
        None => cri::DnsConfig::default(),
        // Without a cluster DNS server, ClusterFirst falls back to the node's resolver.
        Some(true) if !node.cluster_dns.is_empty() => cri::DnsConfig {
            servers: node.cluster_dns.iter().map(IpAddr::to_string).collect(),
            searches: cluster_searches(
                pod.metadata.namespace.as_deref().unwrap_or("default"),
                node.cluster_domain,
                node.host.map(|h| h.searches.as_slice()).unwrap_or_default(),
            ),
            options: vec!["ndots:5".into()],
        },
        Some(_) => match node.host {
            Some(host) => host.clone(),
            // No node resolver (`--resolv-conf ""`): as upstream, the resolver on localhost,
            // which is what a resolver library does without nameservers.
            None => cri::DnsConfig {
                servers: vec!["127.0.0.1".into()],
                searches: vec![".".into()],
                options: Vec::new(),
            },
        },
    };
    if let Some(extra) = &spec.dns_config {
        merge(&mut config, extra);
    }
    Ok(fit_limits(config))
}

/// `<ns>.svc.<domain> svc.<domain> <domain>`, then the node's search path, without repeats.
fn cluster_searches(ns: &str, domain: &str, host: &[String]) -> Vec<String> {
    if domain.is_empty() {
        return host.to_vec();
    }
    let cluster = [
        format!("{ns}.svc.{domain}"),
        format!("svc.{domain}"),
        domain.to_owned(),
    ];
    dedup(cluster.into_iter().chain(host.iter().cloned()))
}

/// The first occurrence of each item, in order.
fn dedup(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// `dnsConfig` on top of `base`: nameservers and searches appended (without repeats), options
/// merged by name with the pod's value winning.
fn merge(base: &mut cri::DnsConfig, extra: &PodDNSConfig) {
    base.servers = dedup(
        base.servers
            .drain(..)
            .chain(extra.nameservers.iter().flatten().cloned()),
    );
    base.searches = dedup(
        base.searches
            .drain(..)
            .chain(extra.searches.iter().flatten().cloned()),
    );
    let options = extra.options.iter().flatten().filter_map(|o| {
        let name = o.name.as_deref().filter(|n| !n.is_empty())?;
        Some(match o.value.as_deref() {
            Some(v) if !v.is_empty() => format!("{name}:{v}"),
            _ => name.to_owned(),
        })
    });
    base.options = merge_options(&base.options, options);
}

/// `base` with each of `more` replacing the option of its name, or appended.
fn merge_options(base: &[String], more: impl IntoIterator<Item = String>) -> Vec<String> {
    let name = |o: &str| o.split(':').next().unwrap_or_default().to_owned();
    let mut out = base.to_vec();
    for option in more {
        match out.iter_mut().find(|o| name(o) == name(&option)) {
            Some(slot) => *slot = option,
            None => out.push(option),
        }
    }
    out
}

/// Cuts `config` to what a resolver reads, as upstream's `formDNSConfigFitsLimits`: the first
/// 3 nameservers; the first 32 search paths, without any too long for glibc, and the last
/// ones dropped until the line is at most 2048 characters.
fn fit_limits(mut config: cri::DnsConfig) -> Formed {
    let mut warnings = Vec::new();
    if config.servers.len() > MAX_NAMESERVERS {
        config.servers.truncate(MAX_NAMESERVERS);
        warnings.push(format!(
            "Nameserver limits were exceeded, some nameservers have been omitted, the applied \
             nameserver line is: {}",
            config.servers.join(" ")
        ));
    }
    let before = config.searches.len();
    config.searches.truncate(MAX_SEARCH_PATHS);
    config.searches.retain(|s| s.len() <= MAX_SEARCH_PATH_LEN);
    while config.searches.join(" ").len() > MAX_SEARCH_CHARS {
        config.searches.pop();
    }
    if config.searches.len() < before {
        warnings.push(format!(
            "Search Line limits were exceeded, some search paths have been omitted, the applied \
             search line is: {}",
            config.searches.join(" ")
        ));
    }
    Formed { config, warnings }
}

/// The name a pod is known by: its hostname (`spec.hostname`, else its name cut to a DNS
/// label) and, with `spec.subdomain`, its domain `<subdomain>.<ns>.svc.<cluster domain>`.
#[derive(Debug, PartialEq)]
pub struct PodName {
    pub hostname: String,
    pub domain: Option<String>,
}

impl PodName {
    pub fn of(pod: &Pod, cluster_domain: &str) -> Result<Self, String> {
        let spec = pod.spec.clone().unwrap_or_default();
        let hostname = match spec.hostname.as_deref().filter(|h| !h.is_empty()) {
            Some(h) => {
                check_label("spec.hostname", h)?;
                h.to_owned()
            }
            None => truncated(pod.metadata.name.as_deref().unwrap_or_default()),
        };
        let domain = match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                check_label("spec.subdomain", sub)?;
                let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                Some(format!("{sub}.{ns}.svc.{cluster_domain}"))
            }
            None => None,
        };
        Ok(Self { hostname, domain })
    }

    /// `<hostname>.<domain>`, when there is a domain.
    pub fn fqdn(&self) -> Option<String> {
        self.domain
            .as_ref()
            .map(|d| format!("{}.{d}", self.hostname))
    }

    /// The kernel hostname (UTS nodename) of the pod: the FQDN with `setHostnameAsFQDN` (and a
    /// subdomain), else the hostname.
    pub fn kernel_hostname(&self, as_fqdn: bool) -> Result<String, String> {
        match self.fqdn().filter(|_| as_fqdn) {
            Some(fqdn) if fqdn.len() > MAX_FQDN_LEN => Err(format!(
                "failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is \
                 too long ({MAX_FQDN_LEN} characters is the max, {} characters requested)",
                fqdn.len()
            )),
            Some(fqdn) => Ok(fqdn),
            None => Ok(self.hostname.clone()),
        }
    }
}

/// A pod name cut to a hostname as upstream's `truncatePodHostnameIfNeeded`: at most 63
/// characters, without trailing `-` or `.`.
fn truncated(name: &str) -> String {
    if name.len() <= MAX_HOSTNAME_LEN {
        return name.to_owned();
    }
    name[..MAX_HOSTNAME_LEN]
        .trim_end_matches(['-', '.'])
        .to_owned()
}

fn check_label(field: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= MAX_HOSTNAME_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!("pod {field} {value:?} is not a valid DNS label"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn host() -> cri::DnsConfig {
        parse_resolv_conf(
            "# node resolver\nnameserver 192.0.2.53\nsearch old.example\n\
             search corp.example. lab.example .\nnameserver 192.0.2.54 ; second\n\
             options ndots:2 timeout:1\noptions ndots:3 rotate\n",
        )
    }

    fn formed(spec: serde_json::Value) -> Formed {
        let host = host();
        let node = Node {
            cluster_dns: &["10.96.0.10".parse().unwrap()],
            cluster_domain: "cluster.local",
            host: Some(&host),
        };
        pod_config(&pod(spec), &node).unwrap()
    }

    #[test]
    fn the_node_resolver_is_read_as_upstream_reads_it() {
        let h = host();
        assert_eq!(h.servers, ["192.0.2.53", "192.0.2.54"]);
        assert_eq!(h.searches, ["corp.example", "lab.example"]);
        assert_eq!(h.options, ["ndots:3", "timeout:1", "rotate"]);
    }

    #[test]
    fn cluster_first_puts_the_cluster_before_the_node() {
        let f = formed(serde_json::json!({}));
        assert_eq!(f.config.servers, ["10.96.0.10"]);
        assert_eq!(
            f.config.searches,
            [
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example",
                "lab.example"
            ]
        );
        assert_eq!(f.config.options, ["ndots:5"]);
        assert!(f.warnings.is_empty());
    }

    #[test]
    fn host_network_resolves_as_the_node_unless_it_asks_for_the_cluster() {
        let f = formed(serde_json::json!({"hostNetwork": true, "dnsPolicy": "ClusterFirst"}));
        assert_eq!(f.config, host());
        let f = formed(serde_json::json!({"hostNetwork": true,
            "dnsPolicy": "ClusterFirstWithHostNet"}));
        assert_eq!(f.config.servers, ["10.96.0.10"]);
        let f = formed(serde_json::json!({"dnsPolicy": "Default"}));
        assert_eq!(f.config, host());
    }

    #[test]
    fn dns_config_is_merged_on_top() {
        let f = formed(serde_json::json!({"dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["192.0.2.1"], "searches": ["a.example"],
            "options": [{"name": "ndots", "value": "1"}, {"name": "edns0"}]}}));
        assert_eq!(f.config.servers, ["192.0.2.1"]);
        assert_eq!(f.config.searches, ["a.example"]);
        assert_eq!(f.config.options, ["ndots:1", "edns0"]);
        let f = formed(serde_json::json!({"dnsConfig": {
            "nameservers": ["10.96.0.10", "192.0.2.1"], "searches": ["svc.cluster.local", "x"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "single-request"}]}}));
        assert_eq!(f.config.servers, ["10.96.0.10", "192.0.2.1"]);
        assert_eq!(f.config.searches.last().unwrap(), "x");
        assert_eq!(f.config.searches.len(), 6);
        assert_eq!(f.config.options, ["ndots:2", "single-request"]);
    }

    #[test]
    fn the_merged_result_is_cut_to_the_resolver_limits() {
        let searches: Vec<String> = (0..40).map(|i| format!("s{i}.example")).collect();
        let f = formed(serde_json::json!({"dnsPolicy": "Default", "dnsConfig": {
            "nameservers": ["192.0.2.1", "192.0.2.2"], "searches": searches}}));
        assert_eq!(f.config.servers, ["192.0.2.53", "192.0.2.54", "192.0.2.1"]);
        assert_eq!(f.config.searches.len(), MAX_SEARCH_PATHS);
        assert_eq!(f.warnings.len(), 2, "{:?}", f.warnings);
        let long: Vec<String> = (0..20).map(|i| format!("{i}{}", "a".repeat(200))).collect();
        let f = formed(serde_json::json!({"dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["192.0.2.1"], "searches": long}}));
        assert!(f.config.searches.join(" ").len() <= MAX_SEARCH_CHARS);
        assert_eq!(f.config.searches.len(), 10);
        assert!(f.warnings[0].starts_with("Search Line limits were exceeded"));
    }

    #[test]
    fn hostname_subdomain_and_fqdn() {
        let p = pod(serde_json::json!({"hostname": "db-0", "subdomain": "db"}));
        let n = PodName::of(&p, "cluster.local").unwrap();
        assert_eq!(n.fqdn().as_deref(), Some("db-0.db.shop.svc.cluster.local"));
        assert_eq!(n.kernel_hostname(false).unwrap(), "db-0");
        assert_eq!(
            n.kernel_hostname(true).unwrap(),
            "db-0.db.shop.svc.cluster.local"
        );
        let p = pod(serde_json::json!({}));
        let n = PodName::of(&p, "cluster.local").unwrap();
        assert_eq!(n.kernel_hostname(true).unwrap(), "web");
        let p = pod(serde_json::json!({"hostname": "h".repeat(40), "subdomain": "s"}));
        let err = PodName::of(&p, "cluster.local")
            .unwrap()
            .kernel_hostname(true)
            .unwrap_err();
        assert!(
            err.contains("is too long (64 characters is the max"),
            "{err}"
        );
        let p = pod(serde_json::json!({"hostname": "Bad_Name"}));
        assert!(PodName::of(&p, "cluster.local").is_err());
        assert_eq!(
            truncated(&format!("{}-{}", "a".repeat(62), "b")),
            "a".repeat(62)
        );
    }
}
