//! Pods' hostPorts as iptables rules, the way the kubelet's hostport manager wrote them before
//! the CNI `portmap` plugin took over (`pkg/kubelet/network/hostport`): a `KUBE-HOSTPORTS` chain
//! entered from nat `PREROUTING` and `OUTPUT` for traffic to a local address, one rule per
//! mapping jumping to a `KUBE-HP-*` chain that marks hairpin traffic (the pod reaching itself
//! through its hostPort) for masquerade and DNATs to `<pod IP>:<containerPort>`. Other clients
//! keep their address, as with `portmap`. A `hostIP` restricts the mapping to that destination.
//!
//! Like the rest of the rules, written in full by every sync; `KUBE-HP-*` chains no mapping
//! renders any more are deleted as stale, and `ekube reset` removes them all with the `KUBE-`
//! prefix. `127.0.0.1:<hostPort>` would need `route_localnet`, which the proxy does not set
//! (as for NodePorts in this mode).

use super::render::{KUBE_MARK_MASQ, Ruleset, hash16};
use crate::{
    datapath::{BackendAddr, Frontend},
    rules::{Model, proto_name},
};

/// The chain every hostPort mapping hangs off.
pub const KUBE_HOSTPORTS: &str = "KUBE-HOSTPORTS";
/// Prefix of the per-mapping chains.
pub const CHAIN_PREFIX: &str = "KUBE-HP-";
/// Match arguments of the jumps from nat `PREROUTING` and `OUTPUT` into [`KUBE_HOSTPORTS`].
pub const JUMP_ARGS: &str =
    "-m comment --comment \"kube hostport portals\" -m addrtype --dst-type LOCAL";

/// `KUBE-HP-…` of the mapping `frontend` of pod `pod` (`namespace/name`).
pub fn host_port_chain(frontend: &Frontend, pod: &str) -> String {
    format!("{CHAIN_PREFIX}{}", hash16(&format!("{frontend}{pod}")))
}

/// Writes the `KUBE-HOSTPORTS` rules and one `KUBE-HP-*` chain per mapping.
pub(super) fn render(t: &mut Ruleset, model: &Model) {
    for (frontend, pod_addr) in &model.host_ports {
        render_one(t, frontend, *pod_addr, model.pod_of(frontend));
    }
}

fn render_one(t: &mut Ruleset, frontend: &Frontend, pod_addr: BackendAddr, pod: &str) {
    let chain = host_port_chain(frontend, pod);
    let proto = proto_name(frontend.proto);
    let port = frontend.port;
    let comment = format!("\"{pod} hostport {port}\"");
    let destination = match frontend.host_ip() {
        Some(ip) => format!(" -d {ip}/32"),
        None => String::new(),
    };
    t.nat_chain(&chain);
    t.nat(format_args!(
        "-A {KUBE_HOSTPORTS} -m comment --comment {comment} -m {proto} -p {proto}{destination} --dport {port} -j {chain}"
    ));
    let BackendAddr { ip, port: target } = pod_addr;
    t.nat(format_args!(
        "-A {chain} -m comment --comment {comment} -s {ip}/32 -j {KUBE_MARK_MASQ}"
    ));
    t.nat(format_args!(
        "-A {chain} -m comment --comment {comment} -m {proto} -p {proto} -j DNAT --to-destination {ip}:{target}"
    ));
}
