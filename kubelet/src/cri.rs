//! The CRI v1 protocol: messages, server traits and client stubs, as the `k8s-cri` crate
//! generates them from upstream's `api.proto`.
pub use k8s_cri::v1::*;

/// The containers `filter` selects, each with its status; one that goes between the list and
/// its status call is left out.
pub async fn containers_with_status(
    rc: &mut crate::runtime::RuntimeClient,
    filter: ContainerFilter,
) -> Result<Vec<(Container, ContainerStatus)>, tonic::Status> {
    let list = rc
        .list_containers(ListContainersRequest {
            filter: Some(filter),
        })
        .await?
        .into_inner()
        .containers;
    let mut found = Vec::with_capacity(list.len());
    for c in list {
        let status = rc
            .container_status(ContainerStatusRequest {
                container_id: c.id.clone(),
                verbose: false,
            })
            .await
            .ok()
            .and_then(|s| s.into_inner().status);
        if let Some(status) = status {
            found.push((c, status));
        }
    }
    Ok(found)
}
