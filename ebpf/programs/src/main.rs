#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![expect(
    internal_features,
    reason = "atomic add on a map value (see handshake::count)"
)]
//! ekube's service load balancer (DESIGN.md §7): socket-level and per-packet NodePort.
//!
//! Two tc classifiers (`ekube_np_ingress`, `ekube_np_egress`, see [`nodeport`]) translate
//! traffic from outside to `<node IP>:<nodePort>`. Four cgroup v2 `sock_addr` programs: `connect4` and `sendmsg4` rewrite a destination that is a
//! service frontend (ClusterIP:port, or 127.0.0.1 / a node IP with a NodePort) to a backend;
//! `recvmsg4` and `getpeername4` put the frontend back so the application never sees the
//! translation. Each entry only calls its `try_*` core and maps an error to "leave the socket
//! call alone". Maps live in [`maps`], their layouts in `ekube-ebpf-common`.

mod conntrack;
mod counters;
mod fib;
mod handshake;
mod lb;
mod maps;
mod nodeport;
mod packet;
mod revnat;
mod snat;
mod sock;
mod timestamps;

use aya_ebpf::{
    macros::{cgroup_sock_addr, classifier},
    programs::{SockAddrContext, TcContext},
};
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

/// tc ingress on the node-address interfaces and the overlay device: NodePort DNAT/SNAT and
/// the reverse translation of replies. A translation that fails halfway drops the packet.
#[classifier]
pub fn ekube_np_ingress(mut ctx: TcContext) -> i32 {
    nodeport::ingress(&mut ctx).unwrap_or_else(|()| counters::miss_drop())
}

/// tc egress on the node-address interfaces: replies of flows delivered to local backends.
#[classifier]
pub fn ekube_np_egress(mut ctx: TcContext) -> i32 {
    nodeport::egress(&mut ctx).unwrap_or_else(|()| counters::miss_drop())
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
