//! `oj config explain KEY` and `oj config diff`: one key across every layer
//! (what `git config --show-origin --get-all` does for git), and the keys
//! in which two configurations differ, each side with its layer.

use crate::keys::{self, Kind};
use crate::layer::Layer;
use crate::load::Loaded;
use crate::named;
use crate::render::{self, View};
use crate::secret::REDACTED;

/// Why `explain` cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnknownKey(pub String);

/// Explains `key` (or every key of a section such as `log.file`).
pub fn explain(loaded: &Loaded, key: &str) -> Result<String, UnknownKey> {
    let key = key.trim();
    if let Some(k) = keys::owning_key(key) {
        return Ok(explain_key(loaded, k, key));
    }
    if keys::is_section(key) {
        let under: Vec<String> = keys::KEYS
            .iter()
            .filter(|k| k.name.starts_with(key) && k.name.as_bytes().get(key.len()) == Some(&b'.'))
            .map(|k| explain_key(loaded, k, k.name))
            .collect();
        return Ok(under.join("\n"));
    }
    let hint = match keys::nearest(key) {
        Some(n) => format!("did you mean `{n}`?"),
        None => "`oj config show` lists every key.".into(),
    };
    Err(UnknownKey(format!("unknown key `{key}`; {hint}")))
}

fn explain_key(loaded: &Loaded, k: &keys::Key, asked: &str) -> String {
    let shown = |v: &serde_json::Value| {
        if k.secret {
            format!("\"{REDACTED}\"")
        } else {
            render::render_value(v)
        }
    };
    let mut out = format!("{asked}\n");
    let row = |out: &mut String, label: &str, value: &str| {
        out.push_str(&format!("  {label:<12} {value}\n"));
    };
    row(&mut out, "type:", &keys::describe(k.kind));
    if k.optional {
        row(
            &mut out,
            "",
            "optional: \"\" (or an empty variable) unsets it",
        );
    }
    row(&mut out, "description:", k.description);
    let default = loaded
        .layers
        .first()
        .and_then(|l| l.values().get(asked))
        .map(shown)
        .or_else(|| {
            keys::NAMED_DEFAULTS
                .iter()
                .find(|(name, _)| *name == k.name)
                .map(|(_, d)| d.to_string())
        })
        .unwrap_or_else(|| "unset".into());
    row(&mut out, "default:", &default);
    let env = if k.kind == Kind::StrTable && asked == k.name {
        format!("{}__<NAME>", keys::env_var_name(k.name))
    } else {
        keys::env_var_name(asked)
    };
    let aliases: Vec<&str> = crate::load::ALIASES
        .iter()
        .filter(|(_, key, _)| *key == k.name)
        .map(|(v, _, _)| *v)
        .collect();
    if aliases.is_empty() {
        row(&mut out, "env:", &env);
    } else {
        row(
            &mut out,
            "env:",
            &format!("{env} (alias {})", aliases.join(", ")),
        );
    }
    let applies = if keys::client_only(k.name) {
        "read by client commands only (the daemon does not use it)"
    } else if keys::applies_live(k.name) {
        "live: a running daemon applies a new value on reload (SIGHUP or a changed config file)"
    } else {
        "at restart: a reload reports a new value as pending a restart"
    };
    row(&mut out, "applies:", applies);
    if k.secret {
        row(
            &mut out,
            "secret:",
            "yes; values are shown as \"<redacted>\"",
        );
    }
    out.push_str("  layers, lowest first (the last one wins):\n");
    let effective_layer = loaded.source(asked);
    let mut any = false;
    for layer in &loaded.layers {
        let values: Vec<(&String, &serde_json::Value)> = layer
            .values()
            .iter()
            .filter(|(name, _)| {
                name.as_str() == asked
                    || (k.kind == Kind::StrTable
                        && name.starts_with(asked)
                        && name.as_bytes().get(asked.len()) == Some(&b'.'))
            })
            .collect();
        for (name, value) in values {
            any = true;
            let mut line = format!("    {:<40} {}", layer.layer, shown(value));
            if name.as_str() != asked {
                line = format!(
                    "    {:<40} {} = {}",
                    layer.layer,
                    &name[asked.len() + 1..],
                    shown(value)
                );
            }
            if let Some(w) = layer.written.get(name.as_str()) {
                line.push_str(&format!("  (written {w:?})"));
            }
            if layer.layer == *effective_layer {
                line.push_str("  <- effective");
            } else {
                line.push_str("  (shadowed)");
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    if !any {
        out.push_str("    (no layer sets it: unset)\n");
    }
    let effective = render::lookup(
        &serde_json::to_value(&loaded.config).unwrap_or_default(),
        asked,
    )
    .map(shown)
    .unwrap_or_else(|| "unset".into());
    out.push_str(&format!(
        "  effective:   {effective}  # {effective_layer}\n"
    ));
    out
}

/// One key that differs between two configurations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub key: String,
    pub left: String,
    pub left_layer: Layer,
    pub right: String,
    pub right_layer: Layer,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} ({}) -> {} ({})",
            self.key, self.left, self.left_layer, self.right, self.right_layer
        )
    }
}

/// The keys whose values differ between `left` and `right` (secrets are
/// compared redacted, so they never show); `skip` leaves keys out.
pub fn diff(left: &View, right: &View, skip: impl Fn(&str) -> bool) -> Vec<Difference> {
    let mut l = left.tree.clone();
    let mut r = right.tree.clone();
    render::redact(&mut l);
    render::redact(&mut r);
    let mut out = Vec::new();
    for key in keys::KEYS.iter().filter(|k| !skip(k.name)) {
        let mut names = vec![key.name.to_string()];
        if named::is_pattern(key.name) {
            names = named::instances(key.name, |t| named::names_in(&l, t));
            names.extend(named::instances(key.name, |t| named::names_in(&r, t)));
            names.sort();
            names.dedup();
        }
        if key.kind == Kind::StrTable {
            names.clear();
            for tree in [&l, &r] {
                if let Some(serde_json::Value::Object(m)) = render::lookup(tree, key.name) {
                    names.extend(m.keys().map(|e| format!("{}.{e}", key.name)));
                }
            }
            names.sort();
            names.dedup();
        }
        for name in names {
            let lv = render::lookup(&l, &name);
            let rv = render::lookup(&r, &name);
            if lv != rv {
                let show = |v: Option<&serde_json::Value>| {
                    v.map(render::render_value)
                        .unwrap_or_else(|| "unset".into())
                };
                out.push(Difference {
                    left: show(lv),
                    left_layer: left.source(&name).clone(),
                    right: show(rv),
                    right_layer: right.source(&name).clone(),
                    key: name,
                });
            }
        }
    }
    out
}
