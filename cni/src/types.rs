//! The CNI result object and version handling.
//!
//! One in-memory [`CniResult`] is rendered for whatever `cniVersion` the runtime
//! asked for: 0.3.x/0.4.0 results carry `"version": "4"` on each IP, 1.x do not, and
//! only 1.1.0 results carry the interface `mtu`. The same types parse a `prevResult`
//! and the answer of a delegated IPAM plugin.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Versions this plugin speaks, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The newest version, used when the input named none we could read.
pub const LATEST_VERSION: &str = "1.1.0";

/// Checks that `v` is one of [`SUPPORTED_VERSIONS`].
pub fn check_version(v: &str) -> Result<()> {
    if SUPPORTED_VERSIONS.contains(&v) {
        Ok(())
    } else {
        Err(Error::IncompatibleVersion {
            requested: v.to_string(),
            supported: SUPPORTED_VERSIONS.join(", "),
        })
    }
}

/// `(major, minor, patch)` of a version string; unparsable parts count as 0.
pub fn version_tuple(v: &str) -> (u32, u32, u32) {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

/// The VERSION answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VersionInfo {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(rename = "supportedVersions")]
    pub supported_versions: Vec<String>,
}

impl VersionInfo {
    /// The answer for a request naming `requested` (falls back to the latest).
    pub fn new(requested: Option<&str>) -> Self {
        let v = requested
            .filter(|v| SUPPORTED_VERSIONS.contains(v))
            .unwrap_or(LATEST_VERSION);
        VersionInfo {
            cni_version: v.to_string(),
            supported_versions: SUPPORTED_VERSIONS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// One interface of a result.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Netns path for interfaces inside the container, absent for host ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// One IP configuration of a result.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct IpConfig {
    /// Only in 0.3.x/0.4.0 results ("4" or "6").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// CIDR notation: address/prefix.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// One route of a result.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// DNS settings of a result (and of the network config).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// The success result of ADD (and the `prevResult` of CHECK/DEL).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CniResult {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Dns,
}

impl CniResult {
    /// Parses a result object (prevResult or a delegate's stdout).
    pub fn from_value(v: &serde_json::Value, what: &str) -> Result<Self> {
        serde_json::from_value(v.clone()).map_err(|e| Error::Decode {
            what: what.to_string(),
            reason: e.to_string(),
        })
    }

    /// Rewrites the result into the shape of `version`.
    pub fn for_version(mut self, version: &str) -> Self {
        let pre_1 = version_tuple(version).0 == 0;
        let has_mtu = version_tuple(version) >= (1, 1, 0);
        self.cni_version = version.to_string();
        for ip in &mut self.ips {
            ip.version = if pre_1 {
                Some(if ip.address.contains(':') { "6" } else { "4" }.to_string())
            } else {
                None
            };
        }
        if !has_mtu {
            for i in &mut self.interfaces {
                i.mtu = None;
            }
        }
        self
    }

    /// The first IPv4 address as (address, prefix length).
    pub fn first_ipv4(&self) -> Option<(Ipv4Addr, u8, Option<Ipv4Addr>)> {
        self.ips.iter().find_map(|ip| {
            let (a, p) = ip.address.split_once('/')?;
            let gw = ip.gateway.as_deref().and_then(|g| g.parse().ok());
            Some((a.parse().ok()?, p.parse().ok()?, gw))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_shapes() {
        let r = CniResult {
            ips: vec![IpConfig {
                address: "10.0.0.2/24".into(),
                ..Default::default()
            }],
            interfaces: vec![Interface {
                name: "eth0".into(),
                mtu: Some(1450),
                ..Default::default()
            }],
            ..Default::default()
        };
        let old = serde_json::to_value(r.clone().for_version("0.4.0")).unwrap();
        assert_eq!(old["ips"][0]["version"], "4");
        assert!(old["interfaces"][0].get("mtu").is_none());
        let new = serde_json::to_value(r.clone().for_version("1.0.0")).unwrap();
        assert!(new["ips"][0].get("version").is_none());
        let newest = serde_json::to_value(r.for_version("1.1.0")).unwrap();
        assert_eq!(newest["interfaces"][0]["mtu"], 1450);
    }

    #[test]
    fn versions() {
        assert!(check_version("1.0.0").is_ok());
        assert_eq!(check_version("9.9.9").unwrap_err().code(), 1);
        assert!(version_tuple("0.4.0") < version_tuple("1.0.0"));
        assert_eq!(VersionInfo::new(Some("42")).cni_version, LATEST_VERSION);
    }
}
