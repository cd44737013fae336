//! `chassis worker`: drive submitted and woken runs until told to stop.

use std::path::Path;
use std::time::Duration;

use chassis_engine::{Worker, WorkerConfig, WorkerReport, default_worker_name};

use crate::commands::{describe_db, is_postgres, open_journal};
use crate::exit::UsageError;

// Arguments of `chassis worker`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Most runs driven at once
    #[arg(long, default_value_t = 16, value_name = "N")]
    concurrency: usize,
    /// How long a claim lasts without renewal: a dead worker's runs are taken over after this
    #[arg(long, default_value = "30s", value_parser = chassis_core::duration::parse, value_name = "DURATION")]
    lease_ttl: Duration,
    /// How often held leases are renewed (default: a third of --lease-ttl)
    #[arg(long, value_parser = chassis_core::duration::parse, value_name = "DURATION")]
    renew_every: Option<Duration>,
    /// Longest wait between two looks for work; PostgreSQL announces new work sooner
    #[arg(long, default_value = "1s", value_parser = chassis_core::duration::parse, value_name = "DURATION")]
    poll_interval: Duration,
    /// On SIGTERM or Ctrl-C, how long runs in flight may go on before they are given back
    #[arg(long, default_value = "30s", value_parser = parse_optional, value_name = "DURATION")]
    shutdown_grace: OrNever,
    /// The worker's name in leases and logs (default: host-pid-nonce)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// On exit, print what the worker did as one JSON object on stdout
    #[arg(long)]
    json: bool,
}

/// A duration, or none (`0`); a type of its own so clap does not take it for an optional flag.
#[derive(Clone, Copy, Debug)]
struct OrNever(Option<Duration>);

/// A duration such as `30s`, or `0` for none.
fn parse_optional(text: &str) -> Result<OrNever, String> {
    let trimmed = text.trim();
    if trimmed.trim_end_matches(|c: char| c.is_ascii_alphabetic()) == "0" || trimmed == "never" {
        return Ok(OrNever(None));
    }
    chassis_core::duration::parse(trimmed).map(|d| OrNever(Some(d)))
}

/// Claims and drives runs until SIGTERM or Ctrl-C, then shuts down gracefully.
pub(crate) async fn run(db: &Path, args: Args) -> anyhow::Result<u8> {
    if args.concurrency == 0 {
        return Err(UsageError("--concurrency must be at least 1".to_string()).into());
    }
    let renew_every = args.renew_every.unwrap_or(args.lease_ttl / 3);
    if renew_every >= args.lease_ttl {
        return Err(UsageError(format!(
            "--renew-every {renew_every:?} must be shorter than --lease-ttl {:?}",
            args.lease_ttl
        ))
        .into());
    }
    let journal = open_journal(db).await?;
    let mut config = WorkerConfig::new(args.name.unwrap_or_else(default_worker_name));
    config.concurrency = args.concurrency;
    config.lease_ttl = args.lease_ttl;
    config.renew_every = renew_every;
    config.poll_interval = args.poll_interval;
    config.shutdown_grace = args.shutdown_grace.0.unwrap_or(Duration::ZERO);
    let worker = Worker::new(
        crate::observed(crate::commands::engine(db, journal))
            .with_observer(std::sync::Arc::new(Finished)),
        config,
    );
    let name = worker.config().name.clone();
    let grace = worker.config().shutdown_grace;
    noteln!(
        "worker {name}: driving runs from {} ({}; concurrency {}, lease {:?}); SIGTERM or Ctrl-C stops it",
        describe_db(db),
        if is_postgres(db) {
            "PostgreSQL, woken by LISTEN/NOTIFY"
        } else {
            "SQLite, polled"
        },
        args.concurrency,
        args.lease_ttl,
    );
    let report = worker
        .run(async {
            let signal = stop_signal().await;
            noteln!(
                "worker {name}: {signal}: claiming no more runs; runs in flight have up to {grace:?} to settle"
            );
        })
        .await;
    noteln!("worker {name}: stopped: {}", summary(&report));
    if args.json {
        outln!(
            "{}",
            serde_json::json!({
                "worker": name,
                "claimed": report.claimed,
                "completed": report.completed,
                "failed": report.failed,
                "cancelled": report.cancelled,
                "waiting": report.waiting,
                "paused": report.paused,
                "lease_lost": report.lease_lost,
                "errors": report.errors,
                "released_at_shutdown": report.released_at_shutdown,
            })
        );
    }
    Ok(crate::exit::COMPLETED)
}

/// Prints a line on stderr for each run that leaves the worker's hands (it ended, or it waits
/// for a human or is paused): id, agent, status, steps, cost, time. `-q` silences it.
struct Finished;

impl chassis_engine::Observer for Finished {
    fn on_event(&self, run_id: &str, state: &chassis_core::RunState, event: &chassis_core::Event) {
        // `RunStatus::after` names every event: a run leaves the worker's hands exactly when
        // an event moves it to a status other than running.
        let status = match chassis_core::RunStatus::after(event) {
            None | Some(chassis_core::RunStatus::Running) => return,
            Some(status) => status.as_str(),
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        noteln!(
            "{run_id}  {}  {status}  {} step(s)  {}  {:.1}s",
            state.agent,
            state.steps(),
            crate::progress::cost(state.cost_usd(), state.unpriced_calls),
            state.wall_ms(now_ms) as f64 / 1000.0,
        );
    }
}

/// The report as one line.
fn summary(report: &WorkerReport) -> String {
    format!(
        "{} runs claimed: {} completed, {} failed, {} cancelled, {} waiting, {} paused; {} leases \
         lost, {} errors; {} runs unfinished at the deadline given back (they stay runnable)",
        report.claimed,
        report.completed,
        report.failed,
        report.cancelled,
        report.waiting,
        report.paused,
        report.lease_lost,
        report.errors,
        report.released_at_shutdown,
    )
}

/// Resolves on the first SIGTERM or Ctrl-C (SIGINT), naming it.
async fn stop_signal() -> &'static str {
    crate::signals::next_signal().await
}
