//! `ekube kubectl` (also reachable as `ekubectl`): a kubectl-style command-line client.
//!
//! It speaks plain Kubernetes through kube-rs, so it works against any conforming apiserver.
//! Resource names are resolved through API discovery ([`discovery`]), `get` asks the server for
//! `meta.k8s.io/v1` Tables and prints them like kubectl ([`output`]), and `apply` uses server-side
//! apply. Kubeconfig handling follows kubectl: `--kubeconfig`, then `KUBECONFIG` (a list of files,
//! merged), then `~/.kube/config`; `--context`; `-n` or the context's namespace.

mod apply;
mod create;
mod delete;
mod describe;
mod discovery;
mod get;
mod label;
mod manifest;
mod output;
mod rollout;
mod scale;
mod set;

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;

use self::discovery::{Resource, Resources};

/// Flags and verb of one `kubectl` invocation.
#[derive(Parser, Debug)]
#[command(
    name = "ekubectl",
    about = "Control an ekube (or any Kubernetes) cluster, like kubectl"
)]
pub struct KubectlArgs {
    /// Path to the kubeconfig file to use.
    #[arg(long, global = true, env = "EKUBECTL_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The name of the kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// If present, the namespace scope for this request.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    #[command(subcommand)]
    pub command: Verb,
}

/// The verbs.
#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Apply a configuration to resources by file name or stdin (server-side apply).
    Apply(apply::ApplyArgs),
    /// Create a resource from a file or from stdin, or a namespace, configmap or secret.
    Create(create::CreateArgs),
    /// Display one or many resources.
    Get(get::GetArgs),
    /// Show details of a specific resource or group of resources.
    Describe(describe::DescribeArgs),
    /// Delete resources by file names, stdin, resources and names, or by resources and label selector.
    Delete(delete::DeleteArgs),
    /// Update the labels on a resource.
    Label(label::LabelArgs),
    /// Update the annotations on a resource.
    Annotate(label::LabelArgs),
    /// Print the supported API resources on the server.
    ApiResources(discovery::ApiResourcesArgs),
    /// Set a new size for a deployment, replica set or stateful set.
    Scale(scale::ScaleArgs),
    /// Manage the rollout of a deployment, daemon set or stateful set.
    Rollout(rollout::RolloutArgs),
    /// Set specific features on objects (`set image`).
    Set(set::SetArgs),
}

/// Runs one invocation (async). Errors are printed kubectl-style to stderr here; the returned
/// error ([`Reported`]) only tells the caller to exit with status 1.
pub async fn run(args: KubectlArgs) -> Result<()> {
    match execute(args).await {
        Ok(()) => Ok(()),
        Err(e) => {
            if e.downcast_ref::<Reported>().is_none() {
                eprintln!("{}", format_error(&e));
            }
            Err(Reported.into())
        }
    }
}

async fn execute(args: KubectlArgs) -> Result<()> {
    let ctx = Ctx::connect(&args).await?;
    match args.command {
        Verb::Apply(a) => apply::apply(&ctx, a).await,
        Verb::Create(a) => create::run(&ctx, a).await,
        Verb::Get(a) => get::run(&ctx, a).await,
        Verb::Describe(a) => describe::run(&ctx, a).await,
        Verb::Delete(a) => delete::run(&ctx, a).await,
        Verb::Label(a) => label::run(&ctx, a, label::Field::Labels).await,
        Verb::Annotate(a) => label::run(&ctx, a, label::Field::Annotations).await,
        Verb::ApiResources(a) => discovery::api_resources(&ctx, a).await,
        Verb::Scale(a) => scale::run(&ctx, a).await,
        Verb::Rollout(a) => rollout::run(&ctx, a).await,
        Verb::Set(a) => set::run(&ctx, a).await,
    }
}

/// Marks a failure whose messages were already printed (the command only needs to exit 1).
#[derive(Debug, thiserror::Error)]
#[error("one or more operations failed")]
pub struct Reported;

/// Formats an error the way kubectl prints it:
/// `Error from server (NotFound): pods "x" not found`, or `error: …` for client-side errors.
pub fn format_error(e: &anyhow::Error) -> String {
    if let Some(kube::Error::Api(status)) = e.downcast_ref::<kube::Error>() {
        return server_error(&status.reason, &status.message);
    }
    format!("error: {e:#}")
}

fn server_error(reason: &str, message: &str) -> String {
    if reason.is_empty() {
        format!("Error from server: {message}")
    } else {
        format!("Error from server ({reason}): {message}")
    }
}

/// Whether `e` is the server's 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// A connected client plus the namespace in effect and lazily fetched discovery.
pub struct Ctx {
    pub client: Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
    resources: tokio::sync::OnceCell<Resources>,
}

impl Ctx {
    async fn connect(args: &KubectlArgs) -> Result<Self> {
        let kubeconfig = load_kubeconfig(args.kubeconfig.as_deref())?;
        let options = KubeConfigOptions {
            context: args.context.clone(),
            cluster: None,
            user: None,
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .context("loading kubeconfig")?;
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = ekube_api::client::from_config(config).context("building the API client")?;
        Ok(Self {
            client,
            namespace,
            resources: tokio::sync::OnceCell::new(),
        })
    }

    /// Every resource the server serves (discovered once per invocation).
    pub async fn resources(&self) -> Result<&Resources> {
        self.resources
            .get_or_try_init(|| Resources::discover(&self.client))
            .await
    }

    /// Resolves a user-typed resource type (`po`, `pods`, `deployment.apps`, `Pod`).
    pub async fn resolve(&self, name: &str) -> Result<Resource> {
        self.resources()
            .await?
            .resolve(name)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the server doesn't have a resource type \"{name}\""))
    }

    /// The resource serving `apiVersion`/`kind` of a manifest.
    pub async fn resolve_kind(&self, api_version: &str, kind: &str) -> Result<Resource> {
        self.resources().await?.by_kind(api_version, kind).cloned().ok_or_else(|| {
            anyhow::anyhow!("resource mapping not found for kind \"{kind}\" in version \"{api_version}\"; ensure CRDs are installed first")
        })
    }

    /// GET returning JSON.
    /// The objects `names` of `r`, or, with no names, those `selector` selects (all without
    /// one); a name that cannot be read is reported on stderr and sets the returned flag, as
    /// kubectl goes on with the others.
    pub async fn named_or_selected(
        &self,
        r: &Resource,
        ns: Option<&str>,
        names: &[String],
        selector: Option<&str>,
    ) -> Result<(Vec<Value>, bool)> {
        if names.is_empty() {
            let path = format!(
                "{}{}",
                r.collection_path(ns),
                get::query(&[("labelSelector", selector)])
            );
            let list = self.get_json(&path).await?;
            return Ok((list["items"].as_array().cloned().unwrap_or_default(), false));
        }
        let (mut objects, mut failed) = (Vec::new(), false);
        for name in names {
            match self.get_json(&r.object_path(ns, name)).await {
                Ok(o) => objects.push(o),
                Err(e) => {
                    failed = true;
                    eprintln!("{}", format_error(&e.into()));
                }
            }
        }
        Ok((objects, failed))
    }

    pub async fn get_json(&self, path: &str) -> Result<Value, kube::Error> {
        self.request(http::Method::GET, path, None, None).await
    }

    /// A JSON request; `content_type` defaults to `application/json` when a body is given.
    pub async fn request(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
        content_type: Option<&str>,
    ) -> Result<Value, kube::Error> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::ACCEPT, "application/json");
        let body = match body {
            Some(b) => {
                req = req.header(
                    http::header::CONTENT_TYPE,
                    content_type.unwrap_or("application/json"),
                );
                serde_json::to_vec(b).expect("JSON values serialize")
            }
            None => Vec::new(),
        };
        let req = req.body(body).map_err(kube::Error::HttpError)?;
        self.client.request::<Value>(req).await
    }
}

/// Loads the kubeconfig the way kubectl does: an explicit path wins, then `KUBECONFIG` (merged
/// list), then `~/.kube/config`.
pub fn load_kubeconfig(explicit: Option<&std::path::Path>) -> Result<Kubeconfig> {
    if let Some(path) = explicit {
        return Kubeconfig::read_from(path)
            .with_context(|| format!("reading kubeconfig {}", path.display()));
    }
    if let Some(list) = std::env::var_os("KUBECONFIG") {
        // Like kubectl: merge the listed files in order (first value wins), skipping missing ones.
        let mut merged: Option<Kubeconfig> = None;
        for path in std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty() && p.exists())
        {
            let kc = Kubeconfig::read_from(&path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            merged = Some(match merged {
                None => kc,
                Some(m) => m
                    .merge(kc)
                    .with_context(|| format!("merging kubeconfig {}", path.display()))?,
            });
        }
        if let Some(merged) = merged {
            return Ok(merged);
        }
    }
    Kubeconfig::read().context("reading ~/.kube/config (set --kubeconfig or KUBECONFIG)")
}

/// Splits `TYPE/NAME` arguments and `TYPE NAME...` into (type, names); `None` names means all.
pub fn split_type_names(args: &[String]) -> Result<Vec<(String, Vec<String>)>> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    if args.is_empty() {
        anyhow::bail!("you must specify the type of resource");
    }
    if args.iter().any(|a| a.contains('/')) {
        for a in args {
            let (ty, name) = a
                .split_once('/')
                .ok_or_else(|| anyhow::anyhow!("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'kubectl get resource/<resource_name>' instead of 'kubectl get resource resource/<resource_name>'"))?;
            if name.is_empty() {
                anyhow::bail!(
                    "arguments in resource/name form must have a single resource and name"
                );
            }
            match out.iter_mut().find(|(t, _)| t == ty) {
                Some((_, names)) => names.push(name.to_string()),
                None => out.push((ty.to_string(), vec![name.to_string()])),
            }
        }
        return Ok(out);
    }
    let names: Vec<String> = args[1..].to_vec();
    for ty in args[0].split(',').filter(|t| !t.is_empty()) {
        out.push((ty.to_string(), names.clone()));
    }
    if out.len() > 1 && !names.is_empty() {
        anyhow::bail!("you may only specify a single resource type when also specifying names");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn type_name_forms() {
        assert_eq!(
            split_type_names(&s(&["pods"])).unwrap(),
            vec![("pods".into(), vec![])]
        );
        assert_eq!(
            split_type_names(&s(&["pods,svc"])).unwrap(),
            vec![("pods".into(), vec![]), ("svc".into(), vec![])]
        );
        assert_eq!(
            split_type_names(&s(&["po", "a", "b"])).unwrap(),
            vec![("po".into(), s(&["a", "b"]))]
        );
        assert_eq!(
            split_type_names(&s(&["pod/a", "svc/b", "pod/c"])).unwrap(),
            vec![("pod".into(), s(&["a", "c"])), ("svc".into(), s(&["b"]))]
        );
        assert!(split_type_names(&s(&["pods,svc", "x"])).is_err());
        assert!(split_type_names(&s(&["pod", "pod/x"])).is_err());
        assert!(split_type_names(&[]).is_err());
    }

    #[test]
    fn kubectl_style_errors() {
        let status = kube::core::Status::failure("pods \"x\" not found", "NotFound").with_code(404);
        let e = anyhow::Error::from(kube::Error::Api(status.boxed()));
        assert_eq!(
            format_error(&e),
            "Error from server (NotFound): pods \"x\" not found"
        );
        assert_eq!(format_error(&anyhow::anyhow!("boom")), "error: boom");
    }

    #[test]
    fn args_parse() {
        let a = KubectlArgs::try_parse_from([
            "ekubectl",
            "-n",
            "kube-system",
            "get",
            "pods",
            "-o",
            "wide",
            "-l",
            "app=web",
        ])
        .unwrap();
        assert_eq!(a.namespace.as_deref(), Some("kube-system"));
        let a =
            KubectlArgs::try_parse_from(["ekubectl", "get", "po", "-A", "--kubeconfig", "/tmp/k"])
                .unwrap();
        assert_eq!(a.kubeconfig, Some(PathBuf::from("/tmp/k")));
        KubectlArgs::try_parse_from([
            "ekubectl",
            "create",
            "configmap",
            "c",
            "--from-literal",
            "a=b",
            "--from-literal=c=d",
        ])
        .unwrap();
        KubectlArgs::try_parse_from([
            "ekubectl",
            "create",
            "secret",
            "generic",
            "s",
            "--from-literal",
            "a=b",
        ])
        .unwrap();
        KubectlArgs::try_parse_from(["ekubectl", "create", "-f", "x.yaml"]).unwrap();
        KubectlArgs::try_parse_from([
            "ekubectl",
            "delete",
            "pod",
            "web",
            "--grace-period=0",
            "--force",
        ])
        .unwrap();
        KubectlArgs::try_parse_from([
            "ekubectl",
            "label",
            "pod",
            "web",
            "a=b",
            "c-",
            "--overwrite",
        ])
        .unwrap();
        KubectlArgs::try_parse_from(["ekubectl", "apply", "-f", "-"]).unwrap();
        KubectlArgs::try_parse_from(["ekubectl", "api-resources"]).unwrap();
        KubectlArgs::try_parse_from(["ekubectl", "scale", "deploy/web", "--replicas=3"]).unwrap();
        KubectlArgs::try_parse_from([
            "ekubectl",
            "rollout",
            "status",
            "deploy/web",
            "--timeout=30s",
            "-w=false",
        ])
        .unwrap();
        KubectlArgs::try_parse_from([
            "ekubectl",
            "rollout",
            "undo",
            "deployment",
            "web",
            "--to-revision=1",
        ])
        .unwrap();
        KubectlArgs::try_parse_from(["ekubectl", "set", "image", "deployment/web", "web=web:v2"])
            .unwrap();
    }
}
