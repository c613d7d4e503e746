//! The Pod Security Standards (`privileged`, `baseline`, `restricted`) as the PodSecurity
//! admission plugin applies them: which level a namespace's `pod-security.kubernetes.io/*`
//! labels ask for, and which of a pod's fields break it, worded as upstream words them so that
//! `kubectl` users see the messages the Kubernetes documentation shows.
//!
//! A level is pinned to a version (`v1.23`) or follows `latest`; checks that changed over
//! time answer as the named version did ([`checks`]). The admission plugin itself (enforce on
//! pod create, warn and audit on pods and pod templates) lives with the other plugins.

pub mod checks;

use std::{collections::BTreeMap, fmt};

use k8s_openapi::{api::core::v1::PodSpec, apimachinery::pkg::apis::meta::v1::ObjectMeta};

/// Namespace labels naming a mode's level and version.
pub const ENFORCE_LEVEL: &str = "pod-security.kubernetes.io/enforce";
pub const ENFORCE_VERSION: &str = "pod-security.kubernetes.io/enforce-version";
pub const AUDIT_LEVEL: &str = "pod-security.kubernetes.io/audit";
pub const AUDIT_VERSION: &str = "pod-security.kubernetes.io/audit-version";
pub const WARN_LEVEL: &str = "pod-security.kubernetes.io/warn";
pub const WARN_VERSION: &str = "pod-security.kubernetes.io/warn-version";

/// A Pod Security Standard, least to most restrictive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    #[default]
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    /// Parses a label value; an unknown one is an error (and means `restricted` for enforce).
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        match s {
            "privileged" => Ok(Self::Privileged),
            "baseline" => Ok(Self::Baseline),
            "restricted" => Ok(Self::Restricted),
            _ => Err("must be one of privileged, baseline, restricted"),
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Privileged => "privileged",
            Self::Baseline => "baseline",
            Self::Restricted => "restricted",
        })
    }
}

/// The Kubernetes minor version whose definition of a level applies, or the newest one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Version {
    #[default]
    Latest,
    /// `v1.<minor>`.
    Minor(u32),
}

impl Version {
    /// Parses `latest` or `v1.<minor>`; anything else is an error (and means `latest`).
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s == "latest" {
            return Ok(Self::Latest);
        }
        s.strip_prefix("v1.")
            .filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|m| m.parse().ok())
            .map(Self::Minor)
            .ok_or(r#"must be "latest" or "v1.x""#)
    }

    /// Whether this version includes what Kubernetes 1.`minor` introduced.
    pub fn at_least(self, minor: u32) -> bool {
        match self {
            Self::Latest => true,
            Self::Minor(m) => m >= minor,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Latest => f.write_str("latest"),
            Self::Minor(m) => write!(f, "v1.{m}"),
        }
    }
}

/// A level at a version, shown as upstream shows it: `restricted:latest`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LevelVersion {
    pub level: Level,
    pub version: Version,
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level, self.version)
    }
}

/// What a namespace asks for in each mode. Without labels every mode is `privileged:latest`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub enforce: LevelVersion,
    pub audit: LevelVersion,
    pub warn: LevelVersion,
}

/// A `pod-security.kubernetes.io/*` label whose value is not understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelError {
    pub label: &'static str,
    pub value: String,
    pub message: &'static str,
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "metadata.labels[{}]: Invalid value: {:?}: {}",
            self.label, self.value, self.message
        )
    }
}

impl Policy {
    /// The policy a namespace's labels ask for, as upstream reads them: a bad enforce level
    /// enforces `restricted` (fail closed), a bad audit or warn level means `privileged`
    /// (fail open), a bad version means `latest`; each bad value is also returned. Warn
    /// follows enforce when only enforce is set.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> (Self, Vec<LabelError>) {
        let mut errors = Vec::new();
        let mut read = |label: &'static str, on_error: Level| {
            let value = labels.get(label)?;
            Some(Level::parse(value).unwrap_or_else(|message| {
                errors.push(LabelError {
                    label,
                    value: value.clone(),
                    message,
                });
                on_error
            }))
        };
        let enforce_level = read(ENFORCE_LEVEL, Level::Restricted);
        let audit_level = read(AUDIT_LEVEL, Level::Privileged);
        let warn_level = read(WARN_LEVEL, Level::Privileged);
        let mut version = |label: &'static str| {
            let value = labels.get(label)?;
            Some(Version::parse(value).unwrap_or_else(|message| {
                errors.push(LabelError {
                    label,
                    value: value.clone(),
                    message,
                });
                Version::Latest
            }))
        };
        let enforce_version = version(ENFORCE_VERSION);
        let audit_version = version(AUDIT_VERSION);
        let warn_version = version(WARN_VERSION);

        let enforce = LevelVersion {
            level: enforce_level.unwrap_or_default(),
            version: enforce_version.unwrap_or_default(),
        };
        let mut warn = LevelVersion {
            level: warn_level.unwrap_or_default(),
            version: warn_version.unwrap_or_default(),
        };
        let enforce_parsed = labels
            .get(ENFORCE_LEVEL)
            .is_some_and(|v| Level::parse(v).is_ok());
        if warn_level.is_none() && enforce_parsed && enforce.level > warn.level {
            warn.level = enforce.level;
            if warn_version.is_none() {
                warn.version = enforce.version;
            }
        }
        let policy = Self {
            enforce,
            audit: LevelVersion {
                level: audit_level.unwrap_or_default(),
                version: audit_version.unwrap_or_default(),
            },
            warn,
        };
        (policy, errors)
    }
}

/// One broken rule: the reason and, when there is more to say, the detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub reason: String,
    pub detail: String,
}

/// The rules of `lv` that a pod with `meta` and `spec` breaks, in upstream's order.
pub fn evaluate(lv: LevelVersion, meta: &ObjectMeta, spec: &PodSpec) -> Vec<Violation> {
    checks::for_level(lv)
        .filter_map(|check| check(meta, spec, lv.version))
        .collect()
}

/// Violations as upstream lists them after `violates PodSecurity "<level>": `, e.g.
/// `privileged (container "c" must not set securityContext.privileged=true), host namespaces
/// (hostNetwork=true)`.
pub fn describe(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| {
            if v.detail.is_empty() {
                v.reason.clone()
            } else {
                format!("{} ({})", v.reason, v.detail)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn versions_parse_as_upstream() {
        assert_eq!(Version::parse("latest"), Ok(Version::Latest));
        assert_eq!(Version::parse("v1.23"), Ok(Version::Minor(23)));
        for bad in ["1.23", "v1.", "v1.x", "v2.1", "v1.-1", ""] {
            assert!(Version::parse(bad).is_err(), "{bad}");
        }
        assert!(Version::Minor(25).at_least(22));
        assert!(!Version::Minor(21).at_least(22));
    }

    #[test]
    fn warn_follows_enforce_unless_set() {
        let (p, errors) = Policy::from_labels(&labels(&[
            (ENFORCE_LEVEL, "baseline"),
            (ENFORCE_VERSION, "v1.24"),
        ]));
        assert!(errors.is_empty());
        assert_eq!(p.enforce.to_string(), "baseline:v1.24");
        assert_eq!(p.warn.to_string(), "baseline:v1.24");
        assert_eq!(p.audit.to_string(), "privileged:latest");

        let (p, _) = Policy::from_labels(&labels(&[
            (ENFORCE_LEVEL, "baseline"),
            (WARN_LEVEL, "privileged"),
        ]));
        assert_eq!(p.warn.level, Level::Privileged);
    }

    #[test]
    fn bad_labels_fail_closed_for_enforce_and_open_for_the_rest() {
        let (p, errors) = Policy::from_labels(&labels(&[
            (ENFORCE_LEVEL, "strict"),
            (WARN_LEVEL, "loud"),
            (AUDIT_VERSION, "1.2"),
        ]));
        assert_eq!(p.enforce.level, Level::Restricted);
        assert_eq!(p.warn.level, Level::Privileged);
        assert_eq!(p.audit.version, Version::Latest);
        assert_eq!(errors.len(), 3);
        assert_eq!(
            errors[0].to_string(),
            r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#
        );
    }
}
