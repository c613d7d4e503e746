//! What every component's command line shares: durations as Kubernetes components take them,
//! and the node name a component on this host acts for.

use std::time::Duration;

/// A duration in Go's `time.ParseDuration` syntax, as Kubernetes flags take them (`300ms`,
/// `1.5h`, `2h45m`; units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = |why: &str| format!("invalid duration {text:?}: {why} (e.g. 30s, 1m30s, 500ms)");
    if text.is_empty() {
        return Err(bad("empty"));
    }
    if let Ok(secs) = text.parse::<f64>() {
        return seconds(secs).ok_or_else(|| bad("out of range"));
    }
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| bad("a number without a unit"))?;
        let (number, tail) = rest.split_at(number_len);
        let value: f64 = number.parse().map_err(|_| bad("expected a number"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad(&format!("unknown unit {unit:?}"))),
        };
        total += value * scale;
        rest = tail;
    }
    seconds(total).ok_or_else(|| bad("out of range"))
}

/// As [`parse_duration`], refusing zero: for intervals, where nothing would mean a busy loop.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err(format!("invalid interval {text:?}: must be more than 0")),
        d => Ok(d),
    }
}

fn seconds(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs).ok()
}

/// The name of the node this host is: `hostname_override` when given, else the kernel's host
/// name; lower-cased, as the kubelet registers it (upstream's `GetHostname`).
pub fn node_name(hostname_override: Option<&str>) -> std::io::Result<String> {
    let name = match hostname_override {
        Some(name) => name.trim().to_owned(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")?
            .trim()
            .to_owned(),
    };
    if name.is_empty() {
        return Err(std::io::Error::other(
            "the host name is empty: pass --hostname-override",
        ));
    }
    Ok(name.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_go_parses_them() {
        let ok = |t: &str| parse_duration(t).unwrap();
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("2h45m"), Duration::from_secs(2 * 3600 + 45 * 60));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("250us"), Duration::from_micros(250));
        assert_eq!(ok("7"), Duration::from_secs(7));
        assert_eq!(ok("0.5"), Duration::from_millis(500));
        assert_eq!(ok("0s"), Duration::ZERO);
        for bad in ["", "fast", "1d", "s", "1m30", "-5s", "-1", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse_interval("0s").is_err());
        assert_eq!(parse_interval("10").unwrap(), Duration::from_secs(10));
    }

    #[test]
    fn node_names_are_lower_case() {
        assert_eq!(node_name(Some("Node-1")).unwrap(), "node-1");
        assert!(node_name(Some(" ")).is_err());
        assert!(!node_name(None).unwrap().is_empty());
    }
}
