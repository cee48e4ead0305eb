//! `${…}` template substitution, shared by the runbook loader (which fills
//! `${var.NAME}` on the client) and the daemon (which fills `${job_id}`,
//! `${name}`, `${step}` and `${error}` when a step or notification runs).
//!
//! Anything that is not one of those names is left untouched, so shell
//! syntax such as `${HOME}` or `${PATH:-/bin}` reaches the shell as written.

use std::collections::BTreeMap;

/// Why a template could not be filled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `${var.NAME}` names a variable the job does not declare or was not given.
    #[error("unknown variable ${{var.{name}}}")]
    UnknownVar { name: String },
}

/// Replaces every `${KEY}` for which `resolve` returns `Ok(Some(value))`;
/// `Ok(None)` keeps `${KEY}` verbatim; an error stops. An unterminated `${`
/// is kept as text.
pub fn render<E>(
    text: &str,
    mut resolve: impl FnMut(&str) -> Result<Option<String>, E>,
) -> Result<String, E> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let key = &after[..end];
                match resolve(key)? {
                    Some(value) => out.push_str(&value),
                    None => {
                        out.push_str("${");
                        out.push_str(key);
                        out.push('}');
                    }
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Fills `${var.NAME}` from `vars`; a `${var.X}` with no value is an error.
/// Other `${…}` stay for the daemon or the shell.
pub fn substitute_vars(
    text: &str,
    vars: &BTreeMap<String, String>,
) -> Result<String, TemplateError> {
    render(text, |key| match key.strip_prefix("var.") {
        Some(name) => match vars.get(name) {
            Some(v) => Ok(Some(v.clone())),
            None => Err(TemplateError::UnknownVar {
                name: name.to_string(),
            }),
        },
        None => Ok(None),
    })
}

/// Every `${var.NAME}` a text refers to, in order of appearance.
pub fn referenced_vars(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let _ = render::<std::convert::Infallible>(text, |key| {
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
    /// Fills `${job_id}`, `${name}`, `${step}` and `${error}`; never fails.
    /// `${step}` / `${error}` without a value become empty strings.
    pub fn apply(&self, text: &str) -> String {
        let filled = render::<std::convert::Infallible>(text, |key| {
            Ok(match key {
                "job_id" => Some(self.job_id.to_string()),
                "name" => Some(self.name.to_string()),
                "step" => Some(self.step.unwrap_or_default().to_string()),
                "error" => Some(self.error.unwrap_or_default().to_string()),
                _ => None,
            })
        });
        match filled {
            Ok(s) => s,
            Err(never) => match never {},
        }
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
        )
        .unwrap();
        assert_eq!(out, "build x86_64 in ${HOME} for ${job_id} ${PATH:-/bin}");
    }

    #[test]
    fn unknown_var_is_an_error_naming_it() {
        let err = substitute_vars("echo ${var.nope}", &BTreeMap::new()).unwrap_err();
        assert_eq!(
            err,
            TemplateError::UnknownVar {
                name: "nope".into()
            }
        );
        assert!(err.to_string().contains("${var.nope}"));
    }

    #[test]
    fn unterminated_brace_is_text() {
        assert_eq!(
            substitute_vars("a ${var.x", &BTreeMap::new()).unwrap(),
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
            rv.apply("${name}/${job_id}/${step}/${error}/${other}"),
            "build/abc/compile//${other}"
        );
    }

    #[test]
    fn lists_referenced_vars() {
        assert_eq!(referenced_vars("${var.a} ${b} ${var.c}"), vec!["a", "c"]);
    }
}
