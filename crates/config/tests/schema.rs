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
