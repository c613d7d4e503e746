//! The CRI RuntimeService: each handler checks its request and calls the bookkeeping in
//! [`super`]; exec, attach and port-forward hand out URLs of the [streaming] server.
//!
//! [streaming]: crate::runtime::streaming

use super::*;
use crate::runtime::streaming::{Session, Streams};

#[tonic::async_trait]
impl cri::runtime_service_server::RuntimeService for Runtime {
    async fn version(&self, _: Request<cri::VersionRequest>) -> R<cri::VersionResponse> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "ekube".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<cri::RunPodSandboxRequest>,
    ) -> R<cri::RunPodSandboxResponse> {
        let config = req
            .into_inner()
            .config
            .ok_or_else(|| Status::invalid_argument("config is required"))?;
        let pod_sandbox_id = self.run_sandbox(config).await?;
        Ok(Response::new(cri::RunPodSandboxResponse { pod_sandbox_id }))
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<cri::StopPodSandboxRequest>,
    ) -> R<cri::StopPodSandboxResponse> {
        self.stop_sandbox(&req.into_inner().pod_sandbox_id).await?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<cri::RemovePodSandboxRequest>,
    ) -> R<cri::RemovePodSandboxResponse> {
        self.remove_sandbox(&req.into_inner().pod_sandbox_id)
            .await?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<cri::PodSandboxStatusRequest>,
    ) -> R<cri::PodSandboxStatusResponse> {
        let sb = self.sandbox(&req.into_inner().pod_sandbox_id)?;
        // The kubelet runs the CNI plugin itself (DESIGN.md §5) and needs the namespace path;
        // a sandbox in the node's network has none, so nothing is attached to or detached
        // from the node's own namespace.
        let info = Self::netns(&sb)
            .map(|path| (NETNS_INFO_KEY.to_owned(), path.display().to_string()))
            .into_iter()
            .collect();
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(Self::sandbox_status(&sb)),
            info,
            ..Default::default()
        }))
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<cri::ListPodSandboxRequest>,
    ) -> R<cri::ListPodSandboxResponse> {
        let filter = req.into_inner().filter;
        let state = self.state.lock().expect("state");
        let items = state
            .sandboxes
            .values()
            .map(Self::sandbox_status)
            .filter(|s| match &filter {
                None => true,
                Some(f) => {
                    (f.id.is_empty() || s.id.starts_with(&f.id))
                        && f.state.as_ref().is_none_or(|v| v.state == s.state)
                        && f.label_selector
                            .iter()
                            .all(|(k, v)| s.labels.get(k) == Some(v))
                }
            })
            .map(|s| cri::PodSandbox {
                id: s.id,
                metadata: s.metadata,
                state: s.state,
                created_at: s.created_at,
                labels: s.labels,
                annotations: s.annotations,
                runtime_handler: s.runtime_handler,
            })
            .collect();
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        req: Request<cri::CreateContainerRequest>,
    ) -> R<cri::CreateContainerResponse> {
        let req = req.into_inner();
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("config is required"))?;
        let container_id = Runtime::create_container(self, &req.pod_sandbox_id, config).await?;
        Ok(Response::new(cri::CreateContainerResponse { container_id }))
    }

    async fn start_container(
        &self,
        req: Request<cri::StartContainerRequest>,
    ) -> R<cri::StartContainerResponse> {
        Runtime::start_container(self, &req.into_inner().container_id).await?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        req: Request<cri::StopContainerRequest>,
    ) -> R<cri::StopContainerResponse> {
        let req = req.into_inner();
        Runtime::stop_container(self, &req.container_id, req.timeout).await?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        req: Request<cri::RemoveContainerRequest>,
    ) -> R<cri::RemoveContainerResponse> {
        Runtime::remove_container(self, &req.into_inner().container_id).await?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        req: Request<cri::ListContainersRequest>,
    ) -> R<cri::ListContainersResponse> {
        Ok(Response::new(cri::ListContainersResponse {
            containers: Runtime::list_containers(self, req.into_inner().filter),
        }))
    }

    async fn container_status(
        &self,
        req: Request<cri::ContainerStatusRequest>,
    ) -> R<cri::ContainerStatusResponse> {
        let c = self.container(&req.into_inner().container_id)?;
        Ok(Response::new(cri::ContainerStatusResponse {
            status: Some(c.status),
            info: Default::default(),
        }))
    }

    async fn exec_sync(&self, req: Request<cri::ExecSyncRequest>) -> R<cri::ExecSyncResponse> {
        let req = req.into_inner();
        self.running(&req.container_id)?;
        let out = self
            .runc
            .exec(
                &req.container_id,
                &req.cmd,
                Duration::from_secs(req.timeout.max(0) as u64),
            )
            .await?;
        Ok(Response::new(cri::ExecSyncResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.exit_code,
        }))
    }

    async fn reopen_container_log(
        &self,
        req: Request<cri::ReopenContainerLogRequest>,
    ) -> R<cri::ReopenContainerLogResponse> {
        self.reopen_log(&req.into_inner().container_id).await?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn container_stats(
        &self,
        req: Request<cri::ContainerStatsRequest>,
    ) -> R<cri::ContainerStatsResponse> {
        let c = self.container(&req.into_inner().container_id)?;
        Ok(Response::new(cri::ContainerStatsResponse {
            stats: Some(container_stats(&crate::cgroups::Mounts::read(), &c)),
        }))
    }

    async fn list_container_stats(
        &self,
        req: Request<cri::ListContainerStatsRequest>,
    ) -> R<cri::ListContainerStatsResponse> {
        let filter = req.into_inner().filter.unwrap_or_default();
        let containers: Vec<Container> = {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state
                .containers
                .iter()
                .filter(|(id, c)| {
                    (filter.id.is_empty() || **id == filter.id)
                        && (filter.pod_sandbox_id.is_empty()
                            || c.sandbox_id == filter.pod_sandbox_id)
                        && filter
                            .label_selector
                            .iter()
                            .all(|(k, v)| c.status.labels.get(k) == Some(v))
                        && c.status.state == ContainerState::ContainerRunning as i32
                })
                .map(|(_, c)| c.clone())
                .collect()
        };
        let mounts = crate::cgroups::Mounts::read();
        Ok(Response::new(cri::ListContainerStatsResponse {
            stats: containers
                .iter()
                .map(|c| container_stats(&mounts, c))
                .collect(),
        }))
    }

    async fn status(&self, _: Request<cri::StatusRequest>) -> R<cri::StatusResponse> {
        let cond = |t: &str| cri::RuntimeCondition {
            r#type: t.into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        };
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![cond("RuntimeReady"), cond("NetworkReady")],
            }),
            ..Default::default()
        }))
    }

    async fn exec(&self, req: Request<cri::ExecRequest>) -> R<cri::ExecResponse> {
        let req = req.into_inner();
        self.running(&req.container_id)?;
        if req.cmd.is_empty() {
            return Err(Status::invalid_argument("cmd must not be empty"));
        }
        let streams = checked_streams(req.stdin, req.stdout, req.stderr, req.tty)?;
        let url = self.streaming.register(Session::Exec {
            container: req.container_id,
            cmd: req.cmd,
            streams,
        })?;
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn attach(&self, req: Request<cri::AttachRequest>) -> R<cri::AttachResponse> {
        let req = req.into_inner();
        let c = self.running(&req.container_id)?;
        let streams = checked_streams(req.stdin, req.stdout, req.stderr, req.tty)?;
        let stdin = Some(shim::stdin_path(&c.dir)).filter(|p| streams.stdin && p.exists());
        let url = self.streaming.register(Session::Attach {
            log_path: PathBuf::from(&c.status.log_path),
            stdin,
            exited: c.exited.subscribe(),
            streams,
        })?;
        Ok(Response::new(cri::AttachResponse { url }))
    }

    async fn port_forward(
        &self,
        req: Request<cri::PortForwardRequest>,
    ) -> R<cri::PortForwardResponse> {
        let req = req.into_inner();
        let sb = self.sandbox(&req.pod_sandbox_id)?;
        if !sb.ready {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {} is not ready",
                sb.id
            )));
        }
        if let Some(bad) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
            return Err(Status::invalid_argument(format!("invalid port {bad}")));
        }
        let url = self.streaming.register(Session::PortForward {
            netns: Self::netns(&sb),
        })?;
        Ok(Response::new(cri::PortForwardResponse { url }))
    }

    async fn update_container_resources(
        &self,
        _: Request<cri::UpdateContainerResourcesRequest>,
    ) -> R<cri::UpdateContainerResourcesResponse> {
        Err(not_offered("UpdateContainerResources"))
    }

    async fn pod_sandbox_stats(
        &self,
        _: Request<cri::PodSandboxStatsRequest>,
    ) -> R<cri::PodSandboxStatsResponse> {
        Err(not_offered("PodSandboxStats"))
    }

    async fn list_pod_sandbox_stats(
        &self,
        _: Request<cri::ListPodSandboxStatsRequest>,
    ) -> R<cri::ListPodSandboxStatsResponse> {
        Err(not_offered("ListPodSandboxStats"))
    }

    async fn update_runtime_config(
        &self,
        _: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> R<cri::UpdateRuntimeConfigResponse> {
        Err(not_offered("UpdateRuntimeConfig"))
    }

    async fn checkpoint_container(
        &self,
        _: Request<cri::CheckpointContainerRequest>,
    ) -> R<cri::CheckpointContainerResponse> {
        Err(not_offered("CheckpointContainer"))
    }

    type GetContainerEventsStream =
        futures::stream::Empty<Result<cri::ContainerEventResponse, Status>>;

    async fn get_container_events(
        &self,
        _: Request<cri::GetEventsRequest>,
    ) -> R<Self::GetContainerEventsStream> {
        Err(not_offered("GetContainerEvents"))
    }

    async fn list_metric_descriptors(
        &self,
        _: Request<cri::ListMetricDescriptorsRequest>,
    ) -> R<cri::ListMetricDescriptorsResponse> {
        Err(not_offered("ListMetricDescriptors"))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> R<cri::ListPodSandboxMetricsResponse> {
        Err(not_offered("ListPodSandboxMetrics"))
    }

    async fn runtime_config(
        &self,
        _: Request<cri::RuntimeConfigRequest>,
    ) -> R<cri::RuntimeConfigResponse> {
        Err(not_offered("RuntimeConfig"))
    }
}

/// The streams of an exec or attach, checked as upstream's streaming server checks them.
fn checked_streams(
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> std::result::Result<Streams, Status> {
    if !(stdin || stdout || stderr) {
        return Err(Status::invalid_argument(
            "one of stdin, stdout, or stderr must be set",
        ));
    }
    if tty && stderr {
        return Err(Status::invalid_argument(
            "stderr cannot be set with tty: a terminal has one output",
        ));
    }
    Ok(Streams {
        stdin,
        stdout,
        stderr,
        tty,
    })
}

/// The answer to an RPC this runtime does not offer: `Unimplemented`, which upstream's kubelet
/// reads as "use the fallback" where it has one (the cgroup driver from its own flag, stats
/// from cgroups, the polling PLEG). ekube's kubelet calls none of these.
fn not_offered(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not offered by ekube's runtime"))
}
