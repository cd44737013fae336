//! Shared provider rate limits: `[providers.mock] rpm = N` across worker processes.
//!
//! Method: a mock model that answers 429 to any request over N in a sliding minute
//! (`chassis mock-model --rpm-limit N`), an agent whose provider says `rpm = N` and whose runs
//! are one model call each, many runs submitted at once to one SQLite journal, and four
//! `chassis worker` processes (concurrency 16 each) draining them. Reported: the 429s the
//! mock gave (target 0), the requests it served, how long the runs took, and the rate they
//! came at (at most N a minute, by construction of the limit).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chassis_store::ListFilter;

use crate::mock::MockProcess;
use crate::{Bench, Error, Figure, Target, Unit, harness};

const WORKERS: usize = 4;

/// Worker processes, SIGKILLed (and reaped) when dropped: the journal keeps everything.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(crate) fn run(bench: &Bench) -> Result<Vec<Figure>, Error> {
    let (runs, rpm) = (bench.sizes.rate_runs, bench.sizes.rate_rpm);
    bench.say(&format!(
        "rate-limit: {runs} runs, {WORKERS} worker processes, a provider limited to {rpm} \
         requests/min and a mock answering 429 above it (about {:.0} s)",
        runs as f64 * 60.0 / f64::from(rpm)
    ));
    let (dir, script) = harness::one_call_dir(bench.fixture, "rate-limit")?;
    let mock = MockProcess::start_with(
        bench.chassis,
        &script,
        Duration::ZERO,
        None,
        &["--rpm-limit".to_string(), rpm.to_string()],
    )?;
    let db = bench.fixture.db("rate-limit");
    let runtime = harness::runtime()?;
    let journal = harness::queue_one_call_runs(
        &runtime,
        &dir,
        &db,
        ("limited", "", &format!("rpm = {rpm}")),
        mock.base_url(),
        runs,
    )?;

    let began = Instant::now();
    let mut workers = Workers(Vec::new());
    for i in 0..WORKERS {
        let child = Command::new(bench.chassis)
            .arg("--db")
            .arg(&db)
            .args(["-q", "worker", "--concurrency", "16", "--name"])
            .arg(format!("bench-{i}"))
            .env_remove("CHASSIS_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(Error::io("starting a worker"))?;
        workers.0.push(child);
    }
    let completed = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60) * (runs as u32 / rpm + 5);
        loop {
            let done = journal
                .list(&ListFilter {
                    status: Some(chassis_core::RunStatus::Completed),
                    ..ListFilter::default()
                })
                .await?
                .len();
            if done >= runs || Instant::now() > deadline {
                return Ok::<usize, Error>(done);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })?;
    let took = began.elapsed().as_secs_f64();
    drop(workers);
    let client = chassis_http::builder(chassis_http::HttpVersion::Http1)
        .build()
        .map_err(|e| bench.failed(format!("an HTTP client: {e}")))?;
    let stats = runtime
        .block_on(mock.stats(&client))
        .map_err(|e| bench.failed(e))?;
    if completed < runs {
        return Err(bench.failed(format!("{completed} of {runs} runs completed")));
    }
    let refused = stats["faults"]["rpm_limit"].as_f64().unwrap_or(0.0);
    let requests = stats["requests"].as_f64().unwrap_or(0.0);
    let mut figures = vec![
        Figure {
            target: Some(Target::AtMost(0.0)),
            ..bench.figure(
                format!("429s received, {runs} runs, {WORKERS} workers, limit {rpm}/min"),
                refused,
                Unit::Count,
            )
        },
        bench.figure("requests the mock served", requests, Unit::Count),
        bench.figure("runs completed", completed as f64, Unit::Count),
        bench.figure(
            "requests per minute achieved",
            requests / took * 60.0,
            Unit::Count,
        ),
    ];
    figures.push(bench.figure("time to drain the runs", took * 1000.0, Unit::Millis));
    Ok(figures)
}
