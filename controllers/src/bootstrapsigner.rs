//! Bootstrap signer (upstream's `bootstrapsigner`): `kube-public/cluster-info` carries, next to
//! its `kubeconfig`, one detached JWS `jws-kubeconfig-<id>` per bootstrap token that may sign
//! (`usage-bootstrap-signing: "true"`, not expired). A node joining with a token reads
//! `cluster-info` anonymously and trusts the server address and CA in it only when the
//! signature of its token verifies, which proves that whoever holds the token's secret wrote
//! them.
//!
//! The controller watches `cluster-info` and the bootstrap-token Secrets of `kube-system`; each
//! change recomputes the whole set of signatures ([`desired`]) and writes `cluster-info` only
//! when it differs. A token's signature goes when the token is deleted, stops allowing signing
//! or expires (the reconcile is requeued for the earliest expiry, so the signature goes even
//! when no token cleaner deletes the Secret).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ekube_api::bootstrap::{
    self, CLUSTER_INFO, CLUSTER_INFO_NAMESPACE, JWS_PREFIX, KUBECONFIG_KEY, NAMESPACE, Token,
};
use ekube_api::time::{self, Timestamp};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::{Context as _, Result};

/// What `reconcile` works with.
struct Ctx {
    client: kube::Client,
}

/// The field selector of bootstrap-token Secrets (upstream's signer watches these only).
pub(crate) fn token_secrets() -> String {
    format!("type={}", bootstrap::SECRET_TYPE)
}

pub async fn run(client: kube::Client) -> Result<(), String> {
    let cluster_info = ObjectRef::<ConfigMap>::new(CLUSTER_INFO).within(CLUSTER_INFO_NAMESPACE);
    let controller = Controller::new(
        Api::<ConfigMap>::namespaced(client.clone(), CLUSTER_INFO_NAMESPACE),
        watcher::Config::default().fields(&format!("metadata.name={CLUSTER_INFO}")),
    )
    .watches(
        Api::<Secret>::namespaced(client.clone(), NAMESPACE),
        watcher::Config::default().fields(&token_secrets()),
        move |_| Some(cluster_info.clone()),
    );
    crate::runner::drive(
        "bootstrapsigner",
        controller,
        reconcile,
        Ctx { client },
        Duration::from_secs(1),
    )
    .await;
    Ok(())
}

/// The decoded data of `secret` (a typed Secret's `data` and `stringData`).
pub(crate) fn token_data(secret: &Secret) -> BTreeMap<String, String> {
    serde_json::to_value(secret)
        .map(|v| bootstrap::secret_data(&v))
        .unwrap_or_default()
}

/// The token `secret` holds when it may sign at `now`: a bootstrap-token Secret whose name
/// matches its `token-id` (upstream's `validateSecretForSigning`), not expired, with
/// `usage-bootstrap-signing: "true"`.
fn signing_token(secret: &Secret, now: Timestamp) -> Option<Token> {
    if secret.type_.as_deref() != Some(bootstrap::SECRET_TYPE) {
        return None;
    }
    let data = token_data(secret);
    let id = data.get("token-id")?;
    let name = secret.metadata.name.as_deref()?;
    if bootstrap::id_of_secret_name(name) != Some(id.as_str()) {
        return None;
    }
    if bootstrap::is_expired(&data, now) || !bootstrap::allows(&data, "signing") {
        return None;
    }
    Token::parse(&format!("{id}.{}", data.get("token-secret")?)).ok()
}

/// What `cluster-info` should hold, and when to look again.
#[derive(Debug, PartialEq)]
pub struct Plan {
    /// The whole `data` of `cluster-info`.
    pub data: BTreeMap<String, String>,
    /// The earliest expiry of a token signing now: its signature must then go.
    pub recheck: Option<Timestamp>,
}

/// The `cluster-info` data wanted at `now`: `data` with exactly one signature of its
/// `kubeconfig` per token in `secrets` that may sign, keys other than signatures untouched.
/// Without a `kubeconfig` there is nothing to sign and `data` stays as it is (as upstream).
pub fn desired(data: &BTreeMap<String, String>, secrets: &[Secret], now: Timestamp) -> Plan {
    let Some(kubeconfig) = data.get(KUBECONFIG_KEY) else {
        return Plan {
            data: data.clone(),
            recheck: None,
        };
    };
    let mut out: BTreeMap<String, String> = data
        .iter()
        .filter(|(k, _)| !k.starts_with(JWS_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut recheck = None;
    for secret in secrets {
        let Some(token) = signing_token(secret, now) else {
            continue;
        };
        let expiry = token_data(secret)
            .get("expiration")
            .and_then(|e| time::parse(e));
        recheck = match (recheck, expiry) {
            (Some(r), Some(e)) => Some(std::cmp::min(r, e)),
            (r, e) => r.or(e),
        };
        // Detached JWS over the same payload and key is deterministic (HS256), so an unchanged
        // token yields the stored signature and nothing is written.
        out.insert(
            format!("{JWS_PREFIX}{}", token.id),
            bootstrap::sign_detached(kubeconfig, &token),
        );
    }
    Plan { data: out, recheck }
}

#[tracing::instrument(skip_all)]
async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action> {
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), NAMESPACE)
        .list(&ListParams::default().fields(&token_secrets()))
        .await
        .ctx(|| format!("listing bootstrap-token secrets in {NAMESPACE}"))?;
    let now = Timestamp::now();
    let current = cm.data.clone().unwrap_or_default();
    let plan = desired(&current, &secrets.items, now);
    let next = match plan.recheck {
        // Just past the expiry, so the token counts as expired then.
        Some(at) => Action::requeue(
            Duration::try_from(at.duration_since(now)).unwrap_or_default() + Duration::from_secs(1),
        ),
        None => Action::await_change(),
    };
    if plan.data == current {
        return Ok(next);
    }
    let mut updated = (*cm).clone();
    updated.data = Some(plan.data);
    let api = Api::<ConfigMap>::namespaced(ctx.client.clone(), CLUSTER_INFO_NAMESPACE);
    match api
        .replace(CLUSTER_INFO, &PostParams::default(), &updated)
        .await
    {
        Ok(_) => tracing::info!("signed {CLUSTER_INFO_NAMESPACE}/{CLUSTER_INFO}"),
        // Changed meanwhile: the watch brings the newer one.
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => {
            return Err(e)
                .ctx(|| format!("updating configmap {CLUSTER_INFO_NAMESPACE}/{CLUSTER_INFO}"));
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn now() -> Timestamp {
        time::parse("2030-01-01T00:00:00Z").unwrap()
    }

    fn secret(id: &str, fields: &[(&str, &str)]) -> Secret {
        let mut data: BTreeMap<String, String> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        data.insert("token-id".into(), id.into());
        data.insert("token-secret".into(), "0123456789abcdef".into());
        Secret {
            metadata: ObjectMeta {
                name: Some(bootstrap::secret_name(id)),
                ..Default::default()
            },
            type_: Some(bootstrap::SECRET_TYPE.into()),
            string_data: Some(data),
            ..Default::default()
        }
    }

    fn token(id: &str) -> Token {
        Token::parse(&format!("{id}.0123456789abcdef")).unwrap()
    }

    fn cluster_info(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut data = BTreeMap::from([(KUBECONFIG_KEY.to_string(), "kc".to_string())]);
        data.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        data
    }

    const SIGNING: (&str, &str) = ("usage-bootstrap-signing", "true");

    #[test]
    fn signs_with_every_token_that_may_sign() {
        let secrets = [
            secret("aaaaaa", &[SIGNING]),
            secret("bbbbbb", &[SIGNING, ("expiration", "2030-01-01T01:00:00Z")]),
            // Not for signing, expired, or not a valid token: left out.
            secret("cccccc", &[("usage-bootstrap-authentication", "true")]),
            secret("dddddd", &[SIGNING, ("expiration", "2029-12-31T23:59:59Z")]),
            secret("eeeeee", &[SIGNING, ("expiration", "tomorrow")]),
        ];
        let plan = desired(&cluster_info(&[("other", "kept")]), &secrets, now());
        let keys: Vec<&str> = plan.data.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "jws-kubeconfig-aaaaaa",
                "jws-kubeconfig-bbbbbb",
                "kubeconfig",
                "other"
            ]
        );
        for id in ["aaaaaa", "bbbbbb"] {
            bootstrap::verify_detached(&plan.data[&format!("{JWS_PREFIX}{id}")], "kc", &token(id))
                .unwrap();
        }
        assert_eq!(time::rfc3339(plan.recheck.unwrap()), "2030-01-01T01:00:00Z");
    }

    #[test]
    fn secrets_that_do_not_hold_a_valid_token_do_not_sign() {
        let mut renamed = secret("aaaaaa", &[SIGNING]);
        renamed.metadata.name = Some(bootstrap::secret_name("zzzzzz"));
        let mut opaque = secret("bbbbbb", &[SIGNING]);
        opaque.type_ = Some("Opaque".into());
        let mut short = secret("cccccc", &[SIGNING]);
        short
            .string_data
            .as_mut()
            .unwrap()
            .insert("token-secret".into(), "short".into());
        let plan = desired(&cluster_info(&[]), &[renamed, opaque, short], now());
        assert_eq!(plan.data, cluster_info(&[]));
        assert_eq!(plan.recheck, None);
    }

    #[test]
    fn stale_signatures_go_and_current_ones_stay_unchanged() {
        let current = desired(&cluster_info(&[]), &[secret("aaaaaa", &[SIGNING])], now()).data;
        // Unchanged tokens: the same data, so nothing is written.
        assert_eq!(
            desired(&current, &[secret("aaaaaa", &[SIGNING])], now()).data,
            current
        );
        // The token deleted, or a signature of an unknown token: removed.
        let mut with_foreign = current.clone();
        with_foreign.insert(format!("{JWS_PREFIX}zzzzzz"), "x".into());
        assert_eq!(desired(&with_foreign, &[], now()).data, cluster_info(&[]));
        // A changed kubeconfig is signed anew.
        let mut moved = current.clone();
        moved.insert(KUBECONFIG_KEY.into(), "kc2".into());
        let plan = desired(&moved, &[secret("aaaaaa", &[SIGNING])], now());
        bootstrap::verify_detached(&plan.data["jws-kubeconfig-aaaaaa"], "kc2", &token("aaaaaa"))
            .unwrap();
    }

    #[test]
    fn without_a_kubeconfig_nothing_changes() {
        let data = BTreeMap::from([(format!("{JWS_PREFIX}aaaaaa"), "x".to_string())]);
        let plan = desired(&data, &[secret("aaaaaa", &[SIGNING])], now());
        assert_eq!(plan.data, data);
    }
}
