//! Access to the `bpf_sock_addr` context: the destination the application asked for, its
//! rewrite, and the socket / network-namespace identities.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    programs::SockAddrContext,
};

/// An IPv4 socket address exactly as the context holds it (both fields network byte order).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    pub ip: u32,
    pub port: u16,
}

/// The address in `user_ip4`/`user_port`: the destination for connect/sendmsg, the peer for
/// getpeername/recvmsg.
#[inline(always)]
pub fn user_addr(ctx: &SockAddrContext) -> Addr {
    // SAFETY: the kernel hands sock_addr programs a valid context pointer.
    let sa = unsafe { &*ctx.sock_addr };
    Addr {
        ip: sa.user_ip4,
        port: sa.user_port as u16,
    }
}

/// IP protocol of the socket (`IPPROTO_TCP`, `IPPROTO_UDP`, …).
#[inline(always)]
pub fn protocol(ctx: &SockAddrContext) -> u8 {
    // SAFETY: as above.
    unsafe { (*ctx.sock_addr).protocol as u8 }
}

/// Rewrites `user_ip4`/`user_port`; the kernel uses them after the program returns.
#[inline(always)]
pub fn rewrite_user_addr(ctx: &SockAddrContext, addr: Addr) {
    // SAFETY: as above; both fields are writable for the four attach types used here.
    unsafe {
        (*ctx.sock_addr).user_ip4 = addr.ip;
        (*ctx.sock_addr).user_port = addr.port as u32;
    }
}

/// The socket's cookie: stable for the socket's lifetime, keys the reverse-NAT map.
#[inline(always)]
pub fn socket_cookie(ctx: &SockAddrContext) -> u64 {
    // SAFETY: helper allowed for sock_addr programs; takes the context pointer.
    unsafe { bpf_get_socket_cookie(ctx.as_ptr()) }
}

/// The cookie of the socket's network namespace: the "client" for session affinity (one pod).
#[inline(always)]
pub fn netns_cookie(ctx: &SockAddrContext) -> u64 {
    // SAFETY: helper allowed for sock_addr programs; takes the context pointer.
    unsafe { bpf_get_netns_cookie(ctx.as_ptr()) }
}
