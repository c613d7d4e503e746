//! `ekube proxy --mode iptables`: the Service datapath as kube-proxy's iptables rules.
//!
//! [`IptablesDatapath`] implements the same [`ServiceDatapath`] trait as the eBPF datapath, so
//! the same watch and syncer drive it; it keeps the services in memory and, on
//! [`ServiceDatapath::commit`], renders the whole `KUBE-*` rule set ([`render`]) and applies it
//! with one `iptables-restore --noflush` ([`restore`]) — kube-proxy's own strategy, and the
//! baseline the eBPF datapath is measured against (DESIGN.md §7). On the first commit (and
//! after a failed one) it reads the tables back with `iptables-save` to find chains an earlier
//! run left and which jumps from the built-in chains are missing. It never touches bpffs or
//! cgroups. Pods' hostPorts are rendered as the kubelet's hostport rules ([`hostports`]).
//! NodePorts answer on the node's addresses, or on every local address while none is
//! known; `127.0.0.1:<nodePort>` would also need `net.ipv4.conf.*.route_localnet=1`, which the
//! proxy does not set, so localhost NodePorts are not served in this mode.

pub mod cleanup;
pub mod hostports;
pub mod render;
pub mod restore;

use std::{collections::BTreeSet, io, net::Ipv4Addr, path::PathBuf, time::Instant};

use ipnetwork::Ipv4Network;
use k8s_openapi::api::core::v1::Service;
use tracing::{debug, info, warn};

pub use self::{
    render::{Chains, FrontendModel, Model, PortName},
    restore::{Binary, Recorder, Restore, Variant},
};
use crate::{
    datapath::{
        Affinity, BackendAddr, DatapathState, Error as DatapathError, Frontend, Protocol,
        ServiceDatapath, ServiceEntry, ServiceOptions,
    },
    service::{PodName, ProxyDatapath, ServiceName},
};

/// Errors of running the iptables programs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "running {program}: {source} (is Debian's `iptables` package installed? see --iptables-variant)"
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

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

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

/// Settings of the iptables datapath.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IptablesConfig {
    pub variant: Variant,
    /// Pod CIDR: traffic from outside it is masqueraded on its way to a ClusterIP.
    pub cluster_cidr: Option<Ipv4Network>,
}

/// The services as kube-proxy's iptables rules, applied in batches.
pub struct IptablesDatapath<R> {
    restore: R,
    model: Model,
    /// Changes not yet applied.
    dirty: bool,
    /// Read the tables back before the next restore (first commit, or after a failure).
    resync: bool,
    /// Per-service chains as of the last successful restore.
    chains: Chains,
    /// Successful restores.
    restores: u64,
}

impl IptablesDatapath<Binary> {
    /// The datapath over the real programs of `config.variant`; checks they run.
    pub fn open(config: &IptablesConfig) -> Result<Self> {
        let mut binary = Binary::new(config.variant);
        binary.save("nat")?;
        info!(
            variant = config.variant.restore_program(),
            "iptables datapath ready"
        );
        Ok(Self::new(binary, config.cluster_cidr))
    }
}

impl<R: Restore> IptablesDatapath<R> {
    pub fn new(restore: R, cluster_cidr: Option<Ipv4Network>) -> Self {
        Self {
            restore,
            model: Model {
                cluster_cidr,
                ..Model::default()
            },
            dirty: true,
            resync: true,
            chains: Chains::default(),
            restores: 0,
        }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn restore_handle(&self) -> &R {
        &self.restore
    }

    /// Records the Service ports behind `svc`'s frontends (what chain names and comments are
    /// derived from). Call before programming its frontends.
    pub fn describe(&mut self, svc: &Service) {
        for (frontend, name) in port_names(svc) {
            if self.model.ports.get(&frontend) != Some(&name) {
                self.model.ports.insert(frontend, name);
                if self.model.frontends.contains_key(&frontend) {
                    self.dirty = true;
                }
            }
        }
    }

    /// Renders the rule set and applies it (reading the tables first when needed).
    fn apply(&mut self) -> Result<()> {
        let mut missing = Vec::new();
        let mut found = None;
        if self.resync {
            let mut existing = Chains::default();
            for table in ["filter", "nat"] {
                let dump = self.restore.save(table)?;
                let (chains, jumps) = render::parse_save(table, &dump);
                match table {
                    "filter" => existing.filter = chains,
                    _ => existing.nat = chains,
                }
                missing.extend(jumps);
            }
            // Chains written last time that a failed restore may have left, too.
            existing.filter.extend(self.chains.filter.iter().cloned());
            existing.nat.extend(self.chains.nat.iter().cloned());
            found = Some(existing);
        }
        let before = found.as_ref().unwrap_or(&self.chains);
        let rendered = render::render(
            &self.model,
            &render::Existing {
                chains: Some(before),
                missing_jumps: &missing,
            },
        );
        let started = Instant::now();
        self.restore.restore(&rendered.text)?;
        let took = started.elapsed();
        debug!(
            bytes = rendered.text.len(),
            chains = rendered.chains.nat.len(),
            ?took,
            "iptables-restore"
        );
        if !missing.is_empty() {
            info!(
                jumps = missing.len(),
                "installed the jumps into the KUBE-* chains"
            );
        }
        self.chains = rendered.chains;
        self.restores += 1;
        Ok(())
    }
}

impl<R: Restore> ServiceDatapath for IptablesDatapath<R> {
    fn upsert_service(
        &mut self,
        frontend: Frontend,
        backends: &[BackendAddr],
        affinity: Affinity,
    ) -> crate::datapath::Result<()> {
        let options = ServiceOptions {
            affinity,
            ..ServiceOptions::default()
        };
        self.upsert_service_with(frontend, backends, options)
    }

    fn upsert_service_with(
        &mut self,
        frontend: Frontend,
        backends: &[BackendAddr],
        options: ServiceOptions,
    ) -> crate::datapath::Result<()> {
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

    fn delete_service(&mut self, frontend: Frontend) -> crate::datapath::Result<()> {
        if self.model.frontends.remove(&frontend).is_some()
            | self.model.host_ports.remove(&frontend).is_some()
        {
            self.dirty = true;
        }
        Ok(())
    }

    fn set_node_addrs(&mut self, addrs: &[Ipv4Addr]) -> crate::datapath::Result<()> {
        let addrs: BTreeSet<Ipv4Addr> = addrs.iter().copied().collect();
        if addrs != self.model.node_addrs {
            self.model.node_addrs = addrs;
            self.dirty = true;
        }
        Ok(())
    }

    fn dump(&self) -> crate::datapath::Result<DatapathState> {
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

    /// Successful `iptables-restore` runs: each rewrites the whole rule set.
    fn map_writes(&self) -> u64 {
        self.restores
    }

    fn commit(&mut self) -> crate::datapath::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        // Names of frontends that are gone are not needed any more.
        let (frontends, host_ports) = (&self.model.frontends, &self.model.host_ports);
        self.model
            .ports
            .retain(|f, _| frontends.contains_key(f) || host_ports.contains_key(f));
        match self.apply() {
            Ok(()) => {
                self.dirty = false;
                self.resync = false;
                Ok(())
            }
            Err(err) => {
                warn!(%err, "applying the iptables rules; the next sync retries");
                self.resync = true;
                Err(err.into())
            }
        }
    }
}

impl<R: Restore> ProxyDatapath for IptablesDatapath<R> {
    fn describe_service(&mut self, _key: &ServiceName, svc: Option<&Service>) {
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

/// kube-proxy's `ServicePortName` of each frontend of `svc`: `namespace/name:port`, or
/// `namespace/name` for an unnamed port.
pub fn port_names(svc: &Service) -> Vec<(Frontend, PortName)> {
    let mut out = Vec::new();
    let Some(spec) = &svc.spec else {
        return out;
    };
    let namespace = svc.metadata.namespace.as_deref().unwrap_or("default");
    let name = svc.metadata.name.as_deref().unwrap_or("");
    let cluster_ip = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
    let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
    for port in spec.ports.iter().flatten() {
        let proto = match port.protocol.as_deref().unwrap_or("TCP") {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            _ => continue,
        };
        let port_name = match port.name.as_deref() {
            Some(p) if !p.is_empty() => format!("{namespace}/{name}:{p}"),
            _ => format!("{namespace}/{name}"),
        };
        if let (Some(ip), Ok(p)) = (cluster_ip, u16::try_from(port.port)) {
            out.push((Frontend::cluster_ip(ip, p, proto), port_name.clone()));
        }
        if node_ports && let Some(Ok(np)) = port.node_port.map(u16::try_from) {
            out.push((Frontend::node_port(np, proto), port_name));
        }
    }
    out
}

#[cfg(test)]
mod tests;
