//! Where drivers and humans meet, in-process: a tool cut off by its timeout, a drive
//! interrupted by a person, a run started beside a worker, a cancel while the run is driven,
//! idempotent starts, and an inbox that holds everything that waits for a human.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chassis_core::{Event, RunStatus};
use chassis_engine::{
    Agent, Cancelled, Engine, Interrupt, Resolution, StartOptions, Worker, WorkerConfig,
};
use chassis_mock::{MockConfig, MockHandle, Script};
use chassis_store::{Journal, SqliteJournal, Sync};

use crate::{python, python_tool, write};

/// Logs every execution with its idempotency key, sleeps when asked, then answers.
const EFFECT: &str = r#"
import json, os, sys, time
args = json.load(sys.stdin)
with open(sys.argv[1], "a") as log:
    log.write(os.environ["CHASSIS_IDEMPOTENCY_KEY"] + "\n")
time.sleep(float(args.get("sleep", 0)))
print("done " + args.get("what", ""))
"#;

fn script(what: &str, sleep: f64) -> String {
    format!(
        r#"
[[scenario]]
[[scenario.turn]]
text = "On it."
tool_calls = [{{ name = "effect", arguments = {{ what = "{what}", sleep = {sleep} }} }}]
[[scenario.turn]]
text = "result: {{last_tool_result}}"
"#
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    mock: Arc<MockHandle>,
    journal: Arc<dyn Journal>,
    agent: Agent,
}

/// An agent with one command tool (`risk`, `timeout`), auto-approved, against the mock
/// (`latency` per reply) scripted with `script`; `extra` is appended to the spec.
async fn setup(risk: &str, timeout: &str, latency: Duration, script: &str, extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    write(&root.join("prompt.j2"), "Do it.");
    python_tool(&root, "effect", EFFECT);
    let config = MockConfig {
        latency,
        ..MockConfig::default()
    };
    let mock = chassis_mock::start(
        config,
        Script::from_toml_str(script).unwrap(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    write(
        &root.join("agent.toml"),
        &format!(
            r#"
[agent]
name = "doer"
prompt = "prompt.j2"
[model]
primary = "m:model"
[providers.m]
kind = "openai"
base_url = "{url}"
[[tools]]
name = "effect"
description = "Has an effect"
command = ["{python}", "tools/effect.py", "{log}"]
args_schema = {{ type = "object", properties = {{ what = {{ type = "string" }}, sleep = {{ type = "number" }} }} }}
risk = "{risk}"
timeout = "{timeout}"
[approvals]
irreversible = "auto"
{extra}
"#,
            url = mock.base_url(),
            python = python(),
            log = root.join("effects.log").display(),
        ),
    );
    let agent = Agent::load(&root.join("agent.toml")).await.unwrap();
    let journal: Arc<dyn Journal> =
        Arc::new(SqliteJournal::open(&root.join("j.db"), Sync::Normal).unwrap());
    Setup {
        _dir: dir,
        root,
        mock: Arc::new(mock),
        journal,
        agent,
    }
}

impl Setup {
    fn engine(&self) -> Engine {
        Engine::new(Arc::clone(&self.journal))
    }

    fn effects(&self) -> Vec<String> {
        read_lines(&self.root.join("effects.log"))
    }

    async fn events(&self, run_id: &str) -> Vec<Event> {
        self.journal
            .load(run_id)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.event)
            .collect()
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// A reversible tool that times out may have acted: its outcome is unknown, the run waits for
/// a human, and the call is not made again (by the model or by a resume) until a human says
/// so — then with the same idempotency key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_effect_is_an_unknown_outcome_never_a_plain_failure() {
    let s = setup("reversible", "1s", Duration::ZERO, &script("x", 30.0), "").await;
    let engine = s.engine();
    let outcome = engine.start(&s.agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Waiting, "{outcome:?}");
    let events = s.events(&outcome.run_id).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ToolOutcomeUnknown { call_id, .. } if call_id == "1.0")),
        "{events:#?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::ToolFinished { .. })),
        "the model was not told it failed: {events:#?}"
    );
    assert_eq!(s.effects().len(), 1);
    let again = engine.resume(&outcome.run_id).await.unwrap();
    assert_eq!(again.status, RunStatus::Waiting);
    assert_eq!(s.effects().len(), 1, "a resume does not repeat it");
    let inbox = engine.inbox().await.unwrap();
    assert_eq!(inbox[0].kind, "outcome_unknown");
    let key = format!("{}/1.0", outcome.run_id);
    assert_eq!(inbox[0].idempotency_key.as_deref(), Some(key.as_str()));

    engine
        .resolve_outcome(
            &outcome.run_id,
            "1.0",
            Resolution::Succeeded {
                result: Some("done x (checked by hand)".into()),
            },
            "carol",
            None,
        )
        .await
        .unwrap();
    let done = engine.resume(&outcome.run_id).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{done:?}");
    assert_eq!(
        done.output.as_deref(),
        Some("result: done x (checked by hand)")
    );
    assert_eq!(s.effects(), vec![key], "ran once, with its key");
}

/// Interrupted inside a tool call that outlives the grace: the call's outcome becomes unknown,
/// the run waits, the lease is given back (a resume works at once), and nothing is repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_inside_an_effect_stops_at_a_safe_point() {
    let s = setup(
        "irreversible",
        "60s",
        Duration::ZERO,
        &script("x", 30.0),
        "",
    )
    .await;
    let interrupt = Interrupt::new();
    let mut config = s.engine().drive_config().clone();
    config.tool_grace = Duration::from_millis(200);
    let engine = s
        .engine()
        .with_drive_config(config)
        .with_interrupt(interrupt.clone());
    let log = s.root.join("effects.log");
    let trigger = tokio::spawn(async move {
        while read_lines(&log).is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        interrupt.trigger("SIGINT");
    });
    let outcome = engine.start(&s.agent, "go").await.unwrap();
    trigger.await.unwrap();
    assert!(outcome.interrupted);
    assert_eq!(outcome.status, RunStatus::Waiting, "{outcome:?}");
    let state = engine.load(&outcome.run_id).await.unwrap();
    assert!(state.calls()[0].outcome_unknown);
    // The lease was given back: another process resumes at once, and repeats nothing.
    let other = s.engine();
    let again = other.resume(&outcome.run_id).await.unwrap();
    assert_eq!(again.status, RunStatus::Waiting);
    assert_eq!(s.effects().len(), 1);
}

/// Interrupted while the model thinks: the run pauses (a person stopped it), is listed in the
/// inbox as interrupted, is not handed to workers, and continues on `resume`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_during_a_model_call_pauses_the_run() {
    let s = setup(
        "read_only",
        "60s",
        Duration::from_secs(3),
        &script("x", 0.0),
        "",
    )
    .await;
    let interrupt = Interrupt::new();
    let engine = s.engine().with_interrupt(interrupt.clone());
    let mock_stats = Arc::clone(&s.mock);
    let trigger = tokio::spawn(async move {
        while mock_stats.stats().requests == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        interrupt.trigger("SIGTERM");
    });
    let outcome = engine.start(&s.agent, "go").await.unwrap();
    trigger.await.unwrap();
    assert!(outcome.interrupted);
    assert_eq!(outcome.status, RunStatus::Paused, "{outcome:?}");
    assert!(
        outcome.reason.as_deref().unwrap().contains("SIGTERM"),
        "{outcome:?}"
    );
    let inbox = s.engine().inbox().await.unwrap();
    assert_eq!(inbox.len(), 1, "{inbox:#?}");
    assert_eq!(inbox[0].kind, "interrupted");
    assert!(
        s.journal
            .claim("worker", Duration::from_secs(60), 5)
            .await
            .unwrap()
            .is_empty(),
        "a run a person stopped is not handed to workers"
    );
    let done = s.engine().resume(&outcome.run_id).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{done:?}");
}

/// `start` beside a worker on the same journal: the worker never takes the run its starter
/// drives, so each model turn is asked once and the effect runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_beside_a_worker_is_driven_once() {
    let s = setup(
        "irreversible",
        "60s",
        Duration::from_millis(300),
        &script("x", 0.5),
        "",
    )
    .await;
    let mut config = WorkerConfig::new("w");
    config.poll_interval = Duration::from_millis(20);
    let worker = Worker::new(s.engine(), config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        worker
            .run(async move {
                let _ = stopped.await;
            })
            .await
    });
    let outcome = s.engine().start(&s.agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
    let _ = stop.send(());
    let report = task.await.unwrap();
    assert_eq!(report.claimed, 0, "{report:?}");
    assert_eq!(s.effects().len(), 1);
    let stats = s.mock.stats();
    assert!(
        stats.by_conversation["go"].values().all(|n| *n == 1),
        "a model turn was asked twice: {stats:?}"
    );
}

/// A cancel of a run another process drives is recorded at once and ends the run at its next
/// safe point: never inside the effect, whose outcome is journaled first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_stops_a_driven_run_after_its_effect_is_recorded() {
    let s = setup("irreversible", "60s", Duration::ZERO, &script("x", 1.0), "").await;
    let driver = s.engine();
    let log = s.root.join("effects.log");
    let journal = Arc::clone(&s.journal);
    let canceller = tokio::spawn(async move {
        while read_lines(&log).is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let runs = journal
            .list(&chassis_store::ListFilter::default())
            .await
            .unwrap();
        Engine::new(journal)
            .cancel(&runs[0].run_id, "dana", "wrong customer")
            .await
            .unwrap()
    });
    let outcome = driver.start(&s.agent, "go").await.unwrap();
    let cancelled = canceller.await.unwrap();
    assert!(
        matches!(&cancelled, Cancelled::Requested { driver } if driver.starts_with("chassis@")),
        "{cancelled:?}"
    );
    assert_eq!(outcome.status, RunStatus::Cancelled, "{outcome:?}");
    let events = s.events(&outcome.run_id).await;
    let finished = events
        .iter()
        .position(|e| matches!(e, Event::ToolFinished { .. }))
        .expect("the effect's outcome is journaled");
    let ended = events
        .iter()
        .position(|e| matches!(e, Event::RunCancelled { by, reason, .. } if by == "dana" && reason == "wrong customer"))
        .expect("the run is cancelled, with who and why");
    assert!(finished < ended);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::ModelRequested { step: 2, .. })),
        "no model call after the cancel: {events:#?}"
    );
    // A finished run cannot be cancelled again.
    assert!(
        s.engine()
            .cancel(&outcome.run_id, "dana", "again")
            .await
            .is_err()
    );
}

/// A cancel of a run nobody drives (it waits for a human) ends it here, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_of_a_waiting_run_ends_it_here() {
    let s = setup(
        "irreversible",
        "60s",
        Duration::ZERO,
        &script("x", 0.0),
        "[approvals.tools]\neffect = \"require\"\n",
    )
    .await;
    let engine = s.engine();
    let outcome = engine.start(&s.agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Waiting);
    let cancelled = engine
        .cancel(&outcome.run_id, "dana", "not needed")
        .await
        .unwrap();
    let Cancelled::Ended(ended) = cancelled else {
        panic!("{cancelled:?}");
    };
    assert_eq!(ended.status, RunStatus::Cancelled);
    assert!(engine.inbox().await.unwrap().is_empty());
    assert!(s.effects().is_empty());
}

/// The same idempotency key returns the same run, whether started or submitted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_returns_the_same_run() {
    let s = setup("read_only", "60s", Duration::ZERO, &script("x", 0.0), "").await;
    let engine = s.engine();
    let options = || StartOptions {
        idempotency_key: Some("order-42".into()),
        ..StartOptions::default()
    };
    let first = engine.start_with(&s.agent, "go", options()).await.unwrap();
    assert_eq!(first.status, RunStatus::Completed);
    let second = engine.start_with(&s.agent, "go", options()).await.unwrap();
    assert_eq!(second.run_id, first.run_id);
    assert_eq!(second.output, first.output);
    let submitted = engine.submit_with(&s.agent, "go", options()).await.unwrap();
    assert_eq!(submitted.run_id, first.run_id);
    assert!(submitted.existing);
    let runs = s
        .journal
        .list(&chassis_store::ListFilter::default())
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(s.effects().len(), 1);
}

/// A resume that read the run before another driver finished it, and got the lease after:
/// it reports the outcome the journal holds, writes nothing and gives the lease back (it once
/// tried to journal `run_resumed` after the end and failed as if the journal were corrupt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_ended_between_a_resumes_read_and_its_claim_is_reported_not_resumed() {
    let s = setup("read_only", "60s", Duration::ZERO, &script("x", 0.0), "").await;
    let engine = s.engine();
    let submitted = engine
        .submit_with(&s.agent, "go", StartOptions::default())
        .await
        .unwrap();
    // What the late resume read: the run queued, not yet driven.
    let read_before = engine.load(&submitted.run_id).await.unwrap();
    assert_eq!(read_before.status(), RunStatus::Running);
    // Meanwhile another driver takes it to the end and lets go of it.
    let done = s.engine().resume(&submitted.run_id).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    let events = s.events(&submitted.run_id).await.len();

    let late = engine
        .resume_with(&s.agent, &submitted.run_id, read_before)
        .await
        .expect("the late resume reports the ended run");
    assert_eq!(late.status, RunStatus::Completed);
    assert_eq!(late.output, done.output);
    assert_eq!(
        s.events(&submitted.run_id).await.len(),
        events,
        "nothing written"
    );
    assert_eq!(s.effects().len(), 1);
    // And the lease is free again: a third driver gets it at once.
    let lease = s
        .journal
        .claim_run(&submitted.run_id, "third", Duration::from_secs(5))
        .await
        .expect("the late resume gave the lease back");
    assert_eq!(lease.worker, "third");
}
