//! Attaching the per-packet NodePort programs with tcx links, pinned like the cgroup links.
//!
//! The wanted set is derived from the node addresses: every interface holding one gets the
//! ingress and egress programs; each configured overlay device that exists (`flannel.1`) gets
//! the ingress program, where SNATed replies come back. Links are pinned as
//! `link_tc_<iface>_<in|out>` (dots in the name as `_`); a pin still attached to the same
//! interface is re-used and switched to this proxy's program (a proxy restart never detaches,
//! and a new version's programs take over atomically), a stale one is replaced, and pins of
//! interfaces no longer wanted are removed. The same pass writes the `EKUBE_NP_IFACES` map the
//! programs consult to tell a remote backend from a local one. tcx needs no clsact qdisc
//! (kernel 6.6+).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs, io,
    net::Ipv4Addr,
    os::fd::{AsFd, OwnedFd},
    path::{Path, PathBuf},
};

use ekube_ebpf_common::{IFACE_FLAG_EXTERNAL, IFACE_FLAG_OVERLAY};
use tracing::{debug, info};

use super::{Error, Result, sys};

/// Prefix of the tc link pins in the node's pin directory.
const PIN_PREFIX: &str = "link_tc_";

/// One wanted attachment.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Want {
    iface: String,
    ifindex: u32,
    egress: bool,
}

impl Want {
    /// bpffs refuses names with a dot (`flannel.1`), so dots become underscores.
    fn pin_name(&self) -> String {
        let dir = if self.egress { "out" } else { "in" };
        format!("{PIN_PREFIX}{}_{dir}", self.iface.replace('.', "_"))
    }

    fn attach_type(&self) -> u32 {
        if self.egress {
            sys::BPF_TCX_EGRESS
        } else {
            sys::BPF_TCX_INGRESS
        }
    }
}

/// The loaded tc programs and the links this process holds.
pub struct TcAttacher {
    pin_dir: PathBuf,
    ingress: OwnedFd,
    egress: OwnedFd,
    overlay_interfaces: Vec<String>,
    /// Pin name → link.
    links: HashMap<String, OwnedFd>,
}

impl TcAttacher {
    pub fn new(
        pin_dir: &Path,
        ingress: OwnedFd,
        egress: OwnedFd,
        overlay_interfaces: Vec<String>,
    ) -> Self {
        Self {
            pin_dir: pin_dir.to_path_buf(),
            ingress,
            egress,
            overlay_interfaces,
            links: HashMap::new(),
        }
    }

    /// Makes the attachments match `node_addrs`; returns the NodePort interfaces (ifindex →
    /// `IFACE_FLAG_*`) for the programs' interface map.
    pub fn reconcile(&mut self, node_addrs: &BTreeSet<Ipv4Addr>) -> Result<BTreeMap<u32, u32>> {
        let addrs = sys::ipv4_addrs().map_err(|source| Error::Interfaces { source })?;
        let mut ifaces: BTreeMap<u32, (String, u32)> = BTreeMap::new();
        for (name, index, ip) in addrs {
            if node_addrs.contains(&ip) {
                ifaces.entry(index).or_insert((name, 0)).1 |= IFACE_FLAG_EXTERNAL;
            }
        }
        for name in &self.overlay_interfaces {
            if let Ok(index) = sys::ifindex(name) {
                ifaces.entry(index).or_insert((name.clone(), 0)).1 |= IFACE_FLAG_OVERLAY;
            }
        }
        let mut wants = BTreeSet::new();
        for (index, (name, flags)) in &ifaces {
            wants.insert(Want {
                iface: name.clone(),
                ifindex: *index,
                egress: false,
            });
            if flags & IFACE_FLAG_EXTERNAL != 0 {
                wants.insert(Want {
                    iface: name.clone(),
                    ifindex: *index,
                    egress: true,
                });
            }
        }
        let wanted: BTreeSet<String> = wants.iter().map(Want::pin_name).collect();
        self.remove_unwanted(&wanted)?;
        for want in &wants {
            self.ensure(want)?;
        }
        Ok(ifaces.into_iter().map(|(i, (_, f))| (i, f)).collect())
    }

    fn ensure(&mut self, want: &Want) -> Result<()> {
        let name = want.pin_name();
        let pin = self.pin_dir.join(&name);
        if let Some(link) = self.links.get(&name)
            && link_matches(link, want)
        {
            return Ok(());
        }
        let prog = if want.egress {
            &self.egress
        } else {
            &self.ingress
        };
        match sys::obj_get(&pin) {
            Ok(link) if link_matches(&link, want) => {
                // The link an earlier proxy pinned now runs this proxy's program (an upgrade
                // takes effect without a moment unattached).
                sys::link_update(link.as_fd(), prog.as_fd())
                    .map_err(fs_err("updating the program of pinned link", &pin))?;
                debug!(iface = %want.iface, egress = want.egress, "re-using pinned tc link");
                self.links.insert(name, link);
                return Ok(());
            }
            Ok(_) => {
                info!(pin = %pin.display(), "pinned tc link is stale; replacing it");
                fs::remove_file(&pin).map_err(fs_err("removing", &pin))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(fs_err("opening pinned link", &pin)(e)),
        }
        let link = sys::link_create_tcx(prog.as_fd(), want.ifindex, want.attach_type()).map_err(
            |source| Error::AttachTc {
                program: if want.egress {
                    "ekube_np_egress"
                } else {
                    "ekube_np_ingress"
                },
                iface: want.iface.clone(),
                source,
            },
        )?;
        sys::obj_pin(link.as_fd(), &pin).map_err(fs_err("pinning link at", &pin))?;
        info!(iface = %want.iface, egress = want.egress, "NodePort program attached");
        self.links.insert(name, link);
        Ok(())
    }

    /// Removes tc link pins (and drops held links) not in `wanted`, which detaches them.
    fn remove_unwanted(&mut self, wanted: &BTreeSet<String>) -> Result<()> {
        self.links.retain(|name, _| wanted.contains(name));
        let entries = fs::read_dir(&self.pin_dir).map_err(fs_err("listing", &self.pin_dir))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(PIN_PREFIX) && !wanted.contains(&name) {
                info!(pin = %name, "detaching NodePort program from an interface no longer used");
                fs::remove_file(entry.path()).map_err(fs_err("removing", &entry.path()))?;
            }
        }
        Ok(())
    }
}

fn link_matches(link: &OwnedFd, want: &Want) -> bool {
    matches!(
        sys::tcx_link_info(link.as_fd()),
        Ok(Some((ifindex, attach_type))) if ifindex == want.ifindex && attach_type == want.attach_type()
    )
}

fn fs_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Fs {
        action,
        path,
        source,
    }
}
