//! Authentication: who is asking, as upstream's authenticator chain decides it. A verified
//! X.509 client certificate (user = CN, groups = O) wins; otherwise a bearer token is offered to
//! each [`TokenAuthenticator`] in turn (`--token-auth-file` first, then whatever else the server
//! plugs in). A request with no credentials is `system:anonymous` in `system:unauthenticated`
//! when `--anonymous-auth` is on, else 401; a bearer token nobody accepts is always 401, never
//! anonymous (upstream's fail-on-error union). Every authenticated user is also in
//! `system:authenticated`. Authorization decides afterwards what anyone may do, including the
//! anonymous user; [`impersonate`] then swaps in the user of `Impersonate-*` headers.

pub mod impersonate;
pub mod tokenfile;

use std::sync::Arc;

use http::HeaderMap;

pub use tokenfile::TokenFile;

pub use ekube_api::user::{ANONYMOUS, AUTHENTICATED, UNAUTHENTICATED, User, bearer_token};
/// Members may do anything, whatever the authorizers say (upstream's privileged group).
pub const MASTERS: &str = "system:masters";

/// Why a presented token was refused outright (as opposed to "not one of mine").
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub String);

/// One way of turning a bearer token into a user. `Ok(None)` means "not a token I know", so the
/// next authenticator is asked; `Err` means the token is recognisably this kind but invalid
/// (expired, bad signature) and the request is refused.
#[async_trait::async_trait]
pub trait TokenAuthenticator: Send + Sync {
    async fn authenticate_token(&self, token: &str) -> Result<Option<User>, TokenError>;
}

/// The chain of authenticators the server runs on every request.
pub struct Authenticator {
    tokens: Vec<Arc<dyn TokenAuthenticator>>,
    /// `--anonymous-auth`.
    anonymous: bool,
}

/// The answer to a request that could not be authenticated: upstream's 401.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials and anonymous requests are disabled")]
    NoCredentials,
    #[error("the bearer token was not accepted")]
    UnknownToken,
    #[error("invalid bearer token: {0}")]
    InvalidToken(#[from] TokenError),
}

impl Authenticator {
    pub fn new(anonymous: bool) -> Self {
        Self {
            tokens: Vec::new(),
            anonymous,
        }
    }

    /// Appends a token authenticator; earlier ones are asked first.
    pub fn with_tokens(mut self, authenticator: Arc<dyn TokenAuthenticator>) -> Self {
        self.tokens.push(authenticator);
        self
    }

    /// Who sent a request that arrived with `certificate_user` (from the TLS handshake, already
    /// verified against the cluster CA) and `headers`.
    pub async fn authenticate(
        &self,
        certificate_user: Option<&User>,
        headers: &HeaderMap,
    ) -> Result<User, AuthError> {
        if let Some(user) = certificate_user {
            return Ok(user.clone().with_authenticated_group());
        }
        let Some(token) = bearer_token(headers) else {
            return if self.anonymous {
                Ok(User::anonymous())
            } else {
                Err(AuthError::NoCredentials)
            };
        };
        self.authenticate_token(token)
            .await?
            .ok_or(AuthError::UnknownToken)
    }

    /// Who `token` belongs to, asking each token authenticator in turn (requests and
    /// TokenReviews both come here): `Ok(None)` when none knows it.
    pub async fn authenticate_token(&self, token: &str) -> Result<Option<User>, TokenError> {
        for authenticator in &self.tokens {
            if let Some(user) = authenticator.authenticate_token(token).await? {
                return Ok(Some(user.with_authenticated_group()));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    fn chain(anonymous: bool) -> Authenticator {
        let mut file = TokenFile::default();
        file.insert(
            "abc".into(),
            User {
                name: "alice".into(),
                groups: vec!["dev".into()],
                ..User::default()
            },
        );
        Authenticator::new(anonymous).with_tokens(Arc::new(file))
    }

    #[tokio::test]
    async fn chain_order_and_groups() {
        let a = chain(true);
        let alice = a
            .authenticate(None, &headers(Some("Bearer abc")))
            .await
            .unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.groups, ["dev", AUTHENTICATED]);
        let anon = a.authenticate(None, &headers(None)).await.unwrap();
        assert_eq!(
            (anon.name.as_str(), anon.groups.as_slice()),
            (ANONYMOUS, &[UNAUTHENTICATED.to_string()][..])
        );
        // A token nobody knows is refused even with anonymous on.
        assert!(matches!(
            a.authenticate(None, &headers(Some("Bearer nope"))).await,
            Err(AuthError::UnknownToken)
        ));
        let cert = User {
            name: "bob".into(),
            ..User::default()
        };
        let bob = a
            .authenticate(Some(&cert), &headers(Some("Bearer abc")))
            .await
            .unwrap();
        assert_eq!(
            (bob.name.as_str(), bob.groups.as_slice()),
            ("bob", &[AUTHENTICATED.to_string()][..])
        );
        assert!(matches!(
            chain(false).authenticate(None, &headers(None)).await,
            Err(AuthError::NoCredentials)
        ));
    }
}
