//! End-to-end tests of the `ekube-cni` binary, run as a kubelet runs it: exec'd
//! inside a node network namespace with the CNI environment and config on stdin,
//! attaching pods living in their own namespaces. Compared against Debian's
//! reference `bridge` + `host-local` plugins. Needs root.

mod support;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

fn our_config(lab: &Lab, name: &str, subnet: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "type": "ekube-cni",
        "bridge": "cni0",
        "isGateway": true,
        "ipMasq": true,
        "hairpinMode": true,
        "mtu": 1400,
        "subnet": subnet,
        "clusterCIDR": "10.200.0.0/16",
        "subnetFile": lab.dir.path().join("absent-subnet.env"),
        "dataDir": lab.data_dir(),
        "ipam": {"type": "ekube-cni"},
    })
}

fn invoke<'a>(
    node: &'a str,
    command: &'a str,
    container: &'a str,
    pod: Option<&str>,
    config: &'a Value,
) -> Outcome {
    Invocation {
        binary: PLUGIN,
        node,
        command,
        container,
        netns: pod.map(netns_path),
        ifname: "eth0",
        config,
    }
    .run()
}

/// Adds `prevResult` to a config, for CHECK and DEL.
fn with_prev(config: &Value, prev: &Value) -> Value {
    let mut c = config.clone();
    c["prevResult"] = prev.clone();
    c
}

/// Asserts the shape every ADD result has (ours and the reference's).
fn assert_result_shape(r: &Value, pod: &str, bridge: &str) -> (String, String) {
    assert_eq!(r["cniVersion"], "1.0.0", "{r}");
    let ifs = r["interfaces"].as_array().expect("interfaces");
    assert_eq!(ifs.len(), 3, "bridge, host veth, pod interface: {r}");
    assert_eq!(ifs[0]["name"], bridge);
    assert!(ifs[0].get("sandbox").is_none());
    assert!(ifs[1]["name"].as_str().unwrap().starts_with("veth"), "{r}");
    assert!(ifs[1].get("sandbox").is_none());
    assert_eq!(ifs[2]["name"], "eth0");
    assert_eq!(ifs[2]["sandbox"], netns_path(pod));
    for i in ifs {
        let mac = i["mac"].as_str().expect("mac");
        assert_eq!(mac.len(), 17, "mac {mac}");
    }
    let ips = r["ips"].as_array().expect("ips");
    assert_eq!(ips.len(), 1, "{r}");
    assert_eq!(
        ips[0]["interface"], 2,
        "ip points at the pod interface: {r}"
    );
    assert!(
        ips[0].get("version").is_none(),
        "1.0.0 results carry no ip version: {r}"
    );
    let gw = ips[0]["gateway"].as_str().expect("gateway").to_string();
    assert!(gw.ends_with(".1"), "{r}");
    let routes = r["routes"].as_array().expect("routes");
    assert!(
        routes
            .iter()
            .any(|x| x["dst"] == "0.0.0.0/0" && x["gw"] == gw.as_str()),
        "{r}"
    );
    assert!(r["dns"].is_object(), "{r}");
    (
        ips[0]["address"].as_str().unwrap().to_string(),
        ifs[1]["name"].as_str().unwrap().to_string(),
    )
}

/// Asserts the kernel state one attachment must leave.
fn assert_attached(node: &str, pod: &str, addr: &str, gw: &str, host_veth: &str, bridge: &str) {
    assert_eq!(addrs(pod, "eth0"), vec![addr.to_string()], "pod address");
    assert_eq!(default_gw(pod).as_deref(), Some(gw), "pod default route");
    let (master, hairpin) = port_info(node, host_veth);
    assert_eq!(
        master.as_deref(),
        Some(bridge),
        "host veth is a bridge port"
    );
    assert!(hairpin, "hairpin mode on {host_veth}");
    assert!(
        addrs(node, bridge).contains(&format!("{gw}/{}", addr.split('/').nth(1).unwrap())),
        "gateway on bridge"
    );
    assert_eq!(sysctl(node, "net.ipv4.ip_forward"), "1");
}

fn ip_of(cidr: &str) -> String {
    cidr.split('/').next().unwrap().to_string()
}

/// TCP from `from` to `to_ip:port` where `to` listens; returns what was read.
fn tcp_exchange(from: &str, to: &str, to_ip: &str, port: u16) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    let server = in_netns(to, move || {
        let l = TcpListener::bind(("0.0.0.0", port)).expect("bind in pod");
        tx.send(()).unwrap();
        let (mut s, peer) = l.accept().expect("accept");
        s.write_all(format!("hello {}", peer.ip()).as_bytes())
            .unwrap();
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("server did not start in 10s");
    let ip: Ipv4Addr = to_ip.parse().unwrap();
    let client = in_netns(from, move || {
        let mut s = TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(10))
            .expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).expect("read");
        buf
    });
    let got = client.join().expect("client thread");
    server.join().expect("server thread");
    got
}

#[test]
fn add_check_del_with_connectivity() {
    let mut lab = Lab::new("main");
    let node = lab.netns("node");
    let p1 = lab.netns("pod1");
    let p2 = lab.netns("pod2");
    let conf = our_config(&lab, "ekube", "10.200.1.0/24");

    let r1 = invoke(&node, "ADD", "ctr-one", Some(&p1), &conf).ok();
    let (a1, v1) = assert_result_shape(&r1, &p1, "cni0");
    let r2 = invoke(&node, "ADD", "ctr-two", Some(&p2), &conf).ok();
    let (a2, v2) = assert_result_shape(&r2, &p2, "cni0");
    assert_ne!(a1, a2);
    assert_attached(&node, &p1, &a1, "10.200.1.1", &v1, "cni0");
    assert_attached(&node, &p2, &a2, "10.200.1.1", &v2, "cni0");
    assert_eq!(ip_json(&p1, &["link", "show", "eth0"])[0]["mtu"], 1400);

    // Masquerade for traffic leaving the cluster CIDR, in the node netns.
    let rules = nat_rules(&node);
    assert!(
        rules
            .lines()
            .any(|l| l.starts_with("-A POSTROUTING -s 10.200.1.0/24")
                && l.contains("-j EKUBE-MASQ-")),
        "{rules}"
    );
    assert!(
        rules
            .lines()
            .any(|l| l.contains("-d 10.200.0.0/16 -j RETURN")),
        "{rules}"
    );
    assert!(
        rules.lines().any(|l| l.ends_with("-j MASQUERADE")),
        "{rules}"
    );
    assert_eq!(
        rules.matches("-j MASQUERADE").count(),
        1,
        "rules are not duplicated by a second ADD: {rules}"
    );

    // Pod to pod and pod to gateway.
    ping(&p1, &ip_of(&a2), Duration::from_secs(10));
    ping(&p2, "10.200.1.1", Duration::from_secs(10));
    assert_eq!(
        tcp_exchange(&p1, &p2, &ip_of(&a2), 8080),
        format!("hello {}", ip_of(&a1))
    );
    let gw_reply = {
        let (tx, rx) = std::sync::mpsc::channel();
        let srv = in_netns(&node, move || {
            let l = TcpListener::bind("10.200.1.1:8081").expect("bind on gateway");
            tx.send(()).unwrap();
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"gateway").unwrap();
        });
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let got = in_netns(&p1, || {
            let mut s = TcpStream::connect_timeout(
                &"10.200.1.1:8081".parse().unwrap(),
                Duration::from_secs(10),
            )
            .unwrap();
            let mut b = String::new();
            s.read_to_string(&mut b).unwrap();
            b
        })
        .join()
        .unwrap();
        srv.join().unwrap();
        got
    };
    assert_eq!(gw_reply, "gateway");

    // Masquerade in action: a host outside the cluster CIDR, reachable from the node
    // only, sees pod traffic coming from the node's address (it has no route back
    // to the pod subnet, so an un-NATed connection could not complete).
    let ext = lab.netns("ext");
    let sh = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh(&[
        "-n", &node, "link", "add", "ekx0", "type", "veth", "peer", "name", "eth0", "netns", &ext,
    ]);
    sh(&["-n", &node, "addr", "add", "10.201.0.1/24", "dev", "ekx0"]);
    sh(&["-n", &node, "link", "set", "ekx0", "up"]);
    sh(&["-n", &ext, "addr", "add", "10.201.0.2/24", "dev", "eth0"]);
    sh(&["-n", &ext, "link", "set", "eth0", "up"]);
    assert_eq!(
        tcp_exchange(&p1, &ext, "10.201.0.2", 8082),
        "hello 10.201.0.1"
    );
    sh(&["-n", &node, "link", "del", "ekx0"]);

    // CHECK agrees with the previous result.
    invoke(&node, "CHECK", "ctr-one", Some(&p1), &with_prev(&conf, &r1)).ok();

    // ADD twice fails cleanly and changes nothing.
    let before_links = veths(&node);
    let dup = invoke(&node, "ADD", "ctr-one", Some(&p1), &conf);
    assert!(dup.err_code() >= 100, "{dup:?}");
    assert_eq!(veths(&node), before_links);
    assert_eq!(addrs(&p1, "eth0"), vec![a1.clone()]);
    assert_eq!(allocation_files(&lab.data_dir().join("ekube")).len(), 2);

    // DEL frees the address and removes the veth; twice is fine; unknown too.
    invoke(&node, "DEL", "ctr-one", Some(&p1), &with_prev(&conf, &r1)).ok();
    assert!(!veths(&node).contains(&v1), "host veth left after DEL");
    assert!(
        ip_json(&p1, &["link", "show", "type", "veth"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    let left = allocation_files(&lab.data_dir().join("ekube"));
    assert_eq!(
        left,
        vec![ip_of(&a2)],
        "only pod2's address stays allocated"
    );
    invoke(&node, "DEL", "ctr-one", Some(&p1), &conf).ok();
    invoke(&node, "DEL", "never-seen", Some(&p1), &conf).ok();
    invoke(&node, "DEL", "never-seen", None, &conf).ok();
    let chk = invoke(&node, "CHECK", "ctr-one", Some(&p1), &with_prev(&conf, &r1));
    assert!(!chk.success, "CHECK after DEL must fail");

    // Re-ADD after DEL works and gets an address again.
    let r3 = invoke(&node, "ADD", "ctr-one", Some(&p1), &conf).ok();
    let (a3, _) = assert_result_shape(&r3, &p1, "cni0");
    ping(&p1, &ip_of(&a2), Duration::from_secs(10));
    invoke(&node, "DEL", "ctr-one", Some(&p1), &conf).ok();
    invoke(&node, "DEL", "ctr-two", Some(&p2), &conf).ok();
    assert!(veths(&node).is_empty(), "{:?}", veths(&node));
    assert!(
        allocation_files(&lab.data_dir().join("ekube")).is_empty(),
        "{a3} freed"
    );
}

#[test]
fn version_status_and_old_versions() {
    let mut lab = Lab::new("ver");
    let node = lab.netns("node");
    let pod = lab.netns("pod");
    let v = invoke(&node, "VERSION", "", None, &json!({"cniVersion": "1.0.0"})).ok();
    let supported: Vec<&str> = v["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    for want in ["0.4.0", "1.0.0", "1.1.0"] {
        assert!(supported.contains(&want), "{v}");
    }
    assert_eq!(v["cniVersion"], "1.0.0");

    let mut conf = our_config(&lab, "ver", "10.200.5.0/24");
    conf["cniVersion"] = "1.1.0".into();
    let status = invoke(&node, "STATUS", "", None, &conf);
    assert!(
        status.success && status.stdout.trim().is_empty(),
        "{status:?}"
    );
    let mut no_subnet = conf.clone();
    no_subnet.as_object_mut().unwrap().remove("subnet");
    assert_eq!(invoke(&node, "STATUS", "", None, &no_subnet).err_code(), 50);

    // 0.4.0 results carry the ip "version" field.
    let mut old = conf.clone();
    old["cniVersion"] = "0.4.0".into();
    let r = invoke(&node, "ADD", "old-ctr", Some(&pod), &old).ok();
    assert_eq!(r["cniVersion"], "0.4.0");
    assert_eq!(r["ips"][0]["version"], "4");
    invoke(&node, "CHECK", "old-ctr", Some(&pod), &with_prev(&old, &r)).ok();

    // Subnet and MTU from a flannel subnet.env alone.
    let env_file = lab.dir.path().join("subnet.env");
    std::fs::write(&env_file, "FLANNEL_NETWORK=10.200.0.0/16\nFLANNEL_SUBNET=10.200.13.1/24\nFLANNEL_MTU=1350\nFLANNEL_IPMASQ=true\n").unwrap();
    let mut from_env = conf.clone();
    for k in ["subnet", "mtu", "clusterCIDR"] {
        from_env.as_object_mut().unwrap().remove(k);
    }
    from_env["name"] = "ver-env".into();
    from_env["bridge"] = "cni1".into();
    from_env["subnetFile"] = json!(env_file);
    let pod_env = lab.netns("pod-env");
    let r = invoke(&node, "ADD", "env-ctr", Some(&pod_env), &from_env).ok();
    assert_eq!(r["ips"][0]["address"], "10.200.13.2/24");
    assert_eq!(
        r["interfaces"][2]["mtu"], 1350,
        "1.1.0 results carry the interface mtu: {r}"
    );
    assert_eq!(ip_json(&pod_env, &["link", "show", "eth0"])[0]["mtu"], 1350);
    assert!(addrs(&node, "cni1").contains(&"10.200.13.1/24".to_string()));
    invoke(&node, "DEL", "env-ctr", Some(&pod_env), &from_env).ok();

    // GC keeps only what is named valid.
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    invoke(&node, "GC", "", None, &gc).ok();
    assert!(allocation_files(&lab.data_dir().join("ver")).is_empty());
    invoke(&node, "DEL", "old-ctr", Some(&pod), &old).ok();
    assert!(veths(&node).is_empty());
}

#[test]
fn same_shape_and_state_as_reference_plugins() {
    let bridge_bin = format!("{REFERENCE_DIR}/bridge");
    assert!(
        std::path::Path::new(&bridge_bin).exists(),
        "{bridge_bin} missing: apt-get install containernetworking-plugins"
    );
    let mut lab = Lab::new("ref");
    let ours_node = lab.netns("ours");
    let ref_node = lab.netns("theirs");
    let ours_pod = lab.netns("ours-pod");
    let ref_pod = lab.netns("theirs-pod");
    let deleg_pod = lab.netns("deleg-pod");

    let ours = our_config(&lab, "cmp", "10.200.7.0/24");
    let reference = json!({
        "cniVersion": "1.0.0",
        "name": "cmp",
        "type": "bridge",
        "bridge": "cni0",
        "isGateway": true,
        "isDefaultGateway": true,
        "ipMasq": true,
        "hairpinMode": true,
        "mtu": 1400,
        "ipam": {"type": "host-local", "subnet": "10.200.7.0/24", "dataDir": lab.dir.path().join("ref-ipam")},
    });
    let r_ours = invoke(&ours_node, "ADD", "ctr", Some(&ours_pod), &ours).ok();
    let r_ref = Invocation {
        binary: &bridge_bin,
        node: &ref_node,
        command: "ADD",
        container: "ctr",
        netns: Some(netns_path(&ref_pod)),
        ifname: "eth0",
        config: &reference,
    }
    .run()
    .ok();
    let (a_ours, v_ours) = assert_result_shape(&r_ours, &ours_pod, "cni0");
    let (a_ref, v_ref) = assert_result_shape(&r_ref, &ref_pod, "cni0");
    assert_eq!(a_ours, a_ref, "both hand out the first address");
    let keys = |v: &Value| {
        v.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<HashSet<_>>()
    };
    assert_eq!(keys(&r_ours), keys(&r_ref), "same top-level keys");
    assert_eq!(
        keys(&r_ours["ips"][0]),
        keys(&r_ref["ips"][0]),
        "same ip keys"
    );
    assert_eq!(r_ours["ips"][0]["gateway"], r_ref["ips"][0]["gateway"]);
    assert_attached(
        &ours_node,
        &ours_pod,
        &a_ours,
        "10.200.7.1",
        &v_ours,
        "cni0",
    );
    assert_attached(&ref_node, &ref_pod, &a_ref, "10.200.7.1", &v_ref, "cni0");
    assert_eq!(
        ip_json(&ours_pod, &["link", "show", "eth0"])[0]["mtu"],
        ip_json(&ref_pod, &["link", "show", "eth0"])[0]["mtu"]
    );
    ping(&ours_pod, "10.200.7.1", Duration::from_secs(10));
    ping(&ref_pod, "10.200.7.1", Duration::from_secs(10));

    // Each plugin's CHECK accepts its own result.
    invoke(
        &ours_node,
        "CHECK",
        "ctr",
        Some(&ours_pod),
        &with_prev(&ours, &r_ours),
    )
    .ok();
    let ref_run = |command: &'static str, config: &Value| {
        Invocation {
            binary: &bridge_bin,
            node: &ref_node,
            command,
            container: "ctr",
            netns: Some(netns_path(&ref_pod)),
            ifname: "eth0",
            config,
        }
        .run()
    };
    ref_run("CHECK", &with_prev(&reference, &r_ref)).ok();

    // Our plugin with host-local as delegated IPAM, in our node.
    let mut delegated = ours.clone();
    delegated["name"] = "cmp-deleg".into();
    delegated["ipam"] = json!({"type": "host-local", "subnet": "10.200.7.0/24",
        "rangeStart": "10.200.7.100", "dataDir": lab.dir.path().join("deleg-ipam")});
    let r_deleg = invoke(&ours_node, "ADD", "ctr-d", Some(&deleg_pod), &delegated).ok();
    let (a_deleg, _) = assert_result_shape(&r_deleg, &deleg_pod, "cni0");
    assert_eq!(a_deleg, "10.200.7.100/24");
    assert_eq!(
        allocation_files(&lab.dir.path().join("deleg-ipam/cmp-deleg")),
        vec!["10.200.7.100"]
    );
    ping(&deleg_pod, &ip_of(&a_ours), Duration::from_secs(10));
    invoke(
        &ours_node,
        "CHECK",
        "ctr-d",
        Some(&deleg_pod),
        &with_prev(&delegated, &r_deleg),
    )
    .ok();
    invoke(
        &ours_node,
        "DEL",
        "ctr-d",
        Some(&deleg_pod),
        &with_prev(&delegated, &r_deleg),
    )
    .ok();
    assert!(allocation_files(&lab.dir.path().join("deleg-ipam/cmp-deleg")).is_empty());

    // DEL leaves both nodes without veths or allocations, and repeats fine.
    invoke(
        &ours_node,
        "DEL",
        "ctr",
        Some(&ours_pod),
        &with_prev(&ours, &r_ours),
    )
    .ok();
    ref_run("DEL", &with_prev(&reference, &r_ref)).ok();
    for _ in 0..2 {
        invoke(&ours_node, "DEL", "ctr", Some(&ours_pod), &ours).ok();
        ref_run("DEL", &reference).ok();
    }
    assert!(veths(&ours_node).is_empty());
    assert!(veths(&ref_node).is_empty());
    assert!(allocation_files(&lab.data_dir().join("cmp")).is_empty());
    assert!(allocation_files(&lab.dir.path().join("ref-ipam/cmp")).is_empty());
}

#[test]
fn twenty_concurrent_adds_get_distinct_addresses() {
    const N: usize = 20;
    let mut lab = Lab::new("conc");
    let node = lab.netns("node");
    let pods: Vec<String> = (0..N).map(|i| lab.netns(&format!("p{i:02}"))).collect();
    let conf = our_config(&lab, "conc", "10.200.9.0/24");

    let results: Vec<Value> = std::thread::scope(|s| {
        let hs: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, pod)| {
                let (node, conf) = (&node, &conf);
                s.spawn(move || invoke(node, "ADD", &format!("c{i:02}"), Some(pod), conf).ok())
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("ADD thread"))
            .collect()
    });
    let addresses: HashSet<String> = results
        .iter()
        .map(|r| r["ips"][0]["address"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(addresses.len(), N, "distinct addresses: {addresses:?}");
    assert_eq!(veths(&node).len(), N);
    assert_eq!(allocation_files(&lab.data_dir().join("conc")).len(), N);
    assert_eq!(
        nat_rules(&node).matches("-j MASQUERADE").count(),
        1,
        "one masquerade rule despite racing ADDs"
    );
    ping(
        &pods[0],
        &ip_of(results[N - 1]["ips"][0]["address"].as_str().unwrap()),
        Duration::from_secs(10),
    );

    std::thread::scope(|s| {
        for (i, pod) in pods.iter().enumerate() {
            let (node, conf) = (&node, &conf);
            s.spawn(move || invoke(node, "DEL", &format!("c{i:02}"), Some(pod), conf).ok());
        }
    });
    assert!(veths(&node).is_empty(), "veths left: {:?}", veths(&node));
    assert!(allocation_files(&lab.data_dir().join("conc")).is_empty());
}

#[test]
fn bad_input_gives_spec_errors_and_changes_nothing() {
    let mut lab = Lab::new("bad");
    let node = lab.netns("node");
    let pod = lab.netns("pod");
    let conf = our_config(&lab, "bad", "10.200.11.0/24");
    let alloc_dir = lab.data_dir().join("bad");
    let unchanged = |what: &str| {
        assert!(veths(&node).is_empty(), "{what}: veth left in node");
        assert!(
            ip_json(&pod, &["link", "show", "type", "veth"])
                .as_array()
                .unwrap()
                .is_empty(),
            "{what}: veth in pod"
        );
        assert!(
            allocation_files(&alloc_dir).is_empty(),
            "{what}: allocation left"
        );
    };

    // Malformed stdin: code 6.
    let out = Invocation {
        binary: PLUGIN,
        node: &node,
        command: "ADD",
        container: "c",
        netns: Some(netns_path(&pod)),
        ifname: "eth0",
        config: &Value::String("{not json".into()),
    }
    .run();
    assert_eq!(out.err_code(), 6, "{out:?}");
    unchanged("malformed stdin");

    // Unknown cniVersion: code 1.
    let mut c = conf.clone();
    c["cniVersion"] = "9.9.9".into();
    assert_eq!(invoke(&node, "ADD", "c", Some(&pod), &c).err_code(), 1);
    unchanged("unknown version");

    // Missing CNI_NETNS: code 4.
    assert_eq!(invoke(&node, "ADD", "c", None, &conf).err_code(), 4);
    unchanged("missing netns");

    // A netns that does not exist: code 3.
    let gone = Invocation {
        binary: PLUGIN,
        node: &node,
        command: "ADD",
        container: "c",
        netns: Some("/run/netns/ekcni-does-not-exist".into()),
        ifname: "eth0",
        config: &conf,
    }
    .run();
    assert_eq!(gone.err_code(), 3, "{gone:?}");
    unchanged("missing netns file");

    // Invalid config (no subnet anywhere): code 7.
    let mut c = conf.clone();
    c.as_object_mut().unwrap().remove("subnet");
    assert_eq!(invoke(&node, "ADD", "c", Some(&pod), &c).err_code(), 7);
    unchanged("no subnet");

    // Exhausted /29: five usable addresses (.2-.6), the sixth ADD fails with a plugin code.
    let mut small = conf.clone();
    small["subnet"] = "10.200.12.0/29".into();
    let small_pods: Vec<String> = (0..6).map(|i| lab.netns(&format!("s{i}"))).collect();
    for (i, p) in small_pods.iter().take(5).enumerate() {
        invoke(&node, "ADD", &format!("s{i}"), Some(p), &small).ok();
    }
    let before = veths(&node);
    let full = invoke(&node, "ADD", "s5", Some(&small_pods[5]), &small);
    let code = full.err_code();
    assert!(code >= 100, "{full:?}");
    assert!(
        full.json()["details"]
            .as_str()
            .unwrap()
            .contains("10.200.12.0/29"),
        "{full:?}"
    );
    assert_eq!(veths(&node), before, "no veth added by the failed ADD");
    assert!(
        ip_json(&small_pods[5], &["link", "show", "type", "veth"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(allocation_files(&alloc_dir).len(), 5);
    for (i, p) in small_pods.iter().take(5).enumerate() {
        invoke(&node, "DEL", &format!("s{i}"), Some(p), &small).ok();
    }
    unchanged("after exhaustion test");
}
