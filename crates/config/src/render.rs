//! `oj config show`: the effective config as TOML or JSON, secrets redacted,
//! optionally with the layer of every leaf.

use crate::keys::{self, Kind};
use crate::load::Loaded;
use crate::secret::REDACTED;

/// How to print the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShowOptions {
    pub json: bool,
    pub sources: bool,
    pub show_secrets: bool,
}

/// Renders the effective configuration.
pub fn show(loaded: &Loaded, opts: ShowOptions) -> String {
    let mut tree = serde_json::to_value(&loaded.config).unwrap_or(serde_json::Value::Null);
    if !opts.show_secrets {
        redact(&mut tree, "");
    }
    if opts.json && opts.sources {
        let sources: serde_json::Map<String, serde_json::Value> = loaded
            .sources
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let doc = serde_json::json!({ "config": tree, "sources": sources });
        return serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
    }
    if opts.json {
        return serde_json::to_string_pretty(&tree).unwrap_or_default() + "\n";
    }
    if opts.sources {
        return toml_with_sources(loaded, &tree);
    }
    let mut out = format!(
        "# profile: {} ({})\n",
        loaded.profile, loaded.profile_source
    );
    match json_to_toml(&tree) {
        Some(toml::Value::Table(t)) => out.push_str(&toml::to_string(&t).unwrap_or_default()),
        _ => out.push_str("# (could not render as TOML)\n"),
    }
    out
}

/// Replaces every secret leaf with `<redacted>`.
fn redact(value: &mut serde_json::Value, prefix: &str) {
    if let serde_json::Value::Object(map) = value {
        for (k, v) in map.iter_mut() {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if keys::is_secret(&path) && !v.is_object() {
                *v = serde_json::Value::String(REDACTED.into());
            } else {
                redact(v, &path);
            }
        }
    }
}

fn json_to_toml(v: &serde_json::Value) -> Option<toml::Value> {
    Some(match v {
        serde_json::Value::Null => return None,
        serde_json::Value::Bool(b) => toml::Value::Boolean(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        serde_json::Value::String(s) => toml::Value::String(s.clone()),
        serde_json::Value::Array(a) => {
            toml::Value::Array(a.iter().filter_map(json_to_toml).collect())
        }
        serde_json::Value::Object(o) => toml::Value::Table(
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), json_to_toml(v)?)))
                .collect(),
        ),
    })
}

fn lookup<'a>(tree: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    key.split('.').try_fold(tree, |v, part| v.get(part))
}

/// One leaf a line, each followed by `# <layer>`; unset optional keys print
/// as `""`, which is how a user unsets them.
fn toml_with_sources(loaded: &Loaded, tree: &serde_json::Value) -> String {
    let mut out = format!(
        "# profile: {} ({})\n",
        loaded.profile, loaded.profile_source
    );
    let mut section = String::new();
    for key in keys::KEYS {
        let (sec, leaf) = key.name.rsplit_once('.').unwrap_or(("", key.name));
        if key.kind == Kind::StrTable {
            out.push_str(&format!(
                "\n[{}]  # {}\n",
                key.name,
                loaded.source(key.name)
            ));
            section = key.name.to_string();
            if let Some(serde_json::Value::Object(entries)) = lookup(tree, key.name) {
                for (name, v) in entries {
                    let full = format!("{}.{name}", key.name);
                    out.push_str(&format!(
                        "{} = {}  # {}\n",
                        toml_key(name),
                        render_value(v),
                        loaded.source(&full)
                    ));
                }
            }
            continue;
        }
        if sec != section {
            out.push_str(&format!("\n[{sec}]\n"));
            section = sec.to_string();
        }
        let value = lookup(tree, key.name)
            .map(render_value)
            .unwrap_or_else(|| "\"\"".into());
        out.push_str(&format!(
            "{leaf} = {value}  # {}\n",
            loaded.source(key.name)
        ));
    }
    out
}

fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        k.to_string()
    } else {
        toml::Value::String(k.to_string()).to_string()
    }
}

fn render_value(v: &serde_json::Value) -> String {
    json_to_toml(v)
        .map(|t| t.to_string())
        .unwrap_or_else(|| "\"\"".into())
}
