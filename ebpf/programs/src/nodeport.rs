//! Per-packet NodePort load balancing on tc (DESIGN.md §7), after Cilium's `nodeport.h`.
//!
//! Ingress (the interfaces holding node addresses, and the overlay device): a packet of a
//! tracked flow is translated from its conntrack entry; a new packet to `<node IP>:<nodePort>`
//! (for TCP only a SYN, see [`crate::handshake`]) picks a backend (with ClientIP affinity
//! keyed by the client address). A backend the kernel routes out through one of our interfaces
//! (another node, via the overlay) gets the flow SNATed to the address the kernel would use
//! towards it (and its TCP timestamps shifted, see [`crate::timestamps`]) and the packet
//! redirected; otherwise (a pod on this node) only the destination changes and the stack
//! routes it to the bridge. `externalTrafficPolicy: Local` never SNATs, and neither does a
//! pod's `hostPort` (`<node IP>:<hostPort>`, looked up after the NodePorts, its one backend on
//! this node). Egress (the node-address interfaces): replies of unSNATed flows get their source
//! put back to `<node IP>:<nodePort>`.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::bpf_ktime_get_ns,
    programs::TcContext,
};
use ekube_ebpf_common::{
    AFFINITY_CLIENT_IP, CT_DIR_FORWARD, CT_DIR_REPLY, CT_FLAG_CLOSING, CT_FLAG_EXTERNAL_LOCAL,
    CT_FLAG_SNAT, CT_FLAG_UNESTABLISHED, Counter, CtKey, CtValue, IPPROTO_TCP, NodeAddrKey,
    NodePortConfig, SVC_FLAG_EXTERNAL_LOCAL, SVC_FLAG_HOSTPORT,
};

use crate::{
    conntrack, counters, fib, handshake, lb,
    maps::{EKUBE_NODE_IPS, EKUBE_NP_IFACES, EKUBE_SNAT_IPS},
    packet::{self, Packet},
    snat, timestamps,
};

const OK: i32 = TC_ACT_OK as i32;

/// Ingress: translate tracked flows, load-balance new NodePort flows.
///
/// Only packets to a node address (NodePort flows from clients, SNATed replies) or to an
/// address flows were SNATed to (replies through the overlay) can belong to a flow, so the
/// rest of the traffic (pod to pod over the overlay, anything else for other hosts) is let
/// through after two lookups in small hash maps (node and SNAT addresses); of that traffic only
/// a SYN looks at the conntrack, for a stale entry on its tuple (see
/// [`conntrack::forget_stale_reply`]).
#[inline(always)]
pub fn ingress(ctx: &mut TcContext) -> Result<i32, ()> {
    let Some(p) = packet::parse(ctx) else {
        return Ok(OK);
    };
    let addr = NodeAddrKey { ip: p.daddr };
    // SAFETY: plain integers; a concurrent update at worst yields a stale copy.
    let node_addr = unsafe { EKUBE_NODE_IPS.get(&addr) }.is_some();
    // SAFETY: as above.
    if !node_addr && unsafe { EKUBE_SNAT_IPS.get(&addr) }.is_none() {
        if p.proto == IPPROTO_TCP && handshake::is_syn(&p) {
            conntrack::forget_stale_reply(&p);
        }
        return Ok(OK);
    }
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let cfg = conntrack::config();
    if let Some(v) = conntrack::lookup(&p, CT_DIR_REPLY, now, &cfg) {
        if v.flags & CT_FLAG_UNESTABLISHED != 0 && p.proto == IPPROTO_TCP {
            handshake::note_answer(ctx, &p, v, now);
        }
        // A reply: its new source is a node address, which the stack would drop as martian.
        return translate(ctx, &p, v, CT_DIR_REPLY, true);
    }
    if !node_addr {
        return Ok(OK);
    }
    let tcp = p.proto == IPPROTO_TCP;
    let syn = tcp && handshake::is_syn(&p);
    if let Some(v) = conntrack::lookup(&p, CT_DIR_FORWARD, now, &cfg) {
        // A SYN reusing the ports of a closing flow starts a new one.
        if !(syn && v.flags & CT_FLAG_CLOSING != 0) {
            if v.flags & CT_FLAG_UNESTABLISHED != 0 && handshake::completes(&p) {
                handshake::establish(&p, v, now);
            }
            return translate(ctx, &p, v, CT_DIR_FORWARD, v.flags & CT_FLAG_SNAT != 0);
        }
    }
    // Only a SYN opens a TCP flow; anything else is left to the stack, as netfilter leaves
    // INVALID packets, so stray ACKs and RSTs cannot fill the conntrack.
    if tcp && !syn {
        return Ok(OK);
    }
    new_flow(ctx, &p, now, &cfg)
}

/// Egress: replies of flows delivered without SNAT leave with the NodePort as their source.
#[inline(always)]
pub fn egress(ctx: &mut TcContext) -> Result<i32, ()> {
    let Some(p) = packet::parse(ctx) else {
        return Ok(OK);
    };
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let cfg = conntrack::config();
    match conntrack::lookup(&p, CT_DIR_REPLY, now, &cfg) {
        Some(v) => translate(ctx, &p, v, CT_DIR_REPLY, false),
        None => Ok(OK),
    }
}

/// Rewrites `p`, a packet in direction `dir` of its flow, to `v`'s tuple (and its timestamps,
/// see [`timestamps`]); `redirect` sends it out by a FIB lookup instead of the stack.
#[inline(always)]
fn translate(
    ctx: &mut TcContext,
    p: &Packet,
    v: &CtValue,
    dir: u8,
    redirect: bool,
) -> Result<i32, ()> {
    packet::rewrite(ctx, p, v)?;
    counters::bump(Counter::CtTranslated);
    if !redirect {
        return Ok(OK);
    }
    // Only SNATed flows are redirected, and only they have shifted timestamps.
    timestamps::shift(ctx, p, v, dir == CT_DIR_REPLY)?;
    let route = fib::lookup(ctx, v.saddr, v.daddr, false);
    Ok(fib::redirect(ctx, &route))
}

/// A packet to a node address no flow knows: a new flow if it is for a NodePort or a hostPort.
#[inline(always)]
fn new_flow(ctx: &mut TcContext, p: &Packet, now: u64, cfg: &NodePortConfig) -> Result<i32, ()> {
    // Only called for packets to a node address.
    let Some((key, svc)) = lb::lookup_frontend(p.daddr, p.dport, p.proto, || true) else {
        // Not ours; a SYN may reuse a finished flow's tuple (a hostNetwork backend's).
        if p.proto == IPPROTO_TCP {
            conntrack::forget_stale_reply(p);
        }
        return Ok(OK);
    };
    if svc.count == 0 {
        counters::bump(Counter::NodePortDrop);
        return Ok(TC_ACT_SHOT as i32);
    }
    let tcp = p.proto == IPPROTO_TCP;
    if tcp && !handshake::admit(cfg) {
        counters::bump(Counter::UnestablishedRefused);
        return Ok(TC_ACT_SHOT as i32);
    }
    let backend_id = lb::select_backend(p.saddr as u64, AFFINITY_CLIENT_IP, &key, &svc)?;
    let backend = lb::lookup_backend(backend_id)?;
    // A hostPort's pod is on this node: never SNATed, like `externalTrafficPolicy: Local`.
    let local_policy = svc.flags & (SVC_FLAG_EXTERNAL_LOCAL | SVC_FLAG_HOSTPORT) != 0;
    let route = fib::lookup(ctx, p.saddr, backend.ip, true);
    // SAFETY: as above.
    let remote = !local_policy
        && route.forwarded()
        && unsafe { EKUBE_NP_IFACES.get(&route.params.ifindex) }.is_some();
    let mut flags = if local_policy {
        CT_FLAG_EXTERNAL_LOCAL
    } else {
        0
    };
    if tcp {
        flags |= CT_FLAG_UNESTABLISHED;
    }
    // A SNATed flow's timestamps are shifted when its client sends them (see `timestamps`).
    let (ts_flag, ts_shift) = timestamps::shift_for(ctx, p, now, remote && tcp);
    flags |= ts_flag;
    // The reply entry first: replies are rewritten back to exactly what the client sent to.
    // Once it is stored, the same value becomes the client's entry (the stack has no room for
    // two).
    let mut entry = CtValue {
        last_seen_ns: now,
        saddr: p.daddr,
        daddr: p.saddr,
        sport: p.dport,
        dport: p.sport,
        backend_id,
        flags,
        isn: if tcp { handshake::isn(ctx, p) } else { 0 },
        ts_shift,
        ..CtValue::default()
    };
    let mut reply_key = CtKey {
        saddr: backend.ip,
        daddr: p.saddr,
        sport: backend.port,
        dport: p.sport,
        proto: p.proto,
        dir: CT_DIR_REPLY,
        _pad: [0; 2],
    };
    // The client's side is translated to the backend, from the client's own address and port
    // or, SNATed, from the node's.
    let (mut source, mut source_port) = (p.saddr, p.sport);
    if remote {
        // The address the kernel itself would use towards the backend (the overlay device's),
        // so the reply comes back through the overlay; the node IP if it cannot say.
        let snat_ip = if route.params.ipv4_src != 0 {
            route.params.ipv4_src
        } else {
            p.daddr
        };
        entry.flags |= CT_FLAG_SNAT;
        reply_key.daddr = snat_ip;
        let port = snat::claim_port(&mut reply_key, &entry, now, cfg).ok_or_else(|| {
            counters::bump(Counter::SnatPortsExhausted);
        })?;
        if snat_ip != p.daddr {
            snat::remember_addr(snat_ip);
        }
        (source, source_port) = (snat_ip, port);
    } else {
        // Reply entry first: the backend may answer before this function returns.
        conntrack::insert(&reply_key, &entry, false).map_err(|()| {
            counters::bump(Counter::MapUpdateFailed);
        })?;
    }
    entry.saddr = source;
    entry.daddr = backend.ip;
    entry.sport = source_port;
    entry.dport = backend.port;
    let forward = &entry;
    conntrack::insert(&conntrack::key_of(p, CT_DIR_FORWARD), forward, false).map_err(|()| {
        counters::bump(Counter::MapUpdateFailed);
    })?;
    if tcp {
        handshake::count(1);
    }
    packet::rewrite(ctx, p, forward)?;
    if remote {
        timestamps::shift(ctx, p, forward, false)?;
        counters::bump(Counter::NodePortRemote);
        Ok(fib::redirect(ctx, &route))
    } else {
        counters::bump(Counter::NodePortLocal);
        Ok(OK)
    }
}
