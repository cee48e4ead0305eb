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
    let strings = json!({ "type": "object", "additionalProperties": { "type": "string" } });
    let secrets = json!({
        "type": "object",
        "additionalProperties": { "type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[-._a-zA-Z0-9]+$" },
        "description": "Env name -> \"<secret>/<key>\": valueFrom.secretKeyRef in the step pod (names in pods.allowed_secrets)."
    });
    let toleration = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "key": { "type": "string" },
            "operator": { "enum": ["Equal", "Exists"] },
            "value": { "type": "string" },
            "effect": { "enum": ["", "NoSchedule", "PreferNoSchedule", "NoExecute"] },
            "toleration_seconds": { "type": "integer" }
        }
    });
    let container = json!({
        "description": "Run in a pod: the image, or {image, resources, labels, annotations, node_selector, tolerations, priority_class_name}.",
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
                    },
                    "labels": strings,
                    "annotations": strings,
                    "node_selector": strings,
                    "tolerations": { "type": "array", "items": toleration },
                    "priority_class_name": { "type": "string" }
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
            "container": container,
            "secrets": secrets
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
            "queue": {
                "type": "string",
                "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$",
                "description": "The queue the job waits in (default \"default\")."
            },
            "priority": {
                "type": "integer",
                "minimum": crate::queue::PRIORITY_MIN,
                "maximum": crate::queue::PRIORITY_MAX,
                "description": "Higher starts first; default 0."
            },
            "hold": { "type": "boolean", "description": "Stays queued until `oj job release`." },
            "dir": {
                "type": "string",
                "minLength": 1,
                "description": "Working directory of the steps the daemon runs; relative = to the directory holding .oj/."
            },
            "labels": {
                "type": "object",
                "additionalProperties": { "type": "string", "maxLength": 63 },
                "description": "Labels in Kubernetes label syntax, to find jobs by (oj job list --label K=V)."
            },
            "step": { "type": "array", "items": step, "minItems": 1 },
            "secrets": secrets,
            "workspace": {
                "type": "object",
                "additionalProperties": false,
                "required": ["size"],
                "properties": {
                    "size": quantity,
                    "storage_class": { "type": "string" }
                },
                "description": "A PersistentVolumeClaim shared by the job's step pods, mounted at /workspace."
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn validator() -> jsonschema::Validator {
        jsonschema::draft202012::new(&runbook_json_schema()).expect("the schema compiles")
    }

    fn doc(toml_text: &str) -> Value {
        let t: toml::Table = toml::from_str(toml_text).expect("TOML");
        serde_json::to_value(t).expect("JSON")
    }

    /// The SPEC's example runbook.
    const EXAMPLE: &str = r#"
[job.build]
vars = ["target"]
env = { CARGO_TERM_COLOR = "never" }
notify = { on_start = "build ${var.target} started", on_fail = "build failed: ${error}" }

[[job.build.step]]
name = "compile"
run = "cargo build --target ${var.target}"
timeout = "20m"

[[job.build.step]]
name = "test"
run = "cargo test"
container = { image = "rust:1.95", resources = { limits = { memory = "4Gi" } } }
"#;

    #[test]
    fn the_schema_and_the_parser_agree() {
        let v = validator();
        let cases: &[(&str, bool)] = &[
            (EXAMPLE, true),
            (
                "[job.a]\n[[job.a.step]]\nname = \"s\"\nrun = \"true\"\ncontainer = \"alpine\"\n",
                true,
            ),
            ("[job.a]\n[[job.a.step]]\nname = \"s\"\n", false),
            (
                "[job.a]\n[[job.a.step]]\nname = \"s\"\nrun = \"true\"\ntimeout = \"soon\"\n",
                false,
            ),
            (
                "[job.a]\n[[job.a.step]]\nname = \"s\"\nrun = \"true\"\nrunn = \"x\"\n",
                false,
            ),
            ("[job.a]\nsteps = []\n", false),
            (
                "[job.a]\nworkspace = { size = \"1Gi\" }\nsecrets = { T = \"creds/token\" }\ncontainer = { image = \"i\", labels = { team = \"a\" }, tolerations = [{ key = \"gpu\", operator = \"Exists\" }] }\n[[job.a.step]]\nname = \"s\"\nrun = \"true\"\n",
                true,
            ),
            (
                "[job.a]\nworkspace = { size = \"1Gi\", class = \"x\" }\n[[job.a.step]]\nname = \"s\"\nrun = \"true\"\n",
                false,
            ),
            ("[jobs.a]\n", false),
        ];
        for (text, valid) in cases {
            let errors: Vec<String> = v.iter_errors(&doc(text)).map(|e| e.to_string()).collect();
            assert_eq!(errors.is_empty(), *valid, "schema on {text}: {errors:?}");
            let parsed = crate::Runbook::parse(text, "t.toml");
            assert_eq!(parsed.is_ok(), *valid, "parser on {text}: {parsed:?}");
        }
    }
}
