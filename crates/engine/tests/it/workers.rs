//! Workers against an SQLite journal: draining submitted runs, losing a lease, shutting down
//! in the middle of an irreversible call, a wake-up that changes nothing, parked runs retried.
//!
//! The multi-process proof on PostgreSQL (SIGKILLed workers, 500 runs) is the CLI's
//! `workers` test; these check the worker loop's own decisions, in-process.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chassis_core::{Event, LimitName, RunStatus};
use chassis_engine::{Agent, Engine, Worker, WorkerConfig, WorkerReport};
use chassis_mock::{MockConfig, MockHandle, Script};
use chassis_store::{Journal, ListFilter, SqliteJournal, Sync};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{python_tool, write};

const SCRIPT: &str = r#"
[[scenario]]
[[scenario.turn]]
tool_calls = [{ name = "record", arguments = { line = "{input}" } }]
[[scenario.turn]]
text = "done {input}"
"#;

/// Irreversible: logs its execution, takes long for inputs starting with `slow`, then
/// appends the line to the ledger.
const RECORD: &str = r#"
import json, os, sys, time
args = json.load(sys.stdin)
with open(sys.argv[1], "a") as log:
    log.write("record " + os.environ["CHASSIS_IDEMPOTENCY_KEY"] + "\n")
if args["line"].startswith("slow"):
    time.sleep(30)
with open(sys.argv[2], "a") as ledger:
    ledger.write(args["line"] + "\n")
print("recorded " + args["line"])
"#;

/// Longest any condition is waited for before the test gives up.
const PATIENCE: Duration = Duration::from_secs(60);

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    journal: Arc<dyn Journal>,
    engine: Engine,
    agent: Agent,
    mock: Option<MockHandle>,
}

impl Setup {
    /// An agent whose model is the mock (`latency` per reply), or, with `model_down`, a
    /// port nobody listens on.
    async fn new(latency: Duration, model_down: bool) -> Setup {
        Setup::with_spec(latency, model_down, "", "").await
    }

    /// Like [`Setup::new`], with `model_extra` in the spec's `[model]` and `extra` at its end.
    async fn with_spec(
        latency: Duration,
        model_down: bool,
        model_extra: &str,
        extra: &str,
    ) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let (mock, base_url) = if model_down {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            drop(listener);
            (None, format!("http://{addr}/v1"))
        } else {
            let config = MockConfig {
                latency,
                ..MockConfig::default()
            };
            let local = SocketAddr::from(([127, 0, 0, 1], 0));
            let mock = chassis_mock::start(config, Script::from_toml_str(SCRIPT).unwrap(), local)
                .await
                .unwrap();
            let url = mock.base_url();
            (Some(mock), url)
        };
        python_tool(&root, "record", RECORD);
        write(&root.join("prompt.j2"), "Handle {{ input }}.");
        write(
            &root.join("agent.toml"),
            &format!(
                r#"
[agent]
name = "clerk"
prompt = "prompt.j2"

[model]
primary = "mock:model-a"
timeout = "5s"
{model_extra}

[providers.mock]
kind = "openai"
base_url = "{base_url}"
max_attempts = 1

[approvals]
irreversible = "auto"

[[tools]]
name = "record"
description = "Record a line in the ledger"
command = ["{python}", "tools/record.py", "{exec_log}", "{ledger}"]
args_schema = {{ type = "object", properties = {{ line = {{ type = "string" }} }}, required = ["line"] }}
risk = "irreversible"
timeout = "60s"
{extra}
"#,
                python = crate::python(),
                exec_log = root.join("exec.log").display(),
                ledger = root.join("ledger.txt").display(),
            ),
        );
        let agent = Agent::load(&root.join("agent.toml")).await.unwrap();
        let journal: Arc<dyn Journal> =
            Arc::new(SqliteJournal::open(&root.join("chassis.db"), Sync::Normal).unwrap());
        let engine = Engine::new(Arc::clone(&journal));
        Setup {
            _dir: dir,
            root,
            journal,
            engine,
            agent,
            mock,
        }
    }

    fn config(&self, name: &str) -> WorkerConfig {
        let mut config = WorkerConfig::new(name);
        config.concurrency = 4;
        config.poll_interval = Duration::from_millis(50);
        config.lease_ttl = Duration::from_secs(10);
        config.renew_every = Duration::from_secs(2);
        config
    }

    /// Starts a worker; the returned handle stops it.
    fn start(&self, config: WorkerConfig) -> Running {
        let worker = Worker::new(Engine::new(Arc::clone(&self.journal)), config);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            worker
                .run(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Running { stop, task }
    }

    fn lines(&self, name: &str) -> Vec<String> {
        read_lines(&self.root.join(name))
    }

    async fn events(&self, run_id: &str) -> Vec<Event> {
        let records = self.journal.load(run_id).await.unwrap();
        records.into_iter().map(|r| r.event).collect()
    }

    async fn count_status(&self, status: RunStatus) -> usize {
        let filter = ListFilter {
            status: Some(status),
            ..ListFilter::default()
        };
        self.journal.list(&filter).await.unwrap().len()
    }
}

/// A worker running in a task of the test's runtime.
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<WorkerReport>,
}

impl Running {
    /// Asks the worker to shut down and waits for its report.
    async fn stop(self) -> WorkerReport {
        let _ = self.stop.send(());
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the worker stops")
            .expect("the worker does not panic")
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Waits until `check` holds (polling; nothing is asserted about how long it takes).
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn count(events: &[Event], kind: fn(&Event) -> bool) -> usize {
    events.iter().filter(|e| kind(e)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_drains_submitted_runs_exactly_once() {
    let setup = Setup::new(Duration::from_millis(10), false).await;
    let mut runs = Vec::new();
    for i in 0..24 {
        let input = format!("job-{i:02}");
        let run_id = setup.engine.submit(&setup.agent, &input).await.unwrap();
        runs.push((run_id, input));
    }
    let worker = setup.start(setup.config("w1"));
    until("every run completed", || async {
        setup.count_status(RunStatus::Completed).await == runs.len()
    })
    .await;
    let report = worker.stop().await;

    assert_eq!(report.claimed, 24, "{report:?}");
    assert_eq!(report.completed, 24, "{report:?}");
    assert_eq!(report.lease_lost + report.errors, 0, "{report:?}");
    let mut ledger = setup.lines("ledger.txt");
    ledger.sort();
    let mut inputs: Vec<String> = runs.iter().map(|(_, input)| input.clone()).collect();
    inputs.sort();
    assert_eq!(ledger, inputs, "each run's line is in the ledger once");
    let stats = setup.mock.as_ref().unwrap().stats();
    for (run_id, input) in &runs {
        let events = setup.events(run_id).await;
        assert_eq!(
            count(&events, |e| matches!(e, Event::RunCompleted { .. })),
            1
        );
        let turns = &stats.by_conversation[input];
        assert!(
            turns.values().all(|n| *n == 1),
            "{input}: a model turn was asked twice: {turns:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_lease_was_taken_stops_driving_the_run() {
    // The reply takes a second; the worker's lease lasts 100 ms and is never renewed.
    let setup = Setup::new(Duration::from_secs(1), false).await;
    let run_id = setup.engine.submit(&setup.agent, "job").await.unwrap();
    let mut config = setup.config("slow-renewer");
    // One slot: busy with the run, the worker cannot claim it back itself.
    config.concurrency = 1;
    config.lease_ttl = Duration::from_millis(100);
    config.renew_every = Duration::from_secs(3600);
    let worker = setup.start(config);

    let mock = setup.mock.as_ref().unwrap();
    until("the model is asked", || async {
        mock.stats().requests >= 1
    })
    .await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let stolen = loop {
        let leases = setup
            .journal
            .claim("thief", Duration::from_secs(600), 1)
            .await
            .unwrap();
        if let Some(lease) = leases.into_iter().next() {
            break lease;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the expired lease is never free"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let report = worker.stop().await;

    assert_eq!(report.lease_lost, 1, "{report:?}");
    assert_eq!(report.driven(), 0, "{report:?}");
    // The model's reply was refused: nothing after the worker's own resume was written, and
    // the thief's lease still holds.
    let events = setup.events(&run_id).await;
    assert!(
        matches!(
            events.as_slice(),
            [Event::RunStarted(_), Event::RunResumed { .. }]
        ),
        "{events:#?}"
    );
    setup
        .journal
        .renew(&stolen, Duration::from_secs(600))
        .await
        .expect("the new owner's lease holds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_back_a_run_whose_next_owner_finds_the_outcome_unknown() {
    let setup = Setup::new(Duration::from_millis(10), false).await;
    let run_id = setup.engine.submit(&setup.agent, "slow-1").await.unwrap();
    let mut config = setup.config("first");
    config.shutdown_grace = Duration::from_millis(200);
    let first = setup.start(config);
    until("the irreversible call started", || async {
        !setup.lines("exec.log").is_empty()
    })
    .await;
    let report = first.stop().await;
    assert_eq!(report.released_at_shutdown, 1, "{report:?}");
    assert!(
        setup.lines("ledger.txt").is_empty(),
        "the call was stopped before its effect"
    );

    // The next worker finds an intent without an outcome: it is not repeated, the run waits.
    let second = setup.start(setup.config("second"));
    until("the run waits", || async {
        setup.count_status(RunStatus::Waiting).await == 1
    })
    .await;
    let events = setup.events(&run_id).await;
    assert_eq!(
        count(&events, |e| matches!(e, Event::ToolOutcomeUnknown { .. })),
        1
    );

    // A decision that does not settle the call (a limit raised) leaves the run waiting: its
    // wake time stays "never", so no worker claims it for nothing.
    setup
        .engine
        .raise_limits(&run_id, &[(LimitName::MaxSteps, 50.0)], "ops")
        .await
        .unwrap();
    // Ten polls later, nobody has claimed it again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = second.stop().await;
    assert_eq!(report.claimed, 1, "{report:?}");
    assert_eq!(report.waiting, 1, "{report:?}");
    assert_eq!(setup.lines("exec.log").len(), 1, "the call ran once");
    assert!(
        setup
            .journal
            .claim("anyone", Duration::from_secs(1), 10)
            .await
            .unwrap()
            .is_empty(),
        "a waiting run is not runnable"
    );
}

/// A parked run is retried with backoff by whichever worker is there, as its fold schedules
/// it; its retries never use up `max_model_calls`; past `max_park`, `on_limit` applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_run_is_retried_with_backoff_then_max_park_applies() {
    let setup = Setup::with_spec(
        Duration::ZERO,
        true,
        "park_retry = \"50ms\"",
        "[limits]\nmax_model_calls = 2\nmax_park = \"1s\"\non_limit = { max_park = \"fail\" }",
    )
    .await;
    let run_id = setup.engine.submit(&setup.agent, "job").await.unwrap();
    let worker = setup.start(setup.config("retrier"));
    until("the run failed at max_park", || async {
        setup.count_status(RunStatus::Failed).await == 1
    })
    .await;
    let report = worker.stop().await;
    let events = setup.events(&run_id).await;
    let parks = count(&events, |e| matches!(e, Event::RunPaused { .. }));
    assert!(parks >= 3, "parked {parks} times: {events:#?}");
    assert!(report.paused >= 3, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    // Each park waited at least the retry delay (the fold's backoff, doubling), counted from
    // when the park was decided (the event's `at_ms`, from which its wake time comes), not
    // when its record was written: on a loaded machine a flush can come late.
    let paused_at: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::RunPaused { at_ms, .. } => Some(*at_ms),
            _ => None,
        })
        .collect();
    let gaps: Vec<u64> = paused_at
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .collect();
    assert!(gaps.iter().all(|gap| *gap >= 50), "{gaps:?}");
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::LimitReached {
                limit: LimitName::MaxPark,
                ..
            }
        )),
        "{events:#?}"
    );
    assert!(
        !events.iter().any(|e| matches!(
            e,
            Event::LimitReached {
                limit: LimitName::MaxModelCalls,
                ..
            }
        )),
        "retries of a parked run used up max_model_calls: {events:#?}"
    );
}
