//! Bounded excerpts of user input in error messages.
//!
//! Why it exists: an error quotes what was wrong, and what was wrong can be
//! huge — a 200 KB line in a TOML file, 200 000 variable names. A message is
//! read by a person on a terminal, so it quotes a bounded part and says how
//! much it left out, instead of filling stderr with megabytes.

use std::borrow::Cow;

/// Longest quoted text in a message, in characters.
pub const MAX_EXCERPT_CHARS: usize = 200;

/// Most items a message lists before it says "and N more".
pub const MAX_LISTED: usize = 10;

/// `s` cut to `max` characters, with `… (N more characters)` when cut.
pub fn excerpt(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some((cut, _)) => {
            let rest = s[cut..].chars().count();
            Cow::Owned(format!("{}… ({rest} more characters)", &s[..cut]))
        }
    }
}

/// The first [`MAX_LISTED`] items joined with `sep`, then `and N more`.
pub fn capped_list<S: AsRef<str>>(items: &[S], sep: &str) -> String {
    let shown: Vec<&str> = items
        .iter()
        .take(MAX_LISTED)
        .map(|s| excerpt_str(s.as_ref()))
        .collect();
    let mut out = shown.join(sep);
    if items.len() > MAX_LISTED {
        out.push_str(&format!("{sep}and {} more", items.len() - MAX_LISTED));
    }
    out
}

fn excerpt_str(s: &str) -> &str {
    // Names are short; a long one is cut without a note (the list says enough).
    match s.char_indices().nth(MAX_EXCERPT_CHARS) {
        None => s,
        Some((cut, _)) => &s[..cut],
    }
}

/// A TOML parse error as `:LINE:COLUMN: message` (position when known), the
/// message cut to [`MAX_EXCERPT_CHARS`]: no echo of the offending line,
/// which may be as long as the file.
pub fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let position = toml_position(text, e)
        .map(|(line, column)| format!(":{line}:{column}"))
        .unwrap_or_default();
    format!("{position}: {}", toml_message(e))
}

/// [`toml_error`] worded for a sentence: `line 2, column 5: message`.
pub fn toml_error_words(text: &str, e: &toml::de::Error) -> String {
    match toml_position(text, e) {
        Some((line, column)) => format!("line {line}, column {column}: {}", toml_message(e)),
        None => toml_message(e),
    }
}

fn toml_message(e: &toml::de::Error) -> String {
    let message = crate::int_words::plain_int_words(e.message().trim_end()).into_owned();
    excerpt(&message, MAX_EXCERPT_CHARS).into_owned()
}

/// The 1-based line and column (in characters) where the error starts.
fn toml_position(text: &str, e: &toml::de::Error) -> Option<(usize, usize)> {
    let span = e.span()?;
    let mut start = span.start.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
    Some((line, before[line_start..].chars().count() + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_text_is_cut_and_says_how_much_is_left_out() {
        assert_eq!(excerpt("short", 10), "short");
        let long = "é".repeat(300);
        let cut = excerpt(&long, 200);
        assert!(cut.starts_with(&"é".repeat(200)), "{cut}");
        assert!(cut.ends_with("… (100 more characters)"), "{cut}");
    }

    #[test]
    fn a_long_list_names_ten_and_counts_the_rest() {
        let names: Vec<String> = (0..200_000).map(|i| format!("v{i}")).collect();
        let text = capped_list(&names, ", ");
        assert!(text.starts_with("v0, v1, "), "{text}");
        assert!(text.ends_with("v9, and 199990 more"), "{text}");
        assert!(text.len() < 200, "{}", text.len());
        assert_eq!(capped_list(&["a", "b"], ", "), "a, b");
    }

    #[test]
    fn a_toml_error_on_a_huge_line_does_not_echo_it() {
        let text = format!("a = 1\nb = \"{}", "x".repeat(200_000));
        let e = toml::from_str::<toml::Table>(&text).unwrap_err();
        let msg = toml_error(&text, &e);
        assert!(msg.starts_with(":2:"), "{msg}");
        assert!(msg.len() < 500, "{} bytes: {}", msg.len(), &msg[..500]);
        // A serde message quoting a value is cut too.
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            n: u32,
        }
        let text = format!("n = \"{}\"", "y".repeat(100_000));
        let e = toml::from_str::<T>(&text).unwrap_err();
        let msg = toml_error(&text, &e);
        assert!(msg.len() < 500, "{} bytes", msg.len());
        assert!(msg.starts_with(":1:5: "), "{msg}");
        let words = toml_error_words(&text, &e);
        assert!(words.starts_with("line 1, column 5: "), "{words}");
    }
}
