//! The approvals inbox: `chassis approvals`, `approve`, `reject`, `resolve`.
//!
//! Each decision is journaled (who, when, note) from this process; the run continues with
//! `chassis resume RUN`, with `--resume` here, or on a worker, which the decision wakes.

use std::path::Path;
use std::sync::Arc;

use chassis_core::LimitName;
use chassis_engine::{Engine, Resolution};

use crate::commands::resume::os_user;
use crate::commands::{open_existing_journal, print_outcome};
use crate::exit::UsageError;
use crate::progress::Progress;

/// Arguments of `chassis approvals`.
#[derive(clap::Args)]
pub struct ListArgs {
    /// Print a JSON array instead of a table
    #[arg(long)]
    json: bool,
}

/// Arguments of `chassis approve`.
#[derive(clap::Args)]
pub struct ApproveArgs {
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
}

/// Arguments of `chassis reject`.
#[derive(clap::Args)]
pub struct RejectArgs {
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
}

/// Arguments of `chassis resolve`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("outcome").required(true).args(["succeeded", "failed", "retry"])))]
pub struct ResolveArgs {
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
}

/// Lists what waits for a human across all runs, applying passed timeouts first.
pub async fn list(db: &Path, args: ListArgs) -> anyhow::Result<u8> {
    let engine = Engine::new(open_existing_journal(db).await?);
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
        let flag = if item.escalated { "  [ESCALATED]" } else { "" };
        outln!(
            "{}  {}  {} {} ({}){flag}",
            item.run_id,
            item.call_id,
            item.kind,
            item.tool,
            item.risk.as_deref().unwrap_or("-")
        );
        outln!("    agent     {}", item.agent);
        outln!("    arguments {}", item.args);
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
        let verbs = match item.kind.as_str() {
            "outcome_unknown" => format!(
                "chassis resolve {} {} --succeeded | --failed | --retry",
                item.run_id, item.call_id
            ),
            "limit" => format!(
                "chassis approve {} limit --raise {}=VALUE   or   chassis reject {} limit --reason TEXT",
                item.run_id, item.tool, item.run_id
            ),
            _ => format!(
                "chassis approve {} {}   or   chassis reject {} {} --reason TEXT",
                item.run_id, item.call_id, item.run_id, item.call_id
            ),
        };
        outln!("    decide    {verbs}\n");
    }
    Ok(crate::exit::COMPLETED)
}

/// Approves a call (optionally with edited arguments) or raises an escalated limit.
pub async fn approve(db: &Path, mut args: ApproveArgs) -> anyhow::Result<u8> {
    let engine = Engine::new(open_existing_journal(db).await?);
    args.run = crate::commands::resolve_run(engine.journal().as_ref(), &args.run).await?;
    let by = args.by.clone().unwrap_or_else(os_user);
    if args.call == "limit" {
        if args.raise.is_empty() {
            return Err(UsageError(
                "approving a limit request needs --raise LIMIT=VALUE".to_string(),
            )
            .into());
        }
        let raises = crate::commands::resume::parse_raises(&args.raise)?;
        let state = engine.load(&args.run).await?;
        if state.status.is_terminal() {
            return Err(
                UsageError(format!("run {} has ended ({})", args.run, state.status)).into(),
            );
        }
        let Some(limit) = state.limit_request else {
            return Err(
                UsageError(format!("run {} has no pending limit request", args.run)).into(),
            );
        };
        if !raises.iter().any(|(l, _)| *l == limit) {
            return Err(UsageError(format!(
                "run {} waits on {limit}; raise that one (--raise {limit}=VALUE)",
                args.run
            ))
            .into());
        }
        return finish(engine, &args.run, &raises, &by, args.resume).await;
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
    finish(engine, &args.run, &[], &by, args.resume).await
}

/// Rejects a call (the model gets the reason) or an escalated limit (the run fails).
pub async fn reject(db: &Path, mut args: RejectArgs) -> anyhow::Result<u8> {
    let engine = Engine::new(open_existing_journal(db).await?);
    args.run = crate::commands::resolve_run(engine.journal().as_ref(), &args.run).await?;
    let by = args.by.clone().unwrap_or_else(os_user);
    if args.call == "limit" {
        engine.reject_limit(&args.run, &by, &args.reason).await?;
        noteln!(
            "rejected the limit request of run {}; it has failed",
            args.run
        );
        return Ok(crate::exit::FAILED);
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
    finish(engine, &args.run, &[], &by, args.resume).await
}

/// Settles a call whose outcome is unknown.
pub async fn resolve(db: &Path, mut args: ResolveArgs) -> anyhow::Result<u8> {
    let engine = Engine::new(open_existing_journal(db).await?);
    args.run = crate::commands::resolve_run(engine.journal().as_ref(), &args.run).await?;
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
    finish(engine, &args.run, &[], &by, args.resume).await
}

/// After a decision: continue the run here with `--resume`, or say how to.
async fn finish(
    engine: Engine,
    run: &str,
    raises: &[(LimitName, f64)],
    by: &str,
    resume: bool,
) -> anyhow::Result<u8> {
    if resume {
        let engine = engine.with_observer(Arc::new(Progress));
        let outcome = engine.raise_and_resume(run, raises, by).await?;
        return Ok(print_outcome(&outcome, false));
    }
    if !raises.is_empty() {
        let state = engine.load(run).await?;
        let events: Vec<chassis_core::Event> = raises
            .iter()
            .map(|&(limit, value)| chassis_core::Event::LimitRaised {
                limit,
                value,
                by: by.to_string(),
            })
            .collect();
        engine.journal().append(run, state.seq, &events).await?;
        engine
            .journal()
            .wake(run, chassis_engine::now_ms() as i64)
            .await?;
    }
    noteln!("continue it with `chassis resume {run}` (a worker picks it up by itself)");
    Ok(crate::exit::WAITING)
}
