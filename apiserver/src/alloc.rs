//! Service address allocation: cluster IPs from `--service-cluster-ip-range` and node ports from
//! `--service-node-port-range`, never handing out the same one twice.
//!
//! The in-memory sets are rebuilt from stored Services at start-up and changed only while a
//! Service write holds the allocator lock, so two concurrent creates cannot both win a value.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use serde_json::Value;

use crate::errors::Cause;

pub mod claims;

pub struct Allocator {
    pub range: Ipv4Network,
    pub ports: (u16, u16),
    ips: BTreeSet<u32>,
    node_ports: BTreeSet<u16>,
    /// Where the next search starts, so freed values are not reused at once.
    next_ip: u32,
    next_port: u16,
}

/// What one Service holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Holdings {
    pub ip: Option<Ipv4Addr>,
    pub ports: Vec<u16>,
}

impl Holdings {
    pub fn of(svc: &Value) -> Self {
        let ip = svc
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok());
        let mut ports: Vec<u16> = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
            .filter(|p| *p != 0)
            .map(|p| p as u16)
            .collect();
        if let Some(hc) = svc
            .pointer("/spec/healthCheckNodePort")
            .and_then(Value::as_u64)
            .filter(|p| *p != 0)
        {
            ports.push(hc as u16);
        }
        Self { ip, ports }
    }
}

impl Allocator {
    pub fn new(range: Ipv4Network, ports: (u16, u16)) -> Self {
        let first = u32::from(range.network()) + 1;
        Self {
            range,
            ports,
            ips: BTreeSet::new(),
            node_ports: BTreeSet::new(),
            next_ip: first,
            next_port: ports.0,
        }
    }

    /// The first usable address: the `kubernetes` service's.
    pub fn first_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.range.network()) + 1)
    }

    pub fn hold(&mut self, h: &Holdings) {
        if let Some(ip) = h.ip {
            self.ips.insert(ip.into());
        }
        self.node_ports.extend(&h.ports);
    }

    /// Forgets everything held and holds `held` instead (a resync from the stored claims).
    pub fn reset(&mut self, held: &[Holdings]) {
        self.ips.clear();
        self.node_ports.clear();
        for h in held {
            self.hold(h);
        }
    }

    pub fn release(&mut self, h: &Holdings) {
        if let Some(ip) = h.ip {
            self.ips.remove(&u32::from(ip));
        }
        for p in &h.ports {
            self.node_ports.remove(p);
        }
    }

    /// Fills in and reserves the cluster IP and node ports `svc` needs, given what the stored
    /// version (`old`) already holds. On error nothing is reserved.
    pub fn allocate(
        &mut self,
        svc: &mut Value,
        old: &Holdings,
        dry_run: bool,
    ) -> Result<Holdings, Vec<Cause>> {
        let ty = svc
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        if ty == "ExternalName" {
            return Ok(Holdings::default());
        }
        let mut causes = Vec::new();
        let mut taken = Holdings::default();
        // Cluster IP.
        let requested = svc
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if requested != "None" {
            let ip = if requested.is_empty() {
                match old.ip {
                    Some(ip) => Some(ip),
                    None => self.free_ip(),
                }
            } else {
                let ip: Ipv4Addr = requested.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
                if !self.range.contains(ip)
                    || ip == self.range.network()
                    || ip == self.range.broadcast()
                {
                    causes.push(Cause::invalid(
                        "spec.clusterIPs",
                        format!("[]string{{\"{ip}\"}}"),
                        &format!("failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}", self.range),
                    ));
                } else if old.ip != Some(ip) && self.ips.contains(&u32::from(ip)) {
                    causes.push(Cause::invalid(
                        "spec.clusterIPs",
                        format!("[]string{{\"{ip}\"}}"),
                        &format!("failed to allocate IP {ip}: provided IP is already allocated"),
                    ));
                }
                Some(ip)
            };
            match ip {
                Some(ip) => {
                    svc["spec"]["clusterIP"] = Value::from(ip.to_string());
                    svc["spec"]["clusterIPs"] = serde_json::json!([ip.to_string()]);
                    taken.ip = Some(ip);
                }
                None => causes.push(Cause::invalid("spec.clusterIPs", "[]", "range is full")),
            }
        } else {
            svc["spec"]["clusterIPs"] = serde_json::json!(["None"]);
        }
        // Node ports: a requested healthCheckNodePort is claimed first, so no dynamically
        // allocated nodePort can take it.
        let wants_ports = ty == "NodePort" || ty == "LoadBalancer";
        let wants_health = ty == "LoadBalancer"
            && svc
                .pointer("/spec/externalTrafficPolicy")
                .and_then(Value::as_str)
                == Some("Local");
        let requested_health = svc
            .pointer("/spec/healthCheckNodePort")
            .and_then(Value::as_u64)
            .unwrap_or(0) as u16;
        let mut claimed: Vec<u16> = Vec::new();
        if wants_health && requested_health != 0 {
            if !old.ports.contains(&requested_health) && self.node_ports.contains(&requested_health)
            {
                causes.push(Cause::invalid(
                    "spec.healthCheckNodePort",
                    requested_health,
                    "provided port is already allocated",
                ));
            } else {
                claimed.push(requested_health);
            }
        }
        if let Some(Value::Array(ports)) = svc.pointer_mut("/spec/ports") {
            for (i, p) in ports.iter_mut().enumerate() {
                let requested = p.get("nodePort").and_then(Value::as_u64).unwrap_or(0) as u16;
                if !wants_ports {
                    if let Some(m) = p.as_object_mut() {
                        m.remove("nodePort");
                    }
                    continue;
                }
                let port = if requested == 0 {
                    self.free_port(&claimed)
                } else if claimed.contains(&requested)
                    || (!old.ports.contains(&requested) && self.node_ports.contains(&requested))
                {
                    causes.push(Cause::invalid(
                        format!("spec.ports[{i}].nodePort"),
                        requested,
                        "provided port is already allocated",
                    ));
                    None
                } else {
                    Some(requested)
                };
                if let Some(port) = port {
                    p["nodePort"] = Value::from(port);
                    claimed.push(port);
                } else if requested == 0 {
                    causes.push(Cause::invalid(
                        format!("spec.ports[{i}].nodePort"),
                        0,
                        "range is full",
                    ));
                }
            }
        }
        if wants_health {
            if requested_health == 0 {
                if let Some(port) = self.free_port(&claimed) {
                    svc["spec"]["healthCheckNodePort"] = Value::from(port);
                    claimed.push(port);
                } else {
                    causes.push(Cause::invalid(
                        "spec.healthCheckNodePort",
                        0,
                        "range is full",
                    ));
                }
            }
        } else if let Some(m) = svc.get_mut("spec").and_then(Value::as_object_mut) {
            m.remove("healthCheckNodePort");
        }
        taken.ports = claimed;
        if !causes.is_empty() {
            return Err(causes);
        }
        if !dry_run {
            self.release(old);
            self.hold(&taken);
            if let Some(ip) = taken.ip {
                self.next_ip = u32::from(ip) + 1;
            }
            if let Some(p) = taken.ports.last() {
                self.next_port = p.saturating_add(1);
            }
        }
        Ok(taken)
    }

    fn free_ip(&self) -> Option<Ipv4Addr> {
        let first = u32::from(self.range.network()) + 2; // .1 is the kubernetes service's
        let last = u32::from(self.range.broadcast()) - 1;
        let start = self.next_ip.clamp(first, last);
        (start..=last)
            .chain(first..start)
            .find(|ip| !self.ips.contains(ip))
            .map(Ipv4Addr::from)
    }

    fn free_port(&self, claimed: &[u16]) -> Option<u16> {
        let (lo, hi) = self.ports;
        let start = self.next_port.clamp(lo, hi);
        (start..=hi)
            .chain(lo..start)
            .find(|p| !self.node_ports.contains(p) && !claimed.contains(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alloc() -> Allocator {
        Allocator::new("10.96.0.0/12".parse().unwrap(), (30000, 32767))
    }

    #[test]
    fn requested_node_port_is_honoured_once() {
        let mut a = alloc();
        let mut svc =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 32143}]}});
        let h = a.allocate(&mut svc, &Holdings::default(), false).unwrap();
        assert_eq!(h.ports, [32143]);
        assert!(
            svc["spec"]["clusterIP"]
                .as_str()
                .unwrap()
                .starts_with("10.96.")
        );
        let mut again =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 32143}]}});
        let causes = a
            .allocate(&mut again, &Holdings::default(), false)
            .unwrap_err();
        assert_eq!(
            causes[0].message,
            "Invalid value: 32143: provided port is already allocated"
        );
        // Updating the owner keeps its port.
        let mut same = svc.clone();
        assert!(a.allocate(&mut same, &h, false).is_ok());
    }

    #[test]
    fn no_duplicate_ips() {
        let mut a = alloc();
        let mut seen = BTreeSet::new();
        for _ in 0..500 {
            let mut svc = json!({"spec": {"ports": [{"port": 80}]}});
            let h = a.allocate(&mut svc, &Holdings::default(), false).unwrap();
            assert!(seen.insert(h.ip.unwrap()));
            assert_ne!(h.ip.unwrap(), a.first_ip());
        }
        let mut taken = json!({"spec": {"clusterIP": seen.iter().next().unwrap().to_string(), "ports": [{"port": 80}]}});
        assert!(a.allocate(&mut taken, &Holdings::default(), false).is_err());
    }

    #[test]
    fn dry_run_reserves_nothing() {
        let mut a = alloc();
        let mut svc =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30001}]}});
        a.allocate(&mut svc, &Holdings::default(), true).unwrap();
        let mut svc2 =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30001}]}});
        assert!(a.allocate(&mut svc2, &Holdings::default(), false).is_ok());
    }

    #[test]
    fn requested_health_check_port_is_never_handed_out_as_a_node_port() {
        let mut a = alloc();
        let lb = |hc: u16| {
            json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                "healthCheckNodePort": hc, "ports": [{"port": 80}]}})
        };
        // The sequential allocator's next free port is 30000: asking for it as the health
        // port must push the nodePort elsewhere.
        let mut svc = lb(30000);
        let h = a.allocate(&mut svc, &Holdings::default(), false).unwrap();
        assert_eq!(svc["spec"]["healthCheckNodePort"], 30000);
        assert_ne!(svc["spec"]["ports"][0]["nodePort"], 30000);
        assert_eq!(h.ports.len(), 2);
        // Another Service asking for a taken health port is refused.
        let mut other = lb(30000);
        let causes = a
            .allocate(&mut other, &Holdings::default(), false)
            .unwrap_err();
        assert_eq!(causes[0].field, "spec.healthCheckNodePort");
        // Without a request one is allocated, distinct from the nodePort.
        let mut auto = lb(0);
        a.allocate(&mut auto, &Holdings::default(), false).unwrap();
        assert_ne!(
            auto["spec"]["healthCheckNodePort"],
            auto["spec"]["ports"][0]["nodePort"]
        );
    }
}
