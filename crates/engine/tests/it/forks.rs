//! Forks: a new run from the first events of another; nothing copied runs again, and a call
//! the prefix started without an outcome is an unknown outcome, as on resume.

use std::net::SocketAddr;
use std::sync::Arc;

use chassis_core::{Event, RunStatus};
use chassis_engine::{Agent, Engine, Error};
use chassis_mock::{MockConfig, Script};
use chassis_store::{Journal, ListFilter, SqliteJournal, Sync};

use crate::{python, python_tool, write};

const SCRIPT: &str = r#"
[[scenario]]
[[scenario.turn]]
tool_calls = [{ name = "record", arguments = { line = "{input}" } }]
[[scenario.turn]]
text = "done: {last_tool_result}"
[[scenario.turn]]
text = "you said {last_user}"
"#;

/// Irreversible: appends its line to the ledger.
const RECORD: &str = r#"
import json, sys
args = json.load(sys.stdin)
with open(sys.argv[1], "a") as ledger:
    ledger.write(args["line"] + "\n")
print("recorded " + args["line"])
"#;

#[tokio::test]
async fn a_fork_copies_a_prefix_runs_nothing_again_and_finds_unfinished_calls_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mock = chassis_mock::start(
        MockConfig::default(),
        Script::from_toml_str(SCRIPT).unwrap(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    write(&root.join("prompt.j2"), "Record what you are told.");
    python_tool(root, "record", RECORD);
    let ledger = root.join("ledger.txt");
    write(
        &root.join("agent.toml"),
        &format!(
            r#"
[agent]
name = "recorder"
prompt = "prompt.j2"
[model]
primary = "m:model"
[providers.m]
kind = "openai"
base_url = "{}"
[approvals]
irreversible = "auto"
[[tools]]
name = "record"
description = "Record a line"
command = ["{}", "tools/record.py", "{}"]
args_schema = {{ type = "object", properties = {{ line = {{ type = "string" }} }}, required = ["line"] }}
risk = "irreversible"
"#,
            mock.base_url(),
            python(),
            ledger.display()
        ),
    );
    let agent = Agent::load(&root.join("agent.toml")).await.unwrap();
    let journal: Arc<dyn Journal> =
        Arc::new(SqliteJournal::open(&root.join("j.db"), Sync::Normal).unwrap());
    let engine = Engine::new(Arc::clone(&journal));
    let ledger_lines = || {
        std::fs::read_to_string(&ledger)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let events = |run: String| {
        let journal = Arc::clone(&journal);
        async move {
            journal
                .load(&run)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.event)
                .collect::<Vec<Event>>()
        }
    };

    let original = engine.start(&agent, "alpha").await.unwrap();
    assert_eq!(original.output.as_deref(), Some("done: recorded alpha"));
    assert_eq!(ledger_lines(), 1);
    let journaled = events(original.run_id.clone()).await;
    let seq_of = |kind: &str| journaled.iter().position(|e| e.kind() == kind).unwrap() as u64 + 1;

    // After the call's result: the fork asks the model again and never runs the tool.
    let after_result = engine
        .fork(&original.run_id, seq_of("tool_finished"), None, "alice")
        .await
        .unwrap();
    let copied = events(after_result.clone()).await;
    assert_eq!(copied.len() as u64, seq_of("tool_finished"));
    let Event::RunStarted(start) = &copied[0] else {
        panic!("a fork opens with run_started");
    };
    let from = start.forked_from.as_ref().unwrap();
    assert_eq!(
        (from.run.as_str(), from.seq),
        (original.run_id.as_str(), seq_of("tool_finished"))
    );
    assert_eq!(copied[1..], journaled[1..copied.len()]);
    let done = engine.resume(&after_result).await.unwrap();
    assert_eq!(done.output.as_deref(), Some("done: recorded alpha"));
    assert_eq!(ledger_lines(), 1, "the copied call did not run again");

    // Right after the intent, without its outcome: unknown, as a resume after a crash finds it.
    let mid_call = engine
        .fork(&original.run_id, seq_of("tool_started"), None, "alice")
        .await
        .unwrap();
    let stopped = engine.resume(&mid_call).await.unwrap();
    assert_eq!(stopped.status, RunStatus::Waiting, "{stopped:?}");
    assert!(
        events(mid_call.clone())
            .await
            .iter()
            .any(|e| matches!(e, Event::ToolOutcomeUnknown { .. }))
    );
    assert_eq!(ledger_lines(), 1, "an unknown outcome is never repeated");

    // At the end, with a new message: a new turn of the copied conversation.
    let len = journaled.len() as u64;
    let continued = engine
        .fork(&original.run_id, len, Some("beta"), "alice")
        .await
        .unwrap();
    let answer = engine.resume(&continued).await.unwrap();
    assert_eq!(answer.output.as_deref(), Some("you said beta"));
    // The original is untouched.
    assert_eq!(events(original.run_id.clone()).await, journaled);

    // Listed by their original.
    let mut forks: Vec<String> = journal
        .list(&ListFilter {
            forked_from: Some(original.run_id.clone()),
            ..ListFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.run_id)
        .collect();
    forks.sort();
    let mut expected = vec![after_result, mid_call, continued];
    expected.sort();
    assert_eq!(forks, expected);

    // Refused, creating nothing: out of range, a completed prefix without a message, a
    // message while a call waits for its result.
    let before = journal.list(&ListFilter::default()).await.unwrap().len();
    for at in [0, len + 1] {
        let err = engine
            .fork(&original.run_id, at, None, "alice")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
    }
    let err = engine
        .fork(&original.run_id, len, None, "alice")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("completed"), "{err}");
    let err = engine
        .fork(
            &original.run_id,
            seq_of("tool_started"),
            Some("hi"),
            "alice",
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no result yet"), "{err}");
    assert_eq!(
        journal.list(&ListFilter::default()).await.unwrap().len(),
        before
    );
}
