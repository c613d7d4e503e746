//! A CRI client that is not the kubelet, for tests: the equivalents of `crictl ps`, `images`,
//! `exec` and `logs` against a runtime's socket, built on the `k8s-cri` bindings alone.
//!
//! `exec` asks the runtime's `Exec` for a streaming URL and speaks the `v5.channel.k8s.io`
//! WebSocket protocol to it; it prints the command's stdout and stderr and exits with its
//! exit code. `logs` reads the CRI log file the runtime names, as crictl does.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerFilter, ContainerState, ContainerStatusRequest, ExecRequest, ListContainersRequest,
    ListImagesRequest,
};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Parser)]
struct Args {
    /// The runtime's socket (`unix:///path` or a path).
    #[arg(long)]
    runtime_endpoint: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Containers: ID, image reference, state, name, attempt, pod sandbox ID.
    Ps {
        /// Only containers of this name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Images: their tags and IDs.
    Images,
    /// Runs a command in a container.
    Exec {
        container: String,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// A container's log, as text.
    Logs { container: String },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<ExitCode> {
    let args = Args::parse();
    let channel = connect(&args.runtime_endpoint).await?;
    let mut runtime = RuntimeServiceClient::new(channel.clone());
    match args.command {
        Command::Ps { name } => {
            let filter = ContainerFilter {
                label_selector: name
                    .map(|n| [("io.kubernetes.container.name".to_owned(), n)].into())
                    .unwrap_or_default(),
                ..Default::default()
            };
            let list = runtime
                .list_containers(ListContainersRequest {
                    filter: Some(filter),
                })
                .await?
                .into_inner();
            for c in list.containers {
                let state = ContainerState::try_from(c.state)
                    .map(|s| s.as_str_name())
                    .unwrap_or("unknown");
                let meta = c.metadata.unwrap_or_default();
                println!(
                    "{} {} {state} {} {} {}",
                    c.id, c.image_ref, meta.name, meta.attempt, c.pod_sandbox_id
                );
            }
        }
        Command::Images => {
            let list = ImageServiceClient::new(channel)
                .list_images(ListImagesRequest { filter: None })
                .await?
                .into_inner();
            for image in list.images {
                println!("{} {}", image.repo_tags.join(","), image.id);
            }
        }
        Command::Exec { container, cmd } => {
            let url = runtime
                .exec(ExecRequest {
                    container_id: container,
                    cmd,
                    tty: false,
                    stdin: false,
                    stdout: true,
                    stderr: true,
                })
                .await?
                .into_inner()
                .url;
            return exec(&url).await;
        }
        Command::Logs { container } => {
            let status = runtime
                .container_status(ContainerStatusRequest {
                    container_id: container.clone(),
                    verbose: false,
                })
                .await?
                .into_inner()
                .status
                .with_context(|| format!("no status for container {container}"))?;
            let path = PathBuf::from(&status.log_path);
            let log =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let mut out = std::io::stdout().lock();
            for line in log.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                // `<time> <stream> <F|P> <text>`: a partial record continues on the next.
                let mut parts = line.splitn(4, |b| *b == b' ');
                let (Some(_), Some(_), Some(tag)) = (parts.next(), parts.next(), parts.next())
                else {
                    bail!("{}: not a CRI log record: {line:?}", path.display());
                };
                out.write_all(parts.next().unwrap_or_default())?;
                if tag != b"P" {
                    out.write_all(b"\n")?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn connect(endpoint: &str) -> Result<Channel> {
    let path = PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint));
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                tokio::net::UnixStream::connect(path)
                    .await
                    .map(hyper_util::rt::TokioIo::new)
            }
        }))
        .await
        .with_context(|| format!("connecting to {endpoint}"))
}

/// Runs the exec session at `url` to its end; the exit code is the command's.
async fn exec(url: &str) -> Result<ExitCode> {
    let ws_url = url.replacen("http://", "ws://", 1);
    let mut request = ws_url.as_str().into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        http::HeaderValue::from_static("v5.channel.k8s.io"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("connecting to {ws_url}"))?;
    let mut code = None;
    while let Some(message) = socket.next().await {
        let data = match message? {
            Message::Binary(d) => d,
            Message::Close(_) => break,
            _ => continue,
        };
        let Some((&channel, body)) = data.split_first() else {
            continue;
        };
        match channel {
            1 => std::io::stdout().write_all(body)?,
            2 => std::io::stderr().write_all(body)?,
            3 => code = Some(exit_code(body)?),
            _ => {}
        }
    }
    let _ = socket.close(None).await;
    let code = code.context("the session ended without a status")?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// The exit code in the `Status` of the error channel.
fn exit_code(status: &[u8]) -> Result<i32> {
    let status: serde_json::Value = serde_json::from_slice(status)?;
    if status["status"] == "Success" {
        return Ok(0);
    }
    let cause = status["details"]["causes"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["reason"] == "ExitCode"));
    match cause.and_then(|c| c["message"].as_str()) {
        Some(code) => Ok(code.parse()?),
        None => bail!("exec failed: {}", status["message"]),
    }
}
