//! The bearer-token authenticators, in order: static tokens (`--token-auth-file`), bootstrap
//! tokens, ServiceAccount tokens. Requests and TokenReviews both go through [`authenticate`].

use crate::ApiServer;
use crate::auth::User;
use crate::errors::ApiError;

/// Who `token` belongs to. `Ok(None)`: no authenticator knows it; `Err`: a token an
/// authenticator recognised as its own but refused (expired, unknown key, deleted pod…), with
/// why, or a failure to look it up.
pub async fn authenticate(api: &ApiServer, token: &str) -> Result<Option<User>, ApiError> {
    if let Some(user) = api.tokens.lookup(token) {
        return Ok(Some(user.clone()));
    }
    let refused = |why: String| {
        tracing::info!(reason = %why, "bearer token refused");
        ApiError::unauthorized_because(why)
    };
    match api.bootstrap_tokens.authenticate(token).await {
        Ok(Some(user)) => return Ok(Some(user)),
        Ok(None) => {}
        Err(crate::bootstrap_token::Error::Invalid(why)) => return Err(refused(why)),
        Err(e) => return Err(ApiError::internal(e)),
    }
    match api.service_accounts.authenticate(token).await {
        Ok(user) => Ok(user),
        Err(crate::serviceaccount::Error::Invalid(why)) => Err(refused(why)),
        Err(e) => Err(ApiError::internal(e)),
    }
}
