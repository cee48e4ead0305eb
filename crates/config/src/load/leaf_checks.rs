//! Checks on what each layer sets, made before the merge is extracted so
//! that every bad value is reported, not only the first: unknown keys,
//! blank tokens, and each leaf's value against its kind.

use figment::value::{Dict, Value};

use crate::error::ConfigError;
use crate::keys::{self, Kind};
use crate::layer::Layer;
use crate::validate;

/// Reports keys that are neither a known leaf nor a section.
pub(super) fn check_unknown_keys(
    dict: &Dict,
    prefix: &str,
    layer: &Layer,
    errors: &mut Vec<ConfigError>,
) {
    for (k, v) in dict {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if keys::owning_key(&path).is_some() {
            continue;
        }
        if keys::is_section(&path) {
            match v {
                Value::Dict(_, inner) => check_unknown_keys(inner, &path, layer, errors),
                _ => errors.push(ConfigError::new(
                    Some(&path),
                    Some(layer),
                    "must be a table of keys",
                )),
            }
            continue;
        }
        errors.push(unknown_key(&path, layer));
    }
}

/// SPEC 7.1: a token that is empty once surrounding whitespace is trimmed
/// is an error in whichever layer sets it, even one a later layer
/// overrides (`""` still means unset). Never quotes the value.
pub(super) fn check_blank_tokens(dict: &Dict, layer: &Layer, errors: &mut Vec<ConfigError>) {
    for key in ["listen.auth_token", "client.token"] {
        let mut value = None;
        let mut table = Some(dict);
        for (i, part) in key.split('.').enumerate() {
            match table.and_then(|t| t.get(part)) {
                Some(Value::Dict(_, inner)) => table = Some(inner),
                Some(v) if i == 1 => value = Some(v),
                _ => table = None,
            }
        }
        if let Some(Value::String(_, s)) = value
            && !s.is_empty()
            && s.trim().is_empty()
        {
            errors.push(ConfigError::new(
                Some(key),
                Some(layer),
                "is only whitespace, which is an empty token once trimmed: any client sending `Authorization: Bearer ` would match it; set a real token (e.g. `openssl rand -hex 32`) or leave the key unset",
            ));
        }
    }
}

pub(super) fn unknown_key(path: &str, layer: &Layer) -> ConfigError {
    let hint = match keys::nearest(path) {
        Some(n) => format!("; did you mean `{n}`?"),
        None => "; `oj config show` lists every key".into(),
    };
    ConfigError::new(Some(path), Some(layer), format!("unknown key{hint}"))
}

/// Checks one leaf's value against its kind; the message says what is valid
/// and quotes the value only when it is not a secret.
pub(super) fn check_kind(key: &keys::Key, value: &Value) -> Result<(), String> {
    let shown = || {
        if key.secret {
            String::new()
        } else {
            match value {
                Value::String(_, s) => format!(" {s:?}"),
                Value::Bool(_, b) => format!(" {b}"),
                Value::Num(..) => value
                    .to_i128()
                    .map(|i| format!(" {i}"))
                    .or_else(|| value.to_u128().map(|u| format!(" {u}")))
                    .or_else(|| value.to_f64().map(|f| format!(" {f}")))
                    .unwrap_or_default(),
                _ => String::new(),
            }
        }
    };
    let invalid = |extra: &str| {
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(" ({extra})")
        };
        Err(format!(
            "invalid value{}{extra}; expected {}",
            shown(),
            keys::describe(key.kind)
        ))
    };
    if key.optional
        && let Value::String(_, s) = value
        && s.is_empty()
    {
        return Ok(());
    }
    match key.kind {
        Kind::Bool => match value {
            Value::Bool(..) => Ok(()),
            _ => invalid(""),
        },
        Kind::Int { min } => match value
            .to_i128()
            .or_else(|| value.to_u128().and_then(|u| i128::try_from(u).ok()))
        {
            Some(i) if i >= min as i128 && i <= u32::MAX as i128 * 4096 => Ok(()),
            _ => invalid(""),
        },
        Kind::Str | Kind::Path => match value {
            Value::String(_, s) if !s.is_empty() => Ok(()),
            Value::String(..) => invalid("must not be empty"),
            _ => invalid(""),
        },
        Kind::Duration => match value {
            Value::String(_, s) => match humantime::parse_duration(s) {
                Ok(_) => Ok(()),
                Err(e) => invalid(&e.to_string()),
            },
            _ => invalid("durations are strings with a unit"),
        },
        Kind::Quantity => {
            let text = match value {
                Value::String(_, s) => s.clone(),
                Value::Num(..) => value
                    .to_i128()
                    .map(|i| i.to_string())
                    .or_else(|| value.to_u128().map(|u| u.to_string()))
                    .or_else(|| value.to_f64().map(|f| f.to_string()))
                    .unwrap_or_default(),
                _ => return invalid(""),
            };
            text.parse::<crate::Quantity>()
                .map(|_| ())
                .or_else(|_| invalid(""))
        }
        Kind::HostPort => match value {
            Value::String(_, s) => validate::host_port(s).or_else(|e| invalid(&e)),
            _ => invalid(""),
        },
        Kind::Url => match value {
            Value::String(_, s) => validate::url(key.name, s).or_else(|e| invalid(&e)),
            _ => invalid(""),
        },
        Kind::Enum(values) => match value {
            Value::String(_, s) if values.contains(&s.as_str()) => Ok(()),
            _ => invalid(""),
        },
        Kind::StrArray => match value {
            Value::Array(_, items) if items.iter().all(|i| matches!(i, Value::String(..))) => {
                Ok(())
            }
            _ => invalid(""),
        },
        Kind::EnumArray(values) => match value {
            Value::Array(_, items) => {
                for i in items {
                    match i {
                        Value::String(_, s) if values.contains(&s.as_str()) => {}
                        Value::String(_, s) => {
                            return invalid(&format!("{s:?} is not one of them"));
                        }
                        _ => return invalid(""),
                    }
                }
                Ok(())
            }
            _ => invalid(""),
        },
        Kind::StrTable => match value {
            Value::Dict(_, d) if d.values().all(|v| matches!(v, Value::String(..))) => Ok(()),
            _ => invalid(""),
        },
        Kind::Table => match value {
            Value::Dict(..) => Ok(()),
            _ => invalid(""),
        },
        Kind::Tolerations => match value.deserialize::<Vec<crate::k8s_syntax::Toleration>>() {
            Ok(_) => Ok(()),
            Err(e) => invalid(&e.to_string()),
        },
    }
}
