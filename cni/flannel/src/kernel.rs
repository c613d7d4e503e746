//! The overlay device through netlink: finding the underlay, creating `flannel.<vni>`, and
//! reading and writing its routes, neighbours and FDB entries ([`Overlay`] for [`Netlink`]).
//!
//! Everything goes through one `rtnetlink` connection opened in the daemon's network namespace
//! on the daemon's tokio runtime; nothing shells out to `ip` or `bridge`.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnetwork::Ipv4Network;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope,
};
use rtnetlink::{Handle, LinkUnspec, LinkVxlan, RouteMessageBuilder};

use super::peers::Mac;
use super::reconcile::{Change, Entries, Entry, Overlay};
use super::{Error, Result};

/// Main routing table.
const RT_TABLE_MAIN: u8 = 254;
/// Bytes VXLAN over IPv4 adds to each frame (outer IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14).
pub const VXLAN_OVERHEAD: u32 = 50;

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
    let what = what.into();
    move |e| Error::Netlink {
        what,
        reason: e.to_string(),
    }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

/// Opens a netlink connection driven by a task on the current runtime.
pub fn connect() -> Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| Error::Io {
        what: "opening netlink socket".into(),
        source: e,
    })?;
    tokio::spawn(conn);
    Ok(handle)
}

/// A link as far as the overlay cares.
#[derive(Debug, Clone, Default)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    pub mac: Option<Mac>,
    pub up: bool,
    pub kind: Option<InfoKind>,
    pub vxlan: Vec<InfoVxlan>,
}

impl Link {
    fn from_message(m: LinkMessage) -> Self {
        let mut l = Link {
            index: m.header.index,
            up: m.header.flags.contains(LinkFlags::Up),
            ..Default::default()
        };
        for a in m.attributes {
            match a {
                LinkAttribute::IfName(n) => l.name = n,
                LinkAttribute::Mtu(v) => l.mtu = v,
                LinkAttribute::Address(b) => l.mac = Mac::from_slice(&b),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        match i {
                            LinkInfo::Kind(k) => l.kind = Some(k),
                            LinkInfo::Data(InfoData::Vxlan(v)) => l.vxlan = v,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        l
    }
}

/// Every link of the namespace.
pub async fn links(h: &Handle) -> Result<Vec<Link>> {
    h.link()
        .get()
        .execute()
        .map_ok(Link::from_message)
        .try_collect()
        .await
        .map_err(nl("list links"))
}

/// A link by name.
pub async fn link(h: &Handle, name: &str) -> Result<Option<Link>> {
    Ok(links(h).await?.into_iter().find(|l| l.name == name))
}

/// IPv4 addresses as (link index, address, prefix).
pub async fn addresses(h: &Handle) -> Result<Vec<(u32, Ipv4Addr, u8)>> {
    let msgs: Vec<_> = h
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("list addresses"))?;
    let mut out = Vec::new();
    for m in msgs {
        for a in &m.attributes {
            if let AddressAttribute::Address(IpAddr::V4(v4)) = a {
                out.push((m.header.index, *v4, m.header.prefix_len));
            }
        }
    }
    Ok(out)
}

async fn main_routes(h: &Handle) -> Result<Vec<RouteMessage>> {
    let msgs: Vec<RouteMessage> = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(nl("list routes"))?;
    Ok(msgs
        .into_iter()
        .filter(|m| m.header.table == RT_TABLE_MAIN)
        .collect())
}

fn route_parts(m: &RouteMessage) -> (Ipv4Addr, Option<Ipv4Addr>, Option<u32>) {
    let (mut dst, mut gw, mut oif) = (Ipv4Addr::UNSPECIFIED, None, None);
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = *d,
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => gw = Some(*g),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    (dst, gw, oif)
}

/// The underlay: the link holding `public_ip`, or `iface` (and its first IPv4 address), or
/// the link of the default route. Returns (link, public IP).
pub async fn underlay(
    h: &Handle,
    iface: Option<&str>,
    public_ip: Option<Ipv4Addr>,
) -> Result<(Link, Ipv4Addr)> {
    let all = links(h).await?;
    let addrs = addresses(h).await?;
    let by_index = |i: u32| all.iter().find(|l| l.index == i).cloned();
    let link = match (iface, public_ip) {
        (Some(name), _) => all
            .iter()
            .find(|l| l.name == name)
            .cloned()
            .ok_or_else(|| Error::Config(format!("--iface {name}: no such interface")))?,
        (None, Some(ip)) => addrs
            .iter()
            .find(|(_, a, _)| *a == ip)
            .and_then(|(i, _, _)| by_index(*i))
            .ok_or_else(|| {
                Error::Config(format!("--public-ip {ip} is on no interface; pass --iface"))
            })?,
        (None, None) => main_routes(h)
            .await?
            .iter()
            .find(|m| m.header.destination_prefix_length == 0)
            .and_then(|m| route_parts(m).2)
            .and_then(by_index)
            .ok_or_else(|| {
                Error::Config(
                    "no default route to pick the underlay from; pass --iface or --public-ip"
                        .into(),
                )
            })?,
    };
    let ip = match public_ip {
        Some(ip) => ip,
        None => addrs
            .iter()
            .find(|(i, _, _)| *i == link.index)
            .map(|(_, a, _)| *a)
            .ok_or_else(|| {
                Error::Config(format!(
                    "interface {} has no IPv4 address; pass --public-ip",
                    link.name
                ))
            })?,
    };
    Ok((link, ip))
}

/// What `flannel.<vni>` must look like.
#[derive(Debug, Clone)]
pub struct VxlanSpec {
    pub name: String,
    pub vni: u32,
    pub port: u16,
    pub local: Ipv4Addr,
    pub underlay: u32,
    pub mtu: u32,
    pub mac: Mac,
    pub vtep: Ipv4Addr,
}

impl VxlanSpec {
    /// Whether an existing device can be kept (its entries then stay, so a restart does not
    /// interrupt traffic).
    fn matches(&self, l: &Link) -> bool {
        let has = |want: &InfoVxlan| l.vxlan.contains(want);
        l.kind == Some(InfoKind::Vxlan)
            && has(&InfoVxlan::Id(self.vni))
            && has(&InfoVxlan::Port(self.port))
            && has(&InfoVxlan::Local(self.local))
            && has(&InfoVxlan::Link(self.underlay))
            && has(&InfoVxlan::Learning(false))
            && l.mac == Some(self.mac)
    }
}

/// Creates (or keeps, or recreates when it differs) the VXLAN device, sets its MTU, brings it
/// up and leaves exactly the VTEP address `<vtep>/32` on it. Returns its index.
pub async fn ensure_vxlan(h: &Handle, spec: &VxlanSpec) -> Result<u32> {
    if let Some(l) = link(h, &spec.name).await? {
        if spec.matches(&l) {
            tracing::info!(dev = %spec.name, "keeping the existing VXLAN device");
        } else {
            tracing::info!(dev = %spec.name, "recreating the VXLAN device: its settings differ");
            h.link()
                .del(l.index)
                .execute()
                .await
                .map_err(nl(format!("delete {}", spec.name)))?;
        }
    }
    if link(h, &spec.name).await?.is_none() {
        let msg = LinkVxlan::new(&spec.name, spec.vni)
            .dev(spec.underlay)
            .port(spec.port)
            .local(spec.local)
            .learning(false)
            .address(spec.mac.0.to_vec())
            .mtu(spec.mtu)
            .build();
        h.link()
            .add(msg)
            .execute()
            .await
            .map_err(nl(format!("create {}", spec.name)))?;
    }
    let l = link(h, &spec.name).await?.ok_or_else(|| Error::Netlink {
        what: spec.name.clone(),
        reason: "vanished after creation".into(),
    })?;
    h.link()
        .set(
            LinkUnspec::new_with_index(l.index)
                .mtu(spec.mtu)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(nl(format!("set {} up", spec.name)))?;
    let mut have_vtep = false;
    let msgs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(l.index)
        .execute()
        .try_collect()
        .await
        .map_err(nl("list addresses"))?;
    for m in msgs.into_iter().filter(|m| m.header.index == l.index) {
        let v4 = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(IpAddr::V4(v)) => Some(*v),
            _ => None,
        });
        match v4 {
            Some(ip) if ip == spec.vtep && m.header.prefix_len == 32 => have_vtep = true,
            Some(ip) => {
                tracing::info!(dev = %spec.name, %ip, "removing a stale address");
                h.address()
                    .del(m)
                    .execute()
                    .await
                    .map_err(nl(format!("delete address {ip}")))?;
            }
            None => {}
        }
    }
    if !have_vtep {
        h.address()
            .add(l.index, spec.vtep.into(), 32)
            .execute()
            .await
            .map_err(nl(format!("add {}/32", spec.vtep)))?;
    }
    Ok(l.index)
}

/// The overlay device's entries through netlink.
#[derive(Debug, Clone)]
pub struct Netlink {
    pub handle: Handle,
    /// Index of `flannel.<vni>`.
    pub index: u32,
}

impl Netlink {
    fn route_message(&self, dst: Ipv4Network, via: Ipv4Addr) -> RouteMessage {
        RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dst.network(), dst.prefix())
            .gateway(via)
            .output_interface(self.index)
            .onlink()
            .build()
    }

    fn neigh_message(&self, family: AddressFamily, mac: Mac, ip: Ipv4Addr) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = family;
        m.header.ifindex = self.index;
        m.header.state = NeighbourState::Permanent;
        if family == AddressFamily::Bridge {
            m.header.flags = NeighbourFlags::Own;
        }
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        m
    }

    async fn neighbours(&self, family: AddressFamily) -> Result<Vec<NeighbourMessage>> {
        let msgs: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(family)
            .execute()
            .try_collect()
            .await
            .map_err(nl("list neighbours"))?;
        Ok(msgs
            .into_iter()
            .filter(|m| m.header.ifindex == self.index && m.header.family == family)
            .collect())
    }
}

fn neigh_parts(m: &NeighbourMessage) -> (Option<Ipv4Addr>, Option<Mac>) {
    let (mut ip, mut mac) = (None, None);
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => ip = Some(*v),
            // FDB entries (family AF_BRIDGE) carry the VTEP address undecoded.
            NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                ip = <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from)
            }
            NeighbourAttribute::LinkLayerAddress(b) => mac = Mac::from_slice(b),
            _ => {}
        }
    }
    (ip, mac)
}

impl Overlay for Netlink {
    type Error = Error;

    async fn entries(&self) -> Result<Entries> {
        let mut out = Entries::new();
        for m in main_routes(&self.handle).await? {
            let (dst, gw, oif) = route_parts(&m);
            if oif != Some(self.index) {
                continue;
            }
            let Ok(dst) = Ipv4Network::new(dst, m.header.destination_prefix_length) else {
                continue;
            };
            match gw {
                Some(via) => {
                    out.insert(Entry::Route { dst, via });
                }
                // Not ours (e.g. added by hand); left alone rather than guessed at.
                None => {
                    tracing::debug!(%dst, "ignoring a route without gateway on the overlay device")
                }
            }
        }
        for m in self.neighbours(AddressFamily::Inet).await? {
            if m.header.state == NeighbourState::Noarp {
                continue;
            }
            if let (Some(ip), mac) = neigh_parts(&m) {
                // A learnt or failed entry is never what we want: an all-zero MAC marks it
                // for deletion (and the permanent one is written in its place if needed).
                let mac = if m.header.state == NeighbourState::Permanent {
                    mac.unwrap_or(Mac([0; 6]))
                } else {
                    Mac([0; 6])
                };
                out.insert(Entry::Neigh { ip, mac });
            }
        }
        for m in self.neighbours(AddressFamily::Bridge).await? {
            if let (Some(dst), Some(mac)) = neigh_parts(&m) {
                out.insert(Entry::Fdb { mac, dst });
            }
        }
        Ok(out)
    }

    async fn apply(&self, change: Change) -> Result<()> {
        let h = &self.handle;
        let gone = |e: &rtnetlink::Error| {
            matches!(errno(e), Some(libc::ENOENT | libc::ESRCH | libc::ENODEV))
        };
        match change {
            Change::Add(Entry::Route { dst, via }) => h
                .route()
                .add(self.route_message(dst, via))
                .replace()
                .execute()
                .await
                .map_err(nl(format!("add route {dst}"))),
            Change::Del(Entry::Route { dst, via }) => {
                // Match whoever added it (`ip route` says proto boot, we say static).
                let mut m = self.route_message(dst, via);
                m.header.protocol = RouteProtocol::Unspec;
                m.header.scope = RouteScope::NoWhere;
                match h.route().del(m).execute().await {
                    Err(e) if !gone(&e) => Err(nl(format!("delete route {dst}"))(e)),
                    _ => Ok(()),
                }
            }
            Change::Add(Entry::Neigh { ip, mac }) => {
                let mut req = h
                    .neighbours()
                    .add(self.index, ip.into())
                    .link_layer_address(&mac.0)
                    .replace();
                req.message_mut().header.state = NeighbourState::Permanent;
                req.execute()
                    .await
                    .map_err(nl(format!("add neighbour {ip}")))
            }
            Change::Del(Entry::Neigh { ip, mac }) => {
                let mut m = self.neigh_message(AddressFamily::Inet, mac, ip);
                m.attributes
                    .retain(|a| matches!(a, NeighbourAttribute::Destination(_)));
                match h.neighbours().del(m).execute().await {
                    Err(e) if !gone(&e) => Err(nl(format!("delete neighbour {ip}"))(e)),
                    _ => Ok(()),
                }
            }
            Change::Add(Entry::Fdb { mac, dst }) => {
                let mut req = h
                    .neighbours()
                    .add_bridge(self.index, &mac.0)
                    .flags(NeighbourFlags::Own)
                    .destination(dst.into())
                    .replace();
                req.message_mut().header.state = NeighbourState::Permanent;
                req.execute().await.map_err(nl(format!("add fdb {mac}")))
            }
            Change::Del(Entry::Fdb { mac, dst }) => {
                match h
                    .neighbours()
                    .del(self.neigh_message(AddressFamily::Bridge, mac, dst))
                    .execute()
                    .await
                {
                    Err(e) if !gone(&e) => Err(nl(format!("delete fdb {mac}"))(e)),
                    _ => Ok(()),
                }
            }
        }
    }
}
