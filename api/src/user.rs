//! Who a request comes from, as `authentication.k8s.io/v1` UserInfo describes one: the user of
//! a verified client certificate (CN, with every O a group), the anonymous user, the
//! `system:authenticated` group every authenticated user joins, and the bearer token of a
//! request. Shared by the apiserver's authenticators and the kubelet API's.

use std::collections::BTreeMap;

use http::{HeaderMap, header};
use rustls::pki_types::CertificateDer;

/// Every authenticated user is in this group.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The anonymous user is in this group.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
pub const ANONYMOUS: &str = "system:anonymous";

/// An authenticated user, as `authentication.k8s.io/v1` UserInfo describes one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// Unique across time (a ServiceAccount's or token's uid); empty when unknown.
    pub uid: String,
    pub groups: Vec<String>,
    /// Further attributes (e.g. `authentication.kubernetes.io/pod-name` of a bound token).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    pub fn from_certificate(cert: &CertificateDer<'_>) -> Option<Self> {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
        let subject = parsed.subject();
        let name = subject
            .iter_common_name()
            .next()?
            .as_str()
            .ok()?
            .to_string();
        let groups = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect();
        Some(Self {
            name,
            groups,
            ..Self::default()
        })
    }

    /// The anonymous user of a request without credentials.
    pub fn anonymous() -> Self {
        Self {
            name: ANONYMOUS.into(),
            groups: vec![UNAUTHENTICATED.into()],
            ..Self::default()
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// Adds `system:authenticated` unless present, as upstream's group adder does.
    pub fn with_authenticated_group(mut self) -> Self {
        if !self.in_group(AUTHENTICATED) {
            self.groups.push(AUTHENTICATED.into());
        }
        self
    }
}

/// The token of an `Authorization: Bearer <token>` header, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
