//! `chassis`: run LLM agents as durable, governed, observable processes.

// Everything printed goes through `out!`, `outln!`, `errln!` and `noteln!`, which survive a
// reader that closes the pipe early (see `out.rs`).
#![deny(clippy::print_stdout, clippy::print_stderr)]

#[macro_use]
mod out;
mod commands;
mod discover;
mod exit;
mod progress;
mod signals;
mod style;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "chassis",
    version,
    about = "Run LLM agents as production infrastructure: durable, resumable, inspectable",
    after_help = "Exit codes: 0 completed, 1 failed or cancelled, 2 usage or spec error, 3 waiting for a human or paused,\n\
                  4 the run is driven by another process, 130 interrupted by Ctrl-C or SIGTERM (the run says how to continue).\n\
                  Start with `chassis demo`; then `chassis runs` and `chassis show RUN`."
)]
// The global options are listed after each command's own (`display_order` from 100; no
// command has a hundred options), wherever clap puts their copies.
struct Cli {
    /// Journal database: an SQLite file, or a postgres:// URL shared by workers [default: the
    /// nearest .chassis/chassis.db in this directory or above, else ./.chassis/chassis.db]
    #[arg(
        long,
        global = true,
        env = "CHASSIS_DB",
        value_name = "PATH|URL",
        display_order = 100
    )]
    db: Option<PathBuf>,

    /// No warnings, notes or progress on stderr: only errors and alerts (results still go to
    /// stdout)
    #[arg(long, short, global = true, display_order = 101)]
    quiet: bool,

    /// Log filter for diagnostics on stderr, e.g. `info` or `chassis_engine=debug`
    #[arg(
        long,
        global = true,
        env = "CHASSIS_LOG",
        default_value = "warn",
        value_name = "FILTER",
        display_order = 102
    )]
    log: String,

    /// Log line format on stderr: text (readable) or json (one object per line)
    #[arg(
        long,
        global = true,
        env = "CHASSIS_LOG_FORMAT",
        default_value = "text",
        value_name = "text|json",
        display_order = 103
    )]
    log_format: chassis_telemetry::LogFormat,

    /// Serve Prometheus metrics at http://ADDR/metrics while the command runs, e.g. 127.0.0.1:9464
    #[arg(
        long,
        global = true,
        env = "CHASSIS_METRICS_ADDR",
        value_name = "ADDR",
        display_order = 104
    )]
    metrics_addr: Option<std::net::SocketAddr>,

    #[command(subcommand)]
    command: Command,
}

// `defer`: a subcommand's arguments are built only when it is the one invoked (or for help
// and completions), not for every start: a `chassis run` spent about a million instructions
// building and dropping the other thirty commands' arguments. Deferred, an `Args` struct's
// doc comment would replace the about written here, so theirs are plain comments.
#[derive(Subcommand)]
#[command(defer = true)]
enum Command {
    /// Run an agent on an input until it answers, fails or must wait
    Run(commands::run::Args),
    /// Continue a run from its last journaled event (after a crash, a wait or a pause)
    Resume(commands::resume::Args),
    /// Journal a new run for a worker to drive; prints its id at once
    Submit(commands::submit::Args),
    /// Continue a completed run with a new user message (a thread); --resume drives it here
    Send(commands::send::Args),
    /// Start a new run from the first SEQ events of another (time travel); nothing copied runs again
    Fork(commands::fork::Args),
    /// Delete ended runs older than a duration, optionally archived first (gzip JSONL)
    Purge(commands::purge::Args),
    /// Restore the runs of a `purge --archive` file, exactly as they were
    Import(commands::import::Args),
    /// Drive submitted and woken runs: claim them under a lease, until SIGTERM or Ctrl-C
    Worker(commands::worker::Args),
    /// Manage the journal database (`chassis db migrate`)
    #[command(subcommand)]
    Db(commands::db::Command),
    /// List runs in the journal, newest first
    Runs(commands::runs::Args),
    /// Show a run's status and its journal
    Show(commands::show::Args),
    /// Show a run as a tree in time: steps, model and tool calls, retries, waits, tokens, cost
    Trace(commands::trace::Args),
    /// Completion and error rates, escalations, average cost and time, per agent
    Stats(commands::stats::Args),
    /// Run an evaluation suite: each case a real run, checked, reported, gated on a baseline
    Eval(commands::eval::Args),
    /// Export a journaled run's model exchanges as a cassette
    Export(commands::export::Args),
    /// Serve the OpenAI-compatible mock model (scripted replies, fault injection)
    MockModel(commands::mock::Args),
    /// List what waits for a human across all runs: approvals, unknown outcomes, limits
    Approvals(commands::approvals::ListArgs),
    /// Approve a pending call (optionally with edited arguments) or raise an escalated limit
    Approve(commands::approvals::ApproveArgs),
    /// Reject a pending call; the model gets the reason as the tool's result
    Reject(commands::approvals::RejectArgs),
    /// Settle a call whose outcome is unknown: --succeeded, --failed or --retry
    Resolve(commands::approvals::ResolveArgs),
    /// Cancel a run: it stops at its next safe point, with who and why journaled
    Cancel(commands::cancel::Args),
    /// List webhook deliveries: pending (retried until they expire), failed, delivered
    Outbox(commands::outbox::Args),
    /// Start agents on a cron schedule, fired once per slot by workers and servers
    #[command(subcommand)]
    Schedule(commands::schedule::Command),
    /// Serve the HTTP API, run streams and the console, and drive runs (chassis as a service)
    Serve(commands::serve::Args),
    /// Manage API tokens for `chassis serve`: create, list, revoke
    #[command(subcommand)]
    Tokens(commands::tokens::Command),
    /// Run a sample agent against a built-in mock model: no API key, no set-up
    Demo(commands::demo::Args),
    /// Measure runtime overhead, throughput, memory, journal size, resume and cold start
    Bench(commands::bench::Args),
    /// Write a small agent project to start from: spec, prompt, a tool, an eval suite, a mock script
    Init(commands::init::Args),
    /// Check an agent spec, its prompt and its tools without running anything
    Check(commands::check::Args),
    /// Print a shell completion script: `chassis completions bash > /etc/bash_completion.d/chassis`
    Completions(commands::completions::Args),
}

/// The process's telemetry: disabled until `main` starts it.
static TELEMETRY: std::sync::OnceLock<chassis_telemetry::Telemetry> = std::sync::OnceLock::new();

/// The process's telemetry: a command that drives runs attaches it to its engine with
/// [`observed`].
pub fn telemetry() -> &'static chassis_telemetry::Telemetry {
    TELEMETRY.get_or_init(|| chassis_telemetry::Telemetry::disabled(Default::default()))
}

/// `engine` reporting to the process's telemetry: traces, metrics, and the secrets of every
/// agent it drives kept out of the log.
pub fn observed(mut engine: chassis_engine::Engine) -> chassis_engine::Engine {
    let paths = engine.agent_paths().clone();
    let locate: chassis_telemetry::logs::Locate = std::sync::Arc::new(move |p| paths.locate(p));
    for observer in telemetry().observers_for(engine.journal(), locate) {
        engine = engine.with_observer(observer);
    }
    engine
}

/// [`observed`] for an engine about to drive runs of `agent`: the log learns the agent's
/// secrets now, from the agent already loaded, instead of reading and parsing its spec again
/// when the run starts.
pub fn observed_driving(
    engine: chassis_engine::Engine,
    agent: &chassis_engine::Agent,
) -> chassis_engine::Engine {
    let journaled = engine.agent_paths().journaled(&agent.spec_path);
    telemetry().redact_agent_logs(&journaled.display().to_string(), &agent.redactor());
    observed(engine)
}

/// The command line that parses `args`: [`Cli::command`], with its global options global in
/// the invoked subcommand alone when `args` name it before anything but those options.
///
/// Clap copies each global option into every subcommand before it parses, whichever is
/// invoked: five options into thirty-one commands were a quarter of a million instructions of
/// every `chassis run` (copied, then freed). Given to the invoked subcommand only, they parse
/// the same: before the subcommand they are the top level's own, after it the subcommand's
/// copies (global there, so its own subcommands get them), and clap hands the copies' values
/// up to the top level as it does for any global. Anything else (help, a typo, an unknown
/// option first) gets the command unchanged.
fn command_line(args: &[std::ffi::OsString]) -> clap::Command {
    let command = Cli::command();
    let Some(invoked) = invoked_subcommand(&command, args) else {
        return command;
    };
    let mut globals: Option<Vec<clap::Arg>> = Some(
        command
            .get_arguments()
            .filter(|arg| arg.is_global_set())
            .cloned()
            .collect(),
    );
    // `mut_subcommands`, not `mut_subcommand`, which would move the subcommand last.
    command
        .mut_args(|arg| {
            if arg.is_global_set() {
                arg.global(false)
            } else {
                arg
            }
        })
        .mut_subcommands(
            |subcommand| match globals.take_if(|_| subcommand.get_name() == invoked) {
                Some(globals) => subcommand.args(globals),
                None => subcommand,
            },
        )
}

/// The name of `command`'s subcommand that `args` (from the program's name on) invoke, if only
/// its own options, each spelled out (`--db PATH`, `--db=PATH`, `-q`), come before it.
fn invoked_subcommand(command: &clap::Command, args: &[std::ffi::OsString]) -> Option<String> {
    let option =
        |matches: &dyn Fn(&clap::Arg) -> bool| command.get_arguments().find(|a| matches(a));
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        let arg = arg.to_str()?;
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline_value) = match long.split_once('=') {
                Some((name, _)) => (name, true),
                None => (long, false),
            };
            let found = option(&|a| a.get_long() == Some(name))?;
            if found.get_action().takes_values() && !inline_value {
                rest.next()?;
            } else if !found.get_action().takes_values() && inline_value {
                return None;
            }
        } else if let Some(short) = arg.strip_prefix('-') {
            let mut chars = short.chars();
            let (Some(short), None) = (chars.next(), chars.next()) else {
                return None;
            };
            let found = option(&|a| a.get_short() == Some(short))?;
            if found.get_action().takes_values() {
                rest.next()?;
            }
        } else {
            return command
                .find_subcommand(arg)
                .map(|subcommand| subcommand.get_name().to_string());
        }
    }
    None
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut command = command_line(&args);
    let mut matches = command
        .try_get_matches_from_mut(args)
        .unwrap_or_else(|e| e.exit());
    // Kept until the process exits rather than freed: freeing every argument of every
    // subcommand was 90,000 instructions of each `chassis run`, for memory the process is about
    // to give back whole.
    std::mem::forget(command);
    // Asked before the values are taken out of the matches below.
    let log_given = matches.value_source("log") != Some(clap::parser::ValueSource::DefaultValue);
    // `_mut` takes the values instead of copying every match first, as `from_arg_matches` does.
    let cli = match Cli::from_arg_matches_mut(&mut matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    out::set_quiet(cli.quiet);
    // Under -q only errors and alerts are logged (an alert is how a configured notification
    // reaches the log, not a warning to silence), unless a filter was asked for by name.
    let filter = if cli.quiet && !log_given {
        "error,chassis_engine::alerts=warn"
    } else {
        cli.log.as_str()
    };
    let redaction = chassis_telemetry::logs::install(filter, cli.log_format);
    out::redact_stderr(redaction.clone());
    // Services and commands that run many things at once get a thread per core; every other
    // command drives one run (or reads) and gets one thread: no pool to start, and no step
    // handed between threads (a warm engine's figures in BENCHMARKS.md are on one thread too).
    let mut builder = match cli.command {
        Command::Worker(_)
        | Command::Serve(_)
        | Command::MockModel(_)
        | Command::Eval(_)
        | Command::Bench(_) => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let db_given = cli.db.is_some();
    let db = discover::journal(cli.db, std::env::current_dir().ok().as_deref());
    let (metrics_addr, logs) = (cli.metrics_addr, redaction.clone());
    let result = runtime.block_on(async move {
        let telemetry = match chassis_telemetry::Telemetry::start(logs, metrics_addr).await {
            Ok(started) => TELEMETRY.get_or_init(|| started),
            Err(e) => return Err(exit::UsageError(e.to_string()).into()),
        };
        if let Some(addr) = telemetry.metrics_addr() {
            // Printed even under -q: with port 0 it is the only way to learn the address.
            errln!("metrics: http://{addr}/metrics");
        }
        let result = match cli.command {
            Command::Run(args) => commands::run::run(&db, args).await,
            Command::Resume(args) => commands::resume::run(&db, args).await,
            Command::Submit(args) => commands::submit::run(&db, args).await,
            Command::Worker(args) => commands::worker::run(&db, args).await,
            Command::Db(command) => commands::db::run(&db, command).await,
            Command::Runs(args) => commands::runs::run(&db, args).await,
            Command::Show(args) => commands::show::run(&db, args).await,
            Command::Trace(args) => commands::trace::run(&db, args).await,
            Command::Stats(args) => commands::stats::run(&db, args).await,
            Command::Eval(args) => commands::eval::run(&db, args).await,
            Command::Export(args) => commands::export::run(&db, args).await,
            Command::MockModel(args) => commands::mock::run(args).await,
            Command::Approvals(args) => commands::approvals::list(&db, args).await,
            Command::Approve(args) => commands::approvals::approve(&db, args).await,
            Command::Reject(args) => commands::approvals::reject(&db, args).await,
            Command::Resolve(args) => commands::approvals::resolve(&db, args).await,
            Command::Cancel(args) => commands::cancel::run(&db, args).await,
            Command::Send(args) => commands::send::run(&db, args).await,
            Command::Fork(args) => commands::fork::run(&db, args).await,
            Command::Purge(args) => commands::purge::run(&db, args).await,
            Command::Import(args) => commands::import::run(&db, args).await,
            Command::Outbox(args) => commands::outbox::run(&db, args).await,
            Command::Schedule(command) => commands::schedule::run(&db, command).await,
            Command::Serve(args) => commands::serve::run(&db, args).await,
            Command::Tokens(command) => commands::tokens::run(&db, command).await,
            Command::Demo(args) => commands::demo::run(&db, db_given, args).await,
            Command::Bench(args) => commands::bench::run(&db, args).await,
            Command::Init(args) => commands::init::run(args),
            Command::Check(args) => commands::check::run(args).await,
            Command::Completions(args) => commands::completions::run(Cli::command(), args),
        };
        telemetry.shutdown().await;
        result
    });
    let code = match result {
        Ok(code) => code,
        Err(error) => {
            errln!("error: {}", redaction.redact(&format!("{error:#}")));
            exit::code_of(&error)
        }
    };
    match out::finish() {
        Some(failure) => {
            errln!("error: cannot write to stdout: {failure}");
            ExitCode::from(exit::FAILED)
        }
        None => ExitCode::from(code),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand, deferred or not, is built and checked as clap checks a command line
    /// (conflicting names, globals, defaults).
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }

    fn args(line: &str) -> Vec<std::ffi::OsString> {
        line.split(' ').map(Into::into).collect()
    }

    /// [`super::command_line`] parses every command line as the full command does: the same
    /// values from the same sources at every level, or the same error.
    #[test]
    fn globals_given_to_the_invoked_subcommand_alone_parse_the_same() {
        let lines = [
            "chassis run agent.toml --input hi",
            "chassis --db x.db run agent.toml",
            "chassis --db=x.db -q run agent.toml --log debug",
            "chassis run agent.toml --db y.db --quiet --log-format json",
            "chassis --log info runs --log debug",
            "chassis --log-format=json show r-1",
            "chassis db migrate --db z.db",
            "chassis --db x.db db migrate -q",
            "chassis schedule list --log warn",
            "chassis --metrics-addr 127.0.0.1:0 worker",
            "chassis run",
            "chassis run agent.toml --bogus",
            "chassis --log",
            "chassis --quiet=yes run agent.toml",
            "chassis rnu agent.toml",
            "chassis run agent.toml --metrics-addr nonsense",
            "chassis db",
            "chassis help run",
            "chassis -q",
            // Help is an error of clap's: its text must be the same too.
            "chassis run --help",
            "chassis --db x.db run -h",
            "chassis db migrate --help",
            "chassis schedule add -h",
            "chassis -h",
        ];
        for line in lines {
            let args = args(line);
            let full = super::Cli::command().try_get_matches_from(&args);
            let given = super::command_line(&args).try_get_matches_from(&args);
            match (full, given) {
                (Ok(full), Ok(given)) => {
                    assert_eq!(format!("{full:?}"), format!("{given:?}"), "{line}")
                }
                (Err(full), Err(given)) => {
                    assert_eq!(full.kind(), given.kind(), "{line}");
                    assert_eq!(full.to_string(), given.to_string(), "{line}");
                }
                (full, given) => panic!("{line}: {full:?} against {given:?}"),
            }
        }
    }

    /// Only a subcommand named after nothing but spelled-out top-level options gets the
    /// globals alone; help, version, clusters and unknown options get the full command.
    #[test]
    fn the_invoked_subcommand_is_told_only_when_it_is_certain() {
        let command = super::Cli::command();
        let invoked = |line: &str| super::invoked_subcommand(&command, &args(line));
        assert_eq!(invoked("chassis run a.toml").as_deref(), Some("run"));
        assert_eq!(
            invoked("chassis --db x.db -q --log=info mock-model").as_deref(),
            Some("mock-model")
        );
        assert_eq!(invoked("chassis --log run db").as_deref(), Some("db"));
        for line in [
            "chassis",
            "chassis help run",
            "chassis -h run",
            "chassis --version",
            "chassis -qh run",
            "chassis --bogus run",
            "chassis --db",
            "chassis -- run",
            "chassis rnu",
        ] {
            assert_eq!(invoked(line), None, "{line}");
        }
    }
}
