//! Kubernetes resource quantities (`250m`, `2`, `256Mi`, `1e3`), parsed so
//! that requests can be compared with limits, and printed back exactly as
//! the user wrote them.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A parsed Kubernetes quantity. Equality and ordering compare the amount,
/// not the spelling (`1Gi == 1024Mi`).
#[derive(Clone)]
pub struct Quantity {
    text: String,
    value: f64,
}

/// Why a string is not a Kubernetes quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a Kubernetes quantity; expected a number with an optional suffix, e.g. \"250m\", \"2\", \"512Mi\", \"4Gi\", \"1e3\""
)]
pub struct QuantityError(pub String);

impl Quantity {
    /// The quantity as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The amount in base units (cores for CPU, bytes for memory).
    pub fn value(&self) -> f64 {
        self.value
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || QuantityError(s.to_string());
        let t = s.trim();
        if t.is_empty() || t != s {
            return Err(err());
        }
        // Split the numeric part (optional sign, digits, one dot) from the suffix.
        let bytes = t.as_bytes();
        let mut i = 0;
        if matches!(bytes.first(), Some(b'+') | Some(b'-')) {
            i = 1;
        }
        let digits_start = i;
        let mut seen_dot = false;
        while i < bytes.len() {
            match bytes[i] {
                b'0'..=b'9' => i += 1,
                b'.' if !seen_dot => {
                    seen_dot = true;
                    i += 1
                }
                _ => break,
            }
        }
        let number = &t[..i];
        let digits = &t[digits_start..i];
        if digits.is_empty() || digits == "." {
            return Err(err());
        }
        let base: f64 = number.parse().map_err(|_| err())?;
        let suffix = &t[i..];
        let multiplier = match suffix {
            "" => 1.0,
            "n" => 1e-9,
            "u" => 1e-6,
            "m" => 1e-3,
            "k" => 1e3,
            "M" => 1e6,
            "G" => 1e9,
            "T" => 1e12,
            "P" => 1e15,
            "E" => 1e18,
            "Ki" => 1024.0,
            "Mi" => 1024.0_f64.powi(2),
            "Gi" => 1024.0_f64.powi(3),
            "Ti" => 1024.0_f64.powi(4),
            "Pi" => 1024.0_f64.powi(5),
            "Ei" => 1024.0_f64.powi(6),
            exp if exp.starts_with(['e', 'E']) => {
                let e: i32 = exp[1..].parse().map_err(|_| err())?;
                10f64.powi(e)
            }
            _ => return Err(err()),
        };
        let value = base * multiplier;
        if !value.is_finite() || value < 0.0 {
            return Err(err());
        }
        Ok(Quantity {
            text: t.to_string(),
            value,
        })
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.value.partial_cmp(&other.value)
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

impl schemars::JsonSchema for Quantity {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Quantity".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A Kubernetes quantity, e.g. \"250m\", \"2\", \"512Mi\", \"4Gi\".",
            "type": ["string", "number"],
            "pattern": "^[+-]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)(m|n|u|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+)?$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        s.parse().unwrap()
    }

    #[test]
    fn parses_suffixes_and_compares_amounts() {
        assert_eq!(q("250m").value(), 0.25);
        assert_eq!(q("2").value(), 2.0);
        assert_eq!(q("1Gi"), q("1024Mi"));
        assert!(q("256Mi") < q("2Gi"));
        assert!(q("500m") < q("1"));
        assert_eq!(q("1e3").value(), 1000.0);
        assert_eq!(q("1.5").value(), 1.5);
        assert_eq!(q("2Gi").to_string(), "2Gi");
    }

    #[test]
    fn rejects_what_kubernetes_rejects() {
        for bad in ["", "abc", "1.2.3", "12Q", "Mi", "1 Gi", " 1", "1mi", "-"] {
            assert!(
                bad.parse::<Quantity>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
