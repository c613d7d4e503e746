//! Token cleaner (upstream's `tokencleaner`): a bootstrap-token Secret in `kube-system` is
//! deleted once its `expiration` has passed, so an expired token neither authenticates nor
//! lingers in `ekube token list`. A Secret that expires later is looked at again at its
//! expiry, not polled. The deletion carries the Secret's uid as a precondition: a Secret of the
//! same name created meanwhile (a new token with the same id) survives.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ekube_api::bootstrap::{self, NAMESPACE};
use ekube_api::time::{self, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

use crate::bootstrapsigner::{token_data, token_secrets};
use crate::{Context as _, Result};

struct Ctx {
    client: kube::Client,
}

pub async fn run(client: kube::Client) -> Result<(), String> {
    let controller = Controller::new(
        Api::<Secret>::namespaced(client.clone(), NAMESPACE),
        watcher::Config::default().fields(&token_secrets()),
    );
    crate::runner::drive(
        "tokencleaner",
        controller,
        reconcile,
        Ctx { client },
        Duration::from_secs(1),
    )
    .await;
    Ok(())
}

/// What to do with a bootstrap-token Secret.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Expired (or its expiration is unreadable, which upstream counts as expired).
    Delete,
    /// Still valid: look again after this long, when it expires.
    RecheckIn(Duration),
    /// No expiration: valid forever.
    Keep,
}

/// The verdict on a token with decoded `data` at `now`.
pub fn verdict(data: &BTreeMap<String, String>, now: Timestamp) -> Verdict {
    if bootstrap::is_expired(data, now) {
        return Verdict::Delete;
    }
    match data.get("expiration").and_then(|e| time::parse(e)) {
        // Still ahead; a moment past it the token counts as expired.
        Some(at) => Verdict::RecheckIn(
            Duration::try_from(at.duration_since(now)).unwrap_or_default()
                + Duration::from_millis(100),
        ),
        None => Verdict::Keep,
    }
}

#[tracing::instrument(skip_all, fields(secret = %secret.name_any()))]
async fn reconcile(secret: Arc<Secret>, ctx: Arc<Ctx>) -> Result<Action> {
    let name = secret.name_any();
    let api = Api::<Secret>::namespaced(ctx.client.clone(), NAMESPACE);
    // The watch's copy may be older than an update that extended the token: decide on a fresh
    // read.
    let Some(fresh) = crate::util::get_listed(&api, &name)
        .await
        .ctx(|| format!("reading secret {NAMESPACE}/{name}"))?
    else {
        return Ok(Action::await_change());
    };
    if fresh.type_.as_deref() != Some(bootstrap::SECRET_TYPE) || crate::util::deleting(&fresh) {
        return Ok(Action::await_change());
    }
    match verdict(&token_data(&fresh), Timestamp::now()) {
        Verdict::Keep => Ok(Action::await_change()),
        Verdict::RecheckIn(after) => Ok(Action::requeue(after)),
        Verdict::Delete => {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: fresh.uid(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => tracing::info!("deleted expired bootstrap token"),
                // Gone already, or replaced by a new Secret of the same name (uid precondition).
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => {
                    return Err(e).ctx(|| format!("deleting expired secret {NAMESPACE}/{name}"));
                }
            }
            Ok(Action::await_change())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: &str) -> Timestamp {
        time::parse(t).unwrap()
    }

    fn expiring(t: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("expiration".to_string(), t.to_string())])
    }

    #[test]
    fn expired_tokens_are_deleted_and_others_rechecked_at_their_expiry() {
        let now = at("2030-01-01T00:00:00Z");
        assert_eq!(
            verdict(&expiring("2029-12-31T23:59:59Z"), now),
            Verdict::Delete
        );
        assert_eq!(
            verdict(&expiring("2030-01-01T00:00:00Z"), now),
            Verdict::Delete
        );
        assert_eq!(verdict(&expiring("not a time"), now), Verdict::Delete);
        assert_eq!(
            verdict(&expiring("2030-01-01T00:00:10+00:00"), now),
            Verdict::RecheckIn(Duration::from_millis(10_100))
        );
        assert_eq!(
            verdict(&expiring("2030-01-01T02:00:00+01:00"), now),
            Verdict::RecheckIn(Duration::from_millis(3_600_100))
        );
        assert_eq!(verdict(&BTreeMap::new(), now), Verdict::Keep);
    }
}
