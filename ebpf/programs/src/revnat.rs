//! Socket-level reverse NAT: remember what the application asked for, show it back.
//!
//! The key is the socket cookie plus the backend address, so one unconnected UDP socket talking
//! to several services gets each reply's source mapped to the right frontend.

use aya_ebpf::programs::SockAddrContext;
use ekube_ebpf_common::{Counter, RevNatKey, RevNatValue};

use crate::{
    counters,
    maps::EKUBE_REV_NAT,
    sock::{self, Addr},
};

#[inline(always)]
fn key(ctx: &SockAddrContext, backend: Addr) -> RevNatKey {
    RevNatKey {
        cookie: sock::socket_cookie(ctx),
        ip: backend.ip,
        port: backend.port,
        _pad: 0,
    }
}

/// Records that this socket's traffic to `backend` was meant for `frontend`. Writes only when
/// the entry is missing or different, so a busy UDP sender does not rewrite it per datagram.
#[inline(always)]
pub fn record(ctx: &SockAddrContext, backend: Addr, frontend: Addr) {
    let key = key(ctx, backend);
    let value = RevNatValue {
        ip: frontend.ip,
        port: frontend.port,
        _pad: 0,
    };
    // SAFETY: plain integers; a racing update yields an equal or newer value.
    if unsafe { EKUBE_REV_NAT.get(&key) }.is_some_and(|v| *v == value) {
        return;
    }
    if EKUBE_REV_NAT.insert(&key, &value, 0).is_err() {
        counters::bump(Counter::MapUpdateFailed);
    }
}

/// Rewrites the peer address (reply source, `getpeername()` result) back to the frontend.
#[inline(always)]
pub fn restore(ctx: &SockAddrContext, counter: Counter) {
    let peer = sock::user_addr(ctx);
    // SAFETY: as in `record`.
    let Some(value) = (unsafe { EKUBE_REV_NAT.get(&key(ctx, peer)) }).copied() else {
        return;
    };
    sock::rewrite_user_addr(
        ctx,
        Addr {
            ip: value.ip,
            port: value.port,
        },
    );
    counters::bump(counter);
}
