//! `chassis bench`: runtime overhead, throughput, memory, journal size, resume and cold start.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chassis_bench::{BenchTool, Group, HttpVersion, Options};

use crate::exit::UsageError;

// Arguments of `chassis bench`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Small sizes that finish in seconds: checks that every benchmark runs (CI smoke test)
    #[arg(long)]
    quick: bool,
    /// Only these groups (comma-separated): overhead, steps, layouts, throughput, tools,
    /// streaming, memory, journal, resume, cold-start, server, rate-limit, retention
    #[arg(long, value_delimiter = ',', value_name = "GROUP")]
    only: Vec<String>,
    /// A PostgreSQL server the retention group measures too, in a schema of its own that it
    /// drops after (without it, only SQLite)
    #[arg(long, value_name = "URL", env = "CHASSIS_BENCH_PG_URL")]
    pg: Option<String>,
    /// Do not pin this process to CPU 0 and the mock model to CPU 1
    #[arg(long)]
    no_pin: bool,
    /// Directory for the benchmark's journals (put it on the disk to measure; not tmpfs)
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// HTTP protocol spoken to the mock model: http2 (h2c, as hosted providers are spoken to
    /// over HTTPS) or http1 (one connection per call in flight)
    #[arg(long, value_name = "VERSION", default_value = "http2", value_parser = ["http1", "http2"])]
    http: String,
    /// Concurrency levels of the throughput group (comma-separated), e.g. `1000` to profile one
    #[arg(long, value_delimiter = ',', value_name = "RUNS", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    levels: Vec<u64>,
    /// Tool every step calls: memory (read_file written in Rust, no IO: the runtime alone),
    /// fs (builtin:fs read_file on a file, through tokio's blocking pool), command (a process
    /// per call: cat) or persistent (one python3 process, a JSON line per call)
    #[arg(long, value_name = "TOOL", default_value = "memory", value_parser = ["memory", "fs", "command", "persistent"])]
    tool: String,
    /// Internal: the work of one child process of the `steps` group, as JSON
    #[arg(long, value_name = "SPEC", hide = true)]
    child: Option<String>,
}

/// Runs the benchmarks and prints the table on stdout; progress goes to stderr.
///
/// The journal given by `--db` is not touched: every benchmark uses journals of its own.
pub(crate) async fn run(_db: &Path, args: Args) -> anyhow::Result<u8> {
    if let Some(spec) = args.child {
        // The child builds runtimes of its own too.
        let line = tokio::task::spawn_blocking(move || chassis_bench::child(&spec))
            .await
            .context("the benchmark child panicked")??;
        outln!("{line}");
        return Ok(crate::exit::COMPLETED);
    }
    let only = args
        .only
        .iter()
        .map(|name| {
            Group::parse(name).ok_or_else(|| {
                let names: Vec<_> = Group::ALL.iter().map(|g| g.name()).collect();
                UsageError(format!(
                    "--only: unknown group `{name}` (expected one of {})",
                    names.join(", ")
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = Options {
        chassis: std::env::current_exe().context("cannot find the chassis binary")?,
        quick: args.quick,
        pin: !args.no_pin,
        only,
        dir: args.dir,
        pg: args.pg.filter(|url| !url.is_empty()),
        levels: args.levels.iter().map(|&n| n as usize).collect(),
        tool: BenchTool::parse(&args.tool).unwrap_or(BenchTool::Memory),
        http: if args.http == "http1" {
            HttpVersion::Http1
        } else {
            HttpVersion::Http2
        },
    };
    // The benchmarks build runtimes of their own, which cannot nest inside this one.
    let report = tokio::task::spawn_blocking(move || {
        chassis_bench::run(&options, &|line: &str| noteln!("bench: {line}"))
    })
    .await
    .context("the benchmark thread panicked")??;
    out!("{}", report.render());
    Ok(crate::exit::COMPLETED)
}
