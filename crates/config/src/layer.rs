//! Provenance: which layer set a value. A [`Layer`] is typed so that code
//! deciding on provenance (is it the user's own setting? an environment
//! variable the client may ignore?) matches on a variant instead of parsing
//! a name back. Its `Display` is the name every output shows (`oj config
//! show --sources`, `explain`, error messages, `GET /v1/config`), and it
//! serialises as that same string.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use figment::value::{Dict, Value};

use crate::keys::{self, Kind};

/// One layer of the merge, or what selected the profile. Precedence, lowest
/// first: default < profile < file < env < flag; a derived value sits above
/// the layer it was derived from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum Layer {
    /// The compiled defaults (`default`). As a profile's source: nothing
    /// selected it, so the fallback applied.
    #[default]
    Default,
    /// A built-in or user profile (`profile NAME`).
    Profile(String),
    /// A config file (`file PATH`, the path as read).
    File(PathBuf),
    /// One environment variable (`env VAR`).
    Env(String),
    /// A command-line flag (`flag --set`, `flag --profile`, `flag --config`).
    Flag(Flag),
    /// A value a rule derived from another key
    /// (`derived from notify.webhook.url (env OJ_NOTIFY_WEBHOOK_URL)`).
    Derived {
        /// The key whose value caused it.
        key: String,
        /// The layer that set that key.
        from: Box<Layer>,
    },
}

/// What a key no layer set reports (`default`), to lend where a `&Layer`
/// is asked for.
pub(crate) static DEFAULT_LAYER: Layer = Layer::Default;

/// The command-line flags that are a source of configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flag {
    /// `--set KEY=VALUE`: every `--set` is its own layer of this name.
    Set,
    /// `--profile NAME`: selects the profile.
    Profile,
    /// `--config FILE`: names a file (the file is its own layer).
    Config,
}

impl Flag {
    /// The flag as typed.
    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Set => "--set",
            Flag::Profile => "--profile",
            Flag::Config => "--config",
        }
    }
}

impl Layer {
    /// A layer the user wrote for this run or machine (a file, a variable,
    /// a flag), as against what oj ships (defaults, profiles) or derives.
    pub fn is_user(&self) -> bool {
        matches!(self, Layer::File(_) | Layer::Env(_) | Layer::Flag(_))
    }

    /// `env VAR`.
    pub fn env(var: impl Into<String>) -> Layer {
        Layer::Env(var.into())
    }

    /// `profile NAME`.
    pub fn profile(name: impl Into<String>) -> Layer {
        Layer::Profile(name.into())
    }

    /// `file PATH`.
    pub fn file(path: impl Into<PathBuf>) -> Layer {
        Layer::File(path.into())
    }
}

impl Layer {
    fn write_name(&self, out: &mut impl fmt::Write) -> fmt::Result {
        match self {
            Layer::Default => out.write_str("default"),
            Layer::Profile(name) => write!(out, "profile {name}"),
            Layer::File(path) => write!(out, "file {}", path.display()),
            Layer::Env(var) => write!(out, "env {var}"),
            Layer::Flag(flag) => write!(out, "flag {}", flag.as_str()),
            Layer::Derived { key, from } => {
                write!(out, "derived from {key} (")?;
                from.write_name(out)?;
                out.write_char(')')
            }
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:<40}` in `oj config explain` pads the whole name.
        if f.width().is_some() {
            let mut name = String::new();
            self.write_name(&mut name)?;
            return f.pad(&name);
        }
        self.write_name(f)
    }
}

/// A name that is not one [`Layer`] displays as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a configuration layer (default, profile NAME, file PATH, env VAR, flag --set…)"
)]
pub struct UnknownLayer(pub String);

impl FromStr for Layer {
    type Err = UnknownLayer;

    /// The inverse of `Display`, for layer names that crossed the wire
    /// (`GET /v1/config` gives a client the daemon's sources).
    fn from_str(s: &str) -> Result<Layer, UnknownLayer> {
        let unknown = || UnknownLayer(s.to_string());
        if s == "default" {
            return Ok(Layer::Default);
        }
        let (kind, rest) = s.split_once(' ').ok_or_else(unknown)?;
        if rest.is_empty() {
            return Err(unknown());
        }
        match kind {
            "profile" => Ok(Layer::Profile(rest.to_string())),
            "file" => Ok(Layer::File(PathBuf::from(rest))),
            "env" => Ok(Layer::Env(rest.to_string())),
            "flag" => match rest {
                "--set" => Ok(Layer::Flag(Flag::Set)),
                "--profile" => Ok(Layer::Flag(Flag::Profile)),
                "--config" => Ok(Layer::Flag(Flag::Config)),
                _ => Err(unknown()),
            },
            "derived" => {
                // A key has no spaces, so the first " (" ends it.
                let (key, from) = rest
                    .strip_prefix("from ")
                    .and_then(|r| r.split_once(" ("))
                    .and_then(|(k, f)| Some((k, f.strip_suffix(')')?)))
                    .ok_or_else(unknown)?;
                Ok(Layer::Derived {
                    key: key.to_string(),
                    from: Box::new(from.parse().map_err(|_| unknown())?),
                })
            }
            _ => Err(unknown()),
        }
    }
}

impl serde::Serialize for Layer {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Layer {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Layer, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Compares the name as shown (`loaded.source(key) == "env OJ_X"`).
impl PartialEq<str> for Layer {
    fn eq(&self, other: &str) -> bool {
        let name = self.to_string();
        name == other
    }
}

impl PartialEq<&str> for Layer {
    fn eq(&self, other: &&str) -> bool {
        self == *other
    }
}

impl PartialEq<String> for Layer {
    fn eq(&self, other: &String) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<String> for &Layer {
    fn eq(&self, other: &String) -> bool {
        *self == other.as_str()
    }
}

/// One layer as it was read: the leaves it sets (dotted keys, paths already
/// resolved) and, for paths that were rewritten, the value as written. The
/// leaves are listed when first asked for: a client command never asks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerRecord {
    pub layer: Layer,
    dict: Dict,
    values: std::sync::OnceLock<BTreeMap<String, serde_json::Value>>,
    pub written: BTreeMap<String, String>,
}

impl LayerRecord {
    /// The record of a layer; its leaves are listed on first use.
    pub(crate) fn new(layer: Layer, dict: &Dict, written: BTreeMap<String, String>) -> Self {
        LayerRecord {
            layer,
            dict: dict.clone(),
            values: std::sync::OnceLock::new(),
            written,
        }
    }

    /// Every leaf this layer sets, by dotted key.
    pub fn values(&self) -> &BTreeMap<String, serde_json::Value> {
        self.values.get_or_init(|| leaves(&self.dict))
    }
}

/// The leaves of a layer's tree by dotted key; a free-form table's entries
/// are leaves of their own.
fn leaves(dict: &Dict) -> BTreeMap<String, serde_json::Value> {
    fn walk(prefix: &str, dict: &Dict, out: &mut BTreeMap<String, serde_json::Value>) {
        for (k, v) in dict {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Dict(_, inner)
                    if keys::is_section(&path)
                        || keys::find(&path).is_some_and(|k| k.kind == Kind::StrTable) =>
                {
                    walk(&path, inner, out)
                }
                other => {
                    out.insert(path, serde_json::to_value(other).unwrap_or_default());
                }
            }
        }
    }
    let mut values = BTreeMap::new();
    walk("", dict, &mut values);
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<(Layer, &'static str)> {
        vec![
            (Layer::Default, "default"),
            (Layer::profile("kubernetes"), "profile kubernetes"),
            (Layer::profile("ci-big"), "profile ci-big"),
            (
                Layer::file("/etc/oj/config (copy).toml"),
                "file /etc/oj/config (copy).toml",
            ),
            (Layer::env("OJ_LOG__LEVEL"), "env OJ_LOG__LEVEL"),
            (Layer::Flag(Flag::Set), "flag --set"),
            (Layer::Flag(Flag::Profile), "flag --profile"),
            (Layer::Flag(Flag::Config), "flag --config"),
            (
                Layer::Derived {
                    key: "notify.webhook.url".into(),
                    from: Box::new(Layer::env("OJ_NOTIFY_WEBHOOK_URL")),
                },
                "derived from notify.webhook.url (env OJ_NOTIFY_WEBHOOK_URL)",
            ),
            (
                Layer::Derived {
                    key: "notify.webhook.url".into(),
                    from: Box::new(Layer::file("/tmp/a (b)/c.toml")),
                },
                "derived from notify.webhook.url (file /tmp/a (b)/c.toml)",
            ),
        ]
    }

    #[test]
    fn display_is_the_name_every_output_shows_and_parses_back() {
        for (layer, name) in every_kind() {
            assert_eq!(layer.to_string(), name);
            assert_eq!(name.parse::<Layer>(), Ok(layer.clone()), "{name}");
            assert_eq!(layer, name);
        }
    }

    #[test]
    fn serialises_as_its_name_and_back() {
        for (layer, name) in every_kind() {
            let json = serde_json::to_value(&layer).unwrap();
            assert_eq!(json, serde_json::Value::String(name.into()));
            assert_eq!(serde_json::from_value::<Layer>(json).unwrap(), layer);
        }
        let sources: BTreeMap<String, Layer> =
            [("log.level".to_string(), Layer::env("OJ_LOG__LEVEL"))].into();
        assert_eq!(
            serde_json::to_string(&sources).unwrap(),
            r#"{"log.level":"env OJ_LOG__LEVEL"}"#
        );
    }

    #[test]
    fn names_that_are_no_layer_are_refused() {
        for bad in [
            "",
            "defaults",
            "env",
            "env ",
            "flag --verbose",
            "derived from x",
            "derived from x (nonsense)",
            "vault secret/x",
        ] {
            assert!(bad.parse::<Layer>().is_err(), "{bad:?}");
            assert!(
                serde_json::from_value::<Layer>(bad.into()).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn width_pads_the_whole_name() {
        assert_eq!(format!("{:<14}|", Layer::env("OJ_X")), "env OJ_X      |");
        assert_eq!(format!("{:<3}|", Layer::Default), "default|");
    }

    #[test]
    fn only_files_variables_and_flags_are_the_users_own() {
        let user: Vec<bool> = every_kind().iter().map(|(l, _)| l.is_user()).collect();
        assert_eq!(
            user,
            [
                false, false, false, true, true, true, true, true, false, false
            ]
        );
    }
}
