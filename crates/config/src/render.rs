//! `oj config show`: the effective config as TOML or JSON, secrets redacted,
//! optionally with the layer of every leaf.

use std::collections::BTreeMap;

use crate::keys::{self, Kind};
use crate::layer::{DEFAULT_LAYER, Layer};
use crate::load::Loaded;
use crate::named;
use crate::secret::REDACTED;

/// How to print the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShowOptions {
    pub json: bool,
    pub sources: bool,
    pub show_secrets: bool,
}

/// A configuration to print: the tree, the layer of every leaf and a
/// header line. Built from a [`Loaded`] or from a daemon's `GET /v1/config`.
#[derive(Debug, Clone)]
pub struct View {
    pub tree: serde_json::Value,
    pub sources: BTreeMap<String, Layer>,
    /// The first comment line, e.g. `profile: desktop (default)`.
    pub header: String,
}

impl View {
    /// The view of a loaded configuration, secrets still in it.
    pub fn of(loaded: &Loaded) -> View {
        View {
            tree: serde_json::to_value(&loaded.config).unwrap_or(serde_json::Value::Null),
            sources: loaded.sources.clone(),
            header: format!("profile: {} ({})", loaded.profile, loaded.profile_source),
        }
    }

    /// The source of a key (`default` when unknown).
    pub fn source(&self, key: &str) -> &Layer {
        self.sources.get(key).unwrap_or(&DEFAULT_LAYER)
    }
}

/// Renders the effective configuration.
pub fn show(loaded: &Loaded, opts: ShowOptions) -> String {
    show_view(&View::of(loaded), opts)
}

/// Renders a [`View`] as `oj config show` does.
pub fn show_view(view: &View, opts: ShowOptions) -> String {
    let mut tree = view.tree.clone();
    if !opts.show_secrets {
        redact(&mut tree);
    }
    if opts.json && opts.sources {
        let doc = serde_json::json!({ "config": tree, "sources": view.sources });
        return serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
    }
    if opts.json {
        return serde_json::to_string_pretty(&tree).unwrap_or_default() + "\n";
    }
    if opts.sources {
        return toml_with_sources(view, &tree);
    }
    let mut out = format!("# {}\n", view.header);
    match json_to_toml(&tree) {
        Some(toml::Value::Table(t)) => out.push_str(&toml::to_string(&t).unwrap_or_default()),
        _ => out.push_str("# (could not render as TOML)\n"),
    }
    out
}

/// Replaces every secret leaf with `<redacted>`.
pub fn redact(value: &mut serde_json::Value) {
    redact_under(value, "")
}

fn redact_under(value: &mut serde_json::Value, prefix: &str) {
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
                redact_under(v, &path);
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

/// The value at a dotted key of a config tree.
pub fn lookup<'a>(tree: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    key.split('.').try_fold(tree, |v, part| v.get(part))
}

/// One leaf a line, each followed by `# <layer>`; unset optional keys print
/// as `""`, which is how a user unsets them. Keys are grouped by section, in
/// the order sections first appear in the key table, and each table of free
/// keys (`notify.webhook.headers`) follows its parent's leaves: every
/// `[section]` appears once, so the output is valid TOML.
fn toml_with_sources(view: &View, tree: &serde_json::Value) -> String {
    let mut out = format!("# {}\n", view.header);
    // (section, [(concrete key, key)]): a user-named table such as
    // `queues.build` is a section of its own, one per name in the tree.
    type Section<'k> = (String, Vec<(String, &'k keys::Key)>);
    let mut sections: Vec<Section> = Vec::new();
    for key in keys::KEYS {
        for name in named::instances(key.name, |t| named::names_in(tree, t)) {
            let sec = if key.kind == Kind::StrTable {
                name.clone()
            } else {
                name.rsplit_once('.').map_or("", |(s, _)| s).to_string()
            };
            match sections.iter_mut().find(|(s, _)| *s == sec) {
                Some((_, ks)) => ks.push((name, key)),
                None => sections.push((sec, vec![(name, key)])),
            }
        }
    }
    // A table of free keys goes right after the section that holds it.
    let mut ordered: Vec<Section> = Vec::new();
    let (tables, plain): (Vec<_>, Vec<_>) = sections
        .into_iter()
        .partition(|(_, ks)| ks.iter().any(|(_, k)| k.kind == Kind::StrTable));
    for sec in plain {
        let name = sec.0.clone();
        ordered.push(sec);
        ordered.extend(
            tables
                .iter()
                .filter(|(t, _)| t.rsplit_once('.').map_or("", |(p, _)| p) == name)
                .cloned(),
        );
    }
    for (sec, ks) in ordered {
        out.push_str(&format!("\n[{sec}]"));
        if let [(table, key)] = ks.as_slice()
            && key.kind == Kind::StrTable
        {
            out.push_str(&format!("  # {}\n", view.source(table)));
            if let Some(serde_json::Value::Object(entries)) = lookup(tree, table) {
                for (name, v) in entries {
                    let full = format!("{table}.{name}");
                    out.push_str(&format!(
                        "{} = {}  # {}\n",
                        toml_key(name),
                        render_value(v),
                        view.source(&full)
                    ));
                }
            }
            continue;
        }
        out.push('\n');
        for (name, _) in ks {
            let leaf = name.rsplit_once('.').map_or(name.as_str(), |(_, l)| l);
            let value = lookup(tree, &name)
                .map(render_value)
                .unwrap_or_else(|| "\"\"".into());
            out.push_str(&format!("{leaf} = {value}  # {}\n", view.source(&name)));
        }
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

/// A value as TOML writes it (`""` for unset).
pub fn render_value(v: &serde_json::Value) -> String {
    json_to_toml(v)
        .map(|t| t.to_string())
        .unwrap_or_else(|| "\"\"".into())
}
