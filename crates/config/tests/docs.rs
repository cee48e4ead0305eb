//! The user documentation names every key and every alias, so a key added
//! to the code cannot go undocumented.

#[test]
fn every_key_and_alias_is_documented() {
    let doc = include_str!("../../../docs/configuration.md");
    for key in oj_config::keys::KEYS {
        assert!(
            doc.contains(&format!("`{}`", key.name)),
            "docs/configuration.md does not document `{}`",
            key.name
        );
    }
    for (var, _, _) in oj_config::ALIASES {
        assert!(
            doc.contains(&format!("`{var}")),
            "docs/configuration.md does not document {var}"
        );
    }
}
