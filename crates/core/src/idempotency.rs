//! The `Idempotency-Key` request header (SPEC §8.1, after
//! draft-ietf-httpapi-idempotency-key-header): a Structured Field string,
//! `"…"` of 1–255 printable ASCII bytes with `\"` and `\\` escapes; a bare
//! token (printable, no spaces or quotes) is accepted too and is the same
//! key as its quoted form.
//!
//! What a repeat gets is decided by [`decide`]: the pure rule the engine
//! applies with what it knows about the key.

/// Longest key, in bytes (after unquoting).
pub const MAX_KEY_BYTES: usize = 255;

/// Why a header value is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the Idempotency-Key header is empty; send 1 to {MAX_KEY_BYTES} printable characters, e.g. Idempotency-Key: \"deploy-2024-05-01\""
    )]
    Empty,
    #[error("the Idempotency-Key is {bytes} bytes; at most {MAX_KEY_BYTES} are allowed")]
    TooLong { bytes: usize },
    #[error(
        "the Idempotency-Key contains {found}, which is not a printable ASCII character; use letters, digits and punctuation"
    )]
    NotPrintable { found: String },
    #[error(
        "the Idempotency-Key {0}; write it as a quoted string (\"…\", with \\\" and \\\\ escapes) or a bare word without spaces or quotes"
    )]
    Malformed(&'static str),
}

/// The key a header value names: the same for `"abc"` and `abc`.
pub fn parse_key(raw: &[u8]) -> Result<String, KeyError> {
    if let Some(&b) = raw
        .iter()
        .find(|&&b| !(0x20..=0x7e).contains(&b) && b != b'\t')
    {
        return Err(KeyError::NotPrintable { found: describe(b) });
    }
    // Printable ASCII (and tabs) only: this is valid UTF-8.
    let text = std::str::from_utf8(raw).map_err(|_| KeyError::Malformed("is not text"))?;
    let text = text.trim_matches([' ', '\t']);
    if text.contains('\t') {
        return Err(KeyError::NotPrintable {
            found: describe(b'\t'),
        });
    }
    let key = match text.strip_prefix('"') {
        Some(rest) => unquote(rest)?,
        None => {
            if text.contains(['"', ' ', '\\']) {
                return Err(KeyError::Malformed(
                    "has a space, quote or backslash outside quotes",
                ));
            }
            text.to_string()
        }
    };
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyError::TooLong { bytes: key.len() });
    }
    Ok(key)
}

/// The inside of a quoted string (`rest` follows the opening quote).
fn unquote(rest: &str) -> Result<String, KeyError> {
    let mut out = String::with_capacity(rest.len());
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('"' | '\\')) => out.push(e),
                _ => {
                    return Err(KeyError::Malformed(
                        "has a backslash not followed by \" or \\",
                    ));
                }
            },
            '"' => {
                return if chars.as_str().is_empty() {
                    Ok(out)
                } else {
                    Err(KeyError::Malformed("has text after its closing quote"))
                };
            }
            c => out.push(c),
        }
    }
    Err(KeyError::Malformed("has no closing quote"))
}

fn describe(b: u8) -> String {
    if b < 0x80 {
        format!("the control character 0x{b:02x}")
    } else {
        format!("the byte 0x{b:02x}")
    }
}

/// What a submission with a key gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<Id> {
    /// The key is new: run the job (and remember the key with it).
    New,
    /// The same key and spec as a kept job: answer 200 with it, run nothing.
    Existing(Id),
    /// The same key with another spec: 422 `idempotency_conflict`.
    Conflict(Id),
    /// The first request with this key is not durable yet: 409
    /// `idempotency_in_progress`.
    InProgress(Id),
}

/// Decides from the job that holds the key (if any), whether its spec is
/// equal to the new one, and whether that job is already durable.
pub fn decide<Id>(holder: Option<(Id, bool, bool)>) -> Decision<Id> {
    match holder {
        None => Decision::New,
        Some((id, _, false)) => Decision::InProgress(id),
        Some((id, true, true)) => Decision::Existing(id),
        Some((id, false, true)) => Decision::Conflict(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_and_bare_forms_are_the_same_key() {
        assert_eq!(parse_key(b"\"abc-1\"").unwrap(), "abc-1");
        assert_eq!(parse_key(b"abc-1").unwrap(), "abc-1");
        assert_eq!(parse_key(b"  \"abc-1\" ").unwrap(), "abc-1");
        assert_eq!(parse_key(br#""a \"b\" \\ c""#).unwrap(), r#"a "b" \ c"#);
        assert_eq!(parse_key(b"\"with space\"").unwrap(), "with space");
        assert_eq!(
            parse_key(b"8e03978e-40d5-43e8-bc93-6894a57f9324")
                .unwrap()
                .len(),
            36
        );
    }

    #[test]
    fn bounds_and_bad_bytes_are_refused() {
        assert_eq!(parse_key(&[b'k'; 255]).unwrap().len(), 255);
        assert_eq!(
            parse_key(&[b'k'; 256]),
            Err(KeyError::TooLong { bytes: 256 })
        );
        let quoted = format!("\"{}\"", "k".repeat(255));
        assert!(parse_key(quoted.as_bytes()).is_ok());
        assert_eq!(parse_key(b""), Err(KeyError::Empty));
        assert_eq!(parse_key(b"\"\""), Err(KeyError::Empty));
        let err = parse_key(b"a\x01b").unwrap_err();
        assert!(err.to_string().contains("0x01"), "{err}");
        assert!(matches!(
            parse_key(b"a\x7fb"),
            Err(KeyError::NotPrintable { .. })
        ));
        assert!(matches!(
            parse_key("é".as_bytes()),
            Err(KeyError::NotPrintable { .. })
        ));
        assert!(matches!(
            parse_key(b"\"a\tb\""),
            Err(KeyError::NotPrintable { .. })
        ));
        for bad in [&b"\"open"[..], b"\"a\"b", b"a b", b"a\"b", b"\"a\\x\""] {
            assert!(
                matches!(parse_key(bad), Err(KeyError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn decisions_follow_the_draft() {
        assert_eq!(decide::<u8>(None), Decision::New);
        assert_eq!(decide(Some((1, true, true))), Decision::Existing(1));
        assert_eq!(decide(Some((1, false, true))), Decision::Conflict(1));
        assert_eq!(decide(Some((1, true, false))), Decision::InProgress(1));
        assert_eq!(decide(Some((1, false, false))), Decision::InProgress(1));
    }
}
