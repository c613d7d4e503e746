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
//!     auth: {username: u, password: p}      # or auth: <base64 user:pass>, or identitytoken
//!     tls: {ca_file: /etc/ssl/mirror.pem, insecure_skip_verify: false}
//!   secure.example.com:
//!     tls: {cert_file: /etc/ssl/node.pem, key_file: /etc/ssl/node-key.pem}
//! ```
//!
//! As in k3s (containerd), a registry's mirror endpoints are tried in order and then the
//! registry's own default endpoint, always, last (`docker.io` is `index.docker.io`); the `"*"`
//! entry serves registries that have no entry of their own. Rewrites (first matching rule, in
//! file order) change the repository on mirror endpoints only, never on the default endpoint.
//! `configs` are keyed by the host an endpoint names (`"*"` for any host without its own).
//! An `identitytoken` (the OAuth2 refresh token `docker login` stores for registries that
//! issue them) is traded for a pull token at each pull; a client certificate (`cert_file` with
//! `key_file`) is presented through the image store's relay (`image::relay`). Both are read and
//! checked at start-up, so a missing or mismatched file stops the agent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use oci_client::Reference;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
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
    #[serde(alias = "identity_token")]
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

/// How a pull proves who asks for it.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// HTTP basic credentials, also used to fetch a bearer token where the registry asks.
    Basic(String, String),
    /// An OAuth2 refresh token, traded at the registry's token service for a pull token.
    IdentityToken(String),
    /// A registry token, sent as it is (CRI `registry_token`).
    RegistryToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Basic(user, _) => f.debug_tuple("Basic").field(user).finish_non_exhaustive(),
            Self::IdentityToken(_) => f.write_str("IdentityToken(..)"),
            Self::RegistryToken(_) => f.write_str("RegistryToken(..)"),
        }
    }
}

/// How to make TLS connections to one host.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// Extra CA certificates (PEM).
    ca: Vec<Vec<u8>>,
    insecure_skip_verify: bool,
    /// The client certificate chain followed by its key (PEM), when the host asks for one.
    identity: Option<Vec<u8>>,
}

impl Tls {
    /// Whether connections present a client certificate.
    pub fn has_identity(&self) -> bool {
        self.identity.is_some()
    }

    /// An HTTP client that trusts and presents what these settings say; it follows redirects
    /// only when `follow_redirects`.
    pub fn http_client(&self, follow_redirects: bool) -> Result<reqwest::Client, String> {
        let mut builder = reqwest::Client::builder()
            .danger_accept_invalid_certs(self.insecure_skip_verify)
            .connect_timeout(std::time::Duration::from_secs(30))
            .user_agent(concat!("ekube/", env!("CARGO_PKG_VERSION")));
        for pem in &self.ca {
            builder = builder.tls_certs_merge(
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| e.to_string())?,
            );
        }
        if let Some(pem) = &self.identity {
            builder =
                builder.identity(reqwest::Identity::from_pem(pem).map_err(|e| e.to_string())?);
        }
        if !follow_redirects {
            builder = builder.redirect(reqwest::redirect::Policy::none());
        }
        builder.build().map_err(|e| e.to_string())
    }
}

/// Credentials and TLS settings for one host.
#[derive(Debug, Clone, Default)]
struct HostSettings {
    auth: Option<Credential>,
    tls: Tls,
}

/// One place to try a pull: the endpoint, the reference as sent there, and how to talk to it.
#[derive(Debug)]
pub struct Attempt {
    pub endpoint: Endpoint,
    /// The reference with the endpoint as its mirror (unless it is the default endpoint) and the
    /// repository rewritten.
    pub reference: Reference,
    pub credential: Option<Credential>,
    pub tls: Tls,
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
            accept_invalid_certificates: self.tls.insecure_skip_verify,
            extra_root_certificates: self
                .tls
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
                settings.tls = tls(t).map_err(fail)?;
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
        pull_secret: Option<&Credential>,
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
        pull_secret: Option<&Credential>,
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
        Attempt {
            endpoint,
            reference,
            credential: settings.auth.or_else(|| pull_secret.cloned()),
            tls: settings.tls,
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

/// The credential of an `auth` section: `username`/`password`, or `auth` (the base64 of
/// `username:password` as docker writes it), or an `identitytoken` (docker writes the
/// username `<token>` beside it, which says nothing and is allowed).
fn credentials(a: AuthFile) -> Result<Credential, String> {
    match (a.username, a.password, a.auth, a.identitytoken) {
        (Some(u), Some(p), None, None) => Ok(Credential::Basic(u, p)),
        (None, None, Some(encoded), None) => {
            decode_basic(&encoded).map(|(u, p)| Credential::Basic(u, p))
        }
        (_, None, None, Some(token)) if !token.is_empty() => Ok(Credential::IdentityToken(token)),
        _ => Err(
            "auth needs either username and password, auth (base64 of user:password), \
                  or identitytoken"
                .into(),
        ),
    }
}

/// The TLS settings of a `tls` section, its files read and checked.
fn tls(t: TlsFile) -> Result<Tls, String> {
    let read = |key: &str, path: &Path| {
        std::fs::read(path).map_err(|e| format!("tls.{key} {}: {e}", path.display()))
    };
    let mut settings = Tls {
        insecure_skip_verify: t.insecure_skip_verify,
        ..Tls::default()
    };
    if let Some(ca) = &t.ca_file {
        let pem = read("ca_file", ca)?;
        reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("tls.ca_file {}: {e}", ca.display()))?;
        settings.ca.push(pem);
    }
    match (&t.cert_file, &t.key_file) {
        (Some(cert), Some(key)) => {
            let mut pem = read("cert_file", cert)?;
            pem.push(b'\n');
            pem.extend(read("key_file", key)?);
            check_identity(&pem).map_err(|e| {
                format!(
                    "tls.cert_file {} with tls.key_file {}: {e}",
                    cert.display(),
                    key.display()
                )
            })?;
            settings.identity = Some(pem);
        }
        (None, None) => {}
        _ => return Err("tls.cert_file and tls.key_file go together".into()),
    }
    Ok(settings)
}

/// Checks that `pem` holds a certificate chain and the private key of its first certificate,
/// so that a wrong pair stops the agent at start rather than failing every pull.
fn check_identity(pem: &[u8]) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("no private key: {e}"))?;
    rustls::sign::CertifiedKey::from_der(certs, key, &rustls::crypto::ring::default_provider())
        .map_err(|e| format!("the key does not fit the certificate: {e}"))?;
    reqwest::Identity::from_pem(pem).map_err(|e| e.to_string())?;
    Ok(())
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
