//! `chassis demo`: a sample agent against an in-process mock model, on the embedded store.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chassis_engine::Agent;
use chassis_mock::{MockConfig, Script};

use crate::commands::mock::DEMO_SCRIPT;
use crate::commands::{open_journal, print_outcome};
use crate::progress::Progress;

const AGENT: &str = include_str!("../demo/agent.toml");
const PROMPT: &str = include_str!("../demo/prompt.md.j2");
const NOTES: &str = include_str!("../demo/incident-2041.md");

// Arguments of `chassis demo`.
#[derive(clap::Args)]
pub(crate) struct Args {
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

/// The port the demo's mock model takes when it is free, so that the agent it writes can be
/// run again later against `chassis mock-model --port MOCK_PORT` (another one when it is not).
const MOCK_PORT: u16 = 48110;

/// Writes the demo agent, serves the mock model in-process, runs the agent, explains next steps.
/// `db_given`: the journal was named by `--db` or `CHASSIS_DB`, so the hints name it too.
pub(crate) async fn run(db: &Path, db_given: bool, args: Args) -> anyhow::Result<u8> {
    let script = Script::from_toml_str(DEMO_SCRIPT).context("built-in demo script")?;
    let config = MockConfig {
        latency: args.latency,
        ..MockConfig::default()
    };
    let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let mock = match chassis_mock::start(config.clone(), script.clone(), loopback(MOCK_PORT)).await
    {
        Ok(mock) => mock,
        Err(_) => chassis_mock::start(config, script, loopback(0))
            .await
            .context("cannot start the demo's mock model on 127.0.0.1")?,
    };
    let base_url = mock.base_url();
    let spec_path = write_agent(&args.dir, &base_url)?;

    noteln!(
        "chassis demo: agent {} against a mock model at {}",
        spec_path.display(),
        mock.base_url()
    );
    noteln!("journal: {}\n", db.display());
    let agent = Agent::load(&spec_path).await?;
    let engine = crate::observed_driving(
        crate::commands::engine(db, open_journal(db).await?)
            .with_observer(Arc::new(Progress::streaming(true))),
        &agent,
    );
    let outcome = engine.start(&agent, &args.input).await?;
    mock.shutdown().await;

    let rule = crate::style::Style::stderr().rule();
    noteln!("\n{rule} answer {rule}");
    let code = print_outcome(&outcome, false);
    let chassis = invocation();
    let db_flag = if db_given {
        format!(" --db {}", db.display())
    } else {
        String::new()
    };
    noteln!("\nInspect the run (any unique prefix of its id will do, and `last` is the newest):");
    noteln!(
        "  {chassis}{db_flag} show {}   # status and every journaled event",
        outcome.run_id
    );
    noteln!("  {chassis}{db_flag} trace last            # the run as a tree in time");
    noteln!("  {chassis}{db_flag} runs                  # all runs, newest first");
    noteln!("Run the agent again, against the mock model serving the same script:");
    noteln!(
        "  {chassis} mock-model --script {} --port {} &",
        args.dir.join("mock-script.toml").display(),
        mock_port(&base_url)
    );
    noteln!(
        "  {chassis}{db_flag} run {} --input {}",
        spec_path.display(),
        shell_quote(&args.input)
    );
    Ok(code)
}

/// How to run chassis as printed in hints: `chassis` when it is on PATH, `cargo run --bin
/// chassis --` when this process was started by cargo, else the path it was started by.
fn invocation() -> String {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("chassis").is_file()));
    if on_path {
        return "chassis".to_string();
    }
    if std::env::var_os("CARGO").is_some() {
        return "cargo run --bin chassis --".to_string();
    }
    std::env::args()
        .next()
        .filter(|arg0| arg0.contains('/'))
        .unwrap_or_else(|| "chassis".to_string())
}

/// The port of a mock base URL `http://127.0.0.1:PORT/v1`.
fn mock_port(base_url: &str) -> &str {
    base_url
        .rsplit_once(':')
        .map_or("0", |(_, rest)| rest.trim_end_matches("/v1"))
}

/// `text` quoted for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
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
        (dir.join("mock-script.toml"), DEMO_SCRIPT.to_string()),
        (notes.join("incident-2041.md"), NOTES.to_string()),
    ];
    for (path, text) in &files {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(dir.join("agent.toml"))
}
