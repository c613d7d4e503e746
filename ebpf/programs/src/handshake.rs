//! Unestablished TCP flows (ekube issue 13): only a SYN opens one, it counts against a share of
//! the conntrack until the client's ACK completes the handshake, and a SYN finding the share
//! full is refused, so a SYN flood with spoofed sources never makes the LRU evict established
//! flows. The count lives in `EKUBE_CT_UNEST` (see `ekube_ebpf_common::CT_UNESTABLISHED`).

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::programs::TcContext;
use ekube_ebpf_common::{
    CT_DIR_FORWARD, CT_DIR_REPLY, CT_FLAG_PEER_HALF_OPEN, CT_FLAG_UNESTABLISHED, CT_UNEST_GONE,
    CT_UNEST_OPENED, Counter, CtKey, CtValue, NodePortConfig,
};

use crate::{
    conntrack, counters,
    maps::{EKUBE_CONNTRACK, EKUBE_CT_UNEST},
    packet::{Packet, TCP_ACK, TCP_RST, TCP_SYN},
};

/// A SYN-ACK this long after the SYN is a retransmission: the backend kept the handshake
/// (a SYN-cookie answer is sent once, at once). Far above any RTT inside a cluster, far below
/// Linux's first SYN-ACK retransmission at 1 s.
const SYNACK_RETRANSMIT_NS: u64 = 500_000_000;

/// Whether `p` is a bare SYN, the only packet that may open a TCP flow (netfilter marks the
/// others INVALID).
#[inline(always)]
pub fn is_syn(p: &Packet) -> bool {
    p.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN
}

/// Whether `p` is the client's side of a completed handshake: an ACK without SYN or RST.
#[inline(always)]
pub fn completes(p: &Packet) -> bool {
    p.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_ACK
}

/// The client's initial sequence number in `p`, a SYN (network byte order); zero if it
/// cannot be read, which at worst makes the flow's first answer look like another handshake's.
#[inline(always)]
pub fn isn(ctx: &TcContext, p: &Packet) -> u32 {
    ctx.load(p.l4 + 4).unwrap_or(0)
}

/// Looks at the backend's answer `p` on the unestablished flow whose reply entry is `v`: an
/// ACK that does not acknowledge the client's SYN, or a retransmitted SYN-ACK, shows the
/// backend holding a half-open connection on the tuple (an older flow's, whose SNAT port this
/// flow took over), and marks the entry [`CT_FLAG_PEER_HALF_OPEN`] so that the port is not
/// handed on again while the backend still holds it.
#[inline(always)]
pub fn note_answer(ctx: &TcContext, p: &Packet, v: &CtValue, now: u64) {
    if p.tcp_flags & TCP_ACK == 0 || v.flags & CT_FLAG_PEER_HALF_OPEN != 0 {
        return;
    }
    let Ok(ack) = ctx.load::<u32>(p.l4 + 8) else {
        return;
    };
    let other = u32::from_be(ack) != u32::from_be(v.isn).wrapping_add(1);
    let retransmitted =
        p.tcp_flags & TCP_SYN != 0 && now.saturating_sub(v.last_seen_ns) > SYNACK_RETRANSMIT_NS;
    if !(other || retransmitted) {
        return;
    }
    if let Some(entry) = EKUBE_CONNTRACK.get_ptr_mut(&conntrack::key_of(p, CT_DIR_REPLY)) {
        // SAFETY: valid for this program run; racing writers set the same bit.
        unsafe { (*entry).flags |= CT_FLAG_PEER_HALF_OPEN };
        counters::bump(Counter::PeerHeldTuple);
    }
}

/// Whether the share of unestablished flows has room for one more.
#[inline(always)]
pub fn admit(cfg: &NodePortConfig) -> bool {
    let opened = EKUBE_CT_UNEST.get(CT_UNEST_OPENED).copied().unwrap_or(0);
    let gone = EKUBE_CT_UNEST.get(CT_UNEST_GONE).copied().unwrap_or(0);
    // Signed: races may take the count a little below zero until the next sweep.
    (opened.wrapping_sub(gone) as i64) < cfg.tcp_unestablished_max as i64
}

/// Adds `delta` (wrapping) to the count of open unestablished flows.
#[inline(always)]
pub fn count(delta: u64) {
    if let Some(slot) = EKUBE_CT_UNEST.get_ptr_mut(CT_UNEST_OPENED) {
        // SAFETY: a valid, aligned u64 of the map for this program run; every CPU updates it
        // with atomic adds only. The intrinsic, because `AtomicU64::fetch_add` needs
        // compare-and-swap, which the BPF target does not claim; the add alone is one BPF
        // instruction (`BPF_ATOMIC | BPF_ADD`).
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(slot, delta) };
    }
}

/// Marks both directions of the flow `p` belongs to (its forward entry is `v`) established:
/// from now on they are refreshed and the established timeout applies. Two CPUs completing the
/// same handshake at once count it twice; the sweeper's next pass corrects the count.
#[inline(always)]
pub fn establish(p: &Packet, v: &CtValue, now: u64) {
    mark_established(&conntrack::key_of(p, CT_DIR_FORWARD), now);
    mark_established(&conntrack::peer_key(v, p.proto, CT_DIR_REPLY), now);
    count(u64::MAX);
}

#[inline(always)]
fn mark_established(key: &CtKey, now: u64) {
    if let Some(entry) = EKUBE_CONNTRACK.get_ptr_mut(key) {
        // SAFETY: valid for this program run; racing writers store the same values.
        let entry = unsafe { &mut *entry };
        entry.flags &= !CT_FLAG_UNESTABLISHED;
        entry.last_seen_ns = now;
    }
}

/// Forgets the unestablished flow whose SNAT port a new flow just took over, by its client
/// entry `forward`: that entry goes, so a SYN the client retransmits opens a new flow instead of
/// landing on the new flow's tuple.
#[inline(always)]
pub fn forget_taken(forward: &CtKey) {
    let _ = EKUBE_CONNTRACK.remove(forward);
    count(u64::MAX);
}
