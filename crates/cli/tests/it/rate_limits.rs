//! Shared provider rate limits across processes: two workers on one journal, a provider
//! limited to `rpm` requests a minute, and a mock that answers 429 to any request over that
//! many in a sliding minute. More runs than the limit are submitted at once, so without the
//! shared limit the mock would refuse some; with it, none is refused: calls wait instead.
//! On SQLite and on PostgreSQL. (It takes a little over a minute: the limit is per minute.)

use std::path::Path;
use std::time::{Duration, Instant};

use chassis_mock::{MockConfig, Script};

use crate::util::{Spawned, chassis, run, toml_str, write};

const SCRIPT: &str = r#"
[[scenario]]
name = "answer"
[[scenario.turn]]
text = "ok {input}"
"#;

const RPM: u32 = 20;
const RUNS: usize = 22;

fn two_workers_stay_under_a_shared_limit(db: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let config = MockConfig {
        rpm_limit: Some(RPM),
        ..MockConfig::default()
    };
    let mock = rt
        .block_on(chassis_mock::start(
            config,
            Script::from_toml_str(SCRIPT).expect("script"),
            "127.0.0.1:0".parse().expect("address"),
        ))
        .expect("mock");
    let dir = tempfile::tempdir().expect("temporary directory");
    write(dir.path(), "prompt.md.j2", "Answer: {{ input }}\n");
    let spec = write(
        dir.path(),
        "agent.toml",
        &format!(
            r#"[agent]
name = "limited"
prompt = "prompt.md.j2"

[model]
primary = "mock:gpt-4o-mini"

[providers.mock]
kind = "openai"
base_url = {base_url}
rpm = {RPM}
"#,
            base_url = toml_str(&mock.base_url()),
        ),
    );
    for i in 0..RUNS {
        let out = run(chassis(db)
            .arg("submit")
            .arg(&spec)
            .args(["--input", &format!("job {i}")]));
        out.expect_code(0);
    }
    let workers: Vec<Spawned> = ["a", "b"]
        .into_iter()
        .map(|name| {
            Spawned::start(chassis(db).args(["worker", "--name", name, "--concurrency", "8"]))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let out = run(chassis(db).args(["runs", "--status", "completed", "--json"]));
        let done = out.json().as_array().map_or(0, Vec::len);
        if done == RUNS {
            break;
        }
        assert!(Instant::now() < deadline, "{done} of {RUNS} runs completed");
        std::thread::sleep(Duration::from_millis(200));
    }
    for worker in workers {
        worker.terminate().expect_code(0);
    }
    let stats = mock.stats();
    assert_eq!(
        stats.faults.get("rpm_limit").copied().unwrap_or(0),
        0,
        "the mock refused calls over its limit: {stats:?}"
    );
    assert_eq!(stats.requests, RUNS as u64, "one call per run: {stats:?}");
}

#[test]
fn on_sqlite_workers_share_a_provider_rate_limit_and_meet_no_429() {
    let dir = tempfile::tempdir().expect("temporary directory");
    two_workers_stay_under_a_shared_limit(&dir.path().join("j.db"));
}

#[test]
fn on_postgres_workers_share_a_provider_rate_limit_and_meet_no_429() {
    let rt = crate::workers::runtime();
    let Some(schema) = crate::workers::new_schema(&rt) else {
        return;
    };
    two_workers_stay_under_a_shared_limit(Path::new(schema.url()));
}
