//! The lab's upstream DNS server: Debian's `dnsmasq` in the external namespace at
//! `192.168.64.100:53`, authoritative for [`OUTSIDE_ZONE`] (every name under it is
//! [`OUTSIDE_IP`]) and nothing else, so a lab never asks the machine's resolvers. Every node's
//! resolver configuration (`{dir}/resolv.conf`, the kubelet's `--resolv-conf`) names it: it is
//! what `dnsPolicy: Default` pods get, and where the cluster DNS forwards names outside the
//! cluster.

use std::time::{Duration, Instant};

use crate::config::EXT_IP;
use crate::{Error, Result, process};

/// The `dnsmasq` binary of Debian's `dnsmasq-base`.
pub(crate) const BINARY: &str = "/usr/sbin/dnsmasq";
/// The zone the upstream answers for.
pub const OUTSIDE_ZONE: &str = "outside.lab";
/// The address of every name under [`OUTSIDE_ZONE`].
pub const OUTSIDE_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(192, 0, 2, 55);

/// The command serving the zone in the foreground, reading no configuration of the machine's.
pub(crate) fn argv() -> Vec<String> {
    [
        BINARY.to_owned(),
        "--keep-in-foreground".into(),
        "--conf-file=/dev/null".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--no-poll".into(),
        "--pid-file=".into(),
        "--user=root".into(),
        "--bind-interfaces".into(),
        format!("--listen-address={EXT_IP}"),
        format!("--address=/{OUTSIDE_ZONE}/{OUTSIDE_IP}"),
        // dnsmasq's own answers have TTL 0 by default; an upstream's have some.
        "--local-ttl=30".into(),
        "--log-facility=-".into(),
    ]
    .to_vec()
}

/// A node's resolv.conf: the lab's upstream only.
pub(crate) fn node_resolv_conf() -> String {
    format!("nameserver {EXT_IP}\n")
}

/// Waits until the server listens (its UDP socket shows in the namespace's `/proc/net/udp`).
pub(crate) fn wait_ready(netns: &str, timeout: Duration) -> Result<()> {
    // `/proc/net/udp` spells the local address as little-endian hex, then the port.
    let octets = EXT_IP.octets();
    let local = format!(
        "{:02X}{:02X}{:02X}{:02X}:0035",
        octets[3], octets[2], octets[1], octets[0]
    );
    let deadline = Instant::now() + timeout;
    let argv = ["cat".to_owned(), "/proc/net/udp".to_owned()];
    loop {
        let out = process::exec(netns, None, &argv, Duration::from_secs(5))?;
        if out.stdout.contains(&local) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("dnsmasq on {EXT_IP}:53 in {netns}"),
                secs: timeout.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
