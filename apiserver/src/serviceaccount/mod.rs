//! ServiceAccount identities: tokens signed by the cluster's `sa.key` ([`keys`], [`jwt`]),
//! issued through the TokenRequest subresource ([`request`]) and accepted as bearer tokens
//! ([`token`]) while the ServiceAccount and the object the token is bound to exist; and the
//! admission step that gives pods their ServiceAccount and its token volume ([`admission`]).

pub mod admission;
pub mod jwt;
pub mod keys;
pub mod request;
pub mod token;

use std::sync::Arc;

use ekube_api::resources;
use serde_json::Value;

use crate::storage::Storage;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("service account key: {0}")]
    Key(String),
    #[error(transparent)]
    Pki(#[from] crate::pki::Error),
    /// A token of this issuer that is not (or no longer) valid; answered 401.
    #[error("invalid service account token: {0}")]
    Invalid(String),
    #[error("looking up {what}: {source}")]
    Lookup {
        what: String,
        source: crate::storage::Error,
    },
}

/// What signs and checks ServiceAccount tokens.
pub struct ServiceAccounts {
    pub keys: keys::Keys,
    /// `--service-account-issuer`: the first names new tokens, every one is accepted.
    pub issuers: Vec<String>,
    /// `--api-audiences`: a token must be meant for one of them.
    pub api_audiences: Vec<String>,
    /// `--service-account-max-token-expiration`, in seconds.
    pub max_expiration: Option<i64>,
    /// `--service-account-extend-token-expiration`: kubelet-requested tokens (3607 s) live a
    /// year, with `warnafter` at the requested expiry, as upstream eases the move to bound tokens.
    pub extend_expiration: bool,
    store: Arc<dyn Storage>,
}

impl ServiceAccounts {
    pub fn new(
        keys: keys::Keys,
        issuers: Vec<String>,
        api_audiences: Vec<String>,
        store: Arc<dyn Storage>,
    ) -> Self {
        let api_audiences = if api_audiences.is_empty() {
            issuers.clone()
        } else {
            api_audiences
        };
        Self {
            keys,
            issuers,
            api_audiences,
            max_expiration: None,
            extend_expiration: true,
            store,
        }
    }

    /// The issuer new tokens name.
    pub fn issuer(&self) -> &str {
        self.issuers.first().map_or("", String::as_str)
    }

    /// The stored object `<plural>/<name>` of the core group, if any.
    async fn lookup(
        &self,
        plural: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, Error> {
        lookup(self.store.as_ref(), plural, ns, name).await
    }
}

/// The stored core-group object `<plural>/<name>` in `ns`, if any.
pub(crate) async fn lookup(
    store: &dyn Storage,
    plural: &str,
    ns: Option<&str>,
    name: &str,
) -> Result<Option<Value>, Error> {
    let info = resources::find("", "v1", plural).expect("a core resource");
    let kv = store
        .get(&crate::registry::key(info, ns, name))
        .await
        .map_err(|source| Error::Lookup {
            what: format!(
                "{plural} {}{name}",
                ns.map(|n| format!("{n}/")).unwrap_or_default()
            ),
            source,
        })?;
    Ok(kv.map(|kv| crate::registry::decode(info, &kv)))
}

/// `metadata.uid` of an object.
pub(crate) fn uid_of(obj: &Value) -> &str {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
}
