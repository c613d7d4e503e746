//! Rendering the proxy's model as kube-proxy's iptables rules (`pkg/proxy/iptables/proxier.go`).
//!
//! [`render`] is a pure function from the [`Model`] to the `iptables-restore` text of the
//! `filter` and `nat` tables: every `KUBE-*` chain declared (which, under `--noflush`, creates
//! or flushes it) and filled, stale service chains deleted, and the jumps from the built-in
//! chains inserted where they are missing. The text is O(frontends + endpoints). Chain names,
//! comments, the `0x4000` masquerade mark, the `statistic` probabilities, session affinity
//! with `-m recent` and the REJECT/DROP rules for services without (local) endpoints follow
//! kube-proxy, so tools and people that know its rules can read ours.

use std::{collections::BTreeSet, fmt::Write};

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

/// Chains of the two tables as rendered (the `KUBE-*` chains this sync owns).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chains {
    pub filter: BTreeSet<String>,
    pub nat: BTreeSet<String>,
}

/// What [`render`] produces.
#[derive(Debug)]
pub struct Rendered {
    /// The `iptables-restore --noflush` input.
    pub text: String,
    /// Per-service chains written (to tell stale ones next time).
    pub chains: Chains,
}

/// What the sync knows about the tables before writing.
#[derive(Debug, Default)]
pub struct Existing<'a> {
    /// Per-service chains present now (written last time or found by `iptables-save`); those
    /// not rendered again are deleted.
    pub chains: Option<&'a Chains>,
    /// Jumps missing from the built-in chains (inserted).
    pub missing_jumps: &'a [Jump],
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

/// The two tables' text under construction.
#[derive(Default)]
pub(super) struct Tables {
    filter_chains: String,
    filter_rules: String,
    nat_chains: String,
    nat_rules: String,
    chains: Chains,
}

impl Tables {
    pub(super) fn nat_chain(&mut self, chain: &str) {
        let _ = writeln!(self.nat_chains, ":{chain} - [0:0]");
        self.chains.nat.insert(chain.to_string());
    }

    pub(super) fn nat(&mut self, rule: std::fmt::Arguments<'_>) {
        let _ = self.nat_rules.write_fmt(rule);
        self.nat_rules.push('\n');
    }

    fn filter(&mut self, rule: std::fmt::Arguments<'_>) {
        let _ = self.filter_rules.write_fmt(rule);
        self.filter_rules.push('\n');
    }
}

/// Renders the whole rule set.
pub fn render(model: &Model, existing: &Existing<'_>) -> Rendered {
    let mut t = Tables::default();
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
    assemble(t, existing)
}

/// Writes one service port's rules.
fn render_group(t: &mut Tables, model: &Model, g: &Group<'_>) {
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
    t: &mut Tables,
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

/// Puts the tables together: fixed chains and rules, the services' chains and rules, missing
/// jumps, and the deletion of stale chains.
fn assemble(t: Tables, existing: &Existing<'_>) -> Rendered {
    let mut text = String::with_capacity(
        t.filter_chains.len()
            + t.filter_rules.len()
            + t.nat_chains.len()
            + t.nat_rules.len()
            + 4096,
    );
    let stale = |table_chains: &BTreeSet<String>, before: Option<&BTreeSet<String>>| {
        before
            .into_iter()
            .flatten()
            .filter(|c| is_service_chain(c) && !table_chains.contains(*c))
            .cloned()
            .collect::<Vec<_>>()
    };
    let stale_filter = stale(&t.chains.filter, existing.chains.map(|c| &c.filter));
    let stale_nat = stale(&t.chains.nat, existing.chains.map(|c| &c.nat));

    text.push_str("*filter\n");
    for chain in [
        KUBE_NODEPORTS,
        KUBE_SERVICES,
        KUBE_EXTERNAL_SERVICES,
        KUBE_FORWARD,
        KUBE_PROXY_FIREWALL,
    ] {
        let _ = writeln!(text, ":{chain} - [0:0]");
    }
    text.push_str(&t.filter_chains);
    for chain in &stale_filter {
        let _ = writeln!(text, ":{chain} - [0:0]");
    }
    push_jumps(&mut text, "filter", existing.missing_jumps);
    let _ = writeln!(
        text,
        "-A {KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP\n\
         -A {KUBE_FORWARD} -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT\n\
         -A {KUBE_FORWARD} -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    );
    text.push_str(&t.filter_rules);
    for chain in &stale_filter {
        let _ = writeln!(text, "-X {chain}");
    }
    text.push_str("COMMIT\n*nat\n");
    for chain in [
        KUBE_SERVICES,
        KUBE_NODEPORTS,
        KUBE_HOSTPORTS,
        KUBE_POSTROUTING,
        KUBE_MARK_MASQ,
    ] {
        let _ = writeln!(text, ":{chain} - [0:0]");
    }
    text.push_str(&t.nat_chains);
    for chain in &stale_nat {
        let _ = writeln!(text, ":{chain} - [0:0]");
    }
    push_jumps(&mut text, "nat", existing.missing_jumps);
    let _ = writeln!(
        text,
        "-A {KUBE_POSTROUTING} -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN\n\
         -A {KUBE_POSTROUTING} -j MARK --xor-mark {MASQ_MARK}\n\
         -A {KUBE_POSTROUTING} -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n\
         -A {KUBE_MARK_MASQ} -j MARK --or-mark {MASQ_MARK}"
    );
    text.push_str(&t.nat_rules);
    for chain in &stale_nat {
        let _ = writeln!(text, "-X {chain}");
    }
    text.push_str("COMMIT\n");
    Rendered {
        text,
        chains: t.chains,
    }
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
