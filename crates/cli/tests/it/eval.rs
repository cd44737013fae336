//! Versions, cassettes and evaluation from the command line: `run --record/--replay`,
//! `export`, `eval` (report, JUnit, baseline gate, `--from-runs`), the version in `show` and
//! `runs`, and a resume refused after the agent changed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use crate::util::{Mock, Output, chassis, python, run, runs_json, show_json, write};

/// The model reads a note and repeats it; a judge that passes everything.
const SCRIPT: &str = r#"
[[scenario]]
name = "judge"
when_input_contains = "Grade the answer of an AI agent"
[[scenario.turn]]
text = "PASS: it repeats the note."

[[scenario]]
name = "notes"
[[scenario.turn]]
tool_calls = [{ name = "read_file", arguments = { path = "note.txt" } }]
[[scenario.turn]]
text = "The notes say: {last_tool_result}"
"#;

const ANSWER: &str = "The notes say: the replica lagged 40 s";

/// An agent reading `notes/`, in a directory that also holds the journal and any cassettes.
struct Desk {
    dir: TempDir,
    db: PathBuf,
    spec: PathBuf,
}

impl Desk {
    fn new(base_url: &str) -> Desk {
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path();
        std::fs::create_dir(root.join("notes")).expect("notes directory");
        write(&root.join("notes"), "note.txt", "the replica lagged 40 s");
        write(root, "prompt.md.j2", "Answer from the notes: {{ input }}\n");
        let spec = write(
            root,
            "agent.toml",
            &format!(
                r#"[agent]
name = "eval-desk"
version = "v1"
prompt = "prompt.md.j2"

[model]
primary = "mock:desk-model"

[providers.mock]
kind = "openai"
base_url = "{base_url}"
max_attempts = 1

[[tools]]
use = "builtin:fs"
root = "notes"
only = ["read_file"]
"#
            ),
        );
        Desk {
            db: root.join("chassis.db"),
            dir,
            spec,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `chassis run SPEC --input INPUT --json` plus `args`.
    fn run(&self, input: &str, args: &[&str]) -> Output {
        run(chassis(&self.db)
            .arg("run")
            .arg(&self.spec)
            .args(["--input", input, "--json"])
            .args(args))
    }

    /// `chassis eval` plus `args`.
    fn eval(&self, args: &[&str]) -> Output {
        run(chassis(&self.db).arg("eval").args(args))
    }
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}

#[test]
fn run_records_and_replays_the_same_answer_offline() {
    let mock = Mock::start(SCRIPT, Duration::ZERO);
    let desk = Desk::new(&mock.base_url());
    let cassette = desk.path("run.json");
    let live = desk.run("what do the notes say?", &["--record", arg(&cassette)]);
    live.expect_code(0);
    assert_eq!(live.json()["output"], ANSWER);
    assert_eq!(mock.stats().requests, 2);
    drop(mock);

    let replayed = desk.run("what do the notes say?", &["--replay", arg(&cassette)]);
    replayed.expect_code(0);
    assert_eq!(replayed.json()["output"], ANSWER);
    assert!(
        !replayed.stderr.contains("not used"),
        "every exchange was served: {replayed:#?}"
    );
    let run_id = replayed.json()["run_id"].as_str().unwrap().to_string();
    let shown = show_json(&desk.db, &run_id);
    assert_eq!(shown["status"], "completed");
}

#[test]
fn a_diverging_replay_fails_with_a_diff() {
    let mock = Mock::start(SCRIPT, Duration::ZERO);
    let desk = Desk::new(&mock.base_url());
    let cassette = desk.path("run.json");
    desk.run("what do the notes say?", &["--record", arg(&cassette)])
        .expect_code(0);
    drop(mock);

    let out = run(chassis(&desk.db)
        .arg("run")
        .arg(&desk.spec)
        .args(["--input", "what do the notes say today?"])
        .args(["--replay", arg(&cassette)]));
    out.expect_code(1);
    for needle in [
        "the request diverges from the recording",
        arg(&cassette),
        "closest is exchange 1",
        "-     what do the notes say?",
        "+     what do the notes say today?",
    ] {
        assert!(out.stderr.contains(needle), "{needle:?} missing: {out:#?}");
    }
    assert!(
        out.stderr
            .contains("2 recorded exchange(s) of the cassette were not used"),
        "{out:#?}"
    );

    let missing = desk.run("x", &["--replay", arg(&desk.path("absent.json"))]);
    missing.expect_code(2);
    assert!(
        missing.stderr.contains("absent.json: cannot read"),
        "{missing:#?}"
    );
}

#[test]
fn an_exported_run_replays() {
    let mock = Mock::start(SCRIPT, Duration::ZERO);
    let desk = Desk::new(&mock.base_url());
    let live = desk.run("what do the notes say?", &[]);
    live.expect_code(0);
    drop(mock);
    let run_id = live.json()["run_id"].as_str().unwrap().to_string();
    let cassette = desk.path("exported.json");

    let out = run(chassis(&desk.db).args(["export", &run_id, "--cassette", arg(&cassette)]));
    out.expect_code(0);
    assert!(out.stderr.contains("wrote 2 exchange(s)"), "{out:#?}");
    let again = desk.path("again.json");
    let out = run(chassis(&desk.db).args(["export", &run_id, "--cassette", arg(&again), "--json"]));
    out.expect_code(0);
    assert_eq!(
        out.json(),
        serde_json::json!({ "run_id": run_id, "cassette": arg(&again), "exchanges": 2 }),
        "{out:#?}"
    );
    let replayed = desk.run("what do the notes say?", &["--replay", arg(&cassette)]);
    replayed.expect_code(0);
    assert_eq!(replayed.json()["output"], ANSWER);

    let unknown = run(chassis(&desk.db).args(["export", "run_nope", "--cassette", "x.json"]));
    unknown.expect_code(2);
}

/// The suite the README shows, from the repository's `examples/`.
fn example_suite() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo-suite/suite.toml")
}

#[test]
fn the_example_suite_passes_in_replay_with_junit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chassis.db");
    let junit = dir.path().join("junit.xml");
    let out = run(chassis(&db).args([
        "eval",
        arg(&example_suite()),
        "--replay",
        "--json",
        "--junit",
        arg(&junit),
    ]));
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["mode"], "replay");
    assert_eq!(report["metrics"]["cases"], 3);
    assert_eq!(report["metrics"]["pass_rate"], 1.0);
    for case in report["cases"].as_array().unwrap() {
        let run_id = case["run_id"].as_str().unwrap();
        assert_eq!(show_json(&db, run_id)["status"], "completed", "{case}");
    }
    // Well-formed XML, by a real parser, with a testcase per case.
    let parsed = std::process::Command::new(python())
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); \
             print(len(r.findall('./testsuite/testcase')), r.get('tests'), r.get('failures'))",
            arg(&junit),
        ])
        .output()
        .unwrap();
    assert!(parsed.status.success(), "{parsed:?}");
    assert_eq!(String::from_utf8_lossy(&parsed.stdout).trim(), "3 3 0");
}

#[test]
fn a_regression_against_the_baseline_exits_non_zero() {
    let mock = Mock::start(SCRIPT, Duration::ZERO);
    let desk = Desk::new(&mock.base_url());
    let suite = |contains: &str, gate: &str| {
        write(
            desk.dir.path(),
            "suite.toml",
            &format!(
                r#"[suite]
agent = "agent.toml"
{gate}
[[case]]
name = "repeats"
input = "what do the notes say?"
output_contains = ["{contains}"]
judge = {{ rubric = "Repeats the note." }}

[[case]]
name = "reads"
input = "what is in the note?"
trajectory = ["read_file"]
"#
            ),
        )
    };
    let baseline = desk.path("baseline.json");
    let good = suite("replica", "");
    let out = desk.eval(&[arg(&good), "--save-baseline", arg(&baseline)]);
    out.expect_code(0);
    assert!(out.stdout.contains("2/2 passed"), "{out:#?}");
    let same = desk.eval(&[arg(&good), "--baseline", arg(&baseline)]);
    same.expect_code(0);
    assert!(same.stderr.contains("no regression"), "{same:#?}");

    let worse = suite("primary", "");
    let out = desk.eval(&[arg(&worse), "--baseline", arg(&baseline)]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("regression: pass_rate: pass rate fell from 100.0% to 50.0%"),
        "{out:#?}"
    );
    assert!(
        out.stderr.contains(
            "regression: newly_failing: 1 case(s) passing in the baseline fail now: repeats"
        ),
        "{out:#?}"
    );
    assert!(
        out.stdout
            .contains("output_contains: output does not contain \"primary\"")
    );

    let tolerant = suite(
        "primary",
        "[gate]\nmax_pass_rate_drop = 0.5\nmax_newly_failing = 1\n",
    );
    desk.eval(&[arg(&tolerant), "--baseline", arg(&baseline)])
        .expect_code(0);
    // Without a baseline, any failed case fails the command.
    desk.eval(&[arg(&tolerant)]).expect_code(1);
    // A bad suite is a usage error.
    let bad = write(desk.dir.path(), "bad.toml", "[[case]]\nname = \"x\"\n");
    let out = desk.eval(&[arg(&bad)]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("bad.toml: case[0].input: missing"),
        "{out:#?}"
    );
}

#[test]
fn eval_from_runs_builds_cases_from_the_journal() {
    let mock = Mock::start(SCRIPT, Duration::ZERO);
    let desk = Desk::new(&mock.base_url());
    for input in ["first", "second", "third"] {
        desk.run(input, &[]).expect_code(0);
    }
    drop(mock);

    let out = desk.eval(&[
        "--from-runs",
        "--agent",
        "eval-desk",
        "--last",
        "2",
        "--replay",
        "--json",
    ]);
    out.expect_code(0);
    let report = out.json();
    let inputs: Vec<&str> = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["output"].as_str().unwrap())
        .collect();
    assert_eq!(inputs, vec![ANSWER, ANSWER]);
    assert_eq!(report["suite"], "runs-of-eval-desk");

    let dir = desk.path("fixtures");
    let out = desk.eval(&[
        "--from-runs",
        "--agent",
        "eval-desk",
        "--last",
        "2",
        "--write",
        arg(&dir),
    ]);
    out.expect_code(0);
    let written = std::fs::read_to_string(dir.join("suite.toml")).unwrap();
    assert_eq!(written.matches("[[case]]").count(), 2, "{written}");
    assert!(written.contains("input = \"second\""), "{written}");
    assert!(written.contains("tool = \"read_file\""), "{written}");
    desk.eval(&[arg(&dir.join("suite.toml")), "--replay"])
        .expect_code(0);

    let none = desk.eval(&["--from-runs", "--agent", "nobody"]);
    none.expect_code(2);
    assert!(
        none.stderr
            .contains("no completed or failed runs of agent `nobody`")
    );
}

#[test]
fn show_and_runs_show_the_version_and_group_by_it() {
    let mock = Mock::start(SCRIPT, Duration::ZERO);
    let desk = Desk::new(&mock.base_url());
    let first = desk.run("one", &[]);
    let first_id = first.json()["run_id"].as_str().unwrap().to_string();
    let version = show_json(&desk.db, &first_id)["version"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(version.len(), 12);
    let shown = run(chassis(&desk.db).args(["show", &first_id]));
    assert!(
        shown.stdout.contains(&format!("version  {version} (v1)")),
        "{shown:#?}"
    );

    // A new prompt is a new version; runs list and group by it.
    write(
        desk.dir.path(),
        "prompt.md.j2",
        "Answer briefly from the notes: {{ input }}\n",
    );
    desk.run("two", &[]).expect_code(0);
    desk.run("three", &[]).expect_code(0);
    let rows = runs_json(&desk.db, &[]);
    assert!(
        rows.iter()
            .all(|r| r["version"].as_str().is_some_and(|v| v.len() == 12))
    );
    let old = runs_json(&desk.db, &["--agent-version", &version[..6]]);
    assert_eq!(old.len(), 1);
    assert_eq!(old[0]["run_id"], first_id.as_str());
    let labelled = runs_json(&desk.db, &["--agent-version", "v1"]);
    assert_eq!(labelled.len(), 3, "the label was not changed");

    let groups = runs_json(&desk.db, &["--by-version"]);
    let mut counts: Vec<(String, u64)> = groups
        .iter()
        .map(|g| {
            (
                g["version"].as_str().unwrap().to_string(),
                g["runs"].as_u64().unwrap(),
            )
        })
        .collect();
    counts.sort_by_key(|(_, n)| *n);
    assert_eq!(counts.len(), 2, "{groups:?}");
    assert_eq!(counts[0], (version.clone(), 1));
    assert_eq!(counts[1].1, 2);
    let table = run(chassis(&desk.db).args(["runs", "--by-version"]));
    table.expect_code(0);
    assert!(table.stdout.starts_with("AGENT"), "{table:#?}");
    assert!(table.stdout.contains(&version), "{table:#?}");
}

#[test]
fn a_run_resumes_under_its_own_version_after_the_files_change() {
    // Nothing listens here: the model is unavailable, so the run parks (paused).
    let desk = Desk::new("http://127.0.0.1:9/v1");
    let out = desk.run("what do the notes say?", &[]);
    out.expect_code(3);
    let run_id = out.json()["run_id"].as_str().unwrap().to_string();
    let before = show_json(&desk.db, &run_id);
    let started = before["version"].as_str().unwrap().to_string();

    write(
        desk.dir.path(),
        "prompt.md.j2",
        "A changed prompt: {{ input }}\n",
    );
    // The run continues under the version it started with (kept in the journal's store), not
    // the files as they are now: still paused, as its model is still down, but not refused.
    let resumed = run(chassis(&desk.db).args(["resume", &run_id]));
    resumed.expect_code(3);
    let after = show_json(&desk.db, &run_id);
    assert_eq!(after["version"], started.as_str());
    assert!(
        after["events"].as_array().map(Vec::len) > before["events"].as_array().map(Vec::len),
        "the resume was driven: {after:#}"
    );
    // A run started now runs the new version.
    let out = desk.run("what do the notes say?", &[]);
    let newer = show_json(&desk.db, out.json()["run_id"].as_str().unwrap());
    assert_ne!(newer["version"], started.as_str());
}
