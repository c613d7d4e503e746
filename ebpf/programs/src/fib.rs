//! Routing decisions and redirects: `bpf_fib_lookup` tells where a (translated) packet goes;
//! SNATed packets are redirected there directly, because handing a packet whose source is a
//! local address back to the stack on ingress would drop it as a martian.

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_SRC, TC_ACT_SHOT,
        bpf_fib_lookup as FibLookupRaw,
    },
    helpers::{bpf_fib_lookup, bpf_redirect, bpf_redirect_neigh},
    programs::TcContext,
};
use ekube_ebpf_common::Counter;

use crate::{counters, packet};

/// `AF_INET`.
const AF_INET: u8 = 2;

/// `struct bpf_fib_lookup` for IPv4 (64 bytes; the IPv6 halves of the address unions unused).
#[repr(C)]
pub struct FibParams {
    family: u8,
    l4_protocol: u8,
    sport: u16,
    dport: u16,
    tot_len: u16,
    /// In: the ingress interface. Out: the egress interface.
    pub ifindex: u32,
    tos: u32,
    /// In: the packet's source. Out (with `BPF_FIB_LOOKUP_SRC`): the source address the kernel
    /// would pick for this route.
    pub ipv4_src: u32,
    _src6: [u32; 3],
    pub ipv4_dst: u32,
    _dst6: [u32; 3],
    _vlan: u32,
    smac: [u8; 6],
    dmac: [u8; 6],
}

const _: () = assert!(core::mem::size_of::<FibParams>() == 64);

/// A FIB lookup's return code and parameters.
pub struct Route {
    pub ret: i64,
    pub params: FibParams,
}

impl Route {
    /// The lookup found an egress interface (with or without a resolved neighbour).
    pub fn forwarded(&self) -> bool {
        self.ret == BPF_FIB_LKUP_RET_SUCCESS as i64 || self.ret == BPF_FIB_LKUP_RET_NO_NEIGH as i64
    }
}

/// Looks up the route of `src → dst` as if the packet arrived on this program's interface;
/// `want_src` also asks for the source address the kernel would choose.
#[inline(always)]
pub fn lookup(ctx: &TcContext, src: u32, dst: u32, want_src: bool) -> Route {
    let mut params = FibParams {
        family: AF_INET,
        l4_protocol: 0,
        sport: 0,
        dport: 0,
        tot_len: 0,
        // SAFETY: the context is a valid `__sk_buff`.
        ifindex: unsafe { (*ctx.skb.skb).ifindex },
        tos: 0,
        ipv4_src: src,
        _src6: [0; 3],
        ipv4_dst: dst,
        _dst6: [0; 3],
        _vlan: 0,
        smac: [0; 6],
        dmac: [0; 6],
    };
    let flags = if want_src { BPF_FIB_LOOKUP_SRC } else { 0 };
    let size = core::mem::size_of::<FibParams>() as i32;
    let ptr = &mut params as *mut FibParams as *mut FibLookupRaw;
    // SAFETY: `params` is a properly laid out `struct bpf_fib_lookup` on the stack.
    let mut ret = unsafe { bpf_fib_lookup(ctx.as_ptr(), ptr, size, flags) };
    if ret < 0 && want_src {
        // Kernels before 6.8 know no BPF_FIB_LOOKUP_SRC; the caller falls back to the node IP.
        params.ipv4_src = 0;
        // SAFETY: as above.
        ret = unsafe { bpf_fib_lookup(ctx.as_ptr(), ptr, size, 0) };
    }
    Route { ret, params }
}

/// Sends the (already rewritten) packet out where `route` says, filling in the Ethernet
/// addresses or letting the neighbour subsystem do it; drops it when there is no route.
#[inline(always)]
pub fn redirect(ctx: &mut TcContext, route: &Route) -> i32 {
    if route.ret == BPF_FIB_LKUP_RET_SUCCESS as i64 {
        if packet::set_macs(ctx, &route.params.dmac, &route.params.smac).is_err() {
            return drop_packet();
        }
        // SAFETY: plain helper call.
        return unsafe { bpf_redirect(route.params.ifindex, 0) } as i32;
    }
    if route.ret == BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
        // SAFETY: a null parameter block makes the helper resolve the packet's own next hop.
        return unsafe { bpf_redirect_neigh(route.params.ifindex, core::ptr::null_mut(), 0, 0) }
            as i32;
    }
    drop_packet()
}

#[inline(always)]
fn drop_packet() -> i32 {
    counters::bump(Counter::RedirectFailed);
    TC_ACT_SHOT as i32
}
