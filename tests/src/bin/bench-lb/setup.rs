//! The bench's cluster: the overlay on both nodes, the pods (network namespaces wired by
//! `ekube-cni` ADD, as a kubelet would), the `ekube-rr` backends, and the Services and
//! EndpointSlices written through the API (selector-less Services with hand-written slices).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ekube_lab::{CmdTemplate, Lab};
use ekube_tests::bench::{self, ChildGuard};
use ekube_tests::wait_for;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

use crate::probe::Place;

/// Prefix of the pod namespaces (cleared at start, removed at the end).
pub const POD_PREFIX: &str = "ekblbp";
/// Where the backends listen.
pub const BACKEND_PORT: u16 = 7000;
/// The Services' port.
pub const SERVICE_PORT: u16 = 80;
/// The target Service's node port.
pub const NODE_PORT: u16 = 30080;
/// The target Service: its name sorts after every filler, so kube-proxy's rules for it are the
/// last ClusterIP rules in `KUBE-SERVICES`. Beside its TCP port (the one measured) it has the
/// same numbers over UDP for the connect timer; being a NodePort Service, that port also gets a
/// node port the apiserver picks, and its rules and map entries are programmed with the rest
/// (the rule position reported is among the TCP rules).
pub const TARGET: &str = "zz-lb-target";
/// The service CIDR (DESIGN.md §3), routed as local on the node so that an untranslated
/// connect is refused at once.
pub const SERVICE_CIDR: &str = "10.96.0.0/12";
/// The target's UDP port: UDP connects to it time the socket hook ([`crate::probe::connect_costs`]).
const UDP_PORT_NAME: &str = "rr-udp";
/// Parallel API requests while creating filler services.
const CREATE_PARALLEL: usize = 32;

/// One backend pod: its namespace, address and the node it is on.
#[derive(Clone, Debug)]
pub struct Backend {
    pub netns: String,
    pub ip: Ipv4Addr,
    pub node: String,
}

/// Everything the measurements use.
pub struct Cluster<'a> {
    pub lab: &'a Lab,
    pub rt: tokio::runtime::Runtime,
    services: Api<Service>,
    slices: Api<EndpointSlice>,
    /// The client pod on n1, inside n1's cgroup subtree.
    pub pod_client: Place,
    /// The external client namespace.
    pub ext_client: Place,
    /// The client pod's namespace outside n1's cgroup subtree (no socket hook applies).
    pub pod_outside: Place,
    /// The target's backends: on n1, on n2.
    pub backends: [Backend; 2],
    pub target_vip: Ipv4Addr,
    /// Filler services created so far.
    pub fillers: usize,
    /// ClusterIPs the apiserver handed out (it picks at random), so added services avoid them.
    allocated: HashSet<Ipv4Addr>,
    _servers: Vec<ChildGuard>,
    _pods: bench::PodNamespaces,
}

impl<'a> Cluster<'a> {
    /// Builds everything on a lab whose server is up; must run on a thread inside n1's network
    /// namespace (the apiserver listens there).
    pub fn build(lab: &'a Lab) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let client = rt
            .block_on(ekube_api::client::from_kubeconfig(&lab.kubeconfig()))
            .context("API client")?;
        start_overlay(lab)?;
        let mut pods = bench::PodNamespaces::new(POD_PREFIX);
        let client_ns = pods.add(lab, 1, "c")?.0;
        let mut backends = Vec::new();
        for (node, tag) in [(1, "a"), (2, "b")] {
            let (netns, ip) = pods.add(lab, node, tag)?;
            backends.push(Backend {
                netns,
                ip,
                node: lab.host(&format!("n{node}"))?.netns.clone(),
            });
        }
        let backends: [Backend; 2] = backends.try_into().expect("two backends");
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, BACKEND_PORT));
        let servers = vec![
            bench::rr_serve(&backends[0].netns, any, "backend-n1")?,
            bench::rr_serve(&backends[1].netns, any, "backend-n2")?,
        ];
        // Untranslated service addresses are local on n1: a connect is refused at once instead
        // of wandering off to the fabric (what keeps the readiness probes' resolution fine).
        must(
            lab.exec(
                "n1",
                &["ip", "route", "add", "local", SERVICE_CIDR, "dev", "lo"],
            )?,
            "routing the service range on n1",
        )?;
        // The external client reaches pod addresses through n1 (the direct NodePort floor).
        let n1_ip = lab.host("n1")?.ip.to_string();
        must(
            lab.exec(
                "ext",
                &["ip", "route", "add", "10.244.0.0/16", "via", &n1_ip],
            )?,
            "routing the pod network from ext",
        )?;

        let n1 = lab.host("n1")?;
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        let slices: Api<EndpointSlice> = Api::namespaced(client, "default");
        let mut cluster = Self {
            lab,
            rt,
            services,
            slices,
            pod_client: Place {
                netns: client_ns.clone(),
                cgroup_procs: Some(n1.cgroup2_dir().join("cgroup.procs")),
            },
            ext_client: Place {
                netns: lab.host("ext")?.netns.clone(),
                cgroup_procs: None,
            },
            pod_outside: Place {
                netns: client_ns,
                cgroup_procs: None,
            },
            backends,
            target_vip: Ipv4Addr::UNSPECIFIED,
            fillers: 0,
            allocated: HashSet::new(),
            _servers: servers,
            _pods: pods,
        };
        let endpoints = cluster.backend_endpoints();
        cluster.target_vip = cluster.rt.block_on(create_pair(
            &cluster.services,
            &cluster.slices,
            TARGET,
            None,
            Some(NODE_PORT),
            &endpoints,
            true,
        ))?;
        cluster.allocated.insert(cluster.target_vip);
        Ok(cluster)
    }

    /// Drops the TIME_WAIT sockets the backends hold (the server closes first in crr), so
    /// that no mode inherits the previous one's: a new SYN that lands on one of them with an
    /// older timestamp is refused by PAWS and costs the client a 1 s SYN retransmission.
    pub fn clear_time_wait(&self) -> Result<()> {
        for b in &self.backends {
            let out = bench::netns_command(&b.netns, "ss")?
                .args(["-K", "-t", "state", "time-wait"])
                .stdin(Stdio::null())
                .output()
                .context("running ss -K")?;
            ensure!(
                out.status.success(),
                "ss -K in {}: {}",
                b.netns,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// The two backends as endpoints (address and node).
    pub fn backend_endpoints(&self) -> Vec<(Ipv4Addr, Option<String>)> {
        self.backends
            .iter()
            .map(|b| (b.ip, Some(b.node.clone())))
            .collect()
    }

    /// Creates filler services until there are `total − 1` of them (plus the target: `total`).
    pub fn grow(&mut self, total: usize) -> Result<()> {
        let want = total.saturating_sub(1);
        if want <= self.fillers {
            return Ok(());
        }
        let (services, slices) = (&self.services, &self.slices);
        let vips = self.rt.block_on(
            futures::stream::iter(self.fillers..want)
                .map(|i| async move {
                    let endpoints: Vec<_> = bench::filler_endpoints(i)
                        .into_iter()
                        .map(|ip| (ip, None))
                        .collect();
                    create_pair(
                        services,
                        slices,
                        &format!("lb-fill-{i:05}"),
                        None,
                        None,
                        &endpoints,
                        false,
                    )
                    .await
                })
                .buffer_unordered(CREATE_PARALLEL)
                .try_collect::<Vec<_>>(),
        )?;
        self.allocated.extend(vips);
        self.fillers = want;
        Ok(())
    }

    /// A ClusterIP for added service number `n` that no filler holds, from the top of the range.
    pub fn add_vip(&self, n: usize) -> Ipv4Addr {
        (n..)
            .map(|k| Ipv4Addr::new(10, 111, (255 - (k / 250) % 256) as u8, (k % 250 + 1) as u8))
            .find(|ip| !self.allocated.contains(ip))
            .expect("a free address")
    }

    /// Creates the EndpointSlice of an added service (before the Service itself, so that the
    /// Service's arrival is the one change timed).
    pub fn create_add_slice(&self, name: &str) -> Result<()> {
        let slice = slice(name, &self.backend_endpoints(), false);
        self.rt
            .block_on(self.slices.create(&PostParams::default(), &slice))
            .with_context(|| format!("creating endpointslice {name}"))?;
        Ok(())
    }

    /// Creates the Service of an added service at `vip`.
    pub fn create_add_service(&self, name: &str, vip: Ipv4Addr) -> Result<()> {
        self.rt
            .block_on(self.services.create(
                &PostParams::default(),
                &service(name, Some(vip), None, false),
            ))
            .with_context(|| format!("creating service {name}"))?;
        Ok(())
    }

    /// Deletes an added service and its slice (either may be missing).
    pub fn delete_added(&self, name: &str) -> Result<()> {
        self.rt.block_on(async {
            let dp = DeleteParams::default();
            let missing_ok = |r: Result<_, kube::Error>| match r {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(e) => Err(e),
            };
            missing_ok(self.services.delete(name, &dp).await.map(|_| ()))
                .with_context(|| format!("deleting service {name}"))?;
            missing_ok(self.slices.delete(name, &dp).await.map(|_| ()))
                .with_context(|| format!("deleting endpointslice {name}"))
        })
    }
}

/// Fails with `what` and the command's stderr unless it succeeded.
pub fn must(out: ekube_lab::ExecOutput, what: &str) -> Result<()> {
    ensure!(out.success(), "{what}: {}", out.stderr.trim());
    Ok(())
}

/// A selector-less Service: TCP [`SERVICE_PORT`] → [`BACKEND_PORT`], and with `udp` the same
/// numbers over UDP.
fn service(name: &str, cluster_ip: Option<Ipv4Addr>, node_port: Option<u16>, udp: bool) -> Service {
    let mut port =
        json!({"name": "rr", "protocol": "TCP", "port": SERVICE_PORT, "targetPort": BACKEND_PORT});
    let mut spec = json!({"ports": []});
    if let Some(np) = node_port {
        port["nodePort"] = json!(np);
        spec["type"] = json!("NodePort");
    }
    if let Some(ip) = cluster_ip {
        spec["clusterIP"] = json!(ip.to_string());
    }
    let mut ports = vec![port];
    if udp {
        ports.push(json!({"name": UDP_PORT_NAME, "protocol": "UDP", "port": SERVICE_PORT, "targetPort": BACKEND_PORT}));
    }
    spec["ports"] = json!(ports);
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))
        .expect("valid service")
}

fn slice(service: &str, endpoints: &[(Ipv4Addr, Option<String>)], udp: bool) -> EndpointSlice {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, node)| {
            let mut e = json!({"addresses": [ip.to_string()], "conditions": {"ready": true}});
            if let Some(node) = node {
                e["nodeName"] = json!(node);
            }
            e
        })
        .collect();
    let mut ports = vec![json!({"name": "rr", "protocol": "TCP", "port": BACKEND_PORT})];
    if udp {
        ports.push(json!({"name": UDP_PORT_NAME, "protocol": "UDP", "port": BACKEND_PORT}));
    }
    serde_json::from_value(json!({
        "metadata": {
            "name": service,
            "labels": {"kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "ekube-bench-lb"},
        },
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    }))
    .expect("valid endpointslice")
}

/// Creates a Service and its EndpointSlice; returns the ClusterIP.
async fn create_pair(
    services: &Api<Service>,
    slices: &Api<EndpointSlice>,
    name: &str,
    cluster_ip: Option<Ipv4Addr>,
    node_port: Option<u16>,
    endpoints: &[(Ipv4Addr, Option<String>)],
    udp: bool,
) -> Result<Ipv4Addr> {
    let pp = PostParams::default();
    slices
        .create(&pp, &slice(name, endpoints, udp))
        .await
        .with_context(|| format!("creating endpointslice {name}"))?;
    let svc = services
        .create(&pp, &service(name, cluster_ip, node_port, udp))
        .await
        .with_context(|| format!("creating service {name}"))?;
    let ip = svc
        .spec
        .and_then(|s| s.cluster_ip)
        .context("no clusterIP allocated")?;
    ip.parse()
        .with_context(|| format!("clusterIP {ip:?} of {name}"))
}

/// Starts `ekube flannel` on both nodes (registering the Node objects) and waits until each has
/// its subnet and a route to the other.
fn start_overlay(lab: &Lab) -> Result<()> {
    let template = CmdTemplate::parse(
        "{ekube} flannel --kubeconfig {kubeconfig} --hostname-override {node} --public-ip {ip} \
         --subnet-file {dir}/run/subnet.env --register-node",
    );
    for node in ["n1", "n2"] {
        let host = lab.host(node)?;
        lab.spawn(node, "flannel", &template.render(&host.vars(lab.config())))?;
    }
    for node in ["n1", "n2"] {
        let subnet = lab.host(node)?.run_dir().join("subnet.env");
        wait_for(
            Duration::from_secs(90),
            &format!("{node}: subnet.env and a route to the other node on flannel.1"),
            || {
                let out = lab.exec(
                    node,
                    &["ip", "-j", "-4", "route", "show", "dev", "flannel.1"],
                )?;
                let routes: Value = serde_json::from_str(out.stdout.trim()).unwrap_or(Value::Null);
                Ok(subnet.exists() && routes.as_array().is_some_and(|r| r.len() == 1))
            },
        )
        .with_context(|| {
            format!(
                "see {}",
                lab.log_path(node, "flannel")
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )
        })?;
    }
    Ok(())
}
