//! Per-CPU counters: the only observability on the fast path (no per-packet logging).

use ekube_ebpf_common::Counter;

use aya_ebpf::bindings::TC_ACT_SHOT;

use crate::{ALLOW, maps::EKUBE_COUNTERS};

/// Adds one to `counter` on this CPU.
#[inline(always)]
pub fn bump(counter: Counter) {
    if let Some(slot) = EKUBE_COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot; a lost increment under preemption only undercounts.
        unsafe { *slot += 1 };
    }
}

/// Records an inconsistent map state and lets the socket call through untranslated.
#[inline(always)]
pub fn miss() -> i32 {
    bump(Counter::LookupMiss);
    ALLOW
}

/// Records a translation that failed halfway and drops the packet (tc programs).
#[inline(always)]
pub fn miss_drop() -> i32 {
    bump(Counter::LookupMiss);
    TC_ACT_SHOT as i32
}
