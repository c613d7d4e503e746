//! One registered plugin: dial its socket, ask its options, then follow `ListAndWatch` for as
//! long as the stream lasts. Every answer replaces the resource's device list; when the
//! stream ends the devices turn unhealthy until the plugin registers again.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;

use super::api::device_plugin_client::DevicePluginClient;
use super::{Manager, api};

/// How long a plugin that registered may take to answer on its socket.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(
    manager: Manager,
    resource: String,
    socket: PathBuf,
    registered: api::DevicePluginOptions,
) {
    let deadline = tokio::time::Instant::now() + DIAL_TIMEOUT;
    let channel = loop {
        match crate::runtime::unix_channel(socket.clone()).await {
            Ok(c) => break c,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                tracing::warn!(%resource, socket = %socket.display(), error = %e,
                    "device plugin did not answer on its socket; dropped");
                return;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let mut client = DevicePluginClient::new(channel);
    // The options the plugin serves win over those it registered with, as upstream asks.
    let options = match client.get_device_plugin_options(api::Empty {}).await {
        Ok(o) => o.into_inner(),
        Err(e) => {
            tracing::warn!(%resource, error = %e,
                "GetDevicePluginOptions failed; using the options the plugin registered with");
            registered
        }
    };
    let stream = client.list_and_watch(api::Empty {}).await;
    let generation = manager.add_plugin(&resource, client, options);
    match stream {
        Ok(stream) => {
            let mut stream = stream.into_inner();
            while let Some(answer) = stream.next().await {
                match answer {
                    Ok(list) => {
                        tracing::debug!(%resource, devices = list.devices.len(), "device list");
                        manager.set_devices(&resource, generation, &list.devices);
                    }
                    Err(e) => {
                        tracing::warn!(%resource, error = %e, "ListAndWatch failed");
                        break;
                    }
                }
            }
        }
        Err(e) => tracing::warn!(%resource, error = %e, "ListAndWatch refused"),
    }
    tracing::warn!(%resource, "device plugin went away; its devices are unhealthy until it registers again");
    manager.plugin_gone(&resource, generation);
}
