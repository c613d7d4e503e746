//! Resource quantities (`100m`, `1.5`, `128Mi`, `1G`, `2e3`) as exact integers.
//!
//! CPU is compared in millicores and memory in bytes; both are the same parse at a different
//! scale, so one function returns the value multiplied by 1000 ("milli-units").

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidQuantity {
    #[error(
        "quantity {0:?} is invalid: must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Syntax(String),
    /// Beyond what a signed 64-bit count of milli-units holds; nothing can compare it.
    #[error("quantity {0:?} is too large")]
    TooLarge(String),
}

/// Parses a quantity into thousandths of its unit, rounding up as Kubernetes does. Values whose
/// milli-units do not fit in an `i64` are [`InvalidQuantity::TooLarge`].
pub fn parse_milli(input: &str) -> Result<i128, InvalidQuantity> {
    let value = parse_scaled(input, 1000)?;
    if value.abs() > i128::from(i64::MAX) {
        return Err(InvalidQuantity::TooLarge(input.to_string()));
    }
    Ok(value)
}

/// Parses a quantity into billionths of its unit (apimachinery's finest precision), rounding
/// up; for exact comparisons. Values whose milli-units do not fit in an `i64` are
/// [`InvalidQuantity::TooLarge`], as for [`parse_milli`].
pub fn parse_nano(input: &str) -> Result<i128, InvalidQuantity> {
    parse_milli(input)?;
    parse_scaled(input, 1_000_000_000)
}

/// The quantity times `per_unit`, its magnitude rounded up to a whole number.
fn parse_scaled(input: &str, per_unit: i128) -> Result<i128, InvalidQuantity> {
    let bad = || InvalidQuantity::Syntax(input.to_string());
    let too_large = || InvalidQuantity::TooLarge(input.to_string());
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
    // Leading zeros are harmless but would overflow the parse of a long digit string.
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| too_large())?
    };
    // Powers of ten: `value = mantissa * 10^-scale`.
    let mut scale = frac_part.len() as i64;
    let binary = |p: u32| 1i128 << (10 * p);
    let (multiplier, divisor): (i128, i128) = match suffix {
        "" => (1, 1),
        "m" => (1, 1000),
        "u" => (1, 1_000_000),
        "n" => (1, 1_000_000_000),
        "k" => (1000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000, 1),
        "Ki" => (binary(1), 1),
        "Mi" => (binary(2), 1),
        "Gi" => (binary(3), 1),
        "Ti" => (binary(4), 1),
        "Pi" => (binary(5), 1),
        "Ei" => (binary(6), 1),
        exp if exp.starts_with(['e', 'E']) => {
            let e: i32 = exp[1..].parse().map_err(|_| bad())?;
            scale -= i64::from(e);
            (1, 1)
        }
        _ => return Err(bad()),
    };
    let mut numerator = mantissa
        .checked_mul(per_unit)
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(too_large)?;
    let mut denominator = divisor;
    if scale > 0 {
        // A tiny value: its rounded-up milli-units are 0 or 1, however small.
        denominator = u32::try_from(scale)
            .ok()
            .and_then(|s| 10i128.checked_pow(s))
            .and_then(|p| denominator.checked_mul(p))
            .unwrap_or(i128::MAX);
    } else if scale < 0 && numerator != 0 {
        numerator = u32::try_from(-scale)
            .ok()
            .and_then(|s| 10i128.checked_pow(s))
            .and_then(|p| numerator.checked_mul(p))
            .ok_or_else(too_large)?;
    }
    let value = numerator / denominator + i128::from(numerator % denominator != 0);
    Ok(if negative { -value } else { value })
}

/// How a quantity is written, which decides how its canonical form is written
/// (apimachinery's `Format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// No suffix or `m`, `k`, `M`, `G`…
    #[default]
    DecimalSi,
    /// `Ki`, `Mi`, `Gi`…
    BinarySi,
    /// `e3`, `E-6`…
    DecimalExponent,
}

impl Format {
    /// The format `input` is written in.
    pub fn of(input: &str) -> Self {
        let s = input.trim();
        let suffix = &s[s
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
            .unwrap_or(s.len())..];
        if suffix.ends_with('i') {
            Self::BinarySi
        } else if suffix.starts_with('e') || (suffix.starts_with('E') && suffix.len() > 1) {
            Self::DecimalExponent
        } else {
            Self::DecimalSi
        }
    }
}

/// A quantity in the canonical form the apiserver writes back and quotes in its messages
/// (apimachinery's `Quantity.String()`): `0.5` is `500m`, `1000` is `1k`, `2048Ki` is `2Mi`,
/// `5e-1` is `500e-3`. Precision finer than a nano-unit is rounded up, as upstream parses.
pub fn canonical(input: &str) -> Result<String, InvalidQuantity> {
    Ok(render(parse_nano(input)?, Format::of(input)))
}

/// `nanos` billionths of a unit in the canonical form of `format`, as [`canonical`] writes it;
/// for sums of quantities (the format is the first addend's, as `Quantity.Add` keeps it).
pub fn render(nanos: i128, format: Format) -> String {
    const NANO: i128 = 1_000_000_000;
    if nanos == 0 {
        return "0".into();
    }
    // Binary suffixes only for whole values of at least 1024; anything else reads as decimal.
    if format == Format::BinarySi && nanos % NANO == 0 && nanos.abs() >= 1024 * NANO {
        let mut whole = nanos / NANO;
        let mut power = 0;
        while power < 6 && whole % 1024 == 0 {
            whole /= 1024;
            power += 1;
        }
        return format!("{whole}{}", ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power]);
    }
    // The largest power of 1000 that leaves a whole mantissa.
    let (mut mantissa, mut exponent) = (nanos, -9i32);
    while mantissa % 1000 == 0 {
        mantissa /= 1000;
        exponent += 3;
    }
    let decimal = match exponent {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        18 => "E",
        _ => "",
    };
    if exponent == 0 {
        mantissa.to_string()
    } else if format == Format::DecimalExponent || decimal.is_empty() {
        format!("{mantissa}e{exponent}")
    } else {
        format!("{mantissa}{decimal}")
    }
}

/// CPU in millicores.
pub fn cpu_millis(input: &str) -> Result<i64, InvalidQuantity> {
    i64::try_from(parse_milli(input)?).map_err(|_| InvalidQuantity::TooLarge(input.to_string()))
}

/// Memory (or any plain count) in whole units, rounded up.
pub fn bytes(input: &str) -> Result<i64, InvalidQuantity> {
    let milli = parse_milli(input)?;
    i64::try_from(milli.div_euclid(1000) + i128::from(milli.rem_euclid(1000) != 0))
        .map_err(|_| InvalidQuantity::TooLarge(input.to_string()))
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
    fn canonical_forms_match_apimachinery() {
        for (input, want) in [
            ("0.5", "500m"),
            ("1.5", "1500m"),
            ("1500m", "1500m"),
            ("2000m", "2"),
            ("2", "2"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("0", "0"),
            ("0Mi", "0"),
            ("1Ki", "1Ki"),
            ("2048Ki", "2Mi"),
            ("1536", "1536"),
            ("0.5Ki", "512"),
            ("1.5Mi", "1536Ki"),
            ("1025.5Ki", "1050112"),
            ("0.1Ki", "102400m"),
            ("5e-1", "500e-3"),
            ("1e3", "1e3"),
            ("1P", "1P"),
            ("2e15", "2e15"),
            ("4000T", "4P"),
            ("-0.5", "-500m"),
            ("0.0000000001", "1n"),
            ("+3", "3"),
        ] {
            assert_eq!(canonical(input).unwrap(), want, "{input}");
        }
        assert!(matches!(
            canonical("1e400"),
            Err(InvalidQuantity::TooLarge(_))
        ));
        assert!(matches!(canonical("x"), Err(InvalidQuantity::Syntax(_))));
        // Sums keep the first addend's format.
        assert_eq!(
            render((240i128 << 20) * 1_000_000_000, Format::BinarySi),
            "240Mi"
        );
        assert_eq!(render(850_000_000, Format::DecimalSi), "850m");
    }

    #[test]
    fn invalid() {
        for bad in ["", "abc", "1.2.3", "12Qi", "-", "1e"] {
            assert!(parse_milli(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn overflow_is_an_error_never_a_wrap_or_a_panic() {
        for huge in [
            "9223372036854775808",
            "99999999999999999999999999999999999999999999",
            "1e400",
            "16Ei",
            "9999999999999999E",
            "1e2147483647",
        ] {
            assert_eq!(
                parse_milli(huge),
                Err(InvalidQuantity::TooLarge(huge.to_string())),
                "{huge}"
            );
            assert!(cpu_millis(huge).is_err() && bytes(huge).is_err(), "{huge}");
        }
        // The largest representable value and tiny ones still parse.
        assert_eq!(cpu_millis("9223372036854775807m").unwrap(), i64::MAX);
        assert_eq!(cpu_millis("1e-400").unwrap(), 1);
        assert_eq!(cpu_millis("1e-2147483648").unwrap(), 1);
        assert_eq!(cpu_millis("0e400").unwrap(), 0);
        assert_eq!(bytes("-1").unwrap(), -1);
        assert_eq!(cpu_millis("-100m").unwrap(), -100);
    }
}
