//! IPv4 TCP/UDP parsing and rewriting for the tc programs.
//!
//! Every access goes through `bpf_skb_load_bytes`/`bpf_skb_store_bytes` at computed offsets
//! (no direct packet pointers), so there are no bounds to prove to the verifier and IP options
//! are handled. Fragments, non-IPv4 and non-TCP/UDP traffic are "not ours".

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};
use ekube_ebpf_common::{CtValue, IPPROTO_TCP, IPPROTO_UDP};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const IP_CSUM: usize = ETH_HLEN + 10;
const IP_SADDR: usize = ETH_HLEN + 12;
const IP_DADDR: usize = ETH_HLEN + 16;
/// TCP header flag bits (byte 13).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// The 5-tuple of a packet (addresses and ports as on the wire, network byte order).
#[derive(Clone, Copy)]
pub struct Packet {
    /// Offset of the TCP/UDP header.
    pub l4: usize,
    pub proto: u8,
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    /// TCP flags byte (0 for UDP).
    pub tcp_flags: u8,
}

/// The tuple of an unfragmented IPv4 TCP or UDP packet behind an Ethernet header.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Option<Packet> {
    let ethertype: u16 = ctx.load(12).ok()?;
    if u16::from_be(ethertype) != ETH_P_IP {
        return None;
    }
    let version_ihl: u8 = ctx.load(ETH_HLEN).ok()?;
    let ihl = (version_ihl & 0x0f) as usize * 4;
    if version_ihl >> 4 != 4 || ihl < 20 {
        return None;
    }
    // More-fragments flag or a fragment offset: only whole datagrams carry ports.
    let frag: u16 = ctx.load(ETH_HLEN + 6).ok()?;
    if u16::from_be(frag) & 0x3fff != 0 {
        return None;
    }
    let proto: u8 = ctx.load(ETH_HLEN + 9).ok()?;
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return None;
    }
    let l4 = ETH_HLEN + ihl;
    let tcp_flags = if proto == IPPROTO_TCP {
        ctx.load(l4 + 13).ok()?
    } else {
        0
    };
    Some(Packet {
        l4,
        proto,
        saddr: ctx.load(IP_SADDR).ok()?,
        daddr: ctx.load(IP_DADDR).ok()?,
        sport: ctx.load(l4).ok()?,
        dport: ctx.load(l4 + 2).ok()?,
        tcp_flags,
    })
}

/// Rewrites the packet's tuple to `to` (fields that already match are left alone), fixing the
/// IP and TCP/UDP checksums incrementally. A UDP checksum of zero ("none") stays zero.
#[inline(always)]
pub fn rewrite(ctx: &mut TcContext, p: &Packet, to: &CtValue) -> Result<(), ()> {
    let (csum, mangled) = if p.proto == IPPROTO_TCP {
        (p.l4 + 16, 0)
    } else {
        (p.l4 + 6, BPF_F_MARK_MANGLED_0 as u64)
    };
    let addr_flags = BPF_F_PSEUDO_HDR as u64 | mangled | 4;
    if to.saddr != p.saddr {
        ctx.store(IP_SADDR, &to.saddr, 0).map_err(drop)?;
        ctx.l3_csum_replace(IP_CSUM, p.saddr as u64, to.saddr as u64, 4)
            .map_err(drop)?;
        ctx.l4_csum_replace(csum, p.saddr as u64, to.saddr as u64, addr_flags)
            .map_err(drop)?;
    }
    if to.daddr != p.daddr {
        ctx.store(IP_DADDR, &to.daddr, 0).map_err(drop)?;
        ctx.l3_csum_replace(IP_CSUM, p.daddr as u64, to.daddr as u64, 4)
            .map_err(drop)?;
        ctx.l4_csum_replace(csum, p.daddr as u64, to.daddr as u64, addr_flags)
            .map_err(drop)?;
    }
    if to.sport != p.sport {
        ctx.store(p.l4, &to.sport, 0).map_err(drop)?;
        ctx.l4_csum_replace(csum, p.sport as u64, to.sport as u64, mangled | 2)
            .map_err(drop)?;
    }
    if to.dport != p.dport {
        ctx.store(p.l4 + 2, &to.dport, 0).map_err(drop)?;
        ctx.l4_csum_replace(csum, p.dport as u64, to.dport as u64, mangled | 2)
            .map_err(drop)?;
    }
    Ok(())
}

/// Writes the Ethernet destination and source addresses (after a FIB lookup).
#[inline(always)]
pub fn set_macs(ctx: &mut TcContext, dst: &[u8; 6], src: &[u8; 6]) -> Result<(), ()> {
    ctx.store(0, dst, 0).map_err(drop)?;
    ctx.store(6, src, 0).map_err(drop)
}
