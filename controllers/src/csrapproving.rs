//! CSR auto-approver (upstream's `csrapproving` controller): a CertificateSigningRequest for a
//! kubelet's client certificate is approved when the apiserver says its requester may ask for
//! one, so nodes joining with a bootstrap token (and nodes renewing their certificate) get
//! signed without an administrator.
//!
//! A request is recognised as a node client request when its signer is
//! `kubernetes.io/kube-apiserver-client-kubelet`, its subject is `CN=system:node:<name>` in
//! exactly `O=system:nodes`, it names no subject alternative names, and its usages are exactly
//! `digital signature` + `client auth`, with or without `key encipherment` (upstream's
//! `ValidateKubeletClientCSR`). It is a *self* node client request when the requester
//! (`spec.username`, which the apiserver records) is that node. The requester must then be
//! allowed `create` on `certificatesigningrequests/selfnodeclient` (renewal) or
//! `certificatesigningrequests/nodeclient` (a new node) in `certificates.k8s.io`, asked through
//! a SubjectAccessReview. Anything else is left for someone else to approve or deny.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

use ekube_api::csr::CertificateRequest;

use crate::{Context as _, Result};

const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const NODE_PREFIX: &str = "system:node:";
const NODES_GROUP: &str = "system:nodes";
/// How often a request whose requester was not allowed is looked at again (a binding may
/// have appeared since).
const RECHECK: Duration = Duration::from_secs(300);

/// A permission that gets a recognised request approved.
struct Recognizer {
    /// Only for requests of the node itself.
    self_only: bool,
    /// The `certificatesigningrequests` subresource the requester must be allowed to create.
    subresource: &'static str,
    /// The Approved condition's message.
    message: &'static str,
}

/// Asked in this order, as upstream does.
const RECOGNIZERS: &[Recognizer] = &[
    Recognizer {
        self_only: true,
        subresource: "selfnodeclient",
        message: "Auto approving self kubelet client certificate after SubjectAccessReview.",
    },
    Recognizer {
        self_only: false,
        subresource: "nodeclient",
        message: "Auto approving kubelet client certificate after SubjectAccessReview.",
    },
];

/// Why `csr` is not a node client request (`Ok` when it is).
fn node_client(
    csr: &CertificateSigningRequest,
    subject: &CertificateRequest,
) -> Result<(), String> {
    if csr.spec.signer_name != KUBELET_CLIENT_SIGNER {
        return Err(format!("signer is {}", csr.spec.signer_name));
    }
    if subject.organizations != [NODES_GROUP] {
        return Err(format!("organization is not exactly {NODES_GROUP}"));
    }
    if subject.dns_or_ip + subject.email_or_uri > 0 {
        return Err("subject alternative names are not allowed".into());
    }
    if !subject.common_name.starts_with(NODE_PREFIX) {
        return Err(format!("common name does not start with {NODE_PREFIX}"));
    }
    let usages: BTreeSet<&str> = csr
        .spec
        .usages
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    let without_rsa = BTreeSet::from(["digital signature", "client auth"]);
    let with_rsa = BTreeSet::from(["digital signature", "key encipherment", "client auth"]);
    if usages != without_rsa && usages != with_rsa {
        return Err(
            "usages are not digital signature and client auth (and key encipherment)".into(),
        );
    }
    Ok(())
}

/// The recognizers whose permission would get `csr` approved, in the order to ask.
fn recognizers(
    csr: &CertificateSigningRequest,
    subject: &CertificateRequest,
) -> Vec<&'static Recognizer> {
    if node_client(csr, subject).is_err() {
        return Vec::new();
    }
    let by_itself = csr.spec.username.as_deref() == Some(subject.common_name.as_str());
    RECOGNIZERS
        .iter()
        .filter(|r| by_itself || !r.self_only)
        .collect()
}

fn decided(csr: &CertificateSigningRequest) -> bool {
    let status = csr.status.as_ref();
    let signed = status
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty());
    signed
        || status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| (c.type_ == "Approved" || c.type_ == "Denied") && c.status == "True")
}

struct Ctx {
    client: kube::Client,
}

pub async fn run(client: kube::Client) -> Result<(), String> {
    let controller = Controller::new(
        Api::<CertificateSigningRequest>::all(client.clone()),
        watcher::Config::default(),
    );
    crate::runner::drive(
        "csrapproving",
        controller,
        reconcile,
        Ctx { client },
        Duration::from_secs(1),
    )
    .await;
    Ok(())
}

/// Whether the requester of `csr` may create `certificatesigningrequests/<subresource>`.
async fn allowed(ctx: &Ctx, csr: &CertificateSigningRequest, subresource: &str) -> Result<bool> {
    let spec = &csr.spec;
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: spec.username.clone(),
            uid: spec.uid.clone(),
            groups: spec.groups.clone(),
            extra: spec.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".into()),
                version: Some("*".into()),
                resource: Some("certificatesigningrequests".into()),
                subresource: Some(subresource.into()),
                verb: Some("create".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(ctx.client.clone())
        .create(&PostParams::default(), &review)
        .await
        .ctx(|| format!("asking whether the requester of csr {} may create certificatesigningrequests/{subresource}", csr.name_any()))?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

#[tracing::instrument(skip_all, fields(csr = %csr.name_any()))]
async fn reconcile(csr: Arc<CertificateSigningRequest>, ctx: Arc<Ctx>) -> Result<Action> {
    if decided(&csr) {
        return Ok(Action::await_change());
    }
    let subject = match ekube_api::csr::parse(&csr.spec.request.0) {
        Ok(s) => s,
        Err(why) => {
            tracing::debug!(%why, "not a request this controller reads");
            return Ok(Action::await_change());
        }
    };
    let candidates = recognizers(&csr, &subject);
    for r in &candidates {
        if !allowed(&ctx, &csr, r.subresource).await? {
            continue;
        }
        let mut approved = (*csr).clone();
        let status = approved.status.get_or_insert_with(Default::default);
        status
            .conditions
            .get_or_insert_with(Vec::new)
            .push(CertificateSigningRequestCondition {
                type_: "Approved".into(),
                status: "True".into(),
                reason: Some("AutoApproved".into()),
                message: Some(r.message.into()),
                ..Default::default()
            });
        let name = csr.name_any();
        match Api::<CertificateSigningRequest>::all(ctx.client.clone())
            .replace_subresource("approval", &name, &PostParams::default(), &approved)
            .await
        {
            Ok(_) => {
                tracing::info!(requester = ?csr.spec.username, subresource = r.subresource, "approved")
            }
            // Changed meanwhile (approved or denied by someone else): the watch brings it back.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).ctx(|| format!("approving csr {name}")),
        }
        return Ok(Action::await_change());
    }
    if !candidates.is_empty() {
        tracing::debug!(
            requester = ?csr.spec.username,
            "a node client request, but the requester may not create {:?}",
            candidates.iter().map(|r| r.subresource).collect::<Vec<_>>()
        );
    }
    Ok(Action::requeue(RECHECK))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestSpec, CertificateSigningRequestStatus,
    };

    fn pem(cn: &str, orgs: &[&str], sans: &[&str]) -> Vec<u8> {
        ekube_api::csr::testing::request(cn, orgs, sans)
            .0
            .into_bytes()
    }

    fn csr(request: Vec<u8>, requester: &str, usages: &[&str]) -> CertificateSigningRequest {
        CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                request: ByteString(request),
                signer_name: KUBELET_CLIENT_SIGNER.into(),
                username: Some(requester.into()),
                usages: Some(usages.iter().map(|u| u.to_string()).collect()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn asked(c: &CertificateSigningRequest) -> Vec<&'static str> {
        let subject = ekube_api::csr::parse(&c.spec.request.0).unwrap();
        recognizers(c, &subject)
            .iter()
            .map(|r| r.subresource)
            .collect()
    }

    const USAGES: &[&str] = &["digital signature", "client auth"];

    #[test]
    fn node_client_requests_are_recognised_as_upstream_does() {
        let node = || pem("system:node:n9", &["system:nodes"], &[]);
        let bootstrap = "system:bootstrap:abcdef";
        assert_eq!(asked(&csr(node(), bootstrap, USAGES)), ["nodeclient"]);
        assert_eq!(
            asked(&csr(node(), "system:node:n9", USAGES)),
            ["selfnodeclient", "nodeclient"]
        );
        assert_eq!(
            asked(&csr(
                node(),
                bootstrap,
                &["key encipherment", "client auth", "digital signature"]
            )),
            ["nodeclient"],
            "key encipherment is optional"
        );
        // Anything else is not a node client request.
        for (request, usages) in [
            (
                pem("system:node:n9", &["system:nodes"], &["n9.example"]),
                USAGES,
            ),
            (
                pem("system:node:n9", &["system:nodes"], &["10.0.0.9"]),
                USAGES,
            ),
            (pem("n9", &["system:nodes"], &[]), USAGES),
            (pem("system:node:n9", &[], &[]), USAGES),
            (pem("system:node:n9", &["system:masters"], &[]), USAGES),
            (node(), &["client auth"][..]),
            (
                node(),
                &["digital signature", "client auth", "server auth"][..],
            ),
        ] {
            assert!(asked(&csr(request, bootstrap, usages)).is_empty());
        }
        let mut other_signer = csr(node(), bootstrap, USAGES);
        other_signer.spec.signer_name = "kubernetes.io/kube-apiserver-client".into();
        assert!(asked(&other_signer).is_empty());
    }

    #[test]
    fn decided_requests_are_left_alone() {
        let mut c = csr(pem("system:node:n9", &["system:nodes"], &[]), "x", USAGES);
        assert!(!decided(&c));
        let condition = |type_: &str| CertificateSigningRequestCondition {
            type_: type_.into(),
            status: "True".into(),
            ..Default::default()
        };
        for type_ in ["Approved", "Denied"] {
            c.status = Some(CertificateSigningRequestStatus {
                conditions: Some(vec![condition(type_)]),
                ..Default::default()
            });
            assert!(decided(&c), "{type_}");
        }
        c.status = Some(CertificateSigningRequestStatus {
            conditions: Some(vec![condition("Failed")]),
            ..Default::default()
        });
        assert!(!decided(&c));
    }
}
