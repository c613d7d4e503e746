//! Time as the API writes it, in one library for the whole tree: jiff, whose `Timestamp` is what
//! k8s-openapi's `Time` and `MicroTime` wrap.
//!
//! A `Time` field is RFC 3339 in UTC with whole seconds ([`rfc3339`]); a container log line and
//! the other places Go writes `RFC3339Nano` keep nine digits of fraction ([`rfc3339_nanos`]).
//! Reading accepts any RFC 3339 offset, as Go's `time.Parse` does.

pub use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// `t` as a `Time` field holds it: `2026-01-02T03:04:05Z` (the fraction dropped, not rounded).
pub fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Now, as [`rfc3339`] writes it.
pub fn now_rfc3339() -> String {
    rfc3339(Timestamp::now())
}

/// `t` with nanoseconds, always nine digits: `2026-01-02T03:04:05.120000000Z`.
pub fn rfc3339_nanos(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// An RFC 3339 time with any offset; `None` when `s` is not one.
pub fn parse(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

/// The instant `secs` seconds after the Unix epoch; `None` outside the years jiff can hold.
pub fn from_unix(secs: i64) -> Option<Timestamp> {
    Timestamp::from_second(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_the_api_writes_them() {
        let t = Timestamp::from_nanosecond(1_767_323_045_120_000_000).unwrap();
        assert_eq!(rfc3339(t), "2026-01-02T03:04:05Z");
        assert_eq!(rfc3339_nanos(t), "2026-01-02T03:04:05.120000000Z");
        assert_eq!(
            from_unix(1_767_323_045).map(rfc3339).as_deref(),
            Some("2026-01-02T03:04:05Z")
        );
    }

    #[test]
    fn any_offset_is_read_and_garbage_is_not() {
        let utc = parse("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(parse("2026-01-02T04:04:05+01:00"), Some(utc));
        assert_eq!(
            parse("2026-01-02T03:04:05.5Z").map(|t| t.as_second()),
            Some(utc.as_second())
        );
        assert_eq!(parse("yesterday"), None);
        assert_eq!(parse(""), None);
    }
}
