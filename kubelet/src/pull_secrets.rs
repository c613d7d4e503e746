//! Credentials for a pull from the pod's `imagePullSecrets`: secrets of type
//! `kubernetes.io/dockerconfigjson` (`.dockerconfigjson`: `{"auths": {host: entry}}`) and
//! `kubernetes.io/dockercfg` (`.dockercfg`: `{host: entry}`), each entry carrying `username`
//! and `password` or `auth` (base64 of `user:password`). As the kubelet's keyring does, a key
//! matches the image's registry whatever its scheme or path (`https://index.docker.io/v1/`
//! is `docker.io`); secrets are tried in the order the pod lists them, missing ones skipped.

use k8s_openapi::api::core::v1::{Pod, Secret};
use serde_json::Value;

use super::inputs;
use crate::cri;

/// The registry a docker config key names: scheme, path and docker.io's aliases removed.
fn registry_of(key: &str) -> &str {
    let host = key
        .split_once("://")
        .map_or(key, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        other => other,
    }
}

/// The credentials one secret gives for `registry`.
fn from_secret(secret: &Secret, registry: &str) -> Option<cri::AuthConfig> {
    let data = inputs::secret_data(secret);
    let auths: Value = match secret.type_.as_deref() {
        Some("kubernetes.io/dockerconfigjson") => {
            serde_json::from_slice::<Value>(data.get(".dockerconfigjson")?).ok()?["auths"].clone()
        }
        Some("kubernetes.io/dockercfg") => serde_json::from_slice(data.get(".dockercfg")?).ok()?,
        _ => return None,
    };
    let (_, entry) = auths
        .as_object()?
        .iter()
        .find(|(key, _)| registry_of(key) == registry)?;
    let field = |name: &str| entry[name].as_str().unwrap_or_default().to_owned();
    let auth = cri::AuthConfig {
        username: field("username"),
        password: field("password"),
        auth: field("auth"),
        ..Default::default()
    };
    (!auth.username.is_empty() || !auth.auth.is_empty()).then_some(auth)
}

/// The first credentials the pod's pull secrets give for `registry`.
pub(super) async fn credentials(
    client: &kube::Client,
    pod: &Pod,
    registry: &str,
) -> Option<cri::AuthConfig> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let names = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.as_ref())
        .into_iter()
        .flatten()
        .map(|r| r.name.clone());
    for name in names {
        match inputs::get_secret(client, ns, &name).await {
            Ok(Some(secret)) => {
                if let Some(auth) = from_secret(&secret, registry) {
                    return Some(auth);
                }
            }
            Ok(None) => tracing::warn!(%ns, secret = %name, "image pull secret not found"),
            Err(e) => tracing::warn!(%ns, secret = %name, error = %e.0, "image pull secret"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(type_: &str, key: &str, value: &str) -> Secret {
        Secret {
            type_: Some(type_.into()),
            data: Some([(key.to_owned(), ByteString(value.as_bytes().to_vec()))].into()),
            ..Default::default()
        }
    }

    #[test]
    fn dockerconfigjson_and_dockercfg_match_by_registry() {
        let json = secret(
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            r#"{"auths":{"https://index.docker.io/v1/":{"username":"u","password":"p"},
                "192.168.64.1:5001":{"auth":"dTpw"}}}"#,
        );
        let a = from_secret(&json, "docker.io").unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("u", "p"));
        assert_eq!(
            from_secret(&json, "192.168.64.1:5001").unwrap().auth,
            "dTpw"
        );
        assert!(from_secret(&json, "quay.io").is_none());

        let cfg = secret(
            "kubernetes.io/dockercfg",
            ".dockercfg",
            r#"{"http://reg.example.com/v2":{"username":"a","password":"b"}}"#,
        );
        assert_eq!(from_secret(&cfg, "reg.example.com").unwrap().username, "a");
        let opaque = secret(
            "Opaque",
            ".dockercfg",
            r#"{"reg.example.com":{"auth":"x"}}"#,
        );
        assert!(from_secret(&opaque, "reg.example.com").is_none());
        let broken = secret("kubernetes.io/dockerconfigjson", ".dockerconfigjson", "{");
        assert!(from_secret(&broken, "docker.io").is_none());
    }
}
