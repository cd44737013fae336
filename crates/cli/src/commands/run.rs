//! `chassis run AGENT.toml --input TEXT` (or `--input -`, `--input-file PATH`, `--var K=V`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chassis_engine::{Agent, StartOptions};

use crate::commands::{open_journal, print_outcome};
use crate::progress::Progress;

// Arguments of `chassis run`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The agent spec (agent.toml)
    agent: PathBuf,
    #[command(flatten)]
    input: crate::commands::input::InputArgs,
    /// Print one JSON object {"run_id", "status", "output"} instead of the answer
    #[arg(long)]
    json: bool,
    /// On a terminal, do not show answers as the model writes them (progress lines only)
    #[arg(long)]
    no_stream: bool,
    /// Only journal the run and print its id, for a worker to drive (as `chassis submit`)
    #[arg(long)]
    detach: bool,
    /// Record every model exchange into this cassette file
    #[arg(long, value_name = "FILE", conflicts_with_all = ["replay", "detach"])]
    record: Option<PathBuf>,
    /// Answer every model call and every tool call from this cassette, offline and without
    /// effects; a request or tool call it does not hold fails the run with a diff, never runs
    #[arg(long, value_name = "FILE", conflicts_with = "detach")]
    replay: Option<PathBuf>,
    /// With --replay: also run these tools for real; only `read_only` (or `none`, the default)
    #[arg(long, value_name = "RISK", requires = "replay", value_parser = chassis_eval::LiveTools::parse)]
    live_tools: Option<chassis_eval::LiveTools>,
    /// Makes a retry safe: a run started before with this key is continued (or its outcome
    /// reported) instead of starting a second one
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
}

/// Posts the webhook notifications of `run_id` (and whatever else is due) for up to a few
/// seconds before the command exits; what is left is delivered by the next worker or server.
pub(crate) async fn deliver_before_exit(engine: &chassis_engine::Engine, run_id: &str) {
    match chassis_engine::Dispatcher::for_engine(engine, chassis_engine::default_owner()) {
        Ok(dispatcher) => {
            dispatcher
                .flush_run(run_id, std::time::Duration::from_secs(5))
                .await
        }
        Err(e) => tracing::warn!(error = %e, "webhooks are left for a worker to deliver"),
    }
}

/// Loads the agent (nothing is journaled if that fails) and drives a new run.
pub(crate) async fn run(db: &Path, args: Args) -> anyhow::Result<u8> {
    let input = args.input.read()?;
    if args.detach {
        return crate::commands::submit::submit(
            db,
            &args.agent,
            &input,
            args.idempotency_key.clone(),
            args.json,
        )
        .await;
    }
    let mut agent = Agent::load(&args.agent).await?.with_vars(input.json_vars());
    let replay = crate::commands::eval::attach_cassette(
        &mut agent,
        args.record.as_deref(),
        args.replay.as_deref(),
        args.live_tools.unwrap_or_default(),
    )?;
    let mut engine = crate::commands::engine(db, open_journal(db).await?)
        .with_interrupt(crate::signals::interrupt_on_signals());
    engine = crate::observed_driving(engine, &agent);
    if !crate::out::quiet() && !args.json {
        engine = engine.with_observer(Arc::new(Progress::streaming(!args.no_stream)));
    }
    let options = StartOptions {
        idempotency_key: args.idempotency_key.clone(),
        ..StartOptions::default()
    };
    let outcome = engine.start_with(&agent, &input.text, options).await?;
    crate::commands::eval::note_unused(replay.as_deref());
    // A run this process created has in the outbox only what this process queued for it (a
    // cancel from elsewhere delivers its own), so with nothing queued there is nothing to wait
    // for: no claim to write, no reader to open.
    if engine.notifications_queued() > 0 {
        deliver_before_exit(&engine, &outcome.run_id).await;
    }
    let code = print_outcome(&outcome, args.json);
    if outcome.interrupted {
        return Ok(crate::signals::report_interrupted(&outcome));
    }
    Ok(code)
}
