//! Benchmarks of the chassis runtime: real runs, through the real OpenAI-compatible provider,
//! against the mock model served by a separate `chassis mock-model` process.
//!
//! Each group measures one thing and returns [`Figure`]s; [`run`] collects them into a
//! [`Report`] whose [`Report::render`] is the table `chassis bench` prints.
//! The runtime under test runs in this process on a current-thread tokio runtime (one core);
//! with [`Options::pin`] the process is pinned to CPU 0 and the mock to CPU 1.
//! Nothing here asserts a time: figures are printed and compared with their targets, that is all.
//!
//! [`run`] builds its own tokio runtimes, so call it from a plain thread (or `spawn_blocking`),
//! never from inside an async task.

mod cold_start;
mod command_tools;
mod error;
mod fixture;
mod harness;
mod journal_size;
mod layouts;
mod measure;
mod memory;
mod minimal_loop;
mod mock;
mod overhead;
mod pin;
mod rate_limit;
mod report;
mod resume;
mod retention;
mod server;
mod steps;
mod streaming;
mod throughput;
mod trace;
mod worker_memory;

use std::path::PathBuf;
use std::time::Duration;

pub use chassis_core::spec::HttpVersion;
pub use error::Error;
pub use report::{Figure, Report, Target, Unit};

use fixture::Fixture;
use mock::MockProcess;

/// One benchmark group; `chassis bench --only GROUP` runs just that one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// Per-step runtime overhead of one run at a time, with and without fsync.
    Overhead,
    /// Durable steps per second at 1 to 10,000 concurrent runs.
    Throughput,
    /// Steps/s of one agent whose tool is written in Rust, a command run per call, and a
    /// persistent command, at one run and at many in flight, in one run of the benchmark.
    Tools,
    /// Resident memory with many runs in flight: in one engine, and in a `chassis worker` process.
    Memory,
    /// Journal bytes per step for short and long runs.
    Journal,
    /// Loading and folding a run of 1,000 events.
    Resume,
    /// `chassis run` process start to its first model request.
    ColdStart,
    /// `chassis serve`: runs started through the API, events to stream subscribers, memory
    /// per idle subscriber.
    Server,
    /// Streamed answers: time to first token, cost per chunk, throughput against whole answers.
    Streaming,
    /// Shared provider rate limits: worker processes on one journal against a mock that
    /// answers 429 above its requests per minute; the 429s received.
    RateLimit,
    /// Per durable step, one run at a time: wall time, instructions, journal bytes, bytes
    /// written to disk and fsyncs, beside a minimal hand-written loop; instructions of a whole
    /// `chassis run` against a warm engine.
    Steps,
    /// The events table's layout (key, rowid or not, page size) against the bytes written and
    /// the fsyncs of a durable step: one real run replayed into each layout.
    Layouts,
    /// Purge with an archive, then import, of many ended runs (100,000 in full), on SQLite and
    /// on the PostgreSQL server `CHASSIS_BENCH_PG_URL` names; the round trip checked exact.
    Retention,
}

impl Group {
    /// Every group, in the order they run and print.
    pub const ALL: [Group; 13] = [
        Group::Overhead,
        Group::Steps,
        Group::Layouts,
        Group::Throughput,
        Group::Tools,
        Group::Streaming,
        Group::Memory,
        Group::Journal,
        Group::Resume,
        Group::ColdStart,
        Group::Server,
        Group::RateLimit,
        Group::Retention,
    ];

    /// The order the groups run in.
    const RUN_ORDER: [Group; 13] = [
        Group::Memory,
        Group::Overhead,
        Group::Steps,
        Group::Layouts,
        Group::Throughput,
        Group::Tools,
        Group::Streaming,
        Group::Journal,
        Group::Resume,
        Group::ColdStart,
        Group::Server,
        Group::RateLimit,
        Group::Retention,
    ];

    /// The group's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Group::Overhead => "overhead",
            Group::Throughput => "throughput",
            Group::Memory => "memory",
            Group::Journal => "journal",
            Group::Resume => "resume",
            Group::ColdStart => "cold-start",
            Group::Server => "server",
            Group::Streaming => "streaming",
            Group::RateLimit => "rate-limit",
            Group::Steps => "steps",
            Group::Layouts => "layouts",
            Group::Retention => "retention",
            Group::Tools => "tools",
        }
    }

    /// Parses [`Group::name`].
    pub fn parse(text: &str) -> Option<Group> {
        Group::ALL.into_iter().find(|g| g.name() == text)
    }
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What to run and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `chassis` binary: serves the mock model and is the subject of the cold-start figure.
    pub chassis: PathBuf,
    /// Small sizes (a smoke test that every figure is produced), not meaningful figures.
    pub quick: bool,
    /// Pin this process to CPU 0 and the mock model to CPU 1 (needs `taskset` and 2 CPUs).
    pub pin: bool,
    /// Groups to run; all when empty.
    pub only: Vec<Group>,
    /// Where journals and agent files go; a fresh temporary directory when `None`.
    /// It should be on the disk whose fsync is being measured (not tmpfs).
    pub dir: Option<PathBuf>,
    /// The HTTP protocol the runs speak to the mock model.
    pub http: HttpVersion,
    /// Concurrency levels of the throughput group; its standard levels when empty.
    pub levels: Vec<usize>,
    /// The tool each step calls.
    pub tool: BenchTool,
    /// A PostgreSQL server (URL) the retention group measures beside SQLite, in a schema of
    /// its own that it drops after; SQLite alone when `None`.
    pub pg: Option<String>,
}

/// The tool every step of the benchmark agent calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchTool {
    /// `read_file` written in Rust, answering from memory: the runtime's cost alone.
    Memory,
    /// `builtin:fs` `read_file` on a 56-byte file: adds the file system and the hand-off of
    /// each call to tokio's blocking pool.
    Fs,
    /// A command tool run as a process per call (the default mode of command tools):
    /// `cat notes/note.txt`, the cheapest process there is, so the figure is the floor of
    /// that mode.
    Command,
    /// A persistent command tool (`persistent = true`): one `python3` process for every call,
    /// a JSON request and answer per line, reading the note the request names.
    Persistent,
}

impl BenchTool {
    /// Every tool, as `--tool` spells it.
    pub const ALL: [BenchTool; 4] = [
        BenchTool::Memory,
        BenchTool::Fs,
        BenchTool::Command,
        BenchTool::Persistent,
    ];

    /// How `--tool` spells it.
    pub fn name(self) -> &'static str {
        match self {
            BenchTool::Memory => "memory",
            BenchTool::Fs => "fs",
            BenchTool::Command => "command",
            BenchTool::Persistent => "persistent",
        }
    }

    /// Parses [`BenchTool::name`].
    pub fn parse(text: &str) -> Option<BenchTool> {
        BenchTool::ALL.into_iter().find(|t| t.name() == text)
    }

    /// What the tool is, for the report's header and figures.
    fn describe(self) -> &'static str {
        match self {
            BenchTool::Memory => "read_file in Rust, from memory (no IO)",
            BenchTool::Fs => "builtin:fs read_file (a 56-byte file, via tokio's blocking pool)",
            BenchTool::Command => "a command tool, a process per call (`cat` of a 56-byte file)",
            BenchTool::Persistent => {
                "a persistent command tool (one python3 process, a JSON line per call)"
            }
        }
    }
}

/// How `version` is spelled in an agent spec.
fn http_name(version: HttpVersion) -> &'static str {
    match version {
        HttpVersion::Auto => "auto",
        HttpVersion::Http1 => "http1",
        HttpVersion::Http2 => "http2",
    }
}

/// How big each benchmark is.
#[derive(Clone, Debug)]
struct Sizes {
    /// Runs warmed up before the overhead is measured.
    overhead_warmup: usize,
    /// Runs measured, one at a time.
    overhead_runs: usize,
    /// Steps (model calls) per overhead run.
    overhead_steps: u32,
    /// Times each raw HTTP request of the baseline is repeated.
    baseline_reps: usize,
    /// Concurrent runs per throughput level.
    throughput_levels: Vec<usize>,
    /// Steps per throughput run.
    throughput_steps: u32,
    /// Each throughput level runs at least this many steps (runs repeat back to back).
    throughput_min_steps: usize,
    /// Runs held in flight for the memory figure.
    memory_runs: usize,
    /// Mock latency while the memory figure is taken: long enough for every run to be waiting.
    memory_latency: Duration,
    /// Runs per journal-size sample.
    journal_runs: usize,
    /// Timed loads of the 1,000-event run.
    resume_iters: usize,
    /// Timed `chassis run` processes.
    cold_iters: usize,
    /// Runs started through `POST /v1/runs` for the starts figure.
    server_starts: usize,
    /// Concurrent clients sending them.
    server_clients: usize,
    /// Runs the stream subscribers follow.
    server_runs: usize,
    /// Stream subscribers per run.
    server_followers: usize,
    /// Steps of each followed run.
    server_steps: u32,
    /// Runs timed for the first token (and requests to the mock for its own).
    streaming_ttft_runs: usize,
    /// Concurrent runs of the streamed-against-whole throughput comparison.
    streaming_level: usize,
    /// Runs submitted for the rate-limit figure, and the limit (requests per minute).
    rate_runs: usize,
    rate_rpm: u32,
    /// Ended runs purged into an archive and imported back, per store.
    retention_runs: usize,
    /// Concurrency levels of the tools group: one run, then many.
    tools_levels: [usize; 2],
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                overhead_warmup: 1,
                overhead_runs: 3,
                overhead_steps: 5,
                baseline_reps: 2,
                throughput_levels: vec![1, 10, 100],
                throughput_steps: 5,
                throughput_min_steps: 50,
                memory_runs: 200,
                memory_latency: Duration::from_millis(500),
                journal_runs: 1,
                resume_iters: 5,
                cold_iters: 3,
                server_starts: 200,
                server_clients: 8,
                server_runs: 5,
                server_followers: 10,
                server_steps: 5,
                streaming_ttft_runs: 5,
                streaming_level: 10,
                rate_runs: 40,
                rate_rpm: 600,
                retention_runs: 50,
                tools_levels: [1, 10],
            }
        } else {
            Sizes {
                overhead_warmup: 5,
                overhead_runs: 100,
                overhead_steps: 20,
                baseline_reps: 20,
                throughput_levels: vec![1, 10, 100, 1_000, 10_000],
                throughput_steps: 10,
                throughput_min_steps: 10_000,
                memory_runs: 10_000,
                memory_latency: Duration::from_secs(8),
                journal_runs: 200,
                resume_iters: 200,
                cold_iters: 20,
                server_starts: 100_000,
                server_clients: 64,
                server_runs: 100,
                server_followers: 10,
                server_steps: 20,
                streaming_ttft_runs: 200,
                streaming_level: 1_000,
                rate_runs: 2_000,
                rate_rpm: 600,
                retention_runs: 100_000,
                tools_levels: [1, 1_000],
            }
        }
    }
}

/// Steps (model calls) of the run whose journal holds 1,000 events: 4 events per tool step,
/// plus `run_started`, the final step's request and reply, and `run_completed`.
const RESUME_STEPS: u32 = 250;

/// Steps of the two journal-size samples.
const JOURNAL_STEPS: [u32; 2] = [10, 50];

/// Steps of each run held in flight for the memory figure.
const MEMORY_STEPS: u32 = 2;

/// Runs the selected groups and returns their figures; `progress` hears what is happening.
pub fn run(options: &Options, progress: &dyn Fn(&str)) -> Result<Report, Error> {
    let mut sizes = Sizes::new(options.quick);
    if !options.levels.is_empty() {
        sizes.throughput_levels = options.levels.clone();
    }
    // Memory goes first: its base RSS is meant to be that of a fresh process, and the heap
    // that 10,000 concurrent runs leave behind would be counted in it otherwise.
    let groups: Vec<Group> = Group::RUN_ORDER
        .into_iter()
        .filter(|g| options.only.is_empty() || options.only.contains(g))
        .collect();
    // Before pinning, which narrows what this process sees to one CPU.
    let machine = measure::machine();
    let load = measure::load_average();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinning = if options.pin {
        pin::Pinning::apply(cpus)
    } else {
        pin::Pinning::none("not asked for")
    };
    if let Some(warning) = &pinning.warning {
        progress(&format!("pinning: {warning}"));
    }

    let steps: Vec<u32> = [
        sizes.overhead_steps,
        sizes.throughput_steps,
        MEMORY_STEPS,
        RESUME_STEPS,
        retention::RETENTION_STEPS,
    ]
    .into_iter()
    .chain(JOURNAL_STEPS)
    .collect();
    let fixture = Fixture::new(options.dir.as_deref(), &steps, options.http, options.tool)?;
    let mut report = Report::new(report::Context {
        machine,
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        pinning: pinning.describe(),
        tool: options.tool.describe(),
        http: match options.http {
            HttpVersion::Http2 => "HTTP/2 (h2c)",
            _ => "HTTP/1.1",
        },
        dir: fixture.root().display().to_string(),
        quick: options.quick,
        load: (load, String::new()),
    });

    let needs_mock = groups.iter().any(|g| {
        matches!(
            g,
            Group::Overhead
                | Group::Throughput
                | Group::Journal
                | Group::Resume
                | Group::Streaming
                | Group::Steps
                | Group::Layouts
                | Group::Retention
                | Group::Tools
        )
    });
    let mock = if needs_mock {
        progress("starting the mock model (0 ms latency)");
        Some(MockProcess::start(
            &options.chassis,
            fixture.script(),
            Duration::ZERO,
            pinning.mock_cpu,
        )?)
    } else {
        None
    };
    let context = |group: Group| Bench {
        fixture: &fixture,
        sizes: &sizes,
        mock: mock.as_ref(),
        pinning: &pinning,
        chassis: &options.chassis,
        pg: options.pg.as_deref(),
        progress,
        group,
    };
    for group in groups {
        progress(&format!("── {group}"));
        let bench = context(group);
        let figures = match group {
            Group::Overhead => overhead::run(&bench)?,
            Group::Throughput => throughput::run(&bench)?,
            Group::Memory => {
                let mut figures = memory::run(&bench)?;
                figures.extend(worker_memory::run(&bench)?);
                figures
            }
            Group::Journal => journal_size::run(&bench)?,
            Group::Resume => resume::run(&bench)?,
            Group::ColdStart => cold_start::run(&bench)?,
            Group::Server => server::run(&bench)?,
            Group::Streaming => streaming::run(&bench)?,
            Group::RateLimit => rate_limit::run(&bench)?,
            Group::Steps => steps::run(&bench)?,
            Group::Layouts => layouts::run(&bench)?,
            Group::Retention => retention::run(&bench)?,
            Group::Tools => command_tools::run(&bench)?,
        };
        report.extend(figures);
    }
    // Printed in the order of [`Group::ALL`], whatever order they ran in.
    report.figures.sort_by_key(|f| f.group);
    report.finish();
    Ok(report)
}

/// The work of one child process of the `steps` or `layouts` group (`chassis bench --child
/// SPEC`, which the group starts itself, plain or under `strace` or `valgrind`): drives the
/// runs `spec` describes (or replays a recorded run into a layout) and returns one line of
/// JSON saying what it did.
pub fn child(spec: &str) -> Result<String, Error> {
    let parsed: Option<serde_json::Value> = serde_json::from_str(spec).ok();
    match parsed {
        Some(v) if v["kind"] == "layout" => layouts::child(&v),
        _ => steps::child(spec),
    }
}

/// What every benchmark group gets.
struct Bench<'a> {
    fixture: &'a Fixture,
    sizes: &'a Sizes,
    /// The 0 ms mock, for the groups that need it.
    mock: Option<&'a MockProcess>,
    pinning: &'a pin::Pinning,
    chassis: &'a std::path::Path,
    /// The PostgreSQL server of [`Options::pg`].
    pg: Option<&'a str>,
    progress: &'a dyn Fn(&str),
    group: Group,
}

impl Bench<'_> {
    fn mock(&self) -> Result<&MockProcess, Error> {
        self.mock.ok_or(Error::Failed {
            bench: self.group.name(),
            message: "the mock model was not started".into(),
        })
    }

    fn say(&self, message: &str) {
        (self.progress)(message);
    }

    fn figure(&self, name: impl Into<String>, value: f64, unit: Unit) -> Figure {
        Figure {
            group: self.group,
            name: name.into(),
            value,
            unit,
            target: None,
        }
    }

    fn failed(&self, message: impl Into<String>) -> Error {
        Error::Failed {
            bench: self.group.name(),
            message: message.into(),
        }
    }
}
