//! The real [`MapStore`]: the embedded object loaded with aya, its programs attached to a
//! cgroup through pinned links, its maps pinned by name.
//!
//! Re-opening finds the pins: maps are re-used by aya's by-name pinning, and a link pin that is
//! still attached to the configured cgroup is kept and switched to the programs just loaded
//! (`BPF_LINK_UPDATE`), so the programs never detach across a proxy restart and a new version's
//! programs take over. The tc NodePort programs are loaded here too (on two threads: the
//! verifier spends most of a start on them) and attached by [`TcAttacher`] once the node
//! addresses are known; the conntrack [`Sweeper`] runs while the maps are open.
//!
//! Every loaded program is pinned too, under a name carrying a digest of the object. A restart
//! of the same build finds them and its links still running them, and re-opens everything
//! from the pins without loading or verifying anything ([`Datapath::open_with`] takes
//! milliseconds then); another build's object loads afresh and replaces them.

use std::{
    collections::BTreeSet,
    fs::{self, File},
    io,
    net::Ipv4Addr,
    os::{
        fd::{AsFd, OwnedFd},
        unix::fs::MetadataExt,
    },
    path::{Path, PathBuf},
    sync::OnceLock,
    time::Instant,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, Map, MapData, PerCpuArray},
    programs::{CgroupSockAddr, Program, SchedClassifier},
};
use ekube_ebpf_common::{
    self as common, Backend, Counter, CtKey, CtValue, NodeAddrKey, NodeAddrValue, NodePortConfig,
    ServiceKey, ServiceValue,
};
use tracing::{debug, info, warn};

use super::{
    Datapath, DatapathConfig, Error, Frontend, NodePortSettings, Result,
    conntrack::{self, Sweeper},
    maps::{self, MapStore},
    sys,
    tc::TcAttacher,
};

/// The kernel object, built by `cargo xtask build-ebpf` and copied in by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("EKUBE_BPF_OBJECT_EMBED"));

/// A program of the object and where its link is pinned.
struct Hook {
    /// Function (and program) name in the object.
    program: &'static str,
    /// File name of the link pin in the node's pin directory.
    link_pin: &'static str,
    /// `enum bpf_attach_type` value.
    attach_type: u32,
}

const HOOKS: [Hook; 4] = [
    Hook {
        program: "ekube_connect4",
        link_pin: "link_connect4",
        attach_type: 10,
    },
    Hook {
        program: "ekube_sendmsg4",
        link_pin: "link_sendmsg4",
        attach_type: 14,
    },
    Hook {
        program: "ekube_recvmsg4",
        link_pin: "link_recvmsg4",
        attach_type: 19,
    },
    Hook {
        program: "ekube_getpeername4",
        link_pin: "link_getpeername4",
        attach_type: 29,
    },
];

/// The pinned maps the proxy writes, and the links that keep the programs attached.
pub struct BpfMaps {
    services: HashMap<MapData, ServiceKey, ServiceValue>,
    backends: HashMap<MapData, u32, Backend>,
    node_addrs: HashMap<MapData, NodeAddrKey, NodeAddrValue>,
    counters: PerCpuArray<MapData, u64>,
    /// Interfaces the NodePort programs are attached to (ifindex → `IFACE_FLAG_*`).
    np_ifaces: HashMap<MapData, u32, u32>,
    /// Attaches the NodePort programs; `None` when disabled or only inspecting pins.
    tc: Option<TcAttacher>,
    /// Deletes expired NodePort flows while the datapath is open.
    _sweeper: Option<Sweeper>,
    /// The NodePort conntrack, for deleting flows whose backend left; `None` when only
    /// inspecting pins.
    conntrack: Option<HashMap<MapData, CtKey, CtValue>>,
    /// Held so the links outlive nothing but the pins; dropping them does not detach.
    _links: Vec<OwnedFd>,
}

/// The tc programs of the object.
const NP_INGRESS: &str = "ekube_np_ingress";
const NP_EGRESS: &str = "ekube_np_egress";

fn fs_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Fs {
        action,
        path,
        source,
    }
}

fn map_err(map: &'static str) -> impl FnOnce(aya::maps::MapError) -> Error {
    move |source| Error::Map {
        map,
        source: Box::new(source),
    }
}

/// Removes the map pins of `config` whose shape (key size, value size, entries) differs from
/// this build's definition of the map of that name, with the sizes `config` sets.
///
/// aya re-uses a pin by name without comparing it to the object, so after an upgrade that
/// changed a map's layout the programs would be verified against the old map and fail to load.
/// Such a map is re-created empty instead (what it held, e.g. settings the proxy writes again
/// right after, is lost); every other pin, and so every established flow, is kept.
fn drop_reshaped_pins(config: &DatapathConfig) -> Result<()> {
    let pin_dir = config.pin_dir();
    let sized = config.lb_map_sizes();
    let object = aya_obj::Object::parse(OBJECT).map_err(|e| Error::Fs {
        action: "parsing the embedded eBPF object",
        path: PathBuf::from("(embedded)"),
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    })?;
    for (name, def) in &object.maps {
        let pin = pin_dir.join(name);
        let Ok(pinned) = MapData::from_pin(&pin) else {
            continue;
        };
        let Ok(info) = pinned.info() else {
            continue;
        };
        // Entries 0 in the object means "sized at load" (aya fills in the CPU count): any size
        // the pin has is this build's too.
        let entries = |n: u32| if def.max_entries() == 0 { 0 } else { n };
        let was = (
            info.key_size(),
            info.value_size(),
            entries(info.max_entries()),
        );
        let declared = sized
            .iter()
            .find(|(map, _)| map == name)
            .map_or(def.max_entries(), |&(_, entries)| entries);
        let now = (def.key_size(), def.value_size(), declared);
        if was != now {
            warn!(map = %name, ?was, ?now, "pinned map has another shape than this build's; re-creating it");
            fs::remove_file(&pin).map_err(fs_err("removing reshaped map pin", &pin))?;
        }
    }
    Ok(())
}

/// Whether the pinned maps `--bpf-lb-map-max` sizes have the entries `config` asks for (a
/// changed flag makes the proxy load afresh, re-creating them).
fn sized_as_configured(config: &DatapathConfig) -> bool {
    let pin_dir = config.pin_dir();
    config.lb_map_sizes().iter().all(|&(map, entries)| {
        MapData::from_pin(pin_dir.join(map))
            .and_then(|pinned| pinned.info())
            .is_ok_and(|info| info.max_entries() == entries)
    })
}

impl Datapath<BpfMaps> {
    /// Loads (or re-opens) the datapath of `config.node_name` and attaches it to
    /// `config.cgroup`, with the default NodePort settings.
    pub fn open(config: &DatapathConfig) -> Result<Self> {
        Self::open_with(config, &NodePortSettings::default())
    }

    /// [`Self::open`] with explicit NodePort settings (written to the pinned settings map).
    pub fn open_with(config: &DatapathConfig, nodeport: &NodePortSettings) -> Result<Self> {
        if OBJECT.is_empty() {
            return Err(Error::ObjectMissing);
        }
        ensure_bpffs(&config.bpffs)?;
        let pin_dir = config.pin_dir();
        fs::create_dir_all(&pin_dir).map_err(fs_err("creating", &pin_dir))?;
        let started = Instant::now();
        if let Some(datapath) = Self::reopen(config, nodeport)? {
            info!(
                node = %config.node_name,
                cgroup = %config.cgroup.display(),
                took = ?started.elapsed(),
                "eBPF datapath ready, its pinned programs re-used"
            );
            return Ok(datapath);
        }
        drop_reshaped_pins(config)?;
        let mut loader = EbpfLoader::new();
        loader.map_pin_path(&pin_dir);
        for (map, entries) in config.lb_map_sizes() {
            loader.set_max_entries(map, entries);
        }
        let mut ebpf = loader.load(OBJECT).map_err(|source| Error::Load {
            pin_dir: pin_dir.clone(),
            source: Box::new(source),
        })?;
        remove_program_pins(&pin_dir)?;
        let links = attach_all(&mut ebpf, &config.cgroup, &pin_dir)?;
        #[cfg(feature = "debug")]
        forward_kernel_log(&mut ebpf);
        let mut np_config: Array<MapData, NodePortConfig> =
            take_map(&mut ebpf, common::NODEPORT_CONFIG)?;
        np_config
            .set(0, maps::nodeport_config(nodeport), 0)
            .map_err(map_err(common::NODEPORT_CONFIG))?;
        let tc = if nodeport.enabled {
            let (ingress, egress) = load_classifiers(&mut ebpf)?;
            pin_program(&pin_dir, NP_INGRESS, &ingress)?;
            pin_program(&pin_dir, NP_EGRESS, &egress)?;
            Some(TcAttacher::new(
                &pin_dir,
                ingress,
                egress,
                nodeport.overlay_interfaces.clone(),
            ))
        } else {
            None
        };
        let maps = BpfMaps {
            services: take_map(&mut ebpf, common::SERVICES)?,
            backends: take_map(&mut ebpf, common::BACKENDS)?,
            node_addrs: take_map(&mut ebpf, common::NODE_ADDRS)?,
            counters: take_map(&mut ebpf, common::COUNTERS)?,
            np_ifaces: take_map(&mut ebpf, common::NODEPORT_IFACES)?,
            tc,
            _sweeper: Some(Sweeper::start(config)?),
            conntrack: Some(conntrack::open_conntrack(config)?),
            _links: links,
        };
        info!(
            node = %config.node_name,
            cgroup = %config.cgroup.display(),
            took = ?started.elapsed(),
            "eBPF datapath ready, its programs loaded"
        );
        Datapath::from_store(maps)
    }

    /// Re-opens what an earlier start of this same build left pinned (maps, programs, and the
    /// cgroup links still running those programs) without loading anything. `None` when
    /// something is missing or belongs to another build: the caller then loads afresh.
    fn reopen(config: &DatapathConfig, nodeport: &NodePortSettings) -> Result<Option<Self>> {
        if cfg!(feature = "debug") {
            // Forwarding the kernel log needs the programs loaded by this process.
            return Ok(None);
        }
        let pin_dir = config.pin_dir();
        let cgroup_id = cgroup_id(&config.cgroup)?;
        let pinned_program = |name: &str| sys::obj_get(&program_pin(&pin_dir, name)).ok();
        // Maps the programs use: every map pinned here must be one of them (a pin replaced
        // behind the programs' back would take the proxy's writes where no program looks).
        let mut used_maps = BTreeSet::new();
        let mut uses = |program: &OwnedFd| match sys::prog_map_ids(program.as_fd()) {
            Ok(ids) => {
                used_maps.extend(ids);
                true
            }
            Err(_) => false,
        };
        let mut links = Vec::with_capacity(HOOKS.len());
        for hook in &HOOKS {
            let (Some(program), Ok(link)) = (
                pinned_program(hook.program),
                sys::obj_get(&pin_dir.join(hook.link_pin)),
            ) else {
                return Ok(None);
            };
            let attached = sys::cgroup_link_info(link.as_fd()).ok().flatten()
                == Some((cgroup_id, hook.attach_type));
            let runs_it = matches!(
                (sys::link_prog_id(link.as_fd()), sys::object_id(program.as_fd())),
                (Ok(a), Ok(b)) if a == b
            );
            if !attached || !runs_it || !uses(&program) {
                return Ok(None);
            }
            links.push(link);
        }
        let tc = if nodeport.enabled {
            let (Some(ingress), Some(egress)) =
                (pinned_program(NP_INGRESS), pinned_program(NP_EGRESS))
            else {
                return Ok(None);
            };
            if !uses(&ingress) || !uses(&egress) {
                return Ok(None);
            }
            Some(TcAttacher::new(
                &pin_dir,
                ingress,
                egress,
                nodeport.overlay_interfaces.clone(),
            ))
        } else {
            None
        };
        if !pinned_maps_in(&pin_dir, &used_maps) || !sized_as_configured(config) {
            return Ok(None);
        }
        let Ok(mut maps) = BpfMaps::open_pinned(config) else {
            return Ok(None);
        };
        let np_config = MapData::from_pin(pin_dir.join(common::NODEPORT_CONFIG))
            .ok()
            .and_then(|data| Array::try_from(Map::Array(data)).ok());
        let Some(mut np_config): Option<Array<MapData, NodePortConfig>> = np_config else {
            return Ok(None);
        };
        np_config
            .set(0, maps::nodeport_config(nodeport), 0)
            .map_err(map_err(common::NODEPORT_CONFIG))?;
        maps.tc = tc;
        maps._sweeper = Some(Sweeper::start(config)?);
        maps.conntrack = Some(conntrack::open_conntrack(config)?);
        maps._links = links;
        Datapath::from_store(maps).map(Some)
    }

    /// The kernel programs' counters, summed over CPUs.
    pub fn counters(&self) -> Result<Vec<(Counter, u64)>> {
        self.store.counters()
    }
}

impl BpfMaps {
    /// Opens the maps pinned for `config.node_name` without loading or attaching anything: a
    /// look at what a running or stopped proxy holds in the kernel, for tests and debugging
    /// ([`MapStore`] reads the raw entries; nothing is pruned).
    pub fn open_pinned(config: &DatapathConfig) -> Result<Self> {
        let dir = config.pin_dir();
        let open = |name: &'static str| MapData::from_pin(dir.join(name)).map_err(map_err(name));
        Ok(Self {
            services: HashMap::try_from(Map::HashMap(open(common::SERVICES)?))
                .map_err(map_err(common::SERVICES))?,
            backends: HashMap::try_from(Map::HashMap(open(common::BACKENDS)?))
                .map_err(map_err(common::BACKENDS))?,
            node_addrs: HashMap::try_from(Map::HashMap(open(common::NODE_ADDRS)?))
                .map_err(map_err(common::NODE_ADDRS))?,
            counters: PerCpuArray::try_from(Map::PerCpuArray(open(common::COUNTERS)?))
                .map_err(map_err(common::COUNTERS))?,
            np_ifaces: HashMap::try_from(Map::HashMap(open(common::NODEPORT_IFACES)?))
                .map_err(map_err(common::NODEPORT_IFACES))?,
            tc: None,
            _sweeper: None,
            conntrack: None,
            _links: Vec::new(),
        })
    }

    /// The kernel programs' counters, summed over CPUs.
    pub fn counters(&self) -> Result<Vec<(Counter, u64)>> {
        Counter::ALL
            .iter()
            .map(|&c| {
                let values = self
                    .counters
                    .get(&(c as u32), 0)
                    .map_err(map_err(common::COUNTERS))?;
                Ok((c, values.iter().sum()))
            })
            .collect()
    }
}

/// The NodePort ingress program of this build, loaded against the maps pinned for a node and
/// attached nowhere: crafted packets run through it (`BPF_PROG_TEST_RUN`) see and change the
/// same conntrack as the attached program, for tests and debugging.
pub struct IngressProbe {
    program: OwnedFd,
}

impl IngressProbe {
    /// Loads the program over `config.node_name`'s pinned maps (a datapath must be open or
    /// have been opened).
    pub fn load(config: &DatapathConfig) -> Result<Self> {
        if OBJECT.is_empty() {
            return Err(Error::ObjectMissing);
        }
        let pin_dir = config.pin_dir();
        let mut ebpf = EbpfLoader::new()
            .map_pin_path(&pin_dir)
            .load(OBJECT)
            .map_err(|source| Error::Load {
                pin_dir,
                source: Box::new(source),
            })?;
        Ok(Self {
            program: load_classifier(&mut ebpf, NP_INGRESS)?,
        })
    }

    /// Runs the Ethernet frame `frame` through the program in this thread's network namespace;
    /// returns its verdict (`TC_ACT_*`) and the frame as it left.
    pub fn run(&self, frame: &[u8]) -> Result<(i32, Vec<u8>)> {
        let (verdict, out) =
            sys::prog_test_run(self.program.as_fd(), frame).map_err(|source| Error::TestRun {
                program: NP_INGRESS,
                source,
            })?;
        Ok((verdict as i32, out))
    }
}

/// Loads a tc program and returns its fd (the links created later keep it alive).
fn load_classifier(ebpf: &mut Ebpf, name: &'static str) -> Result<OwnedFd> {
    let program = ebpf
        .program_mut(name)
        .ok_or(Error::ProgramMissing { program: name })?;
    load_tc_program(program, name)
}

/// Loads both NodePort programs, each on its own thread: their verification is most of a
/// start's time, and the verifier runs in the loading thread.
fn load_classifiers(ebpf: &mut Ebpf) -> Result<(OwnedFd, OwnedFd)> {
    let (mut ingress, mut egress) = (None, None);
    for (name, program) in ebpf.programs_mut() {
        match name {
            NP_INGRESS => ingress = Some(program),
            NP_EGRESS => egress = Some(program),
            _ => {}
        }
    }
    let ingress = ingress.ok_or(Error::ProgramMissing {
        program: NP_INGRESS,
    })?;
    let egress = egress.ok_or(Error::ProgramMissing { program: NP_EGRESS })?;
    std::thread::scope(|scope| {
        let egress = scope.spawn(|| load_tc_program(egress, NP_EGRESS));
        let ingress = load_tc_program(ingress, NP_INGRESS);
        let egress = egress
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok((ingress?, egress?))
    })
}

fn load_tc_program(program: &mut Program, name: &'static str) -> Result<OwnedFd> {
    let program_err = |e| Error::Program {
        program: name,
        source: Box::new(e),
    };
    let program: &mut SchedClassifier = program.try_into().map_err(program_err)?;
    sys::without_signals(|| program.load()).map_err(program_err)?;
    let fd = program.fd().map_err(program_err)?;
    fd.as_fd().try_clone_to_owned().map_err(|source| Error::Fs {
        action: "duplicating the program fd of",
        path: PathBuf::from(name),
        source,
    })
}

fn take_map<T: TryFrom<Map, Error = aya::maps::MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T> {
    let map = ebpf.take_map(name).ok_or(Error::MapMissing { map: name })?;
    T::try_from(map).map_err(map_err(name))
}

/// Forwards the kernel programs' aya-log records to the `log` facade. Only programs loaded by
/// this process log here (after a restart that re-used pinned links, nothing does).
#[cfg(feature = "debug")]
fn forward_kernel_log(ebpf: &mut Ebpf) {
    if tokio::runtime::Handle::try_current().is_err() {
        tracing::warn!("kernel log forwarding needs a tokio runtime; skipped");
        return;
    }
    if let Err(err) = aya_log::EbpfLogger::init(ebpf) {
        tracing::warn!(%err, "no kernel log (object built without `--debug-log`?)");
    }
}

/// Mounts a bpffs at `path` unless one is there already.
fn ensure_bpffs(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(fs_err("creating", path))?;
    if sys::is_bpffs(path).map_err(fs_err("checking", path))? {
        return Ok(());
    }
    info!(path = %path.display(), "mounting bpffs");
    sys::mount_bpffs(path).map_err(fs_err("mounting bpffs on", path))
}

/// Attaches every hook to `cgroup`, re-using (and updating) link pins that are still attached
/// there.
fn attach_all(ebpf: &mut Ebpf, cgroup: &Path, pin_dir: &Path) -> Result<Vec<OwnedFd>> {
    let cgroup_dir = File::open(cgroup).map_err(fs_err("opening cgroup", cgroup))?;
    let cgroup_id = cgroup_id(cgroup)?;
    let mut links = Vec::with_capacity(HOOKS.len());
    for hook in &HOOKS {
        let program_err = |e| Error::Program {
            program: hook.program,
            source: Box::new(e),
        };
        let program: &mut CgroupSockAddr = ebpf
            .program_mut(hook.program)
            .ok_or(Error::ProgramMissing {
                program: hook.program,
            })?
            .try_into()
            .map_err(program_err)?;
        sys::without_signals(|| program.load()).map_err(program_err)?;
        let prog_fd = program.fd().map_err(program_err)?;
        pin_program(pin_dir, hook.program, prog_fd.as_fd())?;
        let pin = pin_dir.join(hook.link_pin);
        if let Some(link) = reuse_link(&pin, cgroup_id, hook.attach_type)? {
            // Switched to this proxy's program: an upgrade takes effect, atomically.
            sys::link_update(link.as_fd(), prog_fd.as_fd())
                .map_err(fs_err("updating the program of pinned link", &pin))?;
            debug!(program = hook.program, "re-using pinned link");
            links.push(link);
            continue;
        }
        let link = sys::link_create(prog_fd.as_fd(), cgroup_dir.as_fd(), hook.attach_type)
            .map_err(|source| Error::Attach {
                program: hook.program,
                cgroup: cgroup.to_path_buf(),
                source,
            })?;
        sys::obj_pin(link.as_fd(), &pin).map_err(fs_err("pinning link at", &pin))?;
        links.push(link);
    }
    Ok(links)
}

/// Whether every map pinned in `pin_dir` is one of `used` (by id).
fn pinned_maps_in(pin_dir: &Path, used: &BTreeSet<u32>) -> bool {
    let Ok(entries) = fs::read_dir(pin_dir) else {
        return false;
    };
    entries.filter_map(|e| e.ok()).all(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("link_") || name.starts_with("prog_") {
            return true;
        }
        sys::obj_get(&entry.path())
            .and_then(|map| sys::object_id(map.as_fd()))
            .is_ok_and(|id| used.contains(&id))
    })
}

/// The id of the cgroup v2 directory `cgroup` (its inode number).
fn cgroup_id(cgroup: &Path) -> Result<u64> {
    Ok(fs::metadata(cgroup)
        .map_err(fs_err("reading cgroup", cgroup))?
        .ino())
}

/// A short digest of this build's kernel object, part of every program pin's name.
fn object_digest() -> &'static str {
    static DIGEST: OnceLock<String> = OnceLock::new();
    DIGEST.get_or_init(|| {
        use sha2::Digest;
        sha2::Sha256::digest(OBJECT)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    })
}

/// Where this build's program `name` is pinned (bpffs allows no dot in a name).
fn program_pin(pin_dir: &Path, name: &str) -> PathBuf {
    pin_dir.join(format!("prog_{name}_{}", object_digest()))
}

fn pin_program(pin_dir: &Path, name: &str, program: impl AsFd) -> Result<()> {
    let pin = program_pin(pin_dir, name);
    sys::obj_pin(program.as_fd(), &pin).map_err(fs_err("pinning program at", &pin))
}

/// Removes every program pin (this build's or another's) before the programs are pinned anew.
fn remove_program_pins(pin_dir: &Path) -> Result<()> {
    let entries = fs::read_dir(pin_dir).map_err(fs_err("listing", pin_dir))?;
    for path in entries.filter_map(|e| Some(e.ok()?.path())) {
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("prog_"))
        {
            fs::remove_file(&path).map_err(fs_err("removing", &path))?;
        }
    }
    Ok(())
}

/// The pinned link at `pin` if it is attached to `cgroup_id` for `attach_type`; a pin for
/// another cgroup (the flag changed) is removed, which detaches it.
fn reuse_link(pin: &Path, cgroup_id: u64, attach_type: u32) -> Result<Option<OwnedFd>> {
    let link = match sys::obj_get(pin) {
        Ok(link) => link,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fs_err("opening pinned link", pin)(e)),
    };
    let info = sys::cgroup_link_info(link.as_fd()).map_err(fs_err("inspecting link", pin))?;
    if info == Some((cgroup_id, attach_type)) {
        return Ok(Some(link));
    }
    info!(pin = %pin.display(), "pinned link belongs to another cgroup; replacing it");
    fs::remove_file(pin).map_err(fs_err("removing", pin))?;
    Ok(None)
}

/// Detaches and removes everything pinned for `config.node_name` (links first, then maps).
/// Missing pins are fine.
pub fn remove_pins(config: &DatapathConfig) -> Result<()> {
    let dir = config.pin_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fs_err("listing", &dir)(e)),
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    // Links before maps, so no program runs against a half-removed set of maps.
    paths.sort_by_key(|p| {
        !p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("link_"))
    });
    for path in paths {
        fs::remove_file(&path).map_err(fs_err("removing", &path))?;
    }
    fs::remove_dir(&dir).map_err(fs_err("removing", &dir))?;
    // The shared parent goes too once the last node is gone.
    let _ = fs::remove_dir(config.bpffs.join("ekube"));
    Ok(())
}

impl MapStore for BpfMaps {
    fn put_service(&mut self, key: ServiceKey, value: ServiceValue) -> Result<()> {
        self.services
            .insert(key, value, 0)
            .map_err(map_err(common::SERVICES))
    }

    fn delete_service(&mut self, key: ServiceKey) -> Result<()> {
        ignore_missing(self.services.remove(&key)).map_err(map_err(common::SERVICES))
    }

    fn put_backend(&mut self, id: u32, value: Backend) -> Result<()> {
        self.backends
            .insert(id, value, 0)
            .map_err(map_err(common::BACKENDS))
    }

    fn delete_backend(&mut self, id: u32) -> Result<()> {
        ignore_missing(self.backends.remove(&id)).map_err(map_err(common::BACKENDS))
    }

    fn put_node_addr(&mut self, key: NodeAddrKey) -> Result<()> {
        let value = NodeAddrValue::default();
        self.node_addrs
            .insert(key, value, 0)
            .map_err(map_err(common::NODE_ADDRS))
    }

    fn delete_node_addr(&mut self, key: NodeAddrKey) -> Result<()> {
        ignore_missing(self.node_addrs.remove(&key)).map_err(map_err(common::NODE_ADDRS))
    }

    fn services(&self) -> Result<Vec<(ServiceKey, ServiceValue)>> {
        self.services
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(common::SERVICES))
    }

    fn backends(&self) -> Result<Vec<(u32, Backend)>> {
        self.backends
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(common::BACKENDS))
    }

    fn node_addrs(&self) -> Result<Vec<NodeAddrKey>> {
        self.node_addrs
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err(common::NODE_ADDRS))
    }

    fn service(&self, key: ServiceKey) -> Result<Option<ServiceValue>> {
        found(self.services.get(&key, 0)).map_err(map_err(common::SERVICES))
    }

    fn backend(&self, id: u32) -> Result<Option<Backend>> {
        found(self.backends.get(&id, 0)).map_err(map_err(common::BACKENDS))
    }

    fn forget_flows(&mut self, left: &[(Frontend, u32)]) -> Result<usize> {
        match &mut self.conntrack {
            Some(map) => conntrack::forget(map, left),
            None => Ok(0),
        }
    }

    fn attach_node_interfaces(&mut self, addrs: &BTreeSet<Ipv4Addr>) -> Result<()> {
        let Some(tc) = &mut self.tc else {
            return Ok(());
        };
        let wanted = tc.reconcile(addrs)?;
        let current: Vec<u32> = self
            .np_ifaces
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err(common::NODEPORT_IFACES))?;
        for (ifindex, flags) in &wanted {
            if self.np_ifaces.get(ifindex, 0).ok() != Some(*flags) {
                self.np_ifaces
                    .insert(ifindex, flags, 0)
                    .map_err(map_err(common::NODEPORT_IFACES))?;
            }
        }
        for ifindex in current.iter().filter(|i| !wanted.contains_key(i)) {
            if let Err(err) = ignore_missing(self.np_ifaces.remove(ifindex)) {
                warn!(%err, ifindex, "removing a NodePort interface");
            }
        }
        if wanted.is_empty() && !addrs.is_empty() {
            warn!(
                ?addrs,
                "no interface holds a node address; NodePorts answer only locally"
            );
        }
        Ok(())
    }
}

/// Deleting an entry that is already gone (a crash between writes) is success.
fn ignore_missing(result: Result<(), aya::maps::MapError>) -> Result<(), aya::maps::MapError> {
    found(result).map(|_| ())
}

/// A lookup's value, `None` when the key is not in the map.
fn found<T>(result: Result<T, aya::maps::MapError>) -> Result<Option<T>, aya::maps::MapError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(aya::maps::MapError::KeyNotFound) => Ok(None),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
