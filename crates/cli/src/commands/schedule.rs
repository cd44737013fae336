//! `chassis schedule add|list|remove`: agents started by cron, fired by workers and servers.

use std::path::{Path, PathBuf};

use chassis_engine::{Agent, CatchUp, NewSchedule, Overlap};

use crate::commands::{open_existing_journal, open_journal, open_reading_journal};
use crate::exit::UsageError;

/// `chassis schedule` subcommands.
#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Start AGENT on a cron schedule; any `chassis worker` or `chassis serve` on this journal
    /// fires each slot once
    Add(AddArgs),
    /// List schedules with their next slot
    List(ListArgs),
    /// Remove a schedule (the runs it started stay)
    Remove(RemoveArgs),
}

// Arguments of `chassis schedule add`.
#[derive(clap::Args)]
pub(crate) struct AddArgs {
    /// The agent's spec (agent.toml)
    agent: PathBuf,
    /// When: minute hour day-of-month month day-of-week, e.g. "0 6 * * MON-FRI" (names,
    /// ranges, steps, lists; @hourly, @daily, @weekly, @monthly, @yearly)
    #[arg(long)]
    cron: String,
    /// Each run's input
    #[arg(long)]
    input: String,
    /// The IANA time zone the cron is read in, e.g. Europe/Berlin
    #[arg(long, default_value = "UTC")]
    timezone: String,
    /// While the previous run goes on, a slot is skipped, queued (fires when it ends) or
    /// allowed (fires anyway)
    #[arg(long, default_value = "skip", value_name = "skip|queue|allow")]
    overlap: String,
    /// Slots missed while no worker ran: none fired, the last one, or all of them
    #[arg(long, default_value = "last", value_name = "none|last|all")]
    catch_up: String,
    /// Count slots from T instead of now (a backfill by --catch-up): a duration ago (`3d`) or
    /// a UTC date or time
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Print the schedule as JSON
    #[arg(long)]
    json: bool,
}

// Arguments of `chassis schedule list`.
#[derive(clap::Args)]
pub(crate) struct ListArgs {
    /// Print a JSON array instead of a table
    #[arg(long)]
    json: bool,
}

// Arguments of `chassis schedule remove`.
#[derive(clap::Args)]
pub(crate) struct RemoveArgs {
    /// The schedule's id (`sch_…`)
    schedule: String,
}

/// Runs a `chassis schedule` subcommand.
pub(crate) async fn run(db: &Path, command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Add(args) => add(db, args).await,
        Command::List(args) => list(db, args).await,
        Command::Remove(args) => remove(db, args).await,
    }
}

async fn add(db: &Path, args: AddArgs) -> anyhow::Result<u8> {
    let overlap = Overlap::parse(&args.overlap).ok_or_else(|| {
        UsageError(format!(
            "--overlap: `{}` is not skip, queue or allow",
            args.overlap
        ))
    })?;
    let catch_up = CatchUp::parse(&args.catch_up).ok_or_else(|| {
        UsageError(format!(
            "--catch-up: `{}` is not none, last or all",
            args.catch_up
        ))
    })?;
    chassis_core::cron::Cron::parse(&args.cron).map_err(|e| UsageError(format!("--cron: {e}")))?;
    chassis_engine::time_zone(&args.timezone)
        .map_err(|e| UsageError(format!("--timezone: {e}")))?;
    let now = chassis_telemetry::time::now_ms();
    let since_ms = match &args.since {
        None => None,
        Some(text) => Some(crate::commands::stats::since(text, now)?),
    };
    let agent = Agent::load(&args.agent).await?;
    let engine = crate::commands::engine(db, open_journal(db).await?);
    let schedule = engine
        .add_schedule(
            &agent,
            NewSchedule {
                cron: args.cron,
                timezone: args.timezone,
                input: args.input,
                overlap,
                catch_up,
                since_ms: since_ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
            },
        )
        .await?;
    if args.json {
        outln!("{}", serde_json::to_string(&schedule)?);
    } else {
        outln!("{}", schedule.schedule_id);
        noteln!(
            "next slot {} (UTC); a `chassis worker` or `chassis serve` on this journal fires it",
            chassis_telemetry::time::rfc3339_millis(
                u64::try_from(schedule.next_slot_ms).unwrap_or(0)
            )
        );
    }
    Ok(crate::exit::COMPLETED)
}

async fn list(db: &Path, args: ListArgs) -> anyhow::Result<u8> {
    let engine = crate::commands::engine(db, open_reading_journal(db).await?);
    let schedules = engine.schedules().await?;
    if args.json {
        outln!("{}", serde_json::to_string(&schedules)?);
        return Ok(crate::exit::COMPLETED);
    }
    if schedules.is_empty() {
        noteln!("no schedules (add one with `chassis schedule add AGENT --cron … --input …`)");
        return Ok(crate::exit::COMPLETED);
    }
    outln!(
        "{:<30}  {:<16}  {:<18}  {:<14}  {:<6}  {:<5}  {:<24}  LAST RUN",
        "SCHEDULE",
        "AGENT",
        "CRON",
        "TIMEZONE",
        "OVERLAP",
        "CATCH",
        "NEXT SLOT (UTC)"
    );
    for s in &schedules {
        outln!(
            "{:<30}  {:<16}  {:<18}  {:<14}  {:<6}  {:<5}  {:<24}  {}",
            s.schedule_id,
            s.agent,
            s.cron,
            s.timezone,
            s.overlap,
            s.catch_up,
            chassis_telemetry::time::rfc3339_millis(u64::try_from(s.next_slot_ms).unwrap_or(0)),
            s.last_run_id.as_deref().unwrap_or("-")
        );
    }
    Ok(crate::exit::COMPLETED)
}

async fn remove(db: &Path, args: RemoveArgs) -> anyhow::Result<u8> {
    let engine = crate::commands::engine(db, open_existing_journal(db).await?);
    if !engine.remove_schedule(&args.schedule).await? {
        return Err(UsageError(format!("no schedule {}", args.schedule)).into());
    }
    noteln!("removed {}", args.schedule);
    Ok(crate::exit::COMPLETED)
}
