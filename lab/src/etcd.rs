//! The etcd cluster of a highly available lab: one member per control-plane node (Debian's
//! `etcd-server`), listening on the node's underlay address, with TLS for clients and peers
//! from a CA of the lab's own (`<lab dir>/etcd-pki`, as an administrator runs an external
//! etcd: the cluster's servers get a client certificate of it, nothing else does).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::Host;
use crate::{Error, Result, pki};

/// The client port of every member.
pub const CLIENT_PORT: u16 = 2379;
/// The peer port of every member.
pub const PEER_PORT: u16 = 2380;

/// Where the lab keeps its etcd CA and the certificates it issued.
pub fn pki_dir(lab_dir: &Path) -> PathBuf {
    lab_dir.join("etcd-pki")
}

/// The client URLs of `members`, comma-separated (`--datastore-endpoint`).
pub fn endpoints(members: &[Host]) -> String {
    members
        .iter()
        .map(|h| format!("https://{}:{CLIENT_PORT}", h.ip))
        .collect::<Vec<_>>()
        .join(",")
}

/// Placeholders for the templates: `{etcd_endpoints}` (the client URLs, comma-separated),
/// `{etcd_ca}`, `{etcd_cert}` and `{etcd_key}` (the servers' client certificate).
pub fn vars(members: &[Host], lab_dir: &Path) -> Vec<(String, String)> {
    let pki = pki_dir(lab_dir);
    let file = |name: &str| pki.join(name).display().to_string();
    vec![
        ("etcd_endpoints".into(), endpoints(members)),
        ("etcd_ca".into(), file("ca.crt")),
        ("etcd_cert".into(), file("apiserver-etcd-client.crt")),
        ("etcd_key".into(), file("apiserver-etcd-client.key")),
    ]
}

/// Issues the CA, a certificate per member (serving clients and peers, and a client of its
/// peers, for its address and loopback) and the servers' client certificate.
pub(crate) fn issue(lab_dir: &Path, members: &[Host]) -> Result<()> {
    let leaves = members
        .iter()
        .map(|h| (h.short.clone(), vec![h.ip.to_string(), "127.0.0.1".into()]))
        .chain([("apiserver-etcd-client".to_string(), Vec::new())]);
    pki::issue(&pki_dir(lab_dir), "etcd-ca", leaves)
}

/// `etcd` for member `host` of `members`, its data under the node's directory.
pub(crate) fn member_argv(host: &Host, members: &[Host], lab: &str, lab_dir: &Path) -> Vec<String> {
    let pki = pki_dir(lab_dir);
    let file = |name: &str| pki.join(name).display().to_string();
    let peer = |h: &Host| format!("https://{}:{PEER_PORT}", h.ip);
    let cluster = members
        .iter()
        .map(|h| format!("{}={}", h.short, peer(h)))
        .collect::<Vec<_>>()
        .join(",");
    let client = format!("https://{}:{CLIENT_PORT}", host.ip);
    [
        "etcd".to_string(),
        format!("--name={}", host.short),
        format!("--data-dir={}", host.dir.join("data/etcd").display()),
        format!("--listen-client-urls={client},https://127.0.0.1:{CLIENT_PORT}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={}", peer(host)),
        format!("--initial-advertise-peer-urls={}", peer(host)),
        format!("--initial-cluster={cluster}"),
        "--initial-cluster-state=new".into(),
        format!("--initial-cluster-token={lab}"),
        format!("--cert-file={}", file(&format!("{}.crt", host.short))),
        format!("--key-file={}", file(&format!("{}.key", host.short))),
        format!("--trusted-ca-file={}", file("ca.crt")),
        "--client-cert-auth".into(),
        format!("--peer-cert-file={}", file(&format!("{}.crt", host.short))),
        format!("--peer-key-file={}", file(&format!("{}.key", host.short))),
        format!("--peer-trusted-ca-file={}", file("ca.crt")),
        "--peer-client-cert-auth".into(),
    ]
    .into()
}

/// `etcdctl <args>` (API v3) against `endpoints` with the servers' client certificate.
pub fn etcdctl_argv(lab_dir: &Path, endpoints: &str, args: &[&str]) -> Vec<String> {
    let pki = pki_dir(lab_dir);
    let file = |name: &str| pki.join(name).display().to_string();
    let mut argv = vec![
        "env".to_string(),
        "ETCDCTL_API=3".into(),
        "etcdctl".into(),
        format!("--endpoints={endpoints}"),
        format!("--cacert={}", file("ca.crt")),
        format!("--cert={}", file("apiserver-etcd-client.crt")),
        format!("--key={}", file("apiserver-etcd-client.key")),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    argv
}

/// Waits until every member reports healthy, asked from node 1.
pub(crate) fn wait_healthy(lab: &crate::Lab, members: &[Host], timeout: Duration) -> Result<()> {
    let lab_dir = lab.config().lab_dir();
    let argv = etcdctl_argv(&lab_dir, &endpoints(members), &["endpoint", "health"]);
    let deadline = Instant::now() + timeout;
    loop {
        let out = lab.exec("n1", &argv)?;
        if out.success() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!(
                    "the etcd members to report healthy ({}{})",
                    out.stdout.trim(),
                    out.stderr.trim()
                ),
                secs: timeout.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
