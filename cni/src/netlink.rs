//! Netlink operations on links, addresses and routes, through `rtnetlink`.
//!
//! Host-side work runs on the calling thread (the plugin is started in the node's
//! netns). Work inside a pod runs through [`NetNs::run`]: a dedicated thread
//! enters the pod netns with `setns(2)`, opens its own netlink socket there (a
//! socket belongs to the netns it was created in) and exits when done, so the
//! rest of the process never changes namespace.

use std::fs::File;
use std::future::Future;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::error::{Error, Result};

/// `NSFS_MAGIC` from linux/magic.h: what `statfs` reports for a netns file.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// An open network namespace of a container.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl NetNs {
    /// Opens `path`; a missing file means the container is gone (code 3).
    pub fn open(path: &Path, container: &str) -> Result<Self> {
        let file = File::open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::UnknownContainer {
                    container: container.to_string(),
                    reason: format!("network namespace {} does not exist", path.display()),
                }
            } else {
                Error::io(format!("opening netns {}", path.display()), e)
            }
        })?;
        // SAFETY: fstatfs fills a zeroed struct for a valid descriptor.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) };
        if rc != 0 || st.f_type as i64 != NSFS_MAGIC {
            return Err(Error::UnknownContainer {
                container: container.to_string(),
                reason: format!("{} is not a network namespace", path.display()),
            });
        }
        Ok(NetNs {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The path the runtime gave.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor, for making links in this netns.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Runs `f` with a netlink handle inside this netns, on a dedicated thread.
    pub fn run<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send,
        F: FnOnce(Handle) -> Fut + Send,
        Fut: Future<Output = Result<T>>,
    {
        let fd = self.fd();
        std::thread::scope(|s| {
            s.spawn(move || {
                // SAFETY: setns on this thread only; the thread ends after `f`.
                if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                    return Err(Error::io(
                        "entering pod netns",
                        std::io::Error::last_os_error(),
                    ));
                }
                with_handle(f)
            })
            .join()
            .unwrap_or_else(|_| Err(Error::netlink("pod netns worker", "panicked")))
        })
    }
}

/// Runs `f` with a netlink handle in the current thread's netns.
pub fn with_handle<T, F, Fut>(f: F) -> Result<T>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| Error::io("starting runtime", e))?;
    rt.block_on(async move {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| Error::io("opening netlink socket", e))?;
        let task = tokio::spawn(conn);
        let out = f(handle).await;
        task.abort();
        out
    })
}

/// The positive errno of a netlink error, if it is one.
pub fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

/// Formats a hardware address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// What we read back about one link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkState {
    pub index: u32,
    pub name: String,
    pub mac: String,
    pub mtu: Option<u32>,
    pub up: bool,
    /// Index of the bridge this link is a port of.
    pub controller: Option<u32>,
    pub kind: Option<String>,
}

impl LinkState {
    fn from_message(m: &LinkMessage) -> Self {
        let mut s = LinkState {
            index: m.header.index,
            up: m.header.flags.contains(LinkFlags::Up),
            ..Default::default()
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => s.name = n.clone(),
                LinkAttribute::Address(b) => s.mac = format_mac(b),
                LinkAttribute::Mtu(v) => s.mtu = Some(*v),
                LinkAttribute::Controller(c) => s.controller = Some(*c),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let LinkInfo::Kind(k) = i {
                            s.kind = Some(k.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        s
    }
}

/// Looks a link up by name; `None` when it does not exist.
pub async fn link_by_name(h: &Handle, name: &str) -> Result<Option<LinkState>> {
    let mut s = h.link().get().match_name(name).execute();
    match s.try_next().await {
        Ok(Some(m)) => Ok(Some(LinkState::from_message(&m))),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(Error::netlink(format!("get link {name}"), e)),
    }
}

/// Deletes the link `name`; `false` when it was not there.
pub async fn delete_link(h: &Handle, name: &str) -> Result<bool> {
    let Some(l) = link_by_name(h, name).await? else {
        return Ok(false);
    };
    match h.link().del(l.index).execute().await {
        Ok(()) => Ok(true),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(false),
        Err(e) => Err(Error::netlink(format!("delete link {name}"), e)),
    }
}

/// Adds `addr/prefix` to link `index`; already present is fine.
pub async fn ensure_address(h: &Handle, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<()> {
    match h.address().add(index, addr.into(), prefix).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(Error::netlink(format!("add address {addr}/{prefix}"), e)),
    }
}

/// IPv4 addresses on link `index` as (address, prefix).
pub async fn addresses(h: &Handle, index: u32) -> Result<Vec<(Ipv4Addr, u8)>> {
    let mut s = h.address().get().set_link_index_filter(index).execute();
    let mut out = Vec::new();
    while let Some(m) = s
        .try_next()
        .await
        .map_err(|e| Error::netlink("list addresses", e))?
    {
        if m.header.index != index {
            continue;
        }
        for a in &m.attributes {
            if let AddressAttribute::Address(std::net::IpAddr::V4(v4)) = a {
                out.push((*v4, m.header.prefix_len));
            }
        }
    }
    Ok(out)
}

/// IPv4 routes of the main table as (destination CIDR, gateway, output link).
pub async fn routes(h: &Handle) -> Result<Vec<(String, Option<Ipv4Addr>, Option<u32>)>> {
    let mut s = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    let mut out = Vec::new();
    while let Some(m) = s
        .try_next()
        .await
        .map_err(|e| Error::netlink("list routes", e))?
    {
        if m.header.table != 254 {
            continue;
        }
        let mut dst = Ipv4Addr::UNSPECIFIED;
        let mut gw = None;
        let mut oif = None;
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = *d,
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => gw = Some(*g),
                RouteAttribute::Oif(i) => oif = Some(*i),
                _ => {}
            }
        }
        out.push((
            format!("{dst}/{}", m.header.destination_prefix_length),
            gw,
            oif,
        ));
    }
    Ok(out)
}

/// Creates (or finds) the bridge `name`, sets it up, and gives it `gateway`.
pub async fn ensure_bridge(
    h: &Handle,
    name: &str,
    gateway: Option<(Ipv4Addr, u8)>,
    mtu: Option<u32>,
) -> Result<LinkState> {
    if link_by_name(h, name).await?.is_none() {
        let mut b = LinkBridge::new(name);
        if let Some((gw, _)) = gateway {
            // A fixed MAC derived from the gateway (0a:58 + IPv4): without one a bridge
            // takes the lowest port MAC, which changes as pods come and go.
            let o = gw.octets();
            b = b.address(vec![0x0a, 0x58, o[0], o[1], o[2], o[3]]);
        }
        if let Some(m) = mtu {
            b = b.mtu(m);
        }
        match h.link().add(b.build()).execute().await {
            Ok(()) => {}
            // Another ADD created it in between.
            Err(e) if errno(&e) == Some(libc::EEXIST) => {}
            Err(e) => return Err(Error::netlink(format!("create bridge {name}"), e)),
        }
    }
    let link = link_by_name(h, name)
        .await?
        .ok_or_else(|| Error::netlink(format!("bridge {name}"), "vanished after creation"))?;
    if link.kind.as_deref() != Some(&InfoKind::Bridge.to_string()) {
        return Err(Error::InvalidConfig(format!(
            "link {name} exists but is a {} device, not a bridge",
            link.kind.as_deref().unwrap_or("unknown")
        )));
    }
    if !link.up {
        h.link()
            .set(LinkUnspec::new_with_index(link.index).up().build())
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("set {name} up"), e))?;
    }
    if let Some((gw, prefix)) = gateway {
        ensure_address(h, link.index, gw, prefix).await?;
    }
    link_by_name(h, name)
        .await?
        .ok_or_else(|| Error::netlink(format!("bridge {name}"), "vanished"))
}

/// Creates the veth pair `host` (in this netns) / `peer` (made right in the netns `target_fd`).
/// A leftover `host` from an earlier failed attempt is removed first.
///
/// Making the peer where it belongs, rather than here and then moving it, is what keeps pod
/// starts from queueing behind one another: moving a device to another netns waits for an
/// RCU grace period while holding the RTNL lock (30 ms of a 36 ms ADD when measured), so
/// concurrent ADDs — 30 pods started together — each waited for every move before theirs.
pub async fn create_veth(
    h: &Handle,
    host: &str,
    peer: &str,
    mtu: Option<u32>,
    target_fd: RawFd,
) -> Result<()> {
    delete_link(h, host).await?;
    // Only an earlier plugin version, which made the peer here and moved it, leaves this.
    delete_link(h, peer).await?;
    let peer_msg = LinkUnspec::new_with_name(peer)
        .setns_by_fd(target_fd)
        .build();
    let mut v = LinkVeth::new(host, peer).set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)));
    if let Some(m) = mtu {
        v = v.mtu(m);
    }
    h.link().add(v.build()).execute().await.map_err(|e| {
        Error::netlink(
            format!("create veth {host}/{peer} (peer in the pod netns)"),
            e,
        )
    })?;
    Ok(())
}

/// Inside the pod: renames `tmp` to `ifname`, sets it up, adds `addr/prefix`
/// sets `mtu`, and (when given) a default route via `gateway`; also brings `lo` up.
pub async fn configure_pod_link(
    h: &Handle,
    tmp: &str,
    ifname: &str,
    addr: (Ipv4Addr, u8),
    gateway: Option<Ipv4Addr>,
    mtu: Option<u32>,
) -> Result<LinkState> {
    let link = link_by_name(h, tmp)
        .await?
        .ok_or_else(|| Error::netlink(format!("pod link {tmp}"), "not found in the pod netns"))?;
    h.link()
        .set(
            LinkUnspec::new_with_index(link.index)
                .name(ifname.to_string())
                .build(),
        )
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("rename {tmp} to {ifname}"), e))?;
    let mut up = LinkUnspec::new_with_index(link.index).up();
    if let Some(m) = mtu {
        up = up.mtu(m);
    }
    h.link()
        .set(up.build())
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("set {ifname} up"), e))?;
    if let Some(lo) = link_by_name(h, "lo").await?
        && !lo.up
    {
        h.link()
            .set(LinkUnspec::new_with_index(lo.index).up().build())
            .execute()
            .await
            .map_err(|e| Error::netlink("set lo up", e))?;
    }
    ensure_address(h, link.index, addr.0, addr.1).await?;
    if let Some(gw) = gateway {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
            .gateway(gw)
            .output_interface(link.index)
            .build();
        match h.route().add(route).execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::EEXIST) => {}
            Err(e) => return Err(Error::netlink(format!("add default route via {gw}"), e)),
        }
    }
    link_by_name(h, ifname)
        .await?
        .ok_or_else(|| Error::netlink(format!("pod link {ifname}"), "vanished"))
}

/// Makes `port` a port of bridge `bridge_index` with hairpin mode as asked, and up.
pub async fn attach_to_bridge(
    h: &Handle,
    port: &str,
    bridge_index: u32,
    hairpin: bool,
) -> Result<LinkState> {
    let link = link_by_name(h, port)
        .await?
        .ok_or_else(|| Error::netlink(format!("host veth {port}"), "not found"))?;
    h.link()
        .set(
            LinkUnspec::new_with_index(link.index)
                .controller(bridge_index)
                .build(),
        )
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("attach {port} to bridge"), e))?;
    h.link()
        .set_port(LinkBridgePort::new(link.index).hairpin(hairpin).build())
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("set hairpin on {port}"), e))?;
    h.link()
        .set(LinkUnspec::new_with_index(link.index).up().build())
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("set {port} up"), e))?;
    link_by_name(h, port)
        .await?
        .ok_or_else(|| Error::netlink(format!("host veth {port}"), "vanished"))
}
