//! Image references as users write them, normalised as containerd does (docker's
//! `ParseDockerRef`): `nginx` → `docker.io/library/nginx:latest`, `user/app` →
//! `docker.io/user/app:latest`, a first component with a `.` or `:` (or `localhost`) names the
//! registry, and a reference carrying both a tag and a digest keeps only the digest (the digest
//! is what gets pulled).
//!
//! Refusals use the wording of the distribution reference library, so the kubelet's
//! `InvalidImageName` messages read as upstream's do.

use oci_client::ParseError;
use oci_client::Reference;

/// Why a reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("couldn't parse image name {image:?}: {reason}")]
pub struct ReferenceError {
    pub image: String,
    pub reason: &'static str,
}

/// Parses and normalises `image`.
pub fn normalize(image: &str) -> Result<Reference, ReferenceError> {
    let refuse = |reason| ReferenceError {
        image: image.to_owned(),
        reason,
    };
    let parsed: Reference = image.parse().map_err(|e| {
        refuse(match e {
            ParseError::NameEmpty => "repository name must have at least one component",
            ParseError::NameTooLong => "repository name must not be more than 255 characters",
            ParseError::DigestInvalidFormat => "invalid checksum digest format",
            ParseError::DigestInvalidLength => "invalid checksum digest length",
            ParseError::DigestUnsupported => "unsupported digest algorithm",
            // The grammar only admits lowercase repositories; say so when that is the fault.
            _ if image.to_lowercase().parse::<Reference>().is_ok() => {
                "invalid reference format: repository name must be lowercase"
            }
            _ => "invalid reference format",
        })
    })?;
    Ok(match parsed.digest() {
        Some(digest) => Reference::with_digest(
            parsed.registry().to_owned(),
            parsed.repository().to_owned(),
            digest.to_owned(),
        ),
        None => parsed,
    })
}

/// `<registry>/<repository>@<digest>`, the form of `imageID` and of an image's repo digests.
pub fn repo_digest(reference: &Reference, digest: &str) -> String {
    format!(
        "{}/{}@{digest}",
        reference.registry(),
        reference.repository()
    )
}

/// Of an image's repo digests, the one in the repository of `name` (the reference a container
/// was started as: an image pulled from two registries has a repo digest per registry), else
/// the first.
pub fn repo_digest_for<'a>(repo_digests: &'a [String], name: &str) -> Option<&'a String> {
    let in_repository = normalize(name).ok().and_then(|r| {
        let prefix = format!("{}/{}@", r.registry(), r.repository());
        repo_digests.iter().find(|d| d.starts_with(&prefix))
    });
    in_repository.or_else(|| repo_digests.first())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn names_are_completed_as_containerd_does() {
        for (given, whole) in [
            ("nginx", "docker.io/library/nginx:latest"),
            ("nginx:alpine", "docker.io/library/nginx:alpine"),
            ("library/nginx:1.25", "docker.io/library/nginx:1.25"),
            ("user/app", "docker.io/user/app:latest"),
            ("index.docker.io/user/app:v1", "docker.io/user/app:v1"),
            ("docker.io/nginx", "docker.io/library/nginx:latest"),
            ("localhost/app", "localhost/app:latest"),
            (
                "registry.example.com:5000/team/app:1.0",
                "registry.example.com:5000/team/app:1.0",
            ),
            (
                "192.168.64.1:5000/busybox",
                "192.168.64.1:5000/busybox:latest",
            ),
            ("quay.io/a/b/c:tag", "quay.io/a/b/c:tag"),
        ] {
            assert_eq!(normalize(given).unwrap().whole(), whole, "{given}");
        }
    }

    #[test]
    fn a_digest_wins_over_a_tag() {
        let r = normalize(&format!("nginx@sha256:{HEX}")).unwrap();
        assert_eq!(r.whole(), format!("docker.io/library/nginx@sha256:{HEX}"));
        let r = normalize(&format!("nginx:alpine@sha256:{HEX}")).unwrap();
        assert_eq!(r.whole(), format!("docker.io/library/nginx@sha256:{HEX}"));
        assert_eq!(r.tag(), None);
        assert_eq!(
            repo_digest(&r, r.digest().unwrap()),
            format!("docker.io/library/nginx@sha256:{HEX}")
        );
    }

    #[test]
    fn bad_references_are_refused_with_the_reason() {
        for (given, reason) in [
            ("", "repository name must have at least one component"),
            (
                "Nginx",
                "invalid reference format: repository name must be lowercase",
            ),
            ("nginx:", "invalid reference format"),
            (
                "nginx@sha256:0123456789abcdef0123456789abcdef01234567",
                "invalid checksum digest length",
            ),
            ("nginx@sha256:abc", "invalid reference format"),
            ("nginx@sha256:xyz", "invalid reference format"),
            ("-bad/name", "invalid reference format"),
            ("a b", "invalid reference format"),
        ] {
            let e = normalize(given).unwrap_err();
            assert_eq!(e.reason, reason, "{given:?}");
            assert_eq!(
                e.to_string(),
                format!("couldn't parse image name {given:?}: {reason}")
            );
        }
    }
}
