//! `oj config show|check|profiles|schema|env`, and the config loading that
//! every command shares.

use oj_config::{Environment, LoadOptions, Loaded, keys, render};

use crate::cli::ConfigCommand;
use crate::exit::{CONFIG, Failure, OK};

/// Loads the effective configuration; every problem becomes one line of a
/// single exit-78 failure.
pub fn load_or_fail(opts: &LoadOptions, env: &Environment) -> Result<Loaded, Failure> {
    oj_config::load(opts, env).map_err(|errors| {
        let n = errors.0.len();
        let mut msg = format!(
            "invalid configuration ({n} problem{}); fix the keys below, `oj config show --sources` shows where each value comes from",
            if n == 1 { "" } else { "s" }
        );
        for e in &errors.0 {
            msg.push_str(&format!("\n  error: {e}"));
        }
        Failure::config(msg)
    })
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
        } => {
            let loaded = load_or_fail(opts, env)?;
            print!(
                "{}",
                render::show(
                    &loaded,
                    render::ShowOptions {
                        json,
                        sources,
                        show_secrets
                    }
                )
            );
            Ok(OK)
        }
        ConfigCommand::Check => check(opts, env),
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
        ConfigCommand::Schema => {
            let schema = serde_json::to_string_pretty(&oj_config::json_schema())
                .map_err(|e| Failure::runtime(format!("cannot render the schema: {e}")))?;
            println!("{schema}");
            Ok(OK)
        }
        ConfigCommand::Env => {
            print!("{}", env_table());
            Ok(OK)
        }
    }
}

/// `oj config check`: the layers, then what the machine must provide for
/// what is enabled. Errors exit 78; warnings alone exit 0.
fn check(opts: &LoadOptions, env: &Environment) -> Result<i32, Failure> {
    let loaded = match oj_config::load(opts, env) {
        Ok(l) => l,
        Err(errors) => {
            for e in &errors.0 {
                println!("error: {e}");
            }
            return Err(Failure::config(format!(
                "configuration check failed: {} problem{} (listed above)",
                errors.0.len(),
                if errors.0.len() == 1 { "" } else { "s" }
            )));
        }
    };
    let report = oj_adapters::preflight::check(&loaded, env, oj_adapters::preflight::Mode::Check);
    for n in &report.notes {
        println!("note: {n}");
    }
    for w in &report.warnings {
        println!("warning: {w}");
    }
    for e in &report.errors {
        println!("error: {e}");
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
        Err(Failure::new(
            CONFIG,
            format!(
                "configuration check failed: {} problem{} (listed above)",
                report.errors.len(),
                if report.errors.len() == 1 { "" } else { "s" }
            ),
        ))
    }
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
        ("HOME", "Fallback for ~/.config/oj and ~/.local/state/oj"),
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
    out.push_str("\nAny key: OJ_ + the dotted key upper-cased with '.' as '__'. A '__' variable beats an alias; an empty value unsets an optional key.\n");
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
