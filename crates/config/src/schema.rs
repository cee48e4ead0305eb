//! The JSON Schema (draft 2020-12) of a config file, for editors and CI.
//! The structure (sections, no unknown keys) comes from the typed
//! [`RuntimeConfig`] through schemars; every leaf comes from the key table
//! (`keys::KEYS`), so the schema knows what `oj config check` knows about
//! a single value — type, minimum, enum, duration, quantity and `host:port`
//! patterns — plus the description and the compiled default of every key,
//! whoever added the key. Rules across keys (requests above limits, lease
//! timings) are `check`'s alone.

use serde_json::{Map, Value, json};

use crate::defaults::BuiltinProfile;
use crate::environment::Environment;
use crate::keys::{self, Kind};
use crate::model::RuntimeConfig;
use crate::named;
use crate::quantity::QUANTITY_PATTERN;

/// Keys whose default depends on the machine: described, not defaulted.
const MACHINE_DEFAULTS: &[&str] = &["daemon.state_dir", "daemon.instance"];

/// The schema of a config file (or a user profile file): every section
/// optional, `profile` allowed at the top, `extends` and `description`
/// for user profiles.
pub fn json_schema() -> Value {
    let mut root = schemars::schema_for!(RuntimeConfig).to_value();
    let defs = root
        .as_object_mut()
        .and_then(|o| o.remove("$defs"))
        .unwrap_or(Value::Null);
    inline_refs(&mut root, &defs);
    relax_required(&mut root);
    let defaults = serde_json::to_value(RuntimeConfig::defaults(
        &Environment::default(),
        BuiltinProfile::Desktop,
    ))
    .unwrap_or(Value::Null);
    for key in keys::KEYS {
        let mut leaf = leaf_schema(key);
        if !MACHINE_DEFAULTS.contains(&key.name)
            && let Some(d) = crate::render::lookup(&defaults, key.name)
        {
            leaf.insert("default".into(), d.clone());
        }
        if let Some((_, d)) = keys::NAMED_DEFAULTS.iter().find(|(n, _)| *n == key.name)
            && let Ok(doc) = toml::from_str::<toml::Table>(&format!("v = {d}"))
            && let Some(v) = doc.get("v").and_then(|v| serde_json::to_value(v).ok())
        {
            leaf.insert("default".into(), v);
        }
        set_leaf(&mut root, key.name, Value::Object(leaf));
    }
    if let Some(props) = root.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert(
            "profile".into(),
            json!({
                "description": "Profile to use when neither --profile nor OJ_PROFILE is given: \"desktop\", \"kubernetes\" or a user profile.",
                "type": "string",
                "pattern": "^[A-Za-z0-9_-]+$"
            }),
        );
        props.insert(
            "extends".into(),
            json!({
                "description": "User profile files only: the profile this one builds on (\"desktop\", \"kubernetes\" or another user profile).",
                "type": "string",
                "pattern": "^[A-Za-z0-9_-]+$"
            }),
        );
        props.insert(
            "description".into(),
            json!({
                "description": "User profile files only: one line shown by `oj config profiles`.",
                "type": "string"
            }),
        );
    }
    if let Some(obj) = root.as_object_mut() {
        obj.insert("title".into(), "oj config file".into());
        obj.insert(
            "description".into(),
            "Configuration of oj (config.toml, or a user profile). Every key is optional; unset keys keep the profile's value.".into(),
        );
    }
    root
}

/// The schema of one value of `key`, from its kind.
fn leaf_schema(key: &keys::Key) -> Map<String, Value> {
    let string_with = |pattern: String| json!({ "type": "string", "pattern": pattern });
    let unset_or = |pattern: &str| {
        if key.optional {
            format!("^$|{pattern}")
        } else {
            pattern.to_string()
        }
    };
    let value = match key.kind {
        Kind::Bool => json!({ "type": "boolean" }),
        Kind::Int { min } => json!({
            "type": "integer",
            "minimum": min,
            "maximum": u32::MAX as i64
        }),
        Kind::Str | Kind::Path => {
            if key.optional {
                json!({ "type": "string" })
            } else {
                json!({ "type": "string", "minLength": 1 })
            }
        }
        Kind::Duration => string_with(unset_or(keys::DURATION_PATTERN)),
        Kind::Quantity => json!({
            "anyOf": [
                { "type": "string", "pattern": QUANTITY_PATTERN },
                { "type": "number", "minimum": 0 }
            ]
        }),
        Kind::HostPort => string_with(unset_or(keys::HOST_PORT_PATTERN)),
        Kind::Url => {
            let schemes = if key.name == "client.url" {
                "(unix://.+|https?://[^/].*)"
            } else {
                "https?://[^/].*"
            };
            string_with(unset_or(&format!("^{schemes}$")))
        }
        Kind::Enum(values) => json!({ "type": "string", "enum": values }),
        Kind::StrArray => json!({
            "type": "array",
            "items": { "type": "string", "minLength": 1 },
            "minItems": 1
        }),
        Kind::EnumArray(values) => json!({
            "type": "array",
            "items": { "type": "string", "enum": values },
            "uniqueItems": true
        }),
        Kind::StrTable => json!({
            "type": "object",
            "additionalProperties": { "type": "string" }
        }),
        Kind::Table => json!({ "type": "object" }),
    };
    let mut map = match value {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let mut description = key.description.to_string();
    if key.optional && key.kind != Kind::StrTable {
        description.push_str(". Optional: \"\" unsets it");
    }
    if key.secret {
        description.push_str(". Secret: printed as \"<redacted>\"");
    }
    description.push_str(&format!(". Env: {}", keys::env_var_name(key.name)));
    map.insert("description".into(), description.into());
    map
}

/// Replaces `root.properties.a.properties.b` for the dotted key `a.b`.
fn set_leaf(root: &mut Value, key: &str, leaf: Value) {
    let mut node = root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if *part == named::WILDCARD {
            // A user-named table: its entries are `additionalProperties`,
            // their names follow the queue-name rule.
            if let Some(obj) = node.as_object_mut() {
                obj.insert(
                    "propertyNames".into(),
                    json!({ "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$" }),
                );
            }
            node = match node.get_mut("additionalProperties") {
                Some(n) => n,
                None => return,
            };
            continue;
        }
        let Some(props) = node.get_mut("properties").and_then(Value::as_object_mut) else {
            return;
        };
        if i + 1 == parts.len() {
            props.insert(part.to_string(), leaf);
            return;
        }
        node = match props.get_mut(*part) {
            Some(n) => n,
            None => return,
        };
    }
}

/// Replaces every `{"$ref": "#/$defs/X"}` with a copy of `X`, so each key
/// gets its own node (requests and limits share one Rust type but not one
/// default).
fn inline_refs(v: &mut Value, defs: &Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref")
                && let Some(name) = r.strip_prefix("#/$defs/")
                && let Some(def) = defs.get(name)
            {
                let mut def = def.clone();
                inline_refs(&mut def, defs);
                map.remove("$ref");
                if let Value::Object(d) = def {
                    for (k, val) in d {
                        map.entry(k).or_insert(val);
                    }
                }
            }
            for (_, child) in map.iter_mut() {
                inline_refs(child, defs);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| inline_refs(i, defs)),
        _ => {}
    }
}

/// Drops `required` everywhere: a config file is a partial overlay.
fn relax_required(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("required");
            for (_, child) in map.iter_mut() {
                relax_required(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(relax_required),
        _ => {}
    }
}
