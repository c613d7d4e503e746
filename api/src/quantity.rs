//! Resource quantities (`100m`, `1.5`, `128Mi`, `1G`, `2e3`) as exact integers.
//!
//! CPU is compared in millicores and memory in bytes; both are the same parse at a different
//! scale, so one function returns the value multiplied by 1000 ("milli-units").

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "quantity {0:?} is invalid: must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)]
pub struct InvalidQuantity(pub String);

/// Parses a quantity into thousandths of its unit, rounding up as Kubernetes does.
pub fn parse_milli(input: &str) -> Result<i128, InvalidQuantity> {
    let bad = || InvalidQuantity(input.to_string());
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    if number.is_empty() || number == "+" || number == "-" {
        return Err(bad());
    }
    let (negative, digits) = match number.as_bytes()[0] {
        b'-' => (true, &number[1..]),
        b'+' => (false, &number[1..]),
        _ => (false, number),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
        || frac_part.len() > 30
    {
        return Err(bad());
    }
    // value = mantissa / 10^scale, then times the suffix multiplier, then times 1000.
    let mantissa: i128 = format!("{int_part}{frac_part}").parse().unwrap_or(0);
    let mut scale = frac_part.len() as i32;
    let (mut numerator, mut denominator): (i128, i128) = (mantissa * 1000, 1);
    let binary = |p: u32| 1i128 << (10 * p);
    match suffix {
        "" => {}
        "m" => denominator *= 1000,
        "u" => denominator *= 1_000_000,
        "n" => denominator *= 1_000_000_000,
        "k" => numerator *= 1000,
        "M" => numerator *= 1_000_000,
        "G" => numerator *= 1_000_000_000,
        "T" => numerator *= 1_000_000_000_000,
        "P" => numerator *= 1_000_000_000_000_000,
        "E" => numerator *= 1_000_000_000_000_000_000,
        "Ki" => numerator *= binary(1),
        "Mi" => numerator *= binary(2),
        "Gi" => numerator *= binary(3),
        "Ti" => numerator *= binary(4),
        "Pi" => numerator *= binary(5),
        "Ei" => numerator *= binary(6),
        exp if exp.starts_with(['e', 'E']) => {
            let e: i32 = exp[1..].parse().map_err(|_| bad())?;
            scale -= e;
        }
        _ => return Err(bad()),
    }
    if scale > 0 {
        denominator *= 10i128.checked_pow(scale as u32).ok_or_else(bad)?;
    } else if scale < 0 {
        numerator = numerator
            .checked_mul(10i128.checked_pow((-scale) as u32).ok_or_else(bad)?)
            .ok_or_else(bad)?;
    }
    let value = (numerator + denominator - 1) / denominator;
    Ok(if negative { -value } else { value })
}

/// CPU in millicores.
pub fn cpu_millis(input: &str) -> Result<i64, InvalidQuantity> {
    Ok(parse_milli(input)? as i64)
}

/// Memory (or any plain count) in whole units, rounded up.
pub fn bytes(input: &str) -> Result<i64, InvalidQuantity> {
    let milli = parse_milli(input)?;
    Ok(((milli + 999) / 1000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu() {
        assert_eq!(cpu_millis("100m").unwrap(), 100);
        assert_eq!(cpu_millis("1").unwrap(), 1000);
        assert_eq!(cpu_millis("1.5").unwrap(), 1500);
        assert_eq!(cpu_millis("0.1").unwrap(), 100);
        assert_eq!(cpu_millis("2e3").unwrap(), 2_000_000);
    }

    #[test]
    fn memory() {
        assert_eq!(bytes("128Mi").unwrap(), 128 << 20);
        assert_eq!(bytes("1G").unwrap(), 1_000_000_000);
        assert_eq!(bytes("1.5Gi").unwrap(), 3 << 29);
        assert_eq!(bytes("100").unwrap(), 100);
    }

    #[test]
    fn invalid() {
        for bad in ["", "abc", "1.2.3", "12Qi", "-", "1e"] {
            assert!(parse_milli(bad).is_err(), "{bad} accepted");
        }
    }
}
