//! What the two rule-based modes share: `--mode iptables` ([`crate::iptables`]) and
//! `--mode nftables` ([`crate::nftables`]) both program kube-proxy's rules from one in-memory
//! [`Model`] of the services, and differ only in how they render and apply it.
//!
//! [`RuleDatapath`] implements [`ServiceDatapath`] over the model: upserts and deletes only
//! change the model and mark it dirty, and [`ServiceDatapath::commit`] hands the whole model to
//! the mode's [`RuleWriter`], which writes what changed in one kernel transaction. The model
//! also carries kube-proxy's `ServicePortName` of every frontend ([`port_names`]), from which
//! both modes derive their chain names and comments. After each write, [`conntrack`] removes
//! the UDP flows the new rules would no longer send where they go.

pub mod conntrack;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{self, Write},
    net::Ipv4Addr,
    path::PathBuf,
    process::{Command, Stdio},
    sync::{Arc, Mutex, MutexGuard},
};

use ipnetwork::Ipv4Network;
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use crate::{
    datapath::{
        Affinity, BackendAddr, DatapathState, Error as DatapathError, Frontend, Protocol, Result,
        ServiceDatapath, ServiceEntry, ServiceOptions,
    },
    service::{PodName, ProxyDatapath, ServiceName, ServiceView},
};

/// Errors of running the program that writes the rules (`iptables-restore`, `nft`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "running {program}: {source} (Debian packages it in `iptables` or `nftables`; see --mode and --iptables-variant)"
    )]
    Spawn {
        program: &'static str,
        source: io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: &'static str,
        status: String,
        stderr: String,
    },
}

impl From<Error> for DatapathError {
    fn from(err: Error) -> Self {
        let program = match &err {
            Error::Spawn { program, .. } | Error::Failed { program, .. } => *program,
        };
        DatapathError::Fs {
            action: "running",
            path: PathBuf::from(program),
            source: io::Error::other(err.to_string()),
        }
    }
}

/// Runs `program` with `args`, feeding it `input` on stdin; its stdout, or what it said on
/// failure.
pub fn run(program: &'static str, args: &[&str], input: &str) -> Result<String, Error> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn { program, source })?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Written from this thread while the child reads; its output is drained after stdin
    // closes, which is safe for programs that only answer after reading all their input.
    let written = stdin.write_all(input.as_bytes());
    drop(stdin);
    let out = child
        .wait_with_output()
        .map_err(|source| Error::Spawn { program, source })?;
    if !out.status.success() || written.is_err() {
        return Err(Error::Failed {
            program,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The in-memory fake of a rule writer's program: what it was given and what it should answer
/// (`T`), shared so a test keeps a handle after moving the fake into a datapath.
#[derive(Debug, Default)]
pub struct Recorder<T>(pub Arc<Mutex<T>>);

impl<T> Clone for Recorder<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Recorder<T> {
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a recording fake of the rule writers answers: the failure it was told to report
/// next (taken), or success.
pub fn fake_outcome(program: &'static str, fail_next: &mut Option<String>) -> Result<(), Error> {
    match fail_next.take() {
        Some(stderr) => Err(Error::Failed {
            program,
            status: "exit status: 1".into(),
            stderr,
        }),
        None => Ok(()),
    }
}

/// The Service port a frontend belongs to, as kube-proxy names it: `namespace/name:port`
/// (`namespace/name` for an unnamed port), kube-proxy's `ServicePortName`, hashed into chain
/// names and written into comments.
pub type PortName = String;

/// One programmed frontend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontendModel {
    pub backends: Vec<BackendAddr>,
    pub affinity: Affinity,
    /// `externalTrafficPolicy: Local` on a NodePort frontend: `backends` are this node's
    /// endpoints, reached without masquerading.
    pub external_local: bool,
}

/// Everything the rules are rendered from.
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub frontends: BTreeMap<Frontend, FrontendModel>,
    /// Service port of each frontend, where known; a frontend without one is named after its
    /// own address (`10.96.0.10:53/udp`).
    pub ports: BTreeMap<Frontend, PortName>,
    /// Addresses NodePorts answer on; empty means every local address.
    pub node_addrs: BTreeSet<Ipv4Addr>,
    /// Pod traffic is not masqueraded on its way to a ClusterIP.
    pub cluster_cidr: Option<Ipv4Network>,
    /// Pods' hostPorts: frontend ([`Frontend::host_port`]) → the pod's address and port; the
    /// pod's `namespace/name` is in `ports`.
    pub host_ports: BTreeMap<Frontend, BackendAddr>,
}

/// A service port: its ClusterIP and NodePort frontends, which share one service chain and
/// its endpoints.
pub struct Group<'a> {
    pub name: String,
    pub proto: Protocol,
    pub cluster: Option<(Frontend, &'a FrontendModel)>,
    pub node_port: Option<(Frontend, &'a FrontendModel)>,
    pub external_local: bool,
}

impl<'a> Group<'a> {
    /// The port's endpoints for cluster traffic (the ClusterIP frontend's; a NodePort of an
    /// eTP Local port holds only this node's) and its affinity.
    pub fn cluster_endpoints(&self) -> (&'a [BackendAddr], Affinity) {
        match (self.cluster, self.node_port) {
            (Some((_, c)), _) => (c.backends.as_slice(), c.affinity),
            (None, Some((_, n))) if !self.external_local => (n.backends.as_slice(), n.affinity),
            (None, Some((_, n))) => (&[][..], n.affinity),
            (None, None) => (&[][..], Affinity::None),
        }
    }

    /// This node's endpoints of an `externalTrafficPolicy: Local` NodePort (empty otherwise).
    pub fn local_endpoints(&self) -> &'a [BackendAddr] {
        match self.node_port {
            Some((_, n)) if self.external_local => &n.backends,
            _ => &[],
        }
    }
}

impl Model {
    /// The frontends grouped by service port.
    pub fn groups(&self) -> Vec<Group<'_>> {
        let mut by_port: BTreeMap<(String, Protocol), Group<'_>> = BTreeMap::new();
        for (frontend, fm) in &self.frontends {
            let name = match self.ports.get(frontend) {
                Some(name) => name.clone(),
                None => frontend.to_string(),
            };
            let mut key = (name, frontend.proto);
            let slot_taken = |g: &Group<'_>| {
                if frontend.is_node_port() {
                    g.node_port.is_some()
                } else {
                    g.cluster.is_some()
                }
            };
            // Two frontends claiming the same slot of one port (not something the API
            // produces): keep them apart under their own addresses.
            if by_port.get(&key).is_some_and(slot_taken) {
                key = (frontend.to_string(), frontend.proto);
            }
            let group = by_port.entry(key.clone()).or_insert_with(|| Group {
                name: key.0.clone(),
                proto: frontend.proto,
                cluster: None,
                node_port: None,
                external_local: false,
            });
            if frontend.is_node_port() {
                group.node_port = Some((*frontend, fm));
                group.external_local = fm.external_local;
            } else {
                group.cluster = Some((*frontend, fm));
            }
        }
        by_port.into_values().collect()
    }

    /// The pod (`namespace/name`) behind a hostPort frontend, or `""`.
    pub fn pod_of(&self, frontend: &Frontend) -> &str {
        self.ports.get(frontend).map_or("", String::as_str)
    }
}

/// kube-proxy's `ServicePortName` of each frontend of `svc`: `namespace/name:port`, or
/// `namespace/name` for an unnamed port.
pub fn port_names(svc: &ServiceView) -> Vec<(Frontend, PortName)> {
    let ServiceName { namespace, name } = &svc.name;
    let cluster_ip = svc
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
    let mut out = Vec::new();
    for port in &svc.ports {
        let Some(proto) = port.proto() else {
            continue;
        };
        let port_name = match port.name.as_str() {
            "" => format!("{namespace}/{name}"),
            p => format!("{namespace}/{name}:{p}"),
        };
        if let (Some(ip), Ok(p)) = (cluster_ip, u16::try_from(port.port)) {
            out.push((Frontend::cluster_ip(ip, p, proto), port_name.clone()));
        }
        if svc.type_.has_node_ports()
            && let Some(Ok(np)) = port.node_port.map(u16::try_from)
        {
            out.push((Frontend::node_port(np, proto), port_name));
        }
    }
    out
}

/// `base32(sha256(input))`, cut to `len` characters: kube-proxy's chain-name hash (16
/// characters in iptables mode, 8 in nftables mode).
pub fn hash(input: &str, len: usize) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = Sha256::digest(input.as_bytes());
    let mut out = String::with_capacity(len);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in digest.iter() {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
            if out.len() == len {
                return out;
            }
        }
        buffer &= (1 << bits) - 1;
    }
    out
}

/// Lowercase protocol name, as both modes write it.
pub fn proto_name(proto: Protocol) -> &'static str {
    match proto {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// How a rule-based mode brings the kernel in line with the model.
pub trait RuleWriter: Send {
    /// Writes the rules of `model`, in one transaction. After a failure the next call must
    /// not trust what it believes is in the kernel.
    fn write(&mut self, model: &Model) -> Result<()>;

    /// Successful writes so far.
    fn writes(&self) -> u64;
}

/// The services as kube-proxy-style rules, written in batches by `W`.
pub struct RuleDatapath<W> {
    writer: W,
    model: Model,
    /// Changes not yet written.
    dirty: bool,
    /// Where stale UDP flows are removed after each write; none in tests of the rules alone.
    flows: Option<Box<dyn conntrack::FlowTable>>,
}

impl<W: RuleWriter> RuleDatapath<W> {
    pub fn with_writer(writer: W, cluster_cidr: Option<Ipv4Network>) -> Self {
        Self {
            writer,
            model: Model {
                cluster_cidr,
                ..Model::default()
            },
            dirty: true,
            flows: None,
        }
    }

    /// Removes stale UDP flows from `table` after each write.
    pub fn with_flow_table(mut self, table: Box<dyn conntrack::FlowTable>) -> Self {
        self.flows = Some(table);
        self
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn writer(&self) -> &W {
        &self.writer
    }

    /// Names frontends directly (what [`Self::describe`] does from a Service).
    #[cfg(test)]
    pub(crate) fn name_frontends(&mut self, names: BTreeMap<Frontend, PortName>) {
        self.model.ports.extend(names);
        self.dirty = true;
    }

    /// Records the Service ports behind `svc`'s frontends (what chain names and comments are
    /// derived from). Call before programming its frontends.
    pub fn describe(&mut self, svc: &ServiceView) {
        for (frontend, name) in port_names(svc) {
            if self.model.ports.get(&frontend) != Some(&name) {
                self.model.ports.insert(frontend, name);
                if self.model.frontends.contains_key(&frontend) {
                    self.dirty = true;
                }
            }
        }
    }
}

impl<W: RuleWriter> ServiceDatapath for RuleDatapath<W> {
    fn upsert_service_with(
        &mut self,
        frontend: Frontend,
        backends: &[BackendAddr],
        options: ServiceOptions,
    ) -> Result<()> {
        if options.host_port {
            // One backend, the pod; without one the mapping is simply not there.
            let changed = match backends.first() {
                Some(pod) => self.model.host_ports.insert(frontend, *pod) != Some(*pod),
                None => self.model.host_ports.remove(&frontend).is_some(),
            };
            self.dirty |= changed;
            return Ok(());
        }
        let mut backends = backends.to_vec();
        backends.sort();
        backends.dedup();
        let entry = FrontendModel {
            backends,
            affinity: options.affinity,
            external_local: options.external_local && frontend.is_node_port(),
        };
        if self.model.frontends.get(&frontend) != Some(&entry) {
            self.model.frontends.insert(frontend, entry);
            self.dirty = true;
        }
        Ok(())
    }

    fn delete_service(&mut self, frontend: Frontend) -> Result<()> {
        if self.model.frontends.remove(&frontend).is_some()
            | self.model.host_ports.remove(&frontend).is_some()
        {
            self.dirty = true;
        }
        Ok(())
    }

    fn set_node_addrs(&mut self, addrs: &[Ipv4Addr]) -> Result<()> {
        let addrs: BTreeSet<Ipv4Addr> = addrs.iter().copied().collect();
        if addrs != self.model.node_addrs {
            self.model.node_addrs = addrs;
            self.dirty = true;
        }
        Ok(())
    }

    fn dump(&self) -> Result<DatapathState> {
        let services = self.model.frontends.iter().map(|(f, m)| {
            let entry = ServiceEntry {
                backends: m.backends.clone(),
                affinity: m.affinity,
                host_port: false,
            };
            (*f, entry)
        });
        let host_ports = self.model.host_ports.iter().map(|(f, pod)| {
            let entry = ServiceEntry {
                backends: vec![*pod],
                affinity: Affinity::None,
                host_port: true,
            };
            (*f, entry)
        });
        Ok(DatapathState {
            services: services.chain(host_ports).collect(),
            node_addrs: self.model.node_addrs.clone(),
        })
    }

    /// Successful rule writes: each is one kernel transaction.
    fn map_writes(&self) -> u64 {
        self.writer.writes()
    }

    fn commit(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        // Names of frontends that are gone are not needed any more.
        let (frontends, host_ports) = (&self.model.frontends, &self.model.host_ports);
        self.model
            .ports
            .retain(|f, _| frontends.contains_key(f) || host_ports.contains_key(f));
        self.writer.write(&self.model)?;
        self.dirty = false;
        // As kube-proxy: flows it cannot remove stay where they were until the next write
        // looks again.
        if let Some(table) = &mut self.flows {
            match conntrack::clean(table.as_mut(), &self.model) {
                Ok(0) => {}
                Ok(deleted) => debug!(deleted, "removed stale UDP conntrack entries"),
                Err(error) => warn!(%error, "removing stale UDP conntrack entries"),
            }
        }
        Ok(())
    }
}

impl<W: RuleWriter> ProxyDatapath for RuleDatapath<W> {
    fn describe_service(&mut self, _key: &ServiceName, svc: Option<&ServiceView>) {
        if let Some(svc) = svc {
            self.describe(svc);
        }
    }

    fn describe_pod(&mut self, key: &PodName, frontends: &[Frontend]) {
        let name = key.to_string();
        for frontend in frontends {
            if self.model.ports.get(frontend) != Some(&name) {
                self.model.ports.insert(*frontend, name.clone());
                self.dirty |= self.model.host_ports.contains_key(frontend);
            }
        }
    }
}

/// Addresses the rule modes' tests build their services from.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::datapath::{BackendAddr, Frontend, Protocol};

    /// An endpoint `ip:port`.
    pub fn ep(ip: &str, port: u16) -> BackendAddr {
        BackendAddr {
            ip: ip.parse().unwrap(),
            port,
        }
    }

    /// A TCP ClusterIP frontend `ip:port`.
    pub fn vip(ip: &str, port: u16) -> Frontend {
        Frontend::cluster_ip(ip.parse().unwrap(), port, Protocol::Tcp)
    }
}

#[cfg(test)]
mod tests {
    use super::hash;

    #[test]
    fn hash_is_base32_of_sha256() {
        // sha256("") = e3b0c442…; its base32 starts 4OYMIQUY7QOBJGX3.
        assert_eq!(hash("", 16), "4OYMIQUY7QOBJGX3");
        assert_eq!(hash("", 8), "4OYMIQUY");
    }
}
