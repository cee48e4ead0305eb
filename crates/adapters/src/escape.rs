//! Escaping at the edge where bytes leave oj. The core keeps job names,
//! messages and errors exactly as given; each sink knows its own syntax and
//! escapes for it, so a job name can forge neither a log line (newline), a
//! terminal (ANSI escapes), a Slack mention (`<!channel>`) nor desktop
//! markup (`<a href=…>`).

use std::borrow::Cow;

/// Control characters (C0 including newline and ESC, DEL, C1) and the
/// invisible characters that change how a terminal shows the text around
/// them (bidirectional overrides and isolates such as U+202E, the line and
/// paragraph separators U+2028/U+2029, zero-width spaces and marks, the
/// byte-order mark) written as Rust-style escapes (`\n`, `\r`, `\u{1b}`,
/// `\u{202e}`); everything else unchanged (emoji joiners included).
pub fn control_chars(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Whether `c` is escaped by [`control_chars`].
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'                  // Arabic letter mark
            | '\u{200b}'                // zero-width space
            | '\u{200e}'..='\u{200f}'   // left-to-right / right-to-left marks
            | '\u{2028}'..='\u{202e}'   // line/paragraph separators, embeddings, overrides
            | '\u{2060}'                // word joiner
            | '\u{2066}'..='\u{2069}'   // isolates
            | '\u{feff}'                // byte-order mark, zero-width no-break space
        )
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
    fn bidi_overrides_and_line_separators_are_escaped_too() {
        assert_eq!(
            control_chars(
                "evil\u{202e}txt.exe\u{2028}next\u{2029}\u{2066}i\u{2069}\u{200b}\u{feff}"
            ),
            "evil\\u{202e}txt.exe\\u{2028}next\\u{2029}\\u{2066}i\\u{2069}\\u{200b}\\u{feff}"
        );
        // A family emoji keeps its zero-width joiners; accents stay.
        assert_eq!(control_chars("👩\u{200d}👧 café"), "👩\u{200d}👧 café");
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
