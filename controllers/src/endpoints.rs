//! EndpointSlice and Endpoints controllers: for every Service with a selector, the pods it
//! selects, as `discovery.k8s.io/v1` EndpointSlices (what the proxy reads) and the legacy
//! `v1` Endpoints object of the same name.
//!
//! A pod is an endpoint when it has an IP, is not terminal and lives in the Service's
//! namespace. Its conditions follow the pod: `serving` is its `Ready` condition, `terminating`
//! its `deletionTimestamp`, `ready` is serving and not terminating. Named target ports are
//! resolved per pod, so pods that expose a name on different numbers land in different slices,
//! as upstream does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};

use crate::informer::Changes;
use crate::util::{
    controller_ref, deleting, labels_of, map_selector_string, pod_ready, pod_terminal,
};
use crate::{Context as _, Result};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Upstream's default `--max-endpoints-per-slice`.
const MAX_PER_SLICE: usize = 100;

struct Ctx {
    client: kube::Client,
    slices: bool,
    endpoints: bool,
}

pub async fn run(
    client: kube::Client,
    pods: Changes<Pod>,
    slices: bool,
    endpoints: bool,
) -> Result<(), String> {
    let services: Api<Service> = Api::all(client.clone());
    let ctrl = Controller::new(services.clone(), watcher::Config::default());
    let store = ctrl.store();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        slices,
        endpoints,
    });
    // Endpoints carry no ownerReference upstream: remove them when their Service goes.
    let cleanup = {
        let client = client.clone();
        watcher(services, watcher::Config::default())
            .default_backoff()
            .for_each(move |ev| {
                let client = client.clone();
                async move {
                    if let Ok(watcher::Event::Delete(svc)) = ev
                        && endpoints
                        && let Some(ns) = svc.namespace()
                    {
                        let api: Api<Endpoints> = Api::namespaced(client, &ns);
                        let _ = api.delete(&svc.name_any(), &DeleteParams::default()).await;
                    }
                }
            })
    };
    let main = ctrl
        .owns(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default(),
        )
        .watches_shared_stream(pods, move |pod: Arc<Pod>| {
            let ns = pod.namespace().unwrap_or_default();
            let labels = labels_of(&*pod);
            store
                .state()
                .into_iter()
                .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
                .filter(|s| {
                    selector_of(s)
                        .is_some_and(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
                })
                .map(|s| ObjectRef::from_obj(&*s))
                .collect::<Vec<_>>()
        })
        .run(
            reconcile,
            |_, e, _| {
                tracing::warn!(error = %e, "endpointslice");
                Action::requeue(Duration::from_secs(2))
            },
            ctx,
        )
        .for_each(|_| async {});
    futures::join!(main, cleanup);
    Ok(())
}

fn selector_of(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

/// One endpoint of the Service, with the ports resolved for its pod.
#[derive(Debug, Clone)]
pub struct PodEndpoint {
    pub ip: String,
    pub node: Option<String>,
    pub hostname: Option<String>,
    pub target: ObjectReference,
    pub serving: bool,
    pub terminating: bool,
    pub ports: Vec<SlicePort>,
}

impl PodEndpoint {
    pub fn ready(&self) -> bool {
        self.serving && !self.terminating
    }
}

/// Resolves a Service port's target for one pod: a number, or the container port of that name.
pub fn target_port(sp: &ServicePort, pod: &Pod) -> Option<i32> {
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse() {
                return Some(n);
            }
            let proto = sp.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find_map(|p| {
                    (p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == proto)
                        .then_some(p.container_port)
                })
        }
    }
}

/// The endpoints a Service has among `pods`.
pub fn pod_endpoints(svc: &Service, pods: &[Pod]) -> Vec<PodEndpoint> {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses == Some(true);
    let mut out = Vec::new();
    for pod in pods {
        let Some(ip) = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.is_empty())
        else {
            continue;
        };
        if pod_terminal(pod) {
            continue;
        }
        let ports = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|sp| {
                Some(SlicePort {
                    name: Some(sp.name.clone().unwrap_or_default()),
                    port: Some(target_port(sp, pod)?),
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        let pod_spec = pod.spec.as_ref();
        let hostname = pod_spec.and_then(|s| s.hostname.clone()).filter(|_| {
            pod_spec.and_then(|s| s.subdomain.as_deref()) == Some(svc.name_any().as_str())
        });
        out.push(PodEndpoint {
            ip,
            node: pod_spec.and_then(|s| s.node_name.clone()),
            hostname,
            target: ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.namespace(),
                name: Some(pod.name_any()),
                uid: pod.uid(),
                ..Default::default()
            },
            serving: publish || pod_ready(pod),
            terminating: deleting(pod),
            ports,
        });
    }
    out.sort_by(|a, b| a.ip.cmp(&b.ip).then(a.target.name.cmp(&b.target.name)));
    out
}

/// Endpoints grouped by their resolved port list, in a stable order.
fn by_ports(eps: &[PodEndpoint]) -> Vec<(Vec<SlicePort>, Vec<&PodEndpoint>)> {
    let mut groups: Vec<(Vec<SlicePort>, Vec<&PodEndpoint>)> = Vec::new();
    for ep in eps {
        match groups.iter_mut().find(|(p, _)| *p == ep.ports) {
            Some((_, list)) => list.push(ep),
            None => groups.push((ep.ports.clone(), vec![ep])),
        }
    }
    groups
}

fn slice_endpoint(ep: &PodEndpoint) -> Endpoint {
    Endpoint {
        addresses: vec![ep.ip.clone()],
        conditions: Some(EndpointConditions {
            ready: Some(ep.ready()),
            serving: Some(ep.serving),
            terminating: Some(ep.terminating),
        }),
        hostname: ep.hostname.clone(),
        node_name: ep.node.clone(),
        target_ref: Some(ep.target.clone()),
        ..Default::default()
    }
}

/// The desired slices: (address type, ports, endpoints).
pub fn desired_slices(eps: &[PodEndpoint]) -> Vec<(String, Vec<SlicePort>, Vec<Endpoint>)> {
    let mut out = Vec::new();
    for family in ["IPv4", "IPv6"] {
        let mine: Vec<PodEndpoint> = eps
            .iter()
            .filter(|e| e.ip.contains(':') == (family == "IPv6"))
            .cloned()
            .collect();
        for (ports, group) in by_ports(&mine) {
            for chunk in group.chunks(MAX_PER_SLICE) {
                out.push((
                    family.to_string(),
                    ports.clone(),
                    chunk.iter().map(|e| slice_endpoint(e)).collect(),
                ));
            }
        }
    }
    if out.is_empty() {
        // Upstream keeps one empty placeholder slice per Service.
        out.push(("IPv4".to_string(), Vec::new(), Vec::new()));
    }
    out
}

/// The legacy Endpoints subsets: ready addresses and not-ready ones, per port group.
pub fn desired_subsets(eps: &[PodEndpoint]) -> Vec<EndpointSubset> {
    let address = |e: &PodEndpoint| EndpointAddress {
        ip: e.ip.clone(),
        hostname: e.hostname.clone(),
        node_name: e.node.clone(),
        target_ref: Some(e.target.clone()),
    };
    let live: Vec<PodEndpoint> = eps.iter().filter(|e| !e.terminating).cloned().collect();
    by_ports(&live)
        .into_iter()
        .filter(|(ports, _)| !ports.is_empty())
        .map(|(ports, group)| {
            let ready: Vec<EndpointAddress> = group
                .iter()
                .filter(|e| e.ready())
                .map(|e| address(e))
                .collect();
            let not_ready: Vec<EndpointAddress> = group
                .iter()
                .filter(|e| !e.ready())
                .map(|e| address(e))
                .collect();
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: Some(
                    ports
                        .iter()
                        .map(|p| EndpointPort {
                            name: p.name.clone().filter(|n| !n.is_empty()),
                            port: p.port.unwrap_or_default(),
                            protocol: p.protocol.clone(),
                            app_protocol: p.app_protocol.clone(),
                        })
                        .collect(),
                ),
            }
        })
        .collect()
}

#[tracing::instrument(skip_all, fields(service = %svc.name_any()))]
async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action> {
    let Some(selector) = selector_of(&svc) else {
        return Ok(Action::await_change());
    };
    if deleting(&*svc) {
        return Ok(Action::await_change());
    }
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let list = pods
        .list(&ListParams::default().labels(&map_selector_string(selector)))
        .await
        .ctx(|| format!("listing pods of service {ns}/{name}"))?;
    let eps = pod_endpoints(&svc, &list.items);
    if ctx.slices {
        sync_slices(&ctx.client, &svc, &eps).await?;
    }
    if ctx.endpoints {
        sync_endpoints(&ctx.client, &svc, &eps).await?;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn sync_slices(client: &kube::Client, svc: &Service, eps: &[PodEndpoint]) -> Result<()> {
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    let existing = api
        .list(&ListParams::default().labels(&format!(
            "{SERVICE_NAME_LABEL}={name},{MANAGED_BY_LABEL}={MANAGED_BY}"
        )))
        .await
        .ctx(|| format!("listing endpointslices of {ns}/{name}"))?;
    let mut existing: Vec<EndpointSlice> = existing
        .items
        .into_iter()
        .filter(|s| !deleting(s))
        .collect();
    let mut labels = labels_of(svc);
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    for (family, ports, endpoints) in desired_slices(eps) {
        let ports = (!ports.is_empty()).then_some(ports);
        // Reuse a slice of the same family and ports, else any slice left over, else create.
        let pos = existing
            .iter()
            .position(|s| s.address_type == family && s.ports == ports)
            .or_else(|| existing.iter().position(|s| s.address_type == family));
        match pos.map(|i| existing.remove(i)) {
            Some(mut slice) => {
                let endpoints = (!endpoints.is_empty()).then_some(endpoints);
                let same = slice.endpoints == endpoints
                    && slice.ports == ports
                    && slice.metadata.labels.as_ref() == Some(&labels);
                if !same {
                    slice.endpoints = endpoints;
                    slice.ports = ports;
                    slice.metadata.labels = Some(labels.clone());
                    let slice_name = slice.name_any();
                    api.replace(&slice_name, &PostParams::default(), &slice)
                        .await
                        .ctx(|| format!("updating endpointslice {ns}/{slice_name}"))?;
                }
            }
            None => {
                let slice = EndpointSlice {
                    metadata: ObjectMeta {
                        generate_name: Some(format!("{name}-")),
                        namespace: Some(ns.clone()),
                        labels: Some(labels.clone()),
                        owner_references: Some(vec![controller_ref(svc)]),
                        ..Default::default()
                    },
                    address_type: family,
                    endpoints: (!endpoints.is_empty()).then_some(endpoints),
                    ports,
                };
                api.create(&PostParams::default(), &slice)
                    .await
                    .ctx(|| format!("creating an endpointslice for {ns}/{name}"))?;
            }
        }
    }
    for stale in existing {
        let stale_name = stale.name_any();
        api.delete(&stale_name, &DeleteParams::default())
            .await
            .ctx(|| format!("deleting endpointslice {ns}/{stale_name}"))?;
    }
    Ok(())
}

async fn sync_endpoints(client: &kube::Client, svc: &Service, eps: &[PodEndpoint]) -> Result<()> {
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let api: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
    let subsets = desired_subsets(eps);
    let subsets = (!subsets.is_empty()).then_some(subsets);
    let labels = labels_of(svc);
    let labels = (!labels.is_empty()).then_some(labels);
    match api
        .get_opt(&name)
        .await
        .ctx(|| format!("reading endpoints {ns}/{name}"))?
    {
        Some(mut current) => {
            if current.subsets != subsets || current.metadata.labels != labels {
                current.subsets = subsets;
                current.metadata.labels = labels;
                api.replace(&name, &PostParams::default(), &current)
                    .await
                    .ctx(|| format!("updating endpoints {ns}/{name}"))?;
            }
        }
        None => {
            let ep = Endpoints {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    labels,
                    ..Default::default()
                },
                subsets,
            };
            api.create(&PostParams::default(), &ep)
                .await
                .ctx(|| format!("creating endpoints {ns}/{name}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ip: &str, ready: bool, port_name_value: i32) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d", "uid": format!("u-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": port_name_value}]}]},
            "status": {"podIP": ip, "phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }

    fn svc() -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "d", "uid": "s"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}]}
        }))
        .unwrap()
    }

    #[test]
    fn named_ports_resolve_per_pod_and_split_slices() {
        let pods = vec![
            pod("a", "10.0.0.1", true, 8080),
            pod("b", "10.0.0.2", false, 8080),
            pod("c", "10.0.0.3", true, 9090),
        ];
        let eps = pod_endpoints(&svc(), &pods);
        assert_eq!(eps.len(), 3);
        let slices = desired_slices(&eps);
        assert_eq!(slices.len(), 2);
        assert_eq!(slices[0].1[0].port, Some(8080));
        assert_eq!(slices[0].2.len(), 2);
        assert_eq!(
            slices[0].2[1].conditions.as_ref().unwrap().ready,
            Some(false)
        );
        let subsets = desired_subsets(&eps);
        assert_eq!(subsets[0].addresses.as_ref().unwrap().len(), 1);
        assert_eq!(
            subsets[0].not_ready_addresses.as_ref().unwrap()[0].ip,
            "10.0.0.2"
        );
    }

    #[test]
    fn pods_without_ip_or_finished_are_left_out() {
        let mut p = pod("a", "10.0.0.1", true, 8080);
        p.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let mut q = pod("b", "", true, 8080);
        q.status.as_mut().unwrap().pod_ip = None;
        assert!(pod_endpoints(&svc(), &[p, q]).is_empty());
        let slices = desired_slices(&[]);
        assert_eq!(slices.len(), 1, "one empty placeholder slice");
    }
}
