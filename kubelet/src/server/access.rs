//! Who may do what on the kubelet API, decided per request as the upstream kubelet does with
//! `--authentication-token-webhook` and `--authorization-mode=Webhook`.
//!
//! Authentication: a client certificate of the client CA (user = CN, groups = O) wins; else an
//! `Authorization: Bearer` token is reviewed by the apiserver (TokenReview); a token it does not
//! know is refused, never served as anonymous. A request without credentials is
//! `system:anonymous` in `system:unauthenticated` with `--anonymous-auth=true`, else 401.
//!
//! Authorization: the request becomes `<verb> nodes/<subresource>` of this node (the verb from
//! the HTTP method, the subresource from the path, as upstream's fine-grained kubelet
//! authorization maps them) and the apiserver is asked (SubjectAccessReview). Paths with a
//! fine-grained subresource that upstream also lets `nodes/proxy` reach (`/pods`, `/healthz`,
//! `/configz`, `/runningpods`) are asked about twice, the fine-grained one first.

use ekube_api::user::bearer_token;
use http::{HeaderMap, Method, Response, StatusCode};

use super::{Body, text};
use ekube_api::review::{Access, Cached, Reviewer, User};

/// `--authorization-mode` of the kubelet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthorizationMode {
    /// Every authenticated request is allowed.
    #[value(name = "AlwaysAllow")]
    AlwaysAllow,
    /// The apiserver decides (SubjectAccessReview).
    #[value(name = "Webhook")]
    Webhook,
}

/// The API verb of an HTTP method (upstream's mapping; others map to no verb, which no rule
/// allows).
fn verb(method: &Method) -> &'static str {
    match *method {
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
}

/// Whether `path` is `prefix` or below it (`/stats` and `/stats/summary` for `/stats`).
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The `nodes` subresources that allow a request for `path`, in the order they are asked.
fn subresources(path: &str) -> &'static [&'static str] {
    const TABLE: &[(&str, &[&str])] = &[
        ("/stats", &["stats"]),
        ("/metrics", &["metrics"]),
        ("/logs", &["log"]),
        ("/spec", &["spec"]),
        ("/checkpoint", &["checkpoint"]),
        ("/pods", &["pods", "proxy"]),
        ("/runningpods", &["pods", "proxy"]),
        ("/healthz", &["healthz", "proxy"]),
        ("/configz", &["configz", "proxy"]),
    ];
    TABLE
        .iter()
        .find(|(prefix, _)| under(path, prefix))
        .map_or(&["proxy"], |(_, subs)| subs)
}

fn unauthorized() -> Response<Body> {
    text(StatusCode::UNAUTHORIZED, "Unauthorized")
}

/// The decisions for one kubelet.
pub struct Gate<R> {
    /// The apiserver's reviews.
    pub reviews: Cached<R>,
    /// `--authentication-token-webhook`.
    pub token_webhook: bool,
    /// `--authorization-mode`.
    pub mode: AuthorizationMode,
    /// `--anonymous-auth`.
    pub anonymous: bool,
    /// The node's name: the `nodes` object every request is about.
    pub node: String,
}

impl<R: Reviewer> Gate<R> {
    /// The user of a request allowed to go on, or the answer that refuses it.
    pub async fn check(
        &self,
        certificate_user: Option<&User>,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<User, Response<Body>> {
        let user = self.authenticate(certificate_user, headers).await?;
        self.authorize(&user, method, path).await?;
        Ok(user)
    }

    async fn authenticate(
        &self,
        certificate_user: Option<&User>,
        headers: &HeaderMap,
    ) -> Result<User, Response<Body>> {
        if let Some(user) = certificate_user {
            return Ok(user.clone().with_authenticated_group());
        }
        let token = bearer_token(headers).filter(|_| self.token_webhook);
        match token {
            Some(token) => match self.reviews.token(token).await {
                Ok(Some(user)) => Ok(user.with_authenticated_group()),
                Ok(None) => Err(unauthorized()),
                Err(e) => {
                    tracing::warn!(error = %e, "reviewing a bearer token failed");
                    Err(unauthorized())
                }
            },
            _ if self.anonymous => Ok(User::anonymous()),
            _ => Err(unauthorized()),
        }
    }

    async fn authorize(
        &self,
        user: &User,
        method: &Method,
        path: &str,
    ) -> Result<(), Response<Body>> {
        if self.mode == AuthorizationMode::AlwaysAllow {
            return Ok(());
        }
        let subs = subresources(path);
        let verb = verb(method);
        let describe = || {
            format!(
                "user={}, verb={verb}, resource=nodes, subresource(s)=[{}]",
                user.name,
                subs.join(" ")
            )
        };
        for subresource in subs {
            let access = Access::Node {
                verb,
                subresource,
                node: self.node.clone(),
            };
            match self.reviews.access(user, &access).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "asking the apiserver for access failed");
                    return Err(text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("Authorization error ({})", describe()),
                    ));
                }
            }
        }
        Err(text(
            StatusCode::FORBIDDEN,
            format!("Forbidden ({})", describe()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekube_api::review::testing::{Fake, alice, ttls};
    use ekube_api::user::{ANONYMOUS, AUTHENTICATED, UNAUTHENTICATED};
    use http::header;
    use http_body_util::BodyExt;

    fn gate(mode: AuthorizationMode, anonymous: bool) -> Gate<Fake> {
        Gate {
            reviews: Cached::new(Fake::default(), ttls()),
            token_webhook: true,
            mode,
            anonymous,
            node: "n1".into(),
        }
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    }

    async fn refused(r: Result<User, Response<Body>>) -> (u16, String) {
        let response = r.expect_err("refused");
        let code = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (code, String::from_utf8_lossy(&body).trim().to_string())
    }

    #[test]
    fn paths_map_to_upstreams_subresources() {
        assert_eq!(subresources("/stats/summary"), ["stats"]);
        assert_eq!(subresources("/stats"), ["stats"]);
        assert_eq!(subresources("/statsfoo"), ["proxy"]);
        assert_eq!(subresources("/metrics/cadvisor"), ["metrics"]);
        assert_eq!(subresources("/metrics/resource"), ["metrics"]);
        assert_eq!(subresources("/logs/syslog"), ["log"]);
        assert_eq!(subresources("/spec/"), ["spec"]);
        assert_eq!(subresources("/checkpoint/ns/pod/c"), ["checkpoint"]);
        assert_eq!(subresources("/pods"), ["pods", "proxy"]);
        assert_eq!(subresources("/healthz"), ["healthz", "proxy"]);
        assert_eq!(subresources("/exec/default/p/c"), ["proxy"]);
        assert_eq!(subresources("/containerLogs/default/p/c"), ["proxy"]);
        assert_eq!(verb(&Method::POST), "create");
        assert_eq!(verb(&Method::GET), "get");
        assert_eq!(verb(&Method::HEAD), "");
    }

    #[tokio::test]
    async fn tokens_certificates_and_anonymous() {
        let g = gate(AuthorizationMode::AlwaysAllow, false);
        let user = g
            .check(None, &Method::GET, "/pods", &bearer("good"))
            .await
            .unwrap();
        assert_eq!(user, alice());
        let (code, body) =
            refused(g.check(None, &Method::GET, "/pods", &bearer("bad")).await).await;
        assert_eq!((code, body.as_str()), (401, "Unauthorized"));
        let (code, _) = refused(
            g.check(None, &Method::GET, "/pods", &HeaderMap::new())
                .await,
        )
        .await;
        assert_eq!(code, 401);
        let cert = User {
            name: "kube-apiserver-kubelet-client".into(),
            ..User::default()
        };
        let user = g
            .check(Some(&cert), &Method::GET, "/pods", &bearer("bad"))
            .await
            .unwrap();
        assert_eq!(user.groups, [AUTHENTICATED]);

        let g = gate(AuthorizationMode::AlwaysAllow, true);
        let user = g
            .check(None, &Method::GET, "/pods", &HeaderMap::new())
            .await
            .unwrap();
        assert_eq!(
            (user.name.as_str(), user.groups.as_slice()),
            (ANONYMOUS, &[UNAUTHENTICATED.to_string()][..])
        );
        let (code, _) = refused(g.check(None, &Method::GET, "/pods", &bearer("bad")).await).await;
        assert_eq!(code, 401, "a bad token is not anonymous");

        let mut g = gate(AuthorizationMode::AlwaysAllow, false);
        g.token_webhook = false;
        let (code, _) = refused(g.check(None, &Method::GET, "/pods", &bearer("good")).await).await;
        assert_eq!(code, 401, "tokens are ignored without the webhook");
    }

    #[tokio::test]
    async fn the_apiserver_decides_with_webhook_authorization() {
        let g = gate(AuthorizationMode::Webhook, false);
        g.check(None, &Method::GET, "/stats/summary", &bearer("good"))
            .await
            .unwrap();
        let (code, body) = refused(
            g.check(None, &Method::POST, "/exec/default/p/c", &bearer("good"))
                .await,
        )
        .await;
        assert_eq!(
            (code, body.as_str()),
            (
                403,
                "Forbidden (user=alice, verb=create, resource=nodes, subresource(s)=[proxy])"
            )
        );
        let (_, body) = refused(g.check(None, &Method::GET, "/pods", &bearer("good")).await).await;
        assert_eq!(
            body,
            "Forbidden (user=alice, verb=get, resource=nodes, subresource(s)=[pods proxy])"
        );
        g.reviews
            .inner()
            .down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let (code, body) = refused(
            g.check(None, &Method::GET, "/metrics", &bearer("good"))
                .await,
        )
        .await;
        assert_eq!(code, 500, "{body}");
    }
}
