//! Kubernetes resource quantities (`250m`, `2`, `256Mi`, `1e3`, `0.7`),
//! with exact arithmetic: `700m` and `0.7` are the same amount, so a request
//! of one is never "above" a limit of the other. The grammar and the
//! rounding are Kubernetes' own (`k8s.io/apimachinery/pkg/api/resource`):
//! amounts are rounded up to the nano unit, and binary-suffixed ones
//! saturate at 2^63-1 base units. The text is printed back exactly as the user wrote it.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use num_bigint::BigInt;
use num_traits::{Signed, ToPrimitive, Zero};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest amount Kubernetes represents, in base units (2^63 - 1).
const MAX_BASE_UNITS: i128 = i64::MAX as i128;
/// Nano units per base unit: amounts are kept as whole nanos.
const NANOS: i128 = 1_000_000_000;

/// A parsed Kubernetes quantity. Equality and ordering compare the amount,
/// not the spelling (`1Gi == 1024Mi`, `700m == 0.7`).
#[derive(Clone)]
pub struct Quantity {
    text: String,
    /// The amount in nano base units (nanocores, nanobytes), rounded up.
    nanos: BigInt,
}

/// Why a string is not a usable Kubernetes quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error(
        "{0:?} is not a Kubernetes quantity; expected a number with an optional suffix, e.g. \"250m\", \"2\", \"0.5\", \"512Mi\", \"4Gi\", \"1e3\""
    )]
    Syntax(String),
    #[error("{0:?} is negative; resource quantities are zero or more")]
    Negative(String),
}

/// The grammar of SPEC/Kubernetes, split into its parts.
struct Parts<'a> {
    negative: bool,
    int_digits: &'a str,
    frac_digits: &'a str,
    suffix: &'a str,
}

fn split(s: &str) -> Option<Parts<'_>> {
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let int_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let int_digits = &rest[..int_end];
    let after = &rest[int_end..];
    let (frac_digits, suffix) = match after.strip_prefix('.') {
        Some(f) => {
            let end = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
            (&f[..end], &f[end..])
        }
        None => ("", after),
    };
    if int_digits.is_empty() && frac_digits.is_empty() {
        return None;
    }
    Some(Parts {
        negative,
        int_digits,
        frac_digits,
        suffix,
    })
}

/// `(power of ten, power of two)` a suffix multiplies by.
fn suffix_scale(suffix: &str) -> Option<(i64, u32)> {
    Some(match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        exp => {
            let digits = exp.strip_prefix(['e', 'E'])?;
            let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Far beyond any amount Kubernetes keeps; clamp to stay cheap.
            let e = digits.parse::<i64>().unwrap_or(if digits.starts_with('-') {
                i64::MIN / 2
            } else {
                i64::MAX / 2
            });
            (e, 0)
        }
    })
}

/// Decimal exponents beyond this are refused rather than expanded (no
/// machine has 10^300 bytes; Kubernetes' own int64 fields stop at 9.2e18).
const MAX_EXPONENT: i64 = 300;

/// Parses `s` into its amount in nanos, signed, rounded up (away from zero,
/// as Kubernetes rounds); binary suffixes saturate at 2^63-1 base units.
pub fn parse_nanos(s: &str) -> Option<BigInt> {
    let parts = split(s)?;
    let (ten, two) = suffix_scale(parts.suffix)?;
    let digits = format!("{}{}", parts.int_digits, parts.frac_digits);
    let mantissa: BigInt = digits.trim_start_matches('0').parse().unwrap_or_default();
    let max = BigInt::from(MAX_BASE_UNITS * NANOS);
    let magnitude = if mantissa.is_zero() {
        BigInt::zero()
    } else {
        // value = mantissa * 2^two * 10^exp, in nanos.
        let exp = ten
            .saturating_sub(parts.frac_digits.len() as i64)
            .saturating_add(9);
        let scaled = mantissa << two;
        let significant = digits.trim_start_matches('0').len() as i64;
        if exp > MAX_EXPONENT {
            return None;
        } else if exp >= 0 {
            scaled * BigInt::from(10u8).pow(exp as u32)
        } else if exp + significant + 19 < 0 {
            BigInt::from(1) // a positive amount below one nano rounds up to 1n
        } else {
            let divisor = BigInt::from(10u8).pow((-exp) as u32);
            let (q, r) = (&scaled / &divisor, &scaled % &divisor);
            if r.is_zero() { q } else { q + 1 }
        }
    };
    let magnitude = if two > 0 {
        magnitude.min(max)
    } else {
        magnitude
    };
    Some(if parts.negative {
        -magnitude
    } else {
        magnitude
    })
}

impl Quantity {
    /// The quantity as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The exact amount in nano base units (nanocores for CPU, nanobytes for memory).
    pub fn nanos(&self) -> &BigInt {
        &self.nanos
    }

    /// The amount in base units (cores for CPU, bytes for memory), for display.
    pub fn value(&self) -> f64 {
        self.nanos.to_f64().unwrap_or(f64::MAX) / NANOS as f64
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let nanos = parse_nanos(s).ok_or_else(|| QuantityError::Syntax(s.to_string()))?;
        if nanos.is_negative() {
            return Err(QuantityError::Negative(s.to_string()));
        }
        Ok(Quantity {
            text: s.to_string(),
            nanos,
        })
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Quantity({})", self.text)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Accept bare numbers too (`cpu = 2` in TOML), as kubectl does.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(i64),
            Float(f64),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Text(s) => s,
            Raw::Int(i) => i.to_string(),
            Raw::Float(f) => f.to_string(),
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The pattern of a non-negative quantity, the same grammar [`parse_nanos`] reads.
pub const QUANTITY_PATTERN: &str =
    r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([numkMGTPE]|[KMGTPE]i|[eE][+-]?[0-9]+)?$";

impl schemars::JsonSchema for Quantity {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Quantity".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A Kubernetes quantity, e.g. \"250m\", \"2\", \"0.5\", \"512Mi\", \"4Gi\", \"1e3\".",
            "anyOf": [
                { "type": "string", "pattern": QUANTITY_PATTERN },
                { "type": "number", "minimum": 0 }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        s.parse().unwrap()
    }

    /// `mantissa × 10^exp` in nanos, as Kubernetes' `decQuantity(m, exp, _)`.
    fn dec(mantissa: i128, exp: i32) -> i128 {
        let e = exp + 9;
        if e >= 0 {
            mantissa * 10i128.pow(e as u32)
        } else {
            mantissa / 10i128.pow((-e) as u32)
        }
    }

    /// Kubernetes' own table (`TestQuantityParse` in apimachinery's
    /// quantity_test.go): input and expected amount.
    #[test]
    fn kubernetes_parse_cases() {
        let max = MAX_BASE_UNITS * NANOS;
        let cases: &[(&str, i128)] = &[
            ("0", 0),
            ("0n", 0),
            ("0u", 0),
            ("0m", 0),
            ("0Ki", 0),
            ("0k", 0),
            ("0Mi", 0),
            ("0M", 0),
            ("0Gi", 0),
            ("0G", 0),
            ("0Ti", 0),
            ("0T", 0),
            ("1", dec(1, 0)),
            ("1Ki", dec(1024, 0)),
            ("8Ki", dec(8 * 1024, 0)),
            ("7Mi", dec(7 * 1024 * 1024, 0)),
            ("6Gi", dec(6 * 1024 * 1024 * 1024, 0)),
            ("5Ti", dec(5 * 1024i128.pow(4), 0)),
            ("4Pi", dec(4 * 1024i128.pow(5), 0)),
            ("3Ei", dec(3 * 1024i128.pow(6), 0)),
            ("10Ti", dec(10 * 1024i128.pow(4), 0)),
            ("100Ti", dec(100 * 1024i128.pow(4), 0)),
            ("5n", dec(5, -9)),
            ("4u", dec(4, -6)),
            ("3m", dec(3, -3)),
            ("9", dec(9, 0)),
            ("8k", dec(8, 3)),
            ("50k", dec(5, 4)),
            ("7M", dec(7, 6)),
            ("6G", dec(6, 9)),
            ("5T", dec(5, 12)),
            ("40T", dec(4, 13)),
            ("300T", dec(3, 14)),
            ("2P", dec(2, 15)),
            ("1E", dec(1, 18)),
            ("1E-3", dec(1, -3)),
            ("1e3", dec(1, 3)),
            ("1E6", dec(1, 6)),
            ("1e9", dec(1, 9)),
            ("1E12", dec(1, 12)),
            ("1e15", dec(1, 15)),
            ("1E18", dec(1, 18)),
            ("1e14", dec(1, 14)),
            ("1e13", dec(1, 13)),
            ("100.035k", dec(100035, 0)),
            ("0.001", dec(1, -3)),
            ("0.0005k", dec(5, -1)),
            ("0.005", dec(5, -3)),
            ("0.05", dec(5, -2)),
            ("0.5", dec(5, -1)),
            ("0.00050k", dec(5, -1)),
            ("0.00500", dec(5, -3)),
            ("0.05000", dec(5, -2)),
            ("0.50000", dec(5, -1)),
            ("0.5e0", dec(5, -1)),
            ("0.5e-1", dec(5, -2)),
            ("0.5e-2", dec(5, -3)),
            ("10.035M", dec(10035, 3)),
            ("1.2e3", dec(12, 2)),
            ("1.3E+6", dec(13, 5)),
            ("1.40e9", dec(14, 8)),
            ("1.53E12", dec(153, 10)),
            ("1.6e15", dec(16, 14)),
            ("1.7E18", dec(17, 17)),
            ("9.01", dec(901, -2)),
            ("8.1k", dec(81, 2)),
            ("7.123456M", dec(7123456, 0)),
            ("6.987654321G", dec(6987654321, 0)),
            ("5.444T", dec(5444, 9)),
            ("40.1T", dec(401, 11)),
            ("300.2T", dec(3002, 11)),
            ("2.5P", dec(25, 14)),
            ("1.01E", dec(101, 16)),
            // Things that saturate or round (up, to the nano).
            ("3.001n", dec(4, -9)),
            ("1.1E-9", dec(2, -9)),
            ("0.0000000001", dec(1, -9)),
            ("0.0000000005", dec(1, -9)),
            ("0.00000000050", dec(1, -9)),
            ("0.5e-9", dec(1, -9)),
            ("0.9n", dec(1, -9)),
            ("0.00000012345", dec(124, -9)),
            ("0.00000012354", dec(124, -9)),
            ("9Ei", max),
            ("9223372036854775807Ki", max),
            ("12E", dec(12, 18)),
            ("100.035Ki", dec(10243584, -2)),
            ("0.5Mi", dec(512 * 1024, 0)),
            ("0.05Gi", dec(536870912, -1)),
            ("0.025Ti", dec(274877906944, -1)),
            ("0.000000000001Ki", dec(2, -9)),
            (".001", dec(1, -3)),
            (".0001k", dec(100, -3)),
            ("1.", dec(1, 0)),
            ("1.G", dec(1, 9)),
        ];
        for (input, nanos) in cases {
            assert_eq!(parse_nanos(input), Some(BigInt::from(*nanos)), "{input}");
            assert_eq!(
                parse_nanos(&format!("-{input}")),
                Some(-BigInt::from(*nanos)),
                "-{input}"
            );
        }
    }

    /// Kubernetes' rejected spellings (`TestQuantityParseErrors` and friends).
    #[test]
    fn kubernetes_rejects() {
        for bad in [
            "",
            ".",
            "-.",
            "abc",
            "1.2.3",
            "12Q",
            "Mi",
            "1 Gi",
            " 1",
            "1 ",
            "1mi",
            "-",
            "+",
            "1e",
            "1E+",
            "1e1.5",
            "1KiB",
            "1.5.5",
            "e3",
            "1i",
            "1MB",
            "1\n",
            "Non-Numeric",
        ] {
            assert_eq!(parse_nanos(bad), None, "{bad:?} should be rejected");
            assert!(bad.parse::<Quantity>().is_err(), "{bad:?}");
        }
    }

    /// Kubernetes' `TestQuantityCmp`, plus the spellings the issue names.
    #[test]
    fn compares_exactly() {
        assert!(q("100m") > q("50m"));
        assert!(q("50m") < q("100m"));
        assert!(q("10000T") > q("100Gi"));
        assert_eq!(q("0"), q("0"));
        assert_eq!(q("700m"), q("0.7"));
        assert_eq!(q("1Gi"), q("1024Mi"));
        assert_eq!(q("1e3"), q("1k"));
        assert_eq!(q("0.1"), q("100m"));
        assert!(q("256Mi") < q("2Gi"));
        assert!(q("500m") < q("1"));
        assert_eq!(q("2Gi").to_string(), "2Gi");
        assert_eq!(q("1.5").value(), 1.5);
    }

    #[test]
    fn negative_amounts_are_refused_with_a_reason() {
        assert!(matches!(
            "-1".parse::<Quantity>(),
            Err(QuantityError::Negative(_))
        ));
        assert_eq!(*q("1n").nanos(), BigInt::from(1));
    }
}
