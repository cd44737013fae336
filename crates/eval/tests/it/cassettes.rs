//! Cassettes with real runs: record then replay offline, divergence, journal export.

use std::collections::BTreeMap;

use chassis_engine::Agent;
use chassis_eval::cassette::{Cassette, DIVERGED, TOOL_DIVERGED};
use chassis_eval::suite::Cassettes;
use chassis_eval::{Mode, record_into, replay_from};

use crate::util::{ANSWER, Desk, mock, run};

const SUITE: &str = r#"
[suite]
agent = "agent.toml"
[[case]]
name = "notes"
input = "what do the notes say?"
output_contains = ["replica"]
trajectory = [{ tool = "read_file", args = { path = "note.txt" } }]
"#;

#[tokio::test]
async fn record_then_replay_gives_the_same_run_without_the_network() {
    let mock = mock().await;
    let desk = Desk::new(&mock.base_url());
    let engine = desk.engine();
    let recorded = run(desk.suite(SUITE), engine.clone(), Mode::Record).await;
    assert!(recorded.all_passed(), "{}", recorded.table());
    let requests = mock.stats().requests;
    assert_eq!(requests, 2, "two steps were recorded");
    mock.shutdown().await;

    let replayed = run(desk.suite(SUITE), engine.clone(), Mode::Replay).await;
    assert!(replayed.all_passed(), "{}", replayed.table());
    let (a, b) = (&recorded.cases[0], &replayed.cases[0]);
    assert_eq!(b.output.as_deref(), Some(ANSWER));
    assert_eq!(a.output, b.output);
    assert_eq!(
        (a.steps, a.cost_usd, &a.tools),
        (b.steps, b.cost_usd, &b.tools)
    );
    assert_eq!(a.version, b.version);
    assert_ne!(
        a.run_id, b.run_id,
        "each is a run of its own in the journal"
    );
}

#[tokio::test]
async fn a_diverging_request_fails_the_run_with_a_diff() {
    let mock = mock().await;
    let desk = Desk::new(&mock.base_url());
    let cassette = desk.dir.path().join("run.json");
    let engine = desk.engine();
    let mut agent = Agent::load(&desk.spec()).await.unwrap();
    let recorder = record_into(&mut agent, &cassette).unwrap();
    let outcome = engine
        .start(&agent, "what do the notes say?")
        .await
        .unwrap();
    assert_eq!(outcome.output.as_deref(), Some(ANSWER));
    assert_eq!(recorder.len(), 2);
    drop(agent);
    mock.shutdown().await;

    let mut agent = Agent::load(&desk.spec()).await.unwrap();
    let replay = replay_from(&mut agent, &cassette, chassis_eval::LiveTools::None).unwrap();
    let outcome = engine
        .start(&agent, "what do the notes say now?")
        .await
        .unwrap();
    let reason = outcome.reason.expect("the run failed with a reason");
    assert!(reason.contains(DIVERGED), "{reason}");
    assert!(
        reason.contains(&cassette.display().to_string()),
        "names the cassette: {reason}"
    );
    assert!(
        reason.contains("-     what do the notes say?\n+     what do the notes say now?"),
        "shows the recorded and the actual line: {reason}"
    );
    assert_eq!(replay.unused(), 2);
}

#[tokio::test]
async fn an_exported_journal_replays() {
    let mock = mock().await;
    let desk = Desk::new(&mock.base_url());
    let engine = desk.engine();
    let live = run(desk.suite(SUITE), engine.clone(), Mode::Live).await;
    assert!(live.all_passed(), "{}", live.table());
    mock.shutdown().await;

    let run_id = live.cases[0].run_id.clone().unwrap();
    let records = engine.journal().load(&run_id).await.unwrap();
    // Each case is a real run in the journal, tagged with its suite and case.
    let state = engine.load(&run_id).await.unwrap();
    assert_eq!(
        state.tags.get("eval.case").map(String::as_str),
        Some("notes")
    );
    assert!(state.tags.contains_key("eval.suite"), "{:?}", state.tags);
    let cassette = Cassette::from_events(records.iter().map(|r| &r.event)).unwrap();
    assert_eq!(cassette.exchanges.len(), 2);
    let mut suite = desk.suite(SUITE);
    suite.cassettes = Cassettes::Memory(BTreeMap::from([("notes".to_string(), cassette)]));
    let replayed = run(suite, engine, Mode::Replay).await;
    assert!(replayed.all_passed(), "{}", replayed.table());
    assert_eq!(replayed.cases[0].output, live.cases[0].output);
}

#[tokio::test]
async fn a_missing_cassette_is_an_error_of_the_case() {
    let desk = Desk::new(crate::util::nowhere());
    let report = run(desk.suite(SUITE), desk.engine(), Mode::Replay).await;
    let case = &report.cases[0];
    assert!(!case.passed);
    let error = case.error.as_deref().unwrap_or_default();
    assert!(error.starts_with("no cassette at "), "{error}");
    assert!(error.ends_with("(record one with --record)"), "{error}");
    assert_eq!(case.run_id, None, "nothing was started");
    assert_eq!(report.metrics.errors, 1);
}

#[tokio::test]
async fn a_stale_cassette_is_an_error_with_the_diff() {
    let mock = mock().await;
    let desk = Desk::new(&mock.base_url());
    let recorded = run(desk.suite(SUITE), desk.engine(), Mode::Record).await;
    assert!(recorded.all_passed(), "{}", recorded.table());
    mock.shutdown().await;

    std::fs::write(
        desk.dir.path().join("prompt.md.j2"),
        "Answer briefly: {{ input }}\n",
    )
    .unwrap();
    let replayed = run(desk.suite(SUITE), desk.engine(), Mode::Replay).await;
    let case = &replayed.cases[0];
    let error = case.error.as_deref().unwrap_or_default();
    assert!(error.starts_with("replay: "), "{error}");
    assert!(error.contains(DIVERGED), "{error}");
    assert!(
        error.contains("+     Answer briefly: what do the notes say?"),
        "{error}"
    );
    assert_eq!(case.failures, vec![], "the error says it all");
    assert_ne!(
        case.version, recorded.cases[0].version,
        "a new agent version"
    );
}

/// An agent with an irreversible tool that leaves a mark on disk each time it runs.
fn marking_agent(desk: &Desk, base_url: &str) -> std::path::PathBuf {
    let marker = desk.dir.path().join("marker.txt");
    let spec = format!(
        r#"[agent]
name = "marker"
prompt = "prompt.md.j2"

[model]
primary = "mock:desk-model"

[providers.mock]
kind = "openai"
base_url = "{base_url}"
max_attempts = 1

[approvals.tools]
mark = "auto"

[[tools]]
name = "mark"
description = "Leaves a mark; cannot be undone"
command = ["python3", "-c", "import sys; open(sys.argv[1], 'a').write('x'); print('marked')", {marker:?}]
args_schema = {{ type = "object", properties = {{ note = {{ type = "string" }} }} }}
risk = "irreversible"
"#,
        marker = marker.display().to_string(),
    );
    let path = desk.dir.path().join("marker.toml");
    std::fs::write(&path, spec).unwrap();
    path
}

/// A replay is offline and has no effects: the irreversible tool's result comes from the
/// cassette, also from an old cassette that kept results only inside its requests and with
/// read-only tools live; a call the cassette lacks is refused with a diff and never runs.
#[tokio::test]
async fn a_replay_never_runs_an_irreversible_tool() {
    let mock = mock().await;
    let desk = Desk::new(&mock.base_url());
    let spec = marking_agent(&desk, &mock.base_url());
    let marker = desk.dir.path().join("marker.txt");
    let cassette = desk.dir.path().join("marked.json");
    let engine = desk.engine();

    let mut agent = Agent::load(&spec).await.unwrap();
    let recorder = record_into(&mut agent, &cassette).unwrap();
    let recorded = engine.start(&agent, "mark it").await.unwrap();
    assert_eq!(recorded.output.as_deref(), Some("Marked: marked"));
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "x",
        "the recording ran it"
    );
    assert_eq!(recorder.len(), 2);
    drop(agent);
    mock.shutdown().await;
    std::fs::remove_file(&marker).unwrap();

    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cassette).unwrap()).unwrap();
    assert_eq!(saved["cassette"], 2);
    assert_eq!(saved["tool_results"][0]["tool"], "mark");
    assert_eq!(saved["tool_results"][0]["content"], "marked");
    // The same recording as format 1 wrote it: results only inside the requests.
    let mut old = saved.clone();
    old["cassette"] = 1.into();
    old.as_object_mut().unwrap().remove("tool_results");
    let old_cassette = desk.dir.path().join("old.json");
    std::fs::write(&old_cassette, old.to_string()).unwrap();

    for (path, live) in [
        (&cassette, chassis_eval::LiveTools::None),
        (&cassette, chassis_eval::LiveTools::ReadOnly),
        (&old_cassette, chassis_eval::LiveTools::None),
    ] {
        let mut agent = Agent::load(&spec).await.unwrap();
        let replay = replay_from(&mut agent, path, live).unwrap();
        let replayed = engine.start(&agent, "mark it").await.unwrap();
        assert_eq!(
            replayed.output.as_deref(),
            Some("Marked: marked"),
            "{path:?} {live:?}: {replayed:?}"
        );
        assert!(
            !marker.exists(),
            "{path:?} {live:?}: the replay ran the tool"
        );
        assert_eq!(replay.tool_divergence(), None);
    }

    // A call the cassette has no result for: refused, the run fails, nothing ran.
    let mut other = saved.clone();
    other["tool_results"][0]["args"]["note"] = "mark something else".into();
    std::fs::write(&cassette, other.to_string()).unwrap();
    let mut agent = Agent::load(&spec).await.unwrap();
    let replay = replay_from(&mut agent, &cassette, chassis_eval::LiveTools::ReadOnly).unwrap();
    let outcome = engine.start(&agent, "mark it").await.unwrap();
    assert!(!marker.exists(), "a call missing from the cassette ran");
    assert_eq!(
        outcome.status,
        chassis_core::RunStatus::Failed,
        "{outcome:?}"
    );
    let divergence = replay.tool_divergence().expect("the call diverged");
    assert!(divergence.starts_with(TOOL_DIVERGED), "{divergence}");
    assert!(
        divergence.contains("-   \"note\": \"mark something else\"")
            && divergence.contains("+   \"note\": \"mark it\""),
        "shows the recorded and the actual arguments: {divergence}"
    );
}
