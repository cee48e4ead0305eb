//! The layers above the files: one per `OJ_*` variable (aliases first, so
//! an `OJ_A__B` variable beats an alias for the same key) and one per
//! `--set KEY=VALUE`, each raw string typed by the key it sets.

use std::collections::BTreeMap;

use figment::value::Value;

use crate::environment::Environment;
use crate::error::ConfigError;
use crate::keys::{self, Kind};
use crate::layer::{Flag, Layer};

use super::leaf_checks::unknown_key;
use super::paths::resolve_path;
use super::tolerate::Skip;
use super::variables::{ALIASES, is_known_plain_variable, unknown_variable, variable_hint};
use super::{LayerData, nest};

/// Environment layers: aliases first, then `OJ_A__B` variables, so that a
/// `__` variable beats an alias for the same key. One layer per variable so
/// that provenance names the variable.
pub(super) fn env_layers(
    env: &Environment,
    skip: &Skip,
    errors: &mut Vec<ConfigError>,
) -> Vec<LayerData> {
    let mut layers = Vec::new();
    for (var, key, _) in ALIASES {
        let Some(raw) = env.vars.get(*var) else {
            continue;
        };
        if skip.vars.contains(*var) || skip.skips_key(key) {
            continue;
        }
        let layer = Layer::env(*var);
        let value = match *var {
            "OJ_TCP_PORT" if !raw.is_empty() => match raw.parse::<u16>() {
                Ok(port) => Value::from(format!("0.0.0.0:{port}")),
                Err(_) => {
                    errors.push(ConfigError::new(
                        Some(key),
                        Some(&layer),
                        "expected a port number 1-65535",
                    ));
                    continue;
                }
            },
            "OJ_DRAIN_TIMEOUT_MS" => match raw.parse::<u64>() {
                Ok(ms) => Value::from(
                    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string(),
                ),
                Err(_) => {
                    errors.push(ConfigError::new(
                        Some(key),
                        Some(&layer),
                        "expected a number of milliseconds",
                    ));
                    continue;
                }
            },
            _ => match keys::find(key) {
                Some(k) => typed_value(k.kind, raw, true),
                None => continue,
            },
        };
        layers.push(override_layer(layer, key, value, env));
    }
    for (var, raw) in &env.vars {
        let Some(rest) = var.strip_prefix("OJ_") else {
            continue;
        };
        if skip.vars.contains(var) {
            continue;
        }
        if !rest.contains("__") {
            if !is_known_plain_variable(var) {
                errors.push(unknown_variable(var));
            }
            continue;
        }
        let layer = Layer::env(var.as_str());
        let path = rest.replace("__", ".").to_ascii_lowercase();
        if skip.skips_key(&path) {
            continue;
        }
        match keys::owning_key(&path) {
            Some(k) if k.kind == Kind::StrTable && k.name == path => {
                errors.push(ConfigError::new(
                    Some(&path),
                    Some(&layer),
                    format!("is a table; set one entry, e.g. {var}__X_TEAM=value"),
                ));
            }
            Some(k) => layers.push(override_layer(
                layer,
                &path,
                typed_value(k.kind, raw, true),
                env,
            )),
            None => {
                let hint = variable_hint(var);
                errors.push(ConfigError::new(
                    None,
                    Some(&layer),
                    format!("matches no configuration key ({path}); {hint}"),
                ));
            }
        }
    }
    layers
}

/// `--set KEY=VALUE` layers.
pub(super) fn set_layers(
    sets: &[String],
    skip: &Skip,
    env: &Environment,
    errors: &mut Vec<ConfigError>,
) -> Vec<LayerData> {
    let mut layers = Vec::new();
    for item in sets {
        let layer = &Layer::Flag(Flag::Set);
        let Some((key, raw)) = item.split_once('=') else {
            errors.push(ConfigError::new(
                None,
                Some(layer),
                format!("{item:?} is not KEY=VALUE (e.g. --set log.level=debug)"),
            ));
            continue;
        };
        let key = key.trim();
        if skip.skips_key(key) {
            continue;
        }
        match keys::owning_key(key) {
            Some(k) if k.kind == Kind::StrTable && k.name == key => {
                errors.push(ConfigError::new(
                    Some(key),
                    Some(layer),
                    format!("is a table; set one entry, e.g. --set {key}.x-team=value"),
                ));
            }
            Some(k) => {
                let value = match k.kind {
                    Kind::StrTable => Value::from(raw.to_string()),
                    kind => typed_value(kind, raw, false),
                };
                layers.push(override_layer(layer.clone(), key, value, env))
            }
            None => errors.push(unknown_key(key, layer)),
        }
    }
    layers
}

/// Turns a raw string from the environment or `--set` into a value of the
/// key's kind: strings stay strings; booleans, integers and arrays are
/// parsed as TOML (or a comma-separated list for arrays).
fn typed_value(kind: Kind, raw: &str, lenient_bools: bool) -> Value {
    let as_toml = |s: &str| -> Option<Value> {
        let doc: toml::Table = toml::from_str(&format!("v = {s}")).ok()?;
        Value::serialize(doc.get("v")?).ok()
    };
    match kind {
        Kind::Bool => {
            if lenient_bools {
                match raw.to_ascii_lowercase().as_str() {
                    "1" | "yes" | "on" => return Value::from(true),
                    "0" | "no" | "off" => return Value::from(false),
                    _ => {}
                }
            }
            as_toml(raw).unwrap_or_else(|| Value::from(raw.to_string()))
        }
        Kind::Int { .. } | Kind::Table | Kind::Tolerations => {
            as_toml(raw).unwrap_or_else(|| Value::from(raw.to_string()))
        }
        Kind::StrArray | Kind::EnumArray(_) => {
            if raw.trim_start().starts_with('[') {
                as_toml(raw).unwrap_or_else(|| Value::from(raw.to_string()))
            } else if raw.is_empty() {
                Value::from(Vec::<Value>::new())
            } else {
                Value::from(
                    raw.split(',')
                        .map(|s| Value::from(s.trim().to_string()))
                        .collect::<Vec<_>>(),
                )
            }
        }
        _ => {
            // A quoted TOML string is unquoted; anything else is taken as written.
            if (raw.starts_with('"') || raw.starts_with('\''))
                && let Some(v @ Value::String(..)) = as_toml(raw)
            {
                return v;
            }
            Value::from(raw.to_string())
        }
    }
}

/// An env or `--set` layer setting one key; a path value is resolved
/// against the home directory and the working directory oj started in.
fn override_layer(layer: Layer, key: &str, value: Value, env: &Environment) -> LayerData {
    let mut written = BTreeMap::new();
    let value = match (&value, keys::find(key)) {
        (Value::String(_, raw), Some(k)) if k.kind == Kind::Path => {
            match resolve_path(key, raw, None, env) {
                Some(resolved) => {
                    written.insert(key.to_string(), raw.clone());
                    Value::from(resolved)
                }
                None => value,
            }
        }
        _ => value,
    };
    LayerData {
        layer,
        dict: nest(key, value),
        written,
    }
}
