//! Rendering the proxy's model as kube-proxy's nftables rules (`pkg/proxy/nftables`), and the
//! `nft -f` script that gets the kernel from one rendering to the next.
//!
//! Everything lives in one table, `ip kube-proxy`. The fixed part follows kube-proxy's layout:
//! base chains at the `dstnat`/`filter`/`srcnat` priorities jumping into `services`,
//! `masquerading` and the `*-check` chains, and verdict maps keyed by address, protocol and
//! port (`service-ips`, `service-nodeports`, `no-endpoint-services`, `no-endpoint-nodeports`,
//! `firewall-ips`) so that finding a service is one map lookup however many there are. Each
//! service port gets a `service-…` chain that picks an endpoint with
//! `numgen random mod N vmap`, an `external-…` chain for NodePort traffic and, for
//! `externalTrafficPolicy: Local`, a `local-…` chain; each endpoint an `endpoint-…` chain
//! that DNATs (and, with ClientIP affinity, an `affinity-…` set that remembers clients). Chain
//! names are kube-proxy's: `<kind>-<HASH>-<namespace>/<name>/<protocol>/<port name>`.
//!
//! Pods' hostPorts, which upstream leaves to the CNI `portmap` plugin, get a `hostports` chain
//! in the same table (entered after `services`, for local destinations), as the iptables mode
//! writes the kubelet's old hostport rules.
//!
//! [`render`] is a pure function from the [`Model`] to a [`Ruleset`]; [`script`] turns the
//! previous and the new ruleset into one transaction: the whole table re-created when there is
//! no trusted previous one, otherwise only the chains that changed (re-filled), the map
//! elements that changed, and the chains and sets no longer used (deleted).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write,
};

use crate::{
    datapath::{Affinity, BackendAddr, Frontend},
    rules::{Group, Model, hash, proto_name},
};

/// The table (family `ip`).
pub const TABLE: &str = "kube-proxy";

/// The kube-proxy "masquerade" mark bit.
const MASQ_MARK: &str = "0x4000";

/// Sets and verdict maps of the fixed layout: name, type, comment.
const CONTAINERS: [(&str, &str, &str); 7] = [
    ("cluster-ips", "ipv4_addr", "Active ClusterIPs"),
    (
        "nodeport-ips",
        "ipv4_addr",
        "IPs that accept NodePort traffic",
    ),
    (
        SERVICE_IPS,
        "ipv4_addr . inet_proto . inet_service : verdict",
        "ClusterIP, ExternalIP and LoadBalancer IP traffic",
    ),
    (
        SERVICE_NODEPORTS,
        "inet_proto . inet_service : verdict",
        "NodePort traffic",
    ),
    (
        NO_ENDPOINT_SERVICES,
        "ipv4_addr . inet_proto . inet_service : verdict",
        "vmap to drop or reject packets to services with no endpoints",
    ),
    (
        NO_ENDPOINT_NODEPORTS,
        "inet_proto . inet_service : verdict",
        "vmap to drop or reject packets to service nodeports with no endpoints",
    ),
    (
        "firewall-ips",
        "ipv4_addr . inet_proto . inet_service : verdict",
        "destinations that are subject to LoadBalancerSourceRanges",
    ),
];

const SERVICE_IPS: &str = "service-ips";
const SERVICE_NODEPORTS: &str = "service-nodeports";
const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";

/// Base chains: name, `type … hook … priority …`, rules. Written only when the table is
/// (re-)created. Priorities are numbers because older `nft` (1.0.6) takes the names `dstnat`
/// and `srcnat` on some hooks only: `dstnat - 10` = -110, `dstnat` = -100, `filter` = 0,
/// `srcnat` = 100.
const BASE_CHAINS: [(&str, &str, &[&str]); 8] = [
    (
        "filter-prerouting-pre-dnat",
        "type filter hook prerouting priority -110",
        &["ct state new jump firewall-check"],
    ),
    (
        "filter-output-pre-dnat",
        "type filter hook output priority -110",
        &["ct state new jump firewall-check"],
    ),
    (
        "filter-input",
        "type filter hook input priority 0",
        &[
            "ct state new jump nodeport-endpoints-check",
            "ct state new jump service-endpoints-check",
        ],
    ),
    (
        "filter-forward",
        "type filter hook forward priority 0",
        &[
            "ct state new jump service-endpoints-check",
            "ct state new jump cluster-ips-check",
        ],
    ),
    (
        "filter-output",
        "type filter hook output priority 0",
        &[
            "ct state new jump service-endpoints-check",
            "ct state new jump cluster-ips-check",
        ],
    ),
    (
        "nat-prerouting",
        "type nat hook prerouting priority -100",
        &["jump services", "fib daddr type local jump hostports"],
    ),
    (
        "nat-output",
        "type nat hook output priority -100",
        &["jump services", "fib daddr type local jump hostports"],
    ),
    (
        "nat-postrouting",
        "type nat hook postrouting priority 100",
        &["jump masquerading"],
    ),
];

/// Regular chains every ruleset has (their rules are in [`Ruleset::chains`]).
const FIXED_CHAINS: [&str; 9] = [
    "services",
    "masquerading",
    "mark-for-masquerade",
    "reject-chain",
    "firewall-check",
    "nodeport-endpoints-check",
    "service-endpoints-check",
    "cluster-ips-check",
    "hostports",
];

/// One rendering of the model: what the table holds besides its fixed declarations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Every regular chain (fixed and per service) and its rules.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Elements of each set and map of [`CONTAINERS`]: key → the text after the key (the
    /// element's comment and `: verdict` of a map; empty for a set).
    pub elements: BTreeMap<&'static str, BTreeMap<String, String>>,
    /// Session-affinity sets → their timeout in seconds.
    pub affinity: BTreeMap<String, u32>,
}

impl Ruleset {
    fn chain(&mut self, name: &str) -> &mut Vec<String> {
        // Most calls add to a chain that exists: no key allocated for those.
        if !self.chains.contains_key(name) {
            self.chains.insert(name.to_string(), Vec::new());
        }
        self.chains.get_mut(name).expect("inserted above")
    }

    fn rule(&mut self, chain: &str, rule: String) {
        self.chain(chain).push(rule);
    }

    fn element(&mut self, container: &'static str, key: String, value: String) {
        self.elements
            .entry(container)
            .or_default()
            .insert(key, value);
    }
}

/// nft identifiers take letters, digits and `/_.-`; anything else becomes `_`.
fn identifier(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "/_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `<HASH>-<base>` as kube-proxy builds chain names (cut to fit nft's 256-byte names).
fn hashed(base: &str) -> String {
    let base = identifier(base);
    let mut name = format!("{}-{base}", hash(&base, 8));
    if name.len() > 240 {
        name.truncate(237);
        name.push_str("...");
    }
    name
}

/// `<namespace>/<name>/<protocol>/<port name>` of a service port named `name` (kube-proxy's
/// `ServicePortName`, `namespace/name:port`).
pub fn port_base(name: &str, proto: &str) -> String {
    match name.split_once(':') {
        Some((service, port)) => format!("{service}/{proto}/{port}"),
        None => format!("{name}/{proto}/"),
    }
}

/// `service-…` of a service port.
pub fn service_chain(name: &str, proto: &str) -> String {
    format!("service-{}", hashed(&port_base(name, proto)))
}

/// `external-…`: where NodePort traffic of a service port enters.
pub fn external_chain(name: &str, proto: &str) -> String {
    format!("external-{}", hashed(&port_base(name, proto)))
}

/// `local-…`: the local endpoints of an `externalTrafficPolicy: Local` port.
pub fn local_chain(name: &str, proto: &str) -> String {
    format!("local-{}", hashed(&port_base(name, proto)))
}

/// `<port base>__<ip>/<port>` of one endpoint: what its chain and affinity set are named after.
fn endpoint_base(name: &str, proto: &str, ep: &BackendAddr) -> String {
    hashed(&format!(
        "{}__{}/{}",
        port_base(name, proto),
        ep.ip,
        ep.port
    ))
}

/// `endpoint-…` of one endpoint of a service port.
pub fn endpoint_chain(name: &str, proto: &str, ep: &BackendAddr) -> String {
    format!("endpoint-{}", endpoint_base(name, proto, ep))
}

/// `affinity-…`: the clients an endpoint served recently (ClientIP affinity).
pub fn affinity_set(name: &str, proto: &str, ep: &BackendAddr) -> String {
    format!("affinity-{}", endpoint_base(name, proto, ep))
}

/// `hostport-…` of a pod's hostPort mapping.
pub fn host_port_chain(frontend: &Frontend, pod: &str) -> String {
    let proto = proto_name(frontend.proto);
    let base = match frontend.host_ip() {
        Some(ip) => format!("{pod}/{proto}/{ip}/{}", frontend.port),
        None => format!("{pod}/{proto}/{}", frontend.port),
    };
    format!("hostport-{}", hashed(&base))
}

/// Renders the model.
pub fn render(model: &Model) -> Ruleset {
    let mut r = Ruleset::default();
    for chain in FIXED_CHAINS {
        r.chain(chain);
    }
    for container in CONTAINERS {
        r.elements.entry(container.0).or_default();
    }
    r.rule(
        "services",
        format!("ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"),
    );
    if model.node_addrs.is_empty() {
        r.rule(
            "services",
            format!("fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"),
        );
        r.rule(
            "nodeport-endpoints-check",
            format!(
                "ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"
            ),
        );
    } else {
        r.rule(
            "services",
            format!("ip daddr @nodeport-ips meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"),
        );
        r.rule(
            "nodeport-endpoints-check",
            format!("ip daddr @nodeport-ips meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"),
        );
        for addr in &model.node_addrs {
            r.element("nodeport-ips", addr.to_string(), String::new());
        }
    }
    r.rule(
        "service-endpoints-check",
        format!("ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}"),
    );
    r.rule(
        "firewall-check",
        "ip daddr . meta l4proto . th dport vmap @firewall-ips".into(),
    );
    r.rule(
        "cluster-ips-check",
        "ip daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\""
            .into(),
    );
    r.rule("reject-chain", "reject".into());
    r.rule(
        "mark-for-masquerade",
        format!("mark set mark or {MASQ_MARK}"),
    );
    for rule in [
        format!("mark and {MASQ_MARK} == 0 return"),
        format!("mark set mark xor {MASQ_MARK}"),
        "masquerade fully-random".to_string(),
    ] {
        r.rule("masquerading", rule);
    }
    for group in model.groups() {
        render_group(&mut r, model, &group);
    }
    render_host_ports(&mut r, model);
    r
}

/// Writes one service port's chains and map elements.
fn render_group(r: &mut Ruleset, model: &Model, g: &Group<'_>) {
    let name = g.name.as_str();
    let proto = proto_name(g.proto);
    let svc = service_chain(name, proto);
    let (cluster_eps, affinity) = g.cluster_endpoints();
    let local_eps = g.local_endpoints();
    let has_endpoints = !cluster_eps.is_empty() || !local_eps.is_empty();
    let comment = format!("comment \"{name}\"");

    if let Some((frontend, _)) = g.cluster {
        let key = format!("{} . {proto} . {}", frontend.ip, frontend.port);
        r.element("cluster-ips", frontend.ip.to_string(), String::new());
        if cluster_eps.is_empty() {
            let value = format!(" {comment} : goto reject-chain");
            r.element(NO_ENDPOINT_SERVICES, key, value);
        } else {
            r.element(SERVICE_IPS, key, format!(" : goto {svc}"));
        }
    }

    if let Some((frontend, _)) = g.node_port {
        let key = format!("{proto} . {}", frontend.port);
        let ext = external_chain(name, proto);
        if has_endpoints {
            r.element(SERVICE_NODEPORTS, key.clone(), format!(" : goto {ext}"));
            if !g.external_local {
                r.rule(&ext, "jump mark-for-masquerade".into());
                if !cluster_eps.is_empty() {
                    r.rule(&ext, format!("goto {svc}"));
                }
            } else {
                if let Some(cidr) = model.cluster_cidr.filter(|_| !cluster_eps.is_empty()) {
                    r.rule(
                        &ext,
                        format!("ip saddr {cidr} goto {svc} comment \"short-circuit pod traffic\""),
                    );
                }
                r.rule(
                    &ext,
                    "fib saddr type local jump mark-for-masquerade comment \"masquerade local traffic\"".into(),
                );
                if !cluster_eps.is_empty() {
                    r.rule(
                        &ext,
                        format!("fib saddr type local goto {svc} comment \"short-circuit local traffic\""),
                    );
                }
                if !local_eps.is_empty() {
                    r.rule(&ext, format!("goto {}", local_chain(name, proto)));
                }
            }
        }
        let has_external_endpoints = if g.external_local {
            !local_eps.is_empty()
        } else {
            has_endpoints
        };
        if !has_external_endpoints {
            let verdict = if has_endpoints {
                "drop"
            } else {
                "goto reject-chain"
            };
            r.element(
                NO_ENDPOINT_NODEPORTS,
                key,
                format!(" {comment} : {verdict}"),
            );
        }
    }

    if !cluster_eps.is_empty() {
        r.chain(&svc);
        if let (Some((frontend, _)), Some(cidr)) = (g.cluster, model.cluster_cidr) {
            r.rule(
                &svc,
                format!(
                    "ip daddr {} ip saddr != {cidr} jump mark-for-masquerade",
                    frontend.ip
                ),
            );
        }
        endpoint_picks(r, name, proto, &svc, cluster_eps, affinity);
    }
    if !local_eps.is_empty() {
        let local = local_chain(name, proto);
        r.chain(&local);
        endpoint_picks(r, name, proto, &local, local_eps, affinity);
    }
    // One endpoint chain per endpoint, shared by the cluster and local chains.
    let endpoints: BTreeSet<&BackendAddr> = cluster_eps.iter().chain(local_eps).collect();
    for ep in endpoints {
        let chain = endpoint_chain(name, proto, ep);
        r.rule(
            &chain,
            format!("ip saddr {} jump mark-for-masquerade", ep.ip),
        );
        if let Affinity::ClientIp { timeout_secs } = affinity {
            let set = affinity_set(name, proto, ep);
            r.rule(&chain, format!("update @{set} {{ ip saddr }}"));
            r.affinity.insert(set, timeout_secs);
        }
        r.rule(
            &chain,
            format!("meta l4proto {proto} dnat to {}:{}", ep.ip, ep.port),
        );
    }
}

/// A service chain's jumps to its endpoints: clients an endpoint served recently first (with
/// ClientIP affinity), then a uniform random pick.
fn endpoint_picks(
    r: &mut Ruleset,
    name: &str,
    proto: &str,
    chain: &str,
    endpoints: &[BackendAddr],
    affinity: Affinity,
) {
    if let Affinity::ClientIp { .. } = affinity {
        for ep in endpoints {
            let set = affinity_set(name, proto, ep);
            let target = endpoint_chain(name, proto, ep);
            r.rule(chain, format!("ip saddr @{set} goto {target}"));
        }
    }
    let mut picks = String::new();
    for (i, ep) in endpoints.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(picks, "{sep}{i} : goto {}", endpoint_chain(name, proto, ep));
    }
    r.rule(
        chain,
        format!("numgen random mod {} vmap {{ {picks} }}", endpoints.len()),
    );
}

/// The `hostports` rules and one chain per mapping: hairpin traffic masqueraded, then DNAT to
/// the pod; a mapping with a `hostIP` only for that destination.
fn render_host_ports(r: &mut Ruleset, model: &Model) {
    for (frontend, pod_addr) in &model.host_ports {
        let pod = model.pod_of(frontend);
        let proto = proto_name(frontend.proto);
        let port = frontend.port;
        let chain = host_port_chain(frontend, pod);
        let destination = match frontend.host_ip() {
            Some(ip) => format!("ip daddr {ip} "),
            None => String::new(),
        };
        r.rule(
            "hostports",
            format!("{destination}meta l4proto {proto} th dport {port} goto {chain} comment \"{pod} hostport {port}\""),
        );
        r.rule(
            &chain,
            format!("ip saddr {} jump mark-for-masquerade", pod_addr.ip),
        );
        r.rule(
            &chain,
            format!(
                "meta l4proto {proto} dnat to {}:{}",
                pod_addr.ip, pod_addr.port
            ),
        );
    }
}

/// The transaction from `old` (what the kernel holds, when that is known) to `new`: the whole
/// table re-created without `old` (or when an affinity set's timeout changed, which a set
/// cannot take in place); otherwise only the differences. Empty when nothing changed.
pub fn script(old: Option<&Ruleset>, new: &Ruleset) -> String {
    match old {
        Some(old) if !timeouts_changed(old, new) => diff(old, new),
        _ => full(new),
    }
}

fn timeouts_changed(old: &Ruleset, new: &Ruleset) -> bool {
    new.affinity
        .iter()
        .any(|(set, timeout)| old.affinity.get(set).is_some_and(|t| t != timeout))
}

fn affinity_decl(out: &mut String, set: &str, timeout: u32) {
    let _ = writeln!(
        out,
        "add set ip {TABLE} {set} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ; }}"
    );
}

fn chain_rules(out: &mut String, chain: &str, rules: &[String]) {
    for rule in rules {
        let _ = writeln!(out, "add rule ip {TABLE} {chain} {rule}");
    }
}

fn add_elements(out: &mut String, container: &str, elements: &BTreeMap<String, String>) {
    for (key, value) in elements {
        let _ = writeln!(out, "add element ip {TABLE} {container} {{ {key}{value} }}");
    }
}

/// The whole table, replaced in one transaction (`add` first so the `delete` cannot fail).
fn full(new: &Ruleset) -> String {
    let mut out = String::with_capacity(256 * new.chains.len() + 4096);
    let table = format!("ip {TABLE} {{ comment \"rules for kube-proxy\" ; }}");
    let _ = writeln!(
        out,
        "add table {table}\ndelete table ip {TABLE}\nadd table {table}"
    );
    for (name, hook, _) in BASE_CHAINS {
        let _ = writeln!(
            out,
            "add chain ip {TABLE} {name} {{ {hook} ; policy accept ; }}"
        );
    }
    for (name, kind, comment) in CONTAINERS {
        let what = if kind.contains(':') { "map" } else { "set" };
        let _ = writeln!(
            out,
            "add {what} ip {TABLE} {name} {{ type {kind} ; comment \"{comment}\" ; }}"
        );
    }
    for (set, timeout) in &new.affinity {
        affinity_decl(&mut out, set, *timeout);
    }
    for chain in new.chains.keys() {
        if chain == "reject-chain" {
            let _ = writeln!(
                out,
                "add chain ip {TABLE} {chain} {{ comment \"helper for @{NO_ENDPOINT_SERVICES} / @{NO_ENDPOINT_NODEPORTS}\" ; }}"
            );
        } else {
            let _ = writeln!(out, "add chain ip {TABLE} {chain}");
        }
    }
    for (name, _, rules) in BASE_CHAINS {
        for rule in rules {
            let _ = writeln!(out, "add rule ip {TABLE} {name} {rule}");
        }
    }
    for (chain, rules) in &new.chains {
        chain_rules(&mut out, chain, rules);
    }
    for (container, elements) in &new.elements {
        add_elements(&mut out, container, elements);
    }
    out
}

/// Only what changed: new chains and sets declared, changed chains flushed and re-filled,
/// changed elements deleted and added, and the chains and sets nothing uses any more flushed
/// and deleted last, once the elements and rules that referred to them are gone.
fn diff(old: &Ruleset, new: &Ruleset) -> String {
    let mut declare = String::new();
    let mut remove_elements = String::new();
    let mut flush = String::new();
    let mut fill = String::new();
    let mut add = String::new();
    let mut delete = String::new();
    for (set, timeout) in &new.affinity {
        if !old.affinity.contains_key(set) {
            affinity_decl(&mut declare, set, *timeout);
        }
    }
    for (chain, rules) in &new.chains {
        match old.chains.get(chain) {
            Some(before) if before == rules => continue,
            Some(_) => {
                let _ = writeln!(flush, "flush chain ip {TABLE} {chain}");
            }
            None => {
                let _ = writeln!(declare, "add chain ip {TABLE} {chain}");
            }
        }
        chain_rules(&mut fill, chain, rules);
    }
    let empty = BTreeMap::new();
    for (container, elements) in &new.elements {
        let before = old.elements.get(container).unwrap_or(&empty);
        for (key, value) in before {
            if elements.get(key) != Some(value) {
                let _ = writeln!(
                    remove_elements,
                    "delete element ip {TABLE} {container} {{ {key} }}"
                );
            }
        }
        let changed: BTreeMap<String, String> = elements
            .iter()
            .filter(|(key, value)| before.get(*key) != Some(*value))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        add_elements(&mut add, container, &changed);
    }
    for chain in old.chains.keys() {
        if !new.chains.contains_key(chain) {
            let _ = writeln!(flush, "flush chain ip {TABLE} {chain}");
            let _ = writeln!(delete, "delete chain ip {TABLE} {chain}");
        }
    }
    for set in old.affinity.keys() {
        if !new.affinity.contains_key(set) {
            let _ = writeln!(delete, "delete set ip {TABLE} {set}");
        }
    }
    [declare, remove_elements, flush, fill, add, delete].concat()
}
