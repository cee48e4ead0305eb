//! The one function that owns precedence: [`load`] merges compiled
//! defaults < profile < files < environment < `--set` flags, remembers
//! which layer set every leaf, and reports every problem at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use crate::defaults::BuiltinProfile;
use crate::environment::Environment;
use crate::error::{ConfigError, ConfigErrors};
use crate::keys::{self, Kind};
use crate::model::RuntimeConfig;
use crate::named;
use crate::validate;

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

/// Where a profile came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileInfo {
    pub name: String,
    pub description: String,
    /// `None` for built-in profiles.
    pub path: Option<PathBuf>,
    pub extends: Option<String>,
}

/// One layer as it was read: the leaves it sets (dotted keys, paths already
/// resolved) and, for paths that were rewritten, the value as written. The
/// leaves are listed when first asked for: a client command never asks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerRecord {
    pub name: String,
    dict: Dict,
    values: std::sync::OnceLock<BTreeMap<String, serde_json::Value>>,
    pub written: BTreeMap<String, String>,
}

impl LayerRecord {
    /// Every leaf this layer sets, by dotted key.
    pub fn values(&self) -> &BTreeMap<String, serde_json::Value> {
        self.values.get_or_init(|| leaves(&self.dict))
    }
}

/// The effective configuration and everything known about how it was made.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: RuntimeConfig,
    /// The selected profile (built-in or user).
    pub profile: String,
    /// The built-in profile at the root of the `extends` chain.
    pub base: BuiltinProfile,
    /// How the profile was selected (`--profile`, `env OJ_PROFILE`, …).
    pub profile_source: String,
    /// The config files read, in order.
    pub files: Vec<PathBuf>,
    /// For every leaf key, the layer its value came from.
    pub sources: BTreeMap<String, String>,
    /// Every layer, lowest first, with what it sets (for `oj config explain`).
    pub layers: Vec<LayerRecord>,
    /// The options this was loaded with: a reload loads again with them.
    pub options: LoadOptions,
    /// The user profile files read (the `extends` chain).
    pub profile_files: Vec<PathBuf>,
}

impl Loaded {
    /// The layer that set `key` (`default` if unknown).
    pub fn source(&self, key: &str) -> &str {
        self.sources
            .get(key)
            .map(String::as_str)
            .unwrap_or("default")
    }

    /// The value of a path key as written in its layer, when `~/` or a
    /// relative path was resolved (`None` when it was used as written).
    pub fn written(&self, key: &str) -> Option<&str> {
        let layer = self.source(key);
        self.layers
            .iter()
            .rev()
            .find(|l| l.name == layer && l.values().contains_key(key))
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

/// What a lenient load leaves out so the rest can load: keys (in every
/// layer), environment variables and files.
#[derive(Debug, Clone, Default)]
struct Skip {
    keys: std::collections::BTreeSet<String>,
    vars: std::collections::BTreeSet<String>,
    layers: std::collections::BTreeSet<String>,
}

impl Skip {
    /// Adds what `e` is about; false when there is nothing to leave out.
    fn add(&mut self, e: &ConfigError) -> bool {
        match (&e.key, &e.layer) {
            (Some(k), _) if k != "profile" => self.keys.insert(k.clone()),
            (None, Some(l)) if l.starts_with("env ") => {
                self.vars.insert(l.trim_start_matches("env ").to_string())
            }
            (None, Some(l)) if l.starts_with("file ") => self.layers.insert(l.clone()),
            _ => false,
        }
    }

    /// Adds the section of the key `e` is about.
    fn widen(&mut self, e: &ConfigError) -> bool {
        match e.key.as_deref().and_then(|k| k.rsplit_once('.')) {
            Some((section, _)) => self.keys.insert(section.to_string()),
            None => false,
        }
    }

    fn skips_key(&self, key: &str) -> bool {
        self.keys.iter().any(|k| {
            key == k || key.starts_with(k.as_str()) && key.as_bytes().get(k.len()) == Some(&b'.')
        })
    }
}

/// A configuration loaded around its errors: what could be loaded with the
/// offending values left out (each falls back to the layer below), and the
/// errors that were left out.
#[derive(Debug, Clone)]
pub struct Tolerated {
    pub loaded: Loaded,
    pub ignored: Vec<ConfigError>,
}

/// Loads like [`load`]; when it fails and `tolerate` accepts every error,
/// loads again without the offending keys, variables or files, and returns
/// the result with the errors it ignored. Errors `tolerate` refuses (or that
/// nothing can be left out for, like an unknown profile) are returned.
pub fn load_tolerant(
    opts: &LoadOptions,
    env: &Environment,
    tolerate: impl Fn(&ConfigError) -> bool,
) -> Result<Tolerated, ConfigErrors> {
    let mut skip = Skip::default();
    let mut ignored: Vec<ConfigError> = Vec::new();
    loop {
        match load_with(opts, env, &skip) {
            Ok(loaded) => return Ok(Tolerated { loaded, ignored }),
            Err(errors) => {
                if !errors.0.iter().all(&tolerate) {
                    let mut all = ignored;
                    all.extend(errors.0);
                    return Err(ConfigErrors(all));
                }
                let mut progress = false;
                for e in &errors.0 {
                    progress |= skip.add(e);
                }
                if !progress {
                    // A rule across keys (`client.cert` needs `client.key`):
                    // leave out the section the key is in.
                    for e in &errors.0 {
                        progress |= skip.widen(e);
                    }
                }
                for e in errors.0 {
                    if !ignored.contains(&e) {
                        ignored.push(e);
                    }
                }
                if !progress {
                    return Err(ConfigErrors(ignored));
                }
            }
        }
    }
}

/// Names of the environment variables that select things rather than set keys.
pub const OJ_PROFILE: &str = "OJ_PROFILE";
pub const OJ_CONFIG: &str = "OJ_CONFIG";

/// Aliases kept for existing deployments: variable, key, description.
pub const ALIASES: &[(&str, &str, &str)] = &[
    (
        "OJ_STATE_DIR",
        "daemon.state_dir",
        "alias of OJ_DAEMON__STATE_DIR",
    ),
    (
        "OJ_TCP_PORT",
        "listen.tcp",
        "N sets listen.tcp = \"0.0.0.0:N\"",
    ),
    (
        "OJ_AUTH_TOKEN",
        "listen.auth_token",
        "alias of OJ_LISTEN__AUTH_TOKEN",
    ),
    (
        "OJ_AUTH_TOKEN_FILE",
        "listen.auth_token_file",
        "alias of OJ_LISTEN__AUTH_TOKEN_FILE",
    ),
    (
        "OJ_NOTIFY_WEBHOOK_URL",
        "notify.webhook.url",
        "alias of OJ_NOTIFY__WEBHOOK__URL (and so notify.backend = \"webhook\")",
    ),
    (
        "OJ_LOG_STDOUT",
        "log.stdout",
        "1/true sets log.stdout = true",
    ),
    (
        "OJ_DRAIN_TIMEOUT_MS",
        "shutdown.drain_timeout",
        "N sets shutdown.drain_timeout = N ms",
    ),
    ("OJ_DAEMON_URL", "client.url", "alias of OJ_CLIENT__URL"),
];

/// A figment provider for one named layer.
struct Layer {
    name: String,
    dict: Dict,
    /// Path values as written, where resolving changed them.
    written: BTreeMap<String, String>,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// A parsed TOML source (profile or file) before merging.
struct Source {
    layer: String,
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
    let mut explicit: Vec<(PathBuf, String)> = Vec::new();
    for p in oj_config.iter().flatten() {
        explicit.push((p.clone(), format!("env {OJ_CONFIG}")));
    }
    for p in &opts.config_files {
        explicit.push((p.clone(), "flag --config".into()));
    }
    let mut file_sources: Vec<(PathBuf, Source, Option<String>)> = Vec::new();
    for (written, how) in &explicit {
        let path = &env.absolute(written);
        if skip.layers.contains(&file_layer(path)) {
            continue;
        }
        match read_toml_file(path) {
            Ok(mut table) => {
                let profile = take_profile_key(&mut table, path, &mut errors);
                file_sources.push((
                    path.clone(),
                    Source {
                        layer: file_layer(path),
                        table,
                        path: Some(path.clone()),
                    },
                    profile,
                ));
            }
            Err(e) => errors.push(ConfigError::new(
                None,
                Some(&file_layer(path)),
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
        .map(|p| (p, "flag --profile".to_string()));
    let from_env = env
        .get(OJ_PROFILE)
        .map(|p| (p.to_string(), format!("env {OJ_PROFILE}")));
    let from_files = |files: &[(PathBuf, Source, Option<String>)]| {
        files
            .iter()
            .rev()
            .find_map(|(path, _, p)| p.clone().map(|p| (p, format!("file {}", path.display()))))
    };
    let from_k8s = env.get("KUBERNETES_SERVICE_HOST").map(|_| {
        (
            "kubernetes".to_string(),
            "env KUBERNETES_SERVICE_HOST".to_string(),
        )
    });
    let fallback = ("desktop".to_string(), "default".to_string());
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
            && !skip.layers.contains(&file_layer(&path))
        {
            match read_toml_file(&path) {
                Ok(mut table) => {
                    let profile = take_profile_key(&mut table, &path, &mut errors);
                    file_sources.insert(
                        0,
                        (
                            path.clone(),
                            Source {
                                layer: file_layer(&path),
                                table,
                                path: Some(path.clone()),
                            },
                            profile,
                        ),
                    );
                }
                Err(e) => errors.push(ConfigError::new(None, Some(&file_layer(&path)), e)),
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
            layer: format!("profile {}", base.name()),
            table,
            path: None,
        }),
        Err(e) => errors.push(ConfigError::new(
            None,
            Some(base.name()),
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
    let mut records = vec![record("default", &default_dict, BTreeMap::new())];
    let mut figment = Figment::new().merge(Layer {
        name: "default".into(),
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
                records.push(record(&src.layer, &dict, written));
                figment = figment.merge(Layer {
                    name: src.layer.clone(),
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
        check_blank_tokens(&layer.dict, &layer.name, &mut errors);
        records.push(record(&layer.name, &layer.dict, layer.written.clone()));
        figment = figment.merge(layer);
    }

    let (derived, derived_layer) = apply_derived_rules(figment);
    figment = derived;
    if let Some(layer) = derived_layer {
        records.push(record(&layer.name, &layer.dict, BTreeMap::new()));
    }

    // Per-leaf type checks, so that every bad value is reported, not only the
    // first. One merged tree serves every lookup: figment's own `find_value`
    // merges all layers again on each call.
    let merged = Merged::of(&figment);
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
                    Some(&merged.layer_of(value)),
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
                    Some(&merged.layer(table)),
                    format!(
                        "is missing: every [{table}] needs it ({})",
                        keys::describe(key.kind)
                    ),
                ));
            }
            leaf_sources.insert(name.clone(), merged.layer(&name));
        }
    }
    if let Some(Value::Dict(_, headers)) = merged.find("notify.webhook.headers") {
        for name in headers.keys() {
            let k = format!("notify.webhook.headers.{name}");
            leaf_sources.insert(k.clone(), merged.layer(&k));
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
                let layer = err.metadata.as_ref().map(|m| m.name.to_string());
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
                errors.push(ConfigError::new(key.as_deref(), layer.as_deref(), message));
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

fn file_layer(path: &Path) -> String {
    format!("file {}", path.display())
}

/// Reads and parses a TOML file; errors name the file, line and column.
fn read_toml_file(path: &Path) -> Result<toml::Table, String> {
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
                Some(&file_layer(path)),
                "must be a string naming a profile",
            ));
            None
        }
    }
}

/// `$XDG_CONFIG_HOME/oj/config.toml` (or `~/.config/oj/config.toml`);
/// `/etc/oj/config.toml` in the kubernetes profile.
pub fn default_config_file(env: &Environment, base: BuiltinProfile) -> Option<PathBuf> {
    match base {
        BuiltinProfile::Kubernetes => Some(PathBuf::from("/etc/oj/config.toml")),
        BuiltinProfile::Desktop => env.config_home().map(|d| d.join("oj/config.toml")),
    }
}

/// Directories searched for user profiles, in order.
pub fn user_profile_dirs(env: &Environment) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = env.config_home() {
        dirs.push(d.join("oj/profiles"));
    }
    dirs.push(PathBuf::from("/etc/oj/profiles"));
    dirs
}

/// Finds a user profile file by name.
fn find_user_profile(name: &str, env: &Environment) -> Option<PathBuf> {
    user_profile_dirs(env)
        .into_iter()
        .map(|d| d.join(format!("{name}.toml")))
        .find(|p| p.is_file())
}

/// Follows `extends` from `name` down to a built-in profile. Returns the
/// built-in base and the user profile layers, lowest first.
fn resolve_profile_chain(
    name: &str,
    env: &Environment,
) -> Result<(BuiltinProfile, Vec<Source>), String> {
    let mut chain: Vec<Source> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut current = name.to_string();
    loop {
        if let Some(b) = BuiltinProfile::from_name(&current) {
            chain.reverse();
            return Ok((b, chain));
        }
        if seen.contains(&current) {
            seen.push(current);
            return Err(format!(
                "profile `extends` forms a cycle: {}",
                seen.join(" -> ")
            ));
        }
        if !is_valid_profile_name(&current) {
            return Err(format!(
                "{current:?} is not a valid profile name (letters, digits, '-' and '_')"
            ));
        }
        let Some(path) = find_user_profile(&current, env) else {
            let dirs: Vec<String> = user_profile_dirs(env)
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            let mut msg = format!(
                "unknown profile {current:?}: not built in (desktop, kubernetes) and no {current}.toml in {}",
                dirs.join(" or ")
            );
            if let Some(near) = nearest_profile(&current, env) {
                msg.push_str(&format!("; did you mean `{near}`?"));
            }
            if let Some(prev) = seen.last() {
                msg = format!("profile {prev:?} extends {msg}");
            }
            return Err(msg);
        };
        let mut table = read_toml_file(&path)?;
        let extends = match table.remove("extends") {
            Some(toml::Value::String(s)) => s,
            Some(_) => return Err(format!("`extends` in {} must be a string", path.display())),
            None => {
                return Err(format!(
                    "user profile {} has no `extends = \"desktop\" | \"kubernetes\" | \"<profile>\"`",
                    path.display()
                ));
            }
        };
        table.remove("description");
        seen.push(current.clone());
        chain.push(Source {
            layer: format!("profile {current}"),
            table,
            path: Some(path.clone()),
        });
        current = extends;
    }
}

fn is_valid_profile_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Lists built-in and user profiles (name, description, path, extends).
/// The known profile (built-in or user) closest to a misspelt `name`.
fn nearest_profile(name: &str, env: &Environment) -> Option<String> {
    list_profiles(env)
        .into_iter()
        .map(|p| (strsim::jaro_winkler(name, &p.name), p.name))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n)
}

pub fn list_profiles(env: &Environment) -> Vec<ProfileInfo> {
    let mut out: Vec<ProfileInfo> = BuiltinProfile::ALL
        .iter()
        .map(|b| ProfileInfo {
            name: b.name().into(),
            description: b.description().into(),
            path: None,
            extends: None,
        })
        .collect();
    for dir in user_profile_dirs(env) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort_by(|a, b| a.file_stem().cmp(&b.file_stem()));
        for path in paths {
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if out.iter().any(|p| p.name == name) {
                continue; // shadowed by a built-in or an earlier directory
            }
            let table = read_toml_file(&path).ok();
            let get = |k: &str| {
                table
                    .as_ref()
                    .and_then(|t| t.get(k))
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            };
            out.push(ProfileInfo {
                name: name.into(),
                description: get("description").unwrap_or_else(|| "user profile".into()),
                extends: get("extends"),
                path: Some(path),
            });
        }
    }
    out
}

/// Reports keys that are neither a known leaf nor a section.
fn check_unknown_keys(dict: &Dict, prefix: &str, layer: &str, errors: &mut Vec<ConfigError>) {
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
fn check_blank_tokens(dict: &Dict, layer: &str, errors: &mut Vec<ConfigError>) {
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

fn unknown_key(path: &str, layer: &str) -> ConfigError {
    let hint = match keys::nearest(path) {
        Some(n) => format!("; did you mean `{n}`?"),
        None => "; `oj config show` lists every key".into(),
    };
    ConfigError::new(Some(path), Some(layer), format!("unknown key{hint}"))
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
        Kind::Int { .. } | Kind::Table => {
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
fn override_layer(name: String, key: &str, value: Value, env: &Environment) -> Layer {
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
    Layer {
        name,
        dict: nest(key, value),
        written,
    }
}

/// §7.3: `~/` is the home directory; a relative path is relative to `dir`
/// (the file it was written in), else to the working directory — except the
/// keys that stay relative to `daemon.state_dir`. `None` = use as written.
fn resolve_path(key: &str, raw: &str, dir: Option<&Path>, env: &Environment) -> Option<String> {
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
fn resolve_table_paths(
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
fn remove_dotted(table: &mut toml::Table, key: &str) {
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

/// The record of a layer; its leaves are listed on first use.
fn record(name: &str, dict: &Dict, written: BTreeMap<String, String>) -> LayerRecord {
    LayerRecord {
        name: name.to_string(),
        dict: dict.clone(),
        values: std::sync::OnceLock::new(),
        written,
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

fn nest(key: &str, value: Value) -> Dict {
    figment::util::nest(key, value)
        .into_dict()
        .unwrap_or_default()
}

/// Environment layers: aliases first, then `OJ_A__B` variables, so that a
/// `__` variable beats an alias for the same key. One layer per variable so
/// that provenance names the variable.
fn env_layers(env: &Environment, skip: &Skip, errors: &mut Vec<ConfigError>) -> Vec<Layer> {
    let mut layers = Vec::new();
    for (var, key, _) in ALIASES {
        let Some(raw) = env.vars.get(*var) else {
            continue;
        };
        if skip.vars.contains(*var) || skip.skips_key(key) {
            continue;
        }
        let layer = format!("env {var}");
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
        let layer = format!("env {var}");
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

/// Variables that oj sets in every step's environment; a step that runs
/// `oj` itself must not be refused for them.
pub const STEP_VARIABLES: &[&str] = &["OJ_JOB_ID", "OJ_JOB_NAME", "OJ_STEP"];

/// An `OJ_*` name without `__` that oj reads: an alias, a selector or a
/// step variable.
fn is_known_plain_variable(var: &str) -> bool {
    var == OJ_PROFILE
        || var == OJ_CONFIG
        || STEP_VARIABLES.contains(&var)
        || ALIASES.iter().any(|(alias, _, _)| *alias == var)
}

/// Every variable name oj accepts (keys' `OJ_…__…` names, aliases,
/// selectors), for suggestions and `oj config env`.
pub fn accepted_variables() -> Vec<String> {
    let mut names: Vec<String> = vec![OJ_PROFILE.into(), OJ_CONFIG.into()];
    names.extend(ALIASES.iter().map(|(v, _, _)| v.to_string()));
    names.extend(keys::KEYS.iter().map(|k| keys::env_var_name(k.name)));
    names
}

/// The accepted variable closest to `var`: first a key whose name matches
/// once `_`, `__` and `.` are ignored (`OJ_LOG_FORMAT` → `OJ_LOG__FORMAT`),
/// or whose tail does (`OJ_DRAIN_TIMEOUT` → `OJ_SHUTDOWN__DRAIN_TIMEOUT`),
/// else the closest spelling.
pub fn nearest_variable(var: &str) -> Option<String> {
    let squash = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '.')
            .map(|c| c.to_ascii_uppercase())
            .collect()
    };
    let wanted = squash(var.strip_prefix("OJ_").unwrap_or(var));
    if !wanted.is_empty() {
        if let Some(k) = keys::KEYS.iter().find(|k| squash(k.name) == wanted) {
            return Some(keys::env_var_name(k.name));
        }
        // A user-named table: keep the name the variable gave
        // (`OJ_QUEUES__BUILD__MAX_CONCURENT` → `OJ_QUEUES__BUILD__MAX_CONCURRENT`).
        let parts: Vec<&str> = var.strip_prefix("OJ_").unwrap_or(var).split("__").collect();
        for k in keys::KEYS.iter().filter(|k| named::is_pattern(k.name)) {
            let pattern: Vec<&str> = k.name.split('.').collect();
            let Some(star) = pattern.iter().position(|p| *p == named::WILDCARD) else {
                continue;
            };
            let (Some(head), Some(name)) = (parts.first(), parts.get(star)) else {
                continue;
            };
            if !head.eq_ignore_ascii_case(pattern[0]) {
                continue;
            }
            let concrete = k.name.replace('*', &name.to_ascii_lowercase());
            let score = strsim::jaro_winkler(&wanted, &squash(&concrete));
            if score > 0.9 {
                return Some(keys::env_var_name(&concrete));
            }
        }
        let tail = |k: &&keys::Key| {
            let leaf = k.name.rsplit('.').next().unwrap_or(k.name);
            squash(leaf) == wanted || squash(k.name).ends_with(&wanted) && wanted.len() >= 6
        };
        if let Some(k) = keys::KEYS.iter().find(tail) {
            return Some(keys::env_var_name(k.name));
        }
    }
    let mut best: Option<(String, f64)> = None;
    for name in accepted_variables() {
        let score = strsim::jaro_winkler(var, &name);
        if best.as_ref().is_none_or(|(_, s)| score > *s) {
            best = Some((name, score));
        }
    }
    best.filter(|(_, s)| *s > 0.8).map(|(n, _)| n)
}

/// "did you mean OJ_LOG__FORMAT (key `log.format`)?"
fn variable_hint(var: &str) -> String {
    match nearest_variable(var) {
        Some(n) => match n
            .strip_prefix("OJ_")
            .map(|rest| rest.replace("__", ".").to_ascii_lowercase())
            .filter(|key| keys::find(key).is_some())
        {
            Some(key) => format!("did you mean {n} (key `{key}`)?"),
            None => format!("did you mean {n}?"),
        },
        None => "`oj config env` lists every accepted variable.".into(),
    }
}

fn unknown_variable(var: &str) -> ConfigError {
    let hint = variable_hint(var);
    ConfigError::new(
        None,
        Some(&format!("env {var}")),
        format!(
            "is not a variable oj reads (settings are OJ_ + the dotted key with '.' as '__'); {hint} Unset it if it is not meant for oj"
        ),
    )
}

/// `--set KEY=VALUE` layers.
fn set_layers(
    sets: &[String],
    skip: &Skip,
    env: &Environment,
    errors: &mut Vec<ConfigError>,
) -> Vec<Layer> {
    let mut layers = Vec::new();
    for item in sets {
        let layer = "flag --set";
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
                layers.push(override_layer(layer.into(), key, value, env))
            }
            None => errors.push(unknown_key(key, layer)),
        }
    }
    layers
}

/// The merged value tree of a figment, computed once, and the layer that
/// set each value (by figment's metadata).
struct Merged<'a> {
    figment: &'a Figment,
    root: Value,
}

impl<'a> Merged<'a> {
    fn of(figment: &'a Figment) -> Self {
        let dict = figment
            .data()
            .ok()
            .and_then(|mut m| m.remove(&Profile::Default))
            .unwrap_or_default();
        Merged {
            figment,
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

    fn layer_of(&self, value: &Value) -> String {
        self.figment
            .get_metadata(value.tag())
            .map(|m| m.name.to_string())
            .unwrap_or_else(|| "default".into())
    }

    /// The names of the entries of the table at a dotted key.
    fn names_under(&self, table: &str) -> Vec<String> {
        match self.find(table) {
            Some(Value::Dict(_, d)) => d.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// The layer that set a dotted key (`default` when none did).
    fn layer(&self, key: &str) -> String {
        self.find(key)
            .map(|v| self.layer_of(v))
            .unwrap_or_else(|| "default".into())
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
                    Some(&merged.layer(&key)),
                    format!("{name:?} is not a valid name: use {}", named::NAME_RULE),
                ));
            }
        }
    }
}

fn is_user_layer(layer: &str) -> bool {
    layer.starts_with("file ") || layer.starts_with("env ") || layer.starts_with("flag ")
}

/// §2.6: a webhook URL set by a file, env or flag switches a backend that
/// only a profile (or the default) chose to `webhook`. Returns the layer it
/// added, if any.
fn apply_derived_rules(figment: Figment) -> (Figment, Option<Layer>) {
    let merged = Merged::of(&figment);
    let url_layer = merged.layer("notify.webhook.url");
    let url_set =
        matches!(merged.find("notify.webhook.url"), Some(Value::String(_, s)) if !s.is_empty());
    let backend_layer = merged.layer("notify.backend");
    drop(merged);
    if url_set && is_user_layer(&url_layer) && !is_user_layer(&backend_layer) {
        let layer = Layer {
            name: format!("derived from notify.webhook.url ({url_layer})"),
            dict: nest("notify.backend", Value::from("webhook".to_string())),
            written: BTreeMap::new(),
        };
        let merged = figment.merge(Layer {
            name: layer.name.clone(),
            dict: layer.dict.clone(),
            written: BTreeMap::new(),
        });
        (merged, Some(layer))
    } else {
        (figment, None)
    }
}

/// Checks one leaf's value against its kind; the message says what is valid
/// and quotes the value only when it is not a secret.
fn check_kind(key: &keys::Key, value: &Value) -> Result<(), String> {
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
    }
}
