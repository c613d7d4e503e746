#![no_std]
#![no_main]
//! ekube's socket-level service load balancer (DESIGN.md §7).
//!
//! Four cgroup v2 `sock_addr` programs: `connect4` and `sendmsg4` rewrite a destination that is a
//! service frontend (ClusterIP:port, or 127.0.0.1 / a node IP with a NodePort) to a backend;
//! `recvmsg4` and `getpeername4` put the frontend back so the application never sees the
//! translation. Each entry only calls its `try_*` core and maps an error to "leave the socket
//! call alone". Maps live in [`maps`], their layouts in `ekube-ebpf-common`.

mod counters;
mod lb;
mod maps;
mod revnat;
mod sock;

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use ekube_ebpf_common::Counter;

/// Return value that lets the socket call proceed (possibly with a rewritten address).
const ALLOW: i32 = 1;

#[cgroup_sock_addr(connect4)]
pub fn ekube_connect4(ctx: SockAddrContext) -> i32 {
    lb::translate(&ctx, Counter::Connect4Translated).unwrap_or_else(|()| counters::miss())
}

#[cgroup_sock_addr(sendmsg4)]
pub fn ekube_sendmsg4(ctx: SockAddrContext) -> i32 {
    lb::translate(&ctx, Counter::Sendmsg4Translated).unwrap_or_else(|()| counters::miss())
}

#[cgroup_sock_addr(recvmsg4)]
pub fn ekube_recvmsg4(ctx: SockAddrContext) -> i32 {
    revnat::restore(&ctx, Counter::Recvmsg4Restored);
    ALLOW
}

#[cgroup_sock_addr(getpeername4)]
pub fn ekube_getpeername4(ctx: SockAddrContext) -> i32 {
    revnat::restore(&ctx, Counter::Getpeername4Restored);
    ALLOW
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// Several helpers used here (and aya-log's output under `debug`) need a GPL-compatible license.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
