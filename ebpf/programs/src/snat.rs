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

use core::ffi::c_void;

use aya_ebpf::helpers::{bpf_get_prandom_u32, bpf_loop};
use ekube_ebpf_common::{
    CT_FLAG_CLOSING, CT_FLAG_PEER_HALF_OPEN, CT_FLAG_UNESTABLISHED, CtKey, CtValue, NodeAddrKey,
    NodeAddrValue, NodePortConfig,
};

use crate::{
    conntrack, handshake,
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
/// A live abandoned handshake that held it is forgotten here, after the port loop, which the
/// verifier explores once per try.
#[inline(always)]
pub fn claim_port(
    reply_key: &mut CtKey,
    reply: &CtValue,
    now: u64,
    cfg: &NodePortConfig,
) -> Option<u16> {
    let (port, taken) = find_port(reply_key, reply, now, cfg)?;
    if let Some(old) = taken
        && !expired(&old, reply_key.proto, now, cfg)
    {
        handshake::forget_taken(&old, reply_key.proto);
    }
    Some(port)
}

/// Tries random ports until one is free; returns it and the entry it took over, if any.
///
/// The tries run in `bpf_loop`, so the verifier checks one try rather than each of
/// [`SNAT_TRIES`] unrolled copies once per path into this function: unrolled, the loop made
/// NodePort ingress take 1.4 s to verify, most of the proxy's start-up.
#[inline(always)]
fn find_port(
    reply_key: &mut CtKey,
    reply: &CtValue,
    now: u64,
    cfg: &NodePortConfig,
) -> Option<(u16, Option<CtValue>)> {
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
        took_over: 0,
        taken: CtValue::default(),
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
    if search.port == 0 {
        return None;
    }
    let taken = (search.took_over != 0).then_some(search.taken);
    Some((search.port, taken))
}

/// What one try of [`find_port`] reads and what the tries found.
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
    /// 1 when the port was taken over from `taken`.
    took_over: u8,
    taken: CtValue,
}

/// One try: a random port of the span, claimed if free or its holder is gone. Returns 1 (stop)
/// once a port is claimed, 0 (go on) otherwise.
#[inline(never)]
extern "C" fn try_port(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `PortSearch` find_port passed to bpf_loop, and its pointers are
    // the caller's live references.
    let search = unsafe { &mut *(ctx as *mut PortSearch) };
    let (reply_key, reply, cfg) = unsafe { (&mut *search.reply_key, &*search.reply, &*search.cfg) };
    // `max(1)` shows the compiler the span is never 0 (find_port makes it at least 1), so no
    // division panic is linked in; BPF programs cannot panic.
    let span = search.span.max(1);
    // SAFETY: helper without arguments.
    let port = (search.min + unsafe { bpf_get_prandom_u32() } % span) as u16;
    reply_key.dport = port.to_be();
    if conntrack::insert(reply_key, reply, true).is_ok() {
        search.port = reply_key.dport;
        return 1;
    }
    // SAFETY: plain integers; a racing writer at worst makes two new flows pick the same
    // dead entry, which needs the same random port within the same instant.
    let held = unsafe { EKUBE_CONNTRACK.get(reply_key) }.copied();
    if let Some(old) = held
        && (expired(&old, reply_key.proto, search.now, cfg) || abandoned(&old, search.now))
        && conntrack::insert(reply_key, reply, false).is_ok()
    {
        search.port = reply_key.dport;
        search.took_over = 1;
        search.taken = old;
        return 1;
    }
    0
}

/// Whether `old` is idle past its timeout (the sweeper has not deleted it yet). A closed
/// SNATed flow's timeout is the TIME_WAIT hold: the backend may still hold the tuple in
/// TIME_WAIT, and Linux randomises TCP timestamps per connection, so a SYN of any other flow on
/// that tuple can fail the backend's PAWS check and stall until the client retransmits.
#[inline(always)]
fn expired(old: &CtValue, proto: u8, now: u64, cfg: &NodePortConfig) -> bool {
    now.saturating_sub(old.last_seen_ns) > cfg.timeout_ns(proto, old.flags)
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
