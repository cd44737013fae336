//! What a command tool costs a step: the same agent, its one tool written three ways, in one
//! run of the benchmark.
//!
//! Method: for each concurrency level (one run at a time, then many in flight), the agent of
//! the throughput group drives 10-step runs back to back, durable (`Sync::Full`), until the
//! level has done at least the throughput group's number of steps, each tool and level in a
//! fresh journal. The tool every step but the last calls is `read_file`:
//!
//! - **in Rust**, answering from memory (the throughput group's default): what the runtime
//!   costs and nothing a tool does;
//! - **a command, a process per call** (the default mode of command tools): `cat
//!   notes/note.txt`. No program starts faster than `cat`, so this is the floor of that mode;
//!   a real tool in Python or Node pays its interpreter's start (tens of milliseconds) on top;
//! - **a persistent command** (`persistent = true`): one `python3` process for every call of
//!   every run, a JSON request and a JSON answer per line, reading the note the request names.
//!   It does more than `cat` does (JSON both ways, the path checked, the file opened), in the
//!   language such tools are written in.
//!
//! Steps/s of each, and of the two command modes against the Rust tool: the target is the
//! persistent command within 2× of the Rust tool's steps/s (a ratio of at least 0.5). The tool
//! processes inherit this process's CPU (with pinning, CPU 0, the runtime's), so their work
//! counts against the same core as the runtime's, as it would in a worker.

use std::path::Path;
use std::sync::Arc;

use chassis_engine::Engine;
use chassis_store::Sync;
use rusqlite::Connection;

use crate::{Bench, BenchTool, Error, Figure, Target, Unit};
use crate::{fixture, harness};

/// The tools measured, the Rust one first: the others are compared with it.
const TOOLS: [BenchTool; 3] = [BenchTool::Memory, BenchTool::Command, BenchTool::Persistent];

/// How far below the Rust tool's steps/s the persistent command may be: within 2×.
const TARGET_RATIO: f64 = 0.5;

pub(crate) fn run(bench: &Bench) -> Result<Vec<Figure>, Error> {
    if !crate::steps::tool_available("python3") {
        return Err(bench.failed(
            "the persistent tool is a python3 script, and python3 is not on PATH \
             (install Python 3, or leave out the tools group: --only with the others)",
        ));
    }
    if !crate::steps::tool_available("cat") {
        return Err(bench.failed("the per-call command tool runs `cat`, which is not on PATH"));
    }
    let mock = bench.mock()?;
    let runtime = harness::runtime()?;
    let steps = bench.sizes.throughput_steps;
    let mut figures = Vec::new();
    // Each tool's agent is loaded once and kept for every level: the persistent process it
    // starts at its first call serves both levels, as it serves every run of a worker.
    let agents = TOOLS
        .iter()
        .map(|&tool| {
            let name = format!("tools-{}", tool.name());
            Ok((
                tool,
                bench
                    .fixture
                    .agent_of(&name, mock.base_url(), tool, false)?,
            ))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    for level in bench.sizes.tools_levels {
        let label = if level == 1 {
            "1 run".to_string()
        } else {
            format!("{level} concurrent runs")
        };
        let mut rates = Vec::new();
        for (tool, agent) in &agents {
            let runs_each = bench
                .sizes
                .throughput_min_steps
                .div_ceil(level * steps as usize)
                .max(1);
            bench.say(&format!(
                "tools: {}, {level} × {runs_each} runs of {steps} steps, durable",
                tool.name()
            ));
            let path = bench.fixture.db(&format!("tools-{}-{level}", tool.name()));
            let journal = harness::journal(&path, Sync::Full)?;
            let engine = Arc::new(Engine::new(journal));
            // One run first, untimed: it starts the persistent process (through `pyenv`'s
            // shims that alone can take a tenth of a second) and warms the connections.
            runtime.block_on(harness::complete(&engine, agent, steps))?;
            let wall = runtime
                .block_on(harness::drive(&engine, agent, level, runs_each, steps))?
                .as_secs_f64();
            drop(engine);
            // A run completes whether its tool calls worked or not (the model sees the error),
            // so every call is checked to have read the note: a figure of failing calls is no
            // figure.
            let calls = (level * runs_each + 1) * (steps as usize - 1);
            every_call_read_the_note(bench, &path, calls)?;
            let rate = (level * runs_each * steps as usize) as f64 / wall;
            rates.push((*tool, rate));
            figures.push(bench.figure(
                format!("durable steps/s, {}, {label}", what(*tool)),
                rate,
                Unit::PerSecond,
            ));
        }
        let rust = rates[0].1;
        for &(tool, rate) in &rates[1..] {
            let mut ratio = bench.figure(
                format!("{} ÷ Rust tool, steps/s, {label}", what(tool)),
                rate / rust,
                Unit::Ratio,
            );
            if tool == BenchTool::Persistent {
                ratio.target = Some(Target::AtLeast(TARGET_RATIO));
            }
            figures.push(ratio);
            if level == 1 {
                // One run at a time, a step's time is the sum of its parts, so the difference
                // of the times per step is what the tool's call costs beyond the Rust tool's.
                figures.push(bench.figure(
                    format!(
                        "{}: a call's cost beyond the Rust tool's, 1 run",
                        what(tool)
                    ),
                    (1.0 / rate - 1.0 / rust) * 1e6 * f64::from(steps)
                        / f64::from(steps.saturating_sub(1).max(1)),
                    Unit::Micros,
                ));
            }
        }
    }
    // Inside the runtime, so the persistent process is reaped as it is killed.
    runtime.block_on(async move { drop(agents) });
    Ok(figures)
}

/// Fails unless the journal at `path` holds `calls` finished tool calls, each of which returned
/// the note.
fn every_call_read_the_note(bench: &Bench, path: &Path, calls: usize) -> Result<(), Error> {
    let sql = |source| Error::Sqlite {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open(path).map_err(sql)?;
    let (finished, read, other): (i64, i64, Option<String>) = conn
        .query_row(
            "SELECT count(*),
                    coalesce(sum(rtrim(json_extract(data, '$.content'), char(10)) = ?1), 0),
                    max(CASE WHEN rtrim(json_extract(data, '$.content'), char(10)) = ?1 THEN NULL
                        ELSE json_extract(data, '$.content') END)
             FROM events WHERE json_extract(data, '$.kind') = 'tool_finished'",
            // A command's output reaches the model without its last newline.
            [fixture::NOTE.trim_end()],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .map_err(sql)?;
    if finished as usize != calls || read != finished {
        return Err(bench.failed(format!(
            "{} holds {finished} finished tool calls ({calls} expected), {read} of which read \
             the note; another answered: {}",
            path.display(),
            other.as_deref().unwrap_or("(none)")
        )));
    }
    Ok(())
}

/// A tool's name in the figures.
fn what(tool: BenchTool) -> &'static str {
    match tool {
        BenchTool::Memory => "Rust tool",
        BenchTool::Fs => "builtin:fs",
        BenchTool::Command => "command, a process per call",
        BenchTool::Persistent => "persistent command",
    }
}
