//! Registry mirrors, rewrites, credentials and TLS from a k3s-compatible `registries.yaml`
//! (flag `--registries-config`, default `/etc/ekube/registries.yaml`), read once at start-up:
//! a changed file takes effect when the agent restarts, as with k3s.
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["http://192.168.64.1:5000", "https://mirror.example.com"]
//!     rewrite: {"^library/(.*)": "hub/$1"}
//!   "*":
//!     endpoint: ["https://catch-all.example.com"]
//! configs:
//!   mirror.example.com:
//!     auth: {username: u, password: p}      # or auth: <base64 user:pass>
//!     tls: {ca_file: /etc/ssl/mirror.pem, insecure_skip_verify: false}
//! ```
//!
//! As in k3s (containerd), a registry's mirror endpoints are tried in order and then the
//! registry's own default endpoint, always, last (`docker.io` is `index.docker.io`); the `"*"`
//! entry serves registries that have no entry of their own. Rewrites (first matching rule, in
//! file order) change the repository on mirror endpoints only, never on the default endpoint.
//! `configs` are keyed by the host an endpoint names (`"*"` for any host without its own).
//! `identitytoken` and client certificates (`cert_file`/`key_file`) are refused at start-up:
//! the registry client here cannot present them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use oci_client::Reference;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

/// Where the file is read from unless `--registries-config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/ekube/registries.yaml";

/// A `registries.yaml` that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("registries config {path}{}: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    pub path: PathBuf,
    /// 1-based line of the fault, when it has one.
    pub line: Option<usize>,
    pub reason: String,
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    mirrors: BTreeMap<String, MirrorFile>,
    #[serde(default)]
    configs: BTreeMap<String, HostFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MirrorFile {
    #[serde(default)]
    endpoint: Vec<String>,
    /// Kept as a mapping so that rules stay in file order.
    #[serde(default)]
    rewrite: serde_yaml::Mapping,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostFile {
    auth: Option<AuthFile>,
    tls: Option<TlsFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    username: Option<String>,
    password: Option<String>,
    auth: Option<String>,
    identitytoken: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_verify: bool,
}

/// A registry endpoint: where requests go and whether they go in plain HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`.
    pub host: String,
    pub plain_http: bool,
}

impl Endpoint {
    /// `http://host` or `https://host`, as written in the file.
    pub fn url(&self) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://{}", self.host)
    }

    fn parse(s: &str) -> Result<Self, String> {
        let (plain_http, rest) = if let Some(r) = s.strip_prefix("http://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (false, r)
        } else if s.contains("://") {
            return Err(format!(
                "endpoint {s:?}: only http:// and https:// are supported"
            ));
        } else {
            (false, s)
        };
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() {
            return Err(format!("endpoint {s:?} names no host"));
        }
        if !matches!(path.trim_end_matches('/'), "" | "v2") {
            return Err(format!(
                "endpoint {s:?}: a path other than /v2 is not supported; name the host only"
            ));
        }
        Ok(Self {
            host: host.to_owned(),
            plain_http,
        })
    }
}

/// A repository rewrite rule.
#[derive(Debug, Clone)]
struct Rewrite {
    pattern: regex::Regex,
    replacement: String,
}

#[derive(Debug, Clone, Default)]
struct Mirror {
    endpoints: Vec<Endpoint>,
    rewrites: Vec<Rewrite>,
}

/// Credentials and TLS settings for one host.
#[derive(Debug, Clone, Default)]
struct HostSettings {
    auth: Option<(String, String)>,
    ca: Vec<Vec<u8>>,
    insecure_skip_verify: bool,
}

/// One place to try a pull: the endpoint, the reference as sent there, and how to talk to it.
#[derive(Debug)]
pub struct Attempt {
    pub endpoint: Endpoint,
    /// The reference with the endpoint as its mirror (unless it is the default endpoint) and the
    /// repository rewritten.
    pub reference: Reference,
    pub auth: RegistryAuth,
    ca: Vec<Vec<u8>>,
    insecure_skip_verify: bool,
}

impl Attempt {
    /// A registry client for this endpoint.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            protocol: if self.endpoint.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: self.insecure_skip_verify,
            extra_root_certificates: self
                .ca
                .iter()
                .map(|data| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: data.clone(),
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// The validated registry configuration.
#[derive(Debug, Clone, Default)]
pub struct Registries {
    mirrors: BTreeMap<String, Mirror>,
    hosts: BTreeMap<String, HostSettings>,
    /// Registries (`host:port`) whose default endpoint is plain HTTP (`--insecure-registry`).
    insecure: Vec<String>,
}

impl Registries {
    /// Reads `path`; a missing file means no mirrors and no credentials.
    pub fn load(path: &Path, insecure: Vec<String>) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(path = %path.display(), "no registries config: pulling from registries directly");
                return Ok(Self {
                    insecure,
                    ..Self::default()
                });
            }
            Err(e) => {
                return Err(ConfigError {
                    path: path.to_owned(),
                    line: None,
                    reason: format!("cannot read it: {e}"),
                });
            }
        };
        let registries = Self::parse(&text).map_err(|(line, reason)| ConfigError {
            path: path.to_owned(),
            line,
            reason,
        })?;
        Ok(registries.with_insecure(insecure))
    }

    /// The same configuration with `insecure` registries reached over plain HTTP.
    pub fn with_insecure(self, insecure: Vec<String>) -> Self {
        Self { insecure, ..self }
    }

    /// Parses the text of a `registries.yaml`; errors carry the line when there is one.
    pub(crate) fn parse(text: &str) -> Result<Self, (Option<usize>, String)> {
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_yaml::from_str(text)
                .map_err(|e| (e.location().map(|l| l.line()), e.to_string()))?
        };
        // Semantic faults name the line their key is on.
        let line_of = |key: &str| {
            text.lines()
                .position(|l| {
                    let l = l.trim_start();
                    l.starts_with(key)
                        || l.starts_with(&format!("\"{key}\""))
                        || l.starts_with(&format!("'{key}'"))
                })
                .map(|i| i + 1)
        };
        let mut mirrors = BTreeMap::new();
        for (registry, m) in file.mirrors {
            let fail =
                |reason: String| (line_of(&registry), format!("mirrors.{registry}: {reason}"));
            let endpoints = m
                .endpoint
                .iter()
                .map(|e| Endpoint::parse(e))
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)?;
            let mut rewrites = Vec::new();
            for (k, v) in &m.rewrite {
                let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
                    return Err(fail("rewrite rules map a regex to a string".into()));
                };
                let pattern = regex::Regex::new(k).map_err(|e| {
                    (
                        line_of(k).or(line_of(&registry)),
                        format!("mirrors.{registry}.rewrite: {e}"),
                    )
                })?;
                rewrites.push(Rewrite {
                    pattern,
                    replacement: v.to_owned(),
                });
            }
            mirrors.insert(
                registry,
                Mirror {
                    endpoints,
                    rewrites,
                },
            );
        }
        let mut hosts = BTreeMap::new();
        for (host, h) in file.configs {
            let fail = |reason: String| (line_of(&host), format!("configs.{host}: {reason}"));
            let mut settings = HostSettings::default();
            if let Some(a) = h.auth {
                settings.auth = Some(credentials(a).map_err(fail)?);
            }
            if let Some(t) = h.tls {
                if t.cert_file.is_some() || t.key_file.is_some() {
                    return Err(fail(
                        "tls.cert_file/key_file (client certificates) are not supported".into(),
                    ));
                }
                if let Some(ca) = &t.ca_file {
                    let pem = std::fs::read(ca)
                        .map_err(|e| fail(format!("tls.ca_file {}: {e}", ca.display())))?;
                    settings.ca.push(pem);
                }
                settings.insecure_skip_verify = t.insecure_skip_verify;
            }
            hosts.insert(host, settings);
        }
        Ok(Self {
            mirrors,
            hosts,
            insecure: Vec::new(),
        })
    }

    /// Where to try pulling `reference`, in order; `pull_secret` (from the pod's
    /// `imagePullSecrets`) is used wherever the file gives no credentials for the host.
    pub fn attempts(
        &self,
        reference: &Reference,
        pull_secret: Option<&(String, String)>,
    ) -> Vec<Attempt> {
        let registry = reference.registry();
        let mirror = self.mirrors.get(registry).or_else(|| self.mirrors.get("*"));
        let mut out = Vec::new();
        for endpoint in mirror.map(|m| m.endpoints.as_slice()).unwrap_or_default() {
            let repository = mirror
                .and_then(|m| {
                    m.rewrites
                        .iter()
                        .find(|r| r.pattern.is_match(reference.repository()))
                })
                .map(|r| {
                    r.pattern
                        .replace(reference.repository(), r.replacement.as_str())
                        .into_owned()
                })
                .unwrap_or_else(|| reference.repository().to_owned());
            let mut sent = with_repository(reference, repository);
            sent.set_mirror_registry(endpoint.host.clone());
            out.push(self.attempt(endpoint.clone(), sent, pull_secret));
        }
        let default = Endpoint {
            host: reference.resolve_registry().to_owned(),
            plain_http: self.insecure.iter().any(|r| r == registry),
        };
        out.push(self.attempt(default, reference.clone(), pull_secret));
        out
    }

    fn attempt(
        &self,
        endpoint: Endpoint,
        reference: Reference,
        pull_secret: Option<&(String, String)>,
    ) -> Attempt {
        let settings = self
            .hosts
            .get(&endpoint.host)
            .or_else(|| {
                // The default endpoint of docker.io is configured under its registry name.
                (endpoint.host == reference.resolve_registry() && reference.namespace().is_none())
                    .then(|| self.hosts.get(reference.registry()))
                    .flatten()
            })
            .or_else(|| self.hosts.get("*"))
            .cloned()
            .unwrap_or_default();
        let auth = match settings.auth.as_ref().or(pull_secret) {
            Some((user, pass)) => RegistryAuth::Basic(user.clone(), pass.clone()),
            None => RegistryAuth::Anonymous,
        };
        Attempt {
            endpoint,
            reference,
            auth,
            ca: settings.ca,
            insecure_skip_verify: settings.insecure_skip_verify,
        }
    }
}

/// `reference` with another repository, tag or digest kept.
fn with_repository(reference: &Reference, repository: String) -> Reference {
    let registry = reference.registry().to_owned();
    match (reference.tag(), reference.digest()) {
        (_, Some(d)) => Reference::with_digest(registry, repository, d.to_owned()),
        (t, None) => Reference::with_tag(registry, repository, t.unwrap_or("latest").to_owned()),
    }
}

/// Username and password from an `auth` section (`username`/`password`, or `auth`, the
/// base64 of `username:password` as docker writes it).
fn credentials(a: AuthFile) -> Result<(String, String), String> {
    if a.identitytoken.is_some() {
        return Err("auth.identitytoken is not supported; give username and password".into());
    }
    match (a.username, a.password, a.auth) {
        (Some(u), Some(p), None) => Ok((u, p)),
        (None, None, Some(encoded)) => decode_basic(&encoded),
        _ => {
            Err("auth needs either username and password, or auth (base64 of user:password)".into())
        }
    }
}

/// Decodes docker's `auth` value, base64 of `username:password`.
pub fn decode_basic(encoded: &str) -> Result<(String, String), String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| format!("auth is not base64: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "auth is not UTF-8".to_owned())?;
    let (u, p) = text
        .split_once(':')
        .ok_or_else(|| "auth does not decode to user:password".to_owned())?;
    Ok((u.to_owned(), p.to_owned()))
}

#[cfg(test)]
mod tests;
