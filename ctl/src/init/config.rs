//! kubeadm's configuration documents, as `ekube init --config` and `ekube join --config` read
//! them and `ekube config print init-defaults|join-defaults` writes them: `InitConfiguration`,
//! `ClusterConfiguration` and `JoinConfiguration` of `kubeadm.k8s.io/v1beta4` (and `v1beta3`,
//! whose fields ekube reads are the same). Only the fields in [`HONOURED`] change what ekube does; any other field
//! present is named in a warning, never dropped silently.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

const GROUP: &str = "kubeadm.k8s.io";
const VERSIONS: &[&str] = &["v1beta4", "v1beta3"];

/// Dotted paths (per kind) of the fields ekube honours; everything under them counts.
const HONOURED: &[(&str, &str)] = &[
    ("InitConfiguration", "bootstrapTokens"),
    ("InitConfiguration", "localAPIEndpoint.advertiseAddress"),
    ("InitConfiguration", "localAPIEndpoint.bindPort"),
    ("InitConfiguration", "nodeRegistration.name"),
    ("InitConfiguration", "nodeRegistration.taints"),
    ("InitConfiguration", "nodeRegistration.kubeletExtraArgs"),
    (
        "InitConfiguration",
        "nodeRegistration.ignorePreflightErrors",
    ),
    ("ClusterConfiguration", "networking.podSubnet"),
    ("ClusterConfiguration", "networking.serviceSubnet"),
    ("ClusterConfiguration", "networking.dnsDomain"),
    ("ClusterConfiguration", "certificatesDir"),
    ("ClusterConfiguration", "apiServer.certSANs"),
    ("ClusterConfiguration", "apiServer.extraArgs"),
    ("ClusterConfiguration", "controllerManager.extraArgs"),
    ("ClusterConfiguration", "scheduler.extraArgs"),
    // An existing etcd cluster as the datastore (`--datastore-endpoint` and its TLS files).
    ("ClusterConfiguration", "etcd.external"),
    // Read and checked: ekube runs the version it is, and the name is only a label.
    ("ClusterConfiguration", "kubernetesVersion"),
    ("ClusterConfiguration", "clusterName"),
    (
        "JoinConfiguration",
        "discovery.bootstrapToken.apiServerEndpoint",
    ),
    ("JoinConfiguration", "discovery.bootstrapToken.token"),
    ("JoinConfiguration", "discovery.bootstrapToken.caCertHashes"),
    (
        "JoinConfiguration",
        "discovery.bootstrapToken.unsafeSkipCAVerification",
    ),
    ("JoinConfiguration", "discovery.tlsBootstrapToken"),
    ("JoinConfiguration", "nodeRegistration.name"),
    ("JoinConfiguration", "nodeRegistration.kubeletExtraArgs"),
    ("JoinConfiguration", "nodeRegistration.taints"),
    // A further control-plane host (`ekube join --control-plane`).
    (
        "JoinConfiguration",
        "controlPlane.localAPIEndpoint.advertiseAddress",
    ),
    (
        "JoinConfiguration",
        "controlPlane.localAPIEndpoint.bindPort",
    ),
    ("JoinConfiguration", "controlPlane.certificateKey"),
    ("JoinConfiguration", "timeouts.discovery"),
];

/// The documents `ekube init` reads.
pub const INIT_KINDS: &[&str] = &["InitConfiguration", "ClusterConfiguration"];
/// The documents `ekube join` reads.
pub const JOIN_KINDS: &[&str] = &["JoinConfiguration"];

/// What a configuration file says, each field `None` when the file leaves it out.
#[derive(Debug, Default, PartialEq)]
pub struct FileConfig {
    pub token: Option<String>,
    pub token_ttl: Option<Duration>,
    pub advertise_address: Option<IpAddr>,
    pub bind_port: Option<u16>,
    pub node_name: Option<String>,
    /// `Some(vec![])` for `taints: []` (none); `None` for absent or `null` (the default).
    pub taints: Option<Vec<Value>>,
    pub ignore_preflight_errors: Vec<String>,
    pub pod_subnet: Option<String>,
    pub service_subnet: Option<String>,
    pub dns_domain: Option<String>,
    pub cert_dir: Option<String>,
    pub cert_sans: Vec<String>,
    /// `extraArgs` of the control-plane components and `kubeletExtraArgs`, as
    /// `(name, value)` in the file's order.
    pub apiserver_args: Vec<(String, String)>,
    pub controller_manager_args: Vec<(String, String)>,
    pub scheduler_args: Vec<(String, String)>,
    pub kubelet_args: Vec<(String, String)>,
    pub api_server_endpoint: Option<String>,
    pub ca_cert_hashes: Vec<String>,
    pub unsafe_skip_ca_verification: bool,
    pub discovery_timeout: Option<Duration>,
    /// A `JoinConfiguration` with `controlPlane`: the host joins as a control plane.
    pub control_plane: bool,
    /// `controlPlane.certificateKey`.
    pub certificate_key: Option<String>,
    /// One line per field present but not honoured, or otherwise questionable.
    pub warnings: Vec<String>,
}

/// Reads the configuration file at `path` for a command that takes `kinds_read`, printing
/// its warnings. `given` names the command's flags the file replaces and whether each was
/// given: mixing them with `--config` is refused, as kubeadm refuses it.
pub fn read_file(path: &Path, kinds_read: &[&str], given: &[(&str, bool)]) -> Result<FileConfig> {
    let mixed: Vec<&str> = given
        .iter()
        .filter_map(|(name, given)| given.then_some(*name))
        .collect();
    ensure!(
        mixed.is_empty(),
        "can not mix '--config' with arguments {mixed:?}"
    );
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file = parse(&text, kinds_read).with_context(|| path.display().to_string())?;
    for w in &file.warnings {
        eprintln!("W: {}: {w}", path.display());
    }
    Ok(file)
}

/// Reads the YAML documents of a kubeadm configuration file, of the `kinds` the caller
/// takes ([`INIT_KINDS`], [`JOIN_KINDS`]).
pub fn parse(text: &str, kinds_read: &[&str]) -> Result<FileConfig> {
    let mut out = FileConfig::default();
    let mut kinds = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let doc: Value = serde::Deserialize::deserialize(doc)
            .with_context(|| format!("document {} is not YAML", i + 1))?;
        if doc.is_null() {
            continue;
        }
        let api_version = doc["apiVersion"].as_str().unwrap_or_default();
        let kind = doc["kind"].as_str().unwrap_or_default();
        let Some(version) = api_version.strip_prefix(&format!("{GROUP}/")) else {
            out.warnings.push(format!(
                "document {} ({api_version} {kind}) is not a kubeadm configuration; ignored",
                i + 1
            ));
            continue;
        };
        if !VERSIONS.contains(&version) {
            bail!(
                "{api_version} is not a supported kubeadm configuration version (use {})",
                VERSIONS
                    .iter()
                    .map(|v| format!("{GROUP}/{v}"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            );
        }
        match kind {
            _ if !kinds_read.contains(&kind) => {
                out.warnings.push(format!(
                    "kind {kind:?} is not read here (only {}); ignored",
                    kinds_read.join(", ")
                ));
                continue;
            }
            "InitConfiguration" => read_init(&doc, &mut out)?,
            "ClusterConfiguration" => read_cluster(&doc, &mut out)?,
            _ => read_join(&doc, &mut out)?,
        }
        kinds.push(kind.to_string());
        unhonoured(kind, "", &doc, &mut out.warnings);
    }
    if kinds.is_empty() {
        bail!("the file holds no {}", kinds_read.join(" or "));
    }
    Ok(out)
}

fn string(v: &Value, what: &str) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        other => bail!("{what} must be a string, not {other}"),
    }
}

/// An `extraArgs` field: v1beta4's list of `{name, value}`, or v1beta3's map.
fn extra_args(v: &Value, what: &str) -> Result<Vec<(String, String)>> {
    let pair = |name: &str, value: &Value| -> Result<(String, String)> {
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => bail!("{what}: the value of {name:?} must be a string, not {other}"),
        };
        ensure!(!name.is_empty(), "{what}: an argument without a name");
        Ok((name.trim_start_matches('-').to_string(), value))
    };
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(args) => args
            .iter()
            .map(|a| pair(a["name"].as_str().unwrap_or_default(), &a["value"]))
            .collect(),
        Value::Object(map) => map.iter().map(|(k, v)| pair(k, v)).collect(),
        other => bail!("{what} must be a list of {{name, value}}, not {other}"),
    }
}

/// The strings of a list field (none when absent).
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn read_init(doc: &Value, out: &mut FileConfig) -> Result<()> {
    if let Some(tokens) = doc["bootstrapTokens"].as_array() {
        if tokens.len() > 1 {
            out.warnings.push(format!(
                "bootstrapTokens: only the first of {} tokens is created",
                tokens.len()
            ));
        }
        if let Some(first) = tokens.first() {
            out.token = string(&first["token"], "bootstrapTokens[0].token")?;
            if let Some(ttl) = string(&first["ttl"], "bootstrapTokens[0].ttl")? {
                out.token_ttl = Some(
                    ekube_api::flags::parse_duration(&ttl)
                        .map_err(|e| anyhow::anyhow!("bootstrapTokens[0].ttl: {e}"))?,
                );
            }
            for (field, default) in [
                ("usages", "signing,authentication"),
                ("groups", "system:bootstrappers:kubeadm:default-node-token"),
            ] {
                let given = strings(&first[field]);
                if !given.is_empty() && given.join(",") != default {
                    out.warnings.push(format!(
                        "bootstrapTokens[0].{field}: ekube creates the token with {default}, not {}",
                        given.join(",")
                    ));
                }
            }
        }
    }
    read_local_endpoint(&doc["localAPIEndpoint"], "localAPIEndpoint", out)?;
    let reg = &doc["nodeRegistration"];
    out.node_name = string(&reg["name"], "nodeRegistration.name")?;
    out.taints = taints(&reg["taints"])?;
    out.ignore_preflight_errors = strings(&reg["ignorePreflightErrors"]);
    out.kubelet_args = extra_args(
        &reg["kubeletExtraArgs"],
        "nodeRegistration.kubeletExtraArgs",
    )?;
    Ok(())
}

/// `localAPIEndpoint` (of an `InitConfiguration`, or of a `JoinConfiguration`'s
/// `controlPlane`) at `path`.
fn read_local_endpoint(endpoint: &Value, path: &str, out: &mut FileConfig) -> Result<()> {
    let what = format!("{path}.advertiseAddress");
    if let Some(addr) = string(&endpoint["advertiseAddress"], &what)? {
        out.advertise_address = Some(addr.parse().with_context(|| format!("{what} {addr:?}"))?);
    }
    if !endpoint["bindPort"].is_null() {
        let port = endpoint["bindPort"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .with_context(|| format!("{path}.bindPort must be a port number"))?;
        out.bind_port = Some(port);
    }
    Ok(())
}

/// `nodeRegistration.taints`: `Some(vec![])` for `[]`, `None` when absent.
fn taints(v: &Value) -> Result<Option<Vec<Value>>> {
    match v {
        Value::Null => Ok(None),
        Value::Array(taints) => {
            for t in taints {
                if t["key"].as_str().is_none_or(str::is_empty) || t["effect"].as_str().is_none() {
                    bail!("nodeRegistration.taints: {t} needs a key and an effect");
                }
            }
            Ok(Some(taints.clone()))
        }
        other => bail!("nodeRegistration.taints must be a list, not {other}"),
    }
}

fn read_join(doc: &Value, out: &mut FileConfig) -> Result<()> {
    let discovery = &doc["discovery"]["bootstrapToken"];
    out.api_server_endpoint = string(
        &discovery["apiServerEndpoint"],
        "discovery.bootstrapToken.apiServerEndpoint",
    )?;
    out.token = string(&discovery["token"], "discovery.bootstrapToken.token")?;
    let tls = string(
        &doc["discovery"]["tlsBootstrapToken"],
        "discovery.tlsBootstrapToken",
    )?;
    match (&out.token, tls) {
        (Some(a), Some(b)) if *a != b => bail!(
            "discovery.tlsBootstrapToken differs from discovery.bootstrapToken.token: ekube \
             joins with one token"
        ),
        (None, tls) => out.token = tls,
        _ => {}
    }
    out.ca_cert_hashes = strings(&discovery["caCertHashes"]);
    out.unsafe_skip_ca_verification = match &discovery["unsafeSkipCAVerification"] {
        Value::Null => false,
        Value::Bool(b) => *b,
        other => bail!(
            "discovery.bootstrapToken.unsafeSkipCAVerification must be true or false, not {other}"
        ),
    };
    out.node_name = string(&doc["nodeRegistration"]["name"], "nodeRegistration.name")?;
    out.taints = taints(&doc["nodeRegistration"]["taints"])?;
    let control_plane = &doc["controlPlane"];
    if !control_plane.is_null() {
        out.control_plane = true;
        read_local_endpoint(
            &control_plane["localAPIEndpoint"],
            "controlPlane.localAPIEndpoint",
            out,
        )?;
        out.certificate_key = string(
            &control_plane["certificateKey"],
            "controlPlane.certificateKey",
        )?;
    }
    out.kubelet_args = extra_args(
        &doc["nodeRegistration"]["kubeletExtraArgs"],
        "nodeRegistration.kubeletExtraArgs",
    )?;
    if let Some(t) = string(&doc["timeouts"]["discovery"], "timeouts.discovery")? {
        out.discovery_timeout = Some(
            ekube_api::flags::parse_duration(&t)
                .map_err(|e| anyhow::anyhow!("timeouts.discovery: {e}"))?,
        );
    }
    Ok(())
}

fn read_cluster(doc: &Value, out: &mut FileConfig) -> Result<()> {
    let net = &doc["networking"];
    out.pod_subnet = string(&net["podSubnet"], "networking.podSubnet")?;
    out.service_subnet = string(&net["serviceSubnet"], "networking.serviceSubnet")?;
    out.dns_domain = string(&net["dnsDomain"], "networking.dnsDomain")?;
    out.cert_dir = string(&doc["certificatesDir"], "certificatesDir")?;
    out.cert_sans = strings(&doc["apiServer"]["certSANs"]);
    out.apiserver_args = extra_args(&doc["apiServer"]["extraArgs"], "apiServer.extraArgs")?;
    out.controller_manager_args = extra_args(
        &doc["controllerManager"]["extraArgs"],
        "controllerManager.extraArgs",
    )?;
    out.scheduler_args = extra_args(&doc["scheduler"]["extraArgs"], "scheduler.extraArgs")?;
    let external = &doc["etcd"]["external"];
    if !external.is_null() {
        let endpoints = strings(&external["endpoints"]);
        ensure!(
            !endpoints.is_empty(),
            "etcd.external.endpoints must list at least one URL"
        );
        out.apiserver_args
            .push(("datastore-endpoint".into(), endpoints.join(",")));
        for (field, flag) in [
            ("caFile", "datastore-cafile"),
            ("certFile", "datastore-certfile"),
            ("keyFile", "datastore-keyfile"),
        ] {
            if let Some(path) = string(&external[field], &format!("etcd.external.{field}"))? {
                out.apiserver_args.push((flag.into(), path));
            }
        }
    }
    if let Some(v) = string(&doc["kubernetesVersion"], "kubernetesVersion")?
        && v.trim_start_matches('v') != ekube_api::KUBE_VERSION.trim_start_matches('v')
    {
        out.warnings.push(format!(
            "kubernetesVersion {v}: ekube serves {} whatever the file says",
            ekube_api::KUBE_VERSION
        ));
    }
    Ok(())
}

/// Warns about every field of `doc` (of `kind`) that is neither honoured nor bookkeeping.
fn unhonoured(kind: &str, path: &str, doc: &Value, warnings: &mut Vec<String>) {
    let Some(map) = doc.as_object() else {
        return;
    };
    for (key, value) in map {
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if path.is_empty() && (key == "apiVersion" || key == "kind") {
            continue;
        }
        let honoured = HONOURED
            .iter()
            .any(|(k, p)| *k == kind && (here == *p || here.starts_with(&format!("{p}."))));
        if honoured {
            continue;
        }
        let leads_to_honoured = HONOURED
            .iter()
            .any(|(k, p)| *k == kind && p.starts_with(&format!("{here}.")));
        if leads_to_honoured && value.is_object() {
            unhonoured(kind, &here, value, warnings);
        } else if !value.is_null() {
            warnings.push(format!(
                "{kind}.{here}: ekube does not honour this field; ignored"
            ));
        }
    }
}

/// `ekube config print join-defaults`, as kubeadm prints it (discovery without a CA pin:
/// replace `unsafeSkipCAVerification` with `caCertHashes`).
pub fn join_defaults() -> String {
    format!(
        "apiVersion: {GROUP}/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: kube-apiserver:6443
    token: abcdef.0123456789abcdef
    unsafeSkipCAVerification: true
  tlsBootstrapToken: abcdef.0123456789abcdef
nodeRegistration:
  name: node
  taints: null
timeouts:
  discovery: 5m0s
"
    )
}

/// `ekube config print init-defaults`: the documents with every field ekube honours, at
/// kubeadm's placeholder values where kubeadm prints placeholders.
pub fn init_defaults() -> String {
    format!(
        "apiVersion: {GROUP}/v1beta4
kind: InitConfiguration
bootstrapTokens:
- groups:
  - system:bootstrappers:kubeadm:default-node-token
  token: abcdef.0123456789abcdef
  ttl: 24h0m0s
  usages:
  - signing
  - authentication
localAPIEndpoint:
  advertiseAddress: 1.2.3.4
  bindPort: 6443
nodeRegistration:
  name: node
  taints: null
---
apiVersion: {GROUP}/v1beta4
kind: ClusterConfiguration
apiServer: {{}}
certificatesDir: /etc/kubernetes/pki
clusterName: kubernetes
kubernetesVersion: {version}
networking:
  dnsDomain: cluster.local
  podSubnet: 10.244.0.0/16
  serviceSubnet: 10.96.0.0/12
",
        version = ekube_api::KUBE_VERSION
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_read_back_without_warnings() {
        let c = parse(&init_defaults(), INIT_KINDS).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.token.as_deref(), Some("abcdef.0123456789abcdef"));
        assert_eq!(c.token_ttl, Some(Duration::from_secs(24 * 3600)));
        assert_eq!(c.advertise_address, Some("1.2.3.4".parse().unwrap()));
        assert_eq!(c.bind_port, Some(6443));
        assert_eq!(c.node_name.as_deref(), Some("node"));
        assert_eq!(c.taints, None);
        assert_eq!(c.pod_subnet.as_deref(), Some("10.244.0.0/16"));
        assert_eq!(c.service_subnet.as_deref(), Some("10.96.0.0/12"));
        assert_eq!(c.dns_domain.as_deref(), Some("cluster.local"));
    }

    #[test]
    fn edits_are_read_and_unknown_fields_named() {
        let text = init_defaults()
            .replace(
                "taints: null",
                "taints: []\n  criSocket: unix:///run/containerd.sock",
            )
            .replace("podSubnet: 10.244.0.0/16", "podSubnet: 10.32.0.0/16")
            .replace(
                "clusterName: kubernetes",
                "clusterName: kubernetes\ncontrolPlaneEndpoint: lb:6443",
            )
            .replace("v1beta4", "v1beta3");
        let c = parse(&text, INIT_KINDS).unwrap();
        assert_eq!(c.taints, Some(vec![]));
        assert_eq!(c.pod_subnet.as_deref(), Some("10.32.0.0/16"));
        assert_eq!(
            c.warnings,
            [
                "InitConfiguration.nodeRegistration.criSocket: ekube does not honour this field; ignored",
                "ClusterConfiguration.controlPlaneEndpoint: ekube does not honour this field; ignored",
            ]
        );
    }

    #[test]
    fn an_external_etcd_becomes_the_datastore() {
        let text = init_defaults().replace(
            "clusterName: kubernetes",
            "clusterName: kubernetes\netcd:\n  external:\n    endpoints: [https://10.0.0.1:2379, https://10.0.0.2:2379]\n    caFile: /etc/etcd/ca.crt\n    certFile: /etc/etcd/client.crt\n    keyFile: /etc/etcd/client.key",
        );
        let c = parse(&text, INIT_KINDS).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(
            c.apiserver_args,
            [
                (
                    "datastore-endpoint".to_string(),
                    "https://10.0.0.1:2379,https://10.0.0.2:2379".to_string()
                ),
                ("datastore-cafile".into(), "/etc/etcd/ca.crt".into()),
                ("datastore-certfile".into(), "/etc/etcd/client.crt".into()),
                ("datastore-keyfile".into(), "/etc/etcd/client.key".into()),
            ]
        );
        let empty = init_defaults().replace(
            "clusterName: kubernetes",
            "clusterName: kubernetes\netcd:\n  external: {endpoints: []}",
        );
        assert!(parse(&empty, INIT_KINDS).is_err());
    }

    #[test]
    fn extra_args_are_read_as_lists_and_as_maps() {
        let v4 = init_defaults().replace(
            "apiServer: {}",
            "apiServer:\n  extraArgs:\n  - name: max-requests-inflight\n    value: \"100\"\ncontrollerManager:\n  extraArgs:\n  - {name: node-monitor-grace-period, value: 20s}\nscheduler:\n  extraArgs: []",
        );
        let c = parse(&v4, INIT_KINDS).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(
            c.apiserver_args,
            [("max-requests-inflight".to_string(), "100".to_string())]
        );
        assert_eq!(
            c.controller_manager_args,
            [("node-monitor-grace-period".to_string(), "20s".to_string())]
        );
        let v3 = join_defaults()
            .replace("v1beta4", "v1beta3")
            .replace("taints: null", "kubeletExtraArgs: {max-pods: 12}");
        let c = parse(&v3, JOIN_KINDS).unwrap();
        assert_eq!(c.kubelet_args, [("max-pods".to_string(), "12".to_string())]);
        let bad = init_defaults().replace("apiServer: {}", "apiServer: {extraArgs: 7}");
        assert!(
            parse(&bad, INIT_KINDS)
                .unwrap_err()
                .to_string()
                .contains("apiServer.extraArgs")
        );
    }

    #[test]
    fn join_configurations_read_back() {
        let c = parse(&join_defaults(), JOIN_KINDS).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(
            c.api_server_endpoint.as_deref(),
            Some("kube-apiserver:6443")
        );
        assert_eq!(c.token.as_deref(), Some("abcdef.0123456789abcdef"));
        assert!(c.unsafe_skip_ca_verification && c.ca_cert_hashes.is_empty());
        assert_eq!(c.discovery_timeout, Some(Duration::from_secs(300)));
        let pinned = join_defaults().replace(
            "unsafeSkipCAVerification: true",
            "caCertHashes: [sha256:00]",
        );
        assert_eq!(
            parse(&pinned, JOIN_KINDS).unwrap().ca_cert_hashes,
            ["sha256:00"]
        );
        let two = join_defaults().replace("tlsBootstrapToken: abcdef", "tlsBootstrapToken: zzzzzz");
        assert!(
            parse(&two, JOIN_KINDS)
                .unwrap_err()
                .to_string()
                .contains("one token")
        );
        // An init file given to join: named, and nothing to read.
        let err = parse(&init_defaults(), JOIN_KINDS).unwrap_err();
        assert!(err.to_string().contains("no JoinConfiguration"), "{err}");
    }

    #[test]
    fn control_plane_joins_read_back() {
        let text = format!(
            "{}controlPlane:\n  localAPIEndpoint:\n    advertiseAddress: 10.0.0.2\n    bindPort: 6444\n  certificateKey: {}\n",
            join_defaults().replace("taints: null", "taints: []"),
            "ab".repeat(32)
        );
        let c = parse(&text, JOIN_KINDS).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert!(c.control_plane);
        assert_eq!(c.advertise_address, Some("10.0.0.2".parse().unwrap()));
        assert_eq!(c.bind_port, Some(6444));
        assert_eq!(c.certificate_key, Some("ab".repeat(32)));
        assert_eq!(c.taints, Some(Vec::new()));
        let worker = parse(&join_defaults(), JOIN_KINDS).unwrap();
        assert!(!worker.control_plane && worker.taints.is_none());
        let bad = text.replace("bindPort: 6444", "bindPort: seventy");
        let err = parse(&bad, JOIN_KINDS).unwrap_err().to_string();
        assert!(
            err.contains("controlPlane.localAPIEndpoint.bindPort"),
            "{err}"
        );
    }

    #[test]
    fn bad_documents_are_refused_with_the_field() {
        let err = parse(
            "apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\n",
            INIT_KINDS,
        )
        .unwrap_err();
        assert!(err.to_string().contains("v1beta2"), "{err}");
        let err = parse("apiVersion: v1\nkind: ConfigMap\n", INIT_KINDS).unwrap_err();
        assert!(err.to_string().contains("no InitConfiguration"), "{err}");
        let bad_port = init_defaults().replace("bindPort: 6443", "bindPort: 99999");
        assert!(
            parse(&bad_port, INIT_KINDS)
                .unwrap_err()
                .to_string()
                .contains("bindPort")
        );
        let bad_taint = init_defaults().replace("taints: null", "taints: [{key: a}]");
        assert!(
            parse(&bad_taint, INIT_KINDS)
                .unwrap_err()
                .to_string()
                .contains("effect")
        );
    }
}
