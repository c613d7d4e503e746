//! The kubelet's ServiceAccount token manager, as upstream's: projected `serviceAccountToken`
//! sources get a token bound to their pod from the TokenRequest API, cached per pod, service
//! account, audience and lifetime, and requested anew once 80 % of its life has passed or it
//! is older than 24 hours.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use ekube_api::time::{SignedDuration, Timestamp};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount, ServiceAccountTokenProjection};
use kube::api::{Api, PostParams};

/// What a projected token source asks for when `expirationSeconds` is unset.
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// A token is refreshed at the latest when it is this old.
const MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// One cached token: for whom and what it was requested.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    namespace: String,
    service_account: String,
    pod_uid: String,
    audience: Option<String>,
    expiration_seconds: i64,
}

#[derive(Debug, Clone)]
struct Issued {
    token: String,
    issued: Timestamp,
    expires: Timestamp,
}

impl Issued {
    /// Upstream's rule: past 80 % of the token's life, or older than 24 hours.
    fn needs_refresh(&self, now: Timestamp) -> bool {
        let life = self.expires.duration_since(self.issued).as_millis().max(0);
        let refresh_at = self.issued + SignedDuration::from_millis((life * 8 / 10) as i64);
        now >= refresh_at
            || Duration::try_from(now.duration_since(self.issued)).is_ok_and(|age| age > MAX_AGE)
    }
}

/// Tokens requested for this node's pods.
#[derive(Debug, Default)]
pub struct TokenManager {
    cache: Mutex<HashMap<Key, Issued>>,
}

fn key(pod: &Pod, t: &ServiceAccountTokenProjection) -> Key {
    Key {
        namespace: pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        service_account: pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
        audience: t.audience.clone().filter(|a| !a.is_empty()),
        expiration_seconds: t.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS),
    }
}

impl TokenManager {
    /// Whether the token for this source is missing or due for a refresh.
    pub fn needs_refresh(&self, pod: &Pod, t: &ServiceAccountTokenProjection) -> bool {
        self.cache
            .lock()
            .expect("token cache")
            .get(&key(pod, t))
            .is_none_or(|i| i.needs_refresh(Timestamp::now()))
    }

    /// The token for `pod`'s source `t`: the cached one while fresh, else a new one.
    pub async fn get(
        &self,
        client: &kube::Client,
        pod: &Pod,
        t: &ServiceAccountTokenProjection,
    ) -> Result<String, String> {
        let key = key(pod, t);
        if let Some(i) = self.cache.lock().expect("token cache").get(&key)
            && !i.needs_refresh(Timestamp::now())
        {
            return Ok(i.token.clone());
        }
        let issued = request(client, pod, &key).await?;
        let token = issued.token.clone();
        self.cache.lock().expect("token cache").insert(key, issued);
        Ok(token)
    }

    /// Drops the tokens of a pod that is gone.
    pub fn forget_pod(&self, uid: &str) {
        self.cache
            .lock()
            .expect("token cache")
            .retain(|k, _| k.pod_uid != uid);
    }
}

async fn request(client: &kube::Client, pod: &Pod, key: &Key) -> Result<Issued, String> {
    let (ns, sa) = (&key.namespace, &key.service_account);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: key.audience.clone().map(|a| vec![a]),
            expiration_seconds: Some(key.expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let status = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .map_err(|e| format!("requesting a token for service account {ns}/{sa}: {e}"))?
        .status;
    let (Some(token), Some(expires)) = (
        status.as_ref().and_then(|s| s.token.clone()),
        status.and_then(|s| s.expiration_timestamp),
    ) else {
        return Err(format!(
            "the token request for service account {ns}/{sa} returned no token and expiry"
        ));
    };
    let expires = expires.0.as_second();
    // The issue time as upstream derives it: the expiry less the lifetime asked for.
    let at = |secs| Timestamp::from_second(secs).unwrap_or_else(|_| Timestamp::now());
    let (issued, expires) = (at(expires - key.expiration_seconds), at(expires));
    Ok(Issued {
        token,
        issued,
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(life_secs: i64) -> Issued {
        let issued = Timestamp::now();
        Issued {
            token: "t".into(),
            issued,
            expires: issued + SignedDuration::from_secs(life_secs),
        }
    }

    #[test]
    fn refreshed_after_80_percent_of_life_or_a_day() {
        let t = issued(3600);
        let at = |secs| t.issued + SignedDuration::from_secs(secs);
        assert!(!t.needs_refresh(at(0)));
        assert!(!t.needs_refresh(at(2879)));
        assert!(t.needs_refresh(at(2880)));
        // A year-long token is still refreshed daily.
        let long = issued(365 * 24 * 3600);
        let at = |secs| long.issued + SignedDuration::from_secs(secs);
        assert!(!long.needs_refresh(at(24 * 3600 - 1)));
        assert!(long.needs_refresh(at(24 * 3600 + 1)));
    }
}
