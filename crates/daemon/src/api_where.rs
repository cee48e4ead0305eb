//! The API of SPEC §8.1: `Idempotency-Key` on submissions, `POST
//! /v1/jobs/{id}/rerun`, and the filters of `GET /v1/jobs` (`label=K=V`
//! repeatable, `queue=`, `name=` glob, `since=` RFC 3339), which the engine
//! serves from its filter index, page by page.

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use oj_api::{ErrorCode, IDEMPOTENCY_KEY, RerunRequest};
use oj_core::idempotency;
use oj_core::{JobFilter, JobId, JobState, JobView, Timestamp, labels};

use crate::api::{ApiFailure, Shared, bad_id, error, unknown};
use crate::engine::{PAGE_DEFAULT, PAGE_MAX, SubmitError, SubmitMeta, Submitted};

/// A request refused with 400: its error code and message.
#[derive(Debug)]
pub(crate) struct BadRequest {
    code: ErrorCode,
    message: String,
}

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, self.code, self.message)
    }
}

/// The `Idempotency-Key` of a request: `Ok(None)` without one, a 400
/// naming the problem when it is malformed (or sent twice).
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, BadRequest> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bad = |message: String| BadRequest {
        code: ErrorCode::BadIdempotencyKey,
        message,
    };
    if values.next().is_some() {
        return Err(bad(
            "the Idempotency-Key header is sent more than once; send one key".into(),
        ));
    }
    idempotency::parse_key(value.as_bytes())
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}

/// The answer to a submission: 201 with a new job, 200 with the kept job
/// of a repeated key, or the error.
pub(crate) fn submitted(result: Result<Submitted, SubmitError>) -> Response {
    match result {
        Ok(Submitted { job, created }) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, axum::Json(JobView::of(&job))).into_response()
        }
        Err(e) => ApiFailure::from(e).into_response(),
    }
}

/// `POST /v1/jobs/{id}/rerun`: a new job with the same spec (from
/// `from_step` on), `rerun_of` set; 201, 404 unknown job, 400 unknown step.
pub(crate) async fn rerun(
    State(s): State<Shared>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(id) = id.parse::<JobId>() else {
        return bad_id(&id);
    };
    if *s.draining.borrow() {
        return ApiFailure::from(SubmitError::Draining).into_response();
    }
    let key = match idempotency_key(&headers) {
        Ok(k) => k,
        Err(bad) => return bad.into_response(),
    };
    let req: RerunRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RerunRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::BadRequest,
                    format!("invalid rerun body: {e}; send {{}} or {{\"from_step\": \"NAME\"}}"),
                );
            }
        }
    };
    let Some(job) = s.engine.get(id.clone()).await else {
        return unknown(&id);
    };
    let spec = match job.spec.for_rerun(req.from_step.as_deref()) {
        Ok(spec) => spec,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                ErrorCode::UnknownStep,
                e.to_string(),
            );
        }
    };
    // SPEC §8.5: a rerun from a later step needs the files the earlier
    // steps left in the job's workspace.
    if req.from_step.is_some()
        && let Some(why) = crate::cluster::rerun_workspace_gone(s.pod_steps.as_deref(), &job).await
    {
        return error(StatusCode::CONFLICT, ErrorCode::WorkspaceGone, why);
    }
    // `pods.*` applies live: check against the running config, as a submit does.
    let pods = s.pods.as_ref().map(crate::live::Live::get);
    if let Some(pods) = &pods
        && let Err(e) = crate::k8s::validate_spec(&spec, pods)
    {
        return error(StatusCode::BAD_REQUEST, ErrorCode::InvalidSpec, e);
    }
    let meta = SubmitMeta {
        rerun_of: Some(id),
        idempotency_key: key,
    };
    submitted(s.engine.submit_with(spec, meta).await)
}

fn bad_query(message: String) -> BadRequest {
    BadRequest {
        code: ErrorCode::BadQuery,
        message,
    }
}

/// The filter and paging of a `GET /v1/jobs` query.
pub(crate) fn parse_list_query(
    q: &[(String, String)],
) -> Result<(JobFilter, Option<JobId>, usize), BadRequest> {
    let mut filter = JobFilter::default();
    let mut after = None;
    let mut limit = PAGE_DEFAULT;
    for (k, v) in q {
        if v.is_empty() && k != "label" {
            continue;
        }
        match k.as_str() {
            "status" => {
                filter.status = Some(
                    v.parse::<JobState>()
                        .map_err(|e| bad_query(e.to_string()))?,
                );
            }
            "limit" => {
                limit = match v.parse::<usize>() {
                    Ok(n) if n >= 1 => n.min(PAGE_MAX),
                    _ => {
                        return Err(bad_query(format!(
                            "limit={v:?} is not a number from 1 to {PAGE_MAX}; use e.g. ?limit=20"
                        )));
                    }
                };
            }
            "after" => {
                after = Some(v.parse::<JobId>().map_err(|_| {
                    bad_query(format!(
                        "after={v:?} is not a job id; pass the \"next\" value of the previous page"
                    ))
                })?);
            }
            "label" => {
                let Some((key, value)) = labels::split_pair(v) else {
                    return Err(bad_query(format!(
                        "label={v:?} is not KEY=VALUE; write e.g. ?label=team%3Dweb"
                    )));
                };
                labels::check_key(key)
                    .and_then(|()| labels::check_value(key, value))
                    .map_err(|e| bad_query(format!("label={v:?}: {e}")))?;
                filter.labels.push((key.to_string(), value.to_string()));
            }
            "queue" => filter.queue = Some(v.clone()),
            "name" => filter.name = Some(v.clone()),
            "since" => {
                let t = humantime::parse_rfc3339_weak(v).map_err(|e| {
                    bad_query(format!(
                        "since={v:?} is not an RFC 3339 time ({e}); write e.g. ?since=2026-05-01T12:00:00Z"
                    ))
                })?;
                filter.since = Some(Timestamp(t));
            }
            _ => {}
        }
    }
    Ok((filter, after, limit))
}

/// `GET /v1/jobs`: a page of the jobs matching the filters, newest first.
pub(crate) async fn list(
    State(s): State<Shared>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let (filter, after, limit) = match parse_list_query(&q) {
        Ok(parsed) => parsed,
        Err(bad) => return bad.into_response(),
    };
    match s.engine.page_filtered(filter, after, limit).await {
        Some(page) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            page.body,
        )
            .into_response(),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Draining,
            "the daemon is shutting down",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn list_queries_parse_into_filters() {
        let (f, after, limit) = parse_list_query(&q(&[
            ("label", "team=web"),
            ("label", "example.com/tier=1"),
            ("queue", "ci"),
            ("name", "build-*"),
            ("since", "2026-05-01T12:00:00Z"),
            ("limit", "5"),
            ("after", "0mx49xbba000"),
        ]))
        .unwrap();
        assert_eq!(
            f.labels,
            [
                ("team".to_string(), "web".to_string()),
                ("example.com/tier".to_string(), "1".to_string())
            ]
        );
        assert_eq!(f.queue.as_deref(), Some("ci"));
        assert_eq!(f.name.as_deref(), Some("build-*"));
        assert!(f.since.is_some());
        assert_eq!(limit, 5);
        assert_eq!(after.unwrap().as_str(), "0mx49xbba000");
        for bad in [
            ("label", "team"),
            ("label", "a b=c"),
            ("since", "yesterday"),
            ("limit", "0"),
            ("status", "happy"),
        ] {
            assert!(parse_list_query(&q(&[bad])).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_are_parsed_from_one_header() {
        let mut h = HeaderMap::new();
        assert_eq!(idempotency_key(&h).unwrap(), None);
        h.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("\"abc\""));
        assert_eq!(idempotency_key(&h).unwrap().as_deref(), Some("abc"));
        h.append(IDEMPOTENCY_KEY, HeaderValue::from_static("abc"));
        assert!(idempotency_key(&h).is_err());
    }
}
