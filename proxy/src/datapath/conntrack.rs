//! The NodePort conntrack from user space: its settings, a sweeper that deletes expired flows,
//! and read access for tests and debugging.
//!
//! The kernel programs treat an entry idle past its timeout as gone, and the map is an LRU;
//! the sweeper makes sure dead flows also leave the map, so it never fills with them and a
//! closed flow disappears after the short closing timeout. It deletes both directions of a
//! flow together (the peer only if it still points back, so a newer flow that reuses a key
//! is left alone). Accepted race: a packet refreshing an entry between the sweeper's read and
//! its delete loses the entry; that flow then looks new and is balanced again.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use aya::maps::{Array, HashMap, Map, MapData};
use ekube_ebpf_common::{self as common, CtKey, CtValue, NodePortConfig};
use tracing::{debug, warn};

use super::{DatapathConfig, Error, NodePortSettings, Result, maps, sys};

fn map_err(map: &'static str) -> impl FnOnce(aya::maps::MapError) -> Error {
    move |source| Error::Map {
        map,
        source: Box::new(source),
    }
}

fn open_conntrack(config: &DatapathConfig) -> Result<HashMap<MapData, CtKey, CtValue>> {
    let data = MapData::from_pin(config.pin_dir().join(common::CONNTRACK))
        .map_err(map_err(common::CONNTRACK))?;
    HashMap::try_from(Map::LruHashMap(data)).map_err(map_err(common::CONNTRACK))
}

fn open_config(config: &DatapathConfig) -> Result<Array<MapData, NodePortConfig>> {
    let data = MapData::from_pin(config.pin_dir().join(common::NODEPORT_CONFIG))
        .map_err(map_err(common::NODEPORT_CONFIG))?;
    Array::try_from(Map::Array(data)).map_err(map_err(common::NODEPORT_CONFIG))
}

/// Every conntrack entry of `config.node_name`'s pinned datapath (two per flow).
pub fn entries(config: &DatapathConfig) -> Result<Vec<(CtKey, CtValue)>> {
    let map = open_conntrack(config)?;
    map.iter()
        .collect::<Result<_, _>>()
        .map_err(map_err(common::CONNTRACK))
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

/// One pass: deletes expired flows; returns how many entries went.
fn sweep(
    map: &mut HashMap<MapData, CtKey, CtValue>,
    cfg: &NodePortConfig,
    now: u64,
) -> Result<usize> {
    let all: Vec<(CtKey, CtValue)> = map
        .iter()
        .collect::<Result<_, _>>()
        .map_err(map_err(common::CONNTRACK))?;
    let mut removed = 0;
    for (key, value) in &all {
        let idle = now.saturating_sub(value.last_seen_ns);
        if idle <= cfg.timeout_ns(key.proto, value.flags) {
            continue;
        }
        // Re-read: a packet may have refreshed it since the listing.
        match map.get(key, 0) {
            Ok(fresh) if fresh.last_seen_ns != value.last_seen_ns => continue,
            Ok(_) => {}
            Err(_) => continue,
        }
        if map.remove(key).is_ok() {
            removed += 1;
        }
        let peer = peer_key(key, value);
        if let Ok(peer_value) = map.get(&peer, 0)
            && peer_key(&peer, &peer_value) == *key
            && map.remove(&peer).is_ok()
        {
            removed += 1;
        }
    }
    Ok(removed)
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
                    match sweep(&mut map, &cfg, sys::monotonic_ns()) {
                        Ok(0) => {}
                        Ok(removed) => debug!(removed, "swept expired NodePort flows"),
                        Err(err) => warn!(%err, "sweeping the NodePort conntrack"),
                    }
                    let shortest = cfg.tcp_closing_ns.min(cfg.udp_ns);
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
}
