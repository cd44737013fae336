//! The failure-first proof: hundreds of runs against models and tools that fail at random.
//!
//! Two mock models (primary and fallback) inject every fault kind into at least 30 % of their
//! answers; a read-only tool fails or hangs at random; an irreversible tool must run exactly
//! once per journaled call. Every run must complete with the right answer or park as paused;
//! none may fail or be lost.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chassis_core::{Event, RunStatus};
use chassis_engine::{Agent, Engine};
use chassis_mock::{FaultKind, MockConfig, Script};
use chassis_store::{Journal, SqliteJournal, Sync};

use crate::{python_tool, write};

const RUNS: usize = 200;
const CONCURRENCY: usize = 25;

const SCRIPT: &str = r#"
[[scenario]]
[[scenario.turn]]
tool_calls = [{ name = "lookup", arguments = { key = "{input}" } }]
[[scenario.turn]]
tool_calls = [{ name = "record", arguments = { line = "{input}" } }]
[[scenario.turn]]
text = "done {input}: {last_tool_result}"
"#;

/// Fails a third of the time (exit 1) and hangs past its timeout a sixth of the time.
const FLAKY_LOOKUP: &str = r#"
import json, os, random, sys, time
args = json.load(sys.stdin)
with open(sys.argv[1], "a") as log:
    log.write("lookup " + os.environ["CHASSIS_IDEMPOTENCY_KEY"] + "\n")
roll = random.random()
if roll < 0.2:
    sys.stderr.write("lookup backend unavailable\n")
    sys.exit(1)
if roll < 0.3:
    time.sleep(10)
print("value-of-" + args["key"])
"#;

/// Appends one line to the ledger: the irreversible effect that must never happen twice.
const RECORD: &str = r#"
import json, os, sys
args = json.load(sys.stdin)
with open(sys.argv[1], "a") as log:
    log.write("record " + os.environ["CHASSIS_IDEMPOTENCY_KEY"] + "\n")
with open(sys.argv[2], "a") as ledger:
    ledger.write(args["line"] + "\n")
print("recorded " + args["line"])
"#;

fn faulty(seed: u64) -> MockConfig {
    MockConfig {
        seed,
        fault_rate: 0.35,
        faults: FaultKind::ALL.to_vec(),
        retry_after_secs: 1,
        hang: Duration::from_secs(30),
        ..MockConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_survive_faulty_models_and_tools() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let primary = chassis_mock::start(faulty(11), Script::from_toml_str(SCRIPT).unwrap(), local)
        .await
        .unwrap();
    let fallback = chassis_mock::start(faulty(29), Script::from_toml_str(SCRIPT).unwrap(), local)
        .await
        .unwrap();

    let exec_log = root.join("exec.log");
    let ledger = root.join("ledger.txt");
    python_tool(root, "lookup", FLAKY_LOOKUP);
    python_tool(root, "record", RECORD);
    write(&root.join("prompt.j2"), "Handle {{ input }}.");
    write(
        &root.join("agent.toml"),
        &format!(
            r#"
[agent]
name = "resilient"
prompt = "prompt.j2"

[model]
primary = "primary:model-a"
fallbacks = ["fallback:model-b"]
timeout = "1s"

[providers.primary]
kind = "openai"
base_url = "{primary}"
max_attempts = 4
retry_base_delay = "20ms"
retry_max_delay = "200ms"
breaker_failure_rate = 0.9
breaker_threshold = 10
breaker_cooldown = "100ms"

[providers.fallback]
kind = "openai"
base_url = "{fallback}"
max_attempts = 4
retry_base_delay = "20ms"
retry_max_delay = "200ms"
breaker_failure_rate = 0.9
breaker_threshold = 10
breaker_cooldown = "100ms"

[limits]
max_steps = 12

[[tools]]
name = "lookup"
description = "Look a key up"
command = ["{python}", "tools/lookup.py", "{exec_log}"]
args_schema = {{ type = "object", properties = {{ key = {{ type = "string" }} }}, required = ["key"] }}
risk = "read_only"
timeout = "2s"
max_attempts = 6

[[tools]]
name = "record"
description = "Record a line in the ledger"
command = ["{python}", "tools/record.py", "{exec_log}", "{ledger}"]
args_schema = {{ type = "object", properties = {{ line = {{ type = "string" }} }}, required = ["line"] }}
risk = "irreversible"
timeout = "5s"

# Approvals have their own tests; here the ledger writes run on their own.
[approvals.tools]
record = "auto"
"#,
            primary = primary.base_url(),
            fallback = fallback.base_url(),
            python = crate::python(),
            exec_log = exec_log.display(),
            ledger = ledger.display(),
        ),
    );

    let agent = Arc::new(Agent::load(&root.join("agent.toml")).await.unwrap());
    let journal: Arc<dyn Journal> =
        Arc::new(SqliteJournal::open(&root.join("chassis.db"), Sync::Normal).unwrap());
    let engine = Arc::new(Engine::new(Arc::clone(&journal)));

    let limiter = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::new();
    for i in 0..RUNS {
        let (agent, engine, limiter) = (
            Arc::clone(&agent),
            Arc::clone(&engine),
            Arc::clone(&limiter),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = limiter.acquire().await.unwrap();
            let input = format!("case-{i:03}");
            let outcome = engine.start(&agent, &input).await.unwrap();
            (input, outcome)
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }

    let mut by_status: BTreeMap<RunStatus, usize> = BTreeMap::new();
    let mut correct = 0;
    let mut wrong = 0;
    let (mut attempts_failed, mut fallbacks, mut refusals, mut tool_retries) = (0, 0, 0, 0);
    let mut journaled_tool_runs: BTreeMap<String, usize> = BTreeMap::new();
    for (input, outcome) in &outcomes {
        *by_status.entry(outcome.status).or_default() += 1;
        if outcome.status == RunStatus::Completed
            && outcome.output.as_deref() == Some(&format!("done {input}: recorded {input}"))
        {
            correct += 1;
        } else {
            wrong += 1;
            if wrong <= 5 {
                eprintln!("unexpected outcome for {input}: {outcome:?}");
            }
        }
        let records = journal.load(&outcome.run_id).await.unwrap();
        for record in &records {
            match &record.event {
                Event::ModelAttemptFailed { .. } => attempts_failed += 1,
                Event::ModelFallback { .. } => fallbacks += 1,
                Event::ToolRefused { .. } => refusals += 1,
                Event::ToolAttemptFailed { call_id, error, .. } => {
                    if tool_retries < 5 {
                        eprintln!("sample tool failure: {error}");
                    }
                    tool_retries += 1;
                    *journaled_tool_runs
                        .entry(format!("lookup {}/{call_id}", outcome.run_id))
                        .or_default() += 1;
                }
                Event::ToolStarted {
                    name,
                    idempotency_key,
                    ..
                } => {
                    *journaled_tool_runs
                        .entry(format!("{name} {idempotency_key}"))
                        .or_default() += 1;
                }
                _ => {}
            }
        }
    }

    // Every execution of a tool is accounted for by the journal: one per tool_started, plus
    // one per journaled failed attempt of a retried read-only tool.
    let mut executed: BTreeMap<String, usize> = BTreeMap::new();
    for line in std::fs::read_to_string(&exec_log).unwrap().lines() {
        *executed.entry(line.to_string()).or_default() += 1;
    }
    for (key, runs) in &executed {
        let journaled = journaled_tool_runs.get(key).copied().unwrap_or(0);
        assert!(
            *runs <= journaled,
            "{key} ran {runs} time(s) but the journal accounts for {journaled}"
        );
        if key.starts_with("record ") {
            assert_eq!(*runs, 1, "{key}: an irreversible call ran more than once");
        }
    }
    let ledger_lines: Vec<String> = std::fs::read_to_string(&ledger)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let mut unique = ledger_lines.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        ledger_lines.len(),
        "a ledger line was written twice"
    );

    let primary_stats = primary.stats();
    let fallback_stats = fallback.stats();
    let injected: u64 =
        primary_stats.faults.values().sum::<u64>() + fallback_stats.faults.values().sum::<u64>();
    let requests = primary_stats.requests + fallback_stats.requests;
    eprintln!(
        "resilience: {RUNS} runs, {correct} correct, statuses {by_status:?}; model requests {requests}, \
         faults injected {injected} ({:.0} %) {:?} / {:?}; failed attempts {attempts_failed}, \
         fallbacks {fallbacks}, refused calls {refusals}, tool retries {tool_retries}, ledger lines {}",
        100.0 * injected as f64 / requests as f64,
        primary_stats.faults,
        fallback_stats.faults,
        ledger_lines.len(),
    );

    assert!(
        injected as f64 >= 0.30 * requests as f64,
        "fewer than 30 % faults injected"
    );
    for kind in FaultKind::ALL {
        assert!(
            primary_stats.faults.get(kind.name()).copied().unwrap_or(0) > 0,
            "fault {kind} never injected"
        );
    }
    assert_eq!(by_status.get(&RunStatus::Failed), None, "no run may fail");
    assert_eq!(
        by_status.get(&RunStatus::Running),
        None,
        "no run may be left running"
    );
    let paused = by_status.get(&RunStatus::Paused).copied().unwrap_or(0);
    assert_eq!(
        correct + paused,
        RUNS,
        "every run completes correctly or parks"
    );
    assert!(
        correct * 100 >= RUNS * 99,
        "only {correct} of {RUNS} completed"
    );
    primary.shutdown().await;
    fallback.shutdown().await;
}
