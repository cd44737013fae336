//! The approvals inbox: `chassis approvals`, `approve`, `reject`, `resolve`.
//!
//! Each decision is journaled (who, when, note) with the run's wake-up in one write, from this
//! process, whoever drives the run; the run continues with `chassis resume RUN`, with
//! `--resume` here, or on a worker, which the decision wakes. Listing never writes.

use std::path::Path;
use std::sync::Arc;

use chassis_engine::{Cancelled, Engine, Resolution};

use crate::commands::resume::os_user;
use crate::commands::{open_existing_journal, print_outcome};
use crate::exit::UsageError;
use crate::progress::Progress;

// Arguments of `chassis approvals`.
#[derive(clap::Args)]
pub(crate) struct ListArgs {
    /// Print a JSON array instead of a table
    #[arg(long)]
    json: bool,
}

// Arguments of `chassis approve`.
#[derive(clap::Args)]
pub(crate) struct ApproveArgs {
    /// The run: its id, a unique prefix of it, or `last`
    run: String,
    /// The call id (see `chassis approvals`), or `limit` for an escalated limit
    call: String,
    /// Run the call with these arguments instead (JSON, checked against the tool's schema)
    #[arg(long, value_name = "JSON")]
    args: Option<String>,
    /// For a limit request: the raised value, e.g. `--raise max_cost_usd=2.0` (repeatable)
    #[arg(long, value_name = "LIMIT=VALUE")]
    raise: Vec<String>,
    /// Who approves (default: the OS user)
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
    /// A note for the audit trail
    #[arg(long)]
    note: Option<String>,
    /// Continue the run at once, in this process
    #[arg(long)]
    resume: bool,
    /// Print one JSON object instead of lines: the run after the decision and whether it was
    /// woken (`{"run": …, "woken": …}`), or, with --resume, the run's outcome as `chassis run --json`
    #[arg(long)]
    json: bool,
}

// Arguments of `chassis reject`.
#[derive(clap::Args)]
pub(crate) struct RejectArgs {
    /// The run: its id, a unique prefix of it, or `last`
    run: String,
    /// The call id, or `limit` for an escalated limit
    call: String,
    /// Why: the model gets it as the tool's result
    #[arg(long)]
    reason: String,
    /// Who rejects (default: the OS user)
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
    /// A note for the audit trail
    #[arg(long)]
    note: Option<String>,
    /// Continue the run at once, in this process
    #[arg(long)]
    resume: bool,
    /// Print one JSON object instead of lines: the run after the decision and whether it was
    /// woken (`{"run": …, "woken": …}`), or, with --resume, the run's outcome as `chassis run --json`
    #[arg(long)]
    json: bool,
}

// Arguments of `chassis resolve`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("outcome").required(true).args(["succeeded", "failed", "retry"])))]
pub(crate) struct ResolveArgs {
    /// The run: its id, a unique prefix of it, or `last`
    run: String,
    /// The call whose outcome is unknown
    call: String,
    /// It happened
    #[arg(long)]
    succeeded: bool,
    /// With --succeeded: the call's result, as the model should see it
    #[arg(long, requires = "succeeded", value_name = "JSON")]
    result: Option<String>,
    /// It did not happen
    #[arg(long)]
    failed: bool,
    /// With --failed: why, as the model should see it
    #[arg(long, requires = "failed")]
    reason: Option<String>,
    /// Run it again, with the same idempotency key
    #[arg(long)]
    retry: bool,
    /// Who settles it (default: the OS user)
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
    /// A note for the audit trail
    #[arg(long)]
    note: Option<String>,
    /// Continue the run at once, in this process
    #[arg(long)]
    resume: bool,
    /// Print one JSON object instead of lines: the run after the decision and whether it was
    /// woken (`{"run": …, "woken": …}`), or, with --resume, the run's outcome as `chassis run --json`
    #[arg(long)]
    json: bool,
}

/// Lists what waits for a human across all runs (reading only).
pub(crate) async fn list(db: &Path, args: ListArgs) -> anyhow::Result<u8> {
    let engine = crate::commands::engine(db, crate::commands::open_reading_journal(db).await?);
    let inbox = engine.inbox().await?;
    if args.json {
        outln!("{}", serde_json::to_string(&inbox)?);
        return Ok(crate::exit::COMPLETED);
    }
    if inbox.is_empty() {
        outln!("nothing waits for a human");
        return Ok(crate::exit::COMPLETED);
    }
    for item in &inbox {
        let flag = match (item.escalated, item.expired) {
            (true, _) => "  [ESCALATED]",
            (false, true) => "  [EXPIRED: its timeout applies when the run is next driven]",
            (false, false) => "",
        };
        match item.kind.as_str() {
            "approval" | "outcome_unknown" => outln!(
                "{}  {}  {} {} ({}){flag}",
                item.run_id,
                item.call_id,
                item.kind,
                item.tool,
                item.risk.as_deref().unwrap_or("-")
            ),
            "limit" | "paused" => outln!("{}  {} {}", item.run_id, item.kind, item.tool),
            _ => outln!("{}  {}", item.run_id, item.kind),
        }
        outln!("    agent     {}", item.agent);
        if !item.args.is_null() {
            outln!("    arguments {}", item.args);
        }
        if let Some(key) = &item.idempotency_key {
            outln!("    key       {key}");
        }
        if let Some(reason) = &item.reason {
            outln!(
                "    reason    {}",
                crate::progress::clip(reason, 200, crate::style::Style::stdout())
            );
        }
        for line in &item.context {
            outln!(
                "    | {}",
                crate::progress::clip(line, 160, crate::style::Style::stdout())
            );
        }
        let (run, call) = (&item.run_id, &item.call_id);
        let verbs = match item.kind.as_str() {
            "outcome_unknown" => {
                format!("chassis resolve {run} {call} --succeeded | --failed | --retry")
            }
            "limit" => format!(
                "chassis approve {run} limit --raise {}=VALUE   or   chassis reject {run} limit --reason TEXT",
                item.tool
            ),
            "paused" => format!("chassis resume {run} --raise {}=VALUE", item.tool),
            "interrupted" | "ready" => {
                format!("chassis resume {run}   (or `--detach` to hand it to a worker)")
            }
            _ => format!(
                "chassis approve {run} {call}   or   chassis reject {run} {call} --reason TEXT"
            ),
        };
        outln!("    decide    {verbs}\n");
    }
    Ok(crate::exit::COMPLETED)
}

/// Approves a call (optionally with edited arguments) or raises an escalated limit.
pub(crate) async fn approve(db: &Path, mut args: ApproveArgs) -> anyhow::Result<u8> {
    let engine = crate::commands::engine(db, open_existing_journal(db).await?);
    args.run = crate::commands::resolve_run(engine.journal().as_ref(), &args.run).await?;
    crate::commands::learn_secrets(&engine, &args.run).await;
    let by = args.by.clone().unwrap_or_else(os_user);
    if args.call == "limit" {
        if args.raise.is_empty() {
            return Err(UsageError(
                "approving a limit request needs --raise LIMIT=VALUE".to_string(),
            )
            .into());
        }
        let raises = crate::commands::resume::parse_raises(&args.raise)?;
        engine.approve_limit(&args.run, &raises, &by).await?;
        noteln!("raised the limit of run {} (by {by})", args.run);
        return finish(engine, &args.run, args.resume, args.json).await;
    } else if !args.raise.is_empty() {
        return Err(UsageError("--raise only goes with the call id `limit`".to_string()).into());
    }
    engine
        .decide_approval(
            &args.run,
            &args.call,
            true,
            args.args.as_deref(),
            &by,
            args.note,
            None,
        )
        .await?;
    noteln!("approved {} in run {} (by {by})", args.call, args.run);
    finish(engine, &args.run, args.resume, args.json).await
}

/// Rejects a call (the model gets the reason) or an escalated limit (the run fails).
pub(crate) async fn reject(db: &Path, mut args: RejectArgs) -> anyhow::Result<u8> {
    let engine = crate::commands::engine(db, open_existing_journal(db).await?);
    args.run = crate::commands::resolve_run(engine.journal().as_ref(), &args.run).await?;
    crate::commands::learn_secrets(&engine, &args.run).await;
    let by = args.by.clone().unwrap_or_else(os_user);
    if args.call == "limit" {
        let refused = engine.refuse_limit(&args.run, &by, &args.reason).await?;
        if args.json {
            outln!(
                "{}",
                serde_json::to_string(&engine.decided(&args.run).await?)?
            );
        }
        return match refused {
            Cancelled::Ended(outcome) => {
                noteln!(
                    "rejected the limit request of run {}; it has {}",
                    args.run,
                    outcome.status
                );
                Ok(crate::exit::of_status(outcome.status))
            }
            Cancelled::Requested { driver } => {
                noteln!(
                    "rejected the limit request of run {}; its driver ({driver}) fails it",
                    args.run
                );
                Ok(crate::exit::FAILED)
            }
        };
    }
    engine
        .decide_approval(
            &args.run,
            &args.call,
            false,
            None,
            &by,
            args.note,
            Some(args.reason),
        )
        .await?;
    noteln!("rejected {} in run {} (by {by})", args.call, args.run);
    finish(engine, &args.run, args.resume, args.json).await
}

/// Settles a call whose outcome is unknown.
pub(crate) async fn resolve(db: &Path, mut args: ResolveArgs) -> anyhow::Result<u8> {
    let engine = crate::commands::engine(db, open_existing_journal(db).await?);
    args.run = crate::commands::resolve_run(engine.journal().as_ref(), &args.run).await?;
    crate::commands::learn_secrets(&engine, &args.run).await;
    let by = args.by.clone().unwrap_or_else(os_user);
    let resolution = if args.succeeded {
        Resolution::Succeeded {
            result: args.result.clone(),
        }
    } else if args.failed {
        Resolution::Failed {
            reason: args.reason.clone(),
        }
    } else {
        Resolution::Retry
    };
    engine
        .resolve_outcome(&args.run, &args.call, resolution, &by, args.note)
        .await?;
    noteln!("resolved {} in run {} (by {by})", args.call, args.run);
    finish(engine, &args.run, args.resume, args.json).await
}

/// After a decision: continue the run here with `--resume`, or say how to.
async fn finish(engine: Engine, run: &str, resume: bool, json: bool) -> anyhow::Result<u8> {
    if resume {
        let engine = crate::observed(engine)
            .with_observer(Arc::new(Progress::new()))
            .with_interrupt(crate::signals::interrupt_on_signals());
        let outcome = match engine.resume(run).await {
            Ok(outcome) => outcome,
            Err(e) => {
                crate::commands::resume::explain_held(&e, run);
                return Err(e.into());
            }
        };
        crate::commands::run::deliver_before_exit(&engine, &outcome.run_id).await;
        let code = print_outcome(&outcome, json);
        if outcome.interrupted {
            return Ok(crate::signals::report_interrupted(&outcome));
        }
        return Ok(code);
    }
    if json {
        print_decided(&engine, run).await?;
    } else {
        noteln!("continue it with `chassis resume {run}` (a worker picks it up by itself)");
    }
    Ok(crate::exit::WAITING)
}

/// Prints the run after a decision as `POST …/approve` answers it: `{"run", "woken"}`.
async fn print_decided(engine: &Engine, run: &str) -> anyhow::Result<()> {
    let decided = engine.decided(run).await?;
    let answer = chassis_server::api::Decided {
        run: decided.run.into(),
        woken: decided.woken,
    };
    outln!("{}", serde_json::to_string(&answer)?);
    Ok(())
}
