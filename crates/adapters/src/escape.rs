//! Escaping at the edge where bytes leave oj. The core keeps job names,
//! messages and errors exactly as given; each sink knows its own syntax and
//! escapes for it, so a job name can forge neither a log line (newline), a
//! terminal (ANSI escapes), a Slack mention (`<!channel>`) nor desktop
//! markup (`<a href=…>`).

use std::borrow::Cow;

/// Control characters (C0 including newline and ESC, DEL, C1) written as
/// Rust-style escapes (`\n`, `\r`, `\u{1b}`); everything else unchanged.
pub fn control_chars(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Slack's message text: `&`, `<`, `>` become entities, which is all Slack
/// asks for (`<!channel>`, `<@U123>` and `<url|text>` then stay literal).
pub fn slack_text(s: &str) -> Cow<'_, str> {
    entities(s)
}

/// A desktop notification body for a server that reads markup
/// (`body-markup` capability): the same three entities, so `<b>`, `<a>`
/// and `<img>` in a job name are shown, not interpreted.
pub fn desktop_markup(s: &str) -> Cow<'_, str> {
    entities(s)
}

fn entities(s: &str) -> Cow<'_, str> {
    if !s.contains(['&', '<', '>']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_start_a_line_or_a_colour() {
        assert_eq!(control_chars("plain ✓"), "plain ✓");
        assert_eq!(
            control_chars("a\nINFO forged\r\u{1b}[31m\u{85}"),
            "a\\nINFO forged\\r\\u{1b}[31m\\u{85}"
        );
    }

    #[test]
    fn slack_and_markup_entities() {
        assert_eq!(
            slack_text("build <!channel> & <@U1>"),
            "build &lt;!channel&gt; &amp; &lt;@U1&gt;"
        );
        assert_eq!(
            desktop_markup("<a href=\"x\">y</a>"),
            "&lt;a href=\"x\"&gt;y&lt;/a&gt;"
        );
        assert!(matches!(slack_text("nothing"), Cow::Borrowed(_)));
    }
}
