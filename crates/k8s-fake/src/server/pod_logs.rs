//! `GET …/pods/{name}/log`: the pod's log, `follow`, `sinceTime`, `timestamps`
//! and `tailLines` as the API server has them.

use super::*;

/// How a log request wants its lines.
struct LogQuery {
    follow: bool,
    timestamps: bool,
    since: Option<Timestamp>,
}

impl LogQuery {
    fn parse(query: &HashMap<String, String>) -> Result<LogQuery, String> {
        let since = match (query.get("sinceTime"), query.get("sinceSeconds")) {
            (Some(t), _) => Some(
                t.parse::<Timestamp>()
                    .map_err(|e| format!("invalid sinceTime {t:?}: {e}"))?,
            ),
            (None, Some(s)) => {
                let secs: i64 = s
                    .parse()
                    .map_err(|_| format!("invalid sinceSeconds {s:?}"))?;
                Some(Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(secs))
            }
            (None, None) => None,
        };
        Ok(LogQuery {
            follow: query.get("follow").is_some_and(|v| v == "true"),
            timestamps: query.get("timestamps").is_some_and(|v| v == "true"),
            since,
        })
    }

    /// `line` as this request shows it, or `None` when it is before `since`.
    fn render(&self, line: &crate::LogLine) -> Option<String> {
        if self.since.is_some_and(|s| line.at < s) {
            return None;
        }
        Some(if self.timestamps {
            format!("{} {}", line.at, line.text)
        } else {
            line.text.clone()
        })
    }
}

pub(super) fn pod_log(
    shared: &Arc<Shared>,
    ns: &str,
    name: &str,
    query: &HashMap<String, String>,
) -> Response {
    let key = (ns.to_string(), name.to_string());
    let q = match LogQuery::parse(query) {
        Ok(q) => q,
        Err(e) => return bad_request(e),
    };
    let epoch = {
        let state = shared.lock();
        let Some(entry) = state.pods.get(&key) else {
            return not_found(Kind::Pods, name);
        };
        let phase = entry
            .pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        if phase == "Pending" {
            let container = entry
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .map(|c| c.name.clone())
                .unwrap_or_default();
            return bad_request(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
            ));
        }
        if !q.follow {
            let text: String = entry.log.iter().filter_map(|l| q.render(l)).collect();
            return (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], text).into_response();
        }
        entry.log_epoch
    };
    // Follow: send every whole line there is, then each new one, until the
    // pod ends (then the unfinished last line too), goes away, or the
    // stream is cut.
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, Infallible>>(16);
    let shared = shared.clone();
    tokio::spawn(async move {
        let _open = OpenGuard::new(&shared.watches.log_streams, None);
        let mut generation = shared.generation.subscribe();
        let mut sent = 0usize;
        loop {
            generation.borrow_and_update();
            let (chunk, done) = {
                let state = shared.lock();
                match state.pods.get(&key) {
                    None => (String::new(), true),
                    Some(e) if e.log_epoch != epoch => (String::new(), true),
                    Some(e) => {
                        let phase = e
                            .pod
                            .status
                            .as_ref()
                            .and_then(|s| s.phase.as_deref())
                            .unwrap_or("");
                        let ended = matches!(phase, "Succeeded" | "Failed");
                        let mut chunk = String::new();
                        for line in e.log.iter().skip(sent) {
                            if !line.text.ends_with('\n') && !ended {
                                break;
                            }
                            sent += 1;
                            if let Some(text) = q.render(line) {
                                chunk.push_str(&text);
                            }
                        }
                        (chunk, ended)
                    }
                }
            };
            if !chunk.is_empty() && tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                return;
            }
            if done {
                return;
            }
            tokio::select! {
                changed = generation.changed() => if changed.is_err() { return },
                _ = client_gone(&tx) => return,
            }
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(rx),
    )
        .into_response()
}
