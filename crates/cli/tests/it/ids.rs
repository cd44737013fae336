//! Runs named as people type them (a unique prefix of the id, `last`), and the journal found
//! from any directory of a project, as git finds `.git`.

use serde_json::Value;

use crate::util::{Echo, chassis_in, events, run, runs_json, show_json};

#[test]
fn a_unique_prefix_or_last_names_a_run_wherever_a_run_is_taken() {
    let echo = Echo::new("");
    let first = echo.run("first question");
    let second = echo.run("second question");
    // Ids share their time prefix; the tails differ.
    let common = first
        .chars()
        .zip(second.chars())
        .take_while(|(a, b)| a == b)
        .count();
    let first_prefix = &first[..=common];
    let second_bare = &second["run_".len()..=common];

    let out = run(echo.chassis().args(["show", first_prefix, "--json"]));
    out.expect_code(0);
    assert_eq!(out.json()["run_id"], first.as_str());
    let out = run(echo
        .chassis()
        .args(["show", &second_bare.to_uppercase(), "--json"]));
    out.expect_code(0);
    assert_eq!(
        out.json()["run_id"],
        second.as_str(),
        "without run_, any case"
    );
    let out = run(echo.chassis().args(["show", "last", "--json"]));
    out.expect_code(0);
    assert_eq!(out.json()["run_id"], second.as_str(), "last is the newest");

    let out = run(echo.chassis().args(["trace", "last", "--json"]));
    out.expect_code(0);
    assert_eq!(out.json()["run_id"], second.as_str());
    let cassette = echo.dir.path().join("first.json");
    let out = run(echo
        .chassis()
        .args(["export", first_prefix, "--cassette"])
        .arg(&cassette));
    out.expect_code(0);
    assert!(out.stderr.contains(&first), "{out:#?}");
    let out = run(echo.chassis().args(["resume", first_prefix, "--json"]));
    out.expect_code(0);
    assert_eq!(out.json()["run_id"], first.as_str());
    // The approval commands resolve the run before anything else: the error is about the
    // run the prefix names, not about an unknown id.
    let out = run(echo
        .chassis()
        .args(["reject", first_prefix, "call_x", "--reason", "no"]));
    out.expect_code(2);
    assert!(
        out.stderr.contains(&first) && !out.stderr.contains("not found"),
        "{out:#?}"
    );

    let shared = &first[..common];
    let out = run(echo.chassis().args(["show", shared]));
    out.expect_code(2);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr
            .contains(&format!("run id `{shared}` is ambiguous"))
            && out.stderr.contains(&first)
            && out.stderr.contains(&second),
        "the candidates are listed: {out:#?}"
    );
    let out = run(echo.chassis().args(["trace", "run_zzz"]));
    out.expect_code(2);
    assert!(out.stderr.contains("run run_zzz not found"), "{out:#?}");
}

#[test]
fn last_in_an_empty_journal_says_so() {
    let echo = Echo::new("");
    run(echo.chassis().args(["db", "migrate"])).expect_code(0);
    let out = run(echo.chassis().args(["show", "last"]));
    out.expect_code(2);
    assert!(out.stderr.contains("holds no runs"), "{out:#?}");
}

#[test]
fn the_nearest_chassis_directory_above_holds_the_journal() {
    let echo = Echo::new("");
    let project = echo.dir.path();
    std::fs::create_dir(project.join(".chassis")).expect("create .chassis");
    let deep = project.join("src/deep");
    std::fs::create_dir_all(&deep).expect("create subdirectories");

    let out =
        run(chassis_in(&deep)
            .arg("run")
            .arg(&echo.spec)
            .args(["--input", "from below", "--json"]));
    out.expect_code(0);
    let run_id = out.json()["run_id"].as_str().expect("run id").to_string();
    let journal = project.join(".chassis/chassis.db");
    assert!(journal.is_file(), "the project's journal was used");
    assert!(!deep.join(".chassis").exists(), "no journal beside the cwd");
    let runs = runs_json(&journal, &[]);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["run_id"], run_id.as_str());

    // Every command finds it, from anywhere in the project.
    let out = run(chassis_in(&project.join("src")).args(["show", "last", "--json"]));
    out.expect_code(0);
    assert_eq!(out.json()["run_id"], run_id.as_str());
    assert_eq!(
        events(&show_json(&journal, &run_id))[0]["input"],
        Value::from("from below")
    );

    // --db and CHASSIS_DB win over discovery.
    let elsewhere = project.join("elsewhere.db");
    let out = run(chassis_in(&deep)
        .env("CHASSIS_DB", &elsewhere)
        .arg("run")
        .arg(&echo.spec)
        .args(["--input", "elsewhere"]));
    out.expect_code(0);
    assert_eq!(runs_json(&elsewhere, &[]).len(), 1);
    assert_eq!(runs_json(&journal, &[]).len(), 1);

    // Outside any project, the journal is ./.chassis/chassis.db.
    let outside = tempfile::tempdir().expect("temporary directory");
    let out = run(chassis_in(outside.path())
        .arg("run")
        .arg(&echo.spec)
        .args(["--input", "outside"]));
    out.expect_code(0);
    assert!(outside.path().join(".chassis/chassis.db").is_file());
}
