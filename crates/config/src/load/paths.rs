//! Path values (SPEC §7.3): `~/` and relative paths are resolved where
//! they are read, against the file that holds them or the working
//! directory, and the value as written is kept for messages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::environment::Environment;
use crate::keys::{self, Kind};

/// §7.3: `~/` is the home directory; a relative path is relative to `dir`
/// (the file it was written in), else to the working directory — except the
/// keys that stay relative to `daemon.state_dir`. `None` = use as written.
pub(super) fn resolve_path(
    key: &str,
    raw: &str,
    dir: Option<&Path>,
    env: &Environment,
) -> Option<String> {
    if raw.is_empty() {
        return None;
    }
    let expanded = match raw
        .strip_prefix("~/")
        .or(if raw == "~" { Some("") } else { None })
    {
        Some(rest) => match env.get("HOME") {
            Some(home) => Path::new(home).join(rest),
            None => PathBuf::from(raw),
        },
        None => PathBuf::from(raw),
    };
    let resolved = if expanded.is_relative() && !keys::STATE_RELATIVE.contains(&key) {
        match dir {
            Some(d) => d.join(&expanded),
            None => env.absolute(&expanded),
        }
    } else {
        expanded
    };
    let resolved = resolved.to_string_lossy().into_owned();
    (resolved != raw).then_some(resolved)
}

/// Resolves every path key a file (or user profile) sets; returns the
/// values as written for those it changed.
pub(super) fn resolve_table_paths(
    table: &mut toml::Table,
    dir: Option<&Path>,
    env: &Environment,
) -> BTreeMap<String, String> {
    let mut written = BTreeMap::new();
    for key in keys::KEYS.iter().filter(|k| k.kind == Kind::Path) {
        if let Some(toml::Value::String(raw)) = get_dotted_mut(table, key.name)
            && let Some(resolved) = resolve_path(key.name, raw, dir, env)
        {
            written.insert(key.name.to_string(), std::mem::replace(raw, resolved));
        }
    }
    written
}

fn get_dotted_mut<'a>(table: &'a mut toml::Table, key: &str) -> Option<&'a mut toml::Value> {
    let (parents, leaf) = match key.rsplit_once('.') {
        Some((p, l)) => (Some(p), l),
        None => (None, key),
    };
    let mut t = table;
    for part in parents.into_iter().flat_map(|p| p.split('.')) {
        t = t.get_mut(part)?.as_table_mut()?;
    }
    t.get_mut(leaf)
}

/// Removes a dotted key from a table (a lenient load leaves it out).
pub(super) fn remove_dotted(table: &mut toml::Table, key: &str) {
    let (parent, leaf) = match key.rsplit_once('.') {
        Some((p, l)) => (Some(p), l),
        None => (None, key),
    };
    match parent {
        None => {
            table.remove(leaf);
        }
        Some(p) => {
            if let Some(toml::Value::Table(t)) = get_dotted_mut(table, p) {
                t.remove(leaf);
            }
        }
    }
}
