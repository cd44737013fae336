//! Graceful degradation: when every model is down the run parks, and resume continues it.

use std::net::SocketAddr;
use std::sync::Arc;

use chassis_core::{Event, RunStatus};
use chassis_engine::{Agent, Engine};
use chassis_mock::{FaultKind, MockConfig, Script};
use chassis_store::{Journal, SqliteJournal, Sync};

use crate::write;

const SCRIPT: &str = r#"
[[scenario]]
[[scenario.turn]]
tool_calls = [{ name = "list_dir", arguments = { path = "." } }]
[[scenario.turn]]
text = "files: {last_tool_result}"
"#;

fn spec(primary: &str, fallback: &str) -> String {
    format!(
        r#"
[agent]
name = "degrade"
prompt = "prompt.j2"
[model]
primary = "a:m1"
fallbacks = ["b:m2"]
timeout = "2s"
[providers.a]
kind = "openai"
base_url = "{primary}"
max_attempts = 2
retry_base_delay = "10ms"
breaker_threshold = 50
[providers.b]
kind = "openai"
base_url = "{fallback}"
max_attempts = 2
retry_base_delay = "10ms"
breaker_threshold = 50
[[tools]]
use = "builtin:fs"
root = "data"
only = ["list_dir"]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_model_down_parks_the_run_and_resume_continues_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(&root.join("prompt.j2"), "List the files.");
    write(&root.join("data/a.txt"), "a");
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let down = MockConfig {
        fault_rate: 1.0,
        faults: vec![FaultKind::Unavailable],
        ..MockConfig::default()
    };
    let script = || Script::from_toml_str(SCRIPT).unwrap();
    let dead_a = chassis_mock::start(down.clone(), script(), local)
        .await
        .unwrap();
    let dead_b = chassis_mock::start(down, script(), local).await.unwrap();

    let spec_path = root.join("agent.toml");
    write(&spec_path, &spec(&dead_a.base_url(), &dead_b.base_url()));
    let journal: Arc<dyn Journal> =
        Arc::new(SqliteJournal::open(&root.join("j.db"), Sync::Normal).unwrap());
    let engine = Engine::new(Arc::clone(&journal));
    let agent = Agent::load(&spec_path).await.unwrap();
    let outcome = engine.start(&agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Paused, "{outcome:?}");
    let reason = outcome.reason.clone().unwrap();
    assert!(reason.contains("every model is unavailable"), "{reason}");
    assert!(reason.contains("HTTP 503"), "{reason}");

    let events: Vec<Event> = journal
        .load(&outcome.run_id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect();
    let attempts = events
        .iter()
        .filter(|e| matches!(e, Event::ModelAttemptFailed { .. }))
        .count();
    assert_eq!(
        attempts, 4,
        "two attempts on each of two models: {events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ModelFallback { .. }))
    );
    assert!(matches!(events.last(), Some(Event::RunPaused { .. })));

    // Resuming while the models are still down parks it again, losing nothing.
    let again = engine.resume(&outcome.run_id).await.unwrap();
    assert_eq!(again.status, RunStatus::Paused);

    // Pointing the agent at another endpoint makes it another version; the run keeps its own
    // (kept in the store when it started), whatever the file says now: it still calls the
    // endpoint it started with.
    let elsewhere = chassis_mock::start(MockConfig::default(), script(), local)
        .await
        .unwrap();
    write(&spec_path, &spec(&elsewhere.base_url(), &dead_b.base_url()));
    let again = Engine::new(Arc::clone(&journal))
        .resume(&outcome.run_id)
        .await
        .unwrap();
    assert_eq!(again.status, RunStatus::Paused);
    assert_eq!(
        elsewhere.stats().requests,
        0,
        "the new version took no part"
    );
    let state = engine.load(&outcome.run_id).await.unwrap();
    assert_eq!(state.version, agent.version);

    // The outage ends: the primary's endpoint answers again; resume finishes the run.
    let addr = dead_a.addr();
    dead_a.shutdown().await;
    let healthy = chassis_mock::start(MockConfig::default(), script(), addr)
        .await
        .unwrap();
    let done = engine.resume(&outcome.run_id).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{done:?}");
    assert_eq!(done.output.as_deref(), Some("files: a.txt"));
    let state = engine.load(&outcome.run_id).await.unwrap();
    assert_eq!(state.steps(), 2);
    assert_eq!(healthy.stats().requests, 2);
}
