//! The emitted JSON Schema accepts the built-in profiles and rejects what
//! the loader rejects, so TOML editors flag the same mistakes.

use oj_config::BuiltinProfile;

fn validator() -> jsonschema::Validator {
    let schema = oj_config::json_schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    jsonschema::draft202012::new(&schema).expect("the schema compiles")
}

fn toml_to_json(text: &str) -> serde_json::Value {
    let table: toml::Table = toml::from_str(text).expect("valid TOML");
    serde_json::to_value(table).expect("json")
}

#[test]
fn both_builtin_profiles_validate_against_the_schema() {
    let v = validator();
    for p in BuiltinProfile::ALL {
        let doc = toml_to_json(p.toml());
        let errors: Vec<String> = v
            .iter_errors(&doc)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "profile {} does not validate: {errors:?}",
            p.name()
        );
    }
}

#[test]
fn the_schema_rejects_unknown_keys_and_bad_enums() {
    let v = validator();
    assert!(v.is_valid(&toml_to_json(
        "profile = \"kubernetes\"\n[log]\nformat = \"json\"\n"
    )));
    assert!(!v.is_valid(&toml_to_json("[log]\nfromat = \"json\"\n")));
    assert!(!v.is_valid(&toml_to_json("[log]\nformat = \"yaml\"\n")));
    assert!(!v.is_valid(&toml_to_json("[jobs]\nmax_concurrent = \"four\"\n")));
    assert!(!v.is_valid(&toml_to_json("nonsense = 1\n")));
}

fn workspace_file(rel: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn schema_errors(v: &jsonschema::Validator, doc: &serde_json::Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

#[test]
fn every_shipped_toml_file_validates() {
    let v = validator();
    for rel in [
        "profiles/desktop.toml",
        "profiles/kubernetes.toml",
        "deploy/base/config.toml",
        "fuzz/seeds/config_loader/full.toml",
        "fuzz/seeds/config_loader/desktop.toml",
        "fuzz/seeds/config_loader/kubernetes.toml",
    ] {
        let doc = toml_to_json(&workspace_file(rel));
        let errors = schema_errors(&v, &doc);
        assert!(errors.is_empty(), "{rel}: {errors:?}");
    }
}

#[test]
fn a_user_profile_with_extends_and_description_validates() {
    let v = validator();
    let doc = toml_to_json(
        "extends = \"kubernetes\"\ndescription = \"CI runners\"\n[jobs]\nmax_concurrent = 2\n",
    );
    assert!(schema_errors(&v, &doc).is_empty());
}

#[test]
fn every_key_has_a_description_and_a_default_or_a_reason() {
    let schema = oj_config::json_schema();
    for key in oj_config::keys::KEYS {
        let mut node = &schema;
        for part in key.name.split('.') {
            node = if part == "*" {
                &node["additionalProperties"]
            } else {
                &node["properties"][part]
            };
        }
        assert!(
            node["description"].as_str().is_some_and(|d| d.len() > 10),
            "{} has no description: {node}",
            key.name
        );
        let machine = ["daemon.state_dir", "daemon.instance"].contains(&key.name);
        // A schedule means nothing without its cron and job: required.
        let required = ["schedules.*.cron", "schedules.*.job"].contains(&key.name);
        assert!(
            node.get("default").is_some() || key.optional || machine || required,
            "{} has no default: {node}",
            key.name
        );
    }
    assert_eq!(
        schema["properties"]["jobs"]["properties"]["max_concurrent"]["minimum"],
        1
    );
    assert_eq!(
        schema["properties"]["shutdown"]["properties"]["drain_timeout"]["default"],
        "5s"
    );
}

/// Files the schema and `oj config check` (the loader) must judge alike.
const CORPUS: &[(&str, bool)] = &[
    (
        "[jobs]\nmax_concurrent = 3\nstep_timeout = \"1h 30m\"\n",
        true,
    ),
    (
        "[listen]\ntcp = \"[::1]:7777\"\ninsecure_no_auth = true\n",
        true,
    ),
    ("[listen]\ntcp = \"\"\n", true),
    ("[queues.deploy]\nmax_concurrent = 1\n", true),
    ("[queues.Deploy]\nmax_concurrent = 1\n", false),
    ("[queues.deploy]\nmax_concurent = 1\n", false),
    (
        "[schedules.nightly]\ncron = \"@daily\"\novelap = \"skip\"\njob = { name = \"n\", steps = [] }\n",
        false,
    ),
    (
        "[schedules.nightly]\ncron = \"@daily\"\novercap = 1\n",
        false,
    ),
    (
        "[pods.resources.requests]\ncpu = \"0.5\"\nmemory = \"1e3\"\n",
        true,
    ),
    ("[pods.resources.limits]\ncpu = 2\nmemory = \"4Gi\"\n", true),
    ("[notify]\nevents = [\"fail\"]\n", true),
    ("[notify.webhook.headers]\nx-team = \"infra\"\n", true),
    ("[client]\nurl = \"unix:///run/oj.sock\"\n", true),
    ("[log]\nlevel = \"info,oj_daemon=debug\"\n", true),
    ("[jobs]\nmax_concurrent = 0\n", false),
    ("[jobs]\nmax_concurrent = \"four\"\n", false),
    ("[jobs]\nmax_concurent = 4\n", false),
    ("[jobs]\nstep_timeout = \"5 parsecs\"\n", false),
    ("[jobs]\nstep_timeout = 30\n", false),
    ("[jobs]\nshell = \"sh\"\n", false),
    ("[listen]\ntcp = \"nohost\"\n", false),
    ("[listen]\ntcp = \"0.0.0.0:99999\"\n", false),
    ("[listen]\nmax_request_bytes = 0\n", false),
    ("[tls]\nmin_version = \"1.1\"\n", false),
    ("[notify]\nbackend = \"pigeon\"\n", false),
    ("[notify]\nevents = [\"start\", \"bogus\"]\n", false),
    ("[notify.webhook]\nurl = \"ftp://example.com\"\n", false),
    ("[notify.webhook]\nmax_attempts = 0\n", false),
    ("[notify.webhook.headers]\nx-team = 1\n", false),
    ("[log]\nformat = \"yaml\"\n", false),
    ("[log.file]\nmax_files = 0\n", false),
    ("[log.file]\nrotation = \"weekly\"\n", false),
    ("[lock]\nstrategy = \"flock\"\n", false),
    ("[pods]\nimage_pull_policy = \"always\"\n", false),
    ("[pods.resources.requests]\ncpu = \"1.2.3\"\n", false),
    ("[pods.resources.requests]\nmemory = \"-1Gi\"\n", false),
    ("[pods.resources.limits]\nmemory = \"4GB\"\n", false),
    ("[shutdown]\ndrain_timeout = \"soon\"\n", false),
    ("[daemon]\nwatch_config = \"yes\"\n", false),
    ("[client]\nurl = \"gopher://x\"\n", false),
    ("log = \"debug\"\n", false),
    ("nonsense = 1\n", false),
];

#[test]
fn the_schema_and_the_loader_agree_on_a_corpus() {
    let v = validator();
    let dir = tempfile::tempdir().unwrap();
    let env = oj_config::Environment::new(
        [
            ("HOME", dir.path().join("home").display().to_string()),
            (
                "XDG_CONFIG_HOME",
                dir.path().join("cfg").display().to_string(),
            ),
        ],
        "testhost",
    );
    for (i, (text, valid)) in CORPUS.iter().enumerate() {
        let schema_ok = schema_errors(&v, &toml_to_json(text));
        assert_eq!(
            schema_ok.is_empty(),
            *valid,
            "schema on {text:?}: {schema_ok:?}"
        );
        let file = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let opts = oj_config::LoadOptions {
            config_files: vec![file],
            ..Default::default()
        };
        let loaded = oj_config::load(&opts, &env);
        assert_eq!(
            loaded.is_ok(),
            *valid,
            "loader on {text:?}: {:?}",
            loaded.err()
        );
    }
}
