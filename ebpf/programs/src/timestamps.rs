//! TCP timestamps (RFC 7323) of SNATed NodePort flows, shifted so that the flows one node SNATs
//! onto a tuple show the backend one timestamp clock that only moves forward.
//!
//! Linux offsets each connection's timestamps by a hash of its addresses and ports, so two
//! flows SNATed onto the same tuple show the backend unrelated clocks. A backend that closed
//! the first flow holds the tuple in TIME_WAIT for 60 s and takes a new SYN on it only if the
//! SYN's timestamp is newer (PAWS); otherwise the client stalls until it retransmits. Without
//! the shift a closed flow keeps its SNAT port for those 60 s, which bounds new flows to one
//! backend at the span's size / 60 per second (about 480).
//!
//! A flow whose client's SYN carries timestamps where Linux writes them gets a shift at its
//! SYN: its TSvals reach the backend as the node's monotonic milliseconds at the SYN plus the
//! client's own progress, and the backend's TSecrs are shifted back. Every shifted flow on a
//! tuple then starts above the values the previous one showed, once that one has been closed
//! for [`SNAT_TS_REUSE_NS`](ekube_ebpf_common::SNAT_TS_REUSE_NS), so its port is handed on
//! after a second instead of a minute. Segments are found by their option layout, not by
//! walking the options: Linux puts `NOP NOP TS` first in every segment after the handshake,
//! and `MSS`, then `SACK-permitted TS` or `NOP NOP TS`, in a SYN or SYN-ACK. A flow whose SYN
//! has another layout (another system, or TCP-MD5 first) is not shifted and keeps its port for
//! TIME_WAIT as before. A client whose timestamps count microseconds (an opt-in route feature
//! of recent Linux) advances them far faster than the node's clock, so a reused port can still
//! meet a PAWS rejection; the `peer_held_tuple` counter shows it.
//!
//! The work runs in a `bpf_loop` callback of one round, so the verifier checks it once rather
//! than once per path into each of the four places that call it, and the callers pass their
//! condition in rather than branching on it, as a branch before the call doubles the states
//! the verifier explores after it. Written inline with such branches, it took the NodePort
//! ingress program's verification from about 70 ms to 437 ms (now 84 ms) and its stack past
//! 512 bytes.

use core::ffi::c_void;

use aya_ebpf::{bindings::__sk_buff, helpers::bpf_loop, programs::TcContext};
use ekube_ebpf_common::{CT_FLAG_TS_SHIFT, CtValue};

use crate::packet::{Packet, TCP_SYN};

/// `NOP NOP TS(len 10)`: the first option word of a segment after the handshake.
const NOP_NOP_TS: u32 = 0x0101_080a;
/// `SACK-permitted TS(len 10)`: the second option word of a SYN, after the MSS.
const SACK_OK_TS: u32 = 0x0402_080a;
/// The kind and length of the MSS option, the first half of a SYN's first option word.
const MSS: u32 = 0x0204;

/// What [`run`] does.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Job {
    /// Turns [`Work::value`], the node's clock in milliseconds, into the shift for the client's
    /// TSval in a SYN, and sets [`Work::flag`] to [`CT_FLAG_TS_SHIFT`]; both stay 0 without
    /// timestamps we know.
    Read,
    /// Adds [`Work::value`] to the TSval (a segment from the client).
    ShiftTsval,
    /// Takes [`Work::value`] off the TSecr (a segment from the backend).
    UnshiftTsecr,
}

/// One call of [`run`]: the packet, the job, and what it found. `flag` going in says whether
/// there is anything to do: the callers pass it on rather than test it, because a branch of
/// theirs would double the states the verifier explores after it.
#[repr(C)]
struct Work {
    skb: *mut __sk_buff,
    /// Offset of the TCP header.
    l4: u32,
    /// The clock, the shift, or the shift found.
    value: u32,
    tcp_flags: u8,
    job: Job,
    /// [`CT_FLAG_TS_SHIFT`] when there is work (in) or a shift was found (out).
    flag: u8,
    failed: u8,
}

/// The flag bit and shift of a new flow whose SYN is `p`: ([`CT_FLAG_TS_SHIFT`], the shift
/// that makes its TSvals read as the node's clock in milliseconds at `now`) when `wanted` and
/// the SYN carries timestamps in a layout we know; `(0, 0)` otherwise.
#[inline(always)]
pub fn shift_for(ctx: &TcContext, p: &Packet, now: u64, wanted: bool) -> (u8, u32) {
    // Milliseconds, wrapping as timestamps do.
    let clock = (now / 1_000_000) as u32;
    let wanted = u8::from(wanted) * CT_FLAG_TS_SHIFT;
    let work = run(ctx, p, Job::Read, clock, wanted);
    (work.flag, work.value)
}

/// Shifts the timestamps of `p`, already translated by the entry `v` of its flow (if it has
/// [`CT_FLAG_TS_SHIFT`]): the TSval of a segment from the client, the TSecr of one from the
/// backend (`reply`).
#[inline(always)]
pub fn shift(ctx: &mut TcContext, p: &Packet, v: &CtValue, reply: bool) -> Result<(), ()> {
    let job = if reply {
        Job::UnshiftTsecr
    } else {
        Job::ShiftTsval
    };
    match run(ctx, p, job, v.ts_shift, v.flags & CT_FLAG_TS_SHIFT).failed {
        0 => Ok(()),
        _ => Err(()),
    }
}

#[inline(always)]
fn run(ctx: &TcContext, p: &Packet, job: Job, value: u32, flag: u8) -> Work {
    let mut work = Work {
        skb: ctx.skb.skb,
        l4: p.l4 as u32,
        value,
        tcp_flags: p.tcp_flags,
        job,
        flag,
        failed: 0,
    };
    // SAFETY: `once` has the callback signature bpf_loop calls, and its context is `work`,
    // which lives on this stack for the whole call.
    unsafe {
        bpf_loop(
            1,
            once as *mut c_void,
            &mut work as *mut Work as *mut c_void,
            0,
        )
    };
    work
}

#[inline(never)]
extern "C" fn once(_index: u64, work: *mut c_void) -> i64 {
    // SAFETY: `work` is the `Work` run passed to bpf_loop; its `skb` is this program's context.
    let work = unsafe { &mut *(work as *mut Work) };
    let (wanted, clock) = (work.flag, work.value);
    if work.job == Job::Read {
        (work.flag, work.value) = (0, 0);
    }
    if wanted == 0 {
        return 1;
    }
    let mut ctx = TcContext::new(work.skb);
    let l4 = work.l4 as usize;
    let Some(tsval) = find(&ctx, l4, work.tcp_flags) else {
        return 1;
    };
    let at = if work.job == Job::UnshiftTsecr {
        tsval + 4
    } else {
        tsval
    };
    let Ok(old) = ctx.load::<u32>(at) else {
        return 1;
    };
    let old_host = u32::from_be(old);
    let new = match work.job {
        Job::Read => {
            (work.flag, work.value) = (CT_FLAG_TS_SHIFT, clock.wrapping_sub(old_host));
            return 1;
        }
        Job::ShiftTsval => old_host.wrapping_add(work.value),
        Job::UnshiftTsecr => old_host.wrapping_sub(work.value),
    }
    .to_be();
    let written = ctx.store(at, &new, 0).is_ok()
        && ctx
            .l4_csum_replace(l4 + 16, old as u64, new as u64, 4)
            .is_ok();
    work.failed = u8::from(!written);
    1
}

/// Offset of the TSval in the TCP segment at `l4` (TSecr follows it), when it carries
/// timestamps in one of the layouts Linux writes.
#[inline(always)]
fn find(ctx: &TcContext, l4: usize, tcp_flags: u8) -> Option<usize> {
    let data_offset: u8 = ctx.load(l4 + 12).ok()?;
    let header = (data_offset >> 4) as usize * 4;
    if header < 32 {
        return None;
    }
    let first = u32::from_be(ctx.load(l4 + 20).ok()?);
    if first == NOP_NOP_TS {
        return Some(l4 + 24);
    }
    if tcp_flags & TCP_SYN == 0 || header < 36 || first >> 16 != MSS {
        return None;
    }
    let second = u32::from_be(ctx.load(l4 + 24).ok()?);
    (second == SACK_OK_TS || second == NOP_NOP_TS).then_some(l4 + 28)
}
