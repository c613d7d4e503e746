//! Compact JWS with RS256, the one form ServiceAccount tokens take: `header.claims.signature`,
//! each part base64url without padding.

use base64::Engine;
use serde_json::{Value, json};

use super::keys::{SigningKey, VerifyingKey};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Signs `claims` with `key`; the header names the key by its `kid`.
pub fn sign(key: &SigningKey, claims: &Value) -> String {
    let header = json!({"alg": "RS256", "kid": key.kid});
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let signature = B64.encode(key.sign(input.as_bytes()));
    format!("{input}.{signature}")
}

/// A token split into its parts, its signature not checked yet.
pub struct Unverified<'a> {
    pub header: Value,
    pub claims: Value,
    input: &'a str,
    signature: Vec<u8>,
}

/// Parses a compact JWS; `None` when `token` is not one (three base64url parts, the first two
/// JSON objects).
pub fn parse(token: &str) -> Option<Unverified<'_>> {
    let (input, signature) = token.rsplit_once('.')?;
    let (header, claims) = input.split_once('.')?;
    let object = |part: &str| {
        let bytes = B64.decode(part).ok()?;
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .filter(Value::is_object)
    };
    Some(Unverified {
        header: object(header)?,
        claims: object(claims)?,
        input,
        signature: B64.decode(signature).ok()?,
    })
}

impl Unverified<'_> {
    /// Whether one of `keys` signed it with RS256 (the key its `kid` names first).
    pub fn verified_by(&self, keys: &[VerifyingKey]) -> bool {
        if self.header["alg"] != "RS256" {
            return false;
        }
        let kid = self.header["kid"].as_str();
        let mut ordered: Vec<&VerifyingKey> = keys.iter().collect();
        ordered.sort_by_key(|k| Some(k.kid.as_str()) != kid);
        ordered
            .iter()
            .any(|k| k.verifies(self.input.as_bytes(), &self.signature))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serviceaccount::keys::tests::keys;

    #[test]
    fn signed_tokens_verify_with_their_key_only() {
        let ((_d1, ours), (_d2, theirs)) = (keys(), keys());
        let token = sign(&ours.signing, &json!({"sub": "x"}));
        let parsed = parse(&token).expect("a JWS");
        assert_eq!(parsed.header["kid"], json!(ours.signing.kid));
        assert_eq!(parsed.claims["sub"], "x");
        assert!(parsed.verified_by(&ours.verifying));
        assert!(!parsed.verified_by(&theirs.verifying));

        // Claims changed after signing.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = B64.encode(json!({"sub": "admin"}).to_string());
        parts[1] = &forged;
        assert!(
            !parse(&parts.join("."))
                .unwrap()
                .verified_by(&ours.verifying)
        );
        // Another algorithm named in the header is refused even with a valid signature.
        let none = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), parts[1]);
        assert!(!parse(&none).unwrap().verified_by(&ours.verifying));
    }

    #[test]
    fn what_is_not_a_jws_is_not_parsed() {
        for bad in ["", "abc", "a.b", "a.b.c", "e30.e30", "bm90IGpzb24.e30.AA"] {
            assert!(parse(bad).is_none(), "{bad}");
        }
        assert!(parse("e30.e30.").is_some());
    }
}
