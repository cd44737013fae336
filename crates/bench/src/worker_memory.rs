//! A `chassis worker` process holding many runs in flight: what it shares across them.
//!
//! Method: runs of one model call each are submitted to a fresh SQLite journal; a mock answers
//! after a long latency (the memory group's), so every run the worker claims waits on the
//! model; one `chassis worker --concurrency N` process drains them. Its RSS (`VmRSS`) is read
//! every 20 ms together with the mock's request count, and the figure is the RSS of the sample
//! with the most runs waiting on the model (the mock has their requests). The mock also counts
//! the TCP connections it accepted: the worker loads the agent's version once and every run
//! shares its HTTP client, so the runs share a handful of connections instead of one each.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::mock::MockProcess;
use crate::{Bench, Error, Figure, Target, Unit, harness, measure};

/// The run count the target is set for, and the target in MB (10⁶ bytes), as the issue sets it.
const TARGET_RUNS: usize = 1_000;
const TARGET_MB: f64 = 60.0;

const MB: f64 = 1e6;

/// The worker process, SIGKILLed (and reaped) when dropped: the journal keeps everything.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn run(bench: &Bench) -> Result<Vec<Figure>, Error> {
    let runs = bench.sizes.memory_runs.min(TARGET_RUNS);
    let latency = bench.sizes.memory_latency;
    bench.say(&format!(
        "memory: one `chassis worker --concurrency {runs}` with {runs} runs waiting on a mock \
         that answers after {} ms",
        latency.as_millis()
    ));
    let (dir, script) = harness::one_call_dir(bench.fixture, "worker-memory")?;
    let mock = MockProcess::start(bench.chassis, &script, latency, bench.pinning.mock_cpu)?;
    let db = bench.fixture.db("worker-memory");
    let runtime = harness::runtime()?;
    harness::queue_one_call_runs(
        &runtime,
        &dir,
        &db,
        (
            "held",
            "timeout = \"600s\"",
            &format!("http = {:?}", crate::http_name(bench.fixture.http())),
        ),
        mock.base_url(),
        runs,
    )?;
    let client = chassis_http::builder(chassis_http::HttpVersion::Http1)
        .build()
        .map_err(|e| bench.failed(format!("an HTTP client: {e}")))?;
    let stats = || {
        runtime
            .block_on(mock.stats(&client))
            .map_err(|e| bench.failed(e))
    };

    let worker = Worker(
        Command::new(bench.chassis)
            .arg("--db")
            .arg(&db)
            .args(["-q", "worker", "--name", "held", "--concurrency"])
            .arg(runs.to_string())
            .env_remove("CHASSIS_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(Error::io("starting the worker"))?,
    );
    let pid = worker.0.id();
    // (runs waiting on the model, RSS then), the sample with the most waiting; sampling ends
    // when all are waiting and the RSS has been read twice more, or after the latency.
    let mut best = (0usize, 0u64);
    let mut settled = 0;
    let deadline = Instant::now() + latency + Duration::from_secs(30);
    while Instant::now() < deadline && settled < 3 {
        std::thread::sleep(Duration::from_millis(20));
        let waiting = stats()?["requests"].as_u64().unwrap_or(0) as usize;
        let Some(rss) = measure::rss_of(pid) else {
            return Err(bench.failed("the worker exited"));
        };
        if waiting > best.0 || (waiting == best.0 && rss > best.1) {
            best = (waiting, rss);
        }
        if waiting >= runs {
            settled += 1;
        }
    }
    drop(worker);
    let connections = stats()?["connections"].as_f64().unwrap_or(f64::NAN);
    drop(mock);

    let mut rss = bench.figure(
        format!("worker RSS with {runs} runs waiting on the model (concurrency {runs})"),
        best.1 as f64 / MB,
        Unit::MB,
    );
    if runs == TARGET_RUNS && best.0 >= runs {
        rss.target = Some(Target::AtMost(TARGET_MB));
    }
    Ok(vec![
        bench.figure(
            "runs the worker had waiting on the model when sampled",
            best.0 as f64,
            Unit::Count,
        ),
        rss,
        bench.figure(
            format!(
                "TCP connections the mock accepted for the {runs} runs ({})",
                crate::http_name(bench.fixture.http())
            ),
            connections,
            Unit::Count,
        ),
    ])
}
