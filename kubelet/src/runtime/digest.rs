//! Content digests of image blobs: the only form in which a digest from a manifest, an index or
//! an archive becomes part of a path in the image store.
//!
//! A [`BlobDigest`] is `sha256:` followed by exactly 64 lowercase hex digits, checked when it is
//! parsed, so its hex part is always a plain file name. Blob content is checked against it with
//! [`BlobDigest::verify`] before the blob is stored. Other algorithms of the OCI image spec
//! ("Digests") are refused with a message saying so rather than stored under a guessed name.

use std::fmt;
use std::io::Read;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The only algorithm the store keeps blobs under.
const ALGORITHM: &str = "sha256";
/// Length of a sha256 digest in hex.
const HEX_LEN: usize = 64;

/// What is wrong with a digest or the content it names.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error(
        "digest {digest:?} is invalid: {reason} (expected \"sha256:\" and 64 lowercase hex digits)"
    )]
    Malformed {
        digest: String,
        reason: &'static str,
    },
    #[error("content of {expected} hashes to {actual}: the blob is corrupt or was tampered with")]
    Mismatch {
        expected: BlobDigest,
        actual: BlobDigest,
    },
    #[error("reading content of {digest}: {source}")]
    Read {
        digest: BlobDigest,
        #[source]
        source: std::io::Error,
    },
}

/// A validated `sha256:<64 lowercase hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BlobDigest(String);

impl BlobDigest {
    /// Checks `digest` before anything builds a path from it.
    pub fn parse(digest: &str) -> Result<Self, DigestError> {
        let malformed = |reason| DigestError::Malformed {
            digest: digest.to_owned(),
            reason,
        };
        let (algorithm, hex) = digest
            .split_once(':')
            .ok_or_else(|| malformed("no algorithm prefix"))?;
        if algorithm != ALGORITHM {
            return Err(malformed("only sha256 digests are supported"));
        }
        if hex.len() != HEX_LEN {
            return Err(malformed("wrong length"));
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(malformed("not lowercase hex"));
        }
        Ok(Self(digest.to_owned()))
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(format!("{ALGORITHM}:{:x}", Sha256::digest(data)))
    }

    /// The 64 hex digits: a plain file name.
    pub fn hex(&self) -> &str {
        &self.0[ALGORITHM.len() + 1..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Fails unless `content` hashes to this digest.
    pub fn verify(&self, mut content: impl Read) -> Result<(), DigestError> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = content.read(&mut buf).map_err(|source| DigestError::Read {
                digest: self.clone(),
                source,
            })?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let actual = Self(format!("{ALGORITHM}:{:x}", hasher.finalize()));
        if actual != *self {
            return Err(DigestError::Mismatch {
                expected: self.clone(),
                actual,
            });
        }
        Ok(())
    }
}

impl fmt::Display for BlobDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for BlobDigest {
    type Error = DigestError;

    fn try_from(s: String) -> Result<Self, DigestError> {
        Self::parse(&s)
    }
}

impl From<BlobDigest> for String {
    fn from(d: BlobDigest) -> String {
        d.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn well_formed_digests_parse() {
        let d = BlobDigest::parse(GOOD).unwrap();
        assert_eq!(d.as_str(), GOOD);
        assert_eq!(d.hex(), &GOOD[7..]);
        assert_eq!(BlobDigest::of(b"hello"), d);
    }

    #[test]
    fn malformed_digests_are_refused() {
        let upper = GOOD.to_uppercase().replacen("SHA256", "sha256", 1);
        let cases = [
            ("sha256:../../x".to_owned(), "wrong length"),
            (
                format!("sha256:{}", "../".repeat(21) + "x"),
                "not lowercase hex",
            ),
            (format!("sha256:{}/", &GOOD[7..70]), "not lowercase hex"),
            (GOOD[..70].to_owned(), "wrong length"),
            (format!("{GOOD}0"), "wrong length"),
            (upper, "not lowercase hex"),
            (GOOD.replace("sha256", "sha512"), "only sha256"),
            (GOOD.replace("sha256", "SHA256"), "only sha256"),
            (GOOD[7..].to_owned(), "no algorithm prefix"),
            (String::new(), "no algorithm prefix"),
        ];
        for (digest, reason) in cases {
            let e = BlobDigest::parse(&digest).expect_err(&digest).to_string();
            assert!(e.contains(reason), "{digest}: {e}");
        }
        // Records on disk go through the same check.
        assert!(serde_json::from_str::<BlobDigest>("\"sha256:../../etc\"").is_err());
    }

    #[test]
    fn content_must_hash_to_its_digest() {
        let d = BlobDigest::parse(GOOD).unwrap();
        d.verify(&b"hello"[..]).unwrap();
        let e = d.verify(&b"hellO"[..]).unwrap_err();
        assert!(matches!(e, DigestError::Mismatch { .. }), "{e}");
        assert!(e.to_string().contains(GOOD), "{e}");
    }
}
