//! Worker processes: `chassis submit` journals runs, `chassis worker` processes drive them.
//!
//! The proof runs on a real PostgreSQL server (`CHASSIS_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), each test in a schema of its own: three
//! workers drain 500 runs; one is SIGKILLed mid-way and a fourth is started. The agent looks
//! a key up (a read-only tool), appends a line to a ledger (an irreversible tool) and answers.
//! Afterwards, from the journals, the mock model's request counts and the tools' execution
//! log:
//! - every run completed exactly once with the right answer, or waits because the kill
//!   interrupted its irreversible call (outcome unknown);
//! - no model turn and no tool call that was journaled when a run changed hands was done
//!   again (a takeover shows in the journal as a second `run_resumed`);
//! - no irreversible call ran twice, and no ledger line appears twice.
//!
//! When the server cannot be reached these tests say so loudly and pass, unless `CI` or
//! `CHASSIS_TEST_PG_REQUIRED` is set. The SQLite tests (several worker processes on one file,
//! `resume --detach`, `db migrate`) always run. Throughput with 1, 2 and 3 workers is printed
//! by `workers_throughput_with_one_two_and_three_workers`:
//! `CHASSIS_WORKERS_BENCH_RUNS=2000 cargo test --release -p chassis-cli --test it -- \
//! workers_throughput --nocapture`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chassis_core::{Event, RunStatus};
use chassis_engine::{Agent, Engine};
use chassis_store::{Journal, ListFilter};
use serde_json::Value;
use tempfile::TempDir;

use crate::util::{Mock, Output, become_subreaper, chassis, run, toml_str, write};

/// Runs of the proof.
const RUNS: usize = 500;

/// Runs each throughput measurement drains, unless `CHASSIS_WORKERS_BENCH_RUNS` says otherwise
/// (more give steadier figures; the default keeps the suite quick).
fn bench_runs() -> usize {
    std::env::var("CHASSIS_WORKERS_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(300)
}

/// Runs each worker drives at once.
const CONCURRENCY: &str = "16";

/// Short leases, so the killed worker's runs are taken over within seconds.
const LEASE_TTL: &str = "2s";

/// Delay of every mock reply.
const MOCK_LATENCY: Duration = Duration::from_millis(20);

/// Longest the proof waits for the runs to settle.
const PATIENCE: Duration = Duration::from_secs(150);

const SCRIPT: &str = r#"
[[scenario]]
name = "ledger-clerk"
[[scenario.turn]]
tool_calls = [{ name = "lookup", arguments = { key = "{input}" } }]
[[scenario.turn]]
tool_calls = [{ name = "append_line", arguments = { line = "{input} | {last_tool_result}" } }]
[[scenario.turn]]
text = "done {input}: {last_tool_result}"
"#;

/// Read-only: logs its execution and answers.
const LOOKUP_PY: &str = r#"
import json, os, sys
args = json.load(sys.stdin)
with open("exec.log", "a") as log:
    log.write("lookup " + os.environ["CHASSIS_IDEMPOTENCY_KEY"] + "\n")
print("record " + args["key"])
"#;

/// Irreversible: logs its execution, appends the line a moment later, answers.
const APPEND_LINE_PY: &str = r#"
import json, os, sys, time
args = json.load(sys.stdin)
with open("exec.log", "a") as log:
    log.write("append_line " + os.environ["CHASSIS_IDEMPOTENCY_KEY"] + "\n")
time.sleep(0.02)
with open("ledger.txt", "a") as ledger:
    ledger.write(args["line"] + "\n")
print("appended " + args["line"])
"#;

fn answer(input: &str) -> String {
    format!("done {input}: appended {}", ledger_line(input))
}

fn ledger_line(input: &str) -> String {
    format!("{input} | record {input}")
}

/// The Python for the tools: the system one when present (version-manager shims are slow).
fn python() -> String {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3".to_string()
    } else {
        crate::util::python().to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a schema per test.

use chassis_testkit::pg::{Schema, connect as admin};

/// A schema of the test's own (see [`chassis_testkit::pg`]): with `CI` set, no server fails.
pub(crate) fn new_schema(rt: &tokio::runtime::Runtime) -> Option<Schema> {
    rt.block_on(Schema::new("w", "the worker tests on PostgreSQL"))
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ---------------------------------------------------------------------------------------------
// The agent, and worker processes.

/// The clerk agent in a temporary directory, served by an in-process mock model.
struct Clerk {
    dir: TempDir,
    spec: PathBuf,
    mock: Mock,
}

impl Clerk {
    fn new() -> Clerk {
        let mock = Mock::start(SCRIPT, MOCK_LATENCY);
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path();
        write(root, "lookup.py", LOOKUP_PY);
        write(root, "append_line.py", APPEND_LINE_PY);
        write(
            root,
            "prompt.md.j2",
            "You keep the ledger. Request: {{ input }}\n",
        );
        let python = toml_str(&python());
        let spec = write(
            root,
            "agent.toml",
            &format!(
                r#"[agent]
name = "ledger-clerk"
prompt = "prompt.md.j2"

[model]
primary = "mock:clerk-model"
timeout = "60s"

[providers.mock]
kind = "openai"
base_url = {base_url}

[limits]
max_steps = 6

[approvals]
irreversible = "auto"

[[tools]]
name = "lookup"
description = "Looks a key up"
command = [{python}, "-I", "lookup.py"]
risk = "read_only"
timeout = "60s"
args_schema = {{ type = "object", required = ["key"], properties = {{ key = {{ type = "string" }} }} }}

[[tools]]
name = "append_line"
description = "Appends a line to the ledger"
command = [{python}, "-I", "append_line.py"]
risk = "irreversible"
timeout = "60s"
args_schema = {{ type = "object", required = ["line"], properties = {{ line = {{ type = "string" }} }} }}
"#,
                base_url = toml_str(&mock.base_url()),
            ),
        );
        Clerk { dir, spec, mock }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Journals `count` runs in-process (`chassis submit` per run would measure process
    /// starts); returns (run id, input) pairs.
    fn submit(
        &self,
        rt: &tokio::runtime::Runtime,
        journal: &Arc<dyn Journal>,
        prefix: &str,
        count: usize,
    ) -> Vec<(String, String)> {
        rt.block_on(async {
            let agent = Agent::load(&self.spec).await.expect("the clerk spec loads");
            let engine = Engine::new(Arc::clone(journal));
            let mut runs = Vec::with_capacity(count);
            for i in 0..count {
                let input = format!("{prefix}-{i:04}");
                let run_id = engine.submit(&agent, &input).await.expect("submit");
                runs.push((run_id, input));
            }
            runs
        })
    }
}

/// A `chassis worker` process in its own process group, its output in temporary files.
struct WorkerProcess {
    child: Child,
    stdout: File,
    stderr: File,
}

impl WorkerProcess {
    /// Starts `chassis --db DB worker …` in the agent's directory (the tools' files are there).
    fn start(db: &Path, cwd: &Path, extra: &[&str]) -> WorkerProcess {
        use std::os::unix::process::CommandExt;

        let stdout = tempfile::tempfile().expect("temporary file");
        let stderr = tempfile::tempfile().expect("temporary file");
        let mut command: Command = chassis(db);
        command
            .current_dir(cwd)
            .args([
                "worker",
                "--concurrency",
                CONCURRENCY,
                "--lease-ttl",
                LEASE_TTL,
                "--poll-interval",
                "200ms",
                "--json",
            ])
            .args(extra)
            .env("CHASSIS_LOG", "warn")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(stdout.try_clone().expect("clone"))
            .stderr(stderr.try_clone().expect("clone"));
        let child = command.spawn().expect("start chassis worker");
        WorkerProcess {
            child,
            stdout,
            stderr,
        }
    }

    /// SIGKILLs the worker alone: the tool it runs lives on, as after `kill -9 PID`.
    /// Returns the process group, whose orphaned tools [`reap`] collects later.
    fn kill_9(mut self) -> u32 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child.id()
    }

    /// SIGTERMs the worker and waits for it to shut down gracefully.
    fn terminate(mut self) -> Output {
        signal(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            match self.child.try_wait().expect("wait for the worker") {
                Some(status) => break status,
                None if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    panic!("the worker did not stop within 60 s of SIGTERM");
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        let read = |file: &mut File| {
            let mut text = String::new();
            file.rewind().expect("rewind");
            file.read_to_string(&mut text).expect("UTF-8 output");
            text
        };
        Output {
            code: status.code(),
            stdout: read(&mut self.stdout),
            stderr: read(&mut self.stderr),
        }
    }
}

impl Drop for WorkerProcess {
    /// A test that fails leaves no worker behind (a no-op once the worker has exited).
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[allow(
    unsafe_code,
    reason = "std cannot send SIGTERM; the process is one this test started"
)]
fn signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) takes no pointers; a process that is gone gives ESRCH, ignored.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Reaps the exited processes of `group` (tools orphaned by a killed worker, adopted by this
/// subreaper), without waiting for those still running.
#[allow(
    unsafe_code,
    reason = "std cannot wait for a process group; the group is one this test started"
)]
fn reap(group: u32) {
    let group = libc::pid_t::try_from(group).expect("pid fits pid_t");
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid, writable int for the duration of the call.
        if unsafe { libc::waitpid(-group, &mut status, libc::WNOHANG) } <= 0 {
            return;
        }
    }
}

/// Runs by status.
fn statuses(
    rt: &tokio::runtime::Runtime,
    journal: &Arc<dyn Journal>,
) -> BTreeMap<RunStatus, usize> {
    let runs = rt
        .block_on(journal.list(&ListFilter::default()))
        .expect("list runs");
    let mut by_status = BTreeMap::new();
    for run in runs {
        *by_status.entry(run.status).or_default() += 1;
    }
    by_status
}

/// Waits until no run is runnable or running: each completed, failed, waiting or paused.
fn wait_settled(rt: &tokio::runtime::Runtime, journal: &Arc<dyn Journal>, total: usize) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let by_status = statuses(rt, journal);
        let running = by_status.get(&RunStatus::Running).copied().unwrap_or(0);
        let known: usize = by_status.values().sum();
        if known == total && running == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "runs did not settle within {PATIENCE:?}: {by_status:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.lines().map(str::to_string).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read {}: {e}", path.display()),
    }
}

fn report(output: &Output) -> Value {
    output.expect_code(0);
    serde_json::from_str(output.stdout.trim())
        .unwrap_or_else(|e| panic!("worker --json printed no report ({e}): {output:#?}"))
}

// ---------------------------------------------------------------------------------------------
// The proof.

/// What the proof found.
#[derive(Default, Debug)]
struct Tally {
    completed: usize,
    waiting_unknown: usize,
    waiting_with_effect: usize,
    taken_over: usize,
    repeated_unjournaled_model_calls: u64,
    repeated_unjournaled_tool_calls: usize,
}

#[test]
fn workers_drain_500_runs_through_a_kill_9_without_repeating_a_journaled_call() {
    become_subreaper();
    let rt = runtime();
    let Some(schema) = new_schema(&rt) else {
        return;
    };
    let began = Instant::now();
    let clerk = Clerk::new();
    let db = PathBuf::from(schema.url());
    let journal = rt
        .block_on(chassis_store::open(schema.url()))
        .expect("open the test's journal");

    // A few runs through the CLI, the rest in-process.
    let mut runs = Vec::new();
    for i in 0..3 {
        let input = format!("cli-{i}");
        let out = run(chassis(&db)
            .arg("submit")
            .arg(&clerk.spec)
            .args(["--input", &input, "--json"]));
        out.expect_code(0);
        let run_id = out.json()["run_id"]
            .as_str()
            .expect("submit --json prints the run id")
            .to_string();
        runs.push((run_id, input));
    }
    let out = run(chassis(&db)
        .args(["run", "--detach"])
        .arg(&clerk.spec)
        .args(["--input", "cli-detached"]));
    out.expect_code(0);
    runs.push((out.stdout.trim().to_string(), "cli-detached".to_string()));
    runs.extend(clerk.submit(&rt, &journal, "job", RUNS - runs.len()));
    let submitted = began.elapsed();

    let cwd = clerk.dir.path();
    let started = Instant::now();
    let mut workers: Vec<WorkerProcess> = (0..3)
        .map(|_| WorkerProcess::start(&db, cwd, &[]))
        .collect();

    // Mid-way, kill -9 one worker, and start another.
    let deadline = Instant::now() + PATIENCE;
    while statuses(&rt, &journal)
        .get(&RunStatus::Completed)
        .copied()
        .unwrap_or(0)
        < RUNS * 2 / 5
    {
        assert!(Instant::now() < deadline, "the workers make no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    let completed_at_kill = statuses(&rt, &journal)
        .get(&RunStatus::Completed)
        .copied()
        .unwrap_or(0);
    let killed = workers.remove(0).kill_9();
    workers.push(WorkerProcess::start(&db, cwd, &[]));

    wait_settled(&rt, &journal, RUNS);
    let drained = started.elapsed();
    reap(killed);
    let reports: Vec<Value> = workers
        .into_iter()
        .map(|w| {
            let out = w.terminate();
            assert!(
                out.stderr.contains("SIGTERM: claiming no more runs"),
                "the worker logs its shutdown: {out:#?}"
            );
            report(&out)
        })
        .collect();

    // Every journal, against the mock's counts, the execution log and the ledger.
    let stats = clerk.mock.stats();
    let mut executions: BTreeMap<String, usize> = BTreeMap::new();
    for line in read_lines(&clerk.path("exec.log")) {
        *executions.entry(line).or_default() += 1;
    }
    let ledger = read_lines(&clerk.path("ledger.txt"));
    let mut ledger_counts: BTreeMap<&str, usize> = BTreeMap::new();
    for line in &ledger {
        *ledger_counts.entry(line.as_str()).or_default() += 1;
    }
    for (line, n) in &ledger_counts {
        assert_eq!(*n, 1, "ledger line {line:?} was written {n} times");
    }

    let mut tally = Tally::default();
    let mut steps = 0;
    let mut to_settle: Vec<(String, String, String, bool)> = Vec::new();
    for (run_id, input) in &runs {
        let records = rt.block_on(journal.load(run_id)).expect("load a run");
        let events: Vec<&Event> = records.iter().map(|r| &r.event).collect();
        let context = || format!("run {run_id} ({input}): {events:#?}");

        // Where the run changed hands: every `run_resumed` after the first.
        let resumed: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e, Event::RunResumed { .. }))
            .map(|(i, _)| i)
            .collect();
        assert!(
            !resumed.is_empty(),
            "a worker resumes every run: {}",
            context()
        );
        let handovers = &resumed[1..];
        if !handovers.is_empty() {
            tally.taken_over += 1;
        }
        let replies_before = |at: usize| {
            events[..at]
                .iter()
                .filter(|e| matches!(e, Event::ModelResponded { .. }))
                .count()
        };
        let replies = replies_before(events.len());
        steps += replies;

        // Model calls: each turn was asked once, plus once per handover at which its reply
        // was not yet journaled (the previous owner may have asked already).
        let turns = stats
            .by_conversation
            .get(input)
            .cloned()
            .unwrap_or_default();
        for (&turn, &asked) in &turns {
            let unjournaled = handovers
                .iter()
                .filter(|&&at| replies_before(at) <= turn as usize)
                .count() as u64;
            assert!(
                asked <= 1 + unjournaled,
                "turn {turn} was asked {asked} times, {unjournaled} handovers before its reply \
                 was journaled: {}",
                context()
            );
            tally.repeated_unjournaled_model_calls += asked - 1;
        }
        for turn in 0..replies {
            assert!(
                turns.contains_key(&(turn as u32)),
                "journaled turn {turn} never reached the model: {}",
                context()
            );
        }

        // Tool calls: an irreversible one ran at most once; a read-only one once, plus once
        // per handover at which its result was not yet journaled.
        for (i, event) in events.iter().enumerate() {
            let Event::ToolStarted {
                call_id,
                name,
                idempotency_key,
                ..
            } = event
            else {
                continue;
            };
            let ran = executions
                .get(&format!("{name} {idempotency_key}"))
                .copied()
                .unwrap_or(0);
            let finished = events
                .iter()
                .any(|e| matches!(e, Event::ToolFinished { call_id: c, .. } if c == call_id));
            if name == "append_line" {
                assert!(
                    ran <= 1,
                    "irreversible {idempotency_key} ran {ran} times: {}",
                    context()
                );
                if finished {
                    assert_eq!(
                        ran,
                        1,
                        "{idempotency_key} finished but never ran: {}",
                        context()
                    );
                }
            } else {
                // Handovers before the call was journaled: the previous owner may have run it.
                let allowed = 1 + handovers.iter().filter(|&&at| at < i).count();
                assert!(
                    (1..=allowed).contains(&ran),
                    "read-only {idempotency_key} ran {ran} times ({} handovers): {}",
                    handovers.len(),
                    context()
                );
                tally.repeated_unjournaled_tool_calls += ran - 1;
            }
        }

        let line_in_ledger = ledger_counts.contains_key(ledger_line(input).as_str());
        match events.last() {
            Some(Event::RunCompleted { output }) => {
                assert_eq!(output, &answer(input), "{}", context());
                let completions = events
                    .iter()
                    .filter(|e| matches!(e, Event::RunCompleted { .. }))
                    .count();
                assert_eq!(completions, 1, "{}", context());
                assert!(
                    line_in_ledger,
                    "a completed run's line is in the ledger: {}",
                    context()
                );
                tally.completed += 1;
            }
            Some(Event::RunWaiting { reason, .. }) => {
                assert!(
                    reason.contains("outcome") && reason.contains("append_line"),
                    "a run waits only on an interrupted irreversible call: {}",
                    context()
                );
                assert!(
                    events
                        .iter()
                        .any(|e| matches!(e, Event::ToolOutcomeUnknown { name, .. } if name == "append_line")),
                    "{}",
                    context()
                );
                assert!(!handovers.is_empty(), "{}", context());
                let call = events
                    .iter()
                    .find_map(|e| match e {
                        Event::ToolOutcomeUnknown { call_id, .. } => Some(call_id.clone()),
                        _ => None,
                    })
                    .expect("the unknown call");
                to_settle.push((run_id.clone(), input.clone(), call, line_in_ledger));
                tally.waiting_unknown += 1;
                if line_in_ledger {
                    tally.waiting_with_effect += 1;
                }
            }
            _ => panic!(
                "run neither completed nor waits on an unknown outcome: {}",
                context()
            ),
        }
    }
    assert_eq!(tally.completed + tally.waiting_unknown, RUNS);

    // A human settles each unknown outcome (the workers are gone, so the CLI drives): the line
    // landed, so it succeeded; or it did not, so it is retried with the same idempotency key.
    for (run_id, input, call, landed) in &to_settle {
        let mut command = chassis(&db);
        command.args(["resolve", run_id, call, "--by", "proof", "--resume"]);
        if *landed {
            command.args([
                "--succeeded",
                "--result",
                &format!("appended {}", ledger_line(input)),
            ]);
        } else {
            command.arg("--retry");
        }
        let out = command.output().expect("run chassis resolve");
        assert!(out.status.success(), "resolve {run_id}: {out:?}");
        let records = rt.block_on(journal.load(run_id)).expect("load a run");
        assert!(
            matches!(records.last().map(|r| &r.event), Some(Event::RunCompleted { output }) if output == &answer(input)),
            "{run_id} completes with the right answer once settled"
        );
    }
    let ledger = read_lines(&clerk.path("ledger.txt"));
    let mut settled_counts: BTreeMap<&str, usize> = BTreeMap::new();
    for line in &ledger {
        *settled_counts.entry(line.as_str()).or_default() += 1;
    }
    assert!(
        settled_counts.values().all(|n| *n == 1),
        "no ledger line twice after settling"
    );
    assert_eq!(
        ledger.len(),
        RUNS,
        "every run's effect happened exactly once"
    );
    assert_eq!(
        statuses(&rt, &journal)
            .get(&RunStatus::Completed)
            .copied()
            .unwrap_or(0),
        RUNS,
        "every run completed exactly once"
    );
    assert!(
        tally.taken_over > 0,
        "the killed worker had runs in flight that others took over: {tally:?}"
    );
    // Every ledger line belongs to a run.
    assert!(ledger.len() <= RUNS);

    let sum = |key: &str| {
        reports
            .iter()
            .map(|r| r[key].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    eprintln!(
        "workers proof: {RUNS} runs submitted in {:.1}s; 3 workers × {CONCURRENCY}, one \
         SIGKILLed after {completed_at_kill} completions and a fourth started; drained in \
         {:.1}s ({:.0} runs/s, {:.0} steps/s); {} completed exactly once with the right \
         answer, {} waiting on an unknown outcome ({} with the line in the ledger, {} without); \
         {} runs taken over after the kill; model turns asked again only while unjournaled: \
         {}; read-only calls run again only while unjournaled: {}; ledger {} lines, 0 \
         duplicates; mock {} requests; surviving workers' reports: {} completed, {} waiting, \
         {} leases lost; {:.1}s in all",
        submitted.as_secs_f64(),
        drained.as_secs_f64(),
        RUNS as f64 / drained.as_secs_f64(),
        steps as f64 / drained.as_secs_f64(),
        tally.completed,
        tally.waiting_unknown,
        tally.waiting_with_effect,
        tally.waiting_unknown - tally.waiting_with_effect,
        tally.taken_over,
        tally.repeated_unjournaled_model_calls,
        tally.repeated_unjournaled_tool_calls,
        ledger.len(),
        stats.requests,
        sum("completed"),
        sum("waiting"),
        sum("lease_lost"),
        began.elapsed().as_secs_f64(),
    );
}

// ---------------------------------------------------------------------------------------------
// Throughput.

/// The throughput agent's script: two in-process reads, then the answer (3 steps).
const READER_SCRIPT: &str = r#"
[[scenario]]
name = "reader"
[[scenario.turn]]
tool_calls = [{ name = "read_file", arguments = { path = "note.txt" } }]
[[scenario.turn]]
tool_calls = [{ name = "read_file", arguments = { path = "note.txt" } }]
[[scenario.turn]]
text = "read {input}"
"#;

/// One measurement: `workers` processes drain [`bench_runs`] submitted runs of an agent whose
/// tool runs in-process (a command tool would measure Python's start-up, not the workers).
fn measure(rt: &tokio::runtime::Runtime, db: &Path, workers: usize) -> String {
    let count = bench_runs();
    let mock = Mock::start(READER_SCRIPT, MOCK_LATENCY);
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path();
    std::fs::create_dir_all(root.join("notes")).expect("notes directory");
    write(
        &root.join("notes"),
        "note.txt",
        "Replica lag alert at 02:14.\n",
    );
    write(root, "prompt.md.j2", "Read the note. {{ input }}\n");
    let spec = write(
        root,
        "agent.toml",
        &format!(
            r#"[agent]
name = "reader"
prompt = "prompt.md.j2"

[model]
primary = "mock:reader-model"
timeout = "60s"

[providers.mock]
kind = "openai"
base_url = {base_url}

[[tools]]
use = "builtin:fs"
root = "notes"
"#,
            base_url = toml_str(&mock.base_url()),
        ),
    );
    let target = db.to_str().expect("UTF-8 target").to_string();
    let journal = rt
        .block_on(chassis_store::open(&target))
        .expect("open the journal");
    let runs = rt.block_on(async {
        let agent = Agent::load(&spec).await.expect("the reader spec loads");
        let engine = Engine::new(Arc::clone(&journal));
        let mut runs = Vec::with_capacity(count);
        for i in 0..count {
            runs.push(
                engine
                    .submit(&agent, &format!("bench-{i:04}"))
                    .await
                    .expect("submit"),
            );
        }
        runs
    });
    let started = Instant::now();
    let processes: Vec<WorkerProcess> = (0..workers)
        .map(|_| WorkerProcess::start(db, root, &[]))
        .collect();
    wait_settled(rt, &journal, count);
    let elapsed = started.elapsed().as_secs_f64();
    for process in processes {
        report(&process.terminate());
    }
    let mut steps = 0;
    for run_id in &runs {
        let records = rt.block_on(journal.load(run_id)).expect("load a run");
        assert!(
            matches!(
                records.last().map(|r| &r.event),
                Some(Event::RunCompleted { .. })
            ),
            "run {run_id} did not complete: {records:#?}"
        );
        steps += records
            .iter()
            .filter(|r| matches!(r.event, Event::ModelResponded { .. }))
            .count();
    }
    format!(
        "{workers} worker(s) × {CONCURRENCY}: {count} runs, {steps} steps in {elapsed:.2}s: \
         {:>6.1} runs/s, {:>6.1} steps/s",
        count as f64 / elapsed,
        steps as f64 / elapsed,
    )
}

#[test]
fn workers_throughput_with_one_two_and_three_workers() {
    become_subreaper();
    let rt = runtime();
    let mut lines = Vec::new();
    for workers in 1..=3 {
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = dir.path().join("chassis.db");
        lines.push(format!("SQLite     {}", measure(&rt, &db, workers)));
    }
    for workers in 1..=3 {
        let Some(schema) = new_schema(&rt) else {
            break;
        };
        let db = PathBuf::from(schema.url());
        lines.push(format!("PostgreSQL {}", measure(&rt, &db, workers)));
    }
    eprintln!(
        "workers throughput (mock model {} ms per reply; per run 3 steps: 2 in-process reads and \
         the answer; {} CPUs):\n  {}",
        MOCK_LATENCY.as_millis(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        lines.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// SQLite workers, `resume --detach`, `db migrate`, bad targets.

#[test]
fn sqlite_workers_share_a_file_and_resume_detach_hands_a_parked_run_back() {
    become_subreaper();
    let rt = runtime();
    let clerk = Clerk::new();
    let cwd = clerk.dir.path();
    let db = clerk.path("chassis.db");
    // A second agent in the same directory that parks after one step.
    let spec_text = std::fs::read_to_string(&clerk.spec).expect("read the spec");
    let parked_spec = write(
        cwd,
        "parked.toml",
        &spec_text.replace("max_steps = 6", "max_steps = 1\non_limit = \"pause\""),
    );

    let journal = rt
        .block_on(chassis_store::open(db.to_str().unwrap()))
        .expect("open the journal");
    let mut runs = clerk.submit(&rt, &journal, "job", 30);
    let out = run(chassis(&db)
        .arg("submit")
        .arg(&parked_spec)
        .args(["--input", "limited"]));
    out.expect_code(0);
    let parked = out.stdout.trim().to_string();
    assert!(
        parked.starts_with("run_"),
        "submit prints the run id: {out:#?}"
    );

    let workers: Vec<WorkerProcess> = (0..2)
        .map(|_| WorkerProcess::start(&db, cwd, &[]))
        .collect();
    wait_settled(&rt, &journal, 31);
    let by_status = statuses(&rt, &journal);
    assert_eq!(
        by_status.get(&RunStatus::Completed),
        Some(&30),
        "{by_status:?}"
    );
    assert_eq!(by_status.get(&RunStatus::Paused), Some(&1), "{by_status:?}");

    // Raise the limit and hand the run back: the command returns at once, a worker finishes it.
    let out = run(chassis(&db).args([
        "resume",
        &parked,
        "--detach",
        "--raise",
        "max_steps=10",
        "--by",
        "ops",
        "--json",
    ]));
    out.expect_code(0);
    assert_eq!(out.json()["run_id"], parked.as_str(), "{out:#?}");
    runs.push((parked.clone(), "limited".to_string()));
    // Waking changes no status: wait for the run's own completion.
    let deadline = Instant::now() + PATIENCE;
    while statuses(&rt, &journal).get(&RunStatus::Completed) != Some(&31) {
        assert!(
            Instant::now() < deadline,
            "no worker picked the woken run up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let records = rt.block_on(journal.load(&parked)).unwrap();
    assert!(
        records
            .iter()
            .any(|r| matches!(&r.event, Event::LimitRaised { by, .. } if by == "ops")),
        "the raise is journaled with who raised it"
    );
    assert!(
        matches!(
            records.last().map(|r| &r.event),
            Some(Event::RunCompleted { .. })
        ),
        "a worker completed the run after the raise"
    );

    // A finished run: `--detach` only reports it.
    let out = run(chassis(&db).args(["resume", &parked, "--detach"]));
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), answer("limited"));

    let outputs: Vec<Output> = workers.into_iter().map(|w| w.terminate()).collect();
    let reports: Vec<Value> = outputs.iter().map(report).collect();
    let completed: u64 = reports
        .iter()
        .map(|r| r["completed"].as_u64().unwrap())
        .sum();
    assert_eq!(completed, 31, "{reports:?}");
    // Each worker says on stderr, a line a run, what it finished: id, agent, status, steps.
    let finished: Vec<&str> = outputs
        .iter()
        .flat_map(|o| o.stderr.lines())
        .filter(|l| l.starts_with("run_") && l.contains("  completed  "))
        .collect();
    assert_eq!(finished.len(), 31, "{finished:#?}");
    for (run_id, _) in &runs {
        assert_eq!(
            finished
                .iter()
                .filter(|l| l.starts_with(run_id.as_str()))
                .count(),
            1,
            "{run_id} has one line: {finished:#?}"
        );
    }
    let ledger = read_lines(&clerk.path("ledger.txt"));
    assert_eq!(ledger.len(), 31, "one line per run");
    for (_, input) in &runs {
        assert!(
            ledger.contains(&ledger_line(input)),
            "{input} is in the ledger"
        );
    }
}

#[test]
fn db_migrate_prints_the_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("new.db");
    let out = run(chassis(&db).args(["db", "migrate"]));
    out.expect_code(0);
    assert!(
        out.stdout.contains(&format!(
            "schema version {}",
            chassis_store::schema_version("new.db")
        )) && out.stdout.contains("new.db"),
        "{out:#?}"
    );
    let out = run(chassis(&db).args(["db", "migrate", "--json"]));
    out.expect_code(0);
    assert_eq!(
        out.json()["schema_version"],
        chassis_store::schema_version("new.db")
    );
    // Read commands still refuse a missing file instead of creating it.
    let missing = dir.path().join("missing.db");
    let out = run(chassis(&missing).arg("runs"));
    out.expect_code(2);
    assert!(out.stderr.contains("no journal at"), "{out:#?}");
    assert!(!missing.exists());
    // A target that is neither a path nor a PostgreSQL URL.
    let out = run(chassis(Path::new("mysql://root:hunter2@db/chassis")).arg("runs"));
    out.expect_code(2);
    assert!(
        out.stderr.contains("unsupported scheme") && !out.stderr.contains("hunter2"),
        "{out:#?}"
    );
}

#[test]
fn bad_postgres_targets_fail_clearly_and_write_nothing() {
    let clerk = Clerk::new();
    let submit = |db: &str| {
        run(chassis(Path::new(db))
            .arg("submit")
            .arg(&clerk.spec)
            .args(["--input", "x"]))
    };
    // Nothing listens on port 1.
    let out = submit("postgres://postgres:hunter2@127.0.0.1:1/test");
    out.expect_code(1);
    assert!(
        out.stderr.contains("127.0.0.1:1") && !out.stderr.contains("hunter2"),
        "the error names the server, never the password: {out:#?}"
    );

    let rt = runtime();
    let Some(schema) = new_schema(&rt) else {
        return;
    };
    // A role that does not exist (trust authentication still needs one).
    let url = schema.url().replacen(
        "postgres://postgres@",
        "postgres://no_such_chassis_role:hunter2@",
        1,
    );
    if url != schema.url() {
        let out = submit(&url);
        out.expect_code(1);
        assert!(
            out.stderr.contains("no_such_chassis_role:***@") && !out.stderr.contains("hunter2"),
            "{out:#?}"
        );
    }

    // A schema written by a newer chassis is refused untouched, and no run is written.
    let out = run(chassis(Path::new(schema.url())).args(["db", "migrate", "--json"]));
    out.expect_code(0);
    assert_eq!(
        out.json()["schema_version"],
        chassis_store::schema_version("postgres://"),
        "{out:#?}"
    );
    rt.block_on(
        schema.execute("UPDATE chassis_meta SET value = '99' WHERE key = 'schema_version'"),
    );
    let out = submit(schema.url());
    out.expect_code(1);
    assert!(
        out.stderr.contains("schema version 99 is newer")
            && out.stderr.contains(&chassis_store::redact(schema.url())),
        "{out:#?}"
    );
    let runs: i64 = rt.block_on(async {
        admin(schema.url())
            .await
            .unwrap()
            .query_one("SELECT count(*) FROM runs", &[])
            .await
            .unwrap()
            .get(0)
    });
    assert_eq!(runs, 0, "nothing was journaled");
}
