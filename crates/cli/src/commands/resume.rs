//! `chassis resume RUN`.

use std::path::Path;
use std::sync::Arc;

use chassis_core::LimitName;

use crate::exit::UsageError;

use crate::commands::{open_existing_journal, print_outcome};
use crate::progress::Progress;

// Arguments of `chassis resume`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The run: its id, a unique prefix of it, or `last` (see `chassis runs`)
    run: String,
    /// Print one JSON object {"run_id", "status", "output"} instead of the answer
    #[arg(long)]
    json: bool,
    /// On a terminal, do not show answers as the model writes them (progress lines only)
    #[arg(long)]
    no_stream: bool,
    /// Raise a limit before continuing, e.g. `--raise max_cost_usd=1.0` or
    /// `--raise max_wall_time=30m` (repeatable)
    #[arg(long, value_name = "LIMIT=VALUE")]
    raise: Vec<String>,
    /// Who raises the limits, for the audit trail (default: the OS user)
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
    /// Do not drive the run here: journal the raises and a request to resume (one write, which
    /// wakes the run for a worker), and return at once
    #[arg(long)]
    detach: bool,
    /// The run's agent is at this path now (the run still continues under its own version);
    /// by default it is where the run journaled it, relative to the journal's project
    #[arg(long, value_name = "PATH", conflicts_with = "detach")]
    agent: Option<std::path::PathBuf>,
}

/// Parses `--raise LIMIT=VALUE` options; errors name the option and the limit.
pub(crate) fn parse_raises(raises: &[String]) -> Result<Vec<(LimitName, f64)>, UsageError> {
    raises
        .iter()
        .map(|raw| {
            let (name, value) = raw.split_once('=').ok_or_else(|| {
                UsageError(format!(
                    "--raise {raw}: expected LIMIT=VALUE, e.g. max_cost_usd=1.0"
                ))
            })?;
            let limit = LimitName::parse(name.trim()).ok_or_else(|| {
                let known: Vec<&str> = LimitName::ALL.iter().map(|l| l.as_str()).collect();
                UsageError(format!(
                    "--raise {raw}: unknown limit `{name}` (known: {})",
                    known.join(", ")
                ))
            })?;
            let value = limit
                .parse_value(value)
                .map_err(|e| UsageError(format!("--raise {raw}: {e}")))?;
            Ok((limit, value))
        })
        .collect()
}

pub(crate) use crate::user::os_user;

/// Says who drives a run another process holds; the error itself names them and until when.
pub(crate) fn explain_held(error: &chassis_engine::Error, run: &str) {
    if let chassis_engine::Error::Store(chassis_store::Error::Held { .. }) = error {
        errln!(
            "hint: only one process drives a run at a time; nothing was recorded. Wait for that \
             driver to stop (`chassis show {run}`), or stop it; its lease then ends by itself"
        );
    }
}

/// Continues the run from its journal; a finished run just reports its outcome.
pub(crate) async fn run(db: &Path, mut args: Args) -> anyhow::Result<u8> {
    let raises = parse_raises(&args.raise)?;
    let journal = open_existing_journal(db).await?;
    args.run = crate::commands::resolve_run(journal.as_ref(), &args.run).await?;
    if args.detach {
        let by = args.by.clone().unwrap_or_else(os_user);
        return crate::commands::submit::wake(db, &args.run, &raises, &by, args.json).await;
    }
    let mut engine =
        crate::commands::engine(db, journal).with_interrupt(crate::signals::interrupt_on_signals());
    if let Some(path) = &args.agent {
        if !path.is_file() {
            return Err(UsageError(format!("--agent {}: no such file", path.display())).into());
        }
        engine = engine.with_agent_path(path);
    }
    crate::commands::learn_secrets(&engine, &args.run).await;
    engine = crate::observed(engine);
    if !crate::out::quiet() && !args.json {
        engine = engine.with_observer(Arc::new(Progress::streaming(!args.no_stream)));
    }
    let by = args.by.clone().unwrap_or_else(os_user);
    let outcome = match engine.raise_and_resume(&args.run, &raises, &by).await {
        Ok(outcome) => outcome,
        Err(e) => {
            explain_held(&e, &args.run);
            return Err(e.into());
        }
    };
    crate::commands::run::deliver_before_exit(&engine, &outcome.run_id).await;
    let code = print_outcome(&outcome, args.json);
    if outcome.interrupted {
        return Ok(crate::signals::report_interrupted(&outcome));
    }
    Ok(code)
}

/// Drives `run` here until it stops (progress on a terminal, answers streamed unless
/// `no_stream`, nothing but the JSON with `json`), then prints its outcome: how
/// `send --resume` and `fork --resume` end, as `chassis resume` does.
pub(crate) async fn drive_here(
    engine: chassis_engine::Engine,
    run: &str,
    json: bool,
    no_stream: bool,
) -> anyhow::Result<u8> {
    let mut engine = crate::observed(engine);
    if !crate::out::quiet() && !json {
        engine = engine.with_observer(Arc::new(Progress::streaming(!no_stream)));
    }
    let outcome = match engine.resume(run).await {
        Ok(outcome) => outcome,
        Err(e) => {
            explain_held(&e, run);
            return Err(e.into());
        }
    };
    crate::commands::run::deliver_before_exit(&engine, &outcome.run_id).await;
    let code = print_outcome(&outcome, json);
    if outcome.interrupted {
        return Ok(crate::signals::report_interrupted(&outcome));
    }
    Ok(code)
}
