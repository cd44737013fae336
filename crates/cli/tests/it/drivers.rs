//! Where drivers and humans meet, with real processes on one journal: Ctrl-C during a run, a
//! resume of a run another process drives, idempotent starts, cancel, and the whole crowd at
//! once — a worker, `chassis run`s, `chassis resume`s and a human approving and settling,
//! with SIGKILLs in between — after which every run has completed and no effect ran twice.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::util::{
    Mock, Output, Spawned, become_subreaper, chassis, events, python, run, runs_json, show_json,
    toml_str, write,
};

/// `big` inputs pay an amount that needs a human's approval; the others run on their own.
const SCRIPT: &str = r#"
[[scenario]]
name = "big"
when_input_contains = "big"
[[scenario.turn]]
text = "A big one: paying."
tool_calls = [{ name = "pay", arguments = { line = "{input}", kind = "big" } }]
[[scenario.turn]]
text = "paid: {last_tool_result}"

[[scenario]]
name = "small"
[[scenario.turn]]
tool_calls = [{ name = "pay", arguments = { line = "{input}", kind = "small" } }]
[[scenario.turn]]
text = "paid: {last_tool_result}"
"#;

/// Irreversible: logs that it started (with its key), takes a moment, then appends the line
/// and the key to the ledger. `sleep` in the input makes it take longer.
const PAY: &str = r#"
import json, os, sys, time
args = json.load(sys.stdin)
key = os.environ["CHASSIS_IDEMPOTENCY_KEY"]
with open(sys.argv[1], "a") as log:
    log.write(key + "\n")
time.sleep(2.0 if "sleep" in args["line"] else 0.2)
with open(sys.argv[2], "a") as ledger:
    ledger.write(args["line"] + " " + key + "\n")
print("paid " + args["line"])
"#;

struct Desk {
    dir: TempDir,
    db: PathBuf,
    spec: PathBuf,
    mock: Mock,
}

impl Desk {
    fn new(latency: Duration) -> Desk {
        let mock = Mock::start(SCRIPT, latency);
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path();
        write(root, "pay.py", PAY);
        write(root, "prompt.md.j2", "Pay what is asked: {{ input }}\n");
        let spec = write(
            root,
            "agent.toml",
            &format!(
                r#"[agent]
name = "payer"
prompt = "prompt.md.j2"

[model]
primary = "mock:m"
timeout = "60s"

[providers.mock]
kind = "openai"
base_url = {base_url}

[[tools]]
name = "pay"
description = "Pays"
command = [{python}, "-I", "pay.py", {log}, {ledger}]
risk = "irreversible"
timeout = "60s"
args_schema = {{ type = "object", required = ["line", "kind"], properties = {{ line = {{ type = "string" }}, kind = {{ type = "string" }} }} }}

[approvals]
irreversible = "auto"
[[approvals.rules]]
tool = "pay"
arg = "kind"
op = "=="
value = "big"
action = "require"
"#,
                base_url = toml_str(&mock.base_url()),
                python = toml_str(python()),
                log = toml_str(&root.join("exec.log").display().to_string()),
                ledger = toml_str(&root.join("ledger.txt").display().to_string()),
            ),
        );
        Desk {
            db: root.join("j.db"),
            dir,
            spec,
            mock,
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn chassis(&self, args: &[&str]) -> Output {
        run(chassis(&self.db).args(args))
    }

    fn start_run(&self, input: &str) -> Spawned {
        Spawned::start(
            chassis(&self.db)
                .arg("run")
                .arg(&self.spec)
                .args(["--input", input, "--json"]),
        )
    }

    /// `chassis run` with an idempotency key derived from the input: safe to run again.
    fn start_keyed_run(&self, input: &str) -> Spawned {
        Spawned::start(
            chassis(&self.db)
                .arg("run")
                .arg(&self.spec)
                .args(["--input", input, "--json", "--idempotency-key"])
                .arg(format!("key-{input}")),
        )
    }

    fn ledger(&self) -> Vec<String> {
        lines(&self.root().join("ledger.txt"))
    }

    fn executions(&self) -> Vec<String> {
        lines(&self.root().join("exec.log"))
    }

    fn event_count(&self, run_id: &str) -> usize {
        events(&show_json(&self.db, run_id)).len()
    }

    fn inbox(&self) -> Vec<Value> {
        let out = self.chassis(&["approvals", "--json"]);
        out.expect_code(0);
        match out.json() {
            Value::Array(items) => items,
            other => panic!("approvals --json printed {other}"),
        }
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Waits until `check` holds (polling; nothing is asserted about how long it takes).
fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !check() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The newest run's id (runs are listed newest first).
fn newest_run(db: &Path) -> Option<String> {
    runs_json(db, &[])
        .first()
        .and_then(|r| r["run_id"].as_str().map(str::to_string))
}

#[allow(
    unsafe_code,
    reason = "std cannot send SIGINT; the process is one this test started"
)]
fn interrupt(pid: u32) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) takes no pointers.
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
}

/// Ctrl-C inside a tool call: the call finishes within the grace, its result is journaled,
/// the run pauses, the command says how to continue and exits 130, and the lease is given
/// back: `chassis resume` continues at once and nothing runs twice.
#[test]
fn ctrl_c_stops_a_run_at_a_safe_point_and_says_how_to_continue() {
    let desk = Desk::new(Duration::ZERO);
    let running = desk.start_run("sleep-1");
    until("the tool started", || !desk.executions().is_empty());
    interrupt(running.pid());
    let out = running.finish();
    out.expect_code(130);
    let run_id = newest_run(&desk.db).expect("the run exists");
    assert!(
        out.stderr
            .contains(&format!("continue it with `chassis resume {run_id}`")),
        "{out:#?}"
    );
    let show = show_json(&desk.db, &run_id);
    assert_eq!(show["status"], "paused", "{show:#}");
    let kinds: Vec<&str> = events(&show)
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"tool_finished"), "{kinds:?}");
    let inbox = desk.inbox();
    assert_eq!(inbox.len(), 1, "{inbox:#?}");
    assert_eq!(inbox[0]["kind"], "interrupted");

    let out = desk.chassis(&["resume", &run_id, "--json"]);
    out.expect_code(0);
    assert_eq!(out.json()["output"], "paid: paid sleep-1");
    assert_eq!(desk.ledger().len(), 1, "paid once");
    assert_eq!(desk.executions().len(), 1);
}

/// A resume of a run another process is driving is refused: it names the driver and until
/// when, exits 4, and journals nothing.
#[test]
fn a_resume_of_a_run_driven_elsewhere_is_refused_and_journals_nothing() {
    let desk = Desk::new(Duration::from_secs(3));
    let running = desk.start_run("small-1");
    until("the model is asked", || desk.mock.stats().requests >= 1);
    let run_id = newest_run(&desk.db).expect("the run exists");
    let before = desk.event_count(&run_id);
    let out = desk.chassis(&["resume", &run_id]);
    out.expect_code(4);
    assert!(
        out.stderr
            .contains(&format!("run {run_id} is being driven by chassis@"))
            && out.stderr.contains("lease held until"),
        "{out:#?}"
    );
    assert_eq!(desk.event_count(&run_id), before, "nothing was journaled");
    let out = running.finish();
    out.expect_code(0);
    assert_eq!(desk.ledger().len(), 1);
}

/// Retrying `run` or `submit` with the same idempotency key finds the same run.
#[test]
fn retries_with_the_same_idempotency_key_find_the_same_run() {
    let desk = Desk::new(Duration::ZERO);
    let spec = desk.spec.display().to_string();
    let first = desk.chassis(&[
        "run",
        &spec,
        "--input",
        "small-k",
        "--json",
        "--idempotency-key",
        "order-7",
    ]);
    first.expect_code(0);
    let again = desk.chassis(&[
        "run",
        &spec,
        "--input",
        "small-k",
        "--json",
        "--idempotency-key",
        "order-7",
    ]);
    again.expect_code(0);
    assert_eq!(first.json()["run_id"], again.json()["run_id"]);
    let submitted = desk.chassis(&[
        "submit",
        &spec,
        "--input",
        "small-k",
        "--json",
        "--idempotency-key",
        "order-7",
    ]);
    submitted.expect_code(0);
    assert_eq!(submitted.json()["run_id"], first.json()["run_id"]);
    assert_eq!(submitted.json()["existing"], true);
    assert_eq!(runs_json(&desk.db, &[]).len(), 1);
    assert_eq!(desk.ledger().len(), 1);
}

/// `chassis cancel` ends a run that waits for a human, with who and why.
#[test]
fn cancel_ends_a_waiting_run_with_who_and_why() {
    let desk = Desk::new(Duration::ZERO);
    let out = desk.start_run("big-c").finish();
    out.expect_code(3);
    let run_id = out.json()["run_id"].as_str().unwrap().to_string();
    let out = desk.chassis(&[
        "cancel",
        &run_id,
        "--reason",
        "duplicate order",
        "--by",
        "erin",
        "--json",
    ]);
    out.expect_code(0);
    assert_eq!(out.json()["status"], "cancelled", "{out:#?}");
    let show = show_json(&desk.db, &run_id);
    assert_eq!(show["status"], "cancelled");
    let last = events(&show).last().unwrap();
    assert_eq!(
        (
            last["kind"].as_str(),
            last["by"].as_str(),
            last["reason"].as_str()
        ),
        (Some("run_cancelled"), Some("erin"), Some("duplicate order"))
    );
    assert!(desk.inbox().is_empty());
    assert!(desk.ledger().is_empty());
    let out = desk.chassis(&["cancel", &run_id, "--reason", "again"]);
    assert_ne!(
        out.code,
        Some(0),
        "a finished run cannot be cancelled: {out:#?}"
    );
}

/// A small xorshift generator: the crowd's choices are reproducible from the seed printed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A run's events, one line each, without their bulky fields; what ended it, as raw rows when
/// the journal no longer folds (a failure message must show what the journal holds).
fn journal_of(desk: &Desk, run_id: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let records = runtime.block_on(async {
        let journal = chassis_store::SqliteJournal::open(&desk.db, chassis_store::Sync::Normal)
            .expect("the journal opens");
        chassis_store::Journal::load(&journal, run_id)
            .await
            .expect("the run's events load")
    });
    let rows: Vec<String> = records
        .iter()
        .map(|record| {
            let mut event = record.to_json();
            if let Some(map) = event.as_object_mut() {
                for noisy in [
                    "tools",
                    "limits",
                    "approvals",
                    "system",
                    "message",
                    "context",
                ] {
                    map.remove(noisy);
                }
            }
            event.to_string()
        })
        .collect();
    rows.join("\n    ")
}

/// The crowd: a worker (SIGKILLed and restarted), `chassis run`s (some SIGKILLed, then
/// resumed by `chassis resume`), submitted runs, and a human approving big payments and
/// settling unknown outcomes from what the ledger says, all at once on one journal. At the
/// end every run has completed and each run's payment is in the ledger exactly once.
#[test]
fn a_worker_runs_resumes_and_a_human_on_one_journal_double_nothing() {
    become_subreaper();
    let seed = std::env::var("CHASSIS_CROWD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c0ffee);
    eprintln!("crowd seed {seed} (CHASSIS_CROWD_SEED reproduces it)");
    let mut rng = Rng(seed);
    let desk = Desk::new(Duration::from_millis(50));
    let spec = desk.spec.display().to_string();
    let worker = |name: &str| {
        Spawned::start(chassis(&desk.db).args([
            "worker",
            "--name",
            name,
            "--concurrency",
            "4",
            "--poll-interval",
            "100ms",
            "--lease-ttl",
            "3s",
        ]))
    };

    // Work for the worker.
    let mut inputs = Vec::new();
    for i in 0..10 {
        let input = if i % 3 == 0 {
            format!("big-s{i}")
        } else {
            format!("small-s{i}")
        };
        let out = desk.chassis(&["submit", &spec, "--input", &input]);
        out.expect_code(0);
        inputs.push(input);
    }
    let mut workers = vec![worker("w0")];
    // Runs driven by `chassis run` next to the worker; some are killed on the way.
    let mut drivers: Vec<(String, Spawned)> = Vec::new();
    for i in 0..6 {
        let input = if i % 2 == 0 {
            format!("big-r{i}-sleep")
        } else {
            format!("small-r{i}-sleep")
        };
        drivers.push((input.clone(), desk.start_keyed_run(&input)));
        inputs.push(input);
    }
    // A person whose `chassis run` was killed runs it again with the same key: it starts the
    // run if the kill came before it was journaled, and continues it otherwise.
    let mut rerun: Vec<String> = Vec::new();

    let mut kills = 0;
    let mut decisions = 0;
    let mut restarts = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if Instant::now() > deadline {
            let runs = runs_json(&desk.db, &[]);
            let stuck: Vec<String> = runs
                .iter()
                .filter(|r| r["status"] != "completed")
                .map(|r| {
                    let id = r["run_id"].as_str().unwrap();
                    format!("{} {}:\n    {}", id, r["status"], journal_of(&desk, id))
                })
                .collect();
            panic!(
                "the crowd never finished: {} of {} runs, inbox {:#?}\nstuck:\n{}",
                runs.len(),
                inputs.len(),
                desk.inbox(),
                stuck.join("\n")
            );
        }
        // Kill a `chassis run` now and then, and a worker.
        if !drivers.is_empty() && kills < 6 && rng.below(4) == 0 {
            let (input, victim) = drivers.remove(rng.below(drivers.len() as u64) as usize);
            victim.crash(None);
            kills += 1;
            eprintln!("killed the `chassis run` of {input}");
            rerun.push(input);
        } else if let Some(input) = rerun.pop() {
            drivers.push((input.clone(), desk.start_keyed_run(&input)));
        }
        if restarts < 3 && rng.below(8) == 0 && !workers.is_empty() {
            workers.remove(0).crash(None);
            kills += 1;
            restarts += 1;
            workers.push(worker(&format!("w{restarts}")));
            eprintln!("killed and restarted the worker");
        }
        // The human works the inbox: approve big payments; settle unknown outcomes from the
        // ledger (paid under its key: succeeded; not there: retry with the same key).
        for item in desk.inbox() {
            let run = item["run_id"].as_str().unwrap().to_string();
            let call = item["call_id"].as_str().unwrap().to_string();
            let out = match item["kind"].as_str().unwrap() {
                "approval" => desk.chassis(&["approve", &run, &call, "--by", "human"]),
                "outcome_unknown" => {
                    let key = item["idempotency_key"].as_str().unwrap();
                    let paid = desk.ledger().iter().any(|l| l.ends_with(key));
                    let how = if paid { "--succeeded" } else { "--retry" };
                    desk.chassis(&["resolve", &run, &call, how, "--by", "human"])
                }
                // Runs a person's kill left behind (not interrupted, not decided): a
                // `chassis resume` continues them, or a worker does.
                "ready" | "interrupted" => desk.chassis(&["resume", &run, "--detach"]),
                _ => continue,
            };
            // The run may have moved on meanwhile (exit 2: nothing to decide any more).
            assert!(
                matches!(out.code, Some(0 | 2 | 3)),
                "a decision failed: {out:#?}"
            );
            decisions += 1;
        }
        // Runs left `running` by a killed `chassis run` are resumed by a person.
        let runs = runs_json(&desk.db, &[]);
        for run in &runs {
            let id = run["run_id"].as_str().unwrap();
            if run["status"] == "running" && rng.below(3) == 0 {
                let out = desk.chassis(&["resume", id, "--json"]);
                // 4: someone (a worker, another driver) holds it: fine, they drive it.
                assert!(
                    matches!(out.code, Some(0 | 3 | 4)),
                    "resume failed: {out:#?}\n{id}:\n    {}",
                    journal_of(&desk, id)
                );
            }
        }
        drivers.retain_mut(|(_, driver)| !driver.exited());
        let done = runs.len() == inputs.len() && runs.iter().all(|r| r["status"] == "completed");
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for worker in workers {
        worker.terminate();
    }
    for (_, driver) in drivers {
        driver.finish();
    }

    // Every run completed; every run's payment is in the ledger exactly once, under its key.
    let ledger = desk.ledger();
    let mut by_input: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in &ledger {
        let (input, key) = line.rsplit_once(' ').unwrap();
        by_input
            .entry(input.to_string())
            .or_default()
            .insert(key.to_string());
    }
    assert_eq!(
        ledger.len(),
        inputs.len(),
        "a payment is missing or doubled: {ledger:#?}"
    );
    for input in &inputs {
        assert_eq!(
            by_input.get(input).map(BTreeSet::len),
            Some(1),
            "{input}: {ledger:#?}"
        );
    }
    eprintln!(
        "crowd: {} runs, {kills} kills, {decisions} human decisions, {} executions",
        inputs.len(),
        desk.executions().len()
    );
}

/// `show --follow` beside the process that drives the run: it prints every event once, in
/// order, as it lands, and exits with the run's status when the run stops — 0 when it
/// completes, 3 when it waits for a human.
#[test]
fn show_follow_prints_each_event_once_until_the_run_stops() {
    let desk = Desk::new(Duration::ZERO);
    let driver = desk.start_run("small sleep");
    let mut run_id = None;
    until("the run is journaled", || {
        // Until the journal file is made, `runs` refuses to open it.
        let out = desk.chassis(&["runs", "--json"]);
        run_id = (out.code == Some(0))
            .then(|| out.json()[0]["run_id"].as_str().map(str::to_string))
            .flatten();
        run_id.is_some()
    });
    let run_id = run_id.expect("a run");
    let follower = Spawned::start(chassis(&desk.db).args(["show", &run_id, "--follow", "--json"]));
    driver.finish().expect_code(0);
    let out = follower.finish();
    out.expect_code(0);
    let mut lines = out.stdout.lines();
    let first: Value = serde_json::from_str(lines.next().expect("the run's object")).expect("JSON");
    assert_eq!(first["run_id"], run_id.as_str(), "{out:#?}");
    let mut seqs: Vec<u64> = events(&first)
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let mut last_kind = None;
    for line in lines {
        let event: Value = serde_json::from_str(line).expect("one JSON event per line");
        seqs.push(event["seq"].as_u64().expect("seq"));
        last_kind = event["kind"].as_str().map(str::to_string);
    }
    let journaled = desk.event_count(&run_id) as u64;
    assert_eq!(
        seqs,
        (1..=journaled).collect::<Vec<_>>(),
        "every event once, in order: {out:#?}"
    );
    assert_eq!(
        last_kind.as_deref().or(Some("run_completed")),
        Some("run_completed")
    );

    // A run that waits for a human has stopped: following it ends with the waiting code.
    desk.chassis(&["run", desk.spec.to_str().unwrap(), "--input", "big"])
        .expect_code(3);
    let waiting = desk.chassis(&["show", "last", "--follow"]);
    waiting.expect_code(3);
    assert!(waiting.stderr.contains("is waiting"), "{waiting:#?}");
}

/// Makes a directory and the files in it unwritable for this process (and writable again on
/// drop): by permissions, or, for root, whom permissions do not stop, with `chattr +i`.
struct ReadOnly {
    paths: Vec<PathBuf>,
    root: bool,
}

impl ReadOnly {
    fn make(dir: &Path) -> ReadOnly {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").path())
            .collect();
        paths.push(dir.to_path_buf());
        // SAFETY: geteuid(2) takes no arguments and cannot fail.
        #[allow(unsafe_code, reason = "std has no geteuid")]
        let root = unsafe { libc::geteuid() } == 0;
        let guard = ReadOnly { paths, root };
        for path in &guard.paths {
            if root {
                let status = std::process::Command::new("chattr")
                    .arg("+i")
                    .arg(path)
                    .status()
                    .expect("chattr runs (e2fsprogs)");
                assert!(status.success(), "chattr +i {}", path.display());
            } else {
                let mode = if path.is_dir() { 0o555 } else { 0o444 };
                set_mode(path, mode);
            }
        }
        assert!(
            std::fs::write(dir.join("probe"), "x").is_err(),
            "the directory is still writable"
        );
        guard
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        for path in &self.paths {
            if self.root {
                let _ = std::process::Command::new("chattr")
                    .arg("-i")
                    .arg(path)
                    .status();
            } else {
                set_mode(path, if path.is_dir() { 0o755 } else { 0o644 });
            }
        }
    }
}

/// The commands that read work on a journal in a directory nobody may write, and change
/// nothing in it: `runs`, `show`, `trace`, `stats`, `approvals` and `export`, in text and JSON.
#[test]
fn reading_commands_work_on_a_read_only_journal_and_write_nothing() {
    let desk = Desk::new(Duration::ZERO);
    desk.chassis(&["run", desk.spec.to_str().unwrap(), "--input", "small one"])
        .expect_code(0);
    desk.chassis(&["run", desk.spec.to_str().unwrap(), "--input", "big one"])
        .expect_code(3);
    let before = std::fs::read(&desk.db).expect("journal");
    let listing = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    };
    let files = listing(desk.root());
    let out_dir = tempfile::tempdir().expect("temporary directory");
    let cassette = out_dir.path().join("c.json");
    let guard = ReadOnly::make(desk.root());

    for args in [
        &["runs"][..],
        &["runs", "--json"],
        &["runs", "--by-version"],
        &["show", "last"],
        &["show", "last", "--json"],
        &["trace", "last"],
        &["trace", "last", "--json"],
        &["stats"],
        &["stats", "--json"],
        &["approvals"],
        &["approvals", "--json"],
        &["export", "last", "--cassette", cassette.to_str().unwrap()],
    ] {
        let out = desk.chassis(args);
        out.expect_code(0);
        assert!(
            !out.stdout.is_empty() || args[0] == "export",
            "{args:?}: {out:#?}"
        );
    }
    assert!(cassette.exists(), "export wrote its cassette elsewhere");
    let inbox = desk.inbox();
    assert_eq!(inbox.len(), 1, "the waiting run is listed: {inbox:#?}");
    drop(guard);
    assert_eq!(
        listing(desk.root()),
        files,
        "no file was made beside the journal"
    );
    assert!(
        std::fs::read(&desk.db).expect("journal") == before,
        "the journal is unchanged"
    );
}
