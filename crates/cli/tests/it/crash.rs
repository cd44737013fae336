//! The kill -9 test: `chassis run` is SIGKILLed at many points, then resumed until it settles.
//!
//! The agent looks a key up (a read-only tool), appends a line to a ledger (an irreversible
//! tool), and answers. Kills land before the run exists, around each model call, during each
//! tool, between journal appends, and after completion. Two kinds of crash alternate: the
//! whole process group dies at once (a host crash: the tool dies with the runtime), or only
//! chassis dies and the tool it was running lives on for a while (a runtime crash: the
//! irreversible effect may land after its caller is gone).
//!
//! After every crash the journal, the mock model's request counts and the tools' execution
//! log are snapshot; the run is resumed (some resumes are killed again) until it completes or
//! waits, and then:
//! - a completed run has the same answer as an uninterrupted one;
//! - a model step whose reply was journaled at a snapshot was never requested again;
//! - a tool call whose result was journaled at a snapshot was never executed again;
//! - the irreversible tool ran at most once per run, and no ledger line appears twice;
//! - a run that waits does so because an interrupted irreversible call's outcome is unknown;
//! - every snapshot's journal is a prefix of the final one; no run is left running.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::util::{
    Mock, Output, Spawned, assert_well_formed, become_subreaper, chassis, events, kinds, python,
    run, runs_json, show_json, toml_str, write,
};

/// Runs killed, each with its own input; the issue asks for at least 40.
const ITERATIONS: u32 = 52;

/// Inputs of the uninterrupted runs every killed run is compared with.
const REFERENCES: [&str; 2] = ["ref-a", "ref-b"];

/// Seed of the kill schedule: the same seed gives the same delays and crash kinds.
const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// Delay of every mock reply, so that kills can land while a model call is in flight.
const MOCK_LATENCY: Duration = Duration::from_millis(30);

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

/// Read-only: logs its execution, then answers after a short while.
const LOOKUP_PY: &str = r#"
import json, os, sys, time
args = json.load(sys.stdin)
with open("exec.log", "a") as log:
    log.write("lookup " + os.environ["CHASSIS_IDEMPOTENCY_KEY"] + "\n")
time.sleep(0.03)
print("record " + args["key"])
"#;

/// Irreversible: logs its execution, waits, appends the line, waits again, answers.
const APPEND_LINE_PY: &str = r#"
import json, os, sys, time
args = json.load(sys.stdin)
with open("exec.log", "a") as log:
    log.write("append_line " + os.environ["CHASSIS_IDEMPOTENCY_KEY"] + "\n")
time.sleep(0.04)
with open("ledger.txt", "a") as ledger:
    ledger.write(args["line"] + "\n")
time.sleep(0.04)
print("appended " + args["line"])
"#;

/// The answer of an uninterrupted run on `input`.
fn answer(input: &str) -> String {
    format!("done {input}: appended {}", ledger_line(input))
}

/// The line the run on `input` appends to the ledger.
fn ledger_line(input: &str) -> String {
    format!("{input} | record {input}")
}

/// The agent's directory, its journal and its mock model.
struct Clerk {
    dir: TempDir,
    db: PathBuf,
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
        let python = toml_str(python());
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

[approvals.tools]
append_line = "auto"
"#,
                base_url = toml_str(&mock.base_url()),
            ),
        );
        Clerk {
            db: root.join("j.db"),
            dir,
            spec,
            mock,
        }
    }

    fn run_command(&self, input: &str) -> Command {
        let mut command = chassis(&self.db);
        command
            .arg("run")
            .arg(&self.spec)
            .args(["--input", input, "--json", "-q"]);
        command
    }

    fn resume_command(&self, run_id: &str) -> Command {
        let mut command = chassis(&self.db);
        command.args(["resume", run_id, "--json", "-q"]);
        command
    }

    /// Every line of the ledger, in order.
    fn ledger(&self) -> Vec<String> {
        read_lines(&self.dir.path().join("ledger.txt"))
    }

    /// How often `line` is in the ledger.
    fn ledger_count(&self, line: &str) -> usize {
        self.ledger().iter().filter(|l| *l == line).count()
    }

    /// Executions per `TOOL IDEMPOTENCY_KEY` for the calls of `run_id`.
    fn executions(&self, run_id: &str) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        let prefix = format!("{run_id}/");
        for line in read_lines(&self.dir.path().join("exec.log")) {
            if line
                .split(' ')
                .nth(1)
                .is_some_and(|key| key.starts_with(&prefix))
            {
                *counts.entry(line).or_default() += 1;
            }
        }
        counts
    }

    /// The newest run, if it is the one started on `input` (a run killed before it was
    /// created leaves the previous run the newest).
    fn find_run(&self, input: &str) -> Option<String> {
        let newest = runs_json(&self.db, &["--limit", "1"]);
        let run_id = newest.first()?["run_id"].as_str()?.to_string();
        let show = show_json(&self.db, &run_id);
        (events(&show)[0]["input"] == input).then_some(run_id)
    }

    /// Everything the invariants compare, taken while no process of the run is alive.
    fn snapshot(&self, run_id: &str, input: &str) -> Snapshot {
        let show = show_json(&self.db, run_id);
        Snapshot {
            status: show["status"].as_str().expect("status").to_string(),
            events: events(&show).to_vec(),
            model_turns: self.mock.turns(input),
            executions: self.executions(run_id),
        }
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.lines().map(str::to_string).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read {}: {e}", path.display()),
    }
}

/// A run's journal and side effects at one moment.
#[derive(Debug)]
struct Snapshot {
    status: String,
    events: Vec<Value>,
    /// Mock requests of this run's conversation, by turn (step - 1).
    model_turns: BTreeMap<u32, u64>,
    /// Tool executions of this run, by `TOOL IDEMPOTENCY_KEY`.
    executions: BTreeMap<String, usize>,
}

impl Snapshot {
    fn of_kind(&self, kind: &str) -> impl Iterator<Item = &Value> {
        self.events.iter().filter(move |e| e["kind"] == kind)
    }

    /// `TOOL IDEMPOTENCY_KEY` of the journaled call `call_id`, as the execution log writes it.
    fn execution_key(&self, call_id: &Value) -> String {
        let started = self
            .of_kind("tool_started")
            .find(|e| e["call_id"] == *call_id)
            .unwrap_or_else(|| panic!("call {call_id} finished but never started"));
        format!(
            "{} {}",
            started["name"].as_str().expect("tool name"),
            started["idempotency_key"]
                .as_str()
                .expect("idempotency key")
        )
    }

    /// True when `tool` has a `tool_finished` in this journal.
    fn finished(&self, tool: &str) -> bool {
        self.of_kind("tool_finished").any(|f| {
            self.execution_key(&f["call_id"])
                .starts_with(&format!("{tool} "))
        })
    }
}

/// Where the first kill of an iteration landed, as the evidence shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    BeforeRun,
    BeforeModel1,
    Model1,
    Lookup,
    Model2,
    AppendLineNoEffect,
    AppendLineEffect,
    Model3,
    Completed,
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::BeforeRun => "before the run existed",
            Phase::BeforeModel1 => "run created, model not yet asked",
            Phase::Model1 => "model call 1",
            Phase::Lookup => "lookup or step-1 append",
            Phase::Model2 => "model call 2",
            Phase::AppendLineNoEffect => "append_line before its effect",
            Phase::AppendLineEffect => "append_line after its effect",
            Phase::Model3 => "model call 3 or final append",
            Phase::Completed => "after completion",
        }
    }

    /// Reads the phase off the first snapshot: the journal is flushed once per step, so its
    /// last event, the mock's counts and the execution log say where the process was.
    fn of(snapshot: &Snapshot, ledger_has_line: bool) -> Phase {
        let last = snapshot.events.last().expect("a journal has run_started");
        match last["kind"].as_str().expect("kind") {
            "run_started" if snapshot.executions.keys().any(|k| k.starts_with("lookup ")) => {
                Phase::Lookup
            }
            "run_started" if snapshot.model_turns.is_empty() => Phase::BeforeModel1,
            "run_started" => Phase::Model1,
            "tool_finished" if snapshot.finished("append_line") => Phase::Model3,
            "tool_finished" => Phase::Model2,
            "tool_started" if ledger_has_line => Phase::AppendLineEffect,
            "tool_started" => Phase::AppendLineNoEffect,
            "run_completed" => Phase::Completed,
            other => panic!("unexpected last event {other} after a first crash: {snapshot:#?}"),
        }
    }
}

/// A deterministic pseudo-random schedule (xorshift64).
struct Schedule(u64);

impl Schedule {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A delay in `0..span`.
    fn delay(&mut self, span: Duration) -> Duration {
        Duration::from_micros(self.below(span.as_micros() as u64))
    }

    /// How the next crash kills: `None` kills the whole group at once (host crash); `Some`
    /// kills chassis and lets its tool live that long (runtime crash).
    fn crash_kind(&mut self) -> Option<Duration> {
        match self.below(3) {
            0 => None,
            _ => Some(Duration::from_millis(self.below(150))),
        }
    }
}

/// What the iterations came to.
#[derive(Default)]
struct Tally {
    phases: BTreeMap<Phase, u32>,
    host_crashes: u32,
    runtime_crashes: u32,
    resumes_killed: u32,
    completed: u32,
    waiting: u32,
    waiting_with_effect: u32,
}

impl Tally {
    fn crash(&mut self, kind: Option<Duration>) {
        match kind {
            None => self.host_crashes += 1,
            Some(_) => self.runtime_crashes += 1,
        }
    }

    fn summary(
        &self,
        run_time: Duration,
        span: Duration,
        ledger_lines: usize,
        requests: u64,
        elapsed: Duration,
    ) -> String {
        let phases: Vec<String> = self
            .phases
            .iter()
            .map(|(phase, n)| format!("{} {n}", phase.label()))
            .collect();
        format!(
            "crash test: seed {SEED:#x}, uninterrupted run {} ms, kills spread over 0..{} ms; \
             {ITERATIONS} runs killed ({} host crashes, {} runtime crashes), {} resumes killed \
             again; first kill landed: {}; outcomes: {} completed \
             with the uninterrupted answer, {} waiting on an unknown outcome ({} with the line \
             in the ledger, {} without); ledger {ledger_lines} lines, 0 duplicates; mock \
             {requests} requests; {:.1}s",
            run_time.as_millis(),
            span.as_millis(),
            self.host_crashes,
            self.runtime_crashes,
            self.resumes_killed,
            phases.join(", "),
            self.completed,
            self.waiting,
            self.waiting_with_effect,
            self.waiting - self.waiting_with_effect,
            elapsed.as_secs_f64(),
        )
    }
}

#[test]
fn killed_runs_resume_to_the_same_answer_and_never_repeat_a_journaled_call() {
    become_subreaper();
    let began = Instant::now();
    let clerk = Clerk::new();

    // The first run pays for cold caches; the faster of two is the typical run time.
    let run_time = REFERENCES
        .iter()
        .map(|input| reference_run(&clerk, input))
        .min()
        .expect("reference runs");
    // Kills are spread over a little more than an uninterrupted run, so some land after it.
    let span = (run_time * 13 / 10).max(Duration::from_millis(150));

    let mut schedule = Schedule(SEED);
    let mut tally = Tally::default();
    for i in 0..ITERATIONS {
        let input = format!("case-{i:02}");
        let delay = schedule.delay(span);
        let kind = schedule.crash_kind();
        tally.crash(kind);
        let child = Spawned::start(&mut clerk.run_command(&input));
        std::thread::sleep(delay);
        child.crash(kind);

        let Some(run_id) = clerk.find_run(&input) else {
            assert_eq!(
                clerk.mock.turns(&input),
                BTreeMap::new(),
                "{input}: the model was called before the run was journaled"
            );
            *tally.phases.entry(Phase::BeforeRun).or_default() += 1;
            continue;
        };
        let first = clerk.snapshot(&run_id, &input);
        let phase = Phase::of(&first, clerk.ledger_count(&ledger_line(&input)) > 0);
        *tally.phases.entry(phase).or_default() += 1;

        let mut snapshots = vec![first];
        let out = loop {
            let resume = Spawned::start(&mut clerk.resume_command(&run_id));
            if snapshots.len() < 3 && schedule.below(3) == 0 {
                let kind = schedule.crash_kind();
                std::thread::sleep(schedule.delay(span));
                resume.crash(kind);
                tally.resumes_killed += 1;
                snapshots.push(clerk.snapshot(&run_id, &input));
                continue;
            }
            break resume.finish();
        };
        let last = clerk.snapshot(&run_id, &input);
        check_settled(&clerk, &input, &run_id, &snapshots, &last, &out);
        match last.status.as_str() {
            "completed" => tally.completed += 1,
            _ => {
                tally.waiting += 1;
                let landed = clerk.ledger_count(&ledger_line(&input)) > 0;
                if landed {
                    tally.waiting_with_effect += 1;
                }
                settle(&clerk, &input, &run_id, &last, landed);
            }
        }
    }

    // No ledger line twice, and nothing in it that no run asked for.
    let ledger = clerk.ledger();
    let mut seen = BTreeMap::new();
    for line in &ledger {
        *seen.entry(line.as_str()).or_insert(0) += 1;
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "ledger lines appended twice: {duplicates:?}"
    );
    let expected: Vec<String> = REFERENCES
        .iter()
        .map(|input| input.to_string())
        .chain((0..ITERATIONS).map(|i| format!("case-{i:02}")))
        .map(|input| ledger_line(&input))
        .collect();
    assert!(
        ledger.iter().all(|line| expected.contains(line)),
        "unexpected ledger lines: {ledger:?}"
    );
    assert_eq!(
        runs_json(&clerk.db, &["--status", "running"]),
        Vec::<Value>::new(),
        "every run settled"
    );
    let created = ITERATIONS - tally.phases.get(&Phase::BeforeRun).copied().unwrap_or(0);
    assert_eq!(
        runs_json(&clerk.db, &["--limit", "1000"]).len() as u32,
        created + REFERENCES.len() as u32,
        "one run per started iteration plus the references"
    );
    assert_eq!(tally.completed + tally.waiting, created);

    // Every waiting run was settled by a human and completed: one line per run, exactly.
    assert_eq!(
        ledger.len() as u32,
        REFERENCES.len() as u32 + created,
        "one line per run once the unknown outcomes are settled"
    );
    assert_eq!(
        runs_json(&clerk.db, &["--status", "waiting"]),
        Vec::<Value>::new(),
        "every unknown outcome was settled"
    );
    eprintln!(
        "{}",
        tally.summary(
            run_time,
            span,
            ledger.len(),
            clerk.mock.stats().requests,
            began.elapsed()
        )
    );
    // Most kills must hit a live run, or the test proves little.
    assert!(
        created >= ITERATIONS / 2,
        "only {created} of {ITERATIONS} kills landed after the run was created"
    );
}

/// Settles a run waiting on an unknown outcome the way an operator would: the effect is in the
/// ledger, so it succeeded; or it is not, so it is retried (with the same idempotency key).
/// Either way the run then completes with the uninterrupted answer and one ledger line.
fn settle(clerk: &Clerk, input: &str, run_id: &str, last: &Snapshot, landed: bool) {
    let unknown: Vec<&Value> = last.of_kind("tool_outcome_unknown").collect();
    let call = unknown[0]["call_id"].as_str().expect("call id").to_string();
    let mut command = chassis(&clerk.db);
    command.args(["resolve", run_id, &call, "--by", "crash-test", "--resume"]);
    if landed {
        command.args([
            "--succeeded",
            "--result",
            &format!("appended {}", ledger_line(input)),
        ]);
    } else {
        command.arg("--retry");
    }
    let out = run(&mut command);
    out.expect_code(0);
    let done = run(&mut clerk.resume_command(run_id));
    done.expect_code(0);
    assert_eq!(
        done.json()["status"],
        "completed",
        "{input}: settled run completes"
    );
    assert_eq!(
        done.json()["output"].as_str(),
        Some(answer(input).as_str()),
        "{input}: the settled run gives the uninterrupted answer"
    );
    assert_eq!(
        clerk.ledger_count(&ledger_line(input)),
        1,
        "{input}: exactly one ledger line after settling (landed before: {landed})"
    );
}

/// One uninterrupted run on `input`, checked in full; returns how long it took.
fn reference_run(clerk: &Clerk, input: &str) -> Duration {
    let began = Instant::now();
    let out = run(&mut clerk.run_command(input));
    let took = began.elapsed();
    out.expect_code(0);
    let reply = out.json();
    assert_eq!(reply["status"], "completed", "{out:#?}");
    assert_eq!(reply["output"], answer(input));

    let run_id = reply["run_id"].as_str().expect("run_id");
    let snapshot = clerk.snapshot(run_id, input);
    assert_well_formed(&snapshot.events);
    assert_eq!(
        kinds(&snapshot.events),
        [
            "run_started",
            "model_requested",
            "model_responded",
            "tool_started",
            "tool_finished",
            "model_requested",
            "model_responded",
            "tool_started",
            "tool_finished",
            "model_requested",
            "model_responded",
            "run_completed",
        ]
    );
    assert_eq!(snapshot.model_turns, [(0, 1), (1, 1), (2, 1)].into());
    assert_eq!(
        snapshot.executions.values().copied().collect::<Vec<_>>(),
        [1, 1],
        "each tool ran once: {:?}",
        snapshot.executions
    );
    assert_eq!(clerk.ledger_count(&ledger_line(input)), 1);
    took
}

/// Checks one settled run against the snapshots taken after each of its crashes.
fn check_settled(
    clerk: &Clerk,
    input: &str,
    run_id: &str,
    snapshots: &[Snapshot],
    last: &Snapshot,
    out: &Output,
) {
    let context = |what: &str| format!("{input} ({run_id}): {what}");
    assert_well_formed(&last.events);

    // The resume reported what the journal says.
    let reply = out.json();
    assert_eq!(reply["run_id"], run_id, "{}", context("resume --json"));
    assert_eq!(
        reply["status"],
        last.status.as_str(),
        "{}",
        context("resume status")
    );
    let code = if last.status == "completed" { 0 } else { 3 };
    assert_eq!(
        out.code,
        Some(code),
        "{}",
        context(&format!("exit code: {out:#?}"))
    );

    for (n, snapshot) in snapshots.iter().enumerate() {
        // Journaled events are never lost or reordered.
        assert!(
            last.events.starts_with(&snapshot.events),
            "{}",
            context(&format!(
                "snapshot {n} is not a prefix of the final journal:\n{:#?}\nvs\n{:#?}",
                snapshot.events, last.events
            ))
        );
        // A model step whose reply was journaled is never requested again.
        for responded in snapshot.of_kind("model_responded") {
            let step = responded["step"].as_u64().expect("step") as u32;
            let turn = step - 1;
            assert_eq!(
                last.model_turns.get(&turn),
                snapshot.model_turns.get(&turn),
                "{}",
                context(&format!(
                    "step {step} was journaled at snapshot {n}, yet the model was asked again"
                ))
            );
        }
        // A tool call whose result was journaled is never executed again.
        for finished in snapshot.of_kind("tool_finished") {
            let key = snapshot.execution_key(&finished["call_id"]);
            assert_eq!(
                last.executions.get(&key),
                snapshot.executions.get(&key),
                "{}",
                context(&format!(
                    "{key} was journaled as finished at snapshot {n}, yet ran again"
                ))
            );
        }
    }

    // The irreversible tool ran at most once, and appended its line at most once.
    let appends: usize = last
        .executions
        .iter()
        .filter(|(key, _)| key.starts_with("append_line "))
        .map(|(_, n)| n)
        .sum();
    assert!(
        appends <= 1,
        "{}",
        context(&format!("append_line ran {appends} times"))
    );
    let lines = clerk.ledger_count(&ledger_line(input));
    assert!(
        lines <= 1,
        "{}",
        context(&format!("ledger has the line {lines} times"))
    );

    match last.status.as_str() {
        "completed" => {
            assert_eq!(
                reply["output"],
                answer(input),
                "{}",
                context("a resumed run answers as an uninterrupted one")
            );
            assert_eq!(
                lines,
                1,
                "{}",
                context("completed, so the line was appended")
            );
            assert!(
                last.finished("append_line"),
                "{}",
                context("append_line finished")
            );
        }
        "waiting" => {
            let unknown: Vec<&Value> = last.of_kind("tool_outcome_unknown").collect();
            assert!(
                unknown.len() == 1 && unknown[0]["name"] == "append_line",
                "{}",
                context(&format!(
                    "a waiting run names the interrupted irreversible call: {:?}",
                    kinds(&last.events)
                ))
            );
            assert!(
                !last.finished("append_line"),
                "{}",
                context("an unknown outcome has no result")
            );
            assert_eq!(
                last.model_turns.get(&2),
                None,
                "{}",
                context("the model is not asked past an unknown outcome")
            );
            let reason = reply["reason"].as_str().unwrap_or_default();
            assert!(
                reason.contains("unknown") && reason.contains("append_line"),
                "{}",
                context(&format!("waiting reason {reason:?}"))
            );
            // Resuming again changes nothing while the outcome is unknown.
            let again = run(&mut clerk.resume_command(run_id));
            again.expect_code(3);
            assert_eq!(again.json()["status"], "waiting");
            let after = clerk.snapshot(run_id, input);
            assert_eq!(after.events, last.events, "{}", context("resume appended"));
            assert_eq!(after.model_turns, last.model_turns);
            assert_eq!(after.executions, last.executions);
        }
        other => panic!(
            "{}",
            context(&format!("settled as {other}: {:#?}", last.events))
        ),
    }
}
