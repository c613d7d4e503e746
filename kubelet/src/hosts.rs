//! The pod's `/etc/hosts`, written by the kubelet into the pod directory and bind-mounted
//! into each container as upstream's kubelet does (`etc-hosts`), because only the kubelet
//! knows the pod's IP (after CNI ADD) when containers are created. A pod-network pod gets the
//! managed file (localhost, the IPv6 names, its IPs with its hostname); a host-network pod
//! the node's hosts file. Both end with the pod's `hostAliases`.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{HostAlias, Pod};

use super::dns::PodName;
use crate::cri;

/// Where a pod's hosts file lives in its directory.
fn path(pod_dir: &Path) -> PathBuf {
    pod_dir.join("etc-hosts")
}

/// The node's hosts file, which a host-network pod's is made from.
const NODE_HOSTS: &str = "/etc/hosts";

/// Writes the hosts file of `pod` (whose addresses are `ips`) into `pod_dir` and returns the
/// bind mount that puts it at `/etc/hosts`. The file is rewritten in place, so containers
/// already running see a new sandbox's address.
pub fn write(
    pod_dir: &Path,
    pod: &Pod,
    ips: &[String],
    cluster_domain: &str,
) -> Result<cri::Mount, String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let aliases = spec.host_aliases.unwrap_or_default();
    let text = if spec.host_network == Some(true) {
        let node = std::fs::read_to_string(NODE_HOSTS)
            .map_err(|e| format!("reading the node's {NODE_HOSTS}: {e}"))?;
        host_network(&node, &aliases)
    } else {
        managed(ips, &PodName::of(pod, cluster_domain)?, &aliases)
    };
    let file = path(pod_dir);
    std::fs::create_dir_all(pod_dir)
        .and_then(|()| std::fs::write(&file, text))
        .map_err(|e| format!("writing {}: {e}", file.display()))?;
    Ok(cri::Mount {
        container_path: "/etc/hosts".into(),
        host_path: file.display().to_string(),
        ..Default::default()
    })
}

/// The managed hosts file of a pod with `ips`.
pub fn managed(ips: &[String], name: &PodName, aliases: &[HostAlias]) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    for ip in ips {
        match name.fqdn() {
            Some(fqdn) => out.push_str(&format!("{ip}\t{fqdn}\t{}\n", name.hostname)),
            None => out.push_str(&format!("{ip}\t{}\n", name.hostname)),
        }
    }
    out.push_str(&alias_entries(aliases));
    out
}

/// The hosts file of a host-network pod: the node's `node_hosts`, then the aliases.
pub fn host_network(node_hosts: &str, aliases: &[HostAlias]) -> String {
    let mut out = format!("# Kubernetes-managed hosts file (host network).\n{node_hosts}");
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&alias_entries(aliases));
    out
}

fn alias_entries(aliases: &[HostAlias]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for a in aliases {
        let names = a.hostnames.clone().unwrap_or_default().join("\t");
        out.push_str(&format!("{}\t{names}\n", a.ip));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aliases() -> Vec<HostAlias> {
        vec![HostAlias {
            ip: "192.0.2.7".into(),
            hostnames: Some(vec!["foo.local".into(), "bar.local".into()]),
        }]
    }

    #[test]
    fn the_managed_file_names_the_pod_as_upstream_does() {
        let name = PodName {
            hostname: "db-0".into(),
            domain: Some("db.shop.svc.cluster.local".into()),
        };
        let text = managed(&["10.244.1.5".into()], &name, &aliases());
        assert_eq!(
            text,
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
             fe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n\
             10.244.1.5\tdb-0.db.shop.svc.cluster.local\tdb-0\n\n\
             # Entries added by HostAliases.\n192.0.2.7\tfoo.local\tbar.local\n"
        );
        let plain = PodName {
            hostname: "web".into(),
            domain: None,
        };
        assert!(managed(&["10.244.1.6".into()], &plain, &[]).ends_with("\n10.244.1.6\tweb\n"));
    }

    #[test]
    fn a_host_network_pod_gets_the_node_file() {
        let text = host_network("127.0.0.1 localhost\n192.0.2.10 node-a", &aliases());
        assert_eq!(
            text,
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n\
             192.0.2.10 node-a\n\n# Entries added by HostAliases.\n\
             192.0.2.7\tfoo.local\tbar.local\n"
        );
    }
}
