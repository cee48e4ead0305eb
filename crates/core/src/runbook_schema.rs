//! The JSON Schema (draft 2020-12) of a runbook file (`.oj/runbooks/*.toml`),
//! printed by `oj config schema --runbook` for editors. It mirrors what
//! [`crate::Runbook`] and [`crate::JobSpec`] accept: `[job.NAME]` tables with
//! `vars`, `env`, `notify`, `container` and `[[job.NAME.step]]` steps.

use serde_json::{Value, json};

/// The runbook schema; durations and quantities use the config's patterns.
pub fn runbook_json_schema() -> Value {
    let duration = json!({
        "type": "string",
        "pattern": oj_config::keys::DURATION_PATTERN,
        "description": "A duration such as \"500ms\", \"20m\", \"1h 30m\"."
    });
    let quantity = json!({
        "anyOf": [
            { "type": "string", "pattern": oj_config::QUANTITY_PATTERN },
            { "type": "number", "minimum": 0 }
        ],
        "description": "A Kubernetes quantity, e.g. \"250m\", \"2\", \"512Mi\", \"4Gi\"."
    });
    let amounts = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": { "cpu": quantity, "memory": quantity }
    });
    let container = json!({
        "description": "Run in a pod: the image, or {image, resources}.",
        "anyOf": [
            { "type": "string", "minLength": 1 },
            {
                "type": "object",
                "additionalProperties": false,
                "required": ["image"],
                "properties": {
                    "image": { "type": "string", "minLength": 1 },
                    "resources": {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": { "requests": amounts, "limits": amounts }
                    }
                }
            }
        ]
    });
    let step = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "run"],
        "properties": {
            "name": {
                "type": "string",
                "minLength": 1,
                "maxLength": crate::spec::MAX_STEP_NAME,
                "description": "Unique within the job; used as a file name."
            },
            "run": { "type": "string", "description": "Shell command; ${var.NAME}, ${job_id}, ${name}, ${step} are filled in." },
            "timeout": duration,
            "container": container
        }
    });
    let job = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "vars": {
                "type": "array",
                "items": { "type": "string" },
                "description": "Required --var names."
            },
            "env": {
                "type": "object",
                "additionalProperties": { "type": "string" },
                "description": "Extra environment of every step."
            },
            "notify": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "on_start": { "type": "string" },
                    "on_done": { "type": "string" },
                    "on_fail": { "type": "string" }
                }
            },
            "container": container,
            "step": { "type": "array", "items": step, "minItems": 1 }
        }
    });
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "oj runbook",
        "description": "Jobs that `oj run NAME` submits: [job.NAME] with [[job.NAME.step]] steps.",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "job": {
                "type": "object",
                "additionalProperties": job
            }
        }
    })
}
