//! `certificates.k8s.io/v1` CertificateSigningRequests: validation on create, the `approval`
//! subresource (`kubectl certificate approve|deny`), and the cluster CA's signers
//! `kubernetes.io/kube-apiserver-client`, `kubernetes.io/kube-apiserver-client-kubelet` and
//! `kubernetes.io/kubelet-serving`. An approved request for one of them is checked against its
//! signer's rules and either gets `status.certificate` or a `Failed` condition
//! (`SignerValidationFailure`), as upstream's csrsigning controller leaves it. Requests for
//! other signers are left to their signers.

use base64::Engine;
use ekube_api::csr::CertificateRequest;
use serde_json::{Value, json};

use crate::auth::User;
use crate::errors::{ApiError, Cause, Result};
use crate::pki::Ca;
use crate::registry::{Registry, WriteOptions};

pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
pub const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
const MIN_EXPIRATION_SECONDS: i64 = 600;

const USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// What a request asks for, and its PEM (what the CA signs).
struct Request {
    asked: CertificateRequest,
    pem: String,
}

fn parse_request(obj: &Value) -> std::result::Result<Request, String> {
    let b64 = obj
        .pointer("/spec/request")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "not base64 data".to_string())?;
    let pem = String::from_utf8(bytes).map_err(|_| "not a PEM block".to_string())?;
    let asked = ekube_api::csr::parse(pem.as_bytes())?;
    Ok(Request { asked, pem })
}

fn usages(obj: &Value) -> Vec<String> {
    obj.pointer("/spec/usages")
        .and_then(Value::as_array)
        .map(|u| {
            u.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Field problems of a new request, as upstream validates one.
pub fn validate(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if let Err(why) = parse_request(obj) {
        causes.push(Cause::invalid("spec.request", "\"<request>\"", &why));
    }
    let signer = obj
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if signer.is_empty() {
        causes.push(Cause::required("spec.signerName"));
    } else if signer.split('/').count() != 2 || signer.split('/').any(str::is_empty) {
        causes.push(Cause::invalid(
            "spec.signerName",
            format!("{signer:?}"),
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
    }
    let requested = usages(obj);
    if requested.is_empty() {
        causes.push(Cause::required("spec.usages"));
    }
    for (i, u) in requested.iter().enumerate() {
        if !USAGES.contains(&u.as_str()) {
            causes.push(Cause::not_supported(format!("spec.usages[{i}]"), u, USAGES));
        }
    }
    if let Some(secs) = obj
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        && secs < MIN_EXPIRATION_SECONDS
    {
        causes.push(Cause::invalid(
            "spec.expirationSeconds",
            secs,
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    causes
}

/// On create, `spec.username`, `uid`, `groups` and `extra` become the requester's, whatever the
/// client sent (upstream's `PrepareForCreate`): approvers such as the csrapproving controller
/// decide on who asked. Objects of other kinds pass unchanged.
pub fn stamp_requester(r: &ekube_api::ResourceInfo, mut obj: Value, user: &User) -> Value {
    if r.kind != "CertificateSigningRequest" {
        return obj;
    }
    let spec = crate::defaults::ensure(&mut obj, "spec");
    if let Some(spec) = spec.as_object_mut() {
        for field in ["username", "uid", "groups", "extra"] {
            spec.remove(field);
        }
        spec.insert("username".into(), json!(user.name));
        if !user.uid.is_empty() {
            spec.insert("uid".into(), json!(user.uid));
        }
        if !user.groups.is_empty() {
            spec.insert("groups".into(), json!(user.groups));
        }
        if !user.extra.is_empty() {
            spec.insert("extra".into(), json!(user.extra));
        }
    }
    obj
}

/// Checks `usages` against the required and optional ones of a signer.
fn check_usages(
    got: &[String],
    required: &[&str],
    optional: &[&str],
) -> std::result::Result<(), String> {
    for u in got {
        if !required.contains(&u.as_str()) && !optional.contains(&u.as_str()) {
            return Err(format!("usage {u:?} is not allowed for this signer"));
        }
    }
    match required.iter().find(|r| !got.iter().any(|u| u == *r)) {
        Some(missing) => Err(format!("missing required usage {missing:?}")),
        None => Ok(()),
    }
}

/// The rules of `signer` for a request; `Ok(server)` tells a serving certificate.
fn check_signer(
    signer: &str,
    req: &CertificateRequest,
    got: &[String],
) -> std::result::Result<bool, String> {
    let optional = ["digital signature", "key encipherment"];
    let no_sans = || match req.dns_or_ip + req.email_or_uri {
        0 => Ok(()),
        _ => Err("subjectAltNames are not allowed for client certificates".to_string()),
    };
    let node_subject = || {
        if req.organizations != ["system:nodes"] {
            return Err("organization must contain only system:nodes".to_string());
        }
        if !req.common_name.starts_with("system:node:") || req.common_name.len() == 12 {
            return Err("subject common name must be system:node:<node name>".to_string());
        }
        Ok(())
    };
    match signer {
        KUBE_APISERVER_CLIENT => {
            no_sans()?;
            check_usages(got, &["client auth"], &optional)?;
            Ok(false)
        }
        KUBELET_CLIENT => {
            node_subject()?;
            no_sans()?;
            check_usages(
                got,
                &["digital signature", "client auth"],
                &["key encipherment"],
            )?;
            Ok(false)
        }
        _ => {
            node_subject()?;
            if req.dns_or_ip == 0 {
                return Err("at least one DNS or IP subjectAltName is required".into());
            }
            if req.email_or_uri > 0 {
                return Err("email and URI subjectAltNames are not allowed".into());
            }
            check_usages(
                got,
                &["digital signature", "server auth"],
                &["key encipherment"],
            )?;
            Ok(true)
        }
    }
}

fn condition(type_: &str, reason: &str, message: &str) -> Value {
    let now = crate::registry::now();
    json!({"type": type_, "status": "True", "reason": reason, "message": message,
        "lastUpdateTime": now, "lastTransitionTime": now})
}

fn conditions(obj: &Value) -> Vec<Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn has(conds: &[Value], type_: &str) -> bool {
    conds
        .iter()
        .any(|c| c["type"] == type_ && c["status"] == "True")
}

/// The cluster CA as the CSR signers use it.
pub struct Signer<'a> {
    pub ca: &'a Ca,
    /// `--cluster-signing-duration`: the longest certificate issued.
    pub max_duration: std::time::Duration,
}

impl Signer<'_> {
    /// How long a certificate for `csr` lives: its `spec.expirationSeconds` (validated to be at
    /// least 600) when shorter than the signer's maximum, as upstream's signer decides it.
    fn duration(&self, csr: &Value) -> std::time::Duration {
        csr.pointer("/spec/expirationSeconds")
            .and_then(Value::as_u64)
            .map(std::time::Duration::from_secs)
            .map_or(self.max_duration, |asked| asked.min(self.max_duration))
    }
}

/// Signs an approved request of one of the cluster CA's signers, or marks it `Failed`.
fn sign(signer: &Signer, csr: &mut Value) {
    let signer_name = csr
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let ours =
        [KUBE_APISERVER_CLIENT, KUBELET_CLIENT, KUBELET_SERVING].contains(&signer_name.as_str());
    let conds = conditions(csr);
    let done = csr.pointer("/status/certificate").is_some() || has(&conds, "Failed");
    if !ours || done || !has(&conds, "Approved") || has(&conds, "Denied") {
        return;
    }
    let life = signer.duration(csr);
    let signed = parse_request(csr).and_then(|req| {
        let server = check_signer(&signer_name, &req.asked, &usages(csr))?;
        signer
            .ca
            .sign_request(&req.pem, server, life)
            .map_err(|e| e.to_string())
    });
    let status = crate::defaults::ensure(csr, "status");
    match signed {
        Ok(pem) => {
            status["certificate"] = json!(base64::engine::general_purpose::STANDARD.encode(pem))
        }
        Err(why) => {
            let mut conds = conds;
            conds.push(condition("Failed", "SignerValidationFailure", &why));
            status["conditions"] = json!(conds);
        }
    }
}

/// `PUT .../certificatesigningrequests/<name>/approval`: takes the Approved/Denied conditions
/// of `body`, then signs what became approved.
pub async fn approve(
    registry: &Registry,
    signer: &Signer<'_>,
    r: &ekube_api::ResourceInfo,
    name: &str,
    body: &Value,
    opts: &WriteOptions,
) -> Result<(Value, crate::registry::Warnings)> {
    let wanted: Vec<Value> = conditions(body)
        .into_iter()
        .filter(|c| c["type"] == "Approved" || c["type"] == "Denied")
        .collect();
    if has(&wanted, "Approved") && has(&wanted, "Denied") {
        return Err(ApiError::invalid(
            r.group,
            r.kind,
            name,
            vec![Cause::invalid(
                "status.conditions",
                "\"Approved, Denied\"",
                "Approved and Denied conditions are mutually exclusive",
            )],
        ));
    }
    registry
        .guaranteed_update(r, None, name, Some("status"), opts, |mut cur| {
            let mut conds = conditions(&cur);
            for type_ in ["Approved", "Denied"] {
                if has(&conds, type_) && !has(&wanted, type_) {
                    return Err(ApiError::invalid(
                        r.group,
                        r.kind,
                        name,
                        vec![Cause::forbidden(
                            "status.conditions",
                            &format!("updates may not remove a condition of type {type_:?}"),
                        )],
                    ));
                }
            }
            conds.retain(|c| c["type"] != "Approved" && c["type"] != "Denied");
            conds.extend(wanted.iter().cloned());
            if has(&conds, "Approved") && has(&conds, "Denied") {
                return Err(ApiError::invalid(
                    r.group,
                    r.kind,
                    name,
                    vec![Cause::forbidden(
                        "status.conditions",
                        "Approved and Denied conditions are mutually exclusive",
                    )],
                ));
            }
            crate::defaults::ensure(&mut cur, "status")["conditions"] = json!(conds);
            sign(signer, &mut cur);
            Ok(cur)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_requester_replaces_what_the_client_claimed() {
        let csrs =
            ekube_api::resources::find("certificates.k8s.io", "v1", "certificatesigningrequests")
                .unwrap();
        let user = User {
            name: "system:bootstrap:abcdef".into(),
            uid: String::new(),
            groups: vec!["system:bootstrappers".into(), "system:authenticated".into()],
            extra: [("k".to_string(), vec!["v".to_string()])].into(),
        };
        let claimed = json!({"spec": {"username": "system:node:n1", "uid": "forged",
            "groups": ["system:masters"], "signerName": KUBELET_CLIENT}});
        let stamped = stamp_requester(csrs, claimed.clone(), &user);
        assert_eq!(
            stamped["spec"],
            json!({"username": "system:bootstrap:abcdef", "groups": user.groups,
                "extra": {"k": ["v"]}, "signerName": KUBELET_CLIENT})
        );
        let pods = ekube_api::resources::find("", "v1", "pods").unwrap();
        assert_eq!(stamp_requester(pods, claimed.clone(), &user), claimed);
    }

    #[test]
    fn a_request_may_shorten_the_signing_duration_but_not_exceed_it() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let signer = Signer {
            ca: &ca,
            max_duration: std::time::Duration::from_secs(3600),
        };
        let asking = |secs: Option<u64>| json!({"spec": {"expirationSeconds": secs}});
        let secs = |csr: Value| signer.duration(&csr).as_secs();
        assert_eq!(secs(asking(None)), 3600);
        assert_eq!(secs(asking(Some(600))), 600);
        assert_eq!(secs(asking(Some(86_400))), 3600);
    }
}
