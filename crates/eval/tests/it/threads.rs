//! Cases of several turns: each user turn sent to the same run once it has answered the one
//! before, and checked on its own answer and calls; a failure names its turn.

use chassis_core::Event;
use chassis_eval::Mode;

use crate::util::{Desk, mock, run};

/// The same three turns, expected right, then wrong in the second turn only.
const SUITE: &str = r#"
[suite]
agent = "agent.toml"

[[case]]
name = "thread"
[[case.turn]]
input = "thread: what do the notes say?"
output_contains = ["The notes say: the replica lagged 40 s"]
trajectory = [{ tool = "read_file", args = { path = "note.txt" } }]
max_steps = 2
[[case.turn]]
input = "and how long was that?"
output_contains = ["You said: and how long was that?"]
trajectory = []
max_steps = 1
[[case.turn]]
input = "read it again"
output_matches = '^Again: the replica lagged \d+ s$'
trajectory = ["read_file"]
max_steps = 2

[[case]]
name = "thread-wrong-second-turn"
[[case.turn]]
input = "thread: what do the notes say?"
output_contains = ["replica"]
[[case.turn]]
input = "and how long was that?"
output_contains = ["primary"]
trajectory = ["read_file"]
[[case.turn]]
input = "read it again"
output_contains = ["Again"]
"#;

#[tokio::test]
async fn each_turn_is_checked_on_its_own_and_a_failure_names_its_turn() {
    let mock = mock().await;
    let desk = Desk::new(&mock.base_url());
    let engine = desk.engine();
    let report = run(desk.suite(SUITE), engine.clone(), Mode::Live).await;
    let table = report.table();
    let case = |name: &str| report.cases.iter().find(|c| c.name == name).unwrap();

    let passing = case("thread");
    assert_eq!(passing.error, None, "{table}");
    assert!(passing.failures.is_empty(), "{table}");
    assert!(passing.passed, "{table}");
    // The report's figures are the whole run's: three turns of 2, 1 and 2 steps, one run.
    assert_eq!(passing.steps, 5, "{table}");
    assert_eq!(passing.tools, ["read_file", "read_file"], "{table}");
    assert_eq!(
        passing.output.as_deref(),
        Some("Again: the replica lagged 40 s")
    );
    let run_id = passing.run_id.as_deref().unwrap();
    let events: Vec<Event> = engine
        .journal()
        .load(run_id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect();
    let messages: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::UserMessage { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(messages, ["and how long was that?", "read it again"]);

    let failing = case("thread-wrong-second-turn");
    assert_eq!(failing.error, None, "{table}");
    assert!(!failing.passed, "{table}");
    let reasons: Vec<String> = failing.failures.iter().map(|f| f.to_string()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].starts_with(
            "turn 2: output_contains: output does not contain \"primary\": \"You said: and how long was that?\""
        ),
        "{reasons:?}"
    );
    assert!(
        reasons[1]
            .starts_with("turn 2: trajectory: expected 1 call(s) [read_file], the run made 0 []"),
        "{reasons:?}"
    );
    assert!(failing.failures.iter().all(|f| f.turn == Some(2)));
    // The third turn was still sent and answered, and met its expectation.
    assert_eq!(failing.status.as_deref(), Some("completed"));
    assert_eq!(
        failing.output.as_deref(),
        Some("Again: the replica lagged 40 s")
    );
    // The table and the JSON report name the turn.
    assert!(table.contains("turn 2: output_contains"), "{table}");
    let json = serde_json::to_value(&report).unwrap();
    let failed = json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "thread-wrong-second-turn")
        .unwrap();
    assert_eq!(failed["failures"][0]["turn"], 2, "{failed}");
    assert_eq!(report.metrics.passed, 1);
    assert_eq!(report.metrics.failed, 1);
    mock.shutdown().await;
}

/// [`SUITE`] without its failing case.
fn first_case_only() -> &'static str {
    SUITE
        .split("\n[[case]]\nname = \"thread-wrong-second-turn\"")
        .next()
        .unwrap()
}

/// A thread's cassette holds every turn's exchanges: replayed offline, the case passes again.
#[tokio::test]
async fn a_thread_recorded_replays_every_turn_without_the_model() {
    let suite = first_case_only();
    let mock = mock().await;
    let desk = Desk::new(&mock.base_url());
    let recorded = run(desk.suite(suite), desk.engine(), Mode::Record).await;
    assert!(recorded.cases[0].passed, "{}", recorded.table());
    mock.shutdown().await;
    let replayed = run(desk.suite(suite), desk.engine(), Mode::Replay).await;
    assert!(replayed.cases[0].passed, "{}", replayed.table());
    assert_eq!(replayed.cases[0].steps, 5);
    assert_eq!(replayed.cases[0].output, recorded.cases[0].output);
}

/// The agent allows 5 steps per run, all turns together: the fourth turn meets the limit, and
/// the fifth is not sent, which is its failure.
#[tokio::test]
async fn a_turn_after_one_that_did_not_complete_is_not_sent() {
    let suite = r#"
[suite]
agent = "agent.toml"
[[case]]
name = "too-long"
[[case.turn]]
input = "thread: what do the notes say?"
[[case.turn]]
input = "and how long was that?"
[[case.turn]]
input = "read it again"
[[case.turn]]
input = "once more"
[[case.turn]]
input = "and again"
"#;
    let mock = mock().await;
    let desk = Desk::new(&mock.base_url());
    let engine = desk.engine();
    let report = run(desk.suite(suite), engine.clone(), Mode::Live).await;
    let table = report.table();
    let case = &report.cases[0];
    assert_eq!(case.error, None, "{table}");
    let reasons: Vec<String> = case.failures.iter().map(|f| f.to_string()).collect();
    assert_eq!(reasons.len(), 2, "{table}");
    assert!(
        reasons[0].starts_with("turn 4: status: expected completed, got ")
            && reasons[0].contains("max_steps"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("turn 5: turn: not sent: turn 4 left the run "),
        "{reasons:?}"
    );
    let run_id = case.run_id.as_deref().unwrap();
    let sent = engine
        .journal()
        .load(run_id)
        .await
        .unwrap()
        .iter()
        .filter(|r| matches!(r.event, Event::UserMessage { .. }))
        .count();
    assert_eq!(sent, 3, "turns 2 to 4 were sent, the fifth was not");
    mock.shutdown().await;
}

/// A journaled thread becomes a case of as many turns, each expecting what that turn did, and
/// replays offline from the run's own exchanges.
#[tokio::test]
async fn a_journaled_thread_becomes_a_case_of_its_turns_that_replays() {
    let suite = first_case_only();
    let mock = mock().await;
    let desk = Desk::new(&mock.base_url());
    let engine = desk.engine();
    let live = run(desk.suite(suite), engine.clone(), Mode::Live).await;
    assert!(live.cases[0].passed, "{}", live.table());
    mock.shutdown().await;

    let built = chassis_eval::fixtures::from_runs(engine.journal().as_ref(), "notes-desk", 1)
        .await
        .unwrap();
    let case = &built.suite.cases[0];
    assert_eq!(case.input, None);
    let turns: Vec<(&str, Option<u32>, usize)> = case
        .turns
        .iter()
        .map(|t| {
            (
                t.input.as_str(),
                t.max_steps,
                t.trajectory.as_ref().map_or(0, Vec::len),
            )
        })
        .collect();
    assert_eq!(
        turns,
        [
            ("thread: what do the notes say?", Some(2), 1),
            ("and how long was that?", Some(1), 0),
            ("read it again", Some(2), 1),
        ]
    );
    let dir = desk.dir.path().join("from-runs");
    let path = built.write(&dir).unwrap();
    let replayed = run(
        chassis_eval::Suite::load(&path).unwrap(),
        desk.engine(),
        Mode::Replay,
    )
    .await;
    assert!(replayed.cases[0].passed, "{}", replayed.table());
    assert_eq!(replayed.cases[0].steps, 5);
}
