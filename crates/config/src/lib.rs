//! `oj`'s configuration: one typed [`RuntimeConfig`] merged from compiled
//! defaults, a built-in or user profile, config files, `OJ_*` environment
//! variables and `--set` flags, with the layer of every value remembered.
//!
//! Parse, then build, then run: this crate only parses and validates what
//! the layers say. Checks that need the machine (certificates, the state
//! directory, D-Bus) belong to the subsystems and run in `oj config check`.

mod defaults;
mod environment;
mod error;
pub mod inspect;
pub mod keys;
mod load;
mod model;
mod quantity;
pub mod render;
mod secret;
mod validate;

pub use defaults::BuiltinProfile;
pub use environment::Environment;
pub use error::{ConfigError, ConfigErrors};
pub use load::{
    LayerRecord, STEP_VARIABLES, Tolerated, accepted_variables, load_tolerant, nearest_variable,
    ALIASES, LoadOptions, Loaded, OJ_CONFIG, OJ_PROFILE, ProfileInfo, default_config_file,
    list_profiles, load, parse_toml, user_profile_dirs,
};
pub use model::*;
pub use quantity::{QUANTITY_PATTERN, Quantity, QuantityError};
pub use secret::{REDACTED, Secret};

/// The JSON Schema (draft 2020-12) of a config file: every section optional,
/// since a file sets only what it changes; `profile` allowed at the top.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(RuntimeConfig);
    let mut value = schema.to_value();
    relax_required(&mut value);
    if let Some(props) = value.get_mut("properties").and_then(|p| p.as_object_mut()) {
        props.insert(
            "profile".into(),
            serde_json::json!({
                "description": "Profile to use when neither --profile nor OJ_PROFILE is given: \"desktop\", \"kubernetes\" or a user profile.",
                "type": "string"
            }),
        );
    }
    if let Some(obj) = value.as_object_mut() {
        obj.insert("title".into(), "oj config file".into());
        obj.insert(
            "description".into(),
            "Configuration of oj (config.toml). Every key is optional; unset keys keep the profile's value.".into(),
        );
    }
    value
}

/// Drops `required` everywhere: a config file is a partial overlay.
fn relax_required(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.remove("required");
            for (_, child) in map.iter_mut() {
                relax_required(child);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(relax_required),
        _ => {}
    }
}
