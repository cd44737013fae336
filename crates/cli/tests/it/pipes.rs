//! A reader that stops reading early (`chassis runs | head -1`) never makes chassis panic:
//! every command exits with its own code and prints nothing about it.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::util::{COMMAND_TIMEOUT, Echo, chassis, run, runs_json};

/// How a command ended whose stdout (and, with `stderr_too`, stderr) is a pipe nobody reads:
/// the reading end is closed before the command starts, so its first write fails with EPIPE.
fn with_reader_gone(command: &mut Command, stderr_too: bool) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let (mut errors, error_writer) = std::io::pipe().expect("a pipe for stderr");
    command.stdout(writer);
    if stderr_too {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        command.stderr(writer);
        drop(error_writer);
    } else {
        command.stderr(error_writer);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    // The parent's copies of the write ends go, so reading stderr ends when the child does.
    command.stdout(Stdio::null()).stderr(Stdio::null());
    let mut stderr = String::new();
    if !stderr_too {
        errors.read_to_string(&mut stderr).expect("stderr is UTF-8");
    }
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("wait for chassis") {
            return (status.code(), stderr);
        }
        assert!(Instant::now() < deadline, "{command:?} did not end");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn every_command_exits_quietly_when_its_reader_has_gone() {
    let echo = Echo::new("");
    let first = echo.run("first question");
    echo.run("second question");
    let prefix = &first[..first.len() - 4];
    let spec = echo.spec.display().to_string();
    let db = echo.db.display().to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["runs"],
        vec!["runs", "--json"],
        vec!["runs", "--by-version"],
        vec!["show", "last"],
        vec!["show", prefix],
        vec!["show", "last", "--json"],
        vec!["trace", "last"],
        vec!["approvals"],
        vec!["stats"],
        vec!["check", &spec],
        vec!["completions", "bash"],
        vec!["completions", "zsh"],
        vec!["--help"],
        vec!["runs", "--help"],
        vec!["db", "migrate"],
        vec!["run", &spec, "--input", "third question"],
        vec!["run", &spec, "--input", "fourth question", "--json"],
        vec!["resume", "last"],
    ];
    for args in &commands {
        let (code, stderr) = with_reader_gone(chassis(&echo.db).args(args), false);
        assert_eq!(
            code,
            Some(0),
            "chassis --db {db} {} exits as it would have: {stderr}",
            args.join(" ")
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "chassis {}: {stderr}",
            args.join(" ")
        );
    }
    // With stderr gone too, a run still runs to its end and is journaled.
    let (code, _) = with_reader_gone(
        chassis(&echo.db)
            .arg("run")
            .arg(&echo.spec)
            .args(["--input", "nobody listens"]),
        true,
    );
    assert_eq!(code, Some(0));
    let runs = runs_json(&echo.db, &[]);
    assert_eq!(runs.len(), 5, "{runs:#?}");
    assert!(runs.iter().all(|r| r["status"] == "completed"), "{runs:#?}");
    // The same commands with a reader print what they always did.
    let out = run(chassis(&echo.db).args(["show", prefix]));
    out.expect_code(0);
    assert!(out.stdout.contains(&first), "{out:#?}");
}
