//! Upstream's name and value checks with their messages (apimachinery's
//! `util/validation`): DNS-1123 and DNS-1035 labels and subdomains, wildcard subdomains, IANA
//! port names, path segment names and IP addresses as `ParseIPSloppy` reads them. Each returns
//! every message that applies, so a cause lists them as upstream's does.

use super::{DNS1035_LABEL, DNS1123_LABEL, DNS1123_SUBDOMAIN};

pub(super) const WILDCARD_DNS1123_SUBDOMAIN: &str = "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// `IsDNS1123Subdomain`'s messages: the length and the pattern are reported apart.
pub(super) fn subdomain_errors(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > 253 {
        errors.push("must be no more than 253 characters".to_string());
    }
    if !s.split('.').all(label_pattern) {
        errors.push(DNS1123_SUBDOMAIN.to_string());
    }
    errors
}

/// `IsWildcardDNS1123Subdomain`'s messages: `*.` then a subdomain.
pub(super) fn wildcard_errors(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > 253 {
        errors.push("must be no more than 253 characters".to_string());
    }
    let ok = s
        .strip_prefix("*.")
        .is_some_and(|rest| rest.split('.').all(label_pattern));
    if !ok {
        errors.push(WILDCARD_DNS1123_SUBDOMAIN.to_string());
    }
    errors
}

/// A label's messages (`IsDNS1123Label`, or `IsDNS1035Label` when `dns1035`): at most 63
/// characters, and the pattern (DNS-1035 labels start with a letter).
pub(super) fn label_errors(s: &str, dns1035: bool) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > 63 {
        errors.push("must be no more than 63 characters".to_string());
    }
    let starts_with_letter = s.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    if dns1035 && !(label_pattern(s) && starts_with_letter) {
        errors.push(DNS1035_LABEL.to_string());
    } else if !dns1035 && !label_pattern(s) {
        errors.push(DNS1123_LABEL.to_string());
    }
    errors
}

/// One DNS label's pattern, `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, without its length limit.
fn label_pattern(label: &str) -> bool {
    !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// `IsValidPortName`'s messages (an IANA service name).
pub(super) fn port_name_errors(name: &str) -> Vec<&'static str> {
    let mut errors = Vec::new();
    if name.len() > 15 {
        errors.push("must be no more than 15 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errors.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        errors.push("must contain at least one letter (a-z)");
    }
    if name.contains("--") {
        errors.push("must not contain consecutive hyphens");
    }
    if name.starts_with('-') || name.ends_with('-') {
        errors.push("must not begin or end with a hyphen");
    }
    errors
}

/// `IsPathSegmentName`'s messages: what cannot be one segment of a URL path.
pub(super) fn path_segment_errors(s: &str) -> Vec<String> {
    if s == "." || s == ".." {
        return vec![format!("may not be '{s}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|c| s.contains(*c))
        .map(|c| format!("may not contain '{c}'"))
        .collect()
}

/// Whether upstream's `ParseIPSloppy` takes `s` for an IP address: IPv6, or dotted IPv4
/// whose octets may carry leading zeros.
pub(super) fn is_ip_sloppy(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let octets: Vec<&str> = s.split('.').collect();
    octets.len() == 4
        && octets.iter().all(|o| {
            !o.is_empty()
                && o.bytes().all(|b| b.is_ascii_digit())
                && o.trim_start_matches('0').len() <= 3
                && o.trim_start_matches('0').parse::<u16>().unwrap_or(0) <= 255
        })
}
