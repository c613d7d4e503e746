//! Errors of the plugin and their mapping onto the CNI error codes.
//!
//! Every failure the runtime can see is an [`Error`]; [`Error::code`] gives the
//! well-known code from the CNI spec ("Error" section) or one of this plugin's own
//! codes (100 and up), and [`Error::to_json`] renders the spec's error object
//! `{"cniVersion","code","msg","details"}` that goes to stdout.

use serde::Serialize;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Codes of the CNI spec (0–99) and of this plugin (100+).
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO: u32 = 5;
    /// Failed to decode content.
    pub const DECODE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN: u32 = 11;
    /// STATUS: the plugin is not available (cannot serve ADD yet).
    pub const NOT_AVAILABLE: u32 = 50;
    /// The pod subnet has no free address left.
    pub const IP_EXHAUSTED: u32 = 100;
    /// ADD for a container+interface that is already attached.
    pub const ALREADY_ATTACHED: u32 = 101;
    /// A netlink request failed.
    pub const NETLINK: u32 = 102;
    /// Programming iptables failed.
    pub const IPTABLES: u32 = 103;
    /// CHECK found the attachment different from the previous result.
    pub const CHECK_FAILED: u32 = 104;
    /// The delegated IPAM plugin could not be run or answered garbage.
    pub const IPAM_DELEGATE: u32 = 105;
}

/// Everything that can go wrong while serving one CNI command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("incompatible CNI version {requested}; supported: {supported}")]
    IncompatibleVersion {
        requested: String,
        supported: String,
    },
    #[error("unsupported field {field}: {reason}")]
    UnsupportedField { field: String, reason: String },
    #[error("container {container} unknown: {reason}")]
    UnknownContainer { container: String, reason: String },
    #[error("invalid environment variable {var}: {reason}")]
    InvalidEnv { var: &'static str, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("failed to decode {what}: {reason}")]
    Decode { what: String, reason: String },
    #[error("invalid network config: {0}")]
    InvalidConfig(String),
    #[error("{0}; try again later")]
    TryAgain(String),
    #[error("plugin not available: {0}")]
    NotAvailable(String),
    #[error("no free address left in {subnet} for network {network} ({used} in use)")]
    IpExhausted {
        network: String,
        subnet: String,
        used: usize,
    },
    #[error("container {container} already has interface {ifname} on network {network}")]
    AlreadyAttached {
        container: String,
        ifname: String,
        network: String,
    },
    #[error("netlink: {context}: {reason}")]
    Netlink { context: String, reason: String },
    #[error("iptables: {context}: {reason}")]
    Iptables { context: String, reason: String },
    #[error("check failed: {0}")]
    CheckFailed(String),
    #[error("delegated IPAM plugin {plugin}: {reason}")]
    IpamDelegate { plugin: String, reason: String },
    /// An error answered by a delegated plugin, passed through unchanged.
    #[error("{msg}")]
    Delegated {
        code: u32,
        msg: String,
        details: String,
    },
}

impl Error {
    /// Shorthand for an I/O error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Shorthand for a netlink error with context.
    pub fn netlink(context: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Netlink {
            context: context.into(),
            reason: reason.to_string(),
        }
    }

    /// The CNI error code for this error.
    pub fn code(&self) -> u32 {
        match self {
            Error::IncompatibleVersion { .. } => code::INCOMPATIBLE_VERSION,
            Error::UnsupportedField { .. } => code::UNSUPPORTED_FIELD,
            Error::UnknownContainer { .. } => code::UNKNOWN_CONTAINER,
            Error::InvalidEnv { .. } => code::INVALID_ENV,
            Error::Io { .. } => code::IO,
            Error::Decode { .. } => code::DECODE,
            Error::InvalidConfig(_) => code::INVALID_CONFIG,
            Error::TryAgain(_) => code::TRY_AGAIN,
            Error::NotAvailable(_) => code::NOT_AVAILABLE,
            Error::IpExhausted { .. } => code::IP_EXHAUSTED,
            Error::AlreadyAttached { .. } => code::ALREADY_ATTACHED,
            Error::Netlink { .. } => code::NETLINK,
            Error::Iptables { .. } => code::IPTABLES,
            Error::CheckFailed(_) => code::CHECK_FAILED,
            Error::IpamDelegate { .. } => code::IPAM_DELEGATE,
            Error::Delegated { code, .. } => *code,
        }
    }

    /// The spec's error object for this error.
    pub fn to_json(&self, cni_version: &str) -> ErrorJson {
        let (msg, details) = match self {
            Error::Delegated { msg, details, .. } => (msg.clone(), details.clone()),
            Error::IpExhausted { .. } => {
                ("IP address range exhausted".to_string(), self.to_string())
            }
            other => (short_msg(other).to_string(), other.to_string()),
        };
        ErrorJson {
            cni_version: cni_version.to_string(),
            code: self.code(),
            msg,
            details,
        }
    }
}

/// A failed iptables command answers with the plugin's [`code::IPTABLES`].
impl From<crate::iptables::Error> for Error {
    fn from(e: crate::iptables::Error) -> Self {
        Error::Iptables {
            context: e.command,
            reason: e.reason,
        }
    }
}

/// A one-line summary per kind, the details carry the specifics.
fn short_msg(e: &Error) -> &'static str {
    match e {
        Error::IncompatibleVersion { .. } => "incompatible CNI version",
        Error::UnsupportedField { .. } => "unsupported field in network configuration",
        Error::UnknownContainer { .. } => "container unknown or does not exist",
        Error::InvalidEnv { .. } => "invalid environment variables",
        Error::Io { .. } => "I/O failure",
        Error::Decode { .. } => "failed to decode content",
        Error::InvalidConfig(_) => "invalid network config",
        Error::TryAgain(_) => "try again later",
        Error::NotAvailable(_) => "plugin not available",
        Error::IpExhausted { .. } => "IP address range exhausted",
        Error::AlreadyAttached { .. } => "container already attached",
        Error::Netlink { .. } => "netlink request failed",
        Error::Iptables { .. } => "iptables failed",
        Error::CheckFailed(_) => "attachment check failed",
        Error::IpamDelegate { .. } => "delegated IPAM plugin failed",
        Error::Delegated { .. } => "delegated plugin failed",
    }
}

/// The error object of the CNI spec, written to stdout with a non-zero exit.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ErrorJson {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhaustion_is_a_plugin_code_with_clear_message() {
        let e = Error::IpExhausted {
            network: "ekube".into(),
            subnet: "10.244.1.0/29".into(),
            used: 5,
        };
        let j = e.to_json("1.0.0");
        assert!(j.code >= 100);
        assert!(j.details.contains("10.244.1.0/29"), "{j:?}");
        let text = serde_json::to_value(&j).unwrap();
        assert_eq!(text["cniVersion"], "1.0.0");
        assert_eq!(text["code"], 100);
    }

    #[test]
    fn spec_codes() {
        assert_eq!(
            Error::Decode {
                what: "x".into(),
                reason: "y".into()
            }
            .code(),
            6
        );
        assert_eq!(
            Error::InvalidEnv {
                var: "CNI_NETNS",
                reason: "y".into()
            }
            .code(),
            4
        );
        assert_eq!(Error::InvalidConfig("x".into()).code(), 7);
    }
}
