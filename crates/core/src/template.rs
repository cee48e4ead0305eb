//! `${…}` template substitution, shared by the runbook loader (which fills
//! `${var.NAME}` on the client) and the daemon (which fills `${job_id}`,
//! `${name}`, `${step}` and `${error}` when a step or notification runs).
//!
//! Anything that is not one of those names is left untouched, so shell
//! syntax such as `${HOME}` or `${PATH:-/bin}` reaches the shell as written.
//!
//! `$${` is a literal `${`: the client keeps it as written (so a runbook's
//! `$${job_id}` is not filled by the daemon either), and the daemon turns it
//! into `${` without filling what follows. A `--var` value is data: the
//! client writes every `${` in it as `$${`, so the daemon never fills a
//! value a second time (`--var b='${job_id}'` runs with `${job_id}`).

use std::collections::BTreeMap;

/// The most bytes one filled-in text may have: Linux refuses a single
/// argument or environment string longer than this (`MAX_ARG_STRLEN`), so a
/// step's `run` or an env value above it could never start.
pub const MAX_FILLED_BYTES: usize = 131_072;

/// The most bytes a notification message may have; longer ones are cut
/// (with `…`), since a title and a line of text is all any backend shows.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Why a template could not be filled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `${var.NAME}` names a variable the job does not declare or was not given.
    #[error("unknown variable ${{var.{name}}}")]
    UnknownVar { name: String },
    /// The filled-in text would pass `cap` bytes.
    #[error(
        "the text is over {cap} bytes once its ${{…}} templates are filled in (Linux refuses longer arguments); shorten it or the values it repeats"
    )]
    TooLong { cap: usize },
}

/// Why [`render`] stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError<E> {
    /// `resolve` failed.
    Resolve(E),
    /// The output would pass the cap; `partial` holds what fitted.
    TooLong { partial: String },
}

/// Replaces every `${KEY}` for which `resolve` returns `Ok(Some(value))`;
/// `Ok(None)` keeps `${KEY}` verbatim; an error stops. An unterminated `${`
/// is kept as text. The output never grows past `cap` bytes: a short
/// template that repeats a long value cannot make it allocate more.
pub fn render<E>(
    text: &str,
    cap: usize,
    resolve: impl FnMut(&str) -> Result<Option<String>, E>,
) -> Result<String, RenderError<E>> {
    render_with(text, cap, false, resolve)
}

/// [`render`]; with `unescape`, every `$${` becomes `${` (the daemon's
/// pass, the last one), else it stays as written (the client's).
fn render_with<E>(
    text: &str,
    cap: usize,
    unescape: bool,
    mut resolve: impl FnMut(&str) -> Result<Option<String>, E>,
) -> Result<String, RenderError<E>> {
    let mut out = Capped {
        out: String::with_capacity(text.len().min(cap)),
        cap,
    };
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if start > 0 && rest.as_bytes()[start - 1] == b'$' {
            // `$${`: a literal `${`, never filled.
            out.push(&rest[..if unescape { start - 1 } else { start }])?;
            out.push("${")?;
            rest = &rest[start + 2..];
            continue;
        }
        out.push(&rest[..start])?;
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let key = &after[..end];
                match resolve(key).map_err(RenderError::Resolve)? {
                    Some(value) => out.push(&value)?,
                    None => out.push(&rest[start..start + 2 + end + 1])?,
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push(&rest[start..])?;
                rest = "";
            }
        }
    }
    out.push(rest)?;
    Ok(out.out)
}

/// A string that refuses to grow past `cap` bytes.
struct Capped {
    out: String,
    cap: usize,
}

impl Capped {
    fn push<E>(&mut self, piece: &str) -> Result<(), RenderError<E>> {
        if self.out.len() + piece.len() <= self.cap {
            self.out.push_str(piece);
            return Ok(());
        }
        let mut fits = self.cap - self.out.len();
        while !piece.is_char_boundary(fits) {
            fits -= 1;
        }
        self.out.push_str(&piece[..fits]);
        Err(RenderError::TooLong {
            partial: std::mem::take(&mut self.out),
        })
    }
}

/// Fills `${var.NAME}` from `vars`; a `${var.X}` with no value is an error.
/// Other `${…}` stay for the daemon or the shell. The result is at most
/// `cap` bytes.
pub fn substitute_vars(
    text: &str,
    vars: &BTreeMap<String, String>,
    cap: usize,
) -> Result<String, TemplateError> {
    let filled = render(text, cap, |key| match key.strip_prefix("var.") {
        Some(name) => match vars.get(name) {
            Some(v) => Ok(Some(escape(v))),
            None => Err(TemplateError::UnknownVar {
                name: name.to_string(),
            }),
        },
        None => Ok(None),
    });
    filled.map_err(|e| match e {
        RenderError::Resolve(e) => e,
        RenderError::TooLong { .. } => TemplateError::TooLong { cap },
    })
}

/// `text` as data in a template: every `${` becomes `$${`, which the
/// daemon's fill turns back into `${` without filling it.
pub fn escape(text: &str) -> String {
    text.replace("${", "$${")
}

/// Every `${var.NAME}` a text refers to, in order of appearance.
pub fn referenced_vars(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let _ = render::<std::convert::Infallible>(text, text.len(), |key| {
        if let Some(name) = key.strip_prefix("var.") {
            names.push(name.to_string());
        }
        Ok(None)
    });
    names
}

/// The values the daemon fills in at run time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeVars<'a> {
    pub job_id: &'a str,
    pub name: &'a str,
    pub step: Option<&'a str>,
    pub error: Option<&'a str>,
}

impl RuntimeVars<'_> {
    /// Fills `${job_id}`, `${name}`, `${step}` and `${error}` (`${step}` /
    /// `${error}` without a value become empty strings); fails when the
    /// result would pass `cap` bytes.
    pub fn fill(&self, text: &str, cap: usize) -> Result<String, TemplateError> {
        self.render(text, cap)
            .map_err(|_| TemplateError::TooLong { cap })
    }

    /// Like [`RuntimeVars::fill`], but a result over `cap` bytes is cut
    /// there and ends in `…` (for messages, which must always exist).
    pub fn fill_truncated(&self, text: &str, cap: usize) -> String {
        match self.render(text, cap) {
            Ok(s) => s,
            Err(mut partial) => {
                let mut keep = cap.saturating_sub('…'.len_utf8()).min(partial.len());
                while !partial.is_char_boundary(keep) {
                    keep -= 1;
                }
                partial.truncate(keep);
                partial.push('…');
                partial
            }
        }
    }

    /// The length [`RuntimeVars::fill`] would give, counted without
    /// building the text (so checking a huge expansion costs nothing).
    pub fn filled_len(&self, text: &str) -> usize {
        let mut len = 0usize;
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 && rest.as_bytes()[start - 1] == b'$' {
                // `$${` fills in as `${`.
                len = len.saturating_add(start + 1);
                rest = &rest[start + 2..];
                continue;
            }
            len = len.saturating_add(start);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return len.saturating_add(rest.len() - start);
            };
            len = len.saturating_add(match &after[..end] {
                "job_id" => self.job_id.len(),
                "name" => self.name.len(),
                "step" => self.step.unwrap_or_default().len(),
                "error" => self.error.unwrap_or_default().len(),
                _ => end + 3,
            });
            rest = &after[end + 1..];
        }
        len.saturating_add(rest.len())
    }

    fn render(&self, text: &str, cap: usize) -> Result<String, String> {
        let filled = render_with::<std::convert::Infallible>(text, cap, true, |key| {
            Ok(match key {
                "job_id" => Some(self.job_id.to_string()),
                "name" => Some(self.name.to_string()),
                "step" => Some(self.step.unwrap_or_default().to_string()),
                "error" => Some(self.error.unwrap_or_default().to_string()),
                _ => None,
            })
        });
        filled.map_err(|e| match e {
            RenderError::TooLong { partial } => partial,
            RenderError::Resolve(never) => match never {},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fills_vars_and_keeps_everything_else() {
        let v = vars(&[("target", "x86_64")]);
        let out = substitute_vars(
            "build ${var.target} in ${HOME} for ${job_id} ${PATH:-/bin}",
            &v,
            MAX_FILLED_BYTES,
        )
        .unwrap();
        assert_eq!(out, "build x86_64 in ${HOME} for ${job_id} ${PATH:-/bin}");
    }

    #[test]
    fn unknown_var_is_an_error_naming_it() {
        let err = substitute_vars("echo ${var.nope}", &BTreeMap::new(), 100).unwrap_err();
        assert_eq!(
            err,
            TemplateError::UnknownVar {
                name: "nope".into()
            }
        );
        assert!(err.to_string().contains("${var.nope}"));
    }

    /// Issue 30 item 13: a `--var` value is data, filled once; `$${` is a
    /// literal `${` in a runbook, through both passes.
    #[test]
    fn a_var_value_is_never_filled_a_second_time() {
        let v = vars(&[("b", "${job_id} $${name} ${var.b}")]);
        let sent = substitute_vars("echo '${var.b}' $${job_id} ${job_id}", &v, 200).unwrap();
        let rv = RuntimeVars {
            job_id: "ID",
            name: "N",
            step: None,
            error: None,
        };
        let ran = rv.fill(&sent, 200).unwrap();
        assert_eq!(ran, "echo '${job_id} $${name} ${var.b}' ${job_id} ID");
        assert_eq!(rv.filled_len(&sent), ran.len());
        assert_eq!(rv.filled_len("$${x}"), 4);
        assert_eq!(rv.fill("a$$${name}", 200).unwrap(), "a$${name}");
        assert!(referenced_vars("$${var.x} ${var.y}") == vec!["y".to_string()]);
    }

    #[test]
    fn unterminated_brace_is_text() {
        assert_eq!(
            substitute_vars("a ${var.x", &BTreeMap::new(), 100).unwrap(),
            "a ${var.x"
        );
    }

    #[test]
    fn runtime_vars_fill_known_names_only() {
        let rv = RuntimeVars {
            job_id: "abc",
            name: "build",
            step: Some("compile"),
            error: None,
        };
        assert_eq!(
            rv.fill("${name}/${job_id}/${step}/${error}/${other}", 100)
                .unwrap(),
            "build/abc/compile//${other}"
        );
    }

    /// A template bomb: a few KB that would fill to gigabytes stops at the
    /// cap, without allocating more than the cap.
    #[test]
    fn filling_stops_at_the_cap() {
        let name = "n".repeat(250);
        let rv = RuntimeVars {
            job_id: "abc",
            name: &name,
            step: None,
            error: None,
        };
        let bomb = "${name}".repeat(1_000_000);
        assert_eq!(
            rv.fill(&bomb, MAX_FILLED_BYTES),
            Err(TemplateError::TooLong {
                cap: MAX_FILLED_BYTES
            })
        );
        let fits = "${name}".repeat(MAX_FILLED_BYTES / 250);
        assert_eq!(rv.fill(&fits, MAX_FILLED_BYTES).unwrap().len(), 131_000);
        let msg = rv.fill_truncated(&bomb, 100);
        assert!(msg.len() <= 100 && msg.ends_with('…'), "{msg}");
        let vars: BTreeMap<String, String> = [("x".to_string(), "y".repeat(1 << 16))].into();
        assert_eq!(
            substitute_vars(&"${var.x}".repeat(1 << 16), &vars, 1 << 20),
            Err(TemplateError::TooLong { cap: 1 << 20 })
        );
    }

    #[test]
    fn filled_len_matches_fill() {
        let rv = RuntimeVars {
            job_id: "0mx49xbba000",
            name: "build",
            step: Some("compile"),
            error: None,
        };
        for t in [
            "",
            "plain",
            "${name}/${job_id}/${step}/${error}/${other}",
            "a ${var.x",
            "${}${name",
            "é${name}é",
        ] {
            assert_eq!(rv.filled_len(t), rv.fill(t, 1 << 20).unwrap().len(), "{t}");
        }
        assert_eq!(rv.filled_len(&"${name}".repeat(1000)), 5000);
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let rv = RuntimeVars {
            job_id: "abc",
            name: "ééééé",
            step: None,
            error: None,
        };
        assert_eq!(rv.fill_truncated("${name}", 6), "é…");
        assert!(rv.fill("${name}", 5).is_err());
    }

    #[test]
    fn lists_referenced_vars() {
        assert_eq!(referenced_vars("${var.a} ${b} ${var.c}"), vec!["a", "c"]);
    }
}
