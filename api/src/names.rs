//! The name formats of upstream's `apimachinery/pkg/util/validation`: DNS-1123 labels and
//! subdomains, and the name part of a qualified name (`[prefix/]name`). The apiserver words
//! its errors around these; everything that checks a name uses them.

/// A DNS-1123 label: 1–63 lowercase alphanumerics or `-`, starting and ending alphanumeric.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain: at most 253 characters of dot-separated labels.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// The pattern of a qualified name's name part (and of a label value): alphanumerics, `-`,
/// `_` or `.`, starting and ending alphanumeric. Its length (at most 63) is checked apart, as
/// upstream reports it apart.
pub fn is_qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}
