//! How Services are reached: Services and Endpoints (core/v1), EndpointSlices
//! (discovery.k8s.io), Ingresses and IngressClasses (networking.k8s.io).

use ekube_api::display::format_labels;
use serde_json::{Value, json};

use super::{KindColumns, Printer, age_col, arr_at, at, int_at, name_col, or, str_at, string_col};

pub(crate) fn service_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            string_col("Type", 0, "type determines how the Service is exposed."),
            string_col(
                "Cluster-IP",
                0,
                "clusterIP is the IP address of the service.",
            ),
            string_col(
                "External-IP",
                0,
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
            ),
            string_col(
                "Port(s)",
                0,
                "The list of ports that are exposed by this service.",
            ),
            age_col(),
            string_col(
                "Selector",
                1,
                "Route service traffic to pods with label keys and values matching this selector.",
            ),
        ],
        cells: Printer::service,
        conditions: None,
    }
}

pub(crate) fn endpoints_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            string_col(
                "Endpoints",
                0,
                "The set of all endpoints is the union of all subsets.",
            ),
            age_col(),
        ],
        cells: Printer::endpoints,
        conditions: None,
    }
}

pub(crate) fn endpoint_slice_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            string_col(
                "AddressType",
                0,
                "addressType specifies the type of address carried by this EndpointSlice.",
            ),
            string_col(
                "Ports",
                0,
                "ports specifies the list of network ports exposed by each endpoint in this slice.",
            ),
            string_col(
                "Endpoints",
                0,
                "endpoints is a list of unique endpoints in this slice.",
            ),
            age_col(),
        ],
        cells: Printer::endpoint_slice,
        conditions: None,
    }
}

pub(crate) fn ingress_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            string_col(
                "Class",
                0,
                "The name of the IngressClass resource that should be used for this Ingress.",
            ),
            string_col(
                "Hosts",
                0,
                "Hosts that incoming requests are matched against before the ingress rule",
            ),
            string_col(
                "Address",
                0,
                "Address is a list containing ingress points for the load-balancer",
            ),
            string_col("Ports", 0, "Ports of TLS configurations that open"),
            age_col(),
        ],
        cells: Printer::ingress,
        conditions: None,
    }
}

pub(crate) fn ingress_class_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            string_col(
                "Controller",
                0,
                "Controller that is responsible for handling this class",
            ),
            string_col(
                "Parameters",
                0,
                "A reference to an object with additional parameters",
            ),
            age_col(),
        ],
        cells: Printer::ingress_class,
        conditions: None,
    }
}

impl Printer {
    fn service(&self, svc: &Value) -> Vec<Value> {
        let spec = at(svc, &["spec"]);
        let ty = or(str_at(spec, &["type"]), "ClusterIP");
        let cluster_ip = arr_at(spec, &["clusterIPs"])
            .first()
            .and_then(Value::as_str)
            .unwrap_or(str_at(spec, &["clusterIP"]));
        let external: Vec<String> = arr_at(spec, &["externalIPs"])
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect();
        let external_ip = match ty {
            "ClusterIP" | "NodePort" => {
                if external.is_empty() {
                    "<none>".to_string()
                } else {
                    external.join(",")
                }
            }
            "LoadBalancer" => {
                let lb = load_balancer_ingress(at(svc, &["status", "loadBalancer"]));
                let mut all: Vec<String> = if lb.is_empty() {
                    vec![]
                } else {
                    lb.split(',').map(String::from).collect()
                };
                all.extend(external);
                if all.is_empty() {
                    "<pending>".into()
                } else {
                    all.join(",")
                }
            }
            "ExternalName" => str_at(spec, &["externalName"]).to_string(),
            _ => "<unknown>".into(),
        };
        let ports: Vec<String> = arr_at(spec, &["ports"])
            .iter()
            .map(|p| {
                let proto = or(str_at(p, &["protocol"]), "TCP");
                match int_at(p, &["nodePort"]) {
                    0 => format!("{}/{proto}", int_at(p, &["port"])),
                    np => format!("{}:{np}/{proto}", int_at(p, &["port"])),
                }
            })
            .collect();
        vec![
            Self::name(svc),
            json!(ty),
            json!(or(cluster_ip, "<none>")),
            json!(external_ip),
            json!(if ports.is_empty() {
                "<none>".into()
            } else {
                ports.join(",")
            }),
            self.age(svc),
            json!(format_labels(at(spec, &["selector"]))),
        ]
    }

    fn endpoints(&self, ep: &Value) -> Vec<Value> {
        let mut list = Vec::new();
        let mut count = 0;
        for subset in arr_at(ep, &["subsets"]) {
            let addresses = arr_at(subset, &["addresses"]);
            let ports = arr_at(subset, &["ports"]);
            if ports.is_empty() {
                count += addresses.len();
                list.extend(addresses.iter().map(|a| str_at(a, &["ip"]).to_string()));
                continue;
            }
            for port in ports {
                count += addresses.len();
                for a in addresses {
                    let ip = str_at(a, &["ip"]);
                    let port = int_at(port, &["port"]);
                    // net.JoinHostPort brackets IPv6 addresses.
                    list.push(if ip.contains(':') {
                        format!("[{ip}]:{port}")
                    } else {
                        format!("{ip}:{port}")
                    });
                }
            }
        }
        vec![
            Self::name(ep),
            json!(list_with_more(&list, count, 3, "<none>")),
            self.age(ep),
        ]
    }

    fn endpoint_slice(&self, slice: &Value) -> Vec<Value> {
        let ports: Vec<String> = arr_at(slice, &["ports"])
            .iter()
            .map(|p| match at(p, &["port"]).as_i64() {
                Some(n) => n.to_string(),
                None => p
                    .get("name")
                    .and_then(Value::as_str)
                    .map(String::from)
                    .unwrap_or_else(|| "*".into()),
            })
            .collect();
        let addresses: Vec<String> = arr_at(slice, &["endpoints"])
            .iter()
            .flat_map(|e| {
                arr_at(e, &["addresses"])
                    .iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
            })
            .collect();
        vec![
            Self::name(slice),
            json!(str_at(slice, &["addressType"])),
            json!(list_with_more(&ports, ports.len(), 3, "<unset>")),
            json!(list_with_more(&addresses, addresses.len(), 3, "<unset>")),
            self.age(slice),
        ]
    }

    fn ingress(&self, ing: &Value) -> Vec<Value> {
        let rules = arr_at(ing, &["spec", "rules"]);
        let hosts: Vec<String> = rules
            .iter()
            .map(|r| str_at(r, &["host"]))
            .filter(|h| !h.is_empty())
            .map(String::from)
            .collect();
        let hosts = if hosts.is_empty() {
            "*".to_string()
        } else if rules.len() > 3 {
            format!(
                "{} + {} more...",
                hosts.iter().take(3).cloned().collect::<Vec<_>>().join(","),
                rules.len() - 3
            )
        } else {
            hosts.join(",")
        };
        let ports = if arr_at(ing, &["spec", "tls"]).is_empty() {
            "80"
        } else {
            "80, 443"
        };
        vec![
            Self::name(ing),
            json!(or(str_at(ing, &["spec", "ingressClassName"]), "<none>")),
            json!(hosts),
            json!(load_balancer_ingress(at(ing, &["status", "loadBalancer"]))),
            json!(ports),
            self.age(ing),
        ]
    }

    /// Parameters as `<kind>[.<apiGroup>]/<name>`, like upstream's printer.
    fn ingress_class(&self, class: &Value) -> Vec<Value> {
        let params = at(class, &["spec", "parameters"]);
        let parameters = if params.is_object() {
            let group = str_at(params, &["apiGroup"]);
            let kind = str_at(params, &["kind"]);
            let kind = if group.is_empty() {
                kind.to_string()
            } else {
                format!("{kind}.{group}")
            };
            format!("{kind}/{}", str_at(params, &["name"]))
        } else {
            "<none>".to_string()
        };
        vec![
            Self::name(class),
            json!(str_at(class, &["spec", "controller"])),
            json!(parameters),
            self.age(class),
        ]
    }
}

/// Joins up to `max` entries and appends ` + N more...` like the Kubernetes printers.
fn list_with_more(list: &[String], count: usize, max: usize, empty: &str) -> String {
    let shown: Vec<&str> = list.iter().take(max).map(String::as_str).collect();
    let ret = shown.join(",");
    if count > max {
        return format!("{ret} + {} more...", count - max);
    }
    if ret.is_empty() { empty.into() } else { ret }
}

/// The IPs, else hostnames, of a `LoadBalancerStatus`'s ingress points, comma-joined.
fn load_balancer_ingress(status: &Value) -> String {
    arr_at(status, &["ingress"])
        .iter()
        .filter_map(|i| {
            let ip = str_at(i, &["ip"]);
            let host = str_at(i, &["hostname"]);
            if !ip.is_empty() {
                Some(ip.to_string())
            } else if !host.is_empty() {
                Some(host.to_string())
            } else {
                None
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use crate::table::test_support::cells;
    use serde_json::json;

    #[test]
    fn services() {
        let svc = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-08T09:00:00Z"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.12.7", "clusterIPs": ["10.96.12.7"], "selector": {"app": "web", "tier": "fe"},
                     "ports": [{"port": 80, "nodePort": 32143, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]},
        });
        assert_eq!(
            cells("Service", svc),
            json!([
                "web",
                "NodePort",
                "10.96.12.7",
                "<none>",
                "80:32143/TCP,53/UDP",
                "2d3h",
                "app=web,tier=fe"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let headless = json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}});
        assert_eq!(
            cells("Service", headless),
            json!([
                "h",
                "ClusterIP",
                "None",
                "<none>",
                "<none>",
                "<unknown>",
                "<none>"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.9"], "ports": [{"port": 443, "protocol": "TCP", "nodePort": 30001}]}});
        assert_eq!(cells("Service", lb)[3], "<pending>");
        let ext = json!({"metadata": {"name": "x"}, "spec": {"type": "ExternalName", "externalName": "example.com"}});
        assert_eq!(cells("Service", ext)[3], "example.com");
    }

    #[test]
    fn endpoints_and_slices() {
        let ep = json!({"metadata": {"name": "web"}, "subsets": [
            {"addresses": [{"ip": "10.244.1.2"}, {"ip": "10.244.2.2"}], "ports": [{"port": 8080}, {"port": 8443}]}]});
        assert_eq!(
            cells("Endpoints", ep)[1],
            "10.244.1.2:8080,10.244.2.2:8080,10.244.1.2:8443 + 1 more..."
        );
        assert_eq!(
            cells("Endpoints", json!({"metadata": {"name": "e"}}))[1],
            "<none>"
        );
        let slice = json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.244.1.2"]}, {"addresses": ["10.244.2.2"]}]});
        let c = cells("EndpointSlice", slice);
        assert_eq!(
            (c[1].as_str(), c[2].as_str(), c[3].as_str()),
            (Some("IPv4"), Some("8080"), Some("10.244.1.2,10.244.2.2"))
        );
        let empty = cells(
            "EndpointSlice",
            json!({"metadata": {"name": "e"}, "addressType": "IPv4"}),
        );
        assert_eq!(
            (empty[2].as_str(), empty[3].as_str()),
            (Some("<unset>"), Some("<unset>"))
        );
    }

    #[test]
    fn ingresses() {
        let ing = json!({"metadata": {"name": "ing"}, "spec": {"ingressClassName": "nginx", "rules": [{"host": "a.example"}, {"host": "b.example"}], "tls": [{}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.64.10"}]}}});
        assert_eq!(
            cells("Ingress", ing),
            json!([
                "ing",
                "nginx",
                "a.example,b.example",
                "192.168.64.10",
                "80, 443",
                "<unknown>"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
    }

    #[test]
    fn ingress_classes() {
        let class = json!({"metadata": {"name": "ekube"}, "spec": {"controller": "ekube.io/ingress",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}}});
        assert_eq!(
            cells("IngressClass", class),
            json!([
                "ekube",
                "ekube.io/ingress",
                "IngressParameters.k8s.example.com/external-lb",
                "<unknown>"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let bare = json!({"metadata": {"name": "b"}, "spec": {"controller": "x.io/y"}});
        assert_eq!(cells("IngressClass", bare)[2], "<none>");
    }
}
