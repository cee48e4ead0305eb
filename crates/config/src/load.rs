//! The one function that owns precedence: [`load`] merges compiled
//! defaults < profile < files < environment < `--set` flags, remembers
//! which layer set every leaf (a typed [`Layer`]), and reports every
//! problem at once.
//!
//! Beside it: `profiles` (where profiles are and their `extends` chain),
//! `overrides` (the env and `--set` layers), `variables` (the `OJ_*` names
//! that are no key), `leaf_checks` (per-layer and per-leaf checks), `paths`
//! (resolving path values) and `tolerate` (a load that survives its errors).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use crate::defaults::BuiltinProfile;
use crate::environment::Environment;
use crate::error::{ConfigError, ConfigErrors};
use crate::keys::{self, Kind};
use crate::layer::{DEFAULT_LAYER, Flag, Layer, LayerRecord};
use crate::model::RuntimeConfig;
use crate::named;
use crate::validate;

mod leaf_checks;
mod overrides;
mod paths;
mod profiles;
mod tolerate;
mod variables;

use leaf_checks::{check_blank_tokens, check_kind, check_unknown_keys};
use overrides::{env_layers, set_layers};
use paths::{remove_dotted, resolve_table_paths};
use profiles::resolve_profile_chain;
pub use profiles::{ProfileInfo, default_config_file, list_profiles, user_profile_dirs};
use tolerate::Skip;
pub use tolerate::{Tolerated, load_tolerant};
pub use variables::{
    ALIASES, OJ_CONFIG, OJ_PROFILE, STEP_VARIABLES, accepted_variables, nearest_variable,
};

/// What the command line adds to the environment.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--profile NAME`.
    pub profile: Option<String>,
    /// `--config FILE`, in order.
    pub config_files: Vec<PathBuf>,
    /// `--set KEY=VALUE`, in order.
    pub sets: Vec<String>,
}

/// The effective configuration and everything known about how it was made.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: RuntimeConfig,
    /// The selected profile (built-in or user).
    pub profile: String,
    /// The built-in profile at the root of the `extends` chain.
    pub base: BuiltinProfile,
    /// How the profile was selected (`flag --profile`, `env OJ_PROFILE`,
    /// `default` when nothing did, …).
    pub profile_source: Layer,
    /// The config files read, in order.
    pub files: Vec<PathBuf>,
    /// For every leaf key, the layer its value came from.
    pub sources: BTreeMap<String, Layer>,
    /// Every layer, lowest first, with what it sets (for `oj config explain`).
    pub layers: Vec<LayerRecord>,
    /// The options this was loaded with: a reload loads again with them.
    pub options: LoadOptions,
    /// The user profile files read (the `extends` chain).
    pub profile_files: Vec<PathBuf>,
}

impl Loaded {
    /// The layer that set `key` (`default` if unknown).
    pub fn source(&self, key: &str) -> &Layer {
        self.sources.get(key).unwrap_or(&DEFAULT_LAYER)
    }

    /// The value of a path key as written in its layer, when `~/` or a
    /// relative path was resolved (`None` when it was used as written).
    pub fn written(&self, key: &str) -> Option<&str> {
        let layer = self.source(key);
        self.layers
            .iter()
            .rev()
            .find(|l| l.layer == *layer && l.values().contains_key(key))
            .and_then(|l| l.written.get(key))
            .map(String::as_str)
    }

    /// Where a value came from, for error messages: the layer, and for a
    /// resolved path the value as written (`from file /etc/oj/config.toml,
    /// written "certs/tls.crt"`). The message itself shows the absolute path.
    pub fn origin(&self, key: &str) -> String {
        match self.written(key) {
            Some(w) => format!("from {}, written {w:?}", self.source(key)),
            None => format!("from {}", self.source(key)),
        }
    }
}

/// What one layer sets, as a figment provider; figment knows it by the
/// layer's name, and [`LayerNames`] turns that name back into the layer.
struct LayerData {
    layer: Layer,
    dict: Dict,
    /// Path values as written, where resolving changed them.
    written: BTreeMap<String, String>,
}

impl Provider for LayerData {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.layer.to_string())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// A parsed TOML source (profile or file) before merging.
struct Source {
    layer: Layer,
    table: toml::Table,
    /// The file it was read from (none for a built-in profile); relative
    /// paths in it are relative to its directory.
    path: Option<PathBuf>,
}

/// Loads the effective configuration. Reads config and profile files; does
/// not look at anything else on the machine (that is `check`'s job).
pub fn load(opts: &LoadOptions, env: &Environment) -> Result<Loaded, ConfigErrors> {
    load_with(opts, env, &Skip::default())
}

fn load_with(opts: &LoadOptions, env: &Environment, skip: &Skip) -> Result<Loaded, ConfigErrors> {
    let mut errors = Vec::new();

    // Explicit files: OJ_CONFIG (if set) and --config. They may select the profile.
    let oj_config: Option<Vec<PathBuf>> = env.vars.get(OJ_CONFIG).map(|v| {
        v.split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect()
    });
    let mut explicit: Vec<(PathBuf, Layer)> = Vec::new();
    for p in oj_config.iter().flatten() {
        explicit.push((p.clone(), Layer::env(OJ_CONFIG)));
    }
    for p in &opts.config_files {
        explicit.push((p.clone(), Layer::Flag(Flag::Config)));
    }
    let mut file_sources: Vec<(PathBuf, Source, Option<String>)> = Vec::new();
    for (written, how) in &explicit {
        let path = &env.absolute(written);
        if skip.files.contains(path) {
            continue;
        }
        match read_toml_file(path) {
            Ok(mut table) => {
                let profile = take_profile_key(&mut table, path, &mut errors);
                file_sources.push((
                    path.clone(),
                    Source {
                        layer: Layer::file(path),
                        table,
                        path: Some(path.clone()),
                    },
                    profile,
                ));
            }
            Err(e) => errors.push(ConfigError::new(
                None,
                Some(&Layer::file(path)),
                if path == written {
                    format!("{e} (named by {how})")
                } else {
                    format!(
                        "{e} (named by {how} as {:?})",
                        written.display().to_string()
                    )
                },
            )),
        }
    }

    // Profile selection, first without the default file (whose location
    // depends on the profile), then with it.
    let from_flag = opts
        .profile
        .clone()
        .filter(|p| !p.is_empty())
        .map(|p| (p, Layer::Flag(Flag::Profile)));
    let from_env = env
        .get(OJ_PROFILE)
        .map(|p| (p.to_string(), Layer::env(OJ_PROFILE)));
    let from_files = |files: &[(PathBuf, Source, Option<String>)]| {
        files
            .iter()
            .rev()
            .find_map(|(path, _, p)| p.clone().map(|p| (p, Layer::file(path))))
    };
    let from_k8s = env.get("KUBERNETES_SERVICE_HOST").map(|_| {
        (
            "kubernetes".to_string(),
            Layer::env("KUBERNETES_SERVICE_HOST"),
        )
    });
    let fallback = ("desktop".to_string(), Layer::Default);
    let preliminary = from_flag
        .clone()
        .or(from_env.clone())
        .or_else(|| from_files(&file_sources))
        .or(from_k8s.clone())
        .unwrap_or(fallback.clone());

    let mut files_read: Vec<PathBuf> = Vec::new();
    if oj_config.is_none() {
        let base_guess = resolve_profile_chain(&preliminary.0, env)
            .map(|(b, _)| b)
            .unwrap_or(BuiltinProfile::Desktop);
        if let Some(path) = default_config_file(env, base_guess)
            && path.is_file()
            && !skip.files.contains(&path)
        {
            match read_toml_file(&path) {
                Ok(mut table) => {
                    let profile = take_profile_key(&mut table, &path, &mut errors);
                    file_sources.insert(
                        0,
                        (
                            path.clone(),
                            Source {
                                layer: Layer::file(&path),
                                table,
                                path: Some(path.clone()),
                            },
                            profile,
                        ),
                    );
                }
                Err(e) => errors.push(ConfigError::new(None, Some(&Layer::file(&path)), e)),
            }
        }
    }
    files_read.extend(file_sources.iter().map(|(p, _, _)| p.clone()));

    let (profile, profile_source) = from_flag
        .or(from_env)
        .or_else(|| from_files(&file_sources))
        .or(from_k8s)
        .unwrap_or(fallback);

    let (base, user_profiles) = match resolve_profile_chain(&profile, env) {
        Ok(chain) => chain,
        Err(e) => {
            errors.push(ConfigError::new(Some("profile"), Some(&profile_source), e));
            return Err(ConfigErrors(errors));
        }
    };

    // Layers, lowest first.
    let mut sources: Vec<Source> = Vec::new();
    match toml::from_str::<toml::Table>(base.toml()) {
        Ok(table) => sources.push(Source {
            layer: Layer::profile(base.name()),
            table,
            path: None,
        }),
        Err(e) => errors.push(ConfigError::new(
            None,
            Some(&Layer::profile(base.name())),
            format!("built-in profile is broken: {e}"),
        )),
    }
    let profile_files: Vec<PathBuf> = user_profiles
        .iter()
        .filter_map(|p| p.path.clone())
        .collect();
    for up in user_profiles {
        sources.push(up);
    }
    for (_, src, _) in file_sources {
        sources.push(src);
    }

    let mut defaults = RuntimeConfig::defaults(env, base);
    defaults.daemon.state_dir = env.absolute(&defaults.daemon.state_dir);
    let default_dict = match Value::serialize(&defaults) {
        Ok(Value::Dict(_, d)) => d,
        _ => Dict::new(),
    };
    let mut records = vec![LayerRecord::new(
        Layer::Default,
        &default_dict,
        BTreeMap::new(),
    )];
    let mut figment = Figment::new().merge(LayerData {
        layer: Layer::Default,
        dict: default_dict,
        written: BTreeMap::new(),
    });

    for src in &mut sources {
        for key in &skip.keys {
            remove_dotted(&mut src.table, key);
        }
        let dir = src.path.as_deref().and_then(Path::parent);
        let written = resolve_table_paths(&mut src.table, dir, env);
        match Value::serialize(&src.table) {
            Ok(Value::Dict(_, dict)) => {
                check_unknown_keys(&dict, "", &src.layer, &mut errors);
                check_blank_tokens(&dict, &src.layer, &mut errors);
                records.push(LayerRecord::new(src.layer.clone(), &dict, written));
                figment = figment.merge(LayerData {
                    layer: src.layer.clone(),
                    dict,
                    written: BTreeMap::new(),
                });
            }
            _ => errors.push(ConfigError::new(
                None,
                Some(&src.layer),
                "is not a TOML table",
            )),
        }
    }

    let overrides = env_layers(env, skip, &mut errors)
        .into_iter()
        .chain(set_layers(&opts.sets, skip, env, &mut errors));
    for layer in overrides {
        check_blank_tokens(&layer.dict, &layer.layer, &mut errors);
        records.push(LayerRecord::new(
            layer.layer.clone(),
            &layer.dict,
            layer.written.clone(),
        ));
        figment = figment.merge(layer);
    }

    let mut names = LayerNames::of(&records);
    let (derived, derived_layer) = apply_derived_rules(figment, &names);
    figment = derived;
    if let Some(layer) = derived_layer {
        names.add(&layer.layer);
        records.push(LayerRecord::new(layer.layer, &layer.dict, BTreeMap::new()));
    }

    // Per-leaf type checks, so that every bad value is reported, not only the
    // first. One merged tree serves every lookup: figment's own `find_value`
    // merges all layers again on each call.
    let merged = Merged::of(&figment, &names);
    let mut leaf_sources = BTreeMap::new();
    check_table_names(&merged, &mut errors);
    for key in keys::KEYS {
        for name in named::instances(key.name, |table| merged.names_under(table)) {
            let value = merged.find(&name);
            if let Some(value) = value
                && let Err(msg) = check_kind(key, value)
            {
                errors.push(ConfigError::new(
                    Some(&name),
                    Some(merged.layer_of(value)),
                    msg,
                ));
            }
            if value.is_none()
                && named::is_pattern(key.name)
                && REQUIRED_IN_TABLE.contains(&key.name)
            {
                let table = name.rsplit_once('.').map_or(name.as_str(), |(t, _)| t);
                errors.push(ConfigError::new(
                    Some(&name),
                    Some(merged.layer(table)),
                    format!(
                        "is missing: every [{table}] needs it ({})",
                        keys::describe(key.kind)
                    ),
                ));
            }
            leaf_sources.insert(name.clone(), merged.layer(&name).clone());
        }
    }
    // Each entry of a free-form table (`notify.webhook.headers`,
    // `pods.labels`…) by its own value: an entry's name may hold dots.
    for key in keys::KEYS.iter().filter(|k| k.kind == Kind::StrTable) {
        if let Some(Value::Dict(_, entries)) = merged.find(key.name) {
            for (name, value) in entries {
                leaf_sources.insert(
                    format!("{}.{name}", key.name),
                    merged.layer_of(value).clone(),
                );
            }
        }
    }

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }

    let config: RuntimeConfig = match figment.extract() {
        Ok(c) => c,
        Err(e) => {
            for err in e {
                let key = (!err.path.is_empty()).then(|| err.path.join("."));
                let layer = err.metadata.as_ref().map(|m| names.get(&m.name));
                // figment's messages can quote the value: never for secrets.
                let message = match &key {
                    Some(k) if keys::is_secret(k) => "has an invalid value".to_string(),
                    _ => crate::int_words::figment_int_message(
                        key.as_deref()
                            .and_then(keys::find)
                            .and_then(|k| match k.kind {
                                keys::Kind::Int { min } => Some(min),
                                _ => None,
                            }),
                        &err.kind,
                    )
                    .unwrap_or_else(|| err.kind.to_string()),
                };
                errors.push(ConfigError::new(key.as_deref(), layer, message));
            }
            return Err(ConfigErrors(errors));
        }
    };

    let loaded = Loaded {
        config,
        profile,
        base,
        profile_source,
        files: files_read,
        sources: leaf_sources,
        layers: records,
        options: opts.clone(),
        profile_files,
    };
    validate::validate(&loaded, &mut errors);
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Reads and parses a TOML file; errors name the file, line and column.
fn read_toml_file(path: &Path) -> Result<toml::Table, String> {
    // A FIFO or a device would block the read (or never end): only a
    // regular file is read.
    if let Ok(m) = std::fs::metadata(path)
        && !m.is_file()
    {
        return Err(format!(
            "cannot read config file {}: not a regular file (a directory, FIFO or device); point at a TOML file",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    parse_toml(&text).map_err(|e| format!("invalid TOML in {}{e}", path.display()))
}

/// Parses TOML text; the error starts with `:LINE:COLUMN: ` when known.
pub fn parse_toml(text: &str) -> Result<toml::Table, String> {
    toml::from_str::<toml::Table>(text).map_err(|e| crate::excerpt::toml_error(text, &e))
}

/// Removes the top-level `profile = "…"` of a config file and returns it.
fn take_profile_key(
    table: &mut toml::Table,
    path: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    match table.remove("profile") {
        None => None,
        Some(toml::Value::String(s)) => Some(s),
        Some(_) => {
            errors.push(ConfigError::new(
                Some("profile"),
                Some(&Layer::file(path)),
                "must be a string naming a profile",
            ));
            None
        }
    }
}

fn nest(key: &str, value: Value) -> Dict {
    figment::util::nest(key, value)
        .into_dict()
        .unwrap_or_default()
}

/// The layers merged so far by the name figment knows each by (its
/// metadata name), so that a value's tag leads back to a typed [`Layer`].
struct LayerNames(HashMap<String, Layer>);

impl LayerNames {
    fn of(records: &[LayerRecord]) -> Self {
        LayerNames(
            records
                .iter()
                .map(|r| (r.layer.to_string(), r.layer.clone()))
                .collect(),
        )
    }

    fn add(&mut self, layer: &Layer) {
        self.0.insert(layer.to_string(), layer.clone());
    }

    /// The layer figment calls `name` (`default` for one it made up).
    fn get(&self, name: &str) -> &Layer {
        self.0.get(name).unwrap_or(&DEFAULT_LAYER)
    }
}

/// The merged value tree of a figment, computed once, and the layer that
/// set each value (by figment's metadata).
struct Merged<'a> {
    figment: &'a Figment,
    names: &'a LayerNames,
    root: Value,
}

impl<'a> Merged<'a> {
    fn of(figment: &'a Figment, names: &'a LayerNames) -> Self {
        let dict = figment
            .data()
            .ok()
            .and_then(|mut m| m.remove(&Profile::Default))
            .unwrap_or_default();
        Merged {
            figment,
            names,
            root: Value::Dict(figment::value::Tag::Default, dict),
        }
    }

    /// The value at a dotted key.
    fn find(&self, key: &str) -> Option<&Value> {
        key.split('.').try_fold(&self.root, |v, part| match v {
            Value::Dict(_, d) => d.get(part),
            _ => None,
        })
    }

    fn layer_of(&self, value: &Value) -> &'a Layer {
        let names = self.names;
        match self.figment.get_metadata(value.tag()) {
            Some(m) => names.get(&m.name),
            None => &DEFAULT_LAYER,
        }
    }

    /// The names of the entries of the table at a dotted key.
    fn names_under(&self, table: &str) -> Vec<String> {
        match self.find(table) {
            Some(Value::Dict(_, d)) => d.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// The layer that set a dotted key (`default` when none did).
    fn layer(&self, key: &str) -> &'a Layer {
        match self.find(key) {
            Some(v) => self.layer_of(v),
            None => &DEFAULT_LAYER,
        }
    }
}

/// Keys of a user-named table that have no default (a schedule without a
/// `cron` or a `job` means nothing).
const REQUIRED_IN_TABLE: &[&str] = &["schedules.*.cron", "schedules.*.job"];

/// The names users gave their queues and schedules follow one rule (they
/// appear in URLs, metrics labels and pod labels).
fn check_table_names(merged: &Merged, errors: &mut Vec<ConfigError>) {
    let mut tables: Vec<&str> = keys::KEYS
        .iter()
        .filter_map(|k| named::table_of(k.name))
        .collect();
    tables.dedup();
    for table in tables {
        for name in merged.names_under(table) {
            if !named::is_valid_name(&name) {
                let key = format!("{table}.{name}");
                errors.push(ConfigError::new(
                    Some(&key),
                    Some(merged.layer(&key)),
                    format!("{name:?} is not a valid name: use {}", named::NAME_RULE),
                ));
            }
        }
    }
}

/// §2.6: a webhook URL set by a file, env or flag switches a backend that
/// only a profile (or the default) chose to `webhook`. Returns the layer it
/// added, if any.
fn apply_derived_rules(figment: Figment, names: &LayerNames) -> (Figment, Option<LayerData>) {
    let merged = Merged::of(&figment, names);
    let url_layer = merged.layer("notify.webhook.url");
    let url_set =
        matches!(merged.find("notify.webhook.url"), Some(Value::String(_, s)) if !s.is_empty());
    let backend_layer = merged.layer("notify.backend");
    drop(merged);
    if url_set && url_layer.is_user() && !backend_layer.is_user() {
        let layer = LayerData {
            layer: Layer::Derived {
                key: "notify.webhook.url".into(),
                from: Box::new(url_layer.clone()),
            },
            dict: nest("notify.backend", Value::from("webhook".to_string())),
            written: BTreeMap::new(),
        };
        let merged = figment.merge(LayerData {
            layer: layer.layer.clone(),
            dict: layer.dict.clone(),
            written: BTreeMap::new(),
        });
        (merged, Some(layer))
    } else {
        (figment, None)
    }
}
