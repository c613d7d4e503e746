//! SNAT for NodePort flows to backends on other nodes: claiming a source port whose reply
//! tuple is free, and remembering the addresses flows were SNATed to.
//!
//! Ports come at random from the configured span. A port is free when no reply entry holds
//! it, or its holder is past its timeout (a closed SNATed flow holds its port for TIME_WAIT), or
//! its holder is a handshake abandoned for over [`ABANDONED_HANDSHAKE_NS`]: SYNs with spoofed
//! sources, which never complete, then cannot keep the span taken for the whole SYN timeout.
//! An abandoned handshake the backend still holds half-open (see
//! [`CT_FLAG_PEER_HALF_OPEN`]) keeps its port: a new flow's SYN on that tuple would meet the
//! backend's stale connection and stall until the client gave up.
//!
//! A new flow with shifted timestamps (see [`crate::timestamps`]) may also take the port of
//! such a flow whose both sides closed over [`SNAT_TS_REUSE_NS`] ago: the backend's TIME_WAIT
//! on the tuple accepts its SYN, whose timestamp is newer.

use core::ffi::c_void;

use aya_ebpf::helpers::{bpf_get_prandom_u32, bpf_loop};
use ekube_ebpf_common::{
    CT_DIR_FORWARD, CT_FLAG_CLOSING, CT_FLAG_PEER_HALF_OPEN, CT_FLAG_TS_SHIFT,
    CT_FLAG_UNESTABLISHED, Counter, CtKey, CtValue, NodeAddrKey, NodeAddrValue, NodePortConfig,
    SNAT_TS_REUSE_NS,
};

use crate::{
    conntrack, counters, handshake,
    maps::{EKUBE_CONNTRACK, EKUBE_SNAT_IPS},
};

/// Random ports tried for a free SNAT port before giving up on a new flow: with half the range
/// taken, one new flow in 65,536 fails.
const SNAT_TRIES: u32 = 16;
/// Age after which an unestablished flow may lose its SNAT port to a new flow: Linux's initial
/// retransmission timeout (`TCP_TIMEOUT_INIT`, 1 s). A handshake not done by then has lost a
/// packet, and the client's retransmitted SYN opens a new flow.
const ABANDONED_HANDSHAKE_NS: u64 = 1_000_000_000;

/// Makes ingress look up flows to `ip`, an address SNATed flows' replies come back to that is
/// not a node address (written once per address; it holds only this node's own addresses, so
/// it never fills up). Written after the SNAT port is claimed: earlier, the extra branch makes
/// the verifier lose track of the port loop's states and reject the program as too large.
#[inline(always)]
pub fn remember_addr(ip: u32) {
    let key = NodeAddrKey { ip };
    // SAFETY: plain integers; presence is all that is read.
    if unsafe { EKUBE_SNAT_IPS.get(&key) }.is_none() {
        let _ = EKUBE_SNAT_IPS.insert(&key, &NodeAddrValue::default(), 0);
    }
}

/// Claims a free SNAT port by writing the reply entry; returns the port (network byte order).
///
/// The tries run in `bpf_loop`, so the verifier checks one try rather than each of
/// [`SNAT_TRIES`] unrolled copies once per path into this function: unrolled, the loop made
/// NodePort ingress take 1.4 s to verify, most of the proxy's start-up.
#[inline(always)]
pub fn claim_port(
    reply_key: &mut CtKey,
    reply: &CtValue,
    now: u64,
    cfg: &NodePortConfig,
) -> Option<u16> {
    let (min, max) = (cfg.snat_port_min, cfg.snat_port_max);
    let mut search = PortSearch {
        reply_key,
        reply,
        cfg,
        now,
        min: min as u32,
        span: if max >= min {
            (max - min) as u32 + 1
        } else {
            1
        },
        port: 0,
    };
    // SAFETY: `try_port` has the callback signature bpf_loop calls, and its context is
    // `search`, which lives on this stack for the whole call.
    unsafe {
        bpf_loop(
            SNAT_TRIES,
            try_port as *mut c_void,
            &mut search as *mut PortSearch as *mut c_void,
            0,
        )
    };
    (search.port != 0).then_some(search.port)
}

/// What one try of [`claim_port`] reads, and the port the tries found.
#[repr(C)]
struct PortSearch {
    /// The reply tuple; its `dport` is set to each port tried.
    reply_key: *mut CtKey,
    reply: *const CtValue,
    cfg: *const NodePortConfig,
    now: u64,
    /// The lowest port of the span and the span's size, host byte order.
    min: u32,
    span: u32,
    /// The claimed port, network byte order; 0 while none is (0 is never in the span).
    port: u16,
}

/// One try: a random port of the span, claimed if free or its holder is gone (a live holder
/// that may be displaced is forgotten). Returns 1 (stop) once a port is claimed, 0 (go on)
/// otherwise.
#[inline(never)]
extern "C" fn try_port(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `PortSearch` claim_port passed to bpf_loop, and its pointers are
    // the caller's live references.
    let search = unsafe { &mut *(ctx as *mut PortSearch) };
    let (reply_key, reply, cfg) = unsafe { (&mut *search.reply_key, &*search.reply, &*search.cfg) };
    // `max(1)` shows the compiler the span is never 0 (claim_port makes it at least 1), so no
    // division panic is linked in; BPF programs cannot panic.
    let span = search.span.max(1);
    // SAFETY: helper without arguments.
    let port = (search.min + unsafe { bpf_get_prandom_u32() } % span) as u16;
    reply_key.dport = port.to_be();
    if conntrack::insert(reply_key, reply, true).is_ok() {
        search.port = reply_key.dport;
        return 1;
    }
    // SAFETY: plain integers, read in place (the try's stack is small); a racing writer at
    // worst makes two new flows pick the same dead entry, which needs the same random port
    // within the same instant.
    let Some(old) = (unsafe { EKUBE_CONNTRACK.get(reply_key) }) else {
        return 0;
    };
    let now = search.now;
    let expired = expired(old, reply_key.proto, now, cfg);
    if !(expired || abandoned(old, now) || closed_long_enough(old, reply, reply_key, now)) {
        return 0;
    }
    // What forgetting the holder needs, read before the write replaces it.
    let handshake = old.flags & CT_FLAG_UNESTABLISHED != 0;
    let forward = conntrack::peer_key(old, reply_key.proto, CT_DIR_FORWARD);
    if conntrack::insert(reply_key, reply, false).is_err() {
        return 0;
    }
    search.port = reply_key.dport;
    if !expired {
        if handshake {
            handshake::forget_taken(&forward);
        } else {
            forget_closed(&forward, reply_key);
            counters::bump(Counter::SnatPortReused);
        }
    }
    1
}

/// Deletes the client's entry `forward` of a closed flow whose port the flow of `reply_key`
/// took, so that a late segment of the old flow is not translated onto the new one. Left alone
/// if it now belongs to another flow (the client reused its port).
#[inline(always)]
fn forget_closed(forward: &CtKey, reply_key: &CtKey) {
    // SAFETY: plain integers; a racing writer at worst makes this keep a stale entry.
    if let Some(value) = unsafe { EKUBE_CONNTRACK.get(forward) }
        && conntrack::onto(value, reply_key)
    {
        let _ = EKUBE_CONNTRACK.remove(forward);
    }
}

/// Whether `old` is idle past its timeout (the sweeper has not deleted it yet). A closed
/// SNATed flow's timeout is the TIME_WAIT hold: the backend may still hold the tuple in
/// TIME_WAIT, and Linux randomises TCP timestamps per connection, so a SYN of any other flow on
/// that tuple can fail the backend's PAWS check and stall until the client retransmits.
#[inline(always)]
fn expired(old: &CtValue, proto: u8, now: u64, cfg: &NodePortConfig) -> bool {
    now.saturating_sub(old.last_seen_ns) > cfg.timeout_ns(proto, old.flags)
}

/// Whether the new flow `new` (shifted timestamps) may take the port of `old`, a flow with
/// shifted timestamps whose backend closed over [`SNAT_TS_REUSE_NS`] ago, as did its client
/// (or its client's entry is gone). Both sides: a flow closed by one side only may still carry
/// the other side's data.
#[inline(always)]
fn closed_long_enough(old: &CtValue, new: &CtValue, reply_key: &CtKey, now: u64) -> bool {
    const CLOSED: u8 = CT_FLAG_TS_SHIFT | CT_FLAG_CLOSING;
    const UNFIT: u8 = CLOSED | CT_FLAG_UNESTABLISHED | CT_FLAG_PEER_HALF_OPEN;
    if new.flags & CT_FLAG_TS_SHIFT == 0
        || old.flags & UNFIT != CLOSED
        || now.saturating_sub(old.last_seen_ns) <= SNAT_TS_REUSE_NS
    {
        return false;
    }
    let key = conntrack::peer_key(old, reply_key.proto, CT_DIR_FORWARD);
    // SAFETY: plain integers; a racing writer at worst yields a stale copy.
    match unsafe { EKUBE_CONNTRACK.get(&key) } {
        Some(forward) if conntrack::onto(forward, reply_key) => {
            forward.flags & CT_FLAG_CLOSING != 0
                && now.saturating_sub(forward.last_seen_ns) > SNAT_TS_REUSE_NS
        }
        _ => true,
    }
}

/// Whether `old` is a handshake (not closed, not held half-open by the backend) started over
/// [`ABANDONED_HANDSHAKE_NS`] ago (unestablished entries are never refreshed, so
/// `last_seen_ns` is its SYN's time).
#[inline(always)]
fn abandoned(old: &CtValue, now: u64) -> bool {
    old.flags & (CT_FLAG_UNESTABLISHED | CT_FLAG_CLOSING | CT_FLAG_PEER_HALF_OPEN)
        == CT_FLAG_UNESTABLISHED
        && now.saturating_sub(old.last_seen_ns) > ABANDONED_HANDSHAKE_NS
}
