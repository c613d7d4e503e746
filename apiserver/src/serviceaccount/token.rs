//! ServiceAccount tokens: the claims upstream writes (`iss`, `sub`, `aud`, `exp`, `iat`,
//! `nbf`, `jti` and the private `kubernetes.io` claim naming the namespace, ServiceAccount
//! and bound Pod, Secret or Node), and their authentication: signature by a known key, time,
//! audience, then the ServiceAccount and the bound object must still exist with the same uid.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Error, ServiceAccounts, jwt, uid_of};
use crate::auth::User;

/// How far a clock may be behind the issuer's for `nbf` and `iat`.
const LEEWAY_SECONDS: i64 = 60;

/// A token bound to a pod that is being deleted stays valid this long after the deletion
/// began, as upstream lets the pod's containers finish their shutdown.
const DELETION_GRACE_SECONDS: i64 = 60;

/// A name and uid, as the `kubernetes.io` claim carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub name: String,
    pub uid: String,
}

impl Ref {
    pub fn of(obj: &Value) -> Self {
        Self {
            name: obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            uid: uid_of(obj).to_string(),
        }
    }

    fn claim(&self) -> Value {
        json!({"name": self.name, "uid": self.uid})
    }

    fn from_claim(v: &Value) -> Option<Self> {
        Some(Self {
            name: v.get("name")?.as_str()?.to_string(),
            uid: v.get("uid")?.as_str()?.to_string(),
        })
    }
}

/// What a token says: whose it is, for whom, for how long, and what it is bound to.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    pub namespace: String,
    pub service_account: Option<Ref>,
    pub audiences: Vec<String>,
    /// Seconds since the epoch.
    pub issued_at: i64,
    pub expires_at: i64,
    /// When a token whose life was extended should have been refreshed.
    pub warn_after: Option<i64>,
    pub pod: Option<Ref>,
    pub secret: Option<Ref>,
    pub node: Option<Ref>,
}

impl ServiceAccounts {
    /// Signs a token for `grant`.
    pub fn issue(&self, grant: &Grant) -> String {
        let sa = grant.service_account.clone().unwrap_or(Ref {
            name: String::new(),
            uid: String::new(),
        });
        let mut private = json!({
            "namespace": grant.namespace,
            "serviceaccount": sa.claim(),
        });
        for (key, bound) in [
            ("pod", &grant.pod),
            ("secret", &grant.secret),
            ("node", &grant.node),
        ] {
            if let Some(r) = bound {
                private[key] = r.claim();
            }
        }
        if let Some(w) = grant.warn_after {
            private["warnafter"] = json!(w);
        }
        let claims = json!({
            "iss": self.issuer(),
            "sub": format!("system:serviceaccount:{}:{}", grant.namespace, sa.name),
            "aud": grant.audiences,
            "exp": grant.expires_at,
            "iat": grant.issued_at,
            "nbf": grant.issued_at,
            "jti": uuid::Uuid::new_v4().to_string(),
            "kubernetes.io": private,
        });
        jwt::sign(&self.keys.signing, &claims)
    }

    /// Authenticates a bearer token. `Ok(None)`: not a token of this issuer (another
    /// authenticator may know it); `Err`: one of ours that is not valid.
    pub async fn authenticate(&self, token: &str) -> Result<Option<User>, Error> {
        let Some(parsed) = jwt::parse(token) else {
            return Ok(None);
        };
        let claims = &parsed.claims;
        let issuer = claims["iss"].as_str().unwrap_or_default();
        if !self.issuers.iter().any(|i| i == issuer) {
            return Ok(None);
        }
        let invalid = |why: String| Err(Error::Invalid(why));
        if !parsed.verified_by(&self.keys.verifying) {
            return invalid("the token is not signed by a key this server trusts".into());
        }
        let now = ekube_api::time::Timestamp::now().as_second();
        let time = |k: &str| claims[k].as_i64();
        match (time("exp"), time("nbf"), time("iat")) {
            (None, _, _) => return invalid("the token has no expiry (exp)".into()),
            (Some(exp), _, _) if exp <= now => return invalid("the token has expired".into()),
            (_, Some(t), _) | (_, None, Some(t)) if t > now + LEEWAY_SECONDS => {
                return invalid("the token is not valid yet (nbf)".into());
            }
            _ => {}
        }
        let audiences: Vec<String> = match &claims["aud"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(list) => list
                .iter()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        if !audiences.iter().any(|a| self.api_audiences.contains(a)) {
            return invalid(format!(
                "token audiences {audiences:?} are not among the server's {:?}",
                self.api_audiences
            ));
        }
        let private = &claims["kubernetes.io"];
        let ns = private["namespace"].as_str().unwrap_or_default();
        let Some(sa) = Ref::from_claim(&private["serviceaccount"]).filter(|_| !ns.is_empty())
        else {
            return invalid("the token names no namespace and service account".into());
        };
        self.still_exists("serviceaccounts", ns, &sa, false).await?;
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            extra.insert(
                format!("authentication.kubernetes.io/{k}"),
                vec![v.to_string()],
            );
        };
        if let Some(pod) = Ref::from_claim(&private["pod"]) {
            self.still_exists("pods", ns, &pod, true).await?;
            put("pod-name", &pod.name);
            put("pod-uid", &pod.uid);
        }
        if let Some(secret) = Ref::from_claim(&private["secret"]) {
            self.still_exists("secrets", ns, &secret, false).await?;
        }
        if let Some(node) = Ref::from_claim(&private["node"]) {
            // A pod-bound token names its pod's node for information; a node-bound one is
            // valid only while that node exists.
            if private["pod"].is_null() {
                self.still_exists("nodes", "", &node, false).await?;
            }
            put("node-name", &node.name);
            put("node-uid", &node.uid);
        }
        if let Some(jti) = claims["jti"].as_str() {
            put("credential-id", &format!("JTI={jti}"));
        }
        Ok(Some(User {
            name: format!("system:serviceaccount:{ns}:{}", sa.name),
            uid: sa.uid,
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
            extra,
        }))
    }

    /// Checks that the object a token names is stored with the same uid (and, for a pod, is
    /// not long past the start of its deletion).
    async fn still_exists(
        &self,
        plural: &str,
        ns: &str,
        named: &Ref,
        grace: bool,
    ) -> Result<(), Error> {
        let scope = (!ns.is_empty()).then_some(ns);
        let what = format!(
            "{plural} {}{}",
            scope.map(|n| format!("{n}/")).unwrap_or_default(),
            named.name
        );
        let Some(obj) = self.lookup(plural, scope, &named.name).await? else {
            return Err(Error::Invalid(format!("{what} no longer exists")));
        };
        if uid_of(&obj) != named.uid {
            return Err(Error::Invalid(format!(
                "{what} has uid {} but the token names {}",
                uid_of(&obj),
                named.uid
            )));
        }
        let deleting = obj
            .pointer("/metadata/deletionTimestamp")
            .and_then(Value::as_str)
            .and_then(ekube_api::time::parse);
        if let Some(since) = deleting {
            let allowed = if grace { DELETION_GRACE_SECONDS } else { 0 };
            if ekube_api::time::Timestamp::now().as_second() - since.as_second() >= allowed {
                return Err(Error::Invalid(format!("{what} is being deleted")));
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl crate::auth::TokenAuthenticator for ServiceAccounts {
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
mod tests;
