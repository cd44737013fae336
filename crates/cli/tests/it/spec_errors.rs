//! A bad agent spec exits with code 2, names the file and the line or key at fault and what is
//! wrong, and journals nothing.

use std::path::PathBuf;
use std::time::Duration;

use tempfile::TempDir;

use crate::util::{Mock, assert_nothing_journaled, chassis, run, write};

/// A valid spec; each case below breaks it in exactly one place.
const BASE: &str = r#"[agent]
name = "broken"
prompt = "prompt.md.j2"

[model]
primary = "mock:m"
max_tokens = 64

[providers.mock]
kind = "openai"
base_url = "BASE_URL"
"#;

/// A base URL nothing listens on: a spec error must stop the run before any model call.
const UNUSED_URL: &str = "http://127.0.0.1:9/v1";

/// A fresh directory with `spec` as `agent.toml` (and the prompt it names, unless told not to).
struct Case {
    dir: TempDir,
    spec: PathBuf,
}

impl Case {
    fn new(spec: &str, with_prompt: bool) -> Case {
        let dir = tempfile::tempdir().expect("temporary directory");
        if with_prompt {
            write(dir.path(), "prompt.md.j2", "You are a test agent.\n");
        }
        let spec = write(dir.path(), "agent.toml", spec);
        Case { dir, spec }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("j.db")
    }

    /// Runs the spec; asserts exit code 2, an empty stdout, a stderr naming the spec file
    /// and every one of `needles`, and an untouched journal.
    #[track_caller]
    fn expect_error(&self, needles: &[&str]) {
        let out = run(chassis(&self.db())
            .arg("run")
            .arg(&self.spec)
            .args(["--input", "hello"]));
        assert_eq!(out.code, Some(2), "a bad spec is a usage error: {out:#?}");
        assert_eq!(out.stdout, "", "nothing on stdout: {out:#?}");
        let spec = self.spec.display().to_string();
        assert!(
            out.stderr.contains(&spec),
            "stderr must name the spec file {spec}: {out:#?}"
        );
        for needle in needles {
            assert!(
                out.stderr.contains(needle),
                "stderr must say {needle:?}: {out:#?}"
            );
        }
        assert_nothing_journaled(&self.db());
    }
}

fn base() -> String {
    BASE.replace("BASE_URL", UNUSED_URL)
}

/// `line N`, N being the 1-based line of `spec` that contains `text`.
fn line_of(spec: &str, text: &str) -> String {
    let index = spec
        .lines()
        .position(|line| line.contains(text))
        .unwrap_or_else(|| panic!("{text:?} is not in the spec"));
    format!("line {}", index + 1)
}

#[test]
fn the_base_spec_is_valid() {
    let mock = Mock::start(
        "[[scenario]]\n[[scenario.turn]]\ntext = \"hi {input}\"\n",
        Duration::ZERO,
    );
    let case = Case::new(&BASE.replace("BASE_URL", &mock.base_url()), true);
    let out = run(chassis(&case.db())
        .arg("run")
        .arg(&case.spec)
        .args(["--input", "there", "-q"]));
    out.expect_code(0);
    assert_eq!(out.stdout, "hi there\n");
}

#[test]
fn toml_syntax_error_names_the_line() {
    let spec = base().replace("max_tokens = 64", "max_tokens = 64 64");
    let case = Case::new(&spec, true);
    case.expect_error(&["TOML parse error", &line_of(&spec, "max_tokens")]);
}

#[test]
fn unknown_key_names_the_line_and_the_key() {
    let spec = base().replace(
        "name = \"broken\"\n",
        "name = \"broken\"\nnmae = \"typo\"\n",
    );
    let case = Case::new(&spec, true);
    case.expect_error(&[&line_of(&spec, "nmae"), "unknown field `nmae`"]);
}

#[test]
fn missing_prompt_file_names_the_key_and_the_file() {
    let case = Case::new(&base(), false);
    let prompt = case.dir.path().join("prompt.md.j2");
    case.expect_error(&[
        "agent.prompt",
        "cannot read prompt template",
        &prompt.display().to_string(),
    ]);
}

#[test]
fn unknown_provider_names_the_key() {
    let case = Case::new(
        &base().replace("primary = \"mock:m\"", "primary = \"nope:m\""),
        true,
    );
    case.expect_error(&["model.primary", "unknown provider `nope`"]);
}

#[test]
fn fs_tool_without_root_names_the_key() {
    let case = Case::new(
        &format!("{}\n[[tools]]\nuse = \"builtin:fs\"\n", base()),
        true,
    );
    case.expect_error(&["tools[0].root", "builtin:fs needs `root`"]);
}

#[test]
fn fs_tool_with_a_missing_root_directory_names_the_key() {
    let case = Case::new(
        &format!(
            "{}\n[[tools]]\nuse = \"builtin:fs\"\nroot = \"no-such-dir\"\n",
            base()
        ),
        true,
    );
    case.expect_error(&["tools[0].root", "no-such-dir"]);
}

#[test]
fn command_tool_with_an_unknown_risk_class_names_the_key() {
    let case = Case::new(
        &format!(
            "{}\n[[tools]]\nname = \"t\"\ncommand = [\"echo\"]\nrisk = \"scary\"\n",
            base()
        ),
        true,
    );
    case.expect_error(&["tools[0].risk", "unknown risk class `scary`"]);
}

#[test]
fn command_tool_with_a_missing_program_names_the_key() {
    let case = Case::new(
        &format!(
            "{}\n[[tools]]\nname = \"t\"\ncommand = [\"./no-such-tool.py\"]\nrisk = \"read_only\"\n",
            base()
        ),
        true,
    );
    case.expect_error(&["tools[0].command", "no-such-tool.py"]);
}

#[test]
fn wrong_type_names_the_line_and_the_type() {
    let spec = base().replace("max_tokens = 64", "max_tokens = \"many\"");
    let case = Case::new(&spec, true);
    case.expect_error(&[
        &line_of(&spec, "max_tokens"),
        "invalid type: string \"many\", expected u32",
    ]);
}

#[test]
fn a_spec_file_that_does_not_exist_is_named() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spec = dir.path().join("missing.toml");
    let db = dir.path().join("j.db");
    let out = run(chassis(&db)
        .arg("run")
        .arg(&spec)
        .args(["--input", "hello"]));
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(
        out.stderr.contains(&spec.display().to_string()) && out.stderr.contains("cannot read"),
        "{out:#?}"
    );
    assert_nothing_journaled(&db);
}

#[test]
fn a_redact_env_value_too_short_to_redact_is_refused_by_key() {
    let case = Case::new(
        &format!(
            "{}\n[redact]\nenv = [\"HOSTILE_LONG_SECRET\", \"HOSTILE_SHORT_SECRET\"]\n",
            base()
        ),
        true,
    );
    let out = run(chassis(&case.db())
        .env("HOSTILE_LONG_SECRET", "long-enough-secret")
        .env("HOSTILE_SHORT_SECRET", "s3cr7")
        .arg("run")
        .arg(&case.spec)
        .args(["--input", "hello"]));
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(
        out.stderr
            .contains("redact.env[1]: the value of HOSTILE_SHORT_SECRET is 5 bytes long"),
        "{out:#?}"
    );
    assert!(
        !out.stderr.contains("s3cr7"),
        "the value is never shown: {out:#?}"
    );
    assert_nothing_journaled(&case.db());
}

#[test]
fn a_duration_too_long_for_a_timeout_names_the_key() {
    let case = Case::new(
        &format!(
            "{}\n[[tools]]\nname = \"t\"\ncommand = [\"echo\"]\ntimeout = \"99999999999999999999s\"\n",
            base()
        ),
        true,
    );
    case.expect_error(&["tools[0].timeout", "too long"]);
}
