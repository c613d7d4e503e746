//! The apiserver's reviews as the kubelet API and the control-plane components' secure ports
//! ask them (upstream's delegated authentication and authorization): a `TokenReview` says who a
//! bearer token belongs to, a `SubjectAccessReview` whether a user may act on a node or get a
//! path such as `/metrics`. Answers are cached for a while, as upstream's webhook
//! caches do, so a busy client does not cost the apiserver a review per request; a review that
//! could not be asked (apiserver down) is not cached.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

pub use crate::user::User;

/// What a request asks, as a SubjectAccessReview's attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// `nodes/<subresource>` of one node (the kubelet API).
    Node {
        verb: &'static str,
        subresource: &'static str,
        node: String,
    },
    /// A non-resource path (`get /metrics` on a component's secure port).
    Path { verb: &'static str, path: String },
}

impl Access {
    /// Everything the review is asked about, unambiguously (JSON strings are quoted).
    fn key(&self) -> serde_json::Value {
        match self {
            Access::Node {
                verb,
                subresource,
                node,
            } => serde_json::json!(["node", verb, subresource, node]),
            Access::Path { verb, path } => serde_json::json!(["path", verb, path]),
        }
    }
}

/// Asks the apiserver. `Err` means the question could not be answered (not cached).
pub trait Reviewer: Send + Sync + 'static {
    /// Who `token` belongs to; `None` when the apiserver does not know it.
    fn token(&self, token: &str) -> impl Future<Output = Result<Option<User>, String>> + Send;
    /// Whether `user` may do `access`.
    fn access(
        &self,
        user: &User,
        access: &Access,
    ) -> impl Future<Output = Result<bool, String>> + Send;
}

/// The reviews asked through the kubelet's own client.
pub struct ApiReviewer(pub kube::Client);

impl Reviewer for ApiReviewer {
    async fn token(&self, token: &str) -> Result<Option<User>, String> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = Api::<TokenReview>::all(self.0.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| format!("TokenReview: {e}"))?;
        let Some(status) = answer.status else {
            return Err("TokenReview: the answer has no status".into());
        };
        let info = status.user.unwrap_or_default();
        Ok(match (status.authenticated, info.username) {
            (Some(true), Some(name)) if !name.is_empty() => Some(User {
                name,
                uid: info.uid.unwrap_or_default(),
                groups: info.groups.unwrap_or_default(),
                extra: info.extra.unwrap_or_default(),
            }),
            _ => None,
        })
    }

    async fn access(&self, user: &User, access: &Access) -> Result<bool, String> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
                groups: Some(user.groups.clone()),
                extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
                resource_attributes: match access {
                    Access::Node {
                        verb,
                        subresource,
                        node,
                    } => Some(ResourceAttributes {
                        verb: Some(verb.to_string()),
                        version: Some("v1".into()),
                        resource: Some("nodes".into()),
                        subresource: Some(subresource.to_string()),
                        name: Some(node.clone()),
                        ..Default::default()
                    }),
                    Access::Path { .. } => None,
                },
                non_resource_attributes: match access {
                    Access::Path { verb, path } => Some(NonResourceAttributes {
                        verb: Some(verb.to_string()),
                        path: Some(path.clone()),
                    }),
                    Access::Node { .. } => None,
                },
            },
            ..Default::default()
        };
        let answer = Api::<SubjectAccessReview>::all(self.0.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| format!("SubjectAccessReview: {e}"))?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }
}

/// How long answers are kept (upstream's kubelet defaults: 2 min for tokens, 5 min for
/// allowed and 30 s for denied access).
#[derive(Debug, Clone, Copy)]
pub struct Ttls {
    pub authenticated: Duration,
    pub unauthenticated: Duration,
    pub authorized: Duration,
    pub unauthorized: Duration,
}

/// Most answers of each kind kept: a client cycling through tokens cannot grow the kubelet.
const CAPACITY: usize = 4096;

/// A bounded map whose entries expire.
struct TtlCache<V> {
    entries: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> TtlCache<V> {
    fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &str) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(until, _)| *until > Instant::now())
            .map(|(_, v)| v.clone())
    }

    fn put(&self, key: String, value: V, ttl: Duration) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CAPACITY {
            entries.retain(|_, (until, _)| *until > now);
        }
        if entries.len() >= CAPACITY {
            // Still full of live answers: drop the one closest to expiring.
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, (until, _))| *until)
                .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, (now + ttl, value));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

/// A [`Reviewer`] with its answers cached.
pub struct Cached<R> {
    inner: R,
    ttls: Ttls,
    tokens: TtlCache<Option<User>>,
    decisions: TtlCache<bool>,
}

impl<R: Reviewer> Cached<R> {
    pub fn new(inner: R, ttls: Ttls) -> Self {
        Self {
            inner,
            ttls,
            tokens: TtlCache::new(),
            decisions: TtlCache::new(),
        }
    }

    /// The reviewer asked on a miss.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    pub async fn token(&self, token: &str) -> Result<Option<User>, String> {
        // Keyed by a digest: the cache does not keep usable credentials.
        let key = format!("{:x}", Sha256::digest(token.as_bytes()));
        if let Some(known) = self.tokens.get(&key) {
            return Ok(known);
        }
        let answer = self.inner.token(token).await?;
        let ttl = match answer {
            Some(_) => self.ttls.authenticated,
            None => self.ttls.unauthenticated,
        };
        self.tokens.put(key, answer.clone(), ttl);
        Ok(answer)
    }

    pub async fn access(&self, user: &User, access: &Access) -> Result<bool, String> {
        // Everything the review is asked about, unambiguously (JSON strings are quoted).
        let key = serde_json::json!([user.name, user.uid, user.groups, user.extra, access.key()])
            .to_string();
        if let Some(known) = self.decisions.get(&key) {
            return Ok(known);
        }
        let allowed = self.inner.access(user, access).await?;
        let ttl = if allowed {
            self.ttls.authorized
        } else {
            self.ttls.unauthorized
        };
        self.decisions.put(key, allowed, ttl);
        Ok(allowed)
    }
}

/// A reviewer for tests.
#[cfg(any(test, feature = "test-util"))]
pub mod testing {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use super::{Access, Reviewer, Ttls, User};

    /// Knows one token (`good` → alice) and allows alice `get nodes/stats` and `get /metrics`
    /// only; counts calls; fails every review while `down`.
    #[derive(Default)]
    pub struct Fake {
        pub calls: AtomicUsize,
        pub down: AtomicBool,
    }

    pub fn alice() -> User {
        User {
            name: "alice".into(),
            groups: vec!["system:authenticated".into()],
            ..Default::default()
        }
    }

    impl Reviewer for Fake {
        async fn token(&self, token: &str) -> Result<Option<User>, String> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err("connection refused".into());
            }
            Ok((token == "good").then(alice))
        }

        async fn access(&self, user: &User, access: &Access) -> Result<bool, String> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err("connection refused".into());
            }
            let allowed = match access {
                Access::Node {
                    verb, subresource, ..
                } => *subresource == "stats" && *verb == "get",
                Access::Path { verb, path } => path == "/metrics" && *verb == "get",
            };
            Ok(user.name == "alice" && allowed)
        }
    }

    pub fn ttls() -> Ttls {
        Ttls {
            authenticated: Duration::from_secs(120),
            unauthenticated: Duration::from_millis(50),
            authorized: Duration::from_secs(300),
            unauthorized: Duration::from_millis(50),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::testing::{Fake, alice, ttls};
    use super::*;

    fn stats(verb: &'static str) -> Access {
        Access::Node {
            verb,
            subresource: "stats",
            node: "n1".into(),
        }
    }

    #[tokio::test]
    async fn answers_are_cached_for_their_ttl_and_failures_not_at_all() {
        let cached = Cached::new(Fake::default(), ttls());
        let calls = || cached.inner.calls.load(Ordering::SeqCst);
        assert_eq!(cached.token("good").await.unwrap(), Some(alice()));
        assert_eq!(cached.token("good").await.unwrap(), Some(alice()));
        assert_eq!(calls(), 1, "an authenticated token is asked about once");
        assert_eq!(cached.token("bad").await.unwrap(), None);
        assert_eq!(cached.token("bad").await.unwrap(), None);
        assert_eq!(calls(), 2);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(cached.token("bad").await.unwrap(), None);
        assert_eq!(
            calls(),
            3,
            "an unknown token is asked about again after its ttl"
        );

        assert!(cached.access(&alice(), &stats("get")).await.unwrap());
        assert!(cached.access(&alice(), &stats("get")).await.unwrap());
        assert!(!cached.access(&alice(), &stats("create")).await.unwrap());
        assert_eq!(calls(), 5);
        let mut other = alice();
        other.groups.push("extra".into());
        assert!(cached.access(&other, &stats("get")).await.unwrap());
        assert_eq!(calls(), 6, "other groups are another question");

        cached.inner.down.store(true, Ordering::SeqCst);
        assert!(cached.token("new").await.is_err());
        assert!(cached.token("new").await.is_err());
        assert_eq!(calls(), 8, "failed reviews are not cached");
        assert!(cached.access(&alice(), &stats("get")).await.unwrap());
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = TtlCache::new();
        for i in 0..CAPACITY + 10 {
            cache.put(i.to_string(), i, Duration::from_secs(60 + i as u64));
        }
        assert_eq!(cache.len(), CAPACITY);
        assert_eq!(cache.get("0"), None, "the soonest to expire went first");
        assert_eq!(cache.get(&(CAPACITY + 9).to_string()), Some(CAPACITY + 9));
    }
}
