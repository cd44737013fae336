//! The quick benchmark runs end to end and prints every figure. Nothing about time is asserted:
//! on a busy machine the figures are just worse.

use std::path::{Path, PathBuf};
use std::process::Command;

use chassis_bench::{BenchTool, Group, HttpVersion, Options};

/// Figures the quick mode must print, by the start of their name.
const EXPECTED: [&str; 36] = [
    "per-step overhead, durable, median",
    "per-step overhead, no fsync, median",
    "raw HTTP round trip to the mock, per step (baseline)",
    "fsync alone",
    "durable steps/s, 1 concurrent run",
    "durable steps/s, 10 concurrent runs",
    "durable steps/s, 100 concurrent runs",
    "runtime CPU per step, 100 concurrent runs",
    "runs in flight (all waiting on the model) when sampled",
    "RSS with the runs below in flight",
    "base RSS",
    "RSS per run in flight",
    "journal bytes per step (event JSON), 10-step runs",
    "journal bytes per step (event JSON), 50-step runs",
    "journal bytes per step (SQLite file), 50-step runs",
    "per-step event bytes, 50-step ÷ 10-step runs",
    "before v11: text key WITHOUT ROWID, 4 KiB: bytes written per step (write calls)",
    "resume: load + fold 1,000 events (Engine::load), median",
    "cold start: spawn → first model request, median",
    "`chassis --version`, spawn → exit, median",
    "runs started/s through the API (POST /v1/runs",
    "POST /v1/runs latency, median",
    "runs list, first page of 50 (GET /v1/runs)",
    "events/s delivered to",
    "event journaled → read by a subscriber, median",
    "server memory per idle subscriber",
    "time to first token added by chassis over the mock's, median",
    "streamed ÷ whole steps/s",
    "runtime CPU per delta",
    "retention (SQLite): purge --archive of 50 runs, runs/s",
    "retention (SQLite): import of 50 runs, runs/s",
    "durable steps/s, Rust tool, 10 concurrent runs",
    "durable steps/s, command, a process per call, 1 run",
    "durable steps/s, persistent command, 10 concurrent runs",
    "persistent command ÷ Rust tool, steps/s, 10 concurrent runs",
    "command, a process per call: a call's cost beyond the Rust tool's, 1 run",
];

#[test]
fn quick_mode_prints_every_figure() {
    let options = Options {
        chassis: chassis_binary(),
        quick: true,
        // Other tests share the machine; pinning would only crowd them onto one CPU.
        pin: false,
        only: Vec::new(),
        dir: None,
        http: HttpVersion::Http2,
        levels: Vec::new(),
        tool: BenchTool::Memory,
        pg: None,
    };
    let report = chassis_bench::run(&options, &|line: &str| eprintln!("bench: {line}"))
        .expect("the quick benchmark runs");
    let table = report.render();
    println!("{table}");
    assert!(table.contains("http:     HTTP/2 (h2c)"), "{table}");

    for group in Group::ALL {
        assert!(
            report.figures.iter().any(|f| f.group == group),
            "no figure from group {group}:\n{table}"
        );
    }
    for name in EXPECTED {
        let figure = report
            .figures
            .iter()
            .find(|f| f.name.starts_with(name))
            .unwrap_or_else(|| panic!("no figure `{name}`:\n{table}"));
        // Only that it prints a number: under load a figure may be anything.
        assert!(
            figure.value.is_finite(),
            "figure `{}` is {}:\n{table}",
            figure.name,
            figure.value
        );
        assert!(
            table.contains(&figure.name) && table.contains(&figure.value_text()),
            "figure `{}` is not in the table:\n{table}",
            figure.name
        );
    }
}

/// The other tool and protocol: `builtin:fs` over HTTP/1.1 drives the same runs.
#[test]
fn the_fs_tool_over_http1_runs_too() {
    let options = Options {
        chassis: chassis_binary(),
        quick: true,
        pin: false,
        only: vec![Group::Overhead, Group::Throughput],
        dir: None,
        http: HttpVersion::Http1,
        levels: vec![1, 20],
        tool: BenchTool::Fs,
        pg: None,
    };
    let report = chassis_bench::run(&options, &|line: &str| eprintln!("bench: {line}"))
        .expect("the quick benchmark runs");
    let table = report.render();
    println!("{table}");
    assert!(table.contains("http:     HTTP/1.1"), "{table}");
    assert!(table.contains("tool:     builtin:fs read_file"), "{table}");
    assert!(
        report
            .figures
            .iter()
            .any(|f| f.name == "durable steps/s, 20 concurrent runs"),
        "no figure for the level asked for:\n{table}"
    );
}

/// The retention group at its smallest: 50 ended runs purged into an archive and imported back
/// on SQLite and, when the test server is up, on PostgreSQL; the group itself fails unless the
/// journal is empty after the purge and the same, digest for digest, after the import.
#[test]
fn the_retention_group_round_trips_both_stores_and_prints_its_figures() {
    let url = chassis_testkit::pg::base_url();
    let reachable = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(chassis_testkit::pg::connect(&url));
    let pg = match reachable {
        Ok(_) => Some(url),
        Err(e) => {
            let message = format!(
                "PostgreSQL at {} is unreachable ({e}): SKIPPING the retention group's PostgreSQL half",
                chassis_testkit::pg::shown(&url)
            );
            assert!(!chassis_testkit::pg::required(), "{message}");
            eprintln!("{message}");
            None
        }
    };
    let stores: &[&str] = if pg.is_some() {
        &["SQLite", "PostgreSQL"]
    } else {
        &["SQLite"]
    };
    let options = Options {
        chassis: chassis_binary(),
        quick: true,
        pin: false,
        only: vec![Group::Retention],
        dir: None,
        http: HttpVersion::Http2,
        levels: Vec::new(),
        tool: BenchTool::Memory,
        pg,
    };
    let report = chassis_bench::run(&options, &|line: &str| eprintln!("bench: {line}"))
        .expect("the retention group runs and its round trips are exact");
    let table = report.render();
    println!("{table}");
    for store in stores {
        for name in [
            "purge --archive of 50 runs, runs/s",
            "purge --archive of 50 runs, total",
            "journal bytes freed, as purge reports",
            "archive size",
            "import of 50 runs, runs/s",
            "import of 50 runs, total",
        ] {
            let name = format!("retention ({store}): {name}");
            let figure = report
                .figures
                .iter()
                .find(|f| f.name == name)
                .unwrap_or_else(|| panic!("no figure `{name}`:\n{table}"));
            assert!(
                figure.value.is_finite() && figure.value > 0.0,
                "figure `{name}` is {}:\n{table}",
                figure.value
            );
            assert!(
                table.contains(&name),
                "`{name}` is not in the table:\n{table}"
            );
        }
    }
}

/// The `chassis` binary of this build: `target/PROFILE/chassis`, beside this test's `deps/`.
/// A workspace test run builds it already; `cargo test -p chassis-bench` alone may not, so it
/// is built here when missing (cargo holds no lock while tests run).
fn chassis_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/PROFILE/deps")
        .to_path_buf();
    let binary = profile_dir.join(format!("chassis{}", std::env::consts::EXE_SUFFIX));
    if !binary.exists() {
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "-p", "chassis-cli", "--bin", "chassis"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("cargo runs");
        assert!(status.success(), "cargo build -p chassis-cli failed");
    }
    assert!(binary.exists(), "no chassis binary at {}", binary.display());
    binary
}
