//! `oj config show|check|explain|diff|profiles|schema|env`, and the config
//! loading that every command shares. Every error and warning goes to
//! stderr, the first line naming the first problem; stdout carries only
//! what was asked for, so `oj config show > effective.toml` and
//! `oj config check > /dev/null` both keep their reasons visible.

use oj_config::inspect::{self, Difference};
use oj_config::render::{self, View};
use oj_config::{ConfigError, ConfigErrors, Environment, Layer, LoadOptions, Loaded, keys};

use crate::cli::ConfigCommand;
use crate::client_cmds::emit;
use crate::exit::{CONFIG, Failure, OK};

/// The one failure for a configuration that does not load: the first line
/// names the first problem, the others follow, then where to look.
pub fn config_failure(errors: &ConfigErrors) -> Failure {
    let mut lines = errors.0.iter();
    let mut msg = match lines.next() {
        Some(first) => format!("invalid configuration: {first}"),
        None => "invalid configuration".to_string(),
    };
    for e in lines {
        msg.push_str(&format!("\n  error: {e}"));
    }
    let n = errors.0.len();
    msg.push_str(&format!(
        "\n  ({n} problem{}; `oj config explain KEY` shows every layer of a key, `oj config show --sources` where each value comes from)",
        if n == 1 { "" } else { "s" }
    ));
    Failure::config(msg)
}

/// Loads the effective configuration; every problem becomes one line of a
/// single exit-78 failure.
pub fn load_or_fail(opts: &LoadOptions, env: &Environment) -> Result<Loaded, Failure> {
    oj_config::load(opts, env).map_err(|errors| config_failure(&errors))
}

/// Whether a client command can ignore this error: it is about a key the
/// client does not read (or a stray `OJ_*` variable).
fn client_can_ignore(e: &ConfigError) -> bool {
    match (&e.key, &e.layer) {
        (Some(k), _) => k != "profile" && !keys::used_by_client(k),
        (None, Some(layer)) => matches!(layer, Layer::Env(_)),
        (None, None) => false,
    }
}

fn warn(errors: &[ConfigError], why: &str) {
    for e in errors {
        eprintln!("oj: warning: {e} ({why})");
    }
}

/// The configuration for a client command (`oj status`, `oj job …`, `oj
/// daemon stop`): errors in keys it does not use are warnings.
pub fn load_for_client(opts: &LoadOptions, env: &Environment) -> Result<Loaded, Failure> {
    match oj_config::load_tolerant(opts, env, client_can_ignore) {
        Ok(t) => {
            warn(
                &t.ignored,
                "ignored here: client commands do not use it; the daemon will refuse it",
            );
            Ok(t.loaded)
        }
        Err(errors) => Err(config_failure(&errors)),
    }
}

/// What could be loaded and every error: `show` and `explain` print the
/// first and report the second.
fn load_lenient(
    opts: &LoadOptions,
    env: &Environment,
) -> Result<(Loaded, Vec<ConfigError>), Failure> {
    oj_config::load_tolerant(opts, env, |_| true)
        .map(|t| (t.loaded, t.ignored))
        .map_err(|errors| config_failure(&errors))
}

/// Ends a command that printed what it could: errors → 78 after the output.
fn finish(errors: Vec<ConfigError>) -> Result<i32, Failure> {
    if errors.is_empty() {
        Ok(OK)
    } else {
        Err(config_failure(&ConfigErrors(errors)))
    }
}

/// Warnings (stderr) for secrets given with `--set`: a command line is
/// readable by every user of the machine (`ps`, `/proc/<pid>/cmdline`).
pub fn secret_flag_warnings(sets: &[String]) -> Vec<String> {
    sets.iter()
        .filter_map(|item| item.split_once('=').map(|(k, _)| k.trim()))
        .filter(|key| keys::is_secret(key))
        .map(|key| {
            let file_key = keys::find(&format!("{key}_file")).map(|k| k.name);
            let instead = match file_key {
                Some(f) => format!("{} or a file named by {f}", keys::env_var_name(key)),
                None => keys::env_var_name(key),
            };
            format!(
                "warning: --set {key}=… puts a secret on the command line, which every user on this machine can read (ps, /proc/<pid>/cmdline); use {instead} instead"
            )
        })
        .collect()
}

pub fn run(cmd: ConfigCommand, opts: &LoadOptions, env: &Environment) -> Result<i32, Failure> {
    match cmd {
        ConfigCommand::Show {
            sources,
            json,
            show_secrets,
            daemon,
        } => {
            let show = render::ShowOptions {
                json,
                sources,
                show_secrets,
            };
            if daemon {
                if show_secrets {
                    return Err(Failure::usage(
                        "--show-secrets cannot be used with --daemon: the daemon never sends its secrets; run `oj config show --show-secrets` where the daemon's config files are",
                    ));
                }
                let view = crate::client_cmds::daemon_config(opts, env)?.view;
                emit(render::show_view(&view, show).as_bytes());
                return Ok(OK);
            }
            let (loaded, errors) = load_lenient(opts, env)?;
            emit(render::show(&loaded, show).as_bytes());
            finish(errors)
        }
        ConfigCommand::Check => check(opts, env),
        ConfigCommand::Explain { key } => {
            let (loaded, errors) = load_lenient(opts, env)?;
            match inspect::explain(&loaded, &key) {
                Ok(text) => emit(text.as_bytes()),
                Err(e) => return Err(Failure::usage(e.to_string())),
            }
            let errors: Vec<ConfigError> = errors
                .into_iter()
                .filter(|e| {
                    e.key
                        .as_deref()
                        .is_some_and(|k| k == key || k.starts_with(&format!("{key}.")))
                })
                .collect();
            finish(errors)
        }
        ConfigCommand::Diff { daemon } => diff(daemon, opts, env),
        ConfigCommand::Profiles => {
            for p in oj_config::list_profiles(env) {
                let origin = match (&p.path, &p.extends) {
                    (None, _) => "built-in".to_string(),
                    (Some(path), Some(ext)) => format!("extends {ext}, {}", path.display()),
                    (Some(path), None) => format!("no `extends`, {}", path.display()),
                };
                println!("{:<14} {}  [{origin}]", p.name, p.description);
            }
            Ok(OK)
        }
        ConfigCommand::Schema { runbook } => {
            let schema = if runbook {
                oj_core::runbook_json_schema()
            } else {
                oj_config::json_schema()
            };
            let text = serde_json::to_string_pretty(&schema)
                .map_err(|e| Failure::runtime(format!("cannot render the schema: {e}")))?;
            println!("{text}");
            Ok(OK)
        }
        ConfigCommand::Env => {
            emit(env_table().as_bytes());
            Ok(OK)
        }
    }
}

/// `oj config check`: the layers, then what the machine must provide for
/// what is enabled. Errors exit 78; warnings alone exit 0. Problems go to
/// stderr (errors first), the verdict line to stdout.
fn check(opts: &LoadOptions, env: &Environment) -> Result<i32, Failure> {
    let loaded = match oj_config::load(opts, env) {
        Ok(l) => l,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            return Err(check_failed(errors.0.len()));
        }
    };
    let report = oj_adapters::preflight::check(&loaded, env, oj_adapters::preflight::Mode::Check);
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    // Notes say what was verified (or skipped); like every diagnostic they
    // go to stderr (after the problems), stdout has the verdict only.
    for n in &report.notes {
        eprintln!("note: {n}");
    }
    if report.errors.is_empty() {
        println!(
            "ok: configuration is valid (profile {}, {} warning{})",
            loaded.profile,
            report.warnings.len(),
            if report.warnings.len() == 1 { "" } else { "s" }
        );
        Ok(OK)
    } else {
        Err(check_failed(report.errors.len()))
    }
}

fn check_failed(n: usize) -> Failure {
    Failure::new(
        CONFIG,
        format!(
            "configuration check failed: {n} problem{} (listed above)",
            if n == 1 { "" } else { "s" }
        ),
    )
}

/// The two configurations `oj config diff` compares.
struct Sides {
    left: View,
    left_name: String,
    right: View,
    right_name: String,
    /// Keys left out of the comparison.
    skip: fn(&str) -> bool,
}

/// `oj config diff`: with `--daemon`, the running daemon's config against
/// the files on disk; with `--profile`/`--config`, the config without them
/// against the config with them; else the profile alone against the
/// effective config (what files, env and flags change).
fn diff(daemon: bool, opts: &LoadOptions, env: &Environment) -> Result<i32, Failure> {
    let sides = if daemon {
        daemon_sides(opts, env)?
    } else if opts.profile.is_some() || !opts.config_files.is_empty() {
        flag_sides(opts, env)?
    } else {
        profile_sides(opts, env)?
    };
    let mut differences: Vec<Difference> = inspect::diff(&sides.left, &sides.right, sides.skip);
    if daemon {
        // Values the daemon took from its own environment or flags, or the
        // client from its own, are not about the files: no drift there.
        let not_files = |layer: &Layer| matches!(layer, Layer::Env(_) | Layer::Flag(_));
        differences.retain(|d| !not_files(&d.left_layer) && !not_files(&d.right_layer));
    }
    let (left_name, right_name) = (&sides.left_name, &sides.right_name);
    if differences.is_empty() {
        eprintln!("oj: no differences between the {left_name} and the {right_name} config");
        return Ok(OK);
    }
    let mut text = format!("# {left_name} -> {right_name}\n");
    for d in &differences {
        text.push_str(&format!("{d}\n"));
    }
    emit(text.as_bytes());
    Ok(OK)
}

fn daemon_sides(opts: &LoadOptions, env: &Environment) -> Result<Sides, Failure> {
    let running = crate::client_cmds::daemon_config(opts, env)?;
    let disk = load_or_fail(&running.options_on_disk(opts), env)?;
    Ok(Sides {
        left: running.view,
        left_name: "running daemon".into(),
        right: View::of(&disk),
        right_name: "files on disk".into(),
        skip: keys::client_only,
    })
}

fn flag_sides(opts: &LoadOptions, env: &Environment) -> Result<Sides, Failure> {
    let base = LoadOptions {
        profile: None,
        config_files: Vec::new(),
        ..opts.clone()
    };
    let what: Vec<String> = opts
        .profile
        .iter()
        .map(|p| format!("--profile {p}"))
        .chain(
            opts.config_files
                .iter()
                .map(|f| format!("--config {}", f.display())),
        )
        .collect();
    Ok(Sides {
        left: View::of(&load_or_fail(&base, env)?),
        left_name: "effective".into(),
        right: View::of(&load_or_fail(opts, env)?),
        right_name: format!("with {}", what.join(" ")),
        skip: |_| false,
    })
}

fn profile_sides(opts: &LoadOptions, env: &Environment) -> Result<Sides, Failure> {
    let effective = load_or_fail(opts, env)?;
    let profile_only = LoadOptions {
        profile: Some(effective.profile.clone()),
        ..LoadOptions::default()
    };
    Ok(Sides {
        left: View::of(&load_or_fail(&profile_only, &profile_env(env))?),
        left_name: format!("profile {}", effective.profile),
        right: View::of(&effective),
        right_name: "effective".into(),
        skip: |_| false,
    })
}

/// The environment without `OJ_*` variables and with no config file: what
/// the profile alone gives.
fn profile_env(env: &Environment) -> Environment {
    let mut bare = env.clone();
    bare.vars.retain(|k, _| !k.starts_with("OJ_"));
    bare.vars.insert(oj_config::OJ_CONFIG.into(), String::new());
    bare
}

/// Every environment variable oj reads, the key it sets and what it does.
fn env_table() -> String {
    let mut rows: Vec<(String, String, String)> = vec![
        (
            "OJ_PROFILE".into(),
            "(profile)".into(),
            "Profile to use (below --profile)".into(),
        ),
        (
            "OJ_CONFIG".into(),
            "(config files)".into(),
            "':'-separated config files, read instead of the default file".into(),
        ),
    ];
    for (var, key, desc) in oj_config::ALIASES {
        rows.push((var.to_string(), key.to_string(), desc.to_string()));
    }
    for k in keys::KEYS {
        let var = keys::env_var_name(k.name);
        if k.kind == keys::Kind::StrTable {
            rows.push((
                format!("{var}__<NAME>"),
                format!("{}.<name>", k.name),
                k.description.into(),
            ));
        } else {
            rows.push((var, k.name.to_string(), k.description.into()));
        }
    }
    for var in oj_config::STEP_VARIABLES {
        rows.push((
            var.to_string(),
            "-".into(),
            "Set by oj in every step's environment (accepted, not a setting)".into(),
        ));
    }
    let outside: &[(&str, &str)] = &[
        (
            "KUBERNETES_SERVICE_HOST",
            "Set in pods: selects the kubernetes profile and in-cluster API access",
        ),
        (
            "KUBERNETES_SERVICE_PORT",
            "Set in pods: the in-cluster API port",
        ),
        (
            "POD_NAME",
            "daemon.instance default in the kubernetes profile (downward API)",
        ),
        (
            "XDG_CONFIG_HOME",
            "Default config file and user profiles: $XDG_CONFIG_HOME/oj/",
        ),
        (
            "XDG_STATE_HOME",
            "Default daemon.state_dir: $XDG_STATE_HOME/oj",
        ),
        (
            "HOME",
            "Fallback for ~/.config/oj and ~/.local/state/oj; `~/` in paths",
        ),
        (
            "KUBECONFIG",
            "Kubernetes client config outside a cluster (else ~/.kube/config)",
        ),
        (
            "DBUS_SESSION_BUS_ADDRESS",
            "Session bus for desktop notifications",
        ),
    ];
    for (var, desc) in outside {
        rows.push((var.to_string(), "-".into(), desc.to_string()));
    }
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let mut out = format!("{:<w0$}  {:<w1$}  DESCRIPTION\n", "VARIABLE", "KEY");
    for (v, k, d) in rows {
        out.push_str(&format!("{v:<w0$}  {k:<w1$}  {d}\n"));
    }
    out.push_str("\nAny key: OJ_ + the dotted key upper-cased with '.' as '__'. A '__' variable beats an alias; an empty value unsets an optional key. Any other OJ_* variable is an error (78).\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_on_the_command_line_are_warned_about() {
        let w = secret_flag_warnings(&[
            "log.level=debug".into(),
            "listen.auth_token=abc".into(),
            "notify.webhook.headers.x-key=v".into(),
        ]);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("OJ_LISTEN__AUTH_TOKEN") && w[0].contains("listen.auth_token_file"));
        assert!(!w.iter().any(|l| l.contains("abc")), "{w:?}");
    }
}
