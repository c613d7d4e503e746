//! Int-or-percent values (`maxUnavailable: 1` or `"25%"`) as upstream's `intstr` reads them.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The number in a percent string (`"25%"` → 25): digits followed by one `%`, upstream's
/// `IsValidPercent` (`[0-9]+%`). `None` for anything else.
pub fn percent(s: &str) -> Option<u64> {
    let digits = s.strip_suffix('%')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `value` scaled against `total` (`GetScaledValueFromIntOrPercent`): an integer as is, a
/// percentage of `total` rounded up or down. An error names a string that is no percentage.
pub fn scaled(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let pct = percent(s).ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}: must be an integer or a percentage"))?;
            let scaled = i128::from(pct) * i128::from(total);
            let v = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            Ok(v.clamp(i128::from(i32::MIN), i128::from(i32::MAX)) as i32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percents() {
        assert_eq!(percent("25%"), Some(25));
        assert_eq!(percent("0%"), Some(0));
        for bad in ["%", "25", "2.5%", "-1%", "25%%", " 5%"] {
            assert_eq!(percent(bad), None, "{bad}");
        }
    }

    #[test]
    fn scaling() {
        let s = |v: &str| IntOrString::String(v.into());
        assert_eq!(scaled(&IntOrString::Int(2), 10, true), Ok(2));
        assert_eq!(scaled(&s("50%"), 3, true), Ok(2));
        assert_eq!(scaled(&s("50%"), 3, false), Ok(1));
        assert_eq!(scaled(&s("100%"), 0, true), Ok(0));
        assert!(scaled(&s("half"), 3, true).is_err());
    }
}
