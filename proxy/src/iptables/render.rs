//! Rendering the proxy's model as kube-proxy's iptables rules (`pkg/proxy/iptables/proxier.go`).
//!
//! [`render`] is a pure function from the [`Model`] to a [`Ruleset`], the rules of every
//! `KUBE-*` chain of the `filter` and `nat` tables. [`restore_input`] turns it into the
//! `iptables-restore --noflush` text: the chains written declared (which creates or flushes
//! them) and filled, stale service chains deleted, and, when the tables were read back, the
//! jumps from the built-in chains inserted where they are missing. Written in full the text is
//! O(frontends + endpoints); after a known restore only the fixed chains and the per-service
//! chains that changed are written, as kube-proxy's partial restores do. Chain names,
//! comments, the `0x4000` masquerade mark, the `statistic` probabilities, session affinity
//! with `-m recent` and the REJECT/DROP rules for services without (local) endpoints follow
//! kube-proxy, so tools and people that know its rules can read ours.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write,
};

use crate::{
    datapath::{Affinity, BackendAddr},
    rules::{Group, Model, hash, proto_name},
};

/// kube-proxy's iptables chain-name hash: 16 characters of [`hash`].
pub fn hash16(input: &str) -> String {
    hash(input, 16)
}

pub const KUBE_SERVICES: &str = "KUBE-SERVICES";
pub const KUBE_EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
pub const KUBE_NODEPORTS: &str = "KUBE-NODEPORTS";
pub const KUBE_POSTROUTING: &str = "KUBE-POSTROUTING";
pub const KUBE_MARK_MASQ: &str = "KUBE-MARK-MASQ";
pub const KUBE_FORWARD: &str = "KUBE-FORWARD";
pub const KUBE_PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";
pub const KUBE_HOSTPORTS: &str = super::hostports::KUBE_HOSTPORTS;

/// Prefixes of the per-service, per-endpoint and per-hostPort chains: what a sync may delete as
/// stale (`KUBE-FW-` and `KUBE-XLB-` are never written here but are cleared when an older
/// kube-proxy left them).
const SERVICE_CHAIN_PREFIXES: [&str; 7] = [
    "KUBE-SVC-",
    "KUBE-SVL-",
    "KUBE-EXT-",
    "KUBE-SEP-",
    "KUBE-FW-",
    "KUBE-XLB-",
    super::hostports::CHAIN_PREFIX,
];

/// The kube-proxy "masquerade" mark bit.
const MASQ_MARK: &str = "0x4000";

const NODEPORTS_COMMENT: &str =
    "\"kubernetes service nodeports; NOTE: this must be the last rule in this chain\"";

/// A jump from a built-in chain into the `KUBE-*` chains, installed once and left in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Jump {
    pub table: &'static str,
    pub chain: &'static str,
    /// Match arguments before `-j`.
    pub args: &'static str,
    pub target: &'static str,
}

/// kube-proxy's jumps, in the order they end up in each built-in chain, and the kubelet's
/// hostport jumps after the service portals (so a NodePort wins over a hostPort of the same
/// number, as in the eBPF datapath; a node whose service jumps predate them gets them
/// inserted first, though).
pub const JUMPS: [Jump; 14] = [
    Jump {
        table: "filter",
        chain: "INPUT",
        args: "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\"",
        target: KUBE_PROXY_FIREWALL,
    },
    Jump {
        table: "filter",
        chain: "INPUT",
        args: "-m comment --comment \"kubernetes health check service ports\"",
        target: KUBE_NODEPORTS,
    },
    Jump {
        table: "filter",
        chain: "INPUT",
        args: "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\"",
        target: KUBE_EXTERNAL_SERVICES,
    },
    Jump {
        table: "filter",
        chain: "FORWARD",
        args: "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\"",
        target: KUBE_PROXY_FIREWALL,
    },
    Jump {
        table: "filter",
        chain: "FORWARD",
        args: "-m comment --comment \"kubernetes forwarding rules\"",
        target: KUBE_FORWARD,
    },
    Jump {
        table: "filter",
        chain: "FORWARD",
        args: "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\"",
        target: KUBE_SERVICES,
    },
    Jump {
        table: "filter",
        chain: "FORWARD",
        args: "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\"",
        target: KUBE_EXTERNAL_SERVICES,
    },
    Jump {
        table: "filter",
        chain: "OUTPUT",
        args: "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\"",
        target: KUBE_PROXY_FIREWALL,
    },
    Jump {
        table: "filter",
        chain: "OUTPUT",
        args: "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\"",
        target: KUBE_SERVICES,
    },
    Jump {
        table: "nat",
        chain: "PREROUTING",
        args: "-m comment --comment \"kubernetes service portals\"",
        target: KUBE_SERVICES,
    },
    Jump {
        table: "nat",
        chain: "OUTPUT",
        args: "-m comment --comment \"kubernetes service portals\"",
        target: KUBE_SERVICES,
    },
    Jump {
        table: "nat",
        chain: "PREROUTING",
        args: super::hostports::JUMP_ARGS,
        target: KUBE_HOSTPORTS,
    },
    Jump {
        table: "nat",
        chain: "OUTPUT",
        args: super::hostports::JUMP_ARGS,
        target: KUBE_HOSTPORTS,
    },
    Jump {
        table: "nat",
        chain: "POSTROUTING",
        args: "-m comment --comment \"kubernetes postrouting rules\"",
        target: KUBE_POSTROUTING,
    },
];

/// Names of per-service chains in the two tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chains {
    pub filter: BTreeSet<String>,
    pub nat: BTreeSet<String>,
}

/// Rules of one table by chain, each chain's in order (the `-A` lines).
pub type TableRules = BTreeMap<String, Vec<String>>;

/// One rendering of the model: every `KUBE-*` chain a sync owns, fixed and per service, with
/// its rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub filter: TableRules,
    pub nat: TableRules,
}

impl Ruleset {
    /// The per-service chains it holds.
    pub fn service_chains(&self) -> Chains {
        let names = |t: &TableRules| t.keys().filter(|c| is_service_chain(c)).cloned().collect();
        Chains {
            filter: names(&self.filter),
            nat: names(&self.nat),
        }
    }

    fn chain(&mut self, table: &str, chain: &str) -> &mut Vec<String> {
        let rules = if table == "filter" {
            &mut self.filter
        } else {
            &mut self.nat
        };
        rules.entry(chain.to_string()).or_default()
    }

    pub(super) fn nat_chain(&mut self, chain: &str) {
        self.chain("nat", chain);
    }

    /// Appends an `-A <chain> …` line of the nat table to its chain.
    pub(super) fn nat(&mut self, rule: std::fmt::Arguments<'_>) {
        self.push("nat", rule.to_string());
    }

    fn filter(&mut self, rule: std::fmt::Arguments<'_>) {
        self.push("filter", rule.to_string());
    }

    fn push(&mut self, table: &str, rule: String) {
        let chain = rule
            .strip_prefix("-A ")
            .and_then(|r| r.split(' ').next())
            .expect("an -A line");
        self.chain(table, chain).push(rule);
    }
}

/// What the kernel holds before a restore.
#[derive(Debug)]
pub enum Before<'a> {
    /// Not known (first restore, or after a failure): the per-service chains read back from
    /// the tables (those not rendered again are deleted) and the jumps missing from the
    /// built-in chains (inserted). Every chain is written.
    Read {
        chains: &'a Chains,
        missing_jumps: &'a [Jump],
    },
    /// What the last restore wrote: only the per-service chains that changed are written
    /// (kube-proxy's partial restores), the fixed chains always.
    Applied(&'a Ruleset),
}

/// `KUBE-SVC-…` of a service port (`name` as in [`PortInfo::name`], `proto` lowercase).
pub fn service_chain(name: &str, proto: &str) -> String {
    format!("KUBE-SVC-{}", hash16(&format!("{name}{proto}")))
}

/// `KUBE-SVL-…`: the local-endpoints chain of an `externalTrafficPolicy: Local` port.
pub fn local_chain(name: &str, proto: &str) -> String {
    format!("KUBE-SVL-{}", hash16(&format!("{name}{proto}")))
}

/// `KUBE-EXT-…`: where external (NodePort) traffic enters.
pub fn external_chain(name: &str, proto: &str) -> String {
    format!("KUBE-EXT-{}", hash16(&format!("{name}{proto}")))
}

/// `KUBE-SEP-…` of one endpoint (`ip:port`) of a service port.
pub fn endpoint_chain(name: &str, proto: &str, endpoint: &str) -> String {
    format!("KUBE-SEP-{}", hash16(&format!("{name}{proto}{endpoint}")))
}

/// kube-proxy's `statistic` probability for the rule that picks one of `n` remaining
/// endpoints: `1/n` with ten decimals.
pub fn probability(n: usize) -> String {
    format!("{:.10}", 1.0 / n as f64)
}

/// Chains every rendering has, by table.
const FIXED_FILTER: [&str; 5] = [
    KUBE_NODEPORTS,
    KUBE_SERVICES,
    KUBE_EXTERNAL_SERVICES,
    KUBE_FORWARD,
    KUBE_PROXY_FIREWALL,
];
const FIXED_NAT: [&str; 5] = [
    KUBE_SERVICES,
    KUBE_NODEPORTS,
    KUBE_HOSTPORTS,
    KUBE_POSTROUTING,
    KUBE_MARK_MASQ,
];

/// Renders the whole rule set.
pub fn render(model: &Model) -> Ruleset {
    let mut t = Ruleset::default();
    for chain in FIXED_FILTER {
        t.chain("filter", chain);
    }
    for chain in FIXED_NAT {
        t.nat_chain(chain);
    }
    t.filter(format_args!(
        "-A {KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP"
    ));
    t.filter(format_args!(
        "-A {KUBE_FORWARD} -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT"
    ));
    t.filter(format_args!(
        "-A {KUBE_FORWARD} -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    ));
    t.nat(format_args!(
        "-A {KUBE_POSTROUTING} -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"
    ));
    t.nat(format_args!(
        "-A {KUBE_POSTROUTING} -j MARK --xor-mark {MASQ_MARK}"
    ));
    t.nat(format_args!(
        "-A {KUBE_POSTROUTING} -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully"
    ));
    t.nat(format_args!(
        "-A {KUBE_MARK_MASQ} -j MARK --or-mark {MASQ_MARK}"
    ));
    for group in model.groups() {
        render_group(&mut t, model, &group);
    }
    super::hostports::render(&mut t, model);
    // Last in KUBE-SERVICES: NodePorts on the node's addresses.
    if model.node_addrs.is_empty() {
        t.nat(format_args!(
            "-A {KUBE_SERVICES} -m comment --comment {NODEPORTS_COMMENT} -m addrtype --dst-type LOCAL -j {KUBE_NODEPORTS}"
        ));
    }
    for addr in &model.node_addrs {
        t.nat(format_args!(
            "-A {KUBE_SERVICES} -m comment --comment {NODEPORTS_COMMENT} -d {addr} -j {KUBE_NODEPORTS}"
        ));
    }
    t
}

/// Writes one service port's rules.
fn render_group(t: &mut Ruleset, model: &Model, g: &Group<'_>) {
    let name = g.name.as_str();
    let proto = proto_name(g.proto);
    let svc = service_chain(name, proto);
    let svl = local_chain(name, proto);
    let ext = external_chain(name, proto);
    let (cluster_eps, affinity) = g.cluster_endpoints();
    let local_eps = g.local_endpoints();
    let has_endpoints = !cluster_eps.is_empty() || !local_eps.is_empty();
    let uses_cluster_chain = !cluster_eps.is_empty();
    let uses_local_chain = !local_eps.is_empty();

    if let Some((frontend, _)) = g.cluster {
        let vip = frontend.ip;
        let port = frontend.port;
        if uses_cluster_chain {
            t.nat(format_args!(
                "-A {KUBE_SERVICES} -m comment --comment \"{name} cluster IP\" -m {proto} -p {proto} -d {vip} --dport {port} -j {svc}"
            ));
        } else {
            t.filter(format_args!(
                "-A {KUBE_SERVICES} -m comment --comment \"{name} has no endpoints\" -m {proto} -p {proto} -d {vip} --dport {port} -j REJECT"
            ));
        }
    }

    if let Some((frontend, _)) = g.node_port {
        let node_port = frontend.port;
        let uses_ext_chain = has_endpoints && (uses_cluster_chain || !g.external_local);
        if uses_ext_chain {
            t.nat(format_args!(
                "-A {KUBE_NODEPORTS} -m comment --comment {name} -m {proto} -p {proto} --dport {node_port} -j {ext}"
            ));
            t.nat_chain(&ext);
            if !g.external_local {
                t.nat(format_args!(
                    "-A {ext} -m comment --comment \"masquerade traffic for {name} external destinations\" -j {KUBE_MARK_MASQ}"
                ));
            } else {
                if let Some(cidr) = model.cluster_cidr {
                    t.nat(format_args!(
                        "-A {ext} -m comment --comment \"pod traffic for {name} external destinations\" -s {cidr} -j {svc}"
                    ));
                }
                t.nat(format_args!(
                    "-A {ext} -m comment --comment \"masquerade LOCAL traffic for {name} external destinations\" -m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}"
                ));
                t.nat(format_args!(
                    "-A {ext} -m comment --comment \"route LOCAL traffic for {name} external destinations\" -m addrtype --src-type LOCAL -j {svc}"
                ));
            }
            let external_target = if g.external_local {
                uses_local_chain.then_some(&svl)
            } else {
                Some(&svc)
            };
            if let Some(target) = external_target {
                t.nat(format_args!("-A {ext} -j {target}"));
            }
        }
        let has_external_endpoints = if g.external_local {
            uses_local_chain
        } else {
            has_endpoints
        };
        if !has_external_endpoints {
            let (comment, target) = if has_endpoints {
                ("has no local endpoints", "DROP")
            } else {
                ("has no endpoints", "REJECT")
            };
            t.filter(format_args!(
                "-A {KUBE_EXTERNAL_SERVICES} -m comment --comment \"{name} {comment}\" -m addrtype --dst-type LOCAL -m {proto} -p {proto} --dport {node_port} -j {target}"
            ));
        }
    }

    if uses_cluster_chain {
        t.nat_chain(&svc);
        if let (Some((frontend, _)), Some(cidr)) = (g.cluster, model.cluster_cidr) {
            let (vip, port) = (frontend.ip, frontend.port);
            t.nat(format_args!(
                "-A {svc} -m comment --comment \"{name} cluster IP\" -m {proto} -p {proto} -d {vip} --dport {port} ! -s {cidr} -j {KUBE_MARK_MASQ}"
            ));
        }
        endpoint_jumps(t, name, proto, &svc, cluster_eps, affinity);
    }
    if uses_local_chain {
        t.nat_chain(&svl);
        endpoint_jumps(t, name, proto, &svl, local_eps, affinity);
    }
    // One KUBE-SEP chain per endpoint, shared by the cluster and local chains.
    let endpoints: BTreeSet<&BackendAddr> = cluster_eps.iter().chain(local_eps).collect();
    for ep in endpoints {
        let endpoint = format!("{}:{}", ep.ip, ep.port);
        let sep = endpoint_chain(name, proto, &endpoint);
        t.nat_chain(&sep);
        let ip = ep.ip;
        t.nat(format_args!(
            "-A {sep} -m comment --comment {name} -s {ip} -j {KUBE_MARK_MASQ}"
        ));
        let recent = match affinity {
            Affinity::ClientIp { .. } => format!(" -m recent --name {sep} --set"),
            Affinity::None => String::new(),
        };
        t.nat(format_args!(
            "-A {sep} -m comment --comment {name}{recent} -m {proto} -p {proto} -j DNAT --to-destination {endpoint}"
        ));
    }
}

/// The service chain's jumps to its endpoints: affinity checks first, then the random pick
/// where rule `i` of `n` matches with probability `1/(n-i)`.
fn endpoint_jumps(
    t: &mut Ruleset,
    name: &str,
    proto: &str,
    chain: &str,
    endpoints: &[BackendAddr],
    affinity: Affinity,
) {
    if let Affinity::ClientIp { timeout_secs } = affinity {
        for ep in endpoints {
            let endpoint = format!("{}:{}", ep.ip, ep.port);
            let sep = endpoint_chain(name, proto, &endpoint);
            t.nat(format_args!(
                "-A {chain} -m comment --comment \"{name} -> {endpoint}\" -m recent --name {sep} --rcheck --seconds {timeout_secs} --reap -j {sep}"
            ));
        }
    }
    let n = endpoints.len();
    for (i, ep) in endpoints.iter().enumerate() {
        let endpoint = format!("{}:{}", ep.ip, ep.port);
        let sep = endpoint_chain(name, proto, &endpoint);
        if i + 1 < n {
            let p = probability(n - i);
            t.nat(format_args!(
                "-A {chain} -m comment --comment \"{name} -> {endpoint}\" -m statistic --mode random --probability {p} -j {sep}"
            ));
        } else {
            t.nat(format_args!(
                "-A {chain} -m comment --comment \"{name} -> {endpoint}\" -j {sep}"
            ));
        }
    }
}

/// The `iptables-restore --noflush` input that takes the tables from `before` to `new`: each
/// written chain declared (which creates or flushes it) and filled, then the per-service
/// chains no longer rendered deleted, after everything that jumped to them was rewritten.
pub fn restore_input(new: &Ruleset, before: &Before<'_>) -> String {
    let mut text = String::new();
    for (table, rules) in [("filter", &new.filter), ("nat", &new.nat)] {
        let (written, stale): (Vec<&String>, Vec<String>) = match before {
            Before::Read { chains, .. } => {
                let read = if table == "filter" {
                    &chains.filter
                } else {
                    &chains.nat
                };
                let stale = read.iter().filter(|c| !rules.contains_key(*c)).cloned();
                (rules.keys().collect(), stale.collect())
            }
            Before::Applied(old) => {
                let old = if table == "filter" {
                    &old.filter
                } else {
                    &old.nat
                };
                let changed = rules
                    .iter()
                    .filter(|(c, r)| !is_service_chain(c) || old.get(*c) != Some(*r))
                    .map(|(c, _)| c);
                let stale = old
                    .keys()
                    .filter(|c| is_service_chain(c) && !rules.contains_key(*c))
                    .cloned();
                (changed.collect(), stale.collect())
            }
        };
        let _ = writeln!(text, "*{table}");
        for chain in written.iter().copied().chain(&stale) {
            let _ = writeln!(text, ":{chain} - [0:0]");
        }
        if let Before::Read { missing_jumps, .. } = before {
            push_jumps(&mut text, table, missing_jumps);
        }
        for chain in &written {
            for rule in &rules[*chain] {
                text.push_str(rule);
                text.push('\n');
            }
        }
        for chain in &stale {
            let _ = writeln!(text, "-X {chain}");
        }
        text.push_str("COMMIT\n");
    }
    text
}

/// Inserts the missing jumps of `table` so they end up in [`JUMPS`] order at the top.
fn push_jumps(text: &mut String, table: &str, missing: &[Jump]) {
    for jump in missing.iter().rev().filter(|j| j.table == table) {
        let _ = writeln!(text, "-I {} {} -j {}", jump.chain, jump.args, jump.target);
    }
}

/// A chain a sync owns per service or endpoint (and so may delete).
pub fn is_service_chain(chain: &str) -> bool {
    SERVICE_CHAIN_PREFIXES.iter().any(|p| chain.starts_with(p))
}

/// Reads an `iptables-save` dump of one table: its per-service chains, and which of `JUMPS`
/// (of that table) are present.
pub fn parse_save(table: &str, dump: &str) -> (BTreeSet<String>, Vec<Jump>) {
    let mut chains = BTreeSet::new();
    let mut present = vec![false; JUMPS.len()];
    for line in dump.lines() {
        if let Some(decl) = line.strip_prefix(':') {
            let chain = decl.split_whitespace().next().unwrap_or("");
            if is_service_chain(chain) {
                chains.insert(chain.to_string());
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            for (i, jump) in JUMPS.iter().enumerate() {
                if jump.table == table
                    && rule.starts_with(jump.chain)
                    && rule[jump.chain.len()..].starts_with(' ')
                    && rule.trim_end().ends_with(&format!("-j {}", jump.target))
                {
                    present[i] = true;
                }
            }
        }
    }
    let missing = JUMPS
        .iter()
        .zip(present)
        .filter(|(j, present)| j.table == table && !present)
        .map(|(j, _)| *j)
        .collect();
    (chains, missing)
}
