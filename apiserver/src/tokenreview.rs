//! `authentication.k8s.io/v1` TokenReview: runs a token through the bearer-token
//! authenticators and answers who it is. Nothing is stored.

use serde_json::{Value, json};

use crate::ApiServer;
use crate::errors::{ApiError, Cause, Result};

/// Reviews the token in `review.spec.token`; returns the review with its status.
pub async fn create(api: &ApiServer, mut review: Value) -> Result<Value> {
    let token = review
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if token.is_empty() {
        return Err(ApiError::invalid(
            "authentication.k8s.io",
            "TokenReview",
            "",
            vec![Cause::required("spec.token")],
        ));
    }
    let wanted: Vec<String> = review
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let server = &api.service_accounts.api_audiences;
    // The audiences the review may answer for: the ones asked about that this server serves,
    // or the server's own when none were asked about.
    let audiences: Vec<String> = if wanted.is_empty() {
        server.clone()
    } else {
        wanted
            .iter()
            .filter(|a| server.contains(a))
            .cloned()
            .collect()
    };
    let status = if audiences.is_empty() {
        json!({"authenticated": false, "user": {}, "error": format!("token audiences {wanted:?} are not served here")})
    } else {
        match api.authn.authenticate_token(&token).await {
            Ok(Some(user)) => json!({
                "authenticated": true,
                "user": {"username": user.name, "uid": user.uid, "groups": user.groups, "extra": user.extra},
                "audiences": audiences,
            }),
            Ok(None) => {
                json!({"authenticated": false, "user": {}, "error": "the token is not known to any authenticator"})
            }
            Err(e) => json!({"authenticated": false, "user": {}, "error": e.to_string()}),
        }
    };
    review["status"] = status;
    review["kind"] = json!("TokenReview");
    review["apiVersion"] = json!("authentication.k8s.io/v1");
    let meta = crate::defaults::ensure(&mut review, "metadata");
    meta["creationTimestamp"] = json!(crate::registry::now());
    Ok(review)
}
