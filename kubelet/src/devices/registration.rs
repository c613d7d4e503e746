//! The kubelet's `Registration` service on `<device-plugins>/kubelet.sock`. A plugin is
//! refused, with the reason logged and answered, when it speaks another API version, names
//! something other than an extended resource, or names an endpoint outside the directory.
//! An accepted plugin is connected to in the background ([`super::plugin`]), as upstream
//! answers `Register` before dialling back.

use std::future::Future;

use tonic::{Request, Response, Status};

use super::api::registration_server::{Registration, RegistrationServer};
use super::{Manager, api, plugin};

struct Service {
    manager: Manager,
}

#[tonic::async_trait]
impl Registration for Service {
    async fn register(
        &self,
        request: Request<api::RegisterRequest>,
    ) -> Result<Response<api::Empty>, Status> {
        let r = request.into_inner();
        if let Err(reason) = check(&r) {
            tracing::warn!(resource = %r.resource_name, endpoint = %r.endpoint, %reason,
                "device plugin registration refused");
            return Err(Status::invalid_argument(reason));
        }
        tracing::info!(resource = %r.resource_name, endpoint = %r.endpoint,
            "device plugin registered");
        let path = self.manager.dir().join(&r.endpoint);
        tokio::spawn(plugin::run(
            self.manager.clone(),
            r.resource_name,
            path,
            r.options.unwrap_or_default(),
        ));
        Ok(Response::new(api::Empty {}))
    }
}

/// Why a registration is refused, in upstream's words where it has them.
fn check(r: &api::RegisterRequest) -> Result<(), String> {
    if r.version != api::VERSION {
        return Err(format!(
            "requested API version {:?} is not supported by kubelet. Supported versions are [{:?}]",
            r.version,
            api::VERSION
        ));
    }
    if !ekube_api::resource_name::is_extended(&r.resource_name) {
        return Err(format!("the ResourceName {:?} is invalid", r.resource_name));
    }
    if r.endpoint.is_empty() || r.endpoint.contains('/') || r.endpoint == ".." {
        return Err(format!(
            "the endpoint {:?} is invalid: it must be a socket's file name in the device-plugins directory",
            r.endpoint
        ));
    }
    Ok(())
}

/// Serves `Registration` until `stop`. The socket is made afresh, so plugins of an earlier
/// kubelet see it come back and register again.
pub async fn serve(manager: Manager, stop: impl Future<Output = ()>) -> Result<(), String> {
    let dir = manager.dir().to_owned();
    let socket = dir.join(api::KUBELET_SOCKET);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket)
        .map_err(|e| format!("binding {}: {e}", socket.display()))?;
    tracing::info!(socket = %socket.display(), "device plugin registration serving");
    let result = tonic::transport::Server::builder()
        .add_service(RegistrationServer::new(Service { manager }))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::UnixListenerStream::new(listener),
            stop,
        )
        .await
        .map_err(|e| format!("serving {}: {e}", socket.display()));
    let _ = std::fs::remove_file(&socket);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_refused_with_upstream_reasons() {
        let ok = api::RegisterRequest {
            version: "v1beta1".into(),
            endpoint: "example.sock".into(),
            resource_name: "vendor.example/dev".into(),
            options: None,
        };
        assert_eq!(check(&ok), Ok(()));
        let old = api::RegisterRequest {
            version: "v1alpha".into(),
            ..ok.clone()
        };
        assert_eq!(
            check(&old).unwrap_err(),
            r#"requested API version "v1alpha" is not supported by kubelet. Supported versions are ["v1beta1"]"#
        );
        let name = api::RegisterRequest {
            resource_name: "dev".into(),
            ..ok.clone()
        };
        assert_eq!(
            check(&name).unwrap_err(),
            r#"the ResourceName "dev" is invalid"#
        );
        let escape = api::RegisterRequest {
            endpoint: "../../run/x.sock".into(),
            ..ok
        };
        assert!(check(&escape).unwrap_err().contains("endpoint"));
    }
}
