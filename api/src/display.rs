//! How Kubernetes prints values for people: the server's table columns and the CLI's
//! `describe` share these, so `kubectl get` and `ekube kubectl describe` agree.

use serde_json::Value;

/// Kubernetes' short human duration of `secs` seconds (apimachinery's `HumanDuration`: `5s`,
/// `3m2s`, `4h`, `2d3h`, `120d`, `2y70d`); `<invalid>` below -1 s, as clock skew allows -1.
pub fn human_duration(secs: i64) -> String {
    let (minutes, hours) = (secs / 60, secs / 3600);
    match () {
        _ if secs < -1 => "<invalid>".into(),
        _ if secs < 0 => "0s".into(),
        _ if secs < 120 => format!("{secs}s"),
        _ if minutes < 10 && secs % 60 != 0 => format!("{minutes}m{}s", secs % 60),
        _ if minutes < 180 => format!("{minutes}m"),
        _ if hours < 8 && minutes % 60 != 0 => format!("{hours}h{}m", minutes % 60),
        _ if hours < 48 => format!("{hours}h"),
        _ if hours < 192 && hours % 24 != 0 => format!("{}d{}h", hours / 24, hours % 24),
        _ if hours < 24 * 365 * 2 => format!("{}d", hours / 24),
        _ if hours < 24 * 365 * 8 && (hours / 24) % 365 != 0 => {
            format!("{}y{}d", hours / 24 / 365, (hours / 24) % 365)
        }
        _ => format!("{}y", hours / 24 / 365),
    }
}

/// Kubernetes' shorter human duration (apimachinery's `ShortHumanDuration`, one unit only:
/// `5s`, `3m`, `23h`, `6d`, `2y`), as `kubeadm token list` prints a token's TTL.
pub fn short_human_duration(secs: i64) -> String {
    let (minutes, hours) = (secs / 60, secs / 3600);
    match () {
        _ if secs < -1 => "<invalid>".into(),
        _ if secs < 0 => "0s".into(),
        _ if secs < 60 => format!("{secs}s"),
        _ if minutes < 60 => format!("{minutes}m"),
        _ if hours < 24 => format!("{hours}h"),
        _ if hours < 24 * 365 => format!("{}d", hours / 24),
        _ => format!("{}y", hours / 24 / 365),
    }
}

/// A label map as `key=value,…` sorted by key, `<none>` when empty (`labels.FormatLabels`).
pub fn format_labels(labels: &Value) -> String {
    match labels.as_object() {
        Some(m) if !m.is_empty() => {
            let mut pairs: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            pairs.sort();
            pairs.join(",")
        }
        _ => "<none>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_kubernetes() {
        for (secs, want) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (5, "5s"),
            (119, "119s"),
            (182, "3m2s"),
            (240, "4m"),
            (60 * 42, "42m"),
            (3600 * 4, "4h"),
            (3600 * 4 + 60 * 5, "4h5m"),
            (3600 * 20, "20h"),
            (3600 * 51, "2d3h"),
            (86400 * 3, "3d"),
            (86400 * 120, "120d"),
            (86400 * 800, "2y70d"),
            (86400 * 365 * 9, "9y"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs} s");
        }
    }

    #[test]
    fn short_human_durations_keep_one_unit() {
        for (secs, want) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (59, "59s"),
            (182, "3m"),
            (3600 * 23 + 3599, "23h"),
            (86400 * 3 + 7200, "3d"),
            (86400 * 800, "2y"),
        ] {
            assert_eq!(short_human_duration(secs), want, "{secs} s");
        }
    }

    #[test]
    fn labels_sorted_or_none() {
        let labels = serde_json::json!({"tier": "web", "app": "nginx"});
        assert_eq!(format_labels(&labels), "app=nginx,tier=web");
        assert_eq!(format_labels(&serde_json::json!({})), "<none>");
        assert_eq!(format_labels(&Value::Null), "<none>");
    }
}
