//! `oj`'s configuration: one typed [`RuntimeConfig`] merged from compiled
//! defaults, a built-in or user profile, config files, `OJ_*` environment
//! variables and `--set` flags, with the layer of every value remembered.
//!
//! Parse, then build, then run: this crate only parses and validates what
//! the layers say. Checks that need the machine (certificates, the state
//! directory, D-Bus) belong to the subsystems and run in `oj config check`.

pub mod cron;
mod defaults;
pub mod duration_text;
mod environment;
mod error;
pub mod excerpt;
pub mod inspect;
pub mod int_words;
pub mod k8s_syntax;
pub mod keys;
mod layer;
mod load;
mod model;
pub mod named;
mod quantity;
pub mod render;
mod schema;
mod secret;
mod validate;

pub use defaults::BuiltinProfile;
pub use environment::Environment;
pub use error::{ConfigError, ConfigErrors};
pub use layer::{Flag, Layer, LayerRecord, UnknownLayer};
pub use load::{
    ALIASES, LoadOptions, Loaded, OJ_CONFIG, OJ_PROFILE, ProfileInfo, STEP_VARIABLES, Tolerated,
    accepted_variables, default_config_file, list_profiles, load, load_tolerant, nearest_variable,
    parse_toml, user_profile_dirs,
};
pub use model::*;
pub use quantity::{QUANTITY_PATTERN, Quantity, QuantityError};
pub use secret::{MIN_TOKEN_BYTES, MIN_WEBHOOK_KEY_BYTES, REDACTED, Secret, webhook_signing_key};

pub use k8s_syntax::Toleration;
pub use schema::json_schema;
