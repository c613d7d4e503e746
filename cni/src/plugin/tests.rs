//! Command logic against a recording fake datapath.

use std::cell::RefCell;
use std::path::PathBuf;

use super::*;
use crate::env::CniEnv;

#[derive(Default)]
struct Fake {
    calls: RefCell<Vec<String>>,
    fail_create: bool,
    pod_exists: bool,
}

fn link(name: &str, index: u32) -> LinkState {
    LinkState {
        index,
        name: name.into(),
        mac: format!("02:00:00:00:00:{index:02x}"),
        mtu: Some(1450),
        up: true,
        ..Default::default()
    }
}

impl Datapath for Fake {
    fn setup_node(&self, net: &Network) -> Result<LinkState> {
        self.calls
            .borrow_mut()
            .push(format!("setup {}", net.bridge));
        Ok(link(&net.bridge, 3))
    }
    fn pod_link_exists(&self, _: &NetNs, _: &str) -> Result<bool> {
        Ok(self.pod_exists)
    }
    fn create_pod_link(
        &self,
        _: &Network,
        _: &NetNs,
        req: &PodLink<'_>,
    ) -> Result<(LinkState, LinkState)> {
        let PodLink {
            names,
            ifname,
            addr,
            gateway: gw,
            bridge_index: bridge,
        } = *req;
        self.calls.borrow_mut().push(format!(
            "create {} {ifname} {}/{} {gw:?} {bridge}",
            names.host, addr.0, addr.1
        ));
        if self.fail_create {
            return Err(Error::netlink("create veth", "injected"));
        }
        Ok((link(&names.host, 4), link(ifname, 2)))
    }
    fn remove_pod_link(&self, names: &VethNames, _: Option<&NetNs>, _: &str) -> Result<()> {
        self.calls
            .borrow_mut()
            .push(format!("remove {}", names.host));
        Ok(())
    }
    fn observe(&self, _: &Network, _: &NetNs, _: &VethNames, _: &str) -> Result<Observed> {
        unreachable!("not used")
    }
}

fn env(cmd: &str, id: &str) -> CniEnv {
    let vars = [
        ("CNI_COMMAND", cmd.to_string()),
        ("CNI_CONTAINERID", id.to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        ("CNI_NETNS", "/proc/self/ns/net".to_string()),
        ("CNI_PATH", "/nonexistent".to_string()),
    ];
    CniEnv::from_vars(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap()
}

fn conf(dir: &std::path::Path, subnet: &str) -> Vec<u8> {
    serde_json::json!({
        "cniVersion": "1.0.0", "name": "unit", "type": "ekube-cni",
        "subnet": subnet, "dataDir": dir, "subnetFile": "/nonexistent/subnet.env", "mtu": 1450,
    })
    .to_string()
    .into_bytes()
}

fn allocations(dir: &std::path::Path) -> usize {
    std::fs::read_dir(PathBuf::from(dir).join("unit"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .parse::<Ipv4Addr>()
                    .is_ok()
            })
            .count()
        })
        .unwrap_or(0)
}

#[test]
fn add_builds_result_and_del_frees() {
    let d = tempfile::tempdir().unwrap();
    let fake = Fake::default();
    let out = run(&env("ADD", "c1"), &conf(d.path(), "10.50.1.0/24"), &fake)
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["cniVersion"], "1.0.0");
    assert_eq!(v["interfaces"].as_array().unwrap().len(), 3);
    assert_eq!(v["interfaces"][0]["name"], "cni0");
    assert_eq!(v["interfaces"][2]["name"], "eth0");
    assert_eq!(v["interfaces"][2]["sandbox"], "/proc/self/ns/net");
    assert_eq!(v["ips"][0]["address"], "10.50.1.2/24");
    assert_eq!(v["ips"][0]["gateway"], "10.50.1.1");
    assert_eq!(v["ips"][0]["interface"], 2);
    assert_eq!(v["routes"][0]["dst"], "0.0.0.0/0");
    assert_eq!(allocations(d.path()), 1);
    let calls = fake.calls.borrow().clone();
    assert_eq!(calls[0], "setup cni0");
    assert!(
        calls[1].contains("10.50.1.2/24 Some(10.50.1.1) 3"),
        "{calls:?}"
    );

    assert!(
        run(&env("DEL", "c1"), &conf(d.path(), "10.50.1.0/24"), &fake)
            .unwrap()
            .is_none()
    );
    assert_eq!(allocations(d.path()), 0);
    // DEL twice is fine.
    run(&env("DEL", "c1"), &conf(d.path(), "10.50.1.0/24"), &fake).unwrap();
}

#[test]
fn failed_add_rolls_back() {
    let d = tempfile::tempdir().unwrap();
    let fake = Fake {
        fail_create: true,
        ..Default::default()
    };
    let e = run(&env("ADD", "c1"), &conf(d.path(), "10.50.1.0/24"), &fake).unwrap_err();
    assert_eq!(e.code(), crate::error::code::NETLINK);
    assert_eq!(allocations(d.path()), 0);
    assert!(
        fake.calls
            .borrow()
            .iter()
            .any(|c| c.starts_with("remove veth"))
    );
}

#[test]
fn exhaustion_touches_nothing() {
    let d = tempfile::tempdir().unwrap();
    let fake = Fake::default();
    run(&env("ADD", "c1"), &conf(d.path(), "10.50.1.0/30"), &fake).unwrap();
    let before = fake.calls.borrow().len();
    let e = run(&env("ADD", "c2"), &conf(d.path(), "10.50.1.0/30"), &fake).unwrap_err();
    assert_eq!(e.code(), 100);
    assert_eq!(
        fake.calls.borrow().len(),
        before,
        "no kernel call after exhaustion"
    );
}

#[test]
fn duplicate_add_is_refused_without_changes() {
    let d = tempfile::tempdir().unwrap();
    let fake = Fake {
        pod_exists: true,
        ..Default::default()
    };
    let e = run(&env("ADD", "c1"), &conf(d.path(), "10.50.1.0/24"), &fake).unwrap_err();
    assert_eq!(e.code(), crate::error::code::ALREADY_ATTACHED);
    assert_eq!(allocations(d.path()), 0);
    assert!(fake.calls.borrow().is_empty());
}

#[test]
fn version_and_gc() {
    let d = tempfile::tempdir().unwrap();
    let fake = Fake::default();
    let out = run(&env("VERSION", "x"), br#"{"cniVersion":"1.0.0"}"#, &fake)
        .unwrap()
        .unwrap();
    assert!(
        out.contains("\"1.1.0\"") && out.contains("\"0.4.0\""),
        "{out}"
    );
    run(&env("ADD", "c1"), &conf(d.path(), "10.50.1.0/24"), &fake).unwrap();
    run(&env("ADD", "c2"), &conf(d.path(), "10.50.1.0/24"), &fake).unwrap();
    let mut gc: serde_json::Value =
        serde_json::from_slice(&conf(d.path(), "10.50.1.0/24")).unwrap();
    gc["cniVersion"] = "1.1.0".into();
    gc["cni.dev/valid-attachments"] = serde_json::json!([{"containerID":"c2","ifname":"eth0"}]);
    run(&env("GC", "x"), gc.to_string().as_bytes(), &fake).unwrap();
    assert_eq!(allocations(d.path()), 1);
}
