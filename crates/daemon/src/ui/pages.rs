//! The UI's pages as maud templates. Every value goes through maud's
//! escaping; nothing here builds markup from strings. Elements the script
//! updates live carry `data-id` (the object) and `data-f` (the field).

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use super::Fetched;

/// The header's facts (from `GET /v1/status`) and the viewer.
pub struct Chrome {
    pub status: Option<Value>,
    /// Signed in with the session cookie (TCP): offer "Sign out".
    pub session: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Nav {
    Jobs,
    Queues,
    Schedules,
    Config,
    None,
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An RFC 3339 time shortened for a table (`2026-12-07 17:01:02`).
fn when(v: &Value) -> String {
    let s = text(v);
    let s = s.replacen('T', " ", 1);
    match s.find(['.', 'Z', '+']) {
        Some(i) if i >= 19 => s[..i].to_string(),
        _ => s,
    }
}

fn layout(title: &str, chrome: &Chrome, nav: Nav, page: &str, body: Markup) -> Markup {
    let st = chrome.status.as_ref();
    let get = |k: &str| st.map(|s| text(&s[k])).unwrap_or_default();
    let leader = st.and_then(|s| s["leader"].as_bool());
    let draining = st.and_then(|s| s["draining"].as_bool()).unwrap_or(false);
    let link = |href: &str, label: &str, me: Nav| {
        html! {
            a href=(href) aria-current=[(nav == me).then_some("page")] { (label) }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · oj" }
                link rel="stylesheet" href="/ui/assets/style.css";
                script src="/ui/assets/app.js" defer {}
            }
            body data-page=(page) {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/" { "oj" }
                    nav aria-label="Sections" {
                        (link("/ui/", "Jobs", Nav::Jobs))
                        (link("/ui/queues", "Queues", Nav::Queues))
                        (link("/ui/schedules", "Schedules", Nav::Schedules))
                        (link("/ui/config", "Config", Nav::Config))
                    }
                    dl.facts aria-label="Daemon" {
                        div { dt { "version" } dd #h-version { (get("version")) } }
                        div { dt { "profile" } dd #h-profile { (get("profile")) } }
                        div { dt { "instance" } dd #h-instance { (get("instance")) } }
                        div {
                            dt { "role" }
                            dd #h-role {
                                @match leader {
                                    Some(true) => "leader",
                                    Some(false) => "standby",
                                    None => "unknown",
                                }
                            }
                        }
                        div #h-draining-box hidden[!draining] { dt { "state" } dd #h-draining { "draining" } }
                    }
                    span #live.live title="Live updates" data-state="off" { "offline" }
                    @if chrome.session {
                        button #signout type="button" { "Sign out" }
                    }
                }
                main #main tabindex="-1" {
                    p #notice.notice role="status" aria-live="polite" {}
                    (body)
                }
            }
        }
    }
}

fn unavailable(what: &str, f: &Fetched) -> Markup {
    html! {
        @match f {
            Fetched::Missing(m) => p.empty {
                (what) " are not available on this daemon (" (m) ")."
            },
            Fetched::Failed(code, m) => p.error role="alert" {
                "Cannot load " (what) " (" (code.as_u16()) "): " (m)
            },
            Fetched::Ok(_) => {},
        }
    }
}

/// The page a stranger on TCP gets: one field for the token.
pub fn login() -> Markup {
    let chrome = Chrome {
        status: None,
        session: false,
    };
    layout(
        "Sign in",
        &chrome,
        Nav::None,
        "login",
        html! {
            h1 { "Sign in" }
            p { "This daemon needs its API token (" code { "listen.auth_token" } " or the file "
                code { "listen.auth_token_file" } " names). It is sent once; the browser then keeps a session cookie." }
            form #login method="post" action="/v1/session" {
                label for="token" { "Token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button type="submit" { "Sign in" }
            }
            p #login-error.error role="alert" {}
        },
    )
}

pub fn not_found(chrome: &Chrome) -> Markup {
    layout(
        "Not found",
        chrome,
        Nav::None,
        "missing",
        html! { h1 { "Not found" } p { "No such page. " a href="/ui/" { "Jobs" } } },
    )
}

fn state_badge(state: &str) -> Markup {
    html! { span.state data-f="state" data-state=(state) { (state) } }
}

fn waiting(job: &Value) -> String {
    let w = &job["waiting"];
    if w.is_null() {
        return String::new();
    }
    let reason = text(&w["reason"]);
    let detail = text(&w["detail"]);
    if detail.is_empty() {
        reason
    } else {
        format!("{reason}: {detail}")
    }
}

fn labels(job: &Value) -> Markup {
    html! {
        @if let Some(map) = job["labels"].as_object() {
            @for (k, v) in map {
                span.label { (k) "=" (text(v)) }
                " "
            }
        }
    }
}

pub fn jobs(chrome: &Chrome, query: &[(String, String)], jobs: &Fetched) -> Markup {
    let q = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let label_filter: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == "label")
        .map(|(_, v)| v.as_str())
        .collect();
    let first_page = q("after").is_empty();
    let states = [
        "",
        "queued",
        "running",
        "done",
        "failed",
        "cancelled",
        "interrupted",
    ];
    let empty = Vec::new();
    let (list, next) = match jobs {
        Fetched::Ok(v) => (
            v["jobs"].as_array().unwrap_or(&empty),
            v["next"].as_str().map(str::to_string),
        ),
        _ => (&empty, None),
    };
    let base: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| k != "after")
        .cloned()
        .collect();
    let page_link = |after: Option<&str>| {
        let mut p = base.clone();
        if let Some(a) = after {
            p.push(("after".into(), a.into()));
        }
        let s = serde_urlencoded::to_string(&p).unwrap_or_default();
        if s.is_empty() {
            "/ui/".to_string()
        } else {
            format!("/ui/?{s}")
        }
    };
    layout(
        "Jobs",
        chrome,
        Nav::Jobs,
        "jobs",
        html! {
            h1 { "Jobs" }
            form.filters method="get" action="/ui/" role="search" {
                label { "State "
                    select name="status" {
                        @for s in states {
                            option value=(s) selected[q("status") == s] {
                                @if s.is_empty() { "any" } @else { (s) }
                            }
                        }
                    }
                }
                label { "Queue " input name="queue" value=(q("queue")) size="10"; }
                label { "Label " input name="label" value=(label_filter.first().copied().unwrap_or("")) placeholder="key=value" size="14"; }
                label { "Name " input name="name" value=(q("name")) placeholder="glob, e.g. build*" size="14"; }
                button type="submit" { "Filter" }
                @if !base.is_empty() { " " a href="/ui/" { "Clear" } }
            }
            (unavailable("Jobs", jobs))
            table #jobs.list data-live=(if first_page { "1" } else { "" })
                data-filter-status=(q("status")) data-filter-queue=(q("queue"))
                data-filter-name=(q("name")) data-filter-label=(label_filter.join(","))
            {
                thead { tr {
                    th scope="col" { "Job" } th scope="col" { "Name" } th scope="col" { "State" }
                    th scope="col" { "Queue" } th scope="col" { "Labels" } th scope="col" { "Created" }
                } }
                tbody {
                    @for job in list {
                        @let id = text(&job["id"]);
                        tr data-id=(id) {
                            td { a href=(format!("/ui/jobs/{id}")) { code { (id) } } }
                            td data-f="name" { (text(&job["name"])) }
                            td { (state_badge(&text(&job["state"]))) " " small.waiting data-f="waiting" { (waiting(job)) } }
                            td data-f="queue" { (text(&job["queue"])) }
                            td data-f="labels" { (labels(job)) }
                            td data-f="created_at" { (when(&job["created_at"])) }
                        }
                    }
                }
            }
            @if list.is_empty() && matches!(jobs, Fetched::Ok(_)) {
                p #no-jobs.empty { "No jobs" @if !base.is_empty() { " match these filters" } "." }
            }
            nav.pager aria-label="Pages" {
                @if !first_page { a href=(page_link(None)) { "← Newest" } }
                @if let Some(n) = &next { a href=(page_link(Some(n))) rel="next" { "Older →" } }
            }
        },
    )
}

/// A button that sends `method path` and shows the `oj` command that does
/// the same.
fn action(label: &str, method: &str, path: &str, command: &str, hidden: bool) -> Markup {
    html! {
        div.action hidden[hidden] data-action-box=(label.to_lowercase()) {
            button type="button" data-method=(method) data-path=(path) { (label) }
            " " code.cmd title="The same from a terminal" { (command) }
        }
    }
}

pub fn job(chrome: &Chrome, id: &str, job: &Fetched) -> Markup {
    let Fetched::Ok(j) = job else {
        return layout(
            "Job",
            chrome,
            Nav::Jobs,
            "job",
            html! { h1 { "Job " code { (id) } } (unavailable("This job", job)) },
        );
    };
    let id = text(&j["id"]);
    let state = text(&j["state"]);
    let ended = !matches!(state.as_str(), "queued" | "running");
    let held = j["hold"].as_bool().unwrap_or(false) && state == "queued";
    let empty = Vec::new();
    let steps = j["steps"].as_array().unwrap_or(&empty);
    let meta = |k: &str| text(&j[k]);
    layout(
        &format!("Job {}", meta("name")),
        chrome,
        Nav::Jobs,
        "job",
        html! {
            article #job data-id=(id) data-state=(state) {
                h1 { span data-f="name" { (meta("name")) } " " (state_badge(&state)) }
                dl.meta {
                    div { dt { "id" } dd { code { (id) } } }
                    div #waiting-box hidden[j["waiting"].is_null()] { dt { "waiting" } dd data-f="waiting" { (waiting(j)) } }
                    div #error-box hidden[j["error"].is_null()] { dt { "error" } dd.error data-f="error" { (meta("error")) } }
                    @if !j["queue"].is_null() { div { dt { "queue" } dd { (meta("queue")) } } }
                    @if !j["priority"].is_null() { div { dt { "priority" } dd { (meta("priority")) } } }
                    @if j["labels"].as_object().is_some_and(|m| !m.is_empty()) { div { dt { "labels" } dd { (labels(j)) } } }
                    @if !j["dir"].is_null() { div { dt { "dir" } dd { code { (meta("dir")) } } } }
                    @if !j["rerun_of"].is_null() {
                        div { dt { "rerun of" } dd { a href=(format!("/ui/jobs/{}", meta("rerun_of"))) { code { (meta("rerun_of")) } } } }
                    }
                    @if !j["schedule"].is_null() { div { dt { "schedule" } dd { (text(&j["schedule"]["name"])) " at " (when(&j["schedule"]["fire_time"])) } } }
                    @if let Some(after) = j["after"].as_array().filter(|a| !a.is_empty()) {
                        div { dt { "after" } dd {
                            @for dep in after {
                                a href=(format!("/ui/jobs/{}", text(&dep["job"]))) { code { (text(&dep["job"])) } }
                                " (" (text(&dep["need"])) ") "
                            }
                        } }
                    }
                    div { dt { "created" } dd { (when(&j["created_at"])) } }
                    div { dt { "started" } dd data-f="started_at" { (when(&j["started_at"])) } }
                    div { dt { "ended" } dd data-f="ended_at" { (when(&j["ended_at"])) } }
                }
                section.actions aria-label="Actions" {
                    (action("Cancel", "POST", &format!("/v1/jobs/{id}/cancel"), &format!("oj job cancel {id}"), ended))
                    (action("Release", "POST", &format!("/v1/jobs/{id}/release"), &format!("oj job release {id}"), !held))
                    (action("Rerun", "POST", &format!("/v1/jobs/{id}/rerun"), &format!("oj job rerun {id}"), false))
                }
                h2 { "Steps" }
                table #steps.list {
                    thead { tr {
                        th scope="col" { "#" } th scope="col" { "Step" } th scope="col" { "State" }
                        th scope="col" { "Exit" } th scope="col" { "Attempts" } th scope="col" { "Pod" }
                    } }
                    tbody {
                        @for (i, s) in steps.iter().enumerate() {
                            tr data-step=(i) {
                                td { (i + 1) }
                                td { (text(&s["name"])) }
                                td { (state_badge(&text(&s["state"]))) }
                                td data-f="exit_code" { (text(&s["exit_code"])) }
                                td data-f="attempts" {
                                    @if let Some(a) = s["attempts"].as_array().filter(|a| a.len() > 1) {
                                        (a.len()) ": "
                                        @for (n, at) in a.iter().enumerate() {
                                            @if n > 0 { ", " }
                                            (text(&at["reason"]))
                                            @if at["reason"].is_null() { "exit " (text(&at["exit_code"])) }
                                        }
                                    }
                                }
                                td { (text(&s["pod"])) }
                            }
                        }
                    }
                }
                h2 { "Log" }
                p.hint { "Follow in a terminal: " code.cmd { "oj job logs -f " (id) } }
                pre #log tabindex="0" aria-label="Job log" aria-live="off" data-src=(format!("/v1/jobs/{id}/logs?follow=true")) {}
            }
        },
    )
}

pub fn queues(chrome: &Chrome, queues: &Fetched) -> Markup {
    let empty = Vec::new();
    let list = match queues {
        Fetched::Ok(v) => v["queues"].as_array().unwrap_or(&empty),
        _ => &empty,
    };
    layout(
        "Queues",
        chrome,
        Nav::Queues,
        "queues",
        html! {
            h1 { "Queues" }
            (unavailable("Queues", queues))
            @if matches!(queues, Fetched::Ok(_)) {
                table #queues.list {
                    thead { tr {
                        th scope="col" { "Queue" } th scope="col" { "Limit" } th scope="col" { "Running" }
                        th scope="col" { "Queued" } th scope="col" { "Paused" } th scope="col" { "Actions" }
                    } }
                    tbody {
                        @for q in list {
                            @let name = text(&q["name"]);
                            @let paused = q["paused"].as_bool().unwrap_or(false);
                            tr data-id=(name) {
                                td { a href=(format!("/ui/?queue={name}")) { (name) } }
                                td data-f="max_concurrent" { (text(&q["max_concurrent"])) }
                                td data-f="running" { (text(&q["running"])) }
                                td data-f="queued" { (text(&q["queued"])) }
                                td data-f="paused" { (if paused { "paused" } else { "no" }) }
                                td {
                                    (action("Pause", "POST", &format!("/v1/queues/{name}/pause"), &format!("oj queue pause {name}"), paused))
                                    (action("Resume", "POST", &format!("/v1/queues/{name}/resume"), &format!("oj queue resume {name}"), !paused))
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub fn schedules(chrome: &Chrome, schedules: &Fetched) -> Markup {
    let empty = Vec::new();
    let list = match schedules {
        Fetched::Ok(v) => v["schedules"].as_array().unwrap_or(&empty),
        _ => &empty,
    };
    layout(
        "Schedules",
        chrome,
        Nav::Schedules,
        "schedules",
        html! {
            h1 { "Schedules" }
            (unavailable("Schedules", schedules))
            @if matches!(schedules, Fetched::Ok(_)) {
                @if list.is_empty() { p.empty { "No schedules: add " code { "[schedules.<name>]" } " tables to the config." } }
                table #schedules.list {
                    thead { tr {
                        th scope="col" { "Schedule" } th scope="col" { "Cron" } th scope="col" { "Zone" }
                        th scope="col" { "Next fire" } th scope="col" { "Last fire" } th scope="col" { "Last job" }
                        th scope="col" { "State" } th scope="col" { "Actions" }
                    } }
                    tbody {
                        @for s in list {
                            @let name = text(&s["name"]);
                            @let paused = s["paused"].as_bool().unwrap_or(false);
                            @let enabled = s["enabled"].as_bool().unwrap_or(true);
                            tr data-id=(name) {
                                td { (name) }
                                td { code { (text(&s["cron"])) } }
                                td { (text(&s["timezone"])) }
                                td data-f="next_fire" { (when(&s["next_fire"])) }
                                td data-f="last_fire" { (when(&s["last_fire"])) }
                                td data-f="last_job" {
                                    @let job = text(&s["last_job"]);
                                    @if !job.is_empty() { a href=(format!("/ui/jobs/{job}")) { code { (job) } } }
                                }
                                td data-f="paused" {
                                    @if !enabled { "disabled" } @else if paused { "paused" } @else { "active" }
                                }
                                td {
                                    (action("Run now", "POST", &format!("/v1/schedules/{name}/run"), &format!("oj schedule run {name}"), false))
                                    (action("Pause", "POST", &format!("/v1/schedules/{name}/pause"), &format!("oj schedule pause {name}"), paused))
                                    (action("Resume", "POST", &format!("/v1/schedules/{name}/resume"), &format!("oj schedule resume {name}"), !paused))
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// Leaves of a JSON tree as `(dotted.key, value)`.
fn leaves(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&key, v, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

pub fn config(chrome: &Chrome, config: &Fetched) -> Markup {
    let mut rows = Vec::new();
    let (sources, pending, reload, generation) = match config {
        Fetched::Ok(v) => {
            leaves("", &v["config"], &mut rows);
            (
                v["sources"].clone(),
                v["pending_restart"].as_array().cloned().unwrap_or_default(),
                v["last_reload"].clone(),
                text(&v["generation"]),
            )
        }
        _ => (Value::Null, Vec::new(), Value::Null, String::new()),
    };
    layout(
        "Config",
        chrome,
        Nav::Config,
        "config",
        html! {
            h1 { "Config" }
            (unavailable("The running config", config))
            @if matches!(config, Fetched::Ok(_)) {
                p { "Generation " (generation) ". The same from a terminal: " code.cmd { "oj config show --daemon --sources" } }
                section aria-label="Reload" {
                    h2 { "Last reload" }
                    @if reload.is_null() { p { "None since the daemon started." } }
                    @else {
                        p { (when(&reload["at"])) ": " strong data-result=(text(&reload["result"])) { (text(&reload["result"])) } }
                        @if let Some(errs) = reload["errors"].as_array().filter(|e| !e.is_empty()) {
                            ul.error { @for e in errs { li { (text(e)) } } }
                        }
                    }
                    h2 { "Pending restart" }
                    @if pending.is_empty() { p { "Nothing: every change so far applies live." } }
                    @else { ul #pending { @for k in &pending { li { code { (text(k)) } } } } }
                }
                h2 { "Keys" }
                table #config.list {
                    thead { tr { th scope="col" { "Key" } th scope="col" { "Value" } th scope="col" { "Layer" } } }
                    tbody {
                        @for (k, v) in &rows {
                            tr data-id=(k) {
                                th scope="row" { code { (k) } }
                                td { code { (text(v)) } }
                                td { (text(&sources[k.as_str()])) }
                            }
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chrome() -> Chrome {
        Chrome {
            status: Some(
                json!({"version": "1", "profile": "desktop", "instance": "<b>i</b>", "leader": true, "draining": false}),
            ),
            session: false,
        }
    }

    #[test]
    fn names_labels_and_errors_are_text() {
        let evil = "<img src=x onerror=alert(1)>";
        let job = json!({
            "id": "j1", "name": evil, "state": "failed", "error": evil,
            "labels": {"team": evil}, "created_at": "2026-12-07T17:01:02.5Z",
            "steps": [{"name": evil, "state": "failed", "exit_code": 1}],
        });
        let page = super::job(&chrome(), "j1", &Fetched::Ok(job.clone())).into_string();
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(
            page.contains("&lt;b&gt;i&lt;/b&gt;"),
            "the header escapes too"
        );
        let list = super::jobs(
            &chrome(),
            &[],
            &Fetched::Ok(json!({"jobs": [job], "next": null})),
        )
        .into_string();
        assert!(!list.contains("<img"));
        assert!(list.contains("2026-12-07 17:01:02"));
    }

    #[test]
    fn no_inline_script_or_style() {
        let page = super::jobs(
            &chrome(),
            &[],
            &Fetched::Ok(json!({"jobs": [], "next": null})),
        )
        .into_string();
        assert!(page.contains(r#"<script src="/ui/assets/app.js" defer></script>"#));
        assert_eq!(page.matches("<script").count(), 1);
        assert!(!page.contains("style="));
        assert!(
            !page.contains("onclick") && !page.contains("onload"),
            "no inline handlers"
        );
    }

    #[test]
    fn a_missing_source_says_so() {
        let page = super::queues(&chrome(), &Fetched::Missing("no route".into())).into_string();
        assert!(page.contains("not available on this daemon"), "{page}");
    }

    #[test]
    fn config_leaves_are_dotted_keys_with_layers() {
        let v = json!({"config": {"jobs": {"max_concurrent": 4}, "ui": {"enabled": true}},
                       "sources": {"jobs.max_concurrent": "env OJ_JOBS__MAX_CONCURRENT"},
                       "pending_restart": ["listen.tcp"], "last_reload": null, "generation": 2});
        let page = super::config(&chrome(), &Fetched::Ok(v)).into_string();
        assert!(page.contains("jobs.max_concurrent"));
        assert!(page.contains("env OJ_JOBS__MAX_CONCURRENT"));
        assert!(page.contains("listen.tcp"));
    }
}
