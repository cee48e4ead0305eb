//! Cross-key validation of the merged configuration (§2.5, static part).
//! Checks that need the machine (files, sockets, D-Bus) live with the
//! subsystems that use them and run in `oj config check` and at start.

use crate::error::ConfigError;
use crate::load::Loaded;
use crate::model::*;

/// Validates `host:port` (host may be a name, an IPv4 address or `[IPv6]`).
pub fn host_port(s: &str) -> Result<(), String> {
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err("missing \":port\"".into());
    };
    if host.is_empty() {
        return Err("missing host; use 0.0.0.0 for every interface".into());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err("IPv6 hosts are written in brackets, e.g. [::1]:7777".into());
    }
    port.parse::<u16>()
        .map(|_| ())
        .map_err(|_| format!("port {port:?} is not a number 0-65535"))
}

/// Validates a URL key by scheme. Never quotes the URL: it may be a secret.
pub fn url(key: &str, s: &str) -> Result<(), String> {
    let schemes: &[&str] = if key == "client.url" {
        &["unix://", "http://", "https://"]
    } else {
        &["http://", "https://"]
    };
    let Some(rest) = schemes.iter().find_map(|p| s.strip_prefix(p)) else {
        return Err(format!("the URL must start with {}", schemes.join(" or ")));
    };
    if rest.is_empty() || rest.starts_with('/') && !s.starts_with("unix://") {
        return Err("the URL has no host".into());
    }
    Ok(())
}

/// `ui.*`: a session that lasts, an origin without a path, a UI URL that
/// a job's path can be appended to and that a notification can carry as is
/// (Slack reads `<`, `>` and `|` in a link as syntax).
fn validate_ui(ui: &UiConfig, err: &mut impl FnMut(&str, String)) {
    if let Some(url) = &ui.url
        && url.contains(['?', '#', '@', '<', '>', '|', '"', ' ', '\t', '\n'])
    {
        err(
            "ui.url",
            format!(
                "{url:?} cannot take a job's path: write scheme, host, port and an optional path prefix only, e.g. \"https://oj.example.com\" or \"https://ops.example.com/oj\""
            ),
        );
    }
    if ui.session_ttl.is_zero() {
        err(
            "ui.session_ttl",
            "must be longer than 0s, e.g. \"12h\"".into(),
        );
    }
    if let Some(origin) = &ui.origin {
        let rest = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .unwrap_or("");
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            err(
                "ui.origin",
                format!(
                    "{origin:?} is not an origin; write scheme, host and port only, e.g. \"https://oj.example.com\" or \"http://127.0.0.1:8080\""
                ),
            );
        }
    }
}

/// Cross-key rules; pushes one error per problem.
pub fn validate(loaded: &Loaded, errors: &mut Vec<ConfigError>) {
    let c = &loaded.config;
    let mut err = |key: &str, message: String| {
        errors.push(ConfigError::new(
            Some(key),
            Some(loaded.source(key)),
            message,
        ));
    };

    for (name, s) in &c.schedules {
        if let Err(e) = crate::cron::CronExpr::parse(&s.cron) {
            err(&format!("schedules.{name}.cron"), e.to_string());
        }
        if let Err(e) = crate::cron::parse_zone(&s.timezone, &jiff::tz::TimeZone::UTC) {
            err(&format!("schedules.{name}.timezone"), e.to_string());
        }
    }

    if c.jobs.shell.is_empty() || c.jobs.shell[0].is_empty() {
        err(
            "jobs.shell",
            "must name a program, e.g. [\"/bin/sh\", \"-c\"]".into(),
        );
    }
    if c.jobs.step_timeout.is_zero() {
        err(
            "jobs.step_timeout",
            "must be longer than 0s, e.g. \"1h\"".into(),
        );
    }
    if c.jobs.keep_finished.is_zero() {
        err(
            "jobs.keep_finished",
            "must be longer than 0s, e.g. \"7d\" (jobs.max_finished bounds how many are kept)"
                .into(),
        );
    }
    if c.notify.webhook.timeout.is_zero() {
        err(
            "notify.webhook.timeout",
            "must be longer than 0s, e.g. \"10s\"".into(),
        );
    }
    if c.tls.reload_interval.is_zero() {
        err(
            "tls.reload_interval",
            "must be longer than 0s, e.g. \"30s\"".into(),
        );
    }
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&c.log.level) {
        err(
            "log.level",
            format!(
                "{:?} is not a valid EnvFilter directive ({e}); e.g. \"info\" or \"info,oj_daemon=debug\"",
                c.log.level
            ),
        );
    }

    // Requests never above limits.
    let res = &c.pods.resources;
    for (what, req, lim) in [
        ("cpu", &res.requests.cpu, &res.limits.cpu),
        ("memory", &res.requests.memory, &res.limits.memory),
    ] {
        if req > lim {
            let rk = format!("pods.resources.requests.{what}");
            let lk = format!("pods.resources.limits.{what}");
            let message = format!(
                "request {req} is above the limit {lk} = {lim} (from {}); lower the request or raise the limit",
                loaded.source(&lk)
            );
            err(&rk, message);
        }
    }

    validate_pod_pass_through(loaded, &mut err);

    if c.notify.backend == NotifyBackend::Webhook && c.notify.webhook.url.is_none() {
        err(
            "notify.backend",
            "is \"webhook\" but notify.webhook.url is unset; set notify.webhook.url (or OJ_NOTIFY_WEBHOOK_URL) or choose \"log\", \"desktop\" or \"none\"".into(),
        );
    }
    if c.notify.webhook.secret.is_some() && c.notify.webhook.secret_file.is_some() {
        err(
            "notify.webhook.secret",
            "and notify.webhook.secret_file are both set; keep one".into(),
        );
    }

    validate_hardening(c, &mut err);
    validate_ui(&c.ui, &mut err);

    if c.listen.tcp.is_some()
        && c.listen.auth_token.is_none()
        && c.listen.auth_token_file.is_none()
        && !c.listen.insecure_no_auth
    {
        err(
            "listen.tcp",
            "is set but no token is configured; set listen.auth_token or listen.auth_token_file, or listen.insecure_no_auth = true on a trusted network".into(),
        );
    }

    if c.listen.unix_socket.is_none() && c.listen.tcp.is_none() {
        err(
            "listen.unix_socket",
            format!(
                "is off and so is listen.tcp (from {}): the daemon would have no API; set listen.unix_socket = \"daemon.sock\" or listen.tcp = \"host:port\"",
                loaded.source("listen.tcp")
            ),
        );
    }

    if c.tls.enabled {
        if c.tls.cert.is_none() {
            err("tls.cert", "is unset but tls.enabled = true; give the certificate's PEM path or set tls.enabled = false".into());
        }
        if c.tls.key.is_none() {
            err("tls.key", "is unset but tls.enabled = true; give the private key's PEM path or set tls.enabled = false".into());
        }
    }

    if c.client.cert.is_some() != c.client.key.is_some() {
        err(
            "client.cert",
            "and client.key go together for mutual TLS; set both or neither".into(),
        );
    }

    let l = &c.lock.lease;
    if l.duration <= l.renew_deadline {
        err(
            "lock.lease.duration",
            format!(
                "{} must be longer than lock.lease.renew_deadline = {} (from {})",
                humantime::format_duration(l.duration),
                humantime::format_duration(l.renew_deadline),
                loaded.source("lock.lease.renew_deadline")
            ),
        );
    }
    if l.renew_deadline.as_secs_f64() <= 1.2 * l.retry_period.as_secs_f64() {
        err(
            "lock.lease.renew_deadline",
            format!(
                "{} must be longer than 1.2 × lock.lease.retry_period = {} (from {})",
                humantime::format_duration(l.renew_deadline),
                humantime::format_duration(l.retry_period),
                loaded.source("lock.lease.retry_period")
            ),
        );
    }
    if l.retry_period.is_zero() {
        err(
            "lock.lease.retry_period",
            "must be longer than 0s, e.g. \"2s\"".into(),
        );
    }
}

/// The rules of the hardening release (SPEC §7.1): no short webhook keys,
/// no zero connection timeouts. (Blank tokens are refused per layer, when
/// the layers are read: see `load::check_blank_tokens`.)
fn validate_hardening(c: &RuntimeConfig, err: &mut impl FnMut(&str, String)) {
    if let Some(secret) = &c.notify.webhook.secret
        && let Err(reason) = crate::secret::webhook_signing_key(secret.expose())
    {
        err(
            "notify.webhook.secret",
            format!("is not a usable Standard Webhooks signing key: {reason}"),
        );
    }
    for (key, value, example) in [
        ("listen.header_timeout", c.listen.header_timeout, "10s"),
        ("listen.idle_timeout", c.listen.idle_timeout, "60s"),
    ] {
        if value.is_zero() {
            err(key, format!("must be longer than 0s, e.g. \"{example}\""));
        }
    }
}

/// SPEC §8.5: what `pods.*` passes through to step pods follows Kubernetes
/// syntax and leaves oj's own labels alone; allowed secrets are secret names.
fn validate_pod_pass_through(loaded: &Loaded, err: &mut impl FnMut(&str, String)) {
    let p = &loaded.config.pods;
    let problems = crate::k8s_syntax::check_pass_through(
        &p.labels,
        &p.annotations,
        &p.node_selector,
        Some(&p.tolerations),
        p.priority_class_name.as_deref(),
    );
    for (field, message) in problems {
        // `labels."team"` → key `pods.labels`, named with its entry.
        let table = field.split(['.', '[']).next().unwrap_or(&field);
        let key = format!("pods.{table}");
        err(&key, format!("{field}: {message}"));
    }
    if let Some(image) = &p.default_image
        && image.trim().is_empty()
    {
        err(
            "pods.default_image",
            "is blank; give an image such as \"alpine:3\" or leave it unset".into(),
        );
    }
    for name in &p.allowed_secrets {
        if !crate::k8s_syntax::is_dns1123_subdomain(name) {
            err(
                "pods.allowed_secrets",
                format!(
                    "{name:?} is not a Secret name (lowercase a-z 0-9 - . , at most 253 characters)"
                ),
            );
        }
    }
}
