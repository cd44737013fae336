//! Loading scripts from files.

use std::io::Write as _;

use chassis_mock::{Error, Script};

fn file(suffix: &str, text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(suffix).tempfile().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[test]
fn loads_toml_and_json_by_extension() {
    let toml = file(".toml", crate::SCRIPT);
    Script::from_path(toml.path()).unwrap();
    let json = file(
        ".json",
        r#"{"scenario":[{"name":"j","turn":[{"text":"hi"}]}]}"#,
    );
    Script::from_path(json.path()).unwrap();
    // Without a known extension the file is read as TOML.
    let other = file(".script", crate::SCRIPT);
    Script::from_path(other.path()).unwrap();
}

#[test]
fn errors_name_the_file_and_the_place() {
    let bad = file(
        ".toml",
        "[[scenario]]\nname = \"x\"\n[[scenario.turn]]\ntext = 5\n",
    );
    let err = Script::from_path(bad.path()).unwrap_err();
    assert!(matches!(err, Error::Syntax { line: 4, .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("script {}: line 4, column ", bad.path().display())),
        "{message}"
    );

    let invalid = file(".json", r#"{"scenario":[{"name":"n","turn":[{}]}]}"#);
    let message = Script::from_path(invalid.path()).unwrap_err().to_string();
    assert_eq!(
        message,
        format!(
            "script {}: scenario[0] `n`, turn[0]: has neither `text` nor `tool_calls`",
            invalid.path().display()
        )
    );
}
