//! Who each controller is towards the apiserver (`--use-service-account-credentials`).
//!
//! Without the flag every controller uses the controller-manager's own kubeconfig. With it,
//! as upstream's `SAControllerClientBuilder` does, each controller acts as its own
//! ServiceAccount `kube-system/<name>` (the name the bootstrap policy binds its
//! `system:controller:<name>` role to): the controller-manager ensures the ServiceAccount
//! exists, obtains a token through the TokenRequest API and renews it before it expires.
//!
//! Reads are split as upstream splits them: upstream's controllers list and watch through
//! shared informers built with the controller-manager's own identity (whose role may list and
//! watch everything) and write with the controller's. ekube's controllers watch with the client
//! they are given, so that client sends lists and watches with the controller-manager's
//! credentials and every other request with the ServiceAccount's token.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use ekube_api::events::Recorder;
use futures::future::BoxFuture;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Method, Request, Response};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use kube::client::Body;

use crate::Error;

/// The namespace of the controllers' ServiceAccounts.
const NAMESPACE: &str = "kube-system";

/// How long a requested token lives; upstream's controller tokens live an hour too.
const TOKEN_SECONDS: i64 = 3600;

/// How many times (a second apart) the first token is asked for before giving up.
const START_ATTEMPTS: u32 = 30;

/// Each controller (its `--controllers` name) and the ServiceAccount it runs as, named as
/// upstream's controller-manager names it (`ClientOrDie("<name>")`).
const SERVICE_ACCOUNTS: &[(&str, &str)] = &[
    ("nodeipam", "node-controller"),
    ("nodelifecycle", "node-controller"),
    ("endpointslice", "endpointslice-controller"),
    ("endpoints", "endpoint-controller"),
    ("replicaset", "replicaset-controller"),
    ("replicationcontroller", "replication-controller"),
    ("deployment", "deployment-controller"),
    ("daemonset", "daemon-set-controller"),
    ("disruption", "disruption-controller"),
    ("statefulset", "statefulset-controller"),
    ("job", "job-controller"),
    // Part of ekube's job controller (finished Jobs past their TTL), a controller upstream.
    ("ttl-after-finished", "ttl-after-finished-controller"),
    ("cronjob", "cronjob-controller"),
    ("garbagecollector", "generic-garbage-collector"),
    ("namespace", "namespace-controller"),
    ("serviceaccount", "service-account-controller"),
    ("root-ca-cert-publisher", "root-ca-cert-publisher"),
    ("csrapproving", "certificate-controller"),
    ("resourcequota", "resourcequota-controller"),
    ("horizontalpodautoscaling", "horizontal-pod-autoscaler"),
    ("persistentvolume-binder", "persistent-volume-binder"),
    ("pvc-protection", "pvc-protection-controller"),
    ("pv-protection", "pv-protection-controller"),
    ("bootstrapsigner", "bootstrap-signer"),
    ("tokencleaner", "token-cleaner"),
];

/// The ServiceAccount controller `controller` runs as.
pub fn service_account(controller: &str) -> Option<&'static str> {
    SERVICE_ACCOUNTS
        .iter()
        .find(|(c, _)| *c == controller)
        .map(|(_, sa)| *sa)
}

/// Hands each controller its client.
pub struct Credentials {
    /// The controller-manager's own client (its `--kubeconfig`).
    root: kube::Client,
    /// `--kubeconfig` without its user, for ServiceAccount clients; `None` without
    /// `--use-service-account-credentials`.
    anonymous: Option<kube::Config>,
}

impl Credentials {
    pub async fn new(config: &crate::Config) -> Result<Self, Error> {
        let root = ekube_api::client::from_kubeconfig(&config.kubeconfig).await?;
        let anonymous = if config.use_service_account_credentials {
            let mut kc = kube::Config::from_custom_kubeconfig(
                kube::config::Kubeconfig::read_from(&config.kubeconfig)
                    .map_err(|e| Error::Config(format!("--kubeconfig: {e}")))?,
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .map_err(|e| Error::Config(format!("--kubeconfig: {e}")))?;
            // A client certificate would win over the token: present none.
            kc.auth_info = Default::default();
            Some(kc)
        } else {
            None
        };
        Ok(Self { root, anonymous })
    }

    /// The controller-manager's own client (its `--kubeconfig`).
    pub fn own(&self) -> kube::Client {
        self.root.clone()
    }

    /// The client and event recorder controller `controller` runs with.
    pub async fn for_controller(
        &self,
        controller: &'static str,
    ) -> Result<(kube::Client, Recorder), Error> {
        let client = match &self.anonymous {
            None => self.root.clone(),
            Some(anonymous) => {
                let sa = service_account(controller).ok_or_else(|| {
                    Error::Config(format!(
                        "controller {controller} has no ServiceAccount to run as"
                    ))
                })?;
                self.service_account_client(anonymous, sa).await?
            }
        };
        let recorder = Recorder::new(client.clone(), "controller-manager");
        Ok((client, recorder))
    }

    async fn service_account_client(
        &self,
        anonymous: &kube::Config,
        sa: &'static str,
    ) -> Result<kube::Client, Error> {
        let failed = |message: String| Error::Stopped {
            controller: sa,
            message,
        };
        // The apiserver may still be starting (a separate process): retry for a while.
        let mut attempts = 0;
        let (header, lifetime) = loop {
            match self.first_token(sa).await {
                Ok(issued) => break issued,
                Err(e) if attempts < START_ATTEMPTS => {
                    attempts += 1;
                    tracing::debug!(serviceaccount = sa, error = %e, "waiting for the apiserver");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(failed(e)),
            }
        };
        let token = Arc::new(RwLock::new(header));
        tokio::spawn(renew(
            self.root.clone(),
            sa,
            Arc::downgrade(&token),
            lifetime,
        ));
        let own = ekube_api::client::from_config(anonymous.clone())
            .map_err(|e| failed(format!("building a client: {e}")))?;
        let split = Split {
            root: self.root.clone(),
            own,
            token,
        };
        Ok(kube::client::ClientBuilder::new(split, anonymous.default_namespace.clone()).build())
    }

    /// Ensures the ServiceAccount exists and requests its first token.
    async fn first_token(&self, sa: &str) -> Result<(HeaderValue, Duration), String> {
        self.ensure_service_account(sa)
            .await
            .map_err(|e| format!("ensuring ServiceAccount {NAMESPACE}/{sa}: {e}"))?;
        request_token(&self.root, sa)
            .await
            .map_err(|e| format!("requesting a token for {NAMESPACE}/{sa}: {e}"))
    }

    async fn ensure_service_account(&self, sa: &str) -> Result<(), kube::Error> {
        let api: Api<ServiceAccount> = Api::namespaced(self.root.clone(), NAMESPACE);
        if api.get_opt(sa).await?.is_some() {
            return Ok(());
        }
        let mut obj = ServiceAccount::default();
        obj.metadata.name = Some(sa.to_string());
        match api.create(&PostParams::default(), &obj).await {
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// A fresh token for `sa` as an `Authorization` header, and how long it is valid.
async fn request_token(root: &kube::Client, sa: &str) -> Result<(HeaderValue, Duration), String> {
    let api: Api<ServiceAccount> = Api::namespaced(root.clone(), NAMESPACE);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(TOKEN_SECONDS),
            ..Default::default()
        }),
        ..Default::default()
    };
    let issued = api
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .map_err(|e| e.to_string())?;
    let status = issued
        .status
        .ok_or("the TokenRequest came back without a status")?;
    let (Some(token), Some(expires)) = (status.token, status.expiration_timestamp) else {
        return Err("the TokenRequest came back without a token or its expiry".into());
    };
    let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|e| format!("the issued token is not a header value: {e}"))?;
    header.set_sensitive(true);
    // A token already expired on arrival (a clock far off) is renewed at the retry pace.
    let left = Duration::try_from(
        expires
            .0
            .duration_since(k8s_openapi::jiff::Timestamp::now()),
    )
    .unwrap_or_default();
    Ok((header, left))
}

/// Renews the token at 80% of its life (upstream's margin), until the client is dropped.
async fn renew(
    root: kube::Client,
    sa: &'static str,
    token: Weak<RwLock<HeaderValue>>,
    life: Duration,
) {
    let mut wait = life.mul_f64(0.8).max(Duration::from_secs(10));
    loop {
        tokio::time::sleep(wait).await;
        let Some(token) = token.upgrade() else {
            return;
        };
        match request_token(&root, sa).await {
            Ok((header, life)) => {
                *token.write().expect("token lock") = header;
                wait = life.mul_f64(0.8).max(Duration::from_secs(10));
                tracing::debug!(serviceaccount = sa, "renewed controller token");
            }
            Err(e) => {
                // The current token is still valid for a fifth of its life: retry soon.
                tracing::warn!(serviceaccount = sa, error = %e, "renewing controller token");
                wait = Duration::from_secs(10);
            }
        }
    }
}

/// Sends lists and watches as the controller-manager, everything else with the token.
#[derive(Clone)]
struct Split {
    root: kube::Client,
    own: kube::Client,
    token: Arc<RwLock<HeaderValue>>,
}

impl tower::Service<Request<Body>> for Split {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), kube::Error>> {
        // Both inner clients buffer their requests and are always ready.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        if req.method() == Method::GET && is_collection(req.uri().path()) {
            let root = self.root.clone();
            return Box::pin(async move { root.send(req).await });
        }
        let header = self.token.read().expect("token lock").clone();
        req.headers_mut().insert(AUTHORIZATION, header);
        let own = self.own.clone();
        Box::pin(async move { own.send(req).await })
    }
}

/// Whether `path` (`/api/v1/...` or `/apis/<group>/<version>/...`) names a collection (a
/// GET of it is a list or a watch) rather than one object or a subresource.
fn is_collection(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match parts.as_slice() {
        ["api", _, rest @ ..] | ["apis", _, _, rest @ ..] => rest,
        _ => return false,
    };
    matches!(rest, [_] | ["namespaces", _, _])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_watches_are_told_from_object_reads() {
        for list in [
            "/api/v1/pods",
            "/api/v1/namespaces",
            "/api/v1/namespaces/kube-system/configmaps",
            "/apis/apps/v1/replicasets",
            "/apis/apps/v1/namespaces/default/replicasets",
        ] {
            assert!(is_collection(list), "{list}");
        }
        for read in [
            "/api/v1/namespaces/default",
            "/api/v1/namespaces/default/pods/web",
            "/api/v1/namespaces/default/pods/web/status",
            "/apis/apps/v1/namespaces/default/deployments/web",
            "/apis/apps/v1",
            "/version",
        ] {
            assert!(!is_collection(read), "{read}");
        }
    }

    #[test]
    fn every_controller_has_a_service_account() {
        for controller in crate::CONTROLLERS {
            assert!(
                service_account(controller).is_some(),
                "{controller} has no ServiceAccount"
            );
        }
        assert_eq!(service_account("daemonset"), Some("daemon-set-controller"));
        assert_eq!(service_account("bogus"), None);
    }
}
