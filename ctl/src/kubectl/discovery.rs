//! API discovery: the resources the server serves, resolving what users type (`po`, `pods`,
//! `pod`, `Pod`, `deployments.apps`, `deploy.v1.apps`) to one of them, URL building, and the
//! `api-resources` verb.

use anyhow::Result;
use clap::Args;
use kube::Client;

use super::Ctx;
use super::output::tabwrite;

/// One served resource at its group's preferred version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub verbs: Vec<String>,
    /// Categories such as `all` (`kubectl get all`).
    pub categories: Vec<String>,
}

impl Resource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The collection URL, namespaced when the resource is and `ns` is given.
    pub fn collection_path(&self, ns: Option<&str>) -> String {
        let base = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match ns {
            Some(ns) if self.namespaced => format!("{base}/namespaces/{ns}/{}", self.plural),
            _ => format!("{base}/{}", self.plural),
        }
    }

    pub fn object_path(&self, ns: Option<&str>, name: &str) -> String {
        format!("{}/{name}", self.collection_path(ns))
    }

    /// `pod`, `deployment.apps`: how kubectl names the type in `TYPE/NAME` output.
    pub fn kind_prefix(&self) -> String {
        let kind = self.kind.to_lowercase();
        if self.group.is_empty() {
            kind
        } else {
            format!("{kind}.{}", self.group)
        }
    }

    /// `pods`, `deployments.apps`: how kubectl names the type in messages (`pods "x" not found`).
    pub fn plural_prefix(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// Everything the server serves, core group first, then groups in server order.
#[derive(Debug, Default)]
pub struct Resources {
    pub list: Vec<Resource>,
}

impl Resources {
    /// Reads `/api`, `/apis` and each group's preferred version.
    pub async fn discover(client: &Client) -> Result<Self> {
        let mut list = Vec::new();
        let core = client.list_core_api_versions().await?;
        let mut versions: Vec<(String, String)> = Vec::new();
        if let Some(v) = core.versions.first() {
            versions.push((String::new(), v.clone()));
        }
        for g in client.list_api_groups().await?.groups {
            let preferred = g
                .preferred_version
                .as_ref()
                .map(|v| v.version.clone())
                .or_else(|| g.versions.first().map(|v| v.version.clone()));
            if let Some(v) = preferred {
                versions.push((g.name.clone(), v));
            }
        }
        for (group, version) in versions {
            let rl = if group.is_empty() {
                client.list_core_api_resources(&version).await?
            } else {
                match client
                    .list_api_group_resources(&format!("{group}/{version}"))
                    .await
                {
                    Ok(rl) => rl,
                    // An unavailable group should not break every command (kubectl warns too).
                    Err(e) => {
                        tracing::warn!(%group, error = %e, "skipping API group during discovery");
                        continue;
                    }
                }
            };
            let mut group_resources: Vec<Resource> = rl
                .resources
                .into_iter()
                .filter(|r| !r.name.contains('/'))
                .map(|r| Resource {
                    group: r
                        .group
                        .clone()
                        .filter(|g| !g.is_empty())
                        .unwrap_or_else(|| group.clone()),
                    version: r
                        .version
                        .clone()
                        .filter(|v| !v.is_empty())
                        .unwrap_or_else(|| version.clone()),
                    singular: if r.singular_name.is_empty() {
                        r.kind.to_lowercase()
                    } else {
                        r.singular_name.clone()
                    },
                    plural: r.name,
                    kind: r.kind,
                    namespaced: r.namespaced,
                    short_names: r.short_names.unwrap_or_default(),
                    verbs: r.verbs,
                    categories: r.categories.unwrap_or_default(),
                })
                .collect();
            group_resources.sort_by(|a, b| a.plural.cmp(&b.plural));
            list.extend(group_resources);
        }
        Ok(Self { list })
    }

    /// Resolves a typed name: `plural`, `singular`, short name or kind (case-insensitive),
    /// optionally qualified as `name.group` or `name.version.group`.
    pub fn resolve(&self, typed: &str) -> Option<&Resource> {
        let typed = typed.to_lowercase();
        let matches = |r: &Resource, name: &str| {
            r.plural == name
                || r.singular == name
                || r.kind.to_lowercase() == name
                || r.short_names.iter().any(|s| s == name)
        };
        // Unqualified first: the core group wins (so `events` is core/v1 like kubectl).
        if let Some(r) = self.list.iter().find(|r| matches(r, &typed)) {
            return Some(r);
        }
        let (name, rest) = typed.split_once('.')?;
        self.list.iter().find(|r| {
            matches(r, name)
                && (r.group == rest
                    || rest
                        .split_once('.')
                        .is_some_and(|(v, g)| r.version == v && r.group == g))
        })
    }

    /// The resources in a category (`all`), in discovery order.
    pub fn category(&self, typed: &str) -> Vec<&Resource> {
        let typed = typed.to_lowercase();
        self.list
            .iter()
            .filter(|r| r.categories.contains(&typed))
            .collect()
    }

    /// The resource serving `apiVersion` + `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&Resource> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.list
            .iter()
            .find(|r| r.kind == kind && r.group == group && r.version == version)
            .or_else(|| {
                // Served at another version of the same group (we only track the preferred one).
                self.list
                    .iter()
                    .find(|r| r.kind == kind && r.group == group)
            })
    }
}

/// `kubectl api-resources` flags.
#[derive(Args, Debug)]
pub struct ApiResourcesArgs {
    /// If false, non-namespaced resources will be returned, otherwise returning namespaced resources by default.
    #[arg(long)]
    pub namespaced: Option<bool>,
    /// Limit to resources in the specified API group.
    #[arg(long = "api-group")]
    pub api_group: Option<String>,
    /// Output format: `wide` adds VERBS, `name` prints only names.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// When using the default or custom-column output format, don't print headers.
    #[arg(long)]
    pub no_headers: bool,
}

pub async fn api_resources(ctx: &Ctx, args: ApiResourcesArgs) -> Result<()> {
    let resources = ctx.resources().await?;
    print!("{}", format_api_resources(&resources.list, &args));
    Ok(())
}

fn format_api_resources(list: &[Resource], args: &ApiResourcesArgs) -> String {
    let selected: Vec<&Resource> = list
        .iter()
        .filter(|r| args.namespaced.is_none_or(|n| r.namespaced == n))
        .filter(|r| args.api_group.as_ref().is_none_or(|g| &r.group == g))
        .collect();
    if args.output.as_deref() == Some("name") {
        return selected
            .iter()
            .map(|r| format!("{}\n", r.plural_prefix()))
            .collect();
    }
    let wide = args.output.as_deref() == Some("wide");
    let mut text = String::new();
    if !args.no_headers {
        text.push_str("NAME\tSHORTNAMES\tAPIVERSION\tNAMESPACED\tKIND");
        text.push_str(if wide { "\tVERBS\n" } else { "\n" });
    }
    for r in selected {
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}",
            r.plural,
            r.short_names.join(","),
            r.api_version(),
            r.namespaced,
            r.kind
        ));
        if wide {
            text.push_str(&format!("\t[{}]", r.verbs.join(" ")));
        }
        text.push('\n');
    }
    tabwrite(&text, 6, 3)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn r(
        group: &str,
        version: &str,
        plural: &str,
        kind: &str,
        namespaced: bool,
        short: &[&str],
    ) -> Resource {
        Resource {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            namespaced,
            short_names: short.iter().map(|s| s.to_string()).collect(),
            verbs: vec!["get".into(), "list".into()],
            categories: if plural == "pods" || plural == "services" || plural == "deployments" {
                vec!["all".into()]
            } else {
                vec![]
            },
        }
    }

    pub fn sample() -> Resources {
        Resources {
            list: vec![
                r("", "v1", "events", "Event", true, &["ev"]),
                r("", "v1", "namespaces", "Namespace", false, &["ns"]),
                r("", "v1", "pods", "Pod", true, &["po"]),
                r("", "v1", "services", "Service", true, &["svc"]),
                r("apps", "v1", "deployments", "Deployment", true, &["deploy"]),
                r("events.k8s.io", "v1", "events", "Event", true, &["ev"]),
                r("", "v1", "nodes", "Node", false, &["no"]),
            ],
        }
    }

    #[test]
    fn resolves_like_kubectl() {
        let rs = sample();
        for typed in ["po", "pod", "pods", "Pod", "PODS"] {
            assert_eq!(rs.resolve(typed).unwrap().plural, "pods", "{typed}");
        }
        assert_eq!(rs.resolve("deploy").unwrap().group, "apps");
        assert_eq!(rs.resolve("deployments.apps").unwrap().kind, "Deployment");
        assert_eq!(rs.resolve("deployment.v1.apps").unwrap().kind, "Deployment");
        assert_eq!(rs.resolve("events").unwrap().group, "");
        assert_eq!(
            rs.resolve("events.events.k8s.io").unwrap().group,
            "events.k8s.io"
        );
        assert!(rs.resolve("widgets").is_none());
        assert!(rs.resolve("pods.apps").is_none());
        assert_eq!(
            rs.by_kind("apps/v1", "Deployment").unwrap().plural,
            "deployments"
        );
        assert_eq!(rs.by_kind("v1", "Service").unwrap().plural, "services");
        assert!(rs.by_kind("v1", "Deployment").is_none());
        let all: Vec<&str> = rs
            .category("all")
            .iter()
            .map(|r| r.plural.as_str())
            .collect();
        assert_eq!(all, ["pods", "services", "deployments"]);
    }

    #[test]
    fn paths() {
        let rs = sample();
        let pods = rs.resolve("po").unwrap();
        assert_eq!(
            pods.collection_path(Some("default")),
            "/api/v1/namespaces/default/pods"
        );
        assert_eq!(pods.collection_path(None), "/api/v1/pods");
        assert_eq!(
            pods.object_path(Some("d"), "web"),
            "/api/v1/namespaces/d/pods/web"
        );
        let ns = rs.resolve("ns").unwrap();
        assert_eq!(ns.object_path(Some("default"), "x"), "/api/v1/namespaces/x");
        let d = rs.resolve("deploy").unwrap();
        assert_eq!(
            d.collection_path(Some("a")),
            "/apis/apps/v1/namespaces/a/deployments"
        );
        assert_eq!(
            (d.kind_prefix().as_str(), d.plural_prefix().as_str()),
            ("deployment.apps", "deployments.apps")
        );
    }

    #[test]
    fn api_resources_table() {
        let args = ApiResourcesArgs {
            namespaced: None,
            api_group: None,
            output: None,
            no_headers: false,
        };
        let out = format_api_resources(&sample().list[1..5], &args);
        assert_eq!(
            out,
            "NAME          SHORTNAMES   APIVERSION   NAMESPACED   KIND\n\
             namespaces    ns           v1           false        Namespace\n\
             pods          po           v1           true         Pod\n\
             services      svc          v1           true         Service\n\
             deployments   deploy       apps/v1      true         Deployment\n"
        );
    }
}
