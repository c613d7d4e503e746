//! The CNI commands: ADD, DEL, CHECK, VERSION, STATUS and GC.
//!
//! [`run`] takes the parsed environment and stdin and returns what goes to stdout.
//! Kernel work goes through the [`Datapath`] trait ([`Kernel`] is the real one), so
//! the command logic — ordering, duplicate detection, roll-back on failure — is
//! testable with a fake. ADD allocates the address before touching any link, so an
//! exhausted subnet changes nothing, and undoes its own work when a later step
//! fails; DEL is best effort and succeeds for attachments that are already gone.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use tracing::{info, warn};

use crate::config::{IpamMode, NetConf, Network};
use crate::env::{CniEnv, Command};
use crate::error::{Error, Result};
use crate::ipam::{self, DirLock, HostLocal};
use crate::masq;
use crate::netlink::{self, LinkState, NetNs, with_handle};
use crate::types::{CniResult, Interface, IpConfig, Route, VersionInfo, version_tuple};

/// Names of the two ends of a pod's veth pair, derived from container id and ifname
/// so DEL finds them again without any saved state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethNames {
    /// The host end, a port of the bridge.
    pub host: String,
    /// The pod end's name when it is made (in the pod's netns, renamed to the ifname at once).
    /// Plugins before the pod end was made in place created it in the node netns under this
    /// name, which is why the node netns is still cleared of it.
    pub temp: String,
}

impl VethNames {
    pub fn new(container_id: &str, ifname: &str) -> Self {
        let h = crate::short_hash(&format!("{container_id}/{ifname}")) as u32;
        VethNames {
            host: format!("veth{h:08x}"),
            temp: format!("ekc{h:08x}"),
        }
    }
}

/// What one pod attachment needs from the datapath.
#[derive(Debug, Clone)]
pub struct PodLink<'a> {
    pub names: &'a VethNames,
    /// The interface name inside the pod (`CNI_IFNAME`).
    pub ifname: &'a str,
    /// The pod's address and prefix length.
    pub addr: (Ipv4Addr, u8),
    /// Default gateway, when the bridge is the gateway.
    pub gateway: Option<Ipv4Addr>,
    pub bridge_index: u32,
}

/// What CHECK reads back from the kernel.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub pod: Option<LinkState>,
    pub pod_addrs: Vec<(Ipv4Addr, u8)>,
    pub pod_routes: Vec<(String, Option<Ipv4Addr>)>,
    pub host: Option<LinkState>,
    pub bridge: Option<LinkState>,
}

/// Kernel-touching operations of the plugin.
pub trait Datapath {
    /// Bridge with gateway address, IPv4 forwarding, masquerade. Returns the bridge.
    fn setup_node(&self, net: &Network) -> Result<LinkState>;
    /// Whether `ifname` already exists in the pod.
    fn pod_link_exists(&self, netns: &NetNs, ifname: &str) -> Result<bool>;
    /// Creates and configures the veth pair; returns (host end, pod end).
    fn create_pod_link(
        &self,
        net: &Network,
        netns: &NetNs,
        link: &PodLink<'_>,
    ) -> Result<(LinkState, LinkState)>;
    /// Removes the pair (host end by name; else the pod end inside `netns`).
    fn remove_pod_link(&self, names: &VethNames, netns: Option<&NetNs>, ifname: &str)
    -> Result<()>;
    /// Reads back the attachment for CHECK.
    fn observe(
        &self,
        net: &Network,
        netns: &NetNs,
        names: &VethNames,
        ifname: &str,
    ) -> Result<Observed>;
}

/// The real [`Datapath`]: netlink in the current (node) netns and the pod's.
#[derive(Debug, Default, Clone, Copy)]
pub struct Kernel;

impl Datapath for Kernel {
    fn setup_node(&self, net: &Network) -> Result<LinkState> {
        let gw = net.is_gateway.then_some((net.gateway, net.subnet.prefix()));
        let bridge =
            with_handle(
                |h| async move { netlink::ensure_bridge(&h, &net.bridge, gw, net.mtu).await },
            )?;
        masq::enable_ip_forward()?;
        if net.ip_masq {
            masq::ensure_masquerade(&net.name, net.subnet, net.cluster_cidr)?;
        }
        Ok(bridge)
    }

    fn pod_link_exists(&self, netns: &NetNs, ifname: &str) -> Result<bool> {
        netns.run(|h| async move { Ok(netlink::link_by_name(&h, ifname).await?.is_some()) })
    }

    fn create_pod_link(
        &self,
        net: &Network,
        netns: &NetNs,
        link: &PodLink<'_>,
    ) -> Result<(LinkState, LinkState)> {
        let PodLink {
            names,
            ifname,
            addr,
            gateway,
            bridge_index,
        } = *link;
        let fd = netns.fd();
        with_handle(|h| async move {
            netlink::create_veth(&h, &names.host, &names.temp, net.mtu, fd).await
        })?;
        let pod = netns.run(|h| async move {
            netlink::configure_pod_link(&h, &names.temp, ifname, addr, gateway, net.mtu).await
        })?;
        let host = with_handle(|h| async move {
            netlink::attach_to_bridge(&h, &names.host, bridge_index, net.hairpin).await
        })?;
        Ok((host, pod))
    }

    fn remove_pod_link(
        &self,
        names: &VethNames,
        netns: Option<&NetNs>,
        ifname: &str,
    ) -> Result<()> {
        let removed = with_handle(|h| async move {
            let a = netlink::delete_link(&h, &names.host).await?;
            let b = netlink::delete_link(&h, &names.temp).await?;
            Ok(a || b)
        })?;
        if !removed && let Some(ns) = netns {
            ns.run(|h| async move {
                if let Some(l) = netlink::link_by_name(&h, ifname).await?
                    && l.kind.as_deref() == Some("veth")
                {
                    netlink::delete_link(&h, ifname).await?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    fn observe(
        &self,
        net: &Network,
        netns: &NetNs,
        names: &VethNames,
        ifname: &str,
    ) -> Result<Observed> {
        let (pod, pod_addrs, pod_routes) = netns.run(|h| async move {
            let Some(pod) = netlink::link_by_name(&h, ifname).await? else {
                return Ok((None, Vec::new(), Vec::new()));
            };
            let addrs = netlink::addresses(&h, pod.index).await?;
            let routes = netlink::routes(&h)
                .await?
                .into_iter()
                .filter(|(_, _, oif)| *oif == Some(pod.index))
                .map(|(d, g, _)| (d, g))
                .collect();
            Ok((Some(pod), addrs, routes))
        })?;
        let (host, bridge) = with_handle(|h| async move {
            Ok((
                netlink::link_by_name(&h, &names.host).await?,
                netlink::link_by_name(&h, &net.bridge).await?,
            ))
        })?;
        Ok(Observed {
            pod,
            pod_addrs,
            pod_routes,
            host,
            bridge,
        })
    }
}

/// Serves one invocation; `Ok(Some(text))` goes to stdout, `Ok(None)` means no output.
pub fn run(env: &CniEnv, stdin: &[u8], dp: &impl Datapath) -> Result<Option<String>> {
    match env.command {
        Command::Version => {
            let requested = crate::config::sniff_version(stdin);
            Ok(Some(
                serde_json::to_string(&VersionInfo::new(requested.as_deref()))
                    .expect("serialisable"),
            ))
        }
        Command::Add => cmd_add(env, &NetConf::parse(stdin)?, dp).map(Some),
        Command::Del => cmd_del(env, &NetConf::parse(stdin)?, dp).map(|_| None),
        Command::Check => cmd_check(env, &NetConf::parse(stdin)?, dp).map(|_| None),
        Command::Status => cmd_status(&NetConf::parse(stdin)?).map(|_| None),
        Command::Gc => cmd_gc(&NetConf::parse(stdin)?).map(|_| None),
    }
}

fn host_local(net: &Network) -> Option<HostLocal> {
    match &net.ipam {
        IpamMode::Builtin {
            dir,
            range_start,
            range_end,
        } => Some(HostLocal {
            dir: dir.clone(),
            network: net.name.clone(),
            subnet: net.subnet.to_string(),
            range_start: *range_start,
            range_end: *range_end,
        }),
        IpamMode::Delegate { .. } => None,
    }
}

/// An address obtained for the pod.
struct Lease {
    addr: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
    /// What a delegated IPAM plugin answered, for its routes and DNS.
    delegated: Option<CniResult>,
}

fn acquire(env: &CniEnv, net: &Network) -> Result<Lease> {
    match &net.ipam {
        IpamMode::Builtin { .. } => {
            let store = host_local(net).expect("builtin");
            let addr = store.allocate(&env.container_id, &env.ifname)?;
            Ok(Lease {
                addr,
                prefix: net.subnet.prefix(),
                gateway: net.gateway,
                delegated: None,
            })
        }
        IpamMode::Delegate { plugin, conf } => {
            let res = ipam::exec_delegate(plugin, &env.path, "ADD", conf)?.ok_or_else(|| {
                Error::IpamDelegate {
                    plugin: plugin.clone(),
                    reason: "ADD returned no result".into(),
                }
            })?;
            let (addr, prefix, gw) = res.first_ipv4().ok_or_else(|| Error::IpamDelegate {
                plugin: plugin.clone(),
                reason: "ADD returned no IPv4 address".into(),
            })?;
            Ok(Lease {
                addr,
                prefix,
                gateway: gw.unwrap_or(net.gateway),
                delegated: Some(res),
            })
        }
    }
}

fn release(env: &CniEnv, net: &Network) -> Result<()> {
    match &net.ipam {
        IpamMode::Builtin { .. } => {
            let freed = host_local(net)
                .expect("builtin")
                .release(&env.container_id, &env.ifname)?;
            info!(container = %env.container_id, ?freed, "released addresses");
            Ok(())
        }
        IpamMode::Delegate { plugin, conf } => {
            ipam::exec_delegate(plugin, &env.path, "DEL", conf).map(|_| ())
        }
    }
}

fn cmd_add(env: &CniEnv, conf: &NetConf, dp: &impl Datapath) -> Result<String> {
    let net = Network::resolve(conf)?;
    let netns_path = env.netns.as_deref().expect("validated for ADD");
    let netns = NetNs::open(netns_path, &env.container_id)?;
    if dp.pod_link_exists(&netns, &env.ifname)? {
        return Err(Error::AlreadyAttached {
            container: env.container_id.clone(),
            ifname: env.ifname.clone(),
            network: net.name.clone(),
        });
    }
    let lease = acquire(env, &net)?;
    let names = VethNames::new(&env.container_id, &env.ifname);
    let gateway = net.is_gateway.then_some(lease.gateway);
    let attached = (|| {
        let bridge = {
            let _node = DirLock::acquire(&net.state_dir, "node.lock")?;
            dp.setup_node(&net)?
        };
        let link = PodLink {
            names: &names,
            ifname: &env.ifname,
            addr: (lease.addr, lease.prefix),
            gateway,
            bridge_index: bridge.index,
        };
        let (host, pod) = dp.create_pod_link(&net, &netns, &link)?;
        Ok::<_, Error>((bridge, host, pod))
    })();
    let (bridge, host, pod) = match attached {
        Ok(v) => v,
        Err(e) => {
            warn!(error = %e, container = %env.container_id, "ADD failed, rolling back");
            if let Err(e2) = dp.remove_pod_link(&names, Some(&netns), &env.ifname) {
                warn!(error = %e2, "roll-back: removing veth failed");
            }
            if let Err(e2) = release(env, &net) {
                warn!(error = %e2, "roll-back: releasing address failed");
            }
            return Err(e);
        }
    };
    info!(container = %env.container_id, ip = %lease.addr, host_veth = %host.name, "attached");

    let mut result = match &conf.prev_result {
        Some(v) => CniResult::from_value(v, "prevResult")?,
        None => CniResult::default(),
    };
    result.interfaces.push(Interface {
        name: bridge.name.clone(),
        mac: Some(bridge.mac.clone()),
        ..Default::default()
    });
    result.interfaces.push(Interface {
        name: host.name.clone(),
        mac: Some(host.mac.clone()),
        mtu: host.mtu,
        sandbox: None,
    });
    result.interfaces.push(Interface {
        name: pod.name.clone(),
        mac: Some(pod.mac.clone()),
        mtu: pod.mtu,
        sandbox: Some(netns.path().display().to_string()),
    });
    let pod_index = result.interfaces.len() - 1;
    result.ips.push(IpConfig {
        version: None,
        address: format!("{}/{}", lease.addr, lease.prefix),
        gateway: gateway.map(|g| g.to_string()),
        interface: Some(pod_index),
    });
    let mut routes: Vec<Route> = Vec::new();
    if let Some(gw) = gateway {
        routes.push(Route {
            dst: "0.0.0.0/0".into(),
            gw: Some(gw.to_string()),
        });
    }
    if let Some(d) = &lease.delegated {
        routes.extend(d.routes.iter().filter(|r| r.dst != "0.0.0.0/0").cloned());
    }
    for r in routes {
        if !result.routes.contains(&r) {
            result.routes.push(r);
        }
    }
    if conf.dns != Default::default() {
        result.dns = conf.dns.clone();
    } else if let Some(d) = &lease.delegated
        && d.dns != Default::default()
    {
        result.dns = d.dns.clone();
    }
    Ok(serde_json::to_string(&result.for_version(conf.version())).expect("serialisable"))
}

fn cmd_del(env: &CniEnv, conf: &NetConf, dp: &impl Datapath) -> Result<()> {
    let names = VethNames::new(&env.container_id, &env.ifname);
    // The netns may be gone already (the runtime tore the sandbox down); that is fine.
    let netns = env
        .netns
        .as_deref()
        .and_then(|p| NetNs::open(p, &env.container_id).ok());
    let mut first_err = None;
    match Network::resolve(conf) {
        Ok(net) => {
            if let Err(e) = release(env, &net) {
                warn!(error = %e, "DEL: releasing address failed");
                first_err.get_or_insert(e);
            }
        }
        Err(e) => {
            // Without a subnet (say subnet.env vanished) the built-in store can still be cleaned.
            warn!(error = %e, "DEL: config incomplete, releasing from the default store");
            let dir = conf
                .ipam
                .as_ref()
                .and_then(|i| i.data_dir.clone())
                .or_else(|| conf.data_dir.clone())
                .unwrap_or_else(|| crate::config::DEFAULT_DATA_DIR.into())
                .join(&conf.name);
            if dir.is_dir() {
                let store = HostLocal {
                    dir,
                    network: conf.name.clone(),
                    subnet: String::new(),
                    range_start: Ipv4Addr::UNSPECIFIED,
                    range_end: Ipv4Addr::UNSPECIFIED,
                };
                store.release(&env.container_id, &env.ifname)?;
            }
        }
    }
    dp.remove_pod_link(&names, netns.as_ref(), &env.ifname)?;
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn cmd_check(env: &CniEnv, conf: &NetConf, dp: &impl Datapath) -> Result<()> {
    if version_tuple(conf.version()) < (0, 4, 0) {
        return Err(Error::IncompatibleVersion {
            requested: conf.version().to_string(),
            supported: "CHECK needs 0.4.0 or newer".into(),
        });
    }
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig("CHECK requires prevResult".into()))?;
    let prev = CniResult::from_value(prev, "prevResult")?;
    let net = Network::resolve(conf)?;
    let netns = NetNs::open(
        env.netns.as_deref().expect("validated for CHECK"),
        &env.container_id,
    )?;
    let names = VethNames::new(&env.container_id, &env.ifname);
    let obs = dp.observe(&net, &netns, &names, &env.ifname)?;
    let fail = |m: String| Err(Error::CheckFailed(m));

    let Some((idx, iface)) = prev
        .interfaces
        .iter()
        .enumerate()
        .find(|(_, i)| i.name == env.ifname && i.sandbox.is_some())
    else {
        return fail(format!(
            "prevResult has no interface {} in a sandbox",
            env.ifname
        ));
    };
    let Some(pod) = obs.pod else {
        return fail(format!("interface {} missing in the pod", env.ifname));
    };
    if let Some(mac) = &iface.mac
        && !mac.eq_ignore_ascii_case(&pod.mac)
    {
        return fail(format!(
            "{} has MAC {}, prevResult says {mac}",
            env.ifname, pod.mac
        ));
    }
    for ip in prev.ips.iter().filter(|i| i.interface == Some(idx)) {
        let Some((a, p)) = ip.address.split_once('/') else {
            continue;
        };
        let want: (Ipv4Addr, u8) = match (a.parse(), p.parse()) {
            (Ok(a), Ok(p)) => (a, p),
            _ => continue,
        };
        if !obs.pod_addrs.contains(&want) {
            return fail(format!("address {} missing on {}", ip.address, env.ifname));
        }
        if let Some(store) = host_local(&net)
            && store.find(&env.container_id, &env.ifname)? != Some(want.0)
        {
            return fail(format!(
                "address {} is not allocated to this container",
                ip.address
            ));
        }
    }
    for r in &prev.routes {
        let gw: Option<Ipv4Addr> = r.gw.as_deref().and_then(|g| g.parse().ok());
        if !obs
            .pod_routes
            .iter()
            .any(|(d, g)| d == &r.dst && (gw.is_none() || *g == gw))
        {
            return fail(format!("route {} via {:?} missing in the pod", r.dst, r.gw));
        }
    }
    let Some(bridge) = obs.bridge else {
        return fail(format!("bridge {} missing", net.bridge));
    };
    let Some(host) = obs.host else {
        return fail(format!("host veth {} missing", names.host));
    };
    if host.controller != Some(bridge.index) {
        return fail(format!(
            "host veth {} is not a port of {}",
            host.name, net.bridge
        ));
    }
    Ok(())
}

fn cmd_status(conf: &NetConf) -> Result<()> {
    let net = Network::resolve(conf).map_err(|e| Error::NotAvailable(e.to_string()))?;
    std::fs::create_dir_all(&net.state_dir)
        .map_err(|e| Error::NotAvailable(format!("state dir {}: {e}", net.state_dir.display())))?;
    Ok(())
}

fn cmd_gc(conf: &NetConf) -> Result<()> {
    let valid = conf
        .valid_attachments
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig("GC requires cni.dev/valid-attachments".into()))?;
    let keep: HashSet<(&str, &str)> = valid
        .iter()
        .map(|a| (a.container_id.as_str(), a.ifname.as_str()))
        .collect();
    let net = Network::resolve(conf)?;
    if let Some(store) = host_local(&net) {
        let freed = store
            .release_unless(|a| keep.contains(&(a.container_id.as_str(), a.ifname.as_str())))?;
        info!(?freed, "GC released stale addresses");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
