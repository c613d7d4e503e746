//! The per-packet conntrack: find a flow's entry, refresh it, notice it closing, create both
//! directions of a new flow.
//!
//! Entries are refreshed at most once a second per direction (a shared-map write per packet
//! would bounce cache lines between CPUs), and an entry idle past its timeout counts as gone
//! even before the proxy's sweep deletes it. An unestablished TCP flow's entries are never
//! refreshed, so it lives at most the SYN timeout whatever the backend retransmits.

use aya_ebpf::bindings::BPF_NOEXIST;
use ekube_ebpf_common::{
    CT_DIR_FORWARD, CT_DIR_REPLY, CT_FLAG_CLOSING, CT_FLAG_RESET, CT_FLAG_UNESTABLISHED, Counter,
    CtKey, CtValue, IPPROTO_TCP, NodePortConfig,
};

use crate::{
    counters,
    maps::{EKUBE_CONNTRACK, EKUBE_NP_CONFIG},
    packet::{Packet, TCP_FIN, TCP_RST},
};

/// Refresh granularity of `last_seen_ns`.
const REFRESH_NS: u64 = 1_000_000_000;

/// The proxy's settings, or the defaults before it wrote any.
#[inline(always)]
pub fn config() -> NodePortConfig {
    match EKUBE_NP_CONFIG.get(0) {
        Some(cfg) if cfg.tcp_established_ns != 0 => *cfg,
        _ => NodePortConfig::DEFAULT,
    }
}

/// The key of `p` in direction `dir`, exactly as it is on the wire.
#[inline(always)]
pub fn key_of(p: &Packet, dir: u8) -> CtKey {
    CtKey {
        saddr: p.saddr,
        daddr: p.daddr,
        sport: p.sport,
        dport: p.dport,
        proto: p.proto,
        dir,
        _pad: [0; 2],
    }
}

/// The key of the other direction of the flow whose entry holds `v` (the tuple its packets
/// are rewritten to), `dir` being that other direction.
#[inline(always)]
pub fn peer_key(v: &CtValue, proto: u8, dir: u8) -> CtKey {
    CtKey {
        saddr: v.daddr,
        daddr: v.saddr,
        sport: v.dport,
        dport: v.sport,
        proto,
        dir,
        _pad: [0; 2],
    }
}

/// The live entry of `p` in direction `dir`, refreshed (and marked closing on FIN/RST), read
/// in place: the tc programs' stack has little room for copies.
#[inline(always)]
pub fn lookup(p: &Packet, dir: u8, now: u64, cfg: &NodePortConfig) -> Option<&'static CtValue> {
    let entry = EKUBE_CONNTRACK.get_ptr_mut(&key_of(p, dir))?;
    // SAFETY: valid for this program run; racing writers store equivalent values (at worst a
    // slightly older timestamp, which only shortens the entry's life by a second).
    let entry = unsafe { &mut *entry };
    if now > entry.last_seen_ns && now - entry.last_seen_ns > cfg.timeout_ns(p.proto, entry.flags) {
        return None;
    }
    let mut flags = entry.flags;
    if p.proto == IPPROTO_TCP && p.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
        flags |= CT_FLAG_CLOSING;
        if p.tcp_flags & TCP_RST != 0 {
            flags |= CT_FLAG_RESET;
        }
    }
    let established = flags & CT_FLAG_UNESTABLISHED == 0;
    let stale = now.saturating_sub(entry.last_seen_ns) > REFRESH_NS;
    if flags != entry.flags || (established && stale) {
        entry.flags = flags;
        if established {
            entry.last_seen_ns = now;
        }
    }
    Some(entry)
}

/// Deletes the entries of a finished NodePort flow whose reply tuple the SYN `p` reuses, a SYN
/// the programs do not translate (to a pod address, or to a node address where no NodePort
/// listens: a hostNetwork backend). A client that reached a backend on this node through a
/// NodePort and then, from the same port, connected straight to the backend would otherwise
/// have the new connection's replies rewritten on egress as the old flow's (from the NodePort),
/// and its connect fail for as long as it retried. Finished means reset by either side, or
/// closed by both (a flow whose one side sent FIN may still carry the other side's data).
/// The client's entry goes too, so a late segment of the old flow is not translated onto the
/// tuple the new connection now holds. A live flow's entries stay: the backend holds that
/// tuple, so the new connection cannot open anyway (netfilter would remap its source port,
/// which tc cannot).
#[inline(always)]
pub fn forget_stale_reply(p: &Packet) {
    let reply_key = key_of_reply_to(p);
    // SAFETY: plain integers; a racing writer at worst makes this keep entries a packet is
    // closing, or delete ones a packet is refreshing (that flow then looks new).
    let Some(reply) = (unsafe { EKUBE_CONNTRACK.get(&reply_key) }) else {
        return;
    };
    let forward_key = peer_key(reply, p.proto, CT_DIR_FORWARD);
    // SAFETY: as above.
    let forward = unsafe { EKUBE_CONNTRACK.get(&forward_key) }.filter(|f| onto(f, &reply_key));
    // A client entry that is gone (or now another flow's) has nothing more to send.
    let forward_flags = forward.map_or(CT_FLAG_CLOSING, |f| f.flags);
    let reset = (reply.flags | forward_flags) & CT_FLAG_RESET != 0;
    if !reset && reply.flags & forward_flags & CT_FLAG_CLOSING == 0 {
        return;
    }
    let _ = EKUBE_CONNTRACK.remove(&reply_key);
    if forward.is_some() {
        let _ = EKUBE_CONNTRACK.remove(&forward_key);
    }
    counters::bump(Counter::StaleReplyForgotten);
}

/// The reply key a flow whose backend answers `p`'s sender from `p`'s destination would have.
#[inline(always)]
fn key_of_reply_to(p: &Packet) -> CtKey {
    CtKey {
        saddr: p.daddr,
        daddr: p.saddr,
        sport: p.dport,
        dport: p.sport,
        proto: p.proto,
        dir: CT_DIR_REPLY,
        _pad: [0; 2],
    }
}

/// Whether the client entry `forward` translates onto the tuple whose reply key is `reply_key`.
#[inline(always)]
pub fn onto(forward: &CtValue, reply_key: &CtKey) -> bool {
    forward.saddr == reply_key.daddr
        && forward.sport == reply_key.dport
        && forward.daddr == reply_key.saddr
        && forward.dport == reply_key.sport
}

/// Writes one direction of a new flow; `exclusive` fails if the key is taken (SNAT ports).
#[inline(always)]
pub fn insert(key: &CtKey, value: &CtValue, exclusive: bool) -> Result<(), ()> {
    let flags = if exclusive { BPF_NOEXIST as u64 } else { 0 };
    EKUBE_CONNTRACK.insert(key, value, flags).map_err(drop)
}
