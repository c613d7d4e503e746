//! Running the CNI plugin chain of the node's network configuration against a sandbox's
//! network namespace, as the CNI spec asks a runtime to (env `CNI_*`, network config on stdin,
//! result JSON on stdout). The kubelet does this itself, as in the dockershim design.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::Error;
use crate::metrics::{self, NetworkOperation};

/// Where a pod attaches and who it is (for `CNI_ARGS`).
pub struct Attachment<'a> {
    pub container_id: &'a str,
    pub netns: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
}

fn cni_err(command: &str, reason: impl Into<String>) -> Error {
    Error::Cni {
        command: command.into(),
        reason: reason.into(),
    }
}

/// The first `*.conflist` (by name) in `dir`.
fn load_conflist(dir: &Path) -> Result<Value, Error> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| cni_err("load", format!("reading {}: {e}", dir.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "conflist"))
        .collect();
    files.sort();
    let file = files.first().ok_or_else(|| {
        cni_err(
            "load",
            format!("no network config (*.conflist) in {}", dir.display()),
        )
    })?;
    let text = std::fs::read(file)
        .map_err(|e| cni_err("load", format!("reading {}: {e}", file.display())))?;
    serde_json::from_slice(&text).map_err(|e| cni_err("load", format!("{}: {e}", file.display())))
}

/// Whether the node's network is configured: a readable `*.conflist` is in `dir` (what
/// upstream's runtimes report as the `NetworkReady` runtime condition).
pub fn network_configured(dir: &Path) -> bool {
    load_conflist(dir).is_ok()
}

async fn exec_plugin(
    bin_dir: &Path,
    command: &str,
    conf: &Value,
    at: &Attachment<'_>,
) -> Result<Value, Error> {
    let kind = conf["type"]
        .as_str()
        .ok_or_else(|| cni_err(command, "plugin without a type"))?;
    let binary = bin_dir.join(kind);
    let args = format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
        at.namespace, at.name, at.container_id, at.uid
    );
    let mut child = tokio::process::Command::new(&binary)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", at.container_id)
        .env("CNI_NETNS", at.netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", bin_dir)
        .env("CNI_ARGS", args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| cni_err(command, format!("running {}: {e}", binary.display())))?;
    let mut stdin = child.stdin.take().expect("piped");
    stdin
        .write_all(conf.to_string().as_bytes())
        .await
        .map_err(|e| cni_err(command, e.to_string()))?;
    drop(stdin);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .map_err(|_| cni_err(command, format!("{kind} did not finish within 60s")))?
        .map_err(|e| cni_err(command, e.to_string()))?;
    let result: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if !out.status.success() {
        let msg = result["msg"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_owned());
        let details = result["details"].as_str().unwrap_or_default();
        return Err(cni_err(
            command,
            format!("{kind}: {msg} {details}").trim().to_owned(),
        ));
    }
    Ok(result)
}

/// Plugin configs of the list, each with the list's `name` and `cniVersion`.
fn plugins(list: &Value) -> Vec<Value> {
    list["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let mut p = p.clone();
            p["name"] = list["name"].clone();
            p["cniVersion"] = list["cniVersion"].clone();
            p
        })
        .collect()
}

/// CNI ADD through the chain; returns the pod's IPs.
pub async fn add(
    conf_dir: &Path,
    bin_dir: &Path,
    at: &Attachment<'_>,
) -> Result<Vec<String>, Error> {
    timed(NetworkOperation::SetUp, add_chain(conf_dir, bin_dir, at)).await
}

/// Runs `chain`, recording how long it took whether or not it succeeded.
async fn timed<T>(operation: NetworkOperation, chain: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let result = chain.await;
    metrics::network_operation(operation, started.elapsed());
    result
}

async fn add_chain(
    conf_dir: &Path,
    bin_dir: &Path,
    at: &Attachment<'_>,
) -> Result<Vec<String>, Error> {
    let list = load_conflist(conf_dir)?;
    let mut prev = Value::Null;
    for mut p in plugins(&list) {
        if !prev.is_null() {
            p["prevResult"] = prev.clone();
        }
        prev = exec_plugin(bin_dir, "ADD", &p, at).await?;
    }
    let ips = prev["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .map(|a| a.split('/').next().unwrap_or(a).to_owned())
        .collect();
    Ok(ips)
}

/// CNI DEL through the chain in reverse; best effort per plugin, first error returned.
pub async fn del(conf_dir: &Path, bin_dir: &Path, at: &Attachment<'_>) -> Result<(), Error> {
    timed(NetworkOperation::TearDown, del_chain(conf_dir, bin_dir, at)).await
}

async fn del_chain(conf_dir: &Path, bin_dir: &Path, at: &Attachment<'_>) -> Result<(), Error> {
    let list = load_conflist(conf_dir)?;
    let mut first = None;
    for p in plugins(&list).iter().rev() {
        if let Err(e) = exec_plugin(bin_dir, "DEL", p, at).await {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_inherit_name_and_version() {
        let list = serde_json::json!({"cniVersion": "1.0.0", "name": "ekube", "plugins": [{"type": "ekube-cni"}, {"type": "portmap"}]});
        let p = plugins(&list);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1]["name"], "ekube");
        assert_eq!(p[0]["cniVersion"], "1.0.0");
    }
}
