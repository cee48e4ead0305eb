//! The UI's pages as maud templates. Every value goes through maud's
//! escaping; nothing here builds markup from strings. Elements the script
//! updates live carry `data-id` (the object) and `data-f` (the field).

use maud::{DOCTYPE, Markup, html};
use oj_api::{ConfigAnswer, JobPage, JobReport, QueueList, ScheduleList, Status};
use oj_core::JobState;
use serde_json::Value;

use super::Fetched;

/// The header's facts (from `GET /v1/status`) and the viewer.
pub struct Chrome {
    pub status: Option<Status>,
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

/// An RFC 3339 time shortened for a table (`2026-12-07 17:01:02`); empty
/// for none.
fn when(t: Option<&str>) -> String {
    let s = t.unwrap_or_default().replacen('T', " ", 1);
    match s.find(['.', 'Z', '+']) {
        Some(i) if i >= 19 => s[..i].to_string(),
        _ => s,
    }
}

fn layout(title: &str, chrome: &Chrome, nav: Nav, page: &str, body: Markup) -> Markup {
    let st = chrome.status.as_ref();
    let get = |field: fn(&Status) -> &Option<String>| {
        st.and_then(|s| field(s).clone()).unwrap_or_default()
    };
    let leader = st.and_then(|s| s.leader);
    let draining = st.and_then(|s| s.draining).unwrap_or(false);
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
                        div { dt { "version" } dd #h-version { (get(|s| &s.version)) } }
                        div { dt { "profile" } dd #h-profile { (get(|s| &s.profile)) } }
                        div { dt { "instance" } dd #h-instance { (get(|s| &s.instance)) } }
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

fn unavailable<T>(what: &str, f: &Fetched<T>) -> Markup {
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

fn waiting(job: &JobReport) -> String {
    let Some(w) = &job.waiting else {
        return String::new();
    };
    let reason = w.reason.clone().unwrap_or_default();
    match w.detail.as_deref() {
        None | Some("") => reason,
        Some(detail) => format!("{reason}: {detail}"),
    }
}

fn labels(job: &JobReport) -> Markup {
    html! {
        @for (k, v) in &job.labels {
            span.label { (k) "=" (v) }
            " "
        }
    }
}

/// An optional field as page text (empty for none).
fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or_default()
}

pub fn jobs(
    chrome: &Chrome,
    query: &[(String, String)],
    jobs: &Fetched<JobPage<JobReport>>,
) -> Markup {
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
    let (list, next) = match jobs {
        Fetched::Ok(page) => (&page.jobs[..], page.next.as_ref().map(|n| n.to_string())),
        _ => (&[][..], None),
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
                        @let id = opt(&job.id);
                        tr data-id=(id) {
                            td { a href=(format!("/ui/jobs/{id}")) { code { (id) } } }
                            td data-f="name" { (opt(&job.name)) }
                            td { (state_badge(state_of(job))) " " small.waiting data-f="waiting" { (waiting(job)) } }
                            td data-f="queue" { (opt(&job.queue)) }
                            td data-f="labels" { (labels(job)) }
                            td data-f="created_at" { (when(job.created_at.as_deref())) }
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

/// The state word as sent (empty for none).
fn state_of(job: &JobReport) -> &str {
    job.state.as_ref().map_or("", |s| s.as_str())
}

pub fn job(chrome: &Chrome, id: &str, job: &Fetched<JobReport>) -> Markup {
    let Fetched::Ok(j) = job else {
        return layout(
            "Job",
            chrome,
            Nav::Jobs,
            "job",
            html! { h1 { "Job " code { (id) } } (unavailable("This job", job)) },
        );
    };
    let id = opt(&j.id);
    let state = state_of(j);
    let ended = !(j.is(JobState::Queued) || j.is(JobState::Running));
    let held = j.hold && j.is(JobState::Queued);
    let name = opt(&j.name);
    layout(
        &format!("Job {name}"),
        chrome,
        Nav::Jobs,
        "job",
        html! {
            article #job data-id=(id) data-state=(state) {
                h1 { span data-f="name" { (name) } " " (state_badge(state)) }
                dl.meta {
                    div { dt { "id" } dd { code { (id) } } }
                    div #waiting-box hidden[j.waiting.is_none()] { dt { "waiting" } dd data-f="waiting" { (waiting(j)) } }
                    div #error-box hidden[j.error.is_none()] { dt { "error" } dd.error data-f="error" { (opt(&j.error)) } }
                    @if let Some(queue) = &j.queue { div { dt { "queue" } dd { (queue) } } }
                    div { dt { "priority" } dd { (j.priority) } }
                    @if !j.labels.is_empty() { div { dt { "labels" } dd { (labels(j)) } } }
                    @if let Some(dir) = &j.dir { div { dt { "dir" } dd { code { (dir) } } } }
                    @if let Some(of) = &j.rerun_of {
                        div { dt { "rerun of" } dd { a href=(format!("/ui/jobs/{of}")) { code { (of) } } } }
                    }
                    @if let Some(fire) = &j.schedule { div { dt { "schedule" } dd { (opt(&fire.name)) " at " (when(fire.fire_time.as_deref())) } } }
                    @if !j.after.is_empty() {
                        div { dt { "after" } dd {
                            @for dep in &j.after {
                                a href=(format!("/ui/jobs/{}", opt(&dep.job))) { code { (opt(&dep.job)) } }
                                " (" (dep.need.as_deref().unwrap_or("done")) ") "
                            }
                        } }
                    }
                    div { dt { "created" } dd { (when(j.created_at.as_deref())) } }
                    div { dt { "started" } dd data-f="started_at" { (when(j.started_at.as_deref())) } }
                    div { dt { "ended" } dd data-f="ended_at" { (when(j.ended_at.as_deref())) } }
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
                        @for (i, s) in j.steps.iter().enumerate() {
                            tr data-step=(i) {
                                td { (i + 1) }
                                td { (opt(&s.name)) }
                                td { (state_badge(s.state.as_ref().map_or("", |st| st.as_str()))) }
                                td data-f="exit_code" { (exit_text(s.exit_code)) }
                                td data-f="attempts" {
                                    @if s.attempts.len() > 1 {
                                        (s.attempts.len()) ": "
                                        @for (n, at) in s.attempts.iter().enumerate() {
                                            @if n > 0 { ", " }
                                            @match &at.reason {
                                                Some(reason) => (reason),
                                                None => { "exit " (exit_text(at.exit_code)) },
                                            }
                                        }
                                    }
                                }
                                td { (opt(&s.pod)) }
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

/// An exit code as page text (empty while there is none).
fn exit_text(code: Option<i64>) -> String {
    code.map(|c| c.to_string()).unwrap_or_default()
}

pub fn queues(chrome: &Chrome, queues: &Fetched<QueueList>) -> Markup {
    let list = match queues {
        Fetched::Ok(l) => &l.queues[..],
        _ => &[],
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
                            @let name = &q.name;
                            @let paused = q.paused;
                            tr data-id=(name) {
                                td { a href=(format!("/ui/?queue={name}")) { (name) } }
                                td data-f="max_concurrent" { (q.max_concurrent) }
                                td data-f="running" { (q.running) }
                                td data-f="queued" { (q.queued) }
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

pub fn schedules(chrome: &Chrome, schedules: &Fetched<ScheduleList>) -> Markup {
    let list = match schedules {
        Fetched::Ok(l) => &l.schedules[..],
        _ => &[],
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
                            @let name = &s.name;
                            @let (paused, enabled) = (s.paused, s.enabled);
                            tr data-id=(name) {
                                td { (name) }
                                td { code { (s.cron) } }
                                td { (s.timezone) }
                                td data-f="next_fire" { (when(s.next_fire.map(|t| t.to_string()).as_deref())) }
                                td data-f="last_fire" { (when(s.last_fire.map(|t| t.to_string()).as_deref())) }
                                td data-f="last_job" {
                                    @if let Some(job) = &s.last_job { a href=(format!("/ui/jobs/{job}")) { code { (job) } } }
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

pub fn config(chrome: &Chrome, config: &Fetched<ConfigAnswer>) -> Markup {
    let mut rows = Vec::new();
    let answer = match config {
        Fetched::Ok(a) => {
            leaves("", &a.config, &mut rows);
            Some(a)
        }
        _ => None,
    };
    let generation = answer.map(|a| a.generation.to_string()).unwrap_or_default();
    let reload = answer.and_then(|a| a.last_reload.as_ref());
    let pending = answer.map_or(&[][..], |a| &a.pending_restart[..]);
    let layer = |key: &str| {
        answer
            .and_then(|a| a.sources.get(key))
            .cloned()
            .unwrap_or_default()
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
                    @match reload {
                        None => p { "None since the daemon started." },
                        Some(reload) => {
                            p { (when(Some(&reload.at))) ": " strong data-result=(reload.result) { (reload.result) } }
                            @if !reload.errors.is_empty() {
                                ul.error { @for e in &reload.errors { li { (e) } } }
                            }
                        },
                    }
                    h2 { "Pending restart" }
                    @if pending.is_empty() { p { "Nothing: every change so far applies live." } }
                    @else { ul #pending { @for k in pending { li { code { (k) } } } } }
                }
                h2 { "Keys" }
                table #config.list {
                    thead { tr { th scope="col" { "Key" } th scope="col" { "Value" } th scope="col" { "Layer" } } }
                    tbody {
                        @for (k, v) in &rows {
                            tr data-id=(k) {
                                th scope="row" { code { (k) } }
                                td { code { (text(v)) } }
                                td { (layer(k)) }
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

    /// An answer as the page reads it.
    fn ok<T: serde::de::DeserializeOwned>(v: Value) -> Fetched<T> {
        Fetched::Ok(serde_json::from_value(v).unwrap())
    }

    fn chrome() -> Chrome {
        Chrome {
            status: serde_json::from_value(
                json!({"version": "1", "profile": "desktop", "instance": "<b>i</b>", "leader": true, "draining": false}),
            )
            .unwrap(),
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
        let page = super::job(&chrome(), "j1", &ok(job.clone())).into_string();
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(
            page.contains("&lt;b&gt;i&lt;/b&gt;"),
            "the header escapes too"
        );
        let list =
            super::jobs(&chrome(), &[], &ok(json!({"jobs": [job], "next": null}))).into_string();
        assert!(!list.contains("<img"));
        assert!(list.contains("2026-12-07 17:01:02"));
    }

    #[test]
    fn no_inline_script_or_style() {
        let page =
            super::jobs(&chrome(), &[], &ok(json!({"jobs": [], "next": null}))).into_string();
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
        let page = super::config(&chrome(), &ok(v)).into_string();
        assert!(page.contains("jobs.max_concurrent"));
        assert!(page.contains("env OJ_JOBS__MAX_CONCURRENT"));
        assert!(page.contains("listen.tcp"));
    }
}
