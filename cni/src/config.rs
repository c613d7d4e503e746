//! Network configuration: parsing stdin, reading flannel's `subnet.env`, and
//! resolving both into the [`Network`] one invocation works on.
//!
//! Keys (all optional except `cniVersion`, `name`, `type`):
//! `bridge` (default `cni0`), `isGateway` (true), `ipMasq` (true unless `subnet.env` says
//! flannel masquerades, `FLANNEL_IPMASQ=true`, as flannel's own plugin reads it),
//! `hairpinMode` (true), `mtu`, `subnet` (the node's pod subnet, e.g. `10.244.1.0/24`),
//! `clusterCIDR`, `subnetFile` (default `/run/flannel/subnet.env` when it exists), `dataDir`
//! (default `/var/lib/cni/networks`), `dns`, and `ipam` with `type` (`ekube-cni` or empty for
//! the built-in allocator, anything else is exec'd from `CNI_PATH`), `subnet`, `rangeStart`,
//! `rangeEnd`, `dataDir`. [`render_conflist`] writes the conflist a node uses.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnetwork::Ipv4Network;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::types::{self, Dns};

/// The plugin's own type name; as `ipam.type` it selects the built-in allocator.
pub const PLUGIN_TYPE: &str = "ekube-cni";
/// Default bridge name (DESIGN §3).
pub const DEFAULT_BRIDGE: &str = "cni0";
/// Default flannel subnet file.
pub const DEFAULT_SUBNET_FILE: &str = "/run/flannel/subnet.env";
/// Default directory of the built-in allocator.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";
/// Default cluster (pod) CIDR (DESIGN §3).
pub const DEFAULT_CLUSTER_CIDR: &str = "10.244.0.0/16";
/// Default conflist location (DESIGN §3).
pub const DEFAULT_CONFLIST: &str = "/etc/cni/net.d/10-ekube.conflist";

/// The `ipam` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamConf {
    #[serde(rename = "type", default)]
    pub kind: String,
    pub subnet: Option<String>,
    pub range_start: Option<Ipv4Addr>,
    pub range_end: Option<Ipv4Addr>,
    pub data_dir: Option<PathBuf>,
}

/// One attachment named by GC's `cni.dev/valid-attachments`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The plugin configuration object as received on stdin.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub bridge: Option<String>,
    pub is_gateway: Option<bool>,
    pub ip_masq: Option<bool>,
    pub hairpin_mode: Option<bool>,
    pub mtu: Option<u32>,
    pub subnet: Option<String>,
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: Option<String>,
    pub subnet_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub dns: Dns,
    pub ipam: Option<IpamConf>,
    pub prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
    /// The whole object, kept to hand on to a delegated IPAM plugin.
    #[serde(skip)]
    pub raw: Value,
}

impl NetConf {
    /// Parses stdin: bad JSON is code 6, a wrong version code 1, bad fields code 7.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let raw: Value = serde_json::from_slice(bytes).map_err(|e| Error::Decode {
            what: "network config on stdin".into(),
            reason: e.to_string(),
        })?;
        let Some(obj) = raw.as_object() else {
            return Err(Error::Decode {
                what: "network config on stdin".into(),
                reason: "not a JSON object".into(),
            });
        };
        match obj.get("cniVersion") {
            Some(Value::String(v)) => types::check_version(v)?,
            Some(_) => return Err(Error::InvalidConfig("cniVersion must be a string".into())),
            None => return Err(Error::InvalidConfig("cniVersion is required".into())),
        }
        let mut conf: NetConf =
            serde_json::from_value(raw.clone()).map_err(|e| Error::InvalidConfig(e.to_string()))?;
        if conf.name.is_empty() {
            return Err(Error::InvalidConfig("name must not be empty".into()));
        }
        if conf.name.contains('/') || conf.name.starts_with('.') {
            return Err(Error::InvalidConfig(format!(
                "name {:?} is not a valid network name",
                conf.name
            )));
        }
        conf.raw = raw;
        Ok(conf)
    }

    /// The cniVersion to answer with (the one asked for).
    pub fn version(&self) -> &str {
        &self.cni_version
    }
}

/// Best-effort read of `cniVersion` from stdin, for error objects.
pub fn sniff_version(bytes: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let s = v.get("cniVersion")?.as_str()?;
    types::SUPPORTED_VERSIONS
        .contains(&s)
        .then(|| s.to_string())
}

/// The contents of flannel's `subnet.env`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubnetEnv {
    pub network: Option<Ipv4Network>,
    pub subnet: Option<Ipv4Network>,
    pub mtu: Option<u32>,
    pub ipmasq: Option<bool>,
}

impl SubnetEnv {
    /// Parses `KEY=VALUE` lines; unknown keys are ignored.
    pub fn parse(text: &str) -> Result<Self> {
        let mut m = HashMap::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            if let Some((k, v)) = line.split_once('=') {
                m.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
            }
        }
        let net = |k: &str| -> Result<Option<Ipv4Network>> {
            m.get(k)
                .map(|v| {
                    v.parse()
                        .map_err(|e| Error::InvalidConfig(format!("subnet file {k}={v}: {e}")))
                })
                .transpose()
        };
        Ok(SubnetEnv {
            network: net("FLANNEL_NETWORK")?,
            subnet: net("FLANNEL_SUBNET")?,
            mtu: m
                .get("FLANNEL_MTU")
                .map(|v| {
                    v.parse().map_err(|e| {
                        Error::InvalidConfig(format!("subnet file FLANNEL_MTU={v}: {e}"))
                    })
                })
                .transpose()?,
            ipmasq: m.get("FLANNEL_IPMASQ").map(|v| v == "true"),
        })
    }

    /// Reads the file at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading subnet file {}", path.display()), e))?;
        Self::parse(&text)
    }
}

/// How addresses are obtained.
#[derive(Debug, Clone, PartialEq)]
pub enum IpamMode {
    /// The built-in host-local style allocator storing under `dir`.
    Builtin {
        dir: PathBuf,
        range_start: Ipv4Addr,
        range_end: Ipv4Addr,
    },
    /// Another IPAM plugin exec'd from `CNI_PATH` with `conf` on stdin.
    Delegate { plugin: String, conf: Value },
}

/// Everything one invocation needs to know about the network, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub name: String,
    pub bridge: String,
    /// The node's pod subnet, normalised to its network address.
    pub subnet: Ipv4Network,
    /// The bridge address and the pods' default gateway (`.1`).
    pub gateway: Ipv4Addr,
    pub cluster_cidr: Ipv4Network,
    pub mtu: Option<u32>,
    pub is_gateway: bool,
    pub ip_masq: bool,
    pub hairpin: bool,
    /// Directory for this network's lock files and built-in allocations.
    pub state_dir: PathBuf,
    pub ipam: IpamMode,
}

fn parse_v4_net(s: &str, field: &str) -> Result<Ipv4Network> {
    if s.contains(':') {
        return Err(Error::UnsupportedField {
            field: field.to_string(),
            reason: format!("{s} is IPv6; only IPv4 is supported"),
        });
    }
    let n: Ipv4Network = s
        .parse()
        .map_err(|e| Error::InvalidConfig(format!("{field} {s:?}: {e}")))?;
    Ipv4Network::new(n.network(), n.prefix())
        .map_err(|e| Error::InvalidConfig(format!("{field}: {e}")))
}

impl Network {
    /// Resolves `conf` (plus `subnet.env` where needed) into a [`Network`].
    pub fn resolve(conf: &NetConf) -> Result<Self> {
        let subnet_env = match &conf.subnet_file {
            Some(p) if p.exists() => Some(SubnetEnv::read(p)?),
            Some(_) => None,
            None if Path::new(DEFAULT_SUBNET_FILE).exists() => {
                Some(SubnetEnv::read(Path::new(DEFAULT_SUBNET_FILE))?)
            }
            None => None,
        };
        let env = subnet_env.unwrap_or_default();
        let ipam = conf.ipam.clone().unwrap_or_default();
        let subnet = if let Some(s) = &ipam.subnet {
            parse_v4_net(s, "ipam.subnet")?
        } else if let Some(s) = &conf.subnet {
            parse_v4_net(s, "subnet")?
        } else if let Some(s) = env.subnet {
            Ipv4Network::new(s.network(), s.prefix()).expect("prefix already valid")
        } else {
            return Err(Error::InvalidConfig(format!(
                "no pod subnet: set \"subnet\" or \"ipam.subnet\", or provide FLANNEL_SUBNET in {}",
                conf.subnet_file
                    .as_deref()
                    .unwrap_or(Path::new(DEFAULT_SUBNET_FILE))
                    .display()
            )));
        };
        if subnet.prefix() > 30 {
            return Err(Error::InvalidConfig(format!(
                "subnet {subnet} is too small (at most /30)"
            )));
        }
        let base = u32::from(subnet.network());
        let broadcast = u32::from(subnet.broadcast());
        let gateway = Ipv4Addr::from(base + 1);
        let cluster_cidr = match (&conf.cluster_cidr, env.network) {
            (Some(c), _) => parse_v4_net(c, "clusterCIDR")?,
            (None, Some(n)) => n,
            (None, None) => {
                let d: Ipv4Network = DEFAULT_CLUSTER_CIDR.parse().expect("valid default");
                if d.contains(subnet.network()) {
                    d
                } else {
                    subnet
                }
            }
        };
        let data_dir = conf
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let state_dir = data_dir.join(&conf.name);
        let ipam_mode = if ipam.kind.is_empty() || ipam.kind == PLUGIN_TYPE {
            let in_subnet = |a: Ipv4Addr, field: &str| {
                let v = u32::from(a);
                if v <= base + 1 || v >= broadcast {
                    Err(Error::InvalidConfig(format!(
                        "ipam.{field} {a} is not a usable address of {subnet} (gateway is {gateway})"
                    )))
                } else {
                    Ok(a)
                }
            };
            let range_start = ipam
                .range_start
                .map(|a| in_subnet(a, "rangeStart"))
                .transpose()?;
            let range_end = ipam
                .range_end
                .map(|a| in_subnet(a, "rangeEnd"))
                .transpose()?;
            IpamMode::Builtin {
                dir: ipam
                    .data_dir
                    .clone()
                    .map(|d| d.join(&conf.name))
                    .unwrap_or_else(|| state_dir.clone()),
                range_start: range_start.unwrap_or(Ipv4Addr::from(base + 2)),
                range_end: range_end.unwrap_or(Ipv4Addr::from(broadcast - 1)),
            }
        } else {
            if ipam.kind.contains('/') {
                return Err(Error::InvalidConfig(format!(
                    "ipam.type {:?} must be a plain name",
                    ipam.kind
                )));
            }
            // Like flannel's CNI plugin: hand the delegate the node subnet when the
            // config did not name one, so subnet.env alone is enough.
            let mut delegated = conf.raw.clone();
            if let Some(obj) = delegated.get_mut("ipam").and_then(Value::as_object_mut)
                && !obj.contains_key("subnet")
                && !obj.contains_key("ranges")
            {
                obj.insert("subnet".into(), json!(subnet.to_string()));
            }
            if let Some(obj) = delegated.as_object_mut() {
                obj.remove("prevResult");
            }
            IpamMode::Delegate {
                plugin: ipam.kind.clone(),
                conf: delegated,
            }
        };
        Ok(Network {
            name: conf.name.clone(),
            bridge: conf
                .bridge
                .clone()
                .unwrap_or_else(|| DEFAULT_BRIDGE.to_string()),
            subnet,
            gateway,
            cluster_cidr,
            mtu: conf.mtu.or(env.mtu),
            is_gateway: conf.is_gateway.unwrap_or(true),
            // The daemon that wrote subnet.env masquerades the whole cluster CIDR itself; rules
            // of the plugin's own would do it twice, and checking them costs every ADD.
            ip_masq: conf.ip_masq.unwrap_or(env.ipmasq != Some(true)),
            hairpin: conf.hairpin_mode.unwrap_or(true),
            state_dir,
            ipam: ipam_mode,
        })
    }
}

/// What a node's conflist says; [`Default`] is the DESIGN §3 setup reading subnet.env.
#[derive(Debug, Clone)]
pub struct NodeConflist {
    pub cni_version: String,
    pub name: String,
    pub bridge: String,
    /// The node's pod subnet; `None` reads FLANNEL_SUBNET from `subnet_file`.
    pub subnet: Option<Ipv4Network>,
    /// The cluster CIDR; `None` reads FLANNEL_NETWORK from `subnet_file`.
    pub cluster_cidr: Option<Ipv4Network>,
    pub mtu: Option<u32>,
    pub subnet_file: PathBuf,
    pub data_dir: PathBuf,
}

impl Default for NodeConflist {
    fn default() -> Self {
        NodeConflist {
            cni_version: "1.0.0".into(),
            name: "ekube".into(),
            bridge: DEFAULT_BRIDGE.into(),
            subnet: None,
            cluster_cidr: None,
            mtu: None,
            subnet_file: DEFAULT_SUBNET_FILE.into(),
            data_dir: DEFAULT_DATA_DIR.into(),
        }
    }
}

/// Renders the conflist (pretty JSON) that a kubelet writes to
/// `<cni conf dir>/10-ekube.conflist` for one node.
pub fn render_conflist(node: &NodeConflist) -> String {
    let mut plugin = json!({
        "type": PLUGIN_TYPE,
        "bridge": node.bridge,
        "isGateway": true,
        "hairpinMode": true,
        "subnetFile": node.subnet_file,
        "dataDir": node.data_dir,
        "ipam": { "type": PLUGIN_TYPE },
    });
    let obj = plugin.as_object_mut().expect("object literal");
    if let Some(s) = node.subnet {
        obj.insert("subnet".into(), json!(s.to_string()));
    }
    if let Some(c) = node.cluster_cidr {
        obj.insert("clusterCIDR".into(), json!(c.to_string()));
    }
    if let Some(m) = node.mtu {
        obj.insert("mtu".into(), json!(m));
    }
    let list = json!({
        "cniVersion": node.cni_version,
        "name": node.name,
        "plugins": [plugin],
    });
    serde_json::to_string_pretty(&list).expect("serialisable")
}

/// File name of the conflist inside the CNI config directory.
pub const CONFLIST_FILE: &str = "10-ekube.conflist";

/// Writes [`render_conflist`] to `<conf_dir>/10-ekube.conflist` atomically (temp file
/// + rename, so a runtime never reads half a file); returns the path written.
pub fn write_conflist(conf_dir: &Path, node: &NodeConflist) -> Result<PathBuf> {
    std::fs::create_dir_all(conf_dir)
        .map_err(|e| Error::io(format!("creating {}", conf_dir.display()), e))?;
    let path = conf_dir.join(CONFLIST_FILE);
    let tmp = conf_dir.join(format!(".{CONFLIST_FILE}.tmp"));
    std::fs::write(&tmp, render_conflist(node))
        .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, &path)
        .map_err(|e| Error::io(format!("renaming to {}", path.display()), e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(extra: Value) -> NetConf {
        let mut base = json!({"cniVersion":"1.0.0","name":"t","type":"ekube-cni",
            "subnetFile":"/nonexistent/subnet.env"});
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        NetConf::parse(base.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn parse_errors_have_spec_codes() {
        assert_eq!(NetConf::parse(b"{not json").unwrap_err().code(), 6);
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"7.0.0","name":"a","type":"b"}"#)
                .unwrap_err()
                .code(),
            1
        );
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"1.0.0","type":"b"}"#)
                .unwrap_err()
                .code(),
            7
        );
    }

    #[test]
    fn resolves_subnet_and_gateway() {
        let n = Network::resolve(&conf(json!({"subnet":"10.244.3.7/24","mtu":1450}))).unwrap();
        assert_eq!(n.subnet.to_string(), "10.244.3.0/24");
        assert_eq!(n.gateway, Ipv4Addr::new(10, 244, 3, 1));
        assert_eq!(n.cluster_cidr.to_string(), "10.244.0.0/16");
        assert_eq!(n.mtu, Some(1450));
        assert_eq!(n.bridge, "cni0");
        match n.ipam {
            IpamMode::Builtin {
                range_start,
                range_end,
                ..
            } => {
                assert_eq!(range_start, Ipv4Addr::new(10, 244, 3, 2));
                assert_eq!(range_end, Ipv4Addr::new(10, 244, 3, 254));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_subnet_env() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("subnet.env");
        std::fs::write(&p, "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.9.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n").unwrap();
        let mut c = conf(json!({}));
        c.subnet_file = Some(p);
        let n = Network::resolve(&c).unwrap();
        assert_eq!(n.subnet.to_string(), "10.244.9.0/24");
        assert_eq!(n.mtu, Some(1450));
        assert_eq!(n.cluster_cidr.to_string(), "10.244.0.0/16");
        assert!(!n.ip_masq, "flannel masquerades, so the plugin does not");
    }

    #[test]
    fn the_plugin_masquerades_unless_flannel_does() {
        let dir = tempfile::tempdir().unwrap();
        let resolved = |flannel: Option<&str>, conf_says: Value| {
            let p = dir.path().join("subnet.env");
            let masq = flannel
                .map(|m| format!("FLANNEL_IPMASQ={m}\n"))
                .unwrap_or_default();
            std::fs::write(&p, format!("FLANNEL_SUBNET=10.244.9.1/24\n{masq}")).unwrap();
            let mut c = conf(conf_says);
            c.subnet_file = Some(p);
            Network::resolve(&c).unwrap().ip_masq
        };
        assert!(!resolved(Some("true"), json!({})));
        assert!(resolved(Some("false"), json!({})));
        assert!(resolved(None, json!({})));
        assert!(resolved(Some("true"), json!({"ipMasq": true})));
        assert!(!resolved(Some("false"), json!({"ipMasq": false})));
        let without_flannel = Network::resolve(&conf(json!({"subnet": "10.244.3.0/24"})));
        assert!(without_flannel.unwrap().ip_masq);
    }

    #[test]
    fn missing_subnet_and_ipv6_are_rejected() {
        assert_eq!(Network::resolve(&conf(json!({}))).unwrap_err().code(), 7);
        assert_eq!(
            Network::resolve(&conf(json!({"subnet":"fd00::/64"})))
                .unwrap_err()
                .code(),
            2
        );
        assert_eq!(
            Network::resolve(&conf(json!({"subnet":"10.0.0.0/31"})))
                .unwrap_err()
                .code(),
            7
        );
    }

    #[test]
    fn delegate_gets_subnet_injected() {
        let n = Network::resolve(&conf(
            json!({"subnet":"10.1.2.0/24","ipam":{"type":"host-local"}}),
        ))
        .unwrap();
        match n.ipam {
            IpamMode::Delegate { plugin, conf } => {
                assert_eq!(plugin, "host-local");
                assert_eq!(conf["ipam"]["subnet"], "10.1.2.0/24");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn conflist_is_written_atomically() {
        let d = tempfile::tempdir().unwrap();
        let p = write_conflist(&d.path().join("net.d"), &NodeConflist::default()).unwrap();
        assert!(p.ends_with("10-ekube.conflist"));
        let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        assert_eq!(v["plugins"][0]["subnetFile"], DEFAULT_SUBNET_FILE);
    }

    #[test]
    fn conflist_renders_and_parses_back() {
        let text = render_conflist(&NodeConflist {
            subnet: Some("10.244.1.0/24".parse().unwrap()),
            ..Default::default()
        });
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["name"], "ekube");
        // Masquerading follows subnet.env: the plugin's own when flannel does not.
        assert_eq!(v["plugins"][0].get("ipMasq"), None);
        let mut plugin = v["plugins"][0].clone();
        plugin["cniVersion"] = v["cniVersion"].clone();
        plugin["name"] = v["name"].clone();
        let c = NetConf::parse(plugin.to_string().as_bytes()).unwrap();
        assert_eq!(c.kind, "ekube-cni");
        assert_eq!(c.subnet.as_deref(), Some("10.244.1.0/24"));
    }
}
