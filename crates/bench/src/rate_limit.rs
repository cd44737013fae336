//! Shared provider rate limits: `[providers.mock] rpm = N` across worker processes.
//!
//! Method: a mock model that answers 429 to any request over N in a sliding minute
//! (`chassis mock-model --rpm-limit N`), an agent whose provider says `rpm = N` and whose runs
//! are one model call each, many runs submitted at once to one SQLite journal, and four
//! `chassis worker` processes (concurrency 16 each) draining them. Reported: the 429s the
//! mock gave (target 0), the requests it served, how long the runs took, and the rate they
//! came at (at most N a minute, by construction of the limit).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chassis_engine::{Agent, Engine};
use chassis_store::{Journal, ListFilter, Sync};

use crate::mock::MockProcess;
use crate::{Bench, Error, Figure, Target, Unit, harness};

const WORKERS: usize = 4;

const SCRIPT: &str = "[[scenario]]\nname = \"answer\"\n[[scenario.turn]]\ntext = \"ok {input}\"\n";

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
    let dir = bench.fixture.root().join("rate-limit");
    std::fs::create_dir_all(&dir).map_err(Error::io("creating the rate-limit directory"))?;
    let script = dir.join("script.toml");
    std::fs::write(&script, SCRIPT).map_err(Error::io("writing the mock's script"))?;
    let mock = MockProcess::start_with(
        bench.chassis,
        &script,
        Duration::ZERO,
        None,
        &["--rpm-limit".to_string(), rpm.to_string()],
    )?;
    std::fs::write(dir.join("prompt.md.j2"), "Answer: {{ input }}\n")
        .map_err(Error::io("writing the prompt"))?;
    let spec = dir.join("agent.toml");
    std::fs::write(
        &spec,
        format!(
            "[agent]\nname = \"limited\"\nprompt = \"prompt.md.j2\"\n\n[model]\n\
             primary = \"mock:m\"\n\n[providers.mock]\nkind = \"openai\"\nbase_url = {:?}\n\
             rpm = {rpm}\n",
            mock.base_url()
        ),
    )
    .map_err(Error::io("writing the agent"))?;
    let db = bench.fixture.db("rate-limit");
    let runtime = harness::runtime()?;
    let journal: Arc<dyn Journal> = harness::journal(&db, Sync::Full)?;
    let engine = Engine::new(Arc::clone(&journal));
    runtime.block_on(async {
        let agent = Agent::load(&spec).await?;
        for i in 0..runs {
            engine.submit(&agent, &format!("job {i}")).await?;
        }
        Ok::<(), Error>(())
    })?;

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
    let stats: serde_json::Value = runtime.block_on(async {
        let url = format!("{}/_mock/stats", mock.base_url().trim_end_matches("/v1"));
        let client = chassis_http::builder(chassis_http::HttpVersion::Http1)
            .build()
            .map_err(|e| bench.failed(format!("an HTTP client: {e}")))?;
        let body = client
            .get(&url)
            .send()
            .await
            .map_err(|e| bench.failed(format!("the mock's stats: {e}")))?
            .text()
            .await
            .map_err(|e| bench.failed(format!("the mock's stats: {e}")))?;
        serde_json::from_str(&body).map_err(|e| bench.failed(format!("the mock's stats: {e}")))
    })?;
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
