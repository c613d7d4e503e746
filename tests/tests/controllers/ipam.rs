//! Node IPAM: pod CIDRs for nodes.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_ipam_gives_distinct_subnets_and_reuses_released_ones() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    // A node that comes with a subnet keeps it.
    let preset: Node = serde_json::from_value(
        json!({"metadata": {"name": "preset"}, "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]}}),
    )?;
    nodes.create(&PostParams::default(), &preset).await?;
    for n in ["ipam-a", "ipam-b", "ipam-c"] {
        create_node(&client, n, "4", json!({})).await?;
    }
    let cidrs = until(20, "every node has a podCIDR", || {
        let nodes = nodes.clone();
        async move {
            let list = nodes
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let cidrs: BTreeMap<String, String> = list
                .items
                .iter()
                .filter_map(|n| Some((n.name_any(), n.spec.as_ref()?.pod_cidr.clone()?)))
                .collect();
            if cidrs.len() == 4 {
                Ok(Some(cidrs))
            } else {
                Err(format!("{cidrs:?}"))
            }
        }
    })
    .await?;
    assert_eq!(
        cidrs["preset"], "10.244.0.0/24",
        "a preset podCIDR is honoured"
    );
    let distinct: BTreeSet<&String> = cidrs.values().collect();
    assert_eq!(distinct.len(), 4, "subnets are distinct: {cidrs:?}");
    for c in cidrs.values() {
        assert!(
            c.starts_with("10.244.") && c.ends_with(".0/24"),
            "{c} is a /24 of the cluster CIDR"
        );
    }
    let b = nodes.get("ipam-b").await?;
    assert_eq!(
        b.spec.as_ref().unwrap().pod_cidrs.as_ref().unwrap(),
        &vec![cidrs["ipam-b"].clone()]
    );
    // Deleting a node frees its subnet for the next one.
    nodes.delete("ipam-b", &DeleteParams::default()).await?;
    until(10, "ipam-b is gone", || {
        let nodes = nodes.clone();
        async move {
            Ok(nodes
                .get_opt("ipam-b")
                .await
                .map_err(|e| e.to_string())?
                .is_none()
                .then_some(()))
        }
    })
    .await?;
    create_node(&client, "ipam-d", "4", json!({})).await?;
    let d = until(20, "ipam-d gets a podCIDR", || {
        let nodes = nodes.clone();
        async move {
            Ok(nodes
                .get("ipam-d")
                .await
                .map_err(|e| e.to_string())?
                .spec
                .and_then(|s| s.pod_cidr))
        }
    })
    .await?;
    assert_eq!(d, cidrs["ipam-b"], "the released subnet is reused");
    Ok(())
}

/// A node that finds the range full waits, without a subnet and with an Event saying why, and
/// gets the one a deleted node frees as soon as the controller sees the deletion, however long
/// it had been waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_waiting_for_a_full_range_gets_a_freed_subnet() -> Result<()> {
    let server = ServerProcess::start(&[
        "--kube-controller-manager-arg=cluster-cidr=10.250.0.0/23",
        "--kube-controller-manager-arg=node-cidr-mask-size=24",
    ])?;
    let client = server.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let cidr_of = |name: &'static str| {
        let nodes = nodes.clone();
        async move {
            Ok(nodes
                .get(name)
                .await
                .map_err(|e| e.to_string())?
                .spec
                .and_then(|s| s.pod_cidr))
        }
    };
    for n in ["full-a", "full-b"] {
        create_node(&client, n, "4", json!({})).await?;
    }
    let a = until(20, "full-a gets a podCIDR", || cidr_of("full-a")).await?;
    until(20, "full-b gets a podCIDR", || cidr_of("full-b")).await?;
    create_node(&client, "full-c", "4", json!({})).await?;
    // It says why it has no subnet, as upstream's allocator does, once per attempt. After the
    // second its next attempt is 8 s away, longer than the wait below.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let selector = "involvedObject.name=full-c,reason=CIDRNotAvailable";
    let event = until(20, "full-c's second CIDRNotAvailable", || {
        let events = events.clone();
        async move {
            let list = events
                .list(&ListParams::default().fields(selector))
                .await
                .map_err(|e| e.to_string())?;
            Ok(list.items.into_iter().find(|e| e.count >= Some(2)))
        }
    })
    .await?;
    assert_eq!(
        event.message.as_deref(),
        Some("Node full-c status is now: CIDRNotAvailable")
    );
    let waiting = cidr_of("full-c").await.map_err(anyhow::Error::msg)?;
    assert_eq!(waiting, None, "the range has two subnets");
    nodes.delete("full-a", &DeleteParams::default()).await?;
    let c = until(5, "full-c gets the freed subnet", || cidr_of("full-c")).await?;
    assert_eq!(c, a);
    Ok(())
}
