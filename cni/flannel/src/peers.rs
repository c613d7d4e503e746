//! What the Node objects say about the overlay: the flannel annotations a node publishes, the
//! peers read back from other nodes, the kernel entries each peer needs, and `subnet.env`.
//!
//! Everything here is pure, so the translation from API objects to kernel state is tested
//! without a cluster or a kernel.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnetwork::Ipv4Network;
use k8s_openapi::api::core::v1::Node;

use super::reconcile::{Entries, Entry};

/// `flannel.alpha.coreos.com/backend-type`.
pub const BACKEND_TYPE: &str = "flannel.alpha.coreos.com/backend-type";
/// `flannel.alpha.coreos.com/backend-data`: `{"VNI":1,"VtepMAC":"…"}`.
pub const BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";
/// `flannel.alpha.coreos.com/public-ip`: the node's underlay address.
pub const PUBLIC_IP: &str = "flannel.alpha.coreos.com/public-ip";
/// `flannel.alpha.coreos.com/kube-subnet-manager`: the subnet comes from `spec.podCIDR`.
pub const KUBE_SUBNET_MANAGER: &str = "flannel.alpha.coreos.com/kube-subnet-manager";

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The VTEP address of a node: locally administered unicast `0e:6b` followed by the VTEP's
    /// IPv4 address, so a recreated device keeps the MAC its peers already know.
    pub fn for_vtep(ip: Ipv4Addr) -> Self {
        let o = ip.octets();
        Mac([0x0e, 0x6b, o[0], o[1], o[2], o[3]])
    }

    /// From netlink bytes; `None` unless exactly six.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 6]>::try_from(b).ok().map(Mac)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for Mac {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(format!("{s:?} is not a MAC address"));
        }
        let mut out = [0u8; 6];
        for (o, p) in out.iter_mut().zip(parts) {
            *o = u8::from_str_radix(p, 16).map_err(|_| format!("{s:?} is not a MAC address"))?;
        }
        Ok(Mac(out))
    }
}

/// The `backend-data` annotation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackendData {
    #[serde(rename = "VNI")]
    pub vni: u32,
    #[serde(rename = "VtepMAC")]
    pub vtep_mac: String,
}

/// The subnet's `.0`: the VTEP address on `flannel.1` and the peers' next hop.
pub fn vtep_ip(subnet: Ipv4Network) -> Ipv4Addr {
    subnet.network()
}

/// The annotations a node publishes about itself.
pub fn own_annotations(vni: u32, mac: Mac, public_ip: Ipv4Addr) -> BTreeMap<String, String> {
    let data = BackendData {
        vni,
        vtep_mac: mac.to_string(),
    };
    BTreeMap::from([
        (BACKEND_TYPE.to_owned(), "vxlan".to_owned()),
        (
            BACKEND_DATA.to_owned(),
            serde_json::to_string(&data).expect("serialisable"),
        ),
        (PUBLIC_IP.to_owned(), public_ip.to_string()),
        (KUBE_SUBNET_MANAGER.to_owned(), "true".to_owned()),
    ])
}

/// Whether `node` already carries every annotation of `want` with the same value.
pub fn has_annotations(node: &Node, want: &BTreeMap<String, String>) -> bool {
    let have = node.metadata.annotations.as_ref();
    want.iter()
        .all(|(k, v)| have.and_then(|a| a.get(k)) == Some(v))
}

/// The node's pod subnet, normalised to its network address.
pub fn pod_cidr(node: &Node) -> Option<Ipv4Network> {
    let spec = node.spec.as_ref()?;
    let s = spec.pod_cidr.as_deref().or_else(|| {
        spec.pod_cidrs
            .as_ref()?
            .iter()
            .map(String::as_str)
            .find(|c| !c.contains(':'))
    })?;
    let n: Ipv4Network = s.parse().ok()?;
    Ipv4Network::new(n.network(), n.prefix()).ok()
}

/// Another node as the overlay sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub subnet: Ipv4Network,
    pub vtep_mac: Mac,
    pub public_ip: Ipv4Addr,
}

impl Peer {
    /// Reads a peer from a Node; `Err` says why it is not (yet) one: no podCIDR, another
    /// backend, missing or malformed annotations, a different VNI.
    pub fn from_node(node: &Node, vni: u32) -> Result<Self, String> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let subnet = pod_cidr(node).ok_or("no spec.podCIDR")?;
        let ann = node.metadata.annotations.as_ref().ok_or("no annotations")?;
        let get = |k: &str| ann.get(k).ok_or_else(|| format!("no annotation {k}"));
        if get(BACKEND_TYPE)? != "vxlan" {
            return Err(format!("{BACKEND_TYPE} is not vxlan"));
        }
        let data: BackendData =
            serde_json::from_str(get(BACKEND_DATA)?).map_err(|e| format!("{BACKEND_DATA}: {e}"))?;
        if data.vni != vni {
            return Err(format!("VNI {} is not ours ({vni})", data.vni));
        }
        let vtep_mac = data.vtep_mac.parse()?;
        let public_ip = get(PUBLIC_IP)?
            .parse()
            .map_err(|e| format!("{PUBLIC_IP}: {e}"))?;
        Ok(Peer {
            name,
            subnet,
            vtep_mac,
            public_ip,
        })
    }

    /// The route, neighbour and FDB entry that make this peer's pods reachable.
    pub fn entries(&self) -> [Entry; 3] {
        let via = vtep_ip(self.subnet);
        [
            Entry::Route {
                dst: self.subnet,
                via,
            },
            Entry::Neigh {
                ip: via,
                mac: self.vtep_mac,
            },
            Entry::Fdb {
                mac: self.vtep_mac,
                dst: self.public_ip,
            },
        ]
    }
}

/// Every entry the overlay device should hold given all `nodes`: one set per other node that
/// is a complete peer. Two peers claiming the same subnet or MAC are both skipped, since
/// either choice would misroute the other's traffic.
pub fn desired<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    me: &str,
    my_subnet: Ipv4Network,
    vni: u32,
) -> Entries {
    let peers: Vec<Peer> = nodes
        .into_iter()
        .filter(|n| n.metadata.name.as_deref() != Some(me))
        .filter_map(|n| match Peer::from_node(n, vni) {
            Ok(p) => Some(p),
            Err(why) => {
                tracing::debug!(
                    node = n.metadata.name.as_deref().unwrap_or(""),
                    why,
                    "not a peer yet"
                );
                None
            }
        })
        .collect();
    let clash = |p: &Peer| {
        p.subnet.overlaps(my_subnet)
            || peers.iter().any(|q| {
                q.name != p.name && (q.subnet.overlaps(p.subnet) || q.vtep_mac == p.vtep_mac)
            })
    };
    let mut out = Entries::new();
    for p in &peers {
        if clash(p) {
            tracing::warn!(node = %p.name, subnet = %p.subnet, "subnet or VTEP MAC clashes with another node; skipped");
            continue;
        }
        out.extend(p.entries());
    }
    out
}

/// `subnet.env` as flannel writes it: the cluster network, this node's `.1/<prefix>`, the MTU
/// for pods and whether the node masquerades.
pub fn subnet_env(network: Ipv4Network, subnet: Ipv4Network, mtu: u32, ipmasq: bool) -> String {
    let gw = Ipv4Addr::from(u32::from(subnet.network()) + 1);
    format!(
        "FLANNEL_NETWORK={network}\nFLANNEL_SUBNET={gw}/{}\nFLANNEL_MTU={mtu}\nFLANNEL_IPMASQ={ipmasq}\n",
        subnet.prefix()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;
    use kube::api::ObjectMeta;

    fn node(name: &str, cidr: Option<&str>, ann: Option<BTreeMap<String, String>>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: ann,
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: cidr.map(Into::into),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn peer_node(name: &str, i: u8) -> Node {
        let subnet: Ipv4Network = format!("10.244.{i}.0/24").parse().unwrap();
        let ann = own_annotations(
            1,
            Mac::for_vtep(subnet.network()),
            Ipv4Addr::new(192, 168, 64, 10 * i),
        );
        node(name, Some(&subnet.to_string()), Some(ann))
    }

    #[test]
    fn mac_round_trips_and_is_derived_from_the_vtep() {
        let m = Mac::for_vtep(Ipv4Addr::new(10, 244, 2, 0));
        assert_eq!(m.to_string(), "0e:6b:0a:f4:02:00");
        assert_eq!("0e:6b:0a:f4:02:00".parse::<Mac>().unwrap(), m);
        assert!("0e:6b:0a".parse::<Mac>().is_err());
        assert!("zz:6b:0a:f4:02:00".parse::<Mac>().is_err());
    }

    #[test]
    fn annotations_are_flannels() {
        let a = own_annotations(
            1,
            "aa:bb:cc:dd:ee:ff".parse().unwrap(),
            Ipv4Addr::new(192, 168, 64, 20),
        );
        assert_eq!(a[BACKEND_TYPE], "vxlan");
        assert_eq!(
            a[BACKEND_DATA],
            r#"{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}"#
        );
        assert_eq!(a[PUBLIC_IP], "192.168.64.20");
        assert_eq!(a[KUBE_SUBNET_MANAGER], "true");
        let n = node("a", None, Some(a.clone()));
        assert!(has_annotations(&n, &a));
        assert!(!has_annotations(&node("a", None, None), &a));
    }

    #[test]
    fn peer_needs_everything() {
        let p = Peer::from_node(&peer_node("n2", 2), 1).unwrap();
        assert_eq!(p.subnet.to_string(), "10.244.2.0/24");
        assert_eq!(p.public_ip, Ipv4Addr::new(192, 168, 64, 20));
        assert!(
            Peer::from_node(&peer_node("n2", 2), 7)
                .unwrap_err()
                .contains("VNI")
        );
        assert!(Peer::from_node(&node("n2", Some("10.244.2.0/24"), None), 1).is_err());
        let mut n = peer_node("n2", 2);
        n.spec = None;
        assert!(Peer::from_node(&n, 1).unwrap_err().contains("podCIDR"));
        let mut n = peer_node("n2", 2);
        n.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(BACKEND_TYPE.into(), "host-gw".into());
        assert!(Peer::from_node(&n, 1).is_err());
    }

    #[test]
    fn desired_skips_self_incomplete_and_clashing_nodes() {
        let me: Ipv4Network = "10.244.1.0/24".parse().unwrap();
        let mut clash = peer_node("n4", 3);
        clash
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(PUBLIC_IP.into(), "192.168.64.40".into());
        let nodes = [
            peer_node("n1", 1),
            peer_node("n2", 2),
            node("n5", None, None),
        ];
        let d = desired(&nodes, "n1", me, 1);
        let p2 = Peer::from_node(&nodes[1], 1).unwrap();
        assert_eq!(d, p2.entries().into_iter().collect::<Entries>());
        let with_clash = [
            peer_node("n1", 1),
            peer_node("n2", 2),
            peer_node("n3", 3),
            clash,
        ];
        assert_eq!(desired(&with_clash, "n1", me, 1), d);
    }

    #[test]
    fn subnet_env_matches_flannel() {
        let env = subnet_env(
            "10.244.0.0/16".parse().unwrap(),
            "10.244.3.0/24".parse().unwrap(),
            1450,
            true,
        );
        assert_eq!(
            env,
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
        );
        let parsed = ekube_cni::config::SubnetEnv::parse(&env).unwrap();
        assert_eq!(parsed.mtu, Some(1450));
    }
}
