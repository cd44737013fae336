//! `chassis demo`: a sample agent against an in-process mock model, on the embedded store.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chassis_engine::{Agent, Engine};
use chassis_mock::{MockConfig, Script};

use crate::commands::mock::DEMO_SCRIPT;
use crate::commands::{open_journal, print_outcome};
use crate::progress::Progress;

const AGENT: &str = include_str!("../demo/agent.toml");
const PROMPT: &str = include_str!("../demo/prompt.md.j2");
const NOTES: &str = include_str!("../demo/incident-2041.md");

/// Arguments of `chassis demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Where to write the demo agent's files
    #[arg(long, default_value = ".chassis/demo", value_name = "DIR")]
    dir: PathBuf,
    /// The request for the agent
    #[arg(
        long,
        short,
        default_value = "Summarize incident 2041 for the morning handover."
    )]
    input: String,
    /// Mock model latency per reply, so each step is visible as it happens
    #[arg(long, default_value = "300ms", value_parser = chassis_core::duration::parse)]
    latency: Duration,
}

/// Writes the demo agent, serves the mock model in-process, runs the agent, explains next steps.
pub async fn run(db: &Path, args: Args) -> anyhow::Result<u8> {
    let script = Script::from_toml_str(DEMO_SCRIPT).context("built-in demo script")?;
    let config = MockConfig {
        latency: args.latency,
        ..MockConfig::default()
    };
    let mock = chassis_mock::start(config, script, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .context("cannot start the demo's mock model on 127.0.0.1")?;
    let spec_path = write_agent(&args.dir, &mock.base_url())?;

    eprintln!(
        "chassis demo: agent {} against a mock model at {}",
        spec_path.display(),
        mock.base_url()
    );
    eprintln!("journal: {}\n", db.display());
    let agent = Agent::load(&spec_path).await?;
    let engine = crate::telemetry()
        .attach(Engine::new(open_journal(db).await?).with_observer(Arc::new(Progress)));
    let outcome = engine.start(&agent, &args.input).await?;
    mock.shutdown().await;

    eprintln!("\n── answer ──");
    let code = print_outcome(&outcome, false);
    let db_flag = if db == Path::new(crate::DEFAULT_DB) {
        String::new()
    } else {
        format!(" --db {}", db.display())
    };
    eprintln!("\nInspect the run:");
    eprintln!(
        "  chassis show {}{db_flag}          # status and every journaled event",
        outcome.run_id
    );
    eprintln!(
        "  chassis show {}{db_flag} --json   # the same, as JSON",
        outcome.run_id
    );
    eprintln!("  chassis runs{db_flag}                  # all runs, newest first");
    Ok(code)
}

/// Writes the demo's spec, prompt and notes under `dir`; returns the spec's path.
fn write_agent(dir: &Path, base_url: &str) -> anyhow::Result<PathBuf> {
    let notes = dir.join("notes");
    std::fs::create_dir_all(&notes)
        .with_context(|| format!("cannot create {}", notes.display()))?;
    let files = [
        (
            dir.join("agent.toml"),
            AGENT.replace("{{BASE_URL}}", base_url),
        ),
        (dir.join("prompt.md.j2"), PROMPT.to_string()),
        (notes.join("incident-2041.md"), NOTES.to_string()),
    ];
    for (path, text) in &files {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(dir.join("agent.toml"))
}
