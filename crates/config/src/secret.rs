//! A string that must never reach a log line or an error message.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What secrets print as wherever they are shown.
pub const REDACTED: &str = "<redacted>";

/// Shortest HMAC key Standard Webhooks accepts (its spec: 24 to 64 bytes).
pub const MIN_WEBHOOK_KEY_BYTES: usize = 24;

/// Tokens shorter than this are guessable; `oj config check` warns.
pub const MIN_TOKEN_BYTES: usize = 16;

/// The HMAC key of a Standard Webhooks secret: the base64 after `whsec_`
/// (the prefix is optional, as in the reference libraries). The reason
/// never quotes the secret.
pub fn webhook_signing_key(secret: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let text = secret.trim();
    let b64 = text.strip_prefix("whsec_").unwrap_or(text);
    if b64.is_empty() {
        return Err("it is empty".into());
    }
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "the part after \"whsec_\" is not valid base64".to_string())?;
    if key.len() < MIN_WEBHOOK_KEY_BYTES {
        return Err(format!(
            "the key is {} bytes long, Standard Webhooks needs at least {MIN_WEBHOOK_KEY_BYTES}; generate one with `echo whsec_$(head -c 32 /dev/urandom | base64)`",
            key.len()
        ));
    }
    Ok(key)
}

/// A secret value (token, webhook URL, signing key, header). `Debug` and
/// `Display` print `<redacted>`; only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself: call this only where the value is used, never
    /// where it is printed.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A secret kept in a file (a Kubernetes Secret mount, `echo tok > f`):
    /// the contents without surrounding whitespace — the trailing newline
    /// above all, and spaces too, since HTTP strips them from a header
    /// value anyway. The daemon, the client and the log scrubber all read
    /// token files through this, so they agree on the value.
    pub fn from_file_contents(text: &str) -> Secret {
        Secret(text.trim().to_string())
    }

    /// The same trimming for a token given inline (`listen.auth_token`,
    /// `client.token`): what can actually travel in `Authorization`.
    pub fn trimmed(&self) -> Secret {
        Secret(self.0.trim().to_string())
    }

    /// Reads a secret file; see [`Secret::from_file_contents`].
    pub fn read_file(path: &std::path::Path) -> std::io::Result<Secret> {
        std::fs::read_to_string(path).map(|t| Secret::from_file_contents(&t))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Serializes the real value: `config show` redacts by key, and the figment
/// layers need the value itself.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl schemars::JsonSchema for Secret {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Secret".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A secret string; printed as \"<redacted>\" by `oj config show`.",
            "type": "string"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_keys_need_24_bytes() {
        // 24 bytes: the Standard Webhooks reference vector.
        assert_eq!(
            webhook_signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").map(|k| k.len()),
            Ok(24)
        );
        let short = webhook_signing_key("whsec_c2VjcmV0").unwrap_err();
        assert!(
            short.contains("6 bytes") && !short.contains("c2VjcmV0"),
            "{short}"
        );
        assert!(webhook_signing_key("whsec_").is_err());
        assert!(webhook_signing_key("whsec_not base64!").is_err());
    }

    #[test]
    fn file_contents_lose_only_the_trailing_newline() {
        assert_eq!(Secret::from_file_contents("tok\n").expose(), "tok");
        assert_eq!(Secret::from_file_contents("tok\r\n").expose(), "tok");
        assert_eq!(Secret::from_file_contents("tok").expose(), "tok");
        // HTTP drops surrounding whitespace from a header value: so do we.
        assert_eq!(Secret::from_file_contents(" tok \n").expose(), "tok");
        assert_eq!(Secret::new(" a b ").trimmed().expose(), "a b");
        assert!(Secret::from_file_contents("\n").is_empty());
        assert_eq!(format!("{:?}", Secret::from_file_contents("tok")), REDACTED);
    }
}
