//! Bootstrap tokens, as kubeadm and upstream's bootstrap authenticator define them: a bearer
//! token `<id>.<secret>` (`[a-z0-9]{6}.[a-z0-9]{16}`) is valid while the `kube-system` Secret
//! `bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token` holds that secret, allows
//! `usage-bootstrap-authentication`, and has not passed its `expiration`. The user is
//! `system:bootstrap:<id>` in `system:bootstrappers` plus the Secret's `auth-extra-groups`.
//! Such Secrets are also checked when written, so a malformed one is refused up front.

use std::sync::Arc;

use serde_json::Value;

use crate::auth::User;
use crate::errors::Cause;
use crate::storage::Storage;

pub use ekube_api::bootstrap::SECRET_TYPE;
use ekube_api::bootstrap::{
    GROUP, NAMESPACE, Token, is_extra_group, is_token_id, is_token_secret, secret_data, secret_name,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A well-formed token that is not (or no longer) valid; answered 401.
    #[error("invalid bootstrap token: {0}")]
    Invalid(String),
    #[error(transparent)]
    Lookup(#[from] crate::serviceaccount::Error),
}

/// Field problems of a bootstrap-token Secret, as `validation` reports them.
pub fn validate(secret: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let data = secret_data(secret);
    let id = data.get("token-id").map(String::as_str).unwrap_or_default();
    let id_ok = is_token_id(id);
    if !id_ok {
        causes.push(Cause::invalid(
            "data[token-id]",
            format!("{id:?}"),
            "must be 6 characters of [a-z0-9]",
        ));
    }
    let token_secret = data
        .get("token-secret")
        .map(String::as_str)
        .unwrap_or_default();
    if !is_token_secret(token_secret) {
        causes.push(Cause::invalid(
            "data[token-secret]",
            "\"<redacted>\"",
            "must be 16 characters of [a-z0-9]",
        ));
    }
    let name = secret
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if id_ok && name != secret_name(id) {
        causes.push(Cause::invalid(
            "metadata.name",
            format!("{name:?}"),
            &format!("must be \"{}\" for token-id {id:?}", secret_name(id)),
        ));
    }
    if let Some(exp) = data.get("expiration")
        && ekube_api::time::parse(exp).is_none()
    {
        causes.push(Cause::invalid(
            "data[expiration]",
            format!("{exp:?}"),
            "must be an RFC 3339 time",
        ));
    }
    for g in data
        .get("auth-extra-groups")
        .into_iter()
        .flat_map(|g| g.split(','))
        .filter(|g| !is_extra_group(g))
    {
        causes.push(Cause::invalid(
            "data[auth-extra-groups]",
            format!("{g:?}"),
            "must match system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]",
        ));
    }
    causes
}

/// Authenticates bootstrap tokens against the Secrets in the store.
pub struct BootstrapTokens {
    store: Arc<dyn Storage>,
}

impl BootstrapTokens {
    pub fn new(store: Arc<dyn Storage>) -> Self {
        Self { store }
    }

    /// `Ok(None)`: not a bootstrap token; `Err`: one that is not valid.
    pub async fn authenticate(&self, token: &str) -> Result<Option<User>, Error> {
        let Ok(Token {
            id,
            secret: token_secret,
        }) = Token::parse(token)
        else {
            return Ok(None);
        };
        let name = secret_name(&id);
        let invalid = |why: &str| Err(Error::Invalid(format!("{NAMESPACE}/{name}: {why}")));
        let Some(secret) =
            crate::serviceaccount::lookup(self.store.as_ref(), "secrets", Some(NAMESPACE), &name)
                .await?
        else {
            return invalid("no such secret");
        };
        user_of(
            &secret,
            &id,
            &token_secret,
            ekube_api::time::Timestamp::now(),
        )
        .or_else(|why| invalid(&why))
    }
}

/// The user a bootstrap-token Secret grants to `<id>.<token_secret>` at `now`.
fn user_of(
    secret: &Value,
    id: &str,
    token_secret: &str,
    now: ekube_api::time::Timestamp,
) -> Result<Option<User>, String> {
    if secret.pointer("/metadata/deletionTimestamp").is_some() {
        return Err("the secret is being deleted".into());
    }
    if secret["type"] != SECRET_TYPE {
        return Err(format!("the secret is not of type {SECRET_TYPE}"));
    }
    let data = secret_data(secret);
    let stored = data
        .get("token-secret")
        .map(String::as_str)
        .unwrap_or_default();
    // Compared in constant time: how much of a guess matched must not show in the timing.
    let same = stored.len() == token_secret.len()
        && stored
            .bytes()
            .zip(token_secret.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0;
    if !same || data.get("token-id").map(String::as_str) != Some(id) {
        return Err("the token does not match".into());
    }
    if let Some(exp) = data.get("expiration") {
        match ekube_api::time::parse(exp) {
            Some(t) if t > now => {}
            Some(_) => return Err(format!("the token expired at {exp}")),
            None => return Err(format!("expiration {exp:?} is not an RFC 3339 time")),
        }
    }
    if data
        .get("usage-bootstrap-authentication")
        .map(String::as_str)
        != Some("true")
    {
        return Err("the token may not be used for authentication".into());
    }
    let mut groups = vec![GROUP.to_string()];
    for g in data
        .get("auth-extra-groups")
        .into_iter()
        .flat_map(|g| g.split(','))
    {
        if !is_extra_group(g) {
            return Err(format!(
                "auth-extra-groups: {g:?} is not a bootstrappers group"
            ));
        }
        if !groups.iter().any(|have| have == g) {
            groups.push(g.to_string());
        }
    }
    groups.push("system:authenticated".into());
    Ok(Some(User {
        name: format!("system:bootstrap:{id}"),
        groups,
        ..User::default()
    }))
}

#[async_trait::async_trait]
impl crate::auth::TokenAuthenticator for BootstrapTokens {
    async fn authenticate_token(
        &self,
        token: &str,
    ) -> Result<Option<User>, crate::auth::TokenError> {
        self.authenticate(token).await.map_err(|e| {
            if !matches!(e, Error::Invalid(_)) {
                tracing::warn!(error = %e, "authenticating a bearer token");
            }
            crate::auth::TokenError(e.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret(extra: Value) -> Value {
        let mut s = json!({
            "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
            "type": SECRET_TYPE,
            "stringData": {"token-id": "abcdef", "token-secret": "0123456789abcdef",
                "usage-bootstrap-authentication": "true"},
        });
        for (k, v) in extra.as_object().unwrap() {
            s["stringData"][k] = v.clone();
        }
        s
    }

    #[test]
    fn user_groups_expiry_and_usage() {
        let now = ekube_api::time::Timestamp::now();
        let s =
            secret(json!({"auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token"}));
        let user = user_of(&s, "abcdef", "0123456789abcdef", now)
            .unwrap()
            .unwrap();
        assert_eq!(user.name, "system:bootstrap:abcdef");
        assert_eq!(
            user.groups,
            [
                "system:bootstrappers",
                "system:bootstrappers:kubeadm:default-node-token",
                "system:authenticated"
            ]
        );
        assert!(
            user_of(&s, "abcdef", "0123456789abcdee", now)
                .unwrap_err()
                .contains("does not match")
        );

        let expired = secret(json!({"expiration": "2020-01-01T00:00:00Z"}));
        assert!(
            user_of(&expired, "abcdef", "0123456789abcdef", now)
                .unwrap_err()
                .contains("expired")
        );
        let later = secret(json!({"expiration": "2999-01-01T00:00:00Z"}));
        assert!(user_of(&later, "abcdef", "0123456789abcdef", now).is_ok());
        let unusable = secret(json!({"usage-bootstrap-authentication": "false"}));
        assert!(user_of(&unusable, "abcdef", "0123456789abcdef", now).is_err());
        let mut opaque = secret(json!({}));
        opaque["type"] = json!("Opaque");
        assert!(user_of(&opaque, "abcdef", "0123456789abcdef", now).is_err());
        let bad_group = secret(json!({"auth-extra-groups": "system:masters"}));
        assert!(user_of(&bad_group, "abcdef", "0123456789abcdef", now).is_err());
    }

    #[test]
    fn malformed_secrets_are_invalid() {
        assert!(validate(&secret(json!({}))).is_empty());
        let fields = |s: &Value| validate(s).into_iter().map(|c| c.field).collect::<Vec<_>>();
        assert_eq!(
            fields(&secret(json!({"token-id": "ABC"}))),
            ["data[token-id]"]
        );
        assert_eq!(
            fields(&secret(json!({"token-secret": "short"}))),
            ["data[token-secret]"]
        );
        assert_eq!(
            fields(&secret(json!({"token-id": "zzzzzz"}))),
            ["metadata.name"]
        );
        assert_eq!(
            fields(&secret(json!({"expiration": "tomorrow"}))),
            ["data[expiration]"]
        );
        assert_eq!(
            fields(&secret(json!({"auth-extra-groups": "admins"}))),
            ["data[auth-extra-groups]"]
        );
    }
}
