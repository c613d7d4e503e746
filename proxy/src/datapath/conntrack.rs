//! The NodePort conntrack from user space: its settings, a sweeper that deletes expired flows,
//! the deletion of UDP flows whose backend left their Service ([`forget`]), and read access
//! for tests and debugging.
//!
//! The kernel programs treat an entry idle past its timeout as gone, and the map is an LRU;
//! the sweeper makes sure dead flows also leave the map, so it never fills with them and a
//! closed flow disappears after the short closing timeout. It deletes both directions of a
//! flow together (the peer only if it still points back, so a newer flow that reuses a key
//! is left alone). Accepted race: a packet refreshing an entry between the sweeper's read and
//! its delete loses the entry; that flow then looks new and is balanced again.
//!
//! The sweeper also keeps the programs' count of unestablished TCP flows true: only it sees
//! them expire or the LRU evict them, so each pass it writes how many of the flows the programs
//! counted as opened are gone (`CT_UNEST_GONE`). Accepted race: handshakes opened or completed
//! while a pass lists the map may be counted twice or not at all until the next pass.

use std::{
    collections::HashSet,
    net::Ipv4Addr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use aya::maps::{Array, HashMap, Map, MapData};
use ekube_ebpf_common::{
    self as common, CT_DIR_FORWARD, CT_DIR_REPLY, CT_FLAG_PEER_HALF_OPEN, CT_FLAG_SNAT,
    CT_FLAG_UNESTABLISHED, CT_UNEST_GONE, CT_UNEST_OPENED, CtKey, CtValue, IPPROTO_UDP,
    NodePortConfig,
};
use tracing::{debug, warn};

use super::{DatapathConfig, Error, Frontend, NodePortSettings, Result, maps, sys};

fn map_err(map: &'static str) -> impl FnOnce(aya::maps::MapError) -> Error {
    move |source| Error::Map {
        map,
        source: Box::new(source),
    }
}

pub(super) fn open_conntrack(config: &DatapathConfig) -> Result<HashMap<MapData, CtKey, CtValue>> {
    let data = MapData::from_pin(config.pin_dir().join(common::CONNTRACK))
        .map_err(map_err(common::CONNTRACK))?;
    HashMap::try_from(Map::LruHashMap(data)).map_err(map_err(common::CONNTRACK))
}

fn open_config(config: &DatapathConfig) -> Result<Array<MapData, NodePortConfig>> {
    let data = MapData::from_pin(config.pin_dir().join(common::NODEPORT_CONFIG))
        .map_err(map_err(common::NODEPORT_CONFIG))?;
    Array::try_from(Map::Array(data)).map_err(map_err(common::NODEPORT_CONFIG))
}

fn open_unestablished(config: &DatapathConfig) -> Result<Array<MapData, u64>> {
    let data = MapData::from_pin(config.pin_dir().join(common::CT_UNESTABLISHED))
        .map_err(map_err(common::CT_UNESTABLISHED))?;
    Array::try_from(Map::Array(data)).map_err(map_err(common::CT_UNESTABLISHED))
}

/// The programs' count of unestablished TCP flows (what they compare with the limit).
pub fn unestablished(config: &DatapathConfig) -> Result<u64> {
    let map = open_unestablished(config)?;
    let read = |index| {
        map.get(&index, 0)
            .map_err(map_err(common::CT_UNESTABLISHED))
    };
    // Signed, as the programs read it: races may take it a little below zero until the next
    // sweep.
    let count = read(CT_UNEST_OPENED)?.wrapping_sub(read(CT_UNEST_GONE)?) as i64;
    Ok(count.max(0) as u64)
}

/// Every conntrack entry of `config.node_name`'s pinned datapath (two per flow).
pub fn entries(config: &DatapathConfig) -> Result<Vec<(CtKey, CtValue)>> {
    let map = open_conntrack(config)?;
    map.iter()
        .collect::<Result<_, _>>()
        .map_err(map_err(common::CONNTRACK))
}

/// SNAT ports held right now (each SNATed flow's reply entry holds one; expired flows the
/// sweeper has not deleted yet included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnatPorts {
    /// All held ports.
    pub held: usize,
    /// Ports held by flows whose client has not completed the handshake.
    pub unestablished: usize,
    /// Of those, ports whose backend holds the handshake half-open: they are not handed to new
    /// flows before they expire (`CT_FLAG_PEER_HALF_OPEN`).
    pub half_open: usize,
}

/// The SNAT ports `config.node_name`'s conntrack holds.
pub fn snat_ports(config: &DatapathConfig) -> Result<SnatPorts> {
    let mut ports = SnatPorts::default();
    for (key, value) in entries(config)? {
        if key.dir == CT_DIR_REPLY && value.flags & CT_FLAG_SNAT != 0 {
            ports.held += 1;
            if value.flags & CT_FLAG_UNESTABLISHED != 0 {
                ports.unestablished += 1;
                if value.flags & CT_FLAG_PEER_HALF_OPEN != 0 {
                    ports.half_open += 1;
                }
            }
        }
    }
    Ok(ports)
}

/// Writes the NodePort settings of a running (or stopped) datapath; the programs and the
/// sweeper pick them up at their next packet / pass.
pub fn set_settings(config: &DatapathConfig, settings: &NodePortSettings) -> Result<()> {
    let mut map = open_config(config)?;
    map.set(0, maps::nodeport_config(settings), 0)
        .map_err(map_err(common::NODEPORT_CONFIG))
}

/// The peer direction of an entry: the key packets of the other direction carry.
fn peer_key(key: &CtKey, value: &CtValue) -> CtKey {
    CtKey {
        saddr: value.daddr,
        daddr: value.saddr,
        sport: value.dport,
        dport: value.sport,
        proto: key.proto,
        dir: key.dir ^ 1,
        _pad: [0; 2],
    }
}

/// What one pass found.
#[derive(Debug, Default, PartialEq, Eq)]
struct Swept {
    /// Entries deleted.
    removed: usize,
    /// Unestablished TCP flows left (their forward entries).
    unestablished: u64,
}

/// One pass: deletes expired flows and counts the unestablished ones left.
fn sweep(
    map: &mut HashMap<MapData, CtKey, CtValue>,
    cfg: &NodePortConfig,
    now: u64,
) -> Result<Swept> {
    let all: Vec<(CtKey, CtValue)> = map
        .iter()
        .collect::<Result<_, _>>()
        .map_err(map_err(common::CONNTRACK))?;
    let mut swept = Swept::default();
    for (key, value) in &all {
        let idle = now.saturating_sub(value.last_seen_ns);
        if idle <= cfg.timeout_ns(key.proto, value.flags) {
            if key.dir == CT_DIR_FORWARD && value.flags & CT_FLAG_UNESTABLISHED != 0 {
                swept.unestablished += 1;
            }
            continue;
        }
        // Re-read: a packet may have refreshed it since the listing.
        match map.get(key, 0) {
            Ok(fresh) if fresh.last_seen_ns != value.last_seen_ns => continue,
            Ok(_) => {}
            Err(_) => continue,
        }
        swept.removed += remove_flow(map, key, value);
    }
    Ok(swept)
}

/// Deletes the entry `key` and its peer (only if the peer still points back, so a newer flow
/// that reuses its key is left alone); returns how many entries went.
fn remove_flow(map: &mut HashMap<MapData, CtKey, CtValue>, key: &CtKey, value: &CtValue) -> usize {
    let mut removed = usize::from(map.remove(key).is_ok());
    let peer = peer_key(key, value);
    if let Ok(peer_value) = map.get(&peer, 0)
        && peer_key(&peer, &peer_value) == *key
        && map.remove(&peer).is_ok()
    {
        removed += 1;
    }
    removed
}

/// Deletes the UDP flows sent to a backend their frontend no longer balances to: `left` holds
/// each such frontend with the id of a backend it dropped (ids are not reused while the proxy
/// runs, so an id names one backend); the datapath hands over only UDP frontends on node
/// addresses, and only UDP entries are looked at. Returns how many entries went.
///
/// UDP has no connection to close: a client that keeps sending from one socket keeps
/// following its flow's entry, to the removed backend, for as long as it is never idle for the
/// UDP timeout. kube-proxy deletes such flows from the kernel's conntrack for the same reason.
/// TCP flows are left to finish (or fail) on their own, as there.
pub(super) fn forget(
    map: &mut HashMap<MapData, CtKey, CtValue>,
    left: &[(Frontend, u32)],
) -> Result<usize> {
    let stale: HashSet<(Ipv4Addr, u16, u32)> =
        left.iter().map(|(f, id)| (f.ip, f.port, *id)).collect();
    if stale.is_empty() {
        return Ok(0);
    }
    let all: Vec<(CtKey, CtValue)> = map
        .iter()
        .collect::<Result<_, _>>()
        .map_err(map_err(common::CONNTRACK))?;
    let mut removed = 0;
    for (key, value) in all.iter().filter(|(k, v)| is_stale(&stale, k, v)) {
        removed += remove_flow(map, key, value);
    }
    Ok(removed)
}

/// Whether `key` is the forward entry of a UDP flow to one of `stale`'s frontends and
/// backends. A frontend on every node address (a NodePort's `0.0.0.0`, a hostPort's
/// `255.255.255.255`) matches any destination; one on an address, that address.
fn is_stale(stale: &HashSet<(Ipv4Addr, u16, u32)>, key: &CtKey, value: &CtValue) -> bool {
    if key.dir != CT_DIR_FORWARD || key.proto != IPPROTO_UDP {
        return false;
    }
    let port = u16::from_be(key.dport);
    let to = Ipv4Addr::from(u32::from_be(key.daddr));
    [to, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST]
        .iter()
        .any(|ip| stale.contains(&(*ip, port, value.backend_id)))
}

/// Writes how many of the unestablished flows the programs counted as opened (`opened`, read
/// before the pass listed the map) are gone, given the `left` the pass found.
fn settle_unestablished(counts: &mut Array<MapData, u64>, opened: u64, left: u64) -> Result<()> {
    counts
        .set(CT_UNEST_GONE, opened.wrapping_sub(left), 0)
        .map_err(map_err(common::CT_UNESTABLISHED))
}

/// The sweeper thread; stops when dropped.
pub struct Sweeper {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Sweeper {
    /// Starts sweeping `config.node_name`'s conntrack map. The pass interval follows the
    /// shortest timeout (half of it, between 100 ms and 10 s), re-read every pass.
    pub fn start(config: &DatapathConfig) -> Result<Self> {
        let mut map = open_conntrack(config)?;
        let settings = open_config(config)?;
        let mut counts = open_unestablished(config)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = thread::Builder::new()
            .name("ekube-ct-sweep".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    let cfg = match settings.get(&0, 0) {
                        Ok(cfg) if cfg.tcp_established_ns != 0 => cfg,
                        _ => NodePortConfig::DEFAULT,
                    };
                    let opened = counts.get(&CT_UNEST_OPENED, 0).unwrap_or(0);
                    let result = sweep(&mut map, &cfg, sys::monotonic_ns()).and_then(|swept| {
                        settle_unestablished(&mut counts, opened, swept.unestablished)?;
                        Ok(swept)
                    });
                    match result {
                        Ok(Swept { removed: 0, .. }) => {}
                        Ok(swept) => debug!(?swept, "swept expired NodePort flows"),
                        Err(err) => warn!(%err, "sweeping the NodePort conntrack"),
                    }
                    let shortest = cfg.tcp_closing_ns.min(cfg.udp_ns).min(cfg.tcp_syn_ns);
                    let interval = Duration::from_nanos(shortest / 2)
                        .clamp(Duration::from_millis(100), Duration::from_secs(10));
                    // Sleep in short steps so dropping the sweeper does not wait long.
                    let mut slept = Duration::ZERO;
                    while slept < interval && !stopping.load(Ordering::Relaxed) {
                        let step = Duration::from_millis(100).min(interval - slept);
                        thread::sleep(step);
                        slept += step;
                    }
                }
            })
            .map_err(|source| Error::Fs {
                action: "starting the conntrack sweeper for",
                path: config.pin_dir(),
                source,
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_of_peer_is_the_entry() {
        // Client 1.1.1.1:4000 → node 2.2.2.2:30080, SNATed to 10.0.0.1:61000 → 10.0.1.5:80.
        let forward = CtKey {
            saddr: 0x0101_0101,
            daddr: 0x0202_0202,
            sport: 4000,
            dport: 30080,
            proto: 6,
            dir: 0,
            _pad: [0; 2],
        };
        let fwd_value = CtValue {
            saddr: 0x0a00_0001,
            daddr: 0x0a00_0105,
            sport: 61000,
            dport: 80,
            ..CtValue::default()
        };
        let reply = peer_key(&forward, &fwd_value);
        assert_eq!(
            reply,
            CtKey {
                saddr: 0x0a00_0105,
                daddr: 0x0a00_0001,
                sport: 80,
                dport: 61000,
                proto: 6,
                dir: 1,
                _pad: [0; 2],
            }
        );
        let reply_value = CtValue {
            saddr: 0x0202_0202,
            daddr: 0x0101_0101,
            sport: 30080,
            dport: 4000,
            ..CtValue::default()
        };
        assert_eq!(peer_key(&reply, &reply_value), forward);
    }

    #[test]
    fn a_udp_flow_is_stale_when_its_frontend_dropped_its_backend() {
        let node = Ipv4Addr::new(192, 0, 2, 10);
        let forward = |proto: u8, dir: u8, dport: u16| CtKey {
            saddr: u32::from(Ipv4Addr::new(198, 51, 100, 7)).to_be(),
            daddr: u32::from(node).to_be(),
            sport: 40053u16.to_be(),
            dport: dport.to_be(),
            proto,
            dir,
            _pad: [0; 2],
        };
        let to = |backend_id| CtValue {
            backend_id,
            ..CtValue::default()
        };
        let stale_of = |frontends: &[(Ipv4Addr, u16, u32)]| -> HashSet<_> {
            frontends.iter().copied().collect()
        };
        let udp = forward(IPPROTO_UDP, CT_DIR_FORWARD, 30053);
        // A NodePort (every address) or a hostPort on this address, that dropped backend 7.
        for ip in [Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, node] {
            assert!(is_stale(&stale_of(&[(ip, 30053, 7)]), &udp, &to(7)), "{ip}");
        }
        let stale = stale_of(&[(Ipv4Addr::UNSPECIFIED, 30053, 7)]);
        // Another backend, another port, a hostPort on another address, TCP, the reply
        // direction: not this one.
        assert!(!is_stale(&stale, &udp, &to(8)));
        assert!(!is_stale(
            &stale,
            &forward(IPPROTO_UDP, CT_DIR_FORWARD, 30054),
            &to(7)
        ));
        let elsewhere = stale_of(&[(Ipv4Addr::new(192, 0, 2, 11), 30053, 7)]);
        assert!(!is_stale(&elsewhere, &udp, &to(7)));
        assert!(!is_stale(
            &stale,
            &forward(6, CT_DIR_FORWARD, 30053),
            &to(7)
        ));
        assert!(!is_stale(
            &stale,
            &forward(IPPROTO_UDP, CT_DIR_REPLY, 30053),
            &to(7)
        ));
    }
}
