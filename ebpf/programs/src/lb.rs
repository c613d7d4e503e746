//! Service lookup, backend selection and the destination rewrite for `connect4`/`sendmsg4`;
//! frontend lookup and backend selection are shared with the tc NodePort path.

use aya_ebpf::{
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_set_retval},
    programs::SockAddrContext,
};
use ekube_ebpf_common::{
    AFFINITY_CLIENT_NETNS, AffinityKey, AffinityValue, Backend, Counter, HOSTPORT_VIP, IPPROTO_TCP,
    IPPROTO_UDP, NODEPORT_VIP, NodeAddrKey, SVC_FLAG_AFFINITY, SVC_FLAG_HOSTPORT, ServiceKey,
    ServiceValue,
};

use crate::{
    ALLOW, counters,
    maps::{EKUBE_AFFINITY, EKUBE_BACKENDS, EKUBE_NODE_IPS, EKUBE_SERVICES},
    revnat,
    sock::{self, Addr},
};

/// Return value that fails the socket call with the error set by `bpf_set_retval`.
const REJECT: i32 = 0;
/// `ECONNREFUSED`, what a client of a service without endpoints gets (as with kube-proxy's
/// REJECT rule), instead of the `EPERM` a bare `REJECT` would give.
const ECONNREFUSED: i32 = 111;
/// 127.0.0.1 as the context holds it (network byte order).
const LOOPBACK: u32 = u32::from_ne_bytes([127, 0, 0, 1]);

/// Rewrites the destination of a connect/sendmsg to a service frontend to one of its backends.
/// `Ok` carries the program's return value; `Err` means the maps were inconsistent.
#[inline(always)]
pub fn translate(ctx: &SockAddrContext, counter: Counter) -> Result<i32, ()> {
    let proto = sock::protocol(ctx);
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return Ok(ALLOW);
    }
    let dst = sock::user_addr(ctx);
    let Some((key, svc)) = lookup_service(dst, proto) else {
        return Ok(ALLOW);
    };
    if svc.count == 0 {
        return Ok(refuse());
    }
    let backend_id = select_backend(sock::netns_cookie(ctx), AFFINITY_CLIENT_NETNS, &key, &svc)?;
    let backend = lookup_backend(backend_id)?;
    let to = Addr {
        ip: backend.ip,
        port: backend.port,
    };
    revnat::record(ctx, to, dst);
    #[cfg(feature = "debug")]
    aya_log_ebpf::debug!(
        ctx,
        "{}:{} -> backend {} {}:{}",
        u32::from_be(dst.ip),
        u16::from_be(dst.port),
        backend_id,
        u32::from_be(to.ip),
        u16::from_be(to.port)
    );
    sock::rewrite_user_addr(ctx, to);
    counters::bump(counter);
    Ok(ALLOW)
}

/// Slot 0 of the frontend a socket call to `dst` is for (see [`lookup_frontend`]); `dst` is a
/// node address when it is 127.0.0.1 or in the node-address map.
#[inline(always)]
fn lookup_service(dst: Addr, proto: u8) -> Option<(ServiceKey, ServiceValue)> {
    lookup_frontend(dst.ip, dst.port, proto, || {
        // SAFETY: plain integers; a concurrent update at worst yields a stale copy.
        dst.ip == LOOPBACK || unsafe { EKUBE_NODE_IPS.get(&NodeAddrKey { ip: dst.ip }) }.is_some()
    })
}

/// Slot 0 of the frontend for `ip:port` (both network byte order), in this order: the
/// ClusterIP entry; then, only when `ip` is a node address (`is_node_addr` is asked at most
/// once), the NodePort entry, a hostPort bound to `ip`, a hostPort bound to every node
/// address. So a NodePort always wins over a pod's hostPort of the same number, and a
/// hostPort entry never catches traffic to an address that is not this node's.
#[inline(always)]
pub fn lookup_frontend(
    ip: u32,
    port: u16,
    proto: u8,
    is_node_addr: impl FnOnce() -> bool,
) -> Option<(ServiceKey, ServiceValue)> {
    let exact_key = ServiceKey {
        vip: ip,
        port,
        slot: 0,
        proto,
        _pad: [0; 3],
    };
    // SAFETY: values are plain integers; a concurrent update at worst yields a stale copy.
    let exact = unsafe { EKUBE_SERVICES.get(&exact_key) }.copied();
    if let Some(svc) = exact
        && svc.flags & SVC_FLAG_HOSTPORT == 0
    {
        return Some((exact_key, svc));
    }
    if !is_node_addr() {
        return None;
    }
    let node_port = ServiceKey {
        vip: NODEPORT_VIP,
        ..exact_key
    };
    // SAFETY: as above.
    if let Some(svc) = unsafe { EKUBE_SERVICES.get(&node_port) } {
        return Some((node_port, *svc));
    }
    if let Some(svc) = exact {
        return Some((exact_key, svc));
    }
    let host_port = ServiceKey {
        vip: HOSTPORT_VIP,
        ..exact_key
    };
    // SAFETY: as above.
    unsafe { EKUBE_SERVICES.get(&host_port) }.map(|svc| (host_port, *svc))
}

/// The backend for this connection: the client's affinity entry if the service has one and it
/// is fresh, else a uniformly random slot. `client` and `kind` identify the client
/// (`AFFINITY_CLIENT_*`): a netns cookie on the socket path, an address on the tc path.
#[inline(always)]
pub fn select_backend(
    client: u64,
    kind: u8,
    key: &ServiceKey,
    svc: &ServiceValue,
) -> Result<u32, ()> {
    if svc.flags & SVC_FLAG_AFFINITY == 0 {
        return random_slot(key, svc).map(|(_, id)| id);
    }
    let akey = AffinityKey {
        client,
        service_id: svc.service_id,
        kind,
        _pad: [0; 3],
    };
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let timeout_ns = svc.affinity_timeout as u64 * 1_000_000_000;
    if let Some(entry) = EKUBE_AFFINITY.get_ptr_mut(&akey) {
        // SAFETY: the pointer is valid for this program run; a racing writer stores the same
        // kind of value, so the worst case is a slightly older timestamp.
        let entry = unsafe { &mut *entry };
        // Still this service's backend: its slot holds it (slots keep their backend while it
        // stays in the service) and the backend entry exists.
        let in_service = entry.slot >= 1
            && entry.slot <= svc.count
            && slot_backend(key, entry.slot) == Ok(entry.backend_id);
        let backend_alive =
            in_service && unsafe { EKUBE_BACKENDS.get(&entry.backend_id) }.is_some();
        if now.wrapping_sub(entry.last_used_ns) <= timeout_ns && backend_alive {
            entry.last_used_ns = now;
            counters::bump(Counter::AffinityHit);
            return Ok(entry.backend_id);
        }
    }
    let (slot, backend_id) = random_slot(key, svc)?;
    let value = AffinityValue {
        last_used_ns: now,
        backend_id,
        slot,
        _pad: 0,
    };
    if EKUBE_AFFINITY.insert(&akey, &value, 0).is_err() {
        counters::bump(Counter::MapUpdateFailed);
    }
    Ok(backend_id)
}

/// A random slot `1..=count` and the backend id it holds.
#[inline(always)]
fn random_slot(key: &ServiceKey, svc: &ServiceValue) -> Result<(u16, u32), ()> {
    // SAFETY: helper without arguments.
    let slot = (unsafe { bpf_get_prandom_u32() } % svc.count as u32 + 1) as u16;
    Ok((slot, slot_backend(key, slot)?))
}

/// The backend id in `slot` of the service `key` names.
#[inline(always)]
fn slot_backend(key: &ServiceKey, slot: u16) -> Result<u32, ()> {
    let slot_key = ServiceKey { slot, ..*key };
    // SAFETY: as in `lookup_service`.
    unsafe { EKUBE_SERVICES.get(&slot_key) }
        .map(|v| v.backend_id)
        .ok_or(())
}

#[inline(always)]
pub fn lookup_backend(id: u32) -> Result<Backend, ()> {
    // SAFETY: as in `lookup_service`.
    unsafe { EKUBE_BACKENDS.get(&id) }.copied().ok_or(())
}

/// Fails the socket call with `ECONNREFUSED` (the service exists but has no ready endpoint).
#[inline(always)]
fn refuse() -> i32 {
    counters::bump(Counter::NoBackend);
    // SAFETY: helper allowed for connect4/sendmsg4; sets the error the syscall returns.
    unsafe { bpf_set_retval(-ECONNREFUSED) };
    REJECT
}
