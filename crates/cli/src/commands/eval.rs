//! `chassis eval SUITE.toml`: run a suite's cases as real runs, report, gate on a baseline.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use chassis_eval::suite::Cassettes;
use chassis_eval::{CaseReport, Mode, Options, Suite, baseline, fixtures};

use crate::commands::{open_existing_journal, open_journal};
use crate::exit::UsageError;

// Arguments of `chassis eval`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The suite file (suite.toml)
    #[arg(required_unless_present = "from_runs", value_name = "SUITE")]
    suite: Option<PathBuf>,
    /// Answer every model call and every tool call from the cases' cassettes: offline,
    /// deterministic and without effects (a call a cassette lacks fails its case, never runs)
    #[arg(long, conflicts_with = "record")]
    replay: bool,
    /// With --replay: also run these tools for real; only `read_only` (or `none`, the default)
    #[arg(long, value_name = "RISK", requires = "replay", value_parser = chassis_eval::LiveTools::parse)]
    live_tools: Option<chassis_eval::LiveTools>,
    /// Call the models and record each case's exchanges into its cassette
    #[arg(long)]
    record: bool,
    /// Directory of the cases' cassettes (default: the suite's `cassettes`)
    #[arg(long, value_name = "DIR")]
    cassettes: Option<PathBuf>,
    /// Run only this case (repeatable)
    #[arg(long = "case", value_name = "NAME")]
    cases: Vec<String>,
    /// Cases run at once (default: the suite's concurrency, or 4)
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// Print the report as JSON instead of a table
    #[arg(long)]
    json: bool,
    /// Also write the report as JUnit XML, for CI
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Compare with a saved report; exit 1 on a regression beyond the suite's `[gate]`
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Save this report as a baseline
    #[arg(long, value_name = "FILE")]
    save_baseline: Option<PathBuf>,
    /// Build the cases from journaled runs of --agent (their cassettes are the runs' own)
    #[arg(long, requires = "agent", conflicts_with = "suite")]
    from_runs: bool,
    /// With --from-runs: the agent whose runs become cases
    #[arg(long, value_name = "NAME", requires = "from_runs")]
    agent: Option<String>,
    /// With --from-runs: how many of its latest ended runs
    #[arg(long, value_name = "N", default_value_t = 10, requires = "from_runs")]
    last: usize,
    /// With --from-runs: write DIR/suite.toml and DIR/cassettes/ instead of running the cases
    #[arg(long, value_name = "DIR", requires = "from_runs")]
    write: Option<PathBuf>,
}

/// Runs the suite and prints its report; exit 0 when every case passed (or, with --baseline,
/// when nothing regressed), 1 otherwise, 2 for a bad suite or bad usage.
pub(crate) async fn run(db: &Path, args: Args) -> anyhow::Result<u8> {
    let mode = match (args.replay, args.record) {
        (true, _) => Mode::Replay,
        (_, true) => Mode::Record,
        _ => Mode::Live,
    };
    let mut suite = if args.from_runs {
        let agent = args.agent.as_deref().unwrap_or_default();
        let journal = open_existing_journal(db).await?;
        let paths = crate::commands::agent_paths(db);
        let fixtures = fixtures::from_runs_locating(journal.as_ref(), agent, args.last, &paths)
            .await
            .map_err(|e| match e {
                fixtures::Error::NoRuns { .. } => UsageError(format!("--from-runs: {e}")).into(),
                other => anyhow::Error::from(other),
            })?;
        if let Some(dir) = &args.write {
            let path = fixtures.write(dir)?;
            noteln!(
                "wrote {} case(s) to {} (run them with `chassis eval {} --replay`)",
                fixtures.suite.cases.len(),
                path.display(),
                path.display()
            );
            return Ok(crate::exit::COMPLETED);
        }
        if mode == Mode::Record && args.cassettes.is_none() {
            return Err(UsageError(
                "--from-runs --record: name a directory to record into with --cassettes".into(),
            )
            .into());
        }
        let name = format!("runs-of-{agent}");
        let mut suite = fixtures
            .suite
            .validate(Path::new("."), &name)
            .map_err(|e| anyhow::anyhow!("--from-runs: {e}"))?;
        suite.cassettes = Cassettes::Memory(fixtures.cassettes);
        suite
    } else {
        let path = args.suite.as_deref().unwrap_or(Path::new("suite.toml"));
        Suite::load(path).map_err(|e| UsageError(e.to_string()))?
    };
    if let Some(dir) = &args.cassettes {
        suite.cassettes = Cassettes::Dir(dir.clone());
    }
    if !args.cases.is_empty() {
        if let Some(unknown) = args
            .cases
            .iter()
            .find(|name| !suite.cases.iter().any(|c| &c.name == *name))
        {
            let known: Vec<&str> = suite.cases.iter().map(|c| c.name.as_str()).collect();
            return Err(UsageError(format!(
                "--case {unknown}: no such case in suite {} (cases: {})",
                suite.name,
                known.join(", ")
            ))
            .into());
        }
        suite.cases.retain(|c| args.cases.contains(&c.name));
    }
    if args.concurrency == Some(0) {
        return Err(UsageError("--concurrency: must be at least 1".into()).into());
    }
    let baseline = match &args.baseline {
        Some(path) => Some(baseline::load(path).map_err(|e| UsageError(e.to_string()))?),
        None => None,
    };

    let engine = Arc::new(crate::commands::engine(db, open_journal(db).await?));
    let on_case: Option<chassis_eval::OnCase> = (!crate::out::quiet()).then(|| {
        Arc::new(|case: &CaseReport| {
            let mark = match (&case.error, case.passed) {
                (Some(_), _) => "error",
                (None, true) => "pass",
                (None, false) => "FAIL",
            };
            noteln!(
                "eval: {mark:<5} {} {}",
                case.name,
                case.run_id.as_deref().unwrap_or("")
            );
        }) as chassis_eval::OnCase
    });
    noteln!(
        "eval: suite {} ({} case(s), {}) on {}",
        suite.name,
        suite.cases.len(),
        mode.as_str(),
        crate::commands::describe_db(db)
    );
    let gate = suite.gate.clone();
    let options = Options {
        mode,
        concurrency: args.concurrency,
        live_tools: args.live_tools.unwrap_or_default(),
    };
    let report = chassis_eval::run(Arc::new(suite), engine, &options, on_case).await;

    if args.json {
        out!("{}", report.to_json());
    } else {
        out!("{}", report.table());
    }
    if let Some(path) = &args.junit {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(path, report.junit())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.save_baseline {
        baseline::save(&report, path)?;
        noteln!("eval: saved the report as a baseline at {}", path.display());
    }
    let ok = match &baseline {
        Some(old) => {
            let regressions = baseline::compare(old, &report, &gate);
            for regression in &regressions {
                errln!("eval: regression: {regression}");
            }
            if regressions.is_empty() {
                noteln!("eval: no regression against the baseline");
            }
            regressions.is_empty()
        }
        None => report.all_passed(),
    };
    Ok(if ok {
        crate::exit::COMPLETED
    } else {
        crate::exit::FAILED
    })
}

/// `chassis run --record FILE` / `--replay FILE`: wraps the agent's models and tools in a
/// cassette; returns the replay, when replaying, so unused exchanges and tool calls it lacked
/// can be reported after the run.
pub(crate) fn attach_cassette(
    agent: &mut chassis_engine::Agent,
    record: Option<&Path>,
    replay: Option<&Path>,
    live: chassis_eval::LiveTools,
) -> anyhow::Result<Option<Arc<chassis_eval::cassette::Replay>>> {
    if let Some(path) = record {
        chassis_eval::record_into(agent, path)?;
    }
    match replay {
        Some(path) => Ok(Some(
            chassis_eval::replay_from(agent, path, live).map_err(|e| UsageError(e.to_string()))?,
        )),
        None => Ok(None),
    }
}

/// Says on stderr how many recorded exchanges a replay never served (the run took another
/// path than the recording, or stopped earlier).
pub(crate) fn note_unused(replay: Option<&chassis_eval::cassette::Replay>) {
    if let Some(divergence) = replay.and_then(|r| r.tool_divergence()) {
        errln!("replay: {divergence}");
    }
    if let Some(replay) = replay
        && replay.unused() > 0
    {
        noteln!(
            "note: {} recorded exchange(s) of the cassette were not used",
            replay.unused()
        );
    }
}
