//! Profiles: the built-in ones, user profiles in `oj/profiles/` that
//! `extends` another, where they and the default config file are looked
//! for, and the `extends` chain a selected profile resolves to.

use std::path::PathBuf;

use crate::defaults::BuiltinProfile;
use crate::environment::Environment;
use crate::layer::Layer;

use super::{Source, read_toml_file};

/// Where a profile came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileInfo {
    pub name: String,
    pub description: String,
    /// `None` for built-in profiles.
    pub path: Option<PathBuf>,
    pub extends: Option<String>,
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
pub(super) fn resolve_profile_chain(
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
            layer: Layer::Profile(current.clone()),
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

/// The known profile (built-in or user) closest to a misspelt `name`.
fn nearest_profile(name: &str, env: &Environment) -> Option<String> {
    list_profiles(env)
        .into_iter()
        .map(|p| (strsim::jaro_winkler(name, &p.name), p.name))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n)
}

/// Lists built-in and user profiles (name, description, path, extends).
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
