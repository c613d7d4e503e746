//! Root CA publisher (upstream's `root-ca-cert-publisher`): every active Namespace has the
//! ConfigMap `kube-root-ca.crt` whose `ca.crt` is the cluster CA, which pods' projected
//! token volumes mount to verify the apiserver. An edited or deleted copy is put back.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;

use crate::{Context as _, Result};

/// The ConfigMap's name, and its key.
pub const NAME: &str = "kube-root-ca.crt";
const KEY: &str = "ca.crt";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

struct Ctx {
    client: kube::Client,
    ca: String,
}

/// The CA bundle (PEM) to publish: `--root-ca-file`, else the kubeconfig's cluster CA.
pub fn ca_bundle(root_ca_file: Option<&Path>, kubeconfig: &Path) -> Result<String, String> {
    if let Some(path) = root_ca_file {
        return std::fs::read_to_string(path)
            .map_err(|e| format!("--root-ca-file {}: {e}", path.display()));
    }
    let config = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| format!("{}: {e}", kubeconfig.display()))?;
    let cluster = config
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| format!("{}: no cluster", kubeconfig.display()))?;
    if let Some(data) = &cluster.certificate_authority_data {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| format!("{}: certificate-authority-data: {e}", kubeconfig.display()))?;
        return String::from_utf8(pem).map_err(|e| e.to_string());
    }
    match &cluster.certificate_authority {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}")),
        None => Err(format!(
            "{} names no cluster CA; pass --root-ca-file",
            kubeconfig.display()
        )),
    }
}

pub async fn run(client: kube::Client, ca: String) -> Result<(), String> {
    let ctx = Ctx {
        client: client.clone(),
        ca,
    };
    let fields = format!("metadata.name={NAME}");
    crate::runner::drive_per_namespace::<ConfigMap, _, _, _>(
        "root-ca-cert-publisher",
        client,
        &fields,
        reconcile,
        ctx,
    )
    .await;
    Ok(())
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action> {
    let name = ns.name_any();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let data = BTreeMap::from([(KEY.to_string(), ctx.ca.clone())]);
    let current = crate::util::get_listed(&api, NAME)
        .await
        .ctx(|| format!("reading configmap {name}/{NAME}"))?;
    let result = match current {
        Some(cm) if cm.data.as_ref() == Some(&data) => return Ok(Action::await_change()),
        Some(mut cm) => {
            cm.data = Some(data);
            cm.binary_data = None;
            api.replace(NAME, &PostParams::default(), &cm).await
        }
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(NAME.into()),
                    namespace: Some(name.clone()),
                    annotations: Some(BTreeMap::from([(
                        "kubernetes.io/description".to_string(),
                        DESCRIPTION.to_string(),
                    )])),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            api.create(&PostParams::default(), &cm).await
        }
    };
    match result {
        Ok(_) => tracing::info!(namespace = %name, "published {NAME}"),
        // Written meanwhile (the watch brings us back), or the namespace started terminating.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {}
        Err(e) => return Err(e).ctx(|| format!("writing configmap {name}/{NAME}")),
    }
    Ok(Action::await_change())
}
