//! `PolicyRule`s and what they allow, as upstream's `rbac/v1/evaluation_helpers.go` matches a
//! request against a rule and `rbac/validation`'s `Covers` decides whether one set of rules
//! holds every permission of another.

use serde::{Deserialize, Serialize};

use super::Attributes;

/// One rule of a Role or ClusterRole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default, rename = "apiGroups", skip_serializing_if = "Option::is_none")]
    pub api_groups: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<String>>,
    #[serde(
        default,
        rename = "resourceNames",
        skip_serializing_if = "Option::is_none"
    )]
    pub resource_names: Option<Vec<String>>,
    #[serde(
        default,
        rename = "nonResourceURLs",
        skip_serializing_if = "Option::is_none"
    )]
    pub non_resource_urls: Option<Vec<String>>,
}

fn list(v: &Option<Vec<String>>) -> &[String] {
    v.as_deref().unwrap_or_default()
}

fn has(set: &[String], item: &str) -> bool {
    set.iter().any(|s| s == item)
}

impl Rule {
    /// A resource rule: `verbs` on `resources` of `groups`.
    pub fn resource(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Self {
        let owned = |s: &[&str]| Some(s.iter().map(|x| x.to_string()).collect());
        Self {
            verbs: owned(verbs).unwrap_or_default(),
            api_groups: owned(groups),
            resources: owned(resources),
            ..Self::default()
        }
    }

    /// The same rule limited to `names`.
    pub fn named(mut self, names: &[&str]) -> Self {
        self.resource_names = Some(names.iter().map(|x| x.to_string()).collect());
        self
    }

    /// A non-resource rule: `verbs` on `urls`.
    pub fn urls(verbs: &[&str], urls: &[&str]) -> Self {
        Self {
            verbs: verbs.iter().map(|x| x.to_string()).collect(),
            non_resource_urls: Some(urls.iter().map(|x| x.to_string()).collect()),
            ..Self::default()
        }
    }

    /// What `cluster-admin` holds.
    pub fn everything() -> Self {
        Self::resource(&["*"], &["*"], &["*"])
    }

    pub fn api_groups(&self) -> &[String] {
        list(&self.api_groups)
    }
    pub fn resources(&self) -> &[String] {
        list(&self.resources)
    }
    pub fn resource_names(&self) -> &[String] {
        list(&self.resource_names)
    }
    pub fn non_resource_urls(&self) -> &[String] {
        list(&self.non_resource_urls)
    }

    fn verb_matches(&self, verb: &str) -> bool {
        has(&self.verbs, "*") || has(&self.verbs, verb)
    }

    fn group_matches(&self, group: &str) -> bool {
        has(self.api_groups(), "*") || has(self.api_groups(), group)
    }

    /// `*`, the exact `resource[/subresource]`, or `*/<subresource>`.
    fn resource_matches(&self, combined: &str, subresource: &str) -> bool {
        self.resources().iter().any(|r| {
            r == "*"
                || r == combined
                || (!subresource.is_empty()
                    && r.strip_prefix("*/").is_some_and(|s| s == subresource))
        })
    }

    fn name_matches(&self, name: &str) -> bool {
        self.resource_names().is_empty() || has(self.resource_names(), name)
    }

    /// `*`, the exact path, or a prefix ending in `*`.
    fn url_matches(&self, path: &str) -> bool {
        self.non_resource_urls().iter().any(|u| url_covers(u, path))
    }

    /// Whether this rule allows the request.
    pub fn allows(&self, a: &Attributes) -> bool {
        if !self.verb_matches(&a.verb) {
            return false;
        }
        if a.resource_request {
            self.group_matches(&a.api_group)
                && self.resource_matches(&a.combined_resource(), &a.subresource)
                && self.name_matches(&a.name)
        } else {
            self.url_matches(&a.path)
        }
    }

    /// This rule split into rules of one verb, group, resource and name (or one verb and URL),
    /// as upstream's `BreakdownRule`.
    pub fn breakdown(&self) -> Vec<Rule> {
        let mut out = Vec::new();
        let one = |s: &String| Some(vec![s.clone()]);
        // One rule per name, or one without names when the rule names none.
        let names: Vec<Option<&String>> = if self.resource_names().is_empty() {
            vec![None]
        } else {
            self.resource_names().iter().map(Some).collect()
        };
        for verb in &self.verbs {
            for group in self.api_groups() {
                for resource in self.resources() {
                    for name in &names {
                        out.push(Rule {
                            verbs: vec![verb.clone()],
                            api_groups: one(group),
                            resources: one(resource),
                            resource_names: name.and_then(one),
                            ..Rule::default()
                        });
                    }
                }
            }
            for url in self.non_resource_urls() {
                out.push(Rule {
                    verbs: vec![verb.clone()],
                    non_resource_urls: one(url),
                    ..Rule::default()
                });
            }
        }
        out
    }

    /// Whether this (owner) rule holds every permission of `servant`, upstream's `ruleCovers`.
    fn covers(&self, servant: &Rule) -> bool {
        let all = |owner: &[String], wanted: &[String]| {
            has(owner, "*") || wanted.iter().all(|w| has(owner, w))
        };
        all(&self.verbs, &servant.verbs)
            && all(self.api_groups(), servant.api_groups())
            && resources_cover(self.resources(), servant.resources())
            && servant
                .non_resource_urls()
                .iter()
                .all(|u| self.non_resource_urls().iter().any(|o| url_covers(o, u)))
            && (self.resource_names().is_empty()
                || (!servant.resource_names().is_empty()
                    && servant
                        .resource_names()
                        .iter()
                        .all(|n| has(self.resource_names(), n))))
    }

    /// `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}`, upstream's
    /// `CompactString`.
    pub fn compact(&self) -> String {
        let quoted = |v: &[String]| {
            v.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut parts = Vec::new();
        for (label, values) in [
            ("APIGroups", self.api_groups()),
            ("Resources", self.resources()),
            ("ResourceNames", self.resource_names()),
            ("NonResourceURLs", self.non_resource_urls()),
            ("Verbs", &self.verbs[..]),
        ] {
            if !values.is_empty() {
                parts.push(format!("{label}:[{}]", quoted(values)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }
}

fn url_covers(owner: &str, path: &str) -> bool {
    owner == "*"
        || owner == path
        || owner
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
}

/// Upstream's `resourceCoversAll`: `*`, every resource listed, or `*/<sub>` for subresources.
fn resources_cover(owner: &[String], wanted: &[String]) -> bool {
    has(owner, "*")
        || wanted.iter().all(|w| {
            has(owner, w)
                || w.split_once('/')
                    .is_some_and(|(_, sub)| has(owner, &format!("*/{sub}")))
        })
}

/// The atomic rules of `servant` that no rule of `owner` covers (empty: `owner` holds all).
pub fn uncovered(owner: &[Rule], servant: &[Rule]) -> Vec<Rule> {
    servant
        .iter()
        .flat_map(Rule::breakdown)
        .filter(|atom| !owner.iter().any(|o| o.covers(atom)))
        .collect()
}
