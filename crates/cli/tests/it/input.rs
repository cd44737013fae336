//! A run's input as people have it: piped (`--input -`), in a file (`--input-file`), and
//! prompt variables (`--var KEY=VALUE`) over `[vars]`, on `run` and `submit`.

use std::process::Stdio;

use crate::util::{Echo, Spawned, assert_nothing_journaled, events, run, show_json};

/// The journaled `run_started` of a run.
fn started(echo: &Echo, run_id: &str) -> serde_json::Value {
    events(&show_json(&echo.db, run_id))[0].clone()
}

#[test]
fn input_comes_from_stdin_from_a_file_or_the_command_line() {
    let echo = Echo::new("");
    let mut command = echo.chassis();
    command
        .arg("run")
        .arg(&echo.spec)
        .args(["--input", "-", "--json"])
        .stdin(Stdio::piped());
    let mut child = Spawned::start(&mut command);
    child.feed(b"a question\nover two lines\n");
    let out = child.finish();
    out.expect_code(0);
    let run_id = out.json()["run_id"].as_str().expect("run id").to_string();
    assert_eq!(out.json()["output"], "echo: a question\nover two lines");
    assert_eq!(
        started(&echo, &run_id)["input"],
        "a question\nover two lines",
        "the final newline goes, the rest stays"
    );

    let file = crate::util::write(echo.dir.path(), "question.txt", "from a file\n");
    let out = run(echo
        .chassis()
        .arg("run")
        .arg(&echo.spec)
        .arg("--input-file")
        .arg(&file)
        .arg("--json"));
    out.expect_code(0);
    assert_eq!(out.json()["output"], "echo: from a file");
}

#[test]
fn vars_override_the_spec_and_leave_the_version_alone() {
    let echo = Echo::new("");
    let plain = echo.run("who are you?");
    let out = run(echo.chassis().arg("run").arg(&echo.spec).args([
        "--input",
        "who are you?",
        "--var",
        "team=payments",
        "--var",
        "unused=1",
        "--json",
    ]));
    out.expect_code(0);
    let with_var = out.json()["run_id"].as_str().expect("run id").to_string();
    let system = |run_id: &str| started(&echo, run_id)["system"].as_str().map(String::from);
    assert_eq!(
        system(&plain).as_deref(),
        Some("You are the desk of team platform. Request: who are you?")
    );
    assert_eq!(
        system(&with_var).as_deref(),
        Some("You are the desk of team payments. Request: who are you?")
    );
    assert_eq!(
        started(&echo, &plain)["version"],
        started(&echo, &with_var)["version"],
        "a run's variables are its input, not a new agent version"
    );

    // submit takes the same options; the worker drives the prompt rendered here.
    let mut command = echo.chassis();
    command
        .arg("submit")
        .arg(&echo.spec)
        .args(["--input", "-", "--var", "team=search"])
        .stdin(Stdio::piped());
    let mut child = Spawned::start(&mut command);
    child.feed(b"queued question");
    let out = child.finish();
    out.expect_code(0);
    let submitted = out.stdout.trim().to_string();
    let start = started(&echo, &submitted);
    assert_eq!(start["input"], "queued question");
    assert_eq!(
        start["system"],
        "You are the desk of team search. Request: queued question"
    );
}

#[test]
fn bad_input_options_name_the_flag_and_journal_nothing() {
    let echo = Echo::new("");
    let missing = echo.dir.path().join("missing.txt");
    let missing = missing.display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--input", "x", "--var", "team"],
            "--var team: expected KEY=VALUE",
        ),
        (vec!["--input", "x", "--var", "input=y"], "--var input=y:"),
        (
            vec!["--input", "x", "--var", "9lives=y"],
            "is not a variable name",
        ),
        (vec!["--input-file", &missing], "--input-file"),
        (vec!["--input", "-"], "--input -: stdin was empty"),
        (
            vec!["--input", "x", "--input-file", &missing],
            "--input-file",
        ),
        (vec![], "--input"),
    ];
    for (args, says) in cases {
        for command in ["run", "submit"] {
            let out = run(echo.chassis().arg(command).arg(&echo.spec).args(&args));
            out.expect_code(2);
            assert!(out.stderr.contains(says), "{command} {args:?}: {out:#?}");
        }
    }
    assert_nothing_journaled(&echo.db);
}
