//! Schedules across processes: two workers on one journal fire every due slot exactly once,
//! and slots missed while nothing ran follow `--catch-up` (none, last, all), each fired run
//! tagged with its schedule and slot. On SQLite and on PostgreSQL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::util::{Mock, Spawned, chassis, run, toml_str, write};

const SCRIPT: &str = r#"
[[scenario]]
name = "answer"
[[scenario.turn]]
text = "Report: {input}"
"#;

struct Reporter {
    _dir: tempfile::TempDir,
    spec: PathBuf,
    _mock: Mock,
}

impl Reporter {
    fn new() -> Reporter {
        let mock = Mock::start(SCRIPT, Duration::ZERO);
        let dir = tempfile::tempdir().expect("temporary directory");
        write(dir.path(), "prompt.md.j2", "Report on: {{ input }}\n");
        let spec = write(
            dir.path(),
            "agent.toml",
            &format!(
                r#"[agent]
name = "reporter"
prompt = "prompt.md.j2"

[model]
primary = "mock:gpt-4o-mini"

[providers.mock]
kind = "openai"
base_url = {base_url}
"#,
                base_url = toml_str(&mock.base_url()),
            ),
        );
        Reporter {
            _dir: dir,
            spec,
            _mock: mock,
        }
    }
}

/// A daily cron whose slot was three minutes ago (UTC): counted from three days back, three
/// slots are due, the last of them missed by more than the grace.
fn three_minutes_ago_daily() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs();
    let then = (now - 180) % 86_400;
    format!("{} {} * * *", then / 60 % 60, then / 3600)
}

fn add(db: &Path, agent: &Path, cron: &str, catch_up: &str) -> String {
    let out = run(chassis(db)
        .args(["schedule", "add"])
        .arg(agent)
        .args(["--cron", cron, "--input", catch_up, "--catch-up", catch_up])
        .args(["--overlap", "allow", "--since", "3d", "--json"]));
    out.expect_code(0);
    out.json()["schedule_id"]
        .as_str()
        .expect("schedule_id")
        .to_string()
}

fn schedules(db: &Path) -> Vec<Value> {
    let out = run(chassis(db).args(["schedule", "list", "--json"]));
    out.expect_code(0);
    out.json().as_array().cloned().unwrap_or_default()
}

/// The runs each schedule started: schedule id -> slots (as tagged).
fn fired(db: &Path) -> BTreeMap<String, Vec<String>> {
    let out = run(chassis(db).args(["runs", "--json", "--limit", "1000"]));
    out.expect_code(0);
    let mut by_schedule: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for run in out.json().as_array().into_iter().flatten() {
        if let (Some(id), Some(slot)) = (
            run["tags"]["schedule"].as_str(),
            run["tags"]["slot"].as_str(),
        ) {
            by_schedule
                .entry(id.to_string())
                .or_default()
                .push(slot.to_string());
        }
    }
    for slots in by_schedule.values_mut() {
        slots.sort();
    }
    by_schedule
}

fn two_workers_fire_each_slot_once_by_the_catch_up_rule(db: &Path) {
    let agent = Reporter::new();
    let cron = three_minutes_ago_daily();
    let all = add(db, &agent.spec, &cron, "all");
    let last = add(db, &agent.spec, &cron, "last");
    let none = add(db, &agent.spec, &cron, "none");
    let listed = schedules(db);
    assert_eq!(listed.len(), 3, "{listed:#?}");
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis() as i64;
    assert!(
        listed
            .iter()
            .all(|s| s["next_slot_ms"].as_i64() < Some(now_ms))
    );

    let workers: Vec<Spawned> = ["one", "two"]
        .into_iter()
        .map(|name| Spawned::start(chassis(db).args(["worker", "--name", name])))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending = schedules(db)
            .iter()
            .filter(|s| s["next_slot_ms"].as_i64() < Some(now_ms))
            .count();
        let runs = fired(db).values().map(Vec::len).sum::<usize>();
        if pending == 0 && runs >= 4 {
            break;
        }
        assert!(Instant::now() < deadline, "the schedules were not fired");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A few more passes of both workers: nothing more may fire.
    std::thread::sleep(Duration::from_millis(2500));
    for worker in workers {
        worker.terminate().expect_code(0);
    }

    let fired = fired(db);
    let count = |id: &str| fired.get(id).map_or(0, Vec::len);
    assert_eq!(count(&all), 3, "every missed slot, once: {fired:#?}");
    assert_eq!(count(&last), 1, "the last missed slot, once: {fired:#?}");
    assert_eq!(count(&none), 0, "no missed slot: {fired:#?}");
    let slots = &fired[&all];
    let mut unique = slots.clone();
    unique.dedup();
    assert_eq!(&unique, slots, "a slot fired twice: {slots:?}");
    assert_eq!(
        fired[&last].last(),
        slots.last(),
        "`last` fired the latest slot"
    );
    // Every schedule moved on to tomorrow's slot.
    for s in schedules(db) {
        assert!(s["next_slot_ms"].as_i64() > Some(now_ms), "{s:#?}");
    }
    let last_run = schedules(db)
        .into_iter()
        .find(|s| s["schedule_id"] == last.as_str())
        .and_then(|s| s["last_run_id"].as_str().map(str::to_string))
        .expect("the schedule names its run");
    let show = crate::util::show_json(db, &last_run);
    let started = &crate::util::events(&show)[0];
    assert_eq!(started["kind"], "run_started", "{show:#?}");
    assert_eq!(started["tags"]["schedule"], last.as_str(), "{started:#?}");
    assert!(started["tags"]["slot"].as_str().is_some(), "{started:#?}");
    assert!(
        run(chassis(db).args(["schedule", "remove", &none]))
            .stderr
            .contains("removed")
    );
    assert_eq!(schedules(db).len(), 2);
    let bad = run(chassis(db).args(["schedule", "remove", &none]));
    bad.expect_code(2);
}

#[test]
fn on_sqlite_two_workers_fire_each_slot_once_by_the_catch_up_rule() {
    let dir = tempfile::tempdir().expect("temporary directory");
    two_workers_fire_each_slot_once_by_the_catch_up_rule(&dir.path().join("j.db"));
}

#[test]
fn on_postgres_two_workers_fire_each_slot_once_by_the_catch_up_rule() {
    let rt = crate::workers::runtime();
    let Some(schema) = crate::workers::new_schema(&rt) else {
        return;
    };
    two_workers_fire_each_slot_once_by_the_catch_up_rule(Path::new(schema.url()));
}

/// Bad schedules are refused before anything is kept, naming the flag.
#[test]
fn bad_schedules_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = dir.path().join("j.db");
    let agent = Reporter::new();
    for (args, needle) in [
        (vec!["--cron", "0 6 * *"], "--cron"),
        (
            vec!["--cron", "0 6 * * *", "--timezone", "Mars/Olympus"],
            "--timezone",
        ),
        (
            vec!["--cron", "0 6 * * *", "--overlap", "maybe"],
            "--overlap",
        ),
        (
            vec!["--cron", "0 6 * * *", "--catch-up", "some"],
            "--catch-up",
        ),
        (vec!["--cron", "0 0 31 2 *"], "never fires"),
    ] {
        let out = run(chassis(&db)
            .args(["schedule", "add"])
            .arg(&agent.spec)
            .args(["--input", "x"])
            .args(&args));
        assert_ne!(out.code, Some(0), "{args:?}: {out:#?}");
        assert!(out.stderr.contains(needle), "{args:?}: {out:#?}");
    }
    let out = run(chassis(&db).args(["schedule", "list"]));
    assert!(!out.stdout.contains("sch_"), "{out:#?}");
}
