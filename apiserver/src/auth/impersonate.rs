//! `Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid` and `Impersonate-Extra-<key>`
//! headers, as upstream's impersonation filter handles them: the authenticated user must be
//! allowed the `impersonate` verb on each thing it asks to be (`users`, or `serviceaccounts` in
//! the account's namespace, `groups`, `authentication.k8s.io` `uids` and `userextras/<key>`);
//! the request then runs as the impersonated user, who is in `system:authenticated` (or
//! `system:unauthenticated` for `system:anonymous`).

use http::HeaderMap;

use super::{ANONYMOUS, AUTHENTICATED, UNAUTHENTICATED, User};
use crate::authz::{Attributes, Authorization};
use crate::errors::{ApiError, Result};

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";

fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}

/// `(api group, resource, subresource, namespace, name)` of one impersonation to authorize.
type Ask = (&'static str, &'static str, String, String, String);

/// The user the request acts as: `user` itself without impersonation headers, else the
/// impersonated user once every part of it is authorized.
pub fn apply(authz: &Authorization, user: User, headers: &HeaderMap) -> Result<User> {
    let name = values(headers, USER).first().map(|s| s.to_string());
    let groups: Vec<String> = values(headers, GROUP)
        .iter()
        .map(|s| s.to_string())
        .collect();
    let uid = values(headers, UID).first().map(|s| s.to_string());
    let mut extra = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (header, value) in headers {
        if let Some(key) = header.as_str().strip_prefix(EXTRA_PREFIX)
            && let Ok(v) = value.to_str()
        {
            let key = form_urlencoded::parse(format!("k={key}").as_bytes())
                .next()
                .map(|(_, k)| k.to_lowercase())
                .unwrap_or_default();
            extra.entry(key).or_default().push(v.to_string());
        }
    }
    let Some(name) = name else {
        if groups.is_empty() && uid.is_none() && extra.is_empty() {
            return Ok(user);
        }
        return Err(ApiError::bad_request(
            "requested impersonation of groups, a uid or extra fields without impersonating a user",
        ));
    };
    let mut asks: Vec<Ask> = Vec::new();
    let service_account = name
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'));
    match service_account {
        Some((ns, sa)) => asks.push(("", "serviceaccounts", String::new(), ns.into(), sa.into())),
        None => asks.push(("", "users", String::new(), String::new(), name.clone())),
    }
    for g in &groups {
        asks.push(("", "groups", String::new(), String::new(), g.clone()));
    }
    if let Some(uid) = &uid {
        asks.push((
            "authentication.k8s.io",
            "uids",
            String::new(),
            String::new(),
            uid.clone(),
        ));
    }
    for (key, vals) in &extra {
        for v in vals {
            asks.push((
                "authentication.k8s.io",
                "userextras",
                key.clone(),
                String::new(),
                v.clone(),
            ));
        }
    }
    for (group, resource, subresource, namespace, object) in asks {
        authz.check(&Attributes {
            user: user.clone(),
            verb: "impersonate".into(),
            resource_request: true,
            namespace,
            api_group: group.into(),
            resource: resource.into(),
            subresource,
            name: object,
            ..Attributes::default()
        })?;
    }
    let mut groups = groups;
    if let Some((ns, _)) = service_account
        && groups.is_empty()
    {
        groups = vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
        ];
    }
    let implied = if name == ANONYMOUS {
        UNAUTHENTICATED
    } else {
        AUTHENTICATED
    };
    if !groups.iter().any(|g| g == implied) {
        groups.push(implied.into());
    }
    Ok(User {
        name,
        uid: uid.unwrap_or_default(),
        groups,
        extra,
    })
}
