//! The `CNI_*` environment variables of the execution protocol.
//!
//! [`CniEnv::from_vars`] takes any variable lookup so tests need not touch the
//! process environment; which variables are required depends on the command.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The operation asked for in `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl std::str::FromStr for Command {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            other => {
                return Err(Error::InvalidEnv {
                    var: "CNI_COMMAND",
                    reason: format!("unknown command {other:?}"),
                });
            }
        })
    }
}

/// The parsed environment of one invocation.
#[derive(Debug, Clone)]
pub struct CniEnv {
    pub command: Command,
    pub container_id: String,
    /// Path of the container's netns; `None` when not given (allowed for DEL).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// Directories searched for delegated plugins.
    pub path: Vec<PathBuf>,
    /// `CNI_ARGS` as key/value pairs.
    pub args: Vec<(String, String)>,
}

impl CniEnv {
    /// Reads the process environment.
    pub fn from_process() -> Result<Self> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Reads the variables through `get` and validates them for the command.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let command: Command = get("CNI_COMMAND")
            .ok_or(Error::InvalidEnv {
                var: "CNI_COMMAND",
                reason: "not set".into(),
            })?
            .parse()?;
        let needs_attachment = matches!(command, Command::Add | Command::Del | Command::Check);
        let container_id = get("CNI_CONTAINERID").unwrap_or_default();
        let ifname = get("CNI_IFNAME").unwrap_or_default();
        let netns = get("CNI_NETNS").map(PathBuf::from);
        if needs_attachment {
            validate_container_id(&container_id)?;
            validate_ifname(&ifname)?;
            if netns.is_none() && command != Command::Del {
                return Err(Error::InvalidEnv {
                    var: "CNI_NETNS",
                    reason: "not set".into(),
                });
            }
        }
        let path = get("CNI_PATH")
            .map(|p| {
                p.split(':')
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        let args = get("CNI_ARGS")
            .map(|a| {
                a.split(';')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(CniEnv {
            command,
            container_id,
            netns,
            ifname,
            path,
            args,
        })
    }
}

/// Container ids: non-empty, alphanumeric plus `_`, `.`, `-` (CNI spec).
fn validate_container_id(id: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidEnv {
            var: "CNI_CONTAINERID",
            reason: reason.into(),
        })
    };
    if id.is_empty() {
        return bad("not set");
    }
    if !id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return bad(
            "must start with a letter or digit and contain only letters, digits, '_', '.', '-'",
        );
    }
    Ok(())
}

/// Interface names as the kernel accepts them (IFNAMSIZ - 1, no '/', ':', whitespace).
fn validate_ifname(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidEnv {
            var: "CNI_IFNAME",
            reason: reason.into(),
        })
    };
    if name.is_empty() {
        return bad("not set");
    }
    if name.len() > 15 {
        return bad("longer than 15 characters");
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return bad("not a valid interface name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<CniEnv> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CniEnv::from_vars(|k| m.get(k).cloned())
    }

    #[test]
    fn add_needs_netns() {
        let e = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
        ]);
        assert_eq!(e.unwrap_err().code(), 4);
    }

    #[test]
    fn del_without_netns_is_fine() {
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert!(e.netns.is_none());
    }

    #[test]
    fn parses_path_and_args() {
        let e = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
            ("CNI_ARGS", "K8S_POD_NAME=web;IgnoreUnknown=1"),
        ])
        .unwrap();
        assert_eq!(e.path.len(), 2);
        assert_eq!(e.args[0], ("K8S_POD_NAME".into(), "web".into()));
    }

    #[test]
    fn rejects_bad_values() {
        assert!(env(&[("CNI_COMMAND", "FOO")]).is_err());
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "a/b"),
            ("CNI_IFNAME", "eth0"),
        ]);
        assert_eq!(e.unwrap_err().code(), 4);
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "a"),
            ("CNI_IFNAME", "x".repeat(16).as_str()),
        ]);
        assert_eq!(e.unwrap_err().code(), 4);
    }
}
