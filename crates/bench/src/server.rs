//! The service, measured over real HTTP: runs started per second through `POST /v1/runs`,
//! events per second delivered to concurrent stream subscribers, and the memory an idle
//! subscriber costs the server.
//!
//! Method. `chassis serve` runs as its own process over a fresh SQLite journal (fsync per
//! commit), with an agents directory holding one agent whose tool is `builtin:fs` (a Rust tool
//! cannot be handed to another process). When pinned, the server shares the mock model's CPU and
//! this process, the client, keeps the runtime's. The client is reqwest over HTTP/1.1 with
//! keep-alive: one connection per concurrent request or stream, as browsers and SDKs open them.
//!
//! - **Starts**: an API-only server (`--workers 0`, so starting is accepting, checking and
//!   journaling a run, and nothing drives it) takes `POST /v1/runs` from a number of clients,
//!   each sending its next request when its last is answered. Runs started per second is
//!   requests answered 201 ÷ wall time; the server's CPU time is read from `/proc`.
//! - **Followers** (idle memory, then delivery) share one server that drives every run at once.
//!   Each run's first call (`list_dir`, set to `require`) waits for a human, so every run waits;
//!   then the streams connect (`GET /v1/runs/{id}/stream`, several per run), 100 at a time as
//!   clients arriving over time would, each wave once the last has read its run's backlog down
//!   to the approval request. *Idle*: the server's resident memory (`VmRSS`)
//!   before they connect and after they have sat idle through three journal polls; per
//!   subscriber = the difference ÷ subscribers. *Delivery*: every run is approved through the
//!   API, the runs go on against the mock at 0 ms, and every stream reads to its run's end;
//!   events/s = events delivered after the approvals ÷ time from the first approval to the last
//!   event read. Latency = arrival − the event's journal time (`at_ms`), for those events.
//!   Every stream must see each event of its run once and in order (ids 1, 2, … n, ending with
//!   the run's completion), or the benchmark fails: a fast stream that loses events is no figure.
//!   The followers pass runs four times: several streams to a run over HTTP/1.1; the same all
//!   connecting at once, as after a restart (the backlogs read together leave the allocator a
//!   higher mark; no target); as many runs as streams with one stream each over HTTP/1.1 (a
//!   console tab on each run), where what the server keeps per followed run is in every
//!   stream's share; and several to a run over HTTP/2.

use std::io::{BufRead, BufReader, Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::HttpVersion;
use serde_json::{Value, json};

use crate::mock::MockProcess;
use crate::{Bench, Error, Figure, Target, Unit, harness, measure};

/// Runs started per second through the API, as the issue sets it (embedded store).
const TARGET_STARTS: f64 = 2_000.0;

/// Memory per idle subscriber, in kB (10³ bytes), as the issue sets it.
const TARGET_IDLE_KB: f64 = 16.0;

/// How long the streams sit idle before the memory is read: three of the server's journal
/// polls (500 ms), so whatever an idle stream allocates when it looks has been allocated.
const IDLE: Duration = Duration::from_millis(1_500);

/// HTTP/2 streams multiplexed on one connection in the HTTP/2 pass (under hyper's default limit
/// of concurrent streams per connection).
const STREAMS_PER_CONNECTION: usize = 100;

/// Streams that connect at once when the followers connect.
const WAVE: usize = 100;

/// The longest the benchmark waits for any one thing (a run to wait, a stream to end).
const PATIENCE: Duration = Duration::from_secs(300);

const PROMPT: &str = "You are a benchmark agent. List the notes, read one, answer in one line.\n";
const NOTE: &str = "Replica lag alert fired at 02:14; failover not needed.\n";

pub(crate) fn run(bench: &Bench) -> Result<Vec<Figure>, Error> {
    let sizes = bench.sizes;
    let dir = bench.fixture.root().join("server");
    let agents = write_agent_dir(&dir, sizes.server_steps)?;
    bench.say("server: starting the mock model (0 ms latency)");
    let mock = MockProcess::start(
        bench.chassis,
        &dir.join("script.json"),
        Duration::ZERO,
        bench.pinning.mock_cpu,
    )?;
    write_spec(
        &agents,
        mock.base_url(),
        crate::http_name(bench.fixture.http()),
    )?;
    let runtime = harness::runtime()?;
    let client = chassis_http::builder(HttpVersion::Http1)
        .build()
        .map_err(Error::Http)?;

    let mut figures = Vec::new();
    bench.say(&format!(
        "server: {} runs started through POST /v1/runs by {} clients (API-only server)",
        sizes.server_starts, sizes.server_clients
    ));
    {
        let server = ServerProcess::start(bench, &dir.join("starts.db"), &agents, 0)?;
        figures.extend(runtime.block_on(starts(bench, &client, &server))?);
        figures.extend(runtime.block_on(pages(bench, &client, &server))?);
    }
    let followers = sizes.server_runs * sizes.server_followers;
    bench.say(&format!(
        "server: {} runs of {} steps, {followers} streams following them",
        sizes.server_runs, sizes.server_steps
    ));
    {
        let server =
            ServerProcess::start(bench, &dir.join("follow.db"), &agents, sizes.server_runs)?;
        let streams = std::slice::from_ref(&client);
        let pass = Pass::waves(sizes.server_runs, sizes.server_followers, "");
        figures.extend(runtime.block_on(follow(bench, &client, streams, pass, &server))?);
    }
    // The same streams all connecting at once, as after a restart: the backlogs read together
    // leave the allocator a higher mark than the streams keep.
    {
        bench.say(&format!(
            "server: the same {followers} streams connecting all at once"
        ));
        let server = ServerProcess::start(
            bench,
            &dir.join("follow-storm.db"),
            &agents,
            sizes.server_runs,
        )?;
        let streams = std::slice::from_ref(&client);
        let pass = Pass {
            wave: usize::MAX,
            ..Pass::waves(
                sizes.server_runs,
                sizes.server_followers,
                ", all connecting at once",
            )
        };
        figures.extend(runtime.block_on(follow(bench, &client, streams, pass, &server))?);
    }
    // As many streams, one to a run (a console tab on each): what a followed run itself costs
    // the server is then in every stream's share.
    {
        bench.say(&format!(
            "server: {followers} runs of {} steps, one stream following each",
            sizes.server_steps
        ));
        let server = ServerProcess::start(bench, &dir.join("follow-one.db"), &agents, followers)?;
        let streams = std::slice::from_ref(&client);
        let pass = Pass::waves(followers, 1, ", one per run");
        figures.extend(runtime.block_on(follow(bench, &client, streams, pass, &server))?);
    }
    // The same over HTTP/2 (h2c here; what a browser gets over HTTPS): streams share
    // connections, STREAMS_PER_CONNECTION to each.
    {
        bench.say(&format!(
            "server: the same {followers} streams over HTTP/2, {STREAMS_PER_CONNECTION} to a connection"
        ));
        let server =
            ServerProcess::start(bench, &dir.join("follow-h2.db"), &agents, sizes.server_runs)?;
        let connections = followers.div_ceil(STREAMS_PER_CONNECTION).max(1);
        let streams = (0..connections)
            .map(|_| chassis_http::builder(HttpVersion::Http2).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::Http)?;
        let pass = Pass::waves(sizes.server_runs, sizes.server_followers, ", HTTP/2");
        figures.extend(runtime.block_on(follow(bench, &client, &streams, pass, &server))?);
    }
    drop(mock);
    Ok(figures)
}

/// `POST /v1/runs` from concurrent clients, against an API-only server.
async fn starts(
    bench: &Bench<'_>,
    client: &reqwest::Client,
    server: &ServerProcess,
) -> Result<Vec<Figure>, Error> {
    let total = bench.sizes.server_starts;
    let clients = bench.sizes.server_clients.max(1);
    let body = json!({ "agent": "bench", "input": "Summarize the notes. [start]" });
    // Warm-up: connections, the journal's first pages, the agent's version record.
    for _ in 0..clients.min(20) {
        start_run(bench, client, server, &body).await?;
    }
    let cpu_before = server.cpu_seconds();
    let next = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let next = Arc::clone(&next);
            let client = client.clone();
            let url = format!("{}/v1/runs", server.base);
            let token = server.token.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let sent = Instant::now();
                    let response = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await?;
                    let status = response.status();
                    let text = response.text().await?;
                    if status != reqwest::StatusCode::CREATED {
                        return Ok(Err(format!("POST /v1/runs answered {status}: {text}")));
                    }
                    latencies.push(measure::ms(sent.elapsed()));
                }
                Ok::<_, reqwest::Error>(Ok(latencies))
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        let done = task
            .await
            .map_err(|e| bench.failed(format!("a client task ended abnormally: {e}")))??;
        latencies.extend(done.map_err(|message| bench.failed(message))?);
    }
    let wall = began.elapsed().as_secs_f64();
    let cpu = match (cpu_before, server.cpu_seconds()) {
        (Some(before), Some(after)) => (after - before) / total as f64 * 1e6,
        _ => f64::NAN,
    };
    Ok(vec![
        Figure {
            target: Some(Target::AtLeast(TARGET_STARTS)),
            ..bench.figure(
                format!(
                    "runs started/s through the API (POST /v1/runs, {clients} clients, embedded store)"
                ),
                total as f64 / wall,
                Unit::PerSecond,
            )
        },
        bench.figure(
            "POST /v1/runs latency, median",
            measure::median(&latencies),
            Unit::Millis,
        ),
        bench.figure(
            "POST /v1/runs latency, p99",
            measure::quantile(&latencies, 0.99),
            Unit::Millis,
        ),
        bench.figure("server CPU per run started", cpu, Unit::Micros),
    ])
}

/// The runs list as the console loads it (`GET /v1/runs?limit=50`), on the journal the starts
/// filled: the first page, and a page ten cursors deep.
async fn pages(
    bench: &Bench<'_>,
    client: &reqwest::Client,
    server: &ServerProcess,
) -> Result<Vec<Figure>, Error> {
    const TIMES: usize = 20;
    let in_journal = bench.sizes.server_starts + bench.sizes.server_clients.min(20);
    let mut first = Vec::with_capacity(TIMES);
    let mut deep = Vec::with_capacity(TIMES);
    for _ in 0..TIMES {
        let mut cursor: Option<String> = None;
        for page in 0..=10 {
            let mut url = format!("{}/v1/runs?limit=50", server.base);
            if let Some(cursor) = &cursor {
                url.push_str("&cursor=");
                url.push_str(cursor);
            }
            let sent = Instant::now();
            let response = client.get(&url).bearer_auth(&server.token).send().await?;
            let status = response.status();
            let answer: Value = response.json().await?;
            let took = measure::ms(sent.elapsed());
            let runs = answer
                .get("runs")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if status != reqwest::StatusCode::OK || runs == 0 {
                return Err(bench.failed(format!("GET /v1/runs answered {status}: {answer}")));
            }
            match page {
                0 => first.push(took),
                10 => deep.push(took),
                _ => {}
            }
            cursor = answer
                .get("next")
                .and_then(Value::as_str)
                .map(str::to_string);
            if cursor.is_none() {
                break;
            }
        }
    }
    let mut figures = vec![bench.figure(
        format!(
            "runs list, first page of 50 (GET /v1/runs), {in_journal} runs in the journal, median"
        ),
        measure::median(&first),
        Unit::Millis,
    )];
    if !deep.is_empty() {
        figures.push(bench.figure(
            format!("runs list, eleventh page of 50 by cursor, {in_journal} runs, median"),
            measure::median(&deep),
            Unit::Millis,
        ));
    }
    Ok(figures)
}

async fn start_run(
    bench: &Bench<'_>,
    client: &reqwest::Client,
    server: &ServerProcess,
    body: &Value,
) -> Result<String, Error> {
    let response = client
        .post(format!("{}/v1/runs", server.base))
        .bearer_auth(&server.token)
        .json(body)
        .send()
        .await?;
    let status = response.status();
    let answer: Value = response.json().await?;
    match answer.get("run_id").and_then(Value::as_str) {
        Some(id) if status == reqwest::StatusCode::CREATED => Ok(id.to_string()),
        _ => Err(bench.failed(format!("POST /v1/runs answered {status}: {answer}"))),
    }
}

/// One pass of followers: how many runs, streams to each, how many connect at once, and what
/// the figures' names say of it.
struct Pass<'a> {
    runs: usize,
    per_run: usize,
    wave: usize,
    label: &'a str,
}

impl<'a> Pass<'a> {
    /// Streams connecting [`WAVE`] at a time.
    fn waves(runs: usize, per_run: usize, label: &'a str) -> Pass<'a> {
        Pass {
            runs,
            per_run,
            wave: WAVE,
            label,
        }
    }
}

/// Runs waiting for a human with streams following them: idle memory, then delivery.
async fn follow(
    bench: &Bench<'_>,
    client: &reqwest::Client,
    stream_clients: &[reqwest::Client],
    pass: Pass<'_>,
    server: &ServerProcess,
) -> Result<Vec<Figure>, Error> {
    let Pass {
        runs: run_count,
        per_run,
        wave: wave_size,
        label: protocol,
    } = pass;
    let sizes = bench.sizes;
    let input = json!({
        "agent": "bench",
        "input": format!("Work through the notes. [gate-{}]", sizes.server_steps),
    });
    let mut runs = Vec::with_capacity(run_count);
    for _ in 0..run_count {
        runs.push(start_run(bench, client, server, &input).await?);
    }
    // Every run waits for its approval before a stream connects.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let inbox: Value = client
            .get(format!("{}/v1/approvals", server.base))
            .bearer_auth(&server.token)
            .send()
            .await?
            .json()
            .await?;
        let waiting = inbox.as_array().map_or(0, |items| {
            items
                .iter()
                .filter(|i| i.get("kind").and_then(Value::as_str) == Some("approval"))
                .count()
        });
        if waiting >= runs.len() {
            break;
        }
        if Instant::now() > deadline {
            return Err(bench.failed(format!(
                "{waiting} of {} runs waited for approval after {PATIENCE:?}",
                runs.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = server
        .rss()
        .ok_or_else(|| bench.failed("cannot read the server's /proc/PID/status"))?;

    let streams = runs.len() * per_run;
    let gated = Arc::new(AtomicUsize::new(0));
    let (calls_tx, mut calls_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, String)>();
    // The streams connect a wave at a time, each wave once the last has read its backlog, as
    // clients arrive over time: the figure is then what an idle stream keeps, not the peak of
    // a thousand backlogs read at once (the pass with one wave of them all measures that).
    let mut tasks = Vec::with_capacity(streams);
    let deadline = Instant::now() + PATIENCE;
    for wave in (0..streams).step_by(wave_size) {
        for i in wave..wave.saturating_add(wave_size).min(streams) {
            let run = i % runs.len();
            let follower = Follower {
                client: stream_clients[i % stream_clients.len()].clone(),
                url: format!("{}/v1/runs/{}/stream?after=0", server.base, runs[run]),
                token: server.token.clone(),
                run,
                gated: Arc::clone(&gated),
                calls: calls_tx.clone(),
            };
            tasks.push(tokio::spawn(follower.follow()));
        }
        while gated.load(Ordering::Relaxed) < tasks.len() {
            if Instant::now() > deadline || tasks.iter().any(|t| t.is_finished()) {
                let ended = tasks.iter().filter(|t| t.is_finished()).count();
                return Err(bench.failed(format!(
                    "{} of {streams} streams reached the approval request ({ended} ended early)",
                    gated.load(Ordering::Relaxed)
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(calls_tx);
    let idle_cpu_before = server.cpu_seconds();
    tokio::time::sleep(IDLE).await;
    let idle_cpu = match (idle_cpu_before, server.cpu_seconds()) {
        (Some(before), Some(after)) => (after - before) / IDLE.as_secs_f64() * 100.0,
        _ => f64::NAN,
    };
    let with_streams = server
        .rss()
        .ok_or_else(|| bench.failed("cannot read the server's /proc/PID/status"))?;

    // The call each run waits on, as its streams saw it.
    let mut calls: Vec<Option<String>> = vec![None; runs.len()];
    while let Ok((run, call)) = calls_rx.try_recv() {
        calls[run] = Some(call);
    }
    let began = Instant::now();
    let cpu_before = server.cpu_seconds();
    for (run, call) in calls.iter().enumerate() {
        let call = call
            .as_deref()
            .ok_or_else(|| bench.failed(format!("no stream of run {} saw its call", runs[run])))?;
        let response = client
            .post(format!(
                "{}/v1/runs/{}/calls/{call}/approve",
                server.base, runs[run]
            ))
            .bearer_auth(&server.token)
            .json(&json!({ "note": "benchmark" }))
            .send()
            .await?;
        if !response.status().is_success() {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            return Err(bench.failed(format!("approving {call}: {status}: {text}")));
        }
    }
    let mut seen = Vec::with_capacity(streams);
    for task in tasks {
        let followed = tokio::time::timeout(PATIENCE, task)
            .await
            .map_err(|_| bench.failed(format!("a stream did not end within {PATIENCE:?}")))?
            .map_err(|e| bench.failed(format!("a stream task ended abnormally: {e}")))?;
        seen.push(followed.map_err(|message| bench.failed(message))?);
    }
    let cpu = match (cpu_before, server.cpu_seconds()) {
        (Some(before), Some(after)) => after - before,
        _ => f64::NAN,
    };
    // Every follower of a run saw the same events.
    for (run, id) in runs.iter().enumerate() {
        let mut lengths = seen.iter().filter(|s| s.run == run).map(|s| s.events);
        let first = lengths.next().unwrap_or(0);
        if lengths.any(|n| n != first) {
            return Err(bench.failed(format!(
                "the streams of run {id} saw different numbers of events"
            )));
        }
    }
    let last = seen
        .iter()
        .filter_map(|s| s.last_read)
        .max()
        .unwrap_or(began);
    let window = last.saturating_duration_since(began).as_secs_f64();
    let live: u64 = seen.iter().map(|s| s.live).sum();
    let latencies: Vec<f64> = seen
        .iter()
        .flat_map(|s| s.latencies.iter().copied())
        .collect();
    let per_stream = (with_streams as f64 - base as f64) / streams as f64;
    Ok(vec![
        bench.figure(
            format!("events/s delivered to {streams} concurrent stream subscribers{protocol}"),
            live as f64 / window,
            Unit::PerSecond,
        ),
        bench.figure(
            format!("events delivered live, in all{protocol}"),
            live as f64,
            Unit::Count,
        ),
        bench.figure(
            format!("event journaled → read by a subscriber, median{protocol}"),
            measure::median(&latencies),
            Unit::Millis,
        ),
        bench.figure(
            format!("event journaled → read by a subscriber, p99{protocol}"),
            measure::quantile(&latencies, 0.99),
            Unit::Millis,
        ),
        bench.figure(
            format!("server CPU per event delivered{protocol}"),
            cpu / live as f64 * 1e6,
            Unit::Micros,
        ),
        Figure {
            target: (wave_size == WAVE).then_some(Target::AtMost(TARGET_IDLE_KB)),
            ..bench.figure(
                format!("server memory per idle subscriber ({streams} streams{protocol})"),
                per_stream / 1e3,
                Unit::KB,
            )
        },
        bench.figure(
            format!("server RSS with the runs waiting{protocol}"),
            base as f64 / 1e6,
            Unit::MB,
        ),
        bench.figure(
            format!("server RSS with the idle streams too{protocol}"),
            with_streams as f64 / 1e6,
            Unit::MB,
        ),
        bench.figure(
            format!("server CPU with {streams} idle streams{protocol}, % of a core"),
            idle_cpu,
            Unit::Ratio,
        ),
    ])
}

/// One stream following one run.
struct Follower {
    client: reqwest::Client,
    url: String,
    token: String,
    run: usize,
    /// Streams that have read down to their run's approval request.
    gated: Arc<AtomicUsize>,
    /// (run, call) of each approval request seen.
    calls: tokio::sync::mpsc::UnboundedSender<(usize, String)>,
}

/// What one stream saw.
struct Followed {
    run: usize,
    /// Events read, in all.
    events: u64,
    /// Events read after the approval request.
    live: u64,
    /// Journal-to-read latency of those, in ms.
    latencies: Vec<f64>,
    /// When the last event was read.
    last_read: Option<Instant>,
}

impl Follower {
    /// Reads the stream to its end; `Err` names what broke the contract.
    async fn follow(self) -> Result<Followed, String> {
        let mut response = self
            .client
            .get(&self.url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("GET {}: {e}", self.url))?;
        if !response.status().is_success() {
            return Err(format!("GET {}: {}", self.url, response.status()));
        }
        let mut followed = Followed {
            run: self.run,
            events: 0,
            live: 0,
            latencies: Vec::new(),
            last_read: None,
        };
        let mut gate: Option<u64> = None;
        let mut last_kind = String::new();
        let mut parser = SseParser::default();
        loop {
            let chunk = response
                .chunk()
                .await
                .map_err(|e| format!("reading {}: {e}", self.url))?;
            let Some(chunk) = chunk else { break };
            let now_ms = wall_ms();
            let now = Instant::now();
            for message in parser.push(&chunk) {
                if message.event == "error" {
                    return Err(format!("{}: the stream said: {}", self.url, message.data));
                }
                if message.event != "event" {
                    continue;
                }
                let seq: u64 = message
                    .id
                    .parse()
                    .map_err(|_| format!("{}: an event without a numeric id", self.url))?;
                if seq != followed.events + 1 {
                    return Err(format!(
                        "{}: event {seq} after {} (a gap or a repeat)",
                        self.url, followed.events
                    ));
                }
                followed.events = seq;
                followed.last_read = Some(now);
                let data: Value = serde_json::from_str(&message.data)
                    .map_err(|e| format!("{}: event {seq} is not JSON: {e}", self.url))?;
                let kind = data.get("kind").and_then(Value::as_str).unwrap_or_default();
                if gate.is_some() {
                    followed.live += 1;
                    if let Some(at) = data.get("at_ms").and_then(Value::as_f64) {
                        followed.latencies.push((now_ms - at).max(0.0));
                    }
                } else if kind == "approval_requested" {
                    gate = Some(seq);
                    let call = data
                        .get("call_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let _ = self.calls.send((self.run, call));
                    self.gated.fetch_add(1, Ordering::Relaxed);
                }
                last_kind = kind.to_string();
            }
        }
        if last_kind != "run_completed" {
            return Err(format!(
                "{}: the stream ended after `{last_kind}`, not the run's completion",
                self.url
            ));
        }
        Ok(followed)
    }
}

/// One Server-Sent Event.
struct SseMessage {
    id: String,
    event: String,
    data: String,
}

/// Server-Sent Events from chunks of bytes that may split lines anywhere.
#[derive(Default)]
struct SseParser {
    buffer: Vec<u8>,
    id: String,
    event: String,
    data: String,
}

impl SseParser {
    fn push(&mut self, chunk: &[u8]) -> Vec<SseMessage> {
        self.buffer.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(end) = self.buffer[start..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&self.buffer[start..start + end]);
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                if !self.event.is_empty() || !self.data.is_empty() {
                    out.push(SseMessage {
                        id: std::mem::take(&mut self.id),
                        event: std::mem::take(&mut self.event),
                        data: std::mem::take(&mut self.data),
                    });
                }
            } else if !line.starts_with(':') {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => self.id = value.to_string(),
                    "event" => self.event = value.to_string(),
                    "data" => {
                        if !self.data.is_empty() {
                            self.data.push('\n');
                        }
                        self.data.push_str(value);
                    }
                    _ => {}
                }
            }
            start += end + 1;
        }
        self.buffer.drain(..start);
        out
    }
}

fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Writes the agents directory (`agents/bench/` with its prompt and notes) and the mock's
/// script (`script.json`) under `dir`; returns the agent's directory.
fn write_agent_dir(dir: &Path, steps: u32) -> Result<PathBuf, Error> {
    let agent = dir.join("agents").join("bench");
    let notes = agent.join("notes");
    std::fs::create_dir_all(&notes).map_err(Error::io(format!("creating {}", notes.display())))?;
    write(&notes.join("note.txt"), NOTE)?;
    write(&agent.join("prompt.md.j2"), PROMPT)?;
    // `[gate-N]`: a call that waits for a human, N - 2 reads, an answer. `[start]`: an answer.
    let list = json!({ "tool_calls": [{ "name": "list_dir", "arguments": { "path": "." } }] });
    let read =
        json!({ "tool_calls": [{ "name": "read_file", "arguments": { "path": "note.txt" } }] });
    let mut turns = vec![list];
    turns.extend(std::iter::repeat_n(read, steps.saturating_sub(2) as usize));
    turns.push(json!({ "text": "The note says: {last_tool_result}" }));
    let script = json!({ "scenario": [
        { "name": "gate", "when_input_contains": format!("[gate-{steps}]"), "turn": turns },
        { "name": "start", "when_input_contains": "[start]", "turn": [{ "text": "Done." }] },
    ]});
    write(&dir.join("script.json"), &script.to_string())?;
    Ok(dir.join("agents"))
}

/// Writes `agents/bench/agent.toml` against the mock at `base_url`.
fn write_spec(agents: &Path, base_url: &str, http: &str) -> Result<(), Error> {
    // As the other groups' agent: one attempt (no failure hidden behind a retry), whole answers.
    let spec = format!(
        r#"[agent]
name = "bench"
prompt = "prompt.md.j2"

[model]
primary = "mock:bench-model"
max_tokens = 256
timeout = "600s"
stream = false

[providers.mock]
kind = "openai"
base_url = "{base_url}"
max_attempts = 1
http = "{http}"

[limits]
max_steps = 100000
max_model_calls = 100000
max_tool_calls = 100000
max_wall_time = "24h"
max_repeats = 1000000

[[tools]]
use = "builtin:fs"
root = "notes"
only = ["read_file", "list_dir"]

[approvals.tools]
list_dir = "require"
"#
    );
    write(&agents.join("bench").join("agent.toml"), &spec)
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(Error::io(format!("writing {}", path.display())))
}

/// A running `chassis serve`; killed on drop.
struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    base: String,
    /// The admin token the server made on its first start.
    token: String,
    /// Kept open: the server may still write to it.
    _stdout: BufReader<ChildStdout>,
}

impl ServerProcess {
    /// Starts `chassis serve` on a fresh journal `db`, on the mock's CPU when pinned, and waits
    /// for the login URL it prints once it listens (an admin token is made on a first start).
    fn start(
        bench: &Bench<'_>,
        db: &Path,
        agents: &Path,
        workers: usize,
    ) -> Result<ServerProcess, Error> {
        let chassis = bench.chassis;
        let mut command = match bench.pinning.mock_cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(chassis);
                c
            }
            None => Command::new(chassis),
        };
        command
            .arg("--db")
            .arg(db)
            .arg("serve")
            .args(["--addr", "127.0.0.1:0"])
            .arg("--agents")
            .arg(agents)
            .arg("--workers")
            .arg(workers.to_string())
            .env_remove("CHASSIS_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let program = chassis.display().to_string();
        let failed =
            |message: String| bench.failed(format!("chassis serve ({program}): {message}"));
        // A file, not a pipe: nobody reads it while the server runs.
        let mut stderr = tempfile::tempfile()
            .map_err(|e| failed(format!("cannot create a file for its stderr: {e}")))?;
        let stderr_handle = stderr
            .try_clone()
            .map_err(|e| failed(format!("cannot create a file for its stderr: {e}")))?;
        command.stderr(stderr_handle);
        let mut child = command
            .spawn()
            .map_err(|e| failed(format!("cannot start: {e}")))?;
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let parsed = line
            .trim()
            .split_once("/#token=")
            .or_else(|| line.trim().split_once("/?token="))
            .map(|(base, token)| (base.to_string(), token.to_string()));
        match (read, parsed) {
            (Ok(_), Some((base, token))) if base.starts_with("http://") && !token.is_empty() => {
                Ok(ServerProcess {
                    child,
                    base,
                    token,
                    _stdout: stdout,
                })
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let mut said = String::new();
                let _ = stderr
                    .seek(SeekFrom::Start(0))
                    .and_then(|_| stderr.read_to_string(&mut said));
                Err(failed(format!(
                    "expected its login URL on stdout, got {:?}; stderr: {}",
                    line.trim(),
                    said.trim()
                )))
            }
        }
    }

    fn rss(&self) -> Option<u64> {
        measure::rss_of(self.child.id())
    }

    fn cpu_seconds(&self) -> Option<f64> {
        measure::cpu_seconds(Some(self.child.id()))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::SseParser;

    #[test]
    fn events_split_anywhere_are_put_back_together() {
        let text = b": heartbeat\n\nid: 1\nevent: event\ndata: {\"a\":1}\n\nid: 2\r\nevent: event\r\ndata: x\r\ndata: y\r\n\r\n";
        for cut in 0..text.len() {
            let mut parser = SseParser::default();
            let mut got = parser.push(&text[..cut]);
            got.extend(parser.push(&text[cut..]));
            let seen: Vec<_> = got
                .iter()
                .map(|m| (m.id.as_str(), m.event.as_str(), m.data.as_str()))
                .collect();
            assert_eq!(
                seen,
                [("1", "event", "{\"a\":1}"), ("2", "event", "x\ny")],
                "cut at {cut}"
            );
        }
    }
}
