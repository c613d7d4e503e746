//! The cluster add-ons (DESIGN.md §11), applied server-side, so installing again changes only
//! what differs.
//!
//! - DNS, installed as kubeadm installs CoreDNS: by `ekube init`'s addons phase, or by `ekube
//!   server` when no `init` runs it. The objects match kubeadm's: ServiceAccount, ClusterRole
//!   and ClusterRoleBinding `system:coredns` (read Services, EndpointSlices, Endpoints, Pods
//!   and Namespaces, nothing else), Deployment `coredns` (two replicas of `ekube dns` from the
//!   add-on image, readiness on `/ready`, liveness on `/health`) and Service `kube-dns` at the
//!   cluster DNS address.
//! - Ingress, installed on request (`ekube addons enable ingress`, as minikube's `addons
//!   enable ingress`), since it takes ports 80 and 443 of every node: DaemonSet `ekube-ingress`
//!   running `ekube ingress` on each node's own network, its ServiceAccount and RBAC (read the
//!   routing objects and TLS Secrets, write Ingress status and events), and IngressClass
//!   `ekube`, the cluster's default.
//! - Dashboard, installed on request (`ekube addons enable dashboard`), as the Kubernetes
//!   Dashboard's manifest installs it: namespace, Service and Deployment `kubernetes-dashboard`
//!   running `ekube dashboard`. Its ServiceAccount has no rights and its token is not mounted:
//!   the dashboard acts with the token its viewer signs in with.
//! - Local storage, installed with DNS as k3s installs it: StorageClass `local-path` (the
//!   default, `WaitForFirstConsumer`, reclaim `Delete`) and Deployment
//!   `local-path-provisioner` running `ekube local-path-provisioner`, which makes each claim a
//!   directory on its pod's node through helper pods (see `ekube_controllers::localpath`).

use std::net::Ipv4Addr;

use anyhow::{Context, Result, ensure};
use futures::future::BoxFuture;
use ipnetwork::Ipv4Network;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};

/// The field manager of the add-ons' objects (kubeadm's).
const MANAGER: &str = "kubeadm";
const NAMESPACE: &str = "kube-system";
/// The label the DNS add-on's pods and Service share.
const DNS_LABEL: &str = "kube-dns";

/// The cluster DNS address kubeadm gives the kubelets: the 10th of the service range.
pub fn cluster_dns_ip(service_subnet: Ipv4Network) -> Result<Ipv4Addr> {
    let ip = Ipv4Addr::from(u32::from(service_subnet.network()) + 10);
    ensure!(
        service_subnet.contains(ip),
        "the service network {service_subnet} is too small for the cluster DNS address"
    );
    Ok(ip)
}

/// The DNS add-on's settings.
pub struct Dns {
    pub cluster_ip: Ipv4Addr,
    pub domain: String,
    pub replicas: i32,
}

impl Dns {
    pub fn new(service_subnet: Ipv4Network, domain: &str) -> Result<Self> {
        Ok(Self {
            cluster_ip: cluster_dns_ip(service_subnet)?,
            domain: domain.to_owned(),
            replicas: 2,
        })
    }

    /// The objects, in the order they are applied.
    pub fn objects(&self) -> Vec<Value> {
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "coredns", "namespace": NAMESPACE}});
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "system:coredns"},
        "rules": [
            {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        ]});
        let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": NAMESPACE}]});
        let probe = |path: &str, port: i32| json!({"httpGet": {"path": path, "port": port, "scheme": "HTTP"}});
        let mut liveness = probe("/health", 8080);
        liveness["initialDelaySeconds"] = json!(60);
        liveness["timeoutSeconds"] = json!(5);
        liveness["failureThreshold"] = json!(5);
        let mut readiness = probe("/ready", 8181);
        readiness["periodSeconds"] = json!(2);
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "coredns", "namespace": NAMESPACE, "labels": {"k8s-app": DNS_LABEL}},
        "spec": {
            "replicas": self.replicas,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "selector": {"matchLabels": {"k8s-app": DNS_LABEL}},
            "template": {
                "metadata": {"labels": {"k8s-app": DNS_LABEL}},
                "spec": {
                    "serviceAccountName": "coredns",
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    // One replica per node where it can: a node going down takes one.
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchExpressions": [{"key": "k8s-app", "operator": "In", "values": [DNS_LABEL]}]},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }]}},
                    "tolerations": [
                        {"key": "CriticalAddonsOnly", "operator": "Exists"},
                        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
                    ],
                    // Upstream resolvers are the node's, not the cluster's own.
                    "dnsPolicy": "Default",
                    "containers": [{
                        "name": "coredns",
                        "image": ekube_kubelet::runtime::addon_image::reference(),
                        "imagePullPolicy": "IfNotPresent",
                        "args": ["dns", "--cluster-domain", self.domain],
                        "resources": {
                            "limits": {"memory": "170Mi"},
                            "requests": {"cpu": "100m", "memory": "70Mi"},
                        },
                        "ports": [
                            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                            {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                            {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
                        ],
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                            "readOnlyRootFilesystem": true,
                        },
                        "livenessProbe": liveness,
                        "readinessProbe": readiness,
                    }],
                },
            },
        }});
        let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": NAMESPACE,
            "labels": {"k8s-app": DNS_LABEL, "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
            "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
        "spec": {
            "selector": {"k8s-app": DNS_LABEL},
            "clusterIP": self.cluster_ip.to_string(),
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
            ],
        }});
        vec![sa, role, binding, deployment, service]
    }

    /// Applies the objects.
    pub async fn install(&self, client: kube::Client) -> Result<()> {
        apply_all(client, self.objects()).await
    }

    /// Applies the objects, as a future that owns them (for a retrying installer).
    pub fn objects_installer(&self, client: kube::Client) -> BoxFuture<'static, Result<()>> {
        Box::pin(apply_all(client, self.objects()))
    }
}

/// The ingress add-on's settings.
pub struct Ingress {
    pub http_port: u16,
    pub https_port: u16,
}

/// The name of the ingress add-on's objects, and the label its pods carry.
const INGRESS: &str = "ekube-ingress";

impl Ingress {
    /// The objects, in the order they are applied.
    pub fn objects(&self) -> Vec<Value> {
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": INGRESS, "namespace": NAMESPACE}});
        let read = ["get", "list", "watch"];
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "system:ekube-ingress"},
        "rules": [
            {"apiGroups": [""], "resources": ["services", "secrets"], "verbs": read},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
            {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "ingressclasses"], "verbs": read},
            {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses/status"], "verbs": ["update", "patch"]},
            {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        ]});
        let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:ekube-ingress"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:ekube-ingress"},
            "subjects": [{"kind": "ServiceAccount", "name": INGRESS, "namespace": NAMESPACE}]});
        // Its own pods, in its own namespace: their node addresses are the Ingresses' status.
        let pods_role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": INGRESS, "namespace": NAMESPACE},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": read}]});
        let pods_binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": INGRESS, "namespace": NAMESPACE},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": INGRESS},
            "subjects": [{"kind": "ServiceAccount", "name": INGRESS, "namespace": NAMESPACE}]});
        let class = json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": "ekube",
                "labels": {"app.kubernetes.io/name": INGRESS},
                "annotations": {ekube_ingress::DEFAULT_CLASS: "true"}},
            "spec": {"controller": ekube_ingress::CONTROLLER}});
        let health = json!({"httpGet": {"path": "/healthz", "port": 10254, "scheme": "HTTP"},
            "periodSeconds": 2});
        let labels = json!({"app.kubernetes.io/name": INGRESS});
        let daemonset = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": INGRESS, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": INGRESS,
                    "hostNetwork": true,
                    "dnsPolicy": "ClusterFirstWithHostNet",
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    // Every node is an entry point, the control plane's too.
                    "tolerations": [
                        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
                    ],
                    "terminationGracePeriodSeconds": 10,
                    "containers": [{
                        "name": "controller",
                        "image": ekube_kubelet::runtime::addon_image::reference(),
                        "imagePullPolicy": "IfNotPresent",
                        "args": ["ingress",
                            "--http-port", self.http_port.to_string(),
                            "--https-port", self.https_port.to_string()],
                        "env": [{"name": "POD_NAMESPACE",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
                        "resources": {"requests": {"cpu": "100m", "memory": "90Mi"}},
                        "ports": [
                            {"name": "http", "containerPort": self.http_port, "hostPort": self.http_port, "protocol": "TCP"},
                            {"name": "https", "containerPort": self.https_port, "hostPort": self.https_port, "protocol": "TCP"},
                            {"name": "metrics", "containerPort": 10254, "hostPort": 10254, "protocol": "TCP"},
                        ],
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                            "readOnlyRootFilesystem": true,
                        },
                        "livenessProbe": health,
                        "readinessProbe": health,
                    }],
                },
            },
        }});
        vec![sa, role, binding, pods_role, pods_binding, class, daemonset]
    }

    /// Applies the objects.
    pub async fn install(&self, client: kube::Client) -> Result<()> {
        apply_all(client, self.objects()).await
    }
}

/// The dashboard add-on.
pub struct Dashboard;

/// The dashboard's namespace, and the name of its objects.
const DASHBOARD: &str = "kubernetes-dashboard";

/// Where `kubectl proxy` serves the dashboard (DESIGN.md §11).
pub const DASHBOARD_PATH: &str =
    "/api/v1/namespaces/kubernetes-dashboard/services/https:kubernetes-dashboard:/proxy/";

impl Dashboard {
    /// The objects, in the order they are applied.
    pub fn objects(&self) -> Vec<Value> {
        let labels = json!({"k8s-app": DASHBOARD});
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": DASHBOARD}});
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": DASHBOARD, "namespace": DASHBOARD, "labels": labels},
            "automountServiceAccountToken": false});
        let service = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": DASHBOARD, "namespace": DASHBOARD, "labels": labels},
            "spec": {"selector": labels,
                // Unnamed, as the Kubernetes Dashboard's: the proxy URL's empty port
                // (`https:kubernetes-dashboard:`) selects the unnamed port.
                "ports": [{"port": 443, "targetPort": 8443, "protocol": "TCP"}]}});
        let probe = json!({"httpGet": {"path": "/", "port": 8443, "scheme": "HTTPS"},
            "periodSeconds": 5});
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": DASHBOARD, "namespace": DASHBOARD, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": DASHBOARD,
                    "automountServiceAccountToken": false,
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "tolerations": [
                        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
                    ],
                    "containers": [{
                        "name": DASHBOARD,
                        "image": ekube_kubelet::runtime::addon_image::reference(),
                        "imagePullPolicy": "IfNotPresent",
                        "args": ["dashboard", "--port", "8443",
                            "--certificate-authority", "/etc/kubernetes-dashboard/ca.crt"],
                        "ports": [{"name": "https", "containerPort": 8443, "protocol": "TCP"}],
                        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}},
                        "volumeMounts": [{"name": "ca", "mountPath": "/etc/kubernetes-dashboard",
                            "readOnly": true}],
                        "securityContext": {
                            "runAsUser": 1001,
                            "runAsGroup": 2001,
                            "allowPrivilegeEscalation": false,
                            "capabilities": {"drop": ["ALL"]},
                            "readOnlyRootFilesystem": true,
                        },
                        "livenessProbe": probe,
                        "readinessProbe": probe,
                    }],
                    // The cluster CA alone, which the root CA publisher puts in every
                    // namespace: the dashboard verifies the apiserver, nothing more.
                    "volumes": [{"name": "ca", "configMap": {"name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}]}}],
                },
            },
        }});
        vec![namespace, sa, service, deployment]
    }

    /// Applies the objects.
    pub async fn install(&self, client: kube::Client) -> Result<()> {
        apply_all(client, self.objects()).await
    }
}

/// The local-path storage add-on's settings.
pub struct LocalPath {
    /// The directory on every node that holds the volumes.
    pub path: std::path::PathBuf,
}

/// The name of the local-path add-on's objects and the label its pod carries.
const LOCAL_PATH: &str = "local-path-provisioner";

impl LocalPath {
    /// Where volumes live unless `--default-local-storage-path` says otherwise.
    pub const DEFAULT_PATH: &str = "/var/lib/ekube/storage";

    /// The objects, in the order they are applied.
    pub fn objects(&self) -> Vec<Value> {
        let path = self.path.display().to_string();
        let image = ekube_kubelet::runtime::addon_image::reference();
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": LOCAL_PATH, "namespace": NAMESPACE}});
        // Claims and volumes cluster-wide; pods (the helpers) in its own namespace only.
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "local-path-provisioner-role"},
        "rules": [
            {"apiGroups": [""], "resources": ["nodes", "persistentvolumeclaims"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["get", "list", "watch", "create", "delete"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
            {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": ["get", "list", "watch"]},
        ]});
        let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "local-path-provisioner-bind"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "local-path-provisioner-role"},
            "subjects": [{"kind": "ServiceAccount", "name": LOCAL_PATH, "namespace": NAMESPACE}]});
        let helper_role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "local-path-provisioner-role", "namespace": NAMESPACE},
        "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "create", "delete"]},
        ]});
        let helper_binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "local-path-provisioner-bind", "namespace": NAMESPACE},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "local-path-provisioner-role"},
            "subjects": [{"kind": "ServiceAccount", "name": LOCAL_PATH, "namespace": NAMESPACE}]});
        let labels = json!({"app": LOCAL_PATH});
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": LOCAL_PATH, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": LOCAL_PATH,
                    "tolerations": [
                        {"key": "CriticalAddonsOnly", "operator": "Exists"},
                        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
                    ],
                    "containers": [{
                        "name": LOCAL_PATH,
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "args": ["local-path-provisioner", "--path", path, "--helper-image", image],
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "capabilities": {"drop": ["ALL"]},
                            "readOnlyRootFilesystem": true,
                        },
                    }],
                },
            },
        }});
        let class = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "local-path",
                "annotations": {ekube_api::storage::DEFAULT_CLASS: "true"}},
            "provisioner": ekube_controllers::localpath::PROVISIONER,
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Delete"});
        vec![
            sa,
            role,
            binding,
            helper_role,
            helper_binding,
            deployment,
            class,
        ]
    }

    /// Applies the objects.
    pub async fn install(&self, client: kube::Client) -> Result<()> {
        apply_all(client, self.objects()).await
    }

    /// Applies the objects, as a future that owns them (for a retrying installer).
    pub fn objects_installer(&self, client: kube::Client) -> BoxFuture<'static, Result<()>> {
        Box::pin(apply_all(client, self.objects()))
    }
}

/// Applies `objects` server-side, in order, as the add-ons' field manager.
async fn apply_all(client: kube::Client, objects: Vec<Value>) -> Result<()> {
    let params = PatchParams::apply(MANAGER).force();
    for obj in objects {
        let (api_version, kind) = (
            obj["apiVersion"].as_str().unwrap_or_default(),
            obj["kind"].as_str().unwrap_or_default(),
        );
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let api: kube::Api<DynamicObject> = match obj["metadata"]["namespace"].as_str() {
            Some(ns) => kube::Api::namespaced_with(client.clone(), ns, &resource),
            None => kube::Api::all_with(client.clone(), &resource),
        };
        api.patch(name, &params, &Patch::Apply(&obj))
            .await
            .with_context(|| format!("applying {kind} {name}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dns_address_is_the_tenth_of_the_service_range() {
        let dns = Dns::new("10.96.0.0/12".parse().unwrap(), "cluster.local").unwrap();
        assert_eq!(dns.cluster_ip, Ipv4Addr::new(10, 96, 0, 10));
        assert!(cluster_dns_ip("10.96.0.0/29".parse().unwrap()).is_err());
        let objects = dns.objects();
        let kinds: Vec<&str> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Deployment",
                "Service"
            ]
        );
        let service = &objects[4]["spec"];
        assert_eq!(service["clusterIP"], "10.96.0.10");
        assert_eq!(service["selector"]["k8s-app"], "kube-dns");
        let pod = &objects[3]["spec"]["template"]["spec"];
        assert_eq!(
            pod["containers"][0]["args"],
            json!(["dns", "--cluster-domain", "cluster.local"])
        );
        assert_eq!(pod["dnsPolicy"], "Default");
    }

    #[test]
    fn the_dashboard_has_no_identity_of_its_own() {
        let objects = Dashboard.objects();
        let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert_eq!(
            kinds,
            ["Namespace", "ServiceAccount", "Service", "Deployment"]
        );
        assert_eq!(objects[1]["automountServiceAccountToken"], false);
        let port = &objects[2]["spec"]["ports"][0];
        assert_eq!(
            (port["port"].as_u64(), port["targetPort"].as_u64()),
            (Some(443), Some(8443))
        );
        let pod = &objects[3]["spec"]["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], false);
        // The container's arguments are ones `ekube dashboard` takes.
        #[derive(clap::Parser)]
        struct Ekube {
            #[command(subcommand)]
            command: Sub,
        }
        #[derive(clap::Subcommand)]
        enum Sub {
            Dashboard(ekube_dashboard::Config),
        }
        let args: Vec<String> =
            serde_json::from_value(pod["containers"][0]["args"].clone()).unwrap();
        let parsed =
            <Ekube as clap::Parser>::try_parse_from(std::iter::once("ekube".into()).chain(args))
                .unwrap_or_else(|e| panic!("{e}"));
        let Sub::Dashboard(config) = parsed.command;
        assert_eq!(config.port, 8443);
        let mount = &pod["containers"][0]["volumeMounts"][0]["mountPath"];
        assert!(
            config
                .certificate_authority
                .starts_with(mount.as_str().unwrap())
        );
    }

    #[test]
    fn the_ingress_runs_on_every_node_on_the_ports_asked() {
        let objects = Ingress {
            http_port: 8080,
            https_port: 8443,
        }
        .objects();
        let class = &objects[5];
        assert_eq!(class["spec"]["controller"], "ekube.io/ingress");
        assert_eq!(
            class["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"],
            "true"
        );
        let pod = &objects[6]["spec"]["template"]["spec"];
        assert_eq!(pod["hostNetwork"], true);
        let container = &pod["containers"][0];
        assert_eq!(
            container["args"],
            json!(["ingress", "--http-port", "8080", "--https-port", "8443"])
        );
        assert_eq!(container["ports"][1]["hostPort"], 8443);
    }
}
