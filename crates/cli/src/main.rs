//! `chassis`: run LLM agents as durable, governed, observable processes.

mod commands;
mod exit;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Where the embedded journal lives unless `--db` or `CHASSIS_DB` says otherwise.
pub const DEFAULT_DB: &str = ".chassis/chassis.db";

#[derive(Parser)]
#[command(
    name = "chassis",
    version,
    about = "Run LLM agents as production infrastructure: durable, resumable, inspectable",
    after_help = "Exit codes: 0 completed, 1 failed, 2 usage or spec error, 3 waiting for a human or paused.\n\
                  Start with `chassis demo`; then `chassis runs` and `chassis show RUN`."
)]
struct Cli {
    /// Journal database (SQLite file)
    #[arg(long, global = true, env = "CHASSIS_DB", default_value = DEFAULT_DB, value_name = "PATH")]
    db: PathBuf,

    /// Log filter for diagnostics on stderr, e.g. `info` or `chassis_engine=debug`
    #[arg(
        long,
        global = true,
        env = "CHASSIS_LOG",
        default_value = "warn",
        value_name = "FILTER"
    )]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an agent on an input until it answers, fails or must wait
    Run(commands::run::Args),
    /// Continue a run from its last journaled event (after a crash, a wait or a pause)
    Resume(commands::resume::Args),
    /// List runs in the journal, newest first
    Runs(commands::runs::Args),
    /// Show a run's status and its journal
    Show(commands::show::Args),
    /// Serve the OpenAI-compatible mock model (scripted replies, fault injection)
    MockModel(commands::mock::Args),
    /// Run a sample agent against a built-in mock model: no API key, no set-up
    Demo(commands::demo::Args),
    /// Measure runtime overhead, throughput, memory, journal size, resume and cold start
    Bench(commands::bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let db = cli.db;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => commands::run::run(&db, args).await,
            Command::Resume(args) => commands::resume::run(&db, args).await,
            Command::Runs(args) => commands::runs::run(&db, args).await,
            Command::Show(args) => commands::show::run(&db, args).await,
            Command::MockModel(args) => commands::mock::run(args).await,
            Command::Demo(args) => commands::demo::run(&db, args).await,
            Command::Bench(args) => commands::bench::run(&db, args).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(exit::code_of(&error))
        }
    }
}
