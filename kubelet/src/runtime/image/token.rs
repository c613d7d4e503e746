//! Identity tokens: the OAuth2 refresh tokens `docker login` stores for registries whose token
//! service issues them. A pull trades one for a registry token scoped to the repository, as
//! the distribution spec's OAuth2 flow says: ask `/v2/` for the challenge, then POST
//! `grant_type=refresh_token` with the service and scope to the challenge's realm.

use std::collections::BTreeMap;

use super::with_causes;
use crate::runtime::registries::Attempt;

/// Where the hint after an authorization failure points.
const HINT: &str = "check the identitytoken in registries.yaml";

/// The token service's answer; OAuth2 says `access_token`, docker's older services `token`.
#[derive(serde::Deserialize)]
struct Answer {
    access_token: Option<String>,
    token: Option<String>,
}

/// A registry token for pulling the attempt's repository, or `None` when the endpoint asks
/// for no authorization at all.
pub(super) async fn exchange(
    attempt: &Attempt,
    refresh_token: &str,
) -> Result<Option<String>, String> {
    let client = attempt.tls.http_client(true)?;
    let probe_url = format!("{}/v2/", attempt.endpoint.url());
    let probe = client
        .get(&probe_url)
        .send()
        .await
        .map_err(|e| format!("{probe_url}: {}", with_causes(&e)))?;
    if probe.status() != reqwest::StatusCode::UNAUTHORIZED {
        return Ok(None);
    }
    let challenge = probe
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (scheme, params) = parse_challenge(challenge).ok_or_else(|| {
        format!("authorization failed: {probe_url} answered 401 with no usable challenge ({HINT})")
    })?;
    let realm = match params.get("realm") {
        Some(realm) if scheme.eq_ignore_ascii_case("bearer") => realm,
        _ => {
            return Err(format!(
                "authorization failed: {probe_url} asks for {scheme} authentication; an \
                 identitytoken needs a registry with a token service ({HINT})"
            ));
        }
    };
    let scope = format!("repository:{}:pull", attempt.reference.repository());
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", "ekube"),
        ("scope", scope.as_str()),
    ];
    if let Some(service) = params.get("service") {
        form.push(("service", service));
    }
    let answer = client
        .post(realm)
        .form(&form)
        .send()
        .await
        .map_err(|e| format!("token service {realm}: {}", with_causes(&e)))?;
    let status = answer.status();
    if !status.is_success() {
        return Err(format!(
            "authorization failed: the token service {realm} answered {status} to the \
             identity token ({HINT})"
        ));
    }
    let body = answer
        .bytes()
        .await
        .map_err(|e| format!("token service {realm}: {}", with_causes(&e)))?;
    let answer: Answer = serde_json::from_slice(&body)
        .map_err(|e| format!("token service {realm}: not a token answer: {e}"))?;
    answer
        .access_token
        .or(answer.token)
        .filter(|t| !t.is_empty())
        .map(Some)
        .ok_or_else(|| format!("token service {realm}: the answer carries no token"))
}

/// The scheme and parameters of a `WWW-Authenticate` challenge, e.g.
/// `Bearer realm="https://auth.example/token",service="registry.example"` (RFC 7235; quoted
/// values may escape with `\`).
fn parse_challenge(header: &str) -> Option<(&str, BTreeMap<String, String>)> {
    let header = header.trim();
    let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if rest.is_empty() {
            return Some((scheme, params));
        }
        let (key, after) = rest.split_once('=')?;
        let mut value = String::new();
        rest = if let Some(quoted) = after.strip_prefix('"') {
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next().map(|(_, c)| c)),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            &quoted[end?..]
        } else {
            let end = after.find(',').unwrap_or(after.len());
            value.push_str(after[..end].trim());
            &after[end..]
        };
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_as_rfc_7235_writes_them() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(scheme, "Bearer");
        assert_eq!(params["realm"], "https://auth.example/token");
        assert_eq!(params["service"], "registry.example");
        assert_eq!(params["scope"], "repository:a/b:pull,push");

        let (scheme, params) =
            parse_challenge(r#"Basic realm="a \"quoted\" realm", charset=UTF-8"#).unwrap();
        assert_eq!(scheme, "Basic");
        assert_eq!(params["realm"], r#"a "quoted" realm"#);
        assert_eq!(params["charset"], "UTF-8");

        assert!(parse_challenge(r#"Bearer realm="unterminated"#).is_none());
        assert!(parse_challenge("Bearer novalue").is_none());
        assert!(parse_challenge("").is_none());
    }
}
