//! Integer bounds in words a user can act on.
//!
//! Why it exists: serde and figment say "expected u32" when a number does
//! not fit its field. A user does not know what a `u32` is; they need the
//! valid range. The config load and the TOML error text both go through
//! here.

use std::borrow::Cow;

/// The range of a Rust integer type named as serde names it (`u32`, `i64`, …).
pub fn type_range(ty: &str) -> Option<(i128, i128)> {
    Some(match ty {
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" | "usize" => (0, u64::MAX.into()),
        "i8" => (i8::MIN.into(), i8::MAX.into()),
        "i16" => (i16::MIN.into(), i16::MAX.into()),
        "i32" => (i32::MIN.into(), i32::MAX.into()),
        "i64" | "isize" => (i64::MIN.into(), i64::MAX.into()),
        _ => return None,
    })
}

/// `an integer from LO to HI`.
pub fn range_words(lo: i128, hi: i128) -> String {
    format!("an integer from {lo} to {hi}")
}

/// A serde message with each `expected u32` (any integer type) replaced by
/// its range in words.
pub fn plain_int_words(msg: &str) -> Cow<'_, str> {
    if !msg.contains("expected ") {
        return Cow::Borrowed(msg);
    }
    let mut out = String::with_capacity(msg.len() + 32);
    let mut rest = msg;
    while let Some(at) = rest.find("expected ") {
        let (before, after) = rest.split_at(at + "expected ".len());
        out.push_str(before);
        let ty: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        match type_range(&ty) {
            Some((lo, hi)) => {
                out.push_str(&range_words(lo, hi));
                rest = &after[ty.len()..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The message for a figment error on a config key whose number does not
/// fit: `invalid value 99999999999; expected an integer from 1 to
/// 4294967295`, with the key's own minimum. `None` for other errors.
pub(crate) fn figment_int_message(min: Option<i64>, kind: &figment::error::Kind) -> Option<String> {
    use figment::error::{Actual, Kind};
    let (Kind::InvalidValue(actual, expected) | Kind::InvalidType(actual, expected)) = kind else {
        return None;
    };
    let (lo, hi) = type_range(expected)?;
    let shown = match actual {
        Actual::Unsigned(u) => format!(" {u}"),
        Actual::Signed(i) => format!(" {i}"),
        Actual::Float(f) => format!(" {f}"),
        _ => String::new(),
    };
    let lo = min.map_or(lo, |m| lo.max(m.into()));
    Some(format!(
        "invalid value{shown}; expected {}",
        range_words(lo, hi)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_type_names_become_ranges() {
        assert_eq!(
            plain_int_words("invalid value: integer `99999999999`, expected u32"),
            "invalid value: integer `99999999999`, expected an integer from 0 to 4294967295"
        );
        assert_eq!(
            plain_int_words("invalid type: string \"x\", expected i64 or a map"),
            format!(
                "invalid type: string \"x\", expected an integer from {} to {} or a map",
                i64::MIN,
                i64::MAX
            )
        );
        assert_eq!(plain_int_words("expected a string"), "expected a string");
        assert_eq!(plain_int_words("expected u32x"), "expected u32x");
    }

    #[test]
    fn a_config_number_too_big_for_its_key_names_the_range() {
        let kind = figment::error::Kind::InvalidValue(
            figment::error::Actual::Signed(99_999_999_999),
            "u32".into(),
        );
        assert_eq!(
            figment_int_message(Some(1), &kind).as_deref(),
            Some("invalid value 99999999999; expected an integer from 1 to 4294967295")
        );
        let other = figment::error::Kind::Message("x".into());
        assert_eq!(figment_int_message(None, &other), None);
    }
}
