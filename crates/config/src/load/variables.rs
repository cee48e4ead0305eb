//! The `OJ_*` variables oj reads besides `OJ_<KEY>` (selectors, aliases
//! kept for existing deployments, the step variables it sets itself), and
//! the suggestion for a misspelt one.

use crate::error::ConfigError;
use crate::keys;
use crate::layer::Layer;
use crate::named;

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

/// Variables that oj sets in every step's environment; a step that runs
/// `oj` itself must not be refused for them.
pub const STEP_VARIABLES: &[&str] = &["OJ_JOB_ID", "OJ_JOB_NAME", "OJ_STEP", "OJ_DAEMON_MARK"];

/// An `OJ_*` name without `__` that oj reads: an alias, a selector or a
/// step variable.
pub(super) fn is_known_plain_variable(var: &str) -> bool {
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
pub(super) fn variable_hint(var: &str) -> String {
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

pub(super) fn unknown_variable(var: &str) -> ConfigError {
    let hint = variable_hint(var);
    ConfigError::new(
        None,
        Some(&Layer::env(var)),
        format!(
            "is not a variable oj reads (settings are OJ_ + the dotted key with '.' as '__'); {hint} Unset it if it is not meant for oj"
        ),
    )
}
